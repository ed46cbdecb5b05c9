"""What a failed Redis call means for the agent, decided in one place.

Every control-plane call the agent makes (main loop, keep-alive thread,
executor reports) goes through :func:`classify`, so a new error class is
handled the same way everywhere:

- ``transient``: the connection, a timeout, Redis loading its AOF, a cluster
  failover (TRYAGAIN, CLUSTERDOWN, MOVED/ASK, READONLY, redis-py's cluster
  errors, which are not even ``RedisError`` subclasses). Retried with backoff.
- ``operator``: something only a person or a trusted service fixes: the
  scripts are not loaded (NOSCRIPT, or NOPERM for a least-privilege agent
  after SCRIPT FLUSH), Redis is full (OOM under noeviction), the agent's
  credentials or ACL are wrong. Retried with backoff as well, logged as one
  readable line with what to do, and the agent reports itself unhealthy.
- ``bug``: anything else (a script error, a wrong argument). Not retried: the
  caller logs the traceback and lets the task go (its lease expires and the
  reaper requeues it) rather than loop on a call that cannot succeed.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from redis import exceptions as rx

from jupyter_vqpu.core.errors import NotDurable

TRANSIENT = "transient"
OPERATOR = "operator"
BUG = "bug"

# Order matters: AuthenticationError and friends subclass ConnectionError,
# NoScript/NoPermission/OOM/ReadOnly subclass ResponseError.
_OPERATOR: tuple[tuple[type[BaseException], str], ...] = (
    (rx.AuthenticationError, "Redis refused the agent's credentials; check the password in the Redis URL"),
    (rx.AuthorizationError, "Redis refused the agent's credentials; check the password in the Redis URL"),
    (rx.NoScriptError, "the control-plane scripts are not loaded in Redis; the gateway or "
                       "`vqpu device seed` loads them"),
    (rx.NoPermissionError, "the control-plane scripts are not loaded in Redis, or the agent's ACL lacks a "
                           "command (NOPERM); the gateway or `vqpu device seed` reloads the scripts, "
                           "`vqpu acl` prints the agent's rules"),
    (rx.OutOfMemoryError, "Redis is out of memory (maxmemory reached with noeviction); raise maxmemory or "
                          "free memory, the agent retries"),
)
_TRANSIENT: tuple[tuple[type[BaseException], str], ...] = (
    (NotDurable, "Redis did not confirm the write on enough replicas (?wait_replicas=) in time"),
    (rx.BusyLoadingError, "Redis is loading its data set"),
    (rx.ReadOnlyError, "Redis is read-only (a replica, or a failover in progress)"),
    (rx.TryAgainError, "Redis Cluster asks to try again (a slot is migrating)"),
    (rx.ClusterDownError, "the Redis Cluster is down or failing over"),
    (rx.AskError, "the Redis Cluster moved a slot"),  # MovedError subclasses AskError
    (rx.ClusterError, "the Redis Cluster could not serve the call"),
    (rx.RedisClusterException, "the Redis Cluster could not serve the call"),
    (rx.ConnectionError, "the control plane is unreachable"),
    (rx.TimeoutError, "the control plane did not answer in time"),
)


@dataclass(frozen=True)
class Fault:
    """One failed call, classified: ``kind`` is transient / operator / bug; ``message`` one readable line."""

    kind: str
    message: str

    @property
    def retry(self) -> bool:
        return self.kind != BUG


def classify(exc: BaseException) -> Fault:
    """The one decision of what a failed control-plane call means (see the module docstring)."""
    detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    for table, kind in ((_OPERATOR, OPERATOR), (_TRANSIENT, TRANSIENT)):
        for cls, what in table:
            if isinstance(exc, cls):
                return Fault(kind, f"{what} ({type(exc).__name__}: {detail})")
    return Fault(BUG, f"unexpected control-plane error ({type(exc).__name__}: {detail})")


def is_redis_error(exc: BaseException) -> bool:
    """Whether ``exc`` came from talking to Redis (cluster errors are not RedisError subclasses)."""
    return isinstance(exc, (redis.RedisError, rx.RedisClusterException))


class Backoff:
    """Exponential backoff between retries: ``first`` doubling up to ``cap`` seconds; ``reset`` on success."""

    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        self.first = first
        self.cap = cap
        self.delay = first

    def next(self) -> float:
        delay = self.delay
        self.delay = min(self.delay * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.delay = self.first
