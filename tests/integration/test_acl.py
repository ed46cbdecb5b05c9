"""The shipped ACLs on a real redis-server: an agent can serve its devices and do nothing else."""

from __future__ import annotations

import pytest
import redis

from jupyter_vqpu.core.acl import acl_file, agent_rules
from jupyter_vqpu.core.client import Client
from jupyter_vqpu.core.connection import connect
from jupyter_vqpu.core.control import ControlPlane
from tests.conftest import GHZ3
from tests.integration.test_agent import EchoExecutor, Running, wait_for

pytestmark = pytest.mark.redis

PASSWORD = "agent-test-password"


@pytest.fixture
def agent_url(seeded, redis_server):
    admin = seeded.redis
    admin.acl_setuser("vqpu-agent", enabled=True, passwords=[f"+{PASSWORD}"], reset=True)
    admin.execute_command("ACL", "SETUSER", "vqpu-agent", *agent_rules(["ideal"]))
    yield f"redis://vqpu-agent:{PASSWORD}@127.0.0.1:{redis_server.port}/0"
    admin.acl_deluser("vqpu-agent")


def test_an_agent_with_only_its_acl_serves_its_device(seeded, agent_url, tmp_path):
    running = Running(agent_url, EchoExecutor(), tmp_path, devices=("ideal",))
    try:
        view = Client(control=seeded).submit(GHZ3, device="ideal", shots=10).result(timeout=60)
    finally:
        running.stop()
    assert view["state"] == "completed" and view["agent"] == running.agent.cfg.agent_id


@pytest.mark.parametrize("command", [
    ("EVAL", "return 1", "0"),
    ("SCRIPT", "LOAD", "return 1"),
    ("FUNCTION", "LOAD", "#!lua name=x\nredis.register_function('x', function() return 1 end)"),
    ("CONFIG", "GET", "*"),
    ("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"),
    ("KEYS", "*"),
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("GET", "vqpu:{fez}:device"),            # another device's keys
    ("HGETALL", "vqpu:{fez}:device"),
    ("XREADGROUP", "GROUP", "agents", "x", "STREAMS", "vqpu:{fez}:queue", ">"),
    ("SET", "unrelated", "1"),
    ("SADD", "vqpu:devices", "evil"),         # the registry is read-only to agents
    ("ACL", "LIST"),
    ("SHUTDOWN",),
])
def test_the_agent_user_gets_noperm_for_everything_else(seeded, agent_url, command):
    agent = redis.Redis.from_url(agent_url)
    with pytest.raises(redis.exceptions.NoPermissionError):
        agent.execute_command(*command)
    assert seeded.redis.ping()  # and the server is untouched


def test_a_script_flush_leaves_the_agent_waiting_for_a_trusted_reload(seeded, agent_url):
    """Agents cannot load scripts themselves (that would be EVAL of arbitrary text)."""
    agent_cp = ControlPlane(connect(agent_url))
    seeded.redis.script_flush()
    with pytest.raises(redis.exceptions.NoPermissionError):
        agent_cp.presence("ideal", "a1", 1000)
    seeded.scripts.load_all()  # the gateway (or `vqpu device seed`) reloads them
    assert agent_cp.presence("ideal", "a1", 1000) == 1


def test_a_serving_agent_rides_out_a_script_flush_once_a_trusted_client_reloads(seeded, agent_url, tmp_path,
                                                                                  caplog):
    running = Running(agent_url, EchoExecutor(), tmp_path, devices=("ideal",))
    client = Client(control=seeded)
    try:
        assert client.submit(GHZ3, device="ideal", shots=10).result(timeout=60)["state"] == "completed"
        seeded.redis.script_flush()
        with caplog.at_level("WARNING", logger="vqpu.agent"):
            task = client.submit(GHZ3, device="ideal", shots=10)  # the trusted client reloads 'submit' only
            wait_for(lambda: "control-plane scripts are not loaded" in caplog.text, 30, "the agent to notice")
            assert task.status()["state"] == "queued"
            assert seeded.scripts.ensure_loaded() >= 1  # what the gateway's periodic check does
            assert seeded.scripts.ensure_loaded() == 0
            assert task.result(timeout=60)["state"] == "completed"
    finally:
        running.stop()


def test_the_acl_file_disables_the_default_user_and_stores_no_password():
    text = acl_file("agent-secret", "gateway-secret", ["fez", "torino"])
    assert text.startswith("user default off\n")
    assert "agent-secret" not in text and "gateway-secret" not in text
    assert "~vqpu:{fez}:*" in text and "~vqpu:{torino}:*" in text
