"""The shipped ACLs on a real redis-server: an agent can serve its devices and do nothing else."""

from __future__ import annotations

import pytest
import redis

from jupyter_vqpu.core.acl import acl_file
from jupyter_vqpu.core.client import Client
from jupyter_vqpu.core.connection import connect
from jupyter_vqpu.core.control import ControlPlane
from tests.agents import EchoExecutor, Running, wait_for
from tests.conftest import GHZ3

pytestmark = pytest.mark.redis


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
            assert task.refresh()["state"] == "queued"
            assert seeded.scripts.ensure_loaded() >= 1  # what the gateway's periodic check does
            assert seeded.scripts.ensure_loaded() == 0
            assert task.result(timeout=60)["state"] == "completed"
    finally:
        running.stop()


def test_the_acl_file_disables_the_default_user_and_stores_no_password():
    text = acl_file("agent-secret", "gateway-secret", ["fez", "torino"])
    first = text.splitlines()[0].split()
    assert first[:3] == ["user", "default", "off"] and "on" not in first and "nopass" not in first
    assert "agent-secret" not in text and "gateway-secret" not in text
    assert "~vqpu:{fez}:*" in text and "~vqpu:{torino}:*" in text


# ------------------------------------------------------------ the generated ACL file, on its own redis-server

ROOT_PASSWORD = "test-only-superuser"


