"""The agent's one classification of Redis errors (agent/jupyter_vqpu_agent/faults.py)."""

from __future__ import annotations

import pytest
from redis import exceptions as rx

from jupyter_vqpu_agent.faults import BUG, OPERATOR, TRANSIENT, Backoff, classify, is_redis_error


@pytest.mark.parametrize("exc,kind", [
    (rx.ConnectionError("Connection refused"), TRANSIENT),
    (rx.TimeoutError("Timeout reading from socket"), TRANSIENT),
    (rx.BusyLoadingError("Redis is loading the dataset in memory"), TRANSIENT),
    (rx.ReadOnlyError("You can't write against a read only replica."), TRANSIENT),
    (rx.TryAgainError("Multiple keys request during rehashing of slot"), TRANSIENT),
    (rx.ClusterDownError("The cluster is down"), TRANSIENT),
    (rx.MasterDownError("Link with MASTER is down"), TRANSIENT),
    (rx.MovedError("3999 127.0.0.1:6381"), TRANSIENT),
    (rx.AskError("3999 127.0.0.1:6381"), TRANSIENT),
    (rx.ClusterError("TTL exhausted."), TRANSIENT),
    (rx.RedisClusterException("Redis Cluster cannot be connected"), TRANSIENT),  # not a RedisError
    (rx.SlotNotCoveredError("slot 12 is not covered"), TRANSIENT),
    (rx.NoScriptError("No matching script. Please use EVAL."), OPERATOR),
    (rx.NoPermissionError("this user has no permissions to run the 'script|load' command"), OPERATOR),
    (rx.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), OPERATOR),
    (rx.AuthenticationError("invalid username-password pair"), OPERATOR),  # a ConnectionError subclass
    (rx.ResponseError("ERR Error running script: attempt to compare nil with number"), BUG),
    (rx.DataError("Invalid input of type: 'dict'"), BUG),
    (KeyError("shots"), BUG),
])
def test_every_redis_error_class_has_one_meaning(exc, kind):
    fault = classify(exc)
    assert fault.kind == kind
    assert fault.retry == (kind != BUG)
    assert type(exc).__name__ in fault.message and "\n" not in fault.message


def test_operator_faults_say_what_to_do():
    assert "vqpu device seed" in classify(rx.NoPermissionError("no permissions to run 'script|load'")).message
    assert "maxmemory" in classify(rx.OutOfMemoryError("command not allowed")).message


def test_cluster_exceptions_count_as_redis_errors():
    assert not issubclass(rx.RedisClusterException, rx.RedisError)
    assert is_redis_error(rx.RedisClusterException("x")) and is_redis_error(rx.ConnectionError("x"))
    assert not is_redis_error(KeyError("x"))


def test_backoff_doubles_to_its_cap_and_resets():
    b = Backoff(0.5, 3.0)
    assert [b.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    b.reset()
    assert b.next() == 0.5