@pytest.fixture
def acl_server(tmp_path):
    """A redis-server whose users are exactly `vqpu acl`'s file (agent for fez only, gateway, admin), plus a
    test-only superuser that stands for a Redis that forgets its scripts (SCRIPT FLUSH, a restart)."""
    import subprocess
    import sys

    from tests.conftest import need_binary
    from tests.support import RedisServer

    need_binary("redis-server", "the control plane's store")
    secrets_ = {who: f"{who}-pw-{i}" for i, who in enumerate(("agent", "gateway", "admin"))}
    for who, pw in secrets_.items():
        (tmp_path / f"{who}.pw").write_text(pw + "\n")
    made = subprocess.run([sys.executable, "-m", "jupyter_vqpu.cli", "acl", "--devices", "fez",
                           *(a for who in secrets_ for a in (f"--{who}-password-file", str(tmp_path / f"{who}.pw")))],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    acl = tmp_path / "users.acl"
    acl.write_text(made.stdout + f"user root on >{ROOT_PASSWORD} ~* &* +@all\n")
    server = RedisServer(tmp_path / "redis", username="root", password=ROOT_PASSWORD,
                         extra_args=("--aclfile", str(acl))).start()
    urls = {who: f"redis://vqpu-{who}:{pw}@127.0.0.1:{server.port}/0" for who, pw in secrets_.items()}
    urls["root"] = server.url
    admin = ControlPlane(connect(urls["admin"]))
    admin.seed(["fez", "torino"])  # the operators' user registers devices (and so loads the scripts)
    yield urls
    server.stop()


def test_no_client_gets_in_as_the_default_user(acl_server):
    """The default user keeps its rights (Redis replays its AOF as that user) but is off: without
    credentials, or with a made-up password, a client can run nothing."""
    port = redis.Redis.from_url(acl_server["root"]).connection_pool.connection_kwargs["port"]
    for client in (redis.Redis(port=port), redis.Redis(port=port, password="guess")):
        with pytest.raises(redis.exceptions.AuthenticationError):  # NOAUTH / WRONGPASS, not NOPERM
            client.get("vqpu:devices")


def test_the_generated_file_confines_the_fez_agent_to_fez(acl_server, tmp_path):
    agent = redis.Redis.from_url(acl_server["agent"], decode_responses=True)
    assert agent.hgetall("vqpu:{fez}:device")  # its own device: yes
    for command in [
        ("HGETALL", "vqpu:{torino}:device"),
        ("HSET", "vqpu:{torino}:task:torino.0000000000000000", "state", "completed"),
        ("SET", "vqpu:{torino}:task:torino.0000000000000000:result", "{}"),
        ("XADD", "vqpu:{torino}:events", "*", "event", "completed"),
        ("ZADD", "vqpu:{torino}:leases", "1", "torino.0000000000000000"),
        ("XREADGROUP", "GROUP", "agents", "x", "STREAMS", "vqpu:{torino}:queue", ">"),
        ("ZADD", "vqpu:rate:{0123456789abcdef0123456789abcdef}", "1", "x"),  # another user's rate window
        ("SADD", "vqpu:devices", "evil"),
        ("SCRIPT", "LOAD", "return 1"),
    ]:
        with pytest.raises(redis.exceptions.NoPermissionError):
            agent.execute_command(*command)
    # A script runs with the caller's rights: the claim script aimed at torino's keys is refused too.
    fez_cp = ControlPlane(connect(acl_server["agent"]))
    with pytest.raises(redis.exceptions.ResponseError, match="(?i)no permissions|noperm"):
        fez_cp.presence("torino", "a1", 1000)
    assert fez_cp.presence("fez", "a1", 1000) == 1


@pytest.mark.parametrize("command", [
    ("SCRIPT", "LOAD", "return 1"),
    ("EVAL", "return 1", "0"),
    ("EVAL_RO", "return 1", "0"),
    ("FUNCTION", "LOAD", "#!lua name=x\nredis.register_function('x', function() return 1 end)"),
    ("FCALL", "x", "0"),
    ("SCRIPT", "FLUSH"),
    ("SCRIPT", "KILL"),
    ("KEYS", "*"),
    ("FLUSHALL",),
    ("CONFIG", "SET", "dir", "/tmp"),
])
def test_the_gateway_user_may_not_put_lua_into_redis_when_an_admin_loads_it(acl_server, command):
    gateway = redis.Redis.from_url(acl_server["gateway"])
    with pytest.raises(redis.exceptions.NoPermissionError):
        gateway.execute_command(*command)


def test_the_admin_loads_scripts_but_runs_no_lua_of_its_own(acl_server):
    admin = redis.Redis.from_url(acl_server["admin"])
    assert admin.script_load("return 1")
    for command in [("EVAL", "return 1", "0"), ("SCRIPT", "FLUSH"), ("FLUSHALL",)]:
        with pytest.raises(redis.exceptions.NoPermissionError):
            admin.execute_command(*command)


def test_the_whole_flow_with_a_gateway_that_cannot_load_scripts(acl_server, tmp_path):
    """Submit as the gateway, an agent for fez completes; Redis forgets the scripts; the gateway's
    loader (the admin user) puts them back; the next task completes too. Without the loader the
    gateway cannot recover: its own user has no SCRIPT LOAD."""
    from jupyter_vqpu_server.service import VqpuService

    service = VqpuService(acl_server["gateway"], script_loader_url=acl_server["admin"])
    gateway = service.cp
    lonely = ControlPlane(connect(acl_server["gateway"]))  # the same user, no loader
    running = Running(acl_server["agent"], EchoExecutor(), tmp_path, devices=("fez",))
    client = Client(control=gateway)
    try:
        assert client.submit(GHZ3, device="fez", shots=10).result(timeout=60)["state"] == "completed"
        redis.Redis.from_url(acl_server["root"]).script_flush()
        with pytest.raises(redis.exceptions.NoPermissionError):
            lonely.scripts.ensure_loaded()
        task = client.submit(GHZ3, device="fez", shots=10)  # NOSCRIPT -> the loader loads 'submit' -> retried
        assert gateway.scripts.ensure_loaded() >= 1  # what the service's periodic check does, via the loader
        assert gateway.scripts.ensure_loaded() == 0
        assert task.result(timeout=60)["state"] == "completed"
    finally:
        running.stop()
        service._pool.shutdown(wait=False)
