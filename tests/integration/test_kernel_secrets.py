"""A single-user Jupyter server that holds the Redis URLs keeps them out of its kernels.

A real ``jupyter server`` (a subprocess, as a user would start it) with
``VQPU_REDIS_URL`` naming a password-protected redis-server; a real kernel it
starts; the kernel's own ``os.environ`` is read from inside it. The kernel must
find no Redis URL and no password, and ``%%vqpu`` must still work (over the
server's HTTP API, with the API URL and token the server hands its kernels).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid

import pytest
import requests

from jupyter_vqpu.core.connection import connect
from jupyter_vqpu.core.control import ControlPlane
from tests.agents import Running
from tests.conftest import BELL_QASM2, need_binary
from tests.integration.hub_support import _execute
from tests.server_support import jupyter_server_process
from tests.support import RedisServer

pytestmark = pytest.mark.redis

PASSWORD = "kernel-must-not-see-" + secrets.token_hex(8)


@pytest.fixture
def private_redis(tmp_path):
    need_binary("redis-server", "the control plane's store")
    server = RedisServer(tmp_path / "redis", password=PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture
def jupyter_server(private_redis, tmp_path):
    """`jupyter server` with VQPU_REDIS_URL in its environment, and an agent serving ``ideal``."""
    from jupyter_vqpu_agent.executors.local import LocalExecutor

    cp = ControlPlane(connect(private_redis.url))
    cp.seed(["ideal"])
    running = Running(private_redis.url, LocalExecutor(slots=1, log_dir=tmp_path / "logs"), tmp_path / "work",
                      devices=("ideal",))
    # The loader URL (used only to reload scripts) is a credential too; here the same user stands in for it.
    env = {"VQPU_REDIS_URL": private_redis.url, "VQPU_SCRIPT_LOADER_URL": private_redis.url}
    try:
        with jupyter_server_process(tmp_path, env) as (url, headers, proc, _log, _port):
            yield url, headers, proc
    finally:
        running.stop()


def run_in_kernel(url: str, headers: dict, cells: list[str], timeout: float = 180) -> list[str]:
    r = requests.post(f"{url}/api/kernels", json={"name": "python3"}, headers=headers, timeout=60)
    assert r.status_code == 201, r.text
    kid = r.json()["id"]
    try:
        ws = url.replace("http://", "ws://") + f"/api/kernels/{kid}/channels"
        return asyncio.run(_execute(ws, headers, cells, timeout))
    finally:
        requests.delete(f"{url}/api/kernels/{kid}", headers=headers, timeout=60)


def test_kernels_of_a_single_user_server_hold_no_redis_credential_and_still_submit(jupyter_server):
    url, headers, proc = jupyter_server
    marker = uuid.uuid4().hex
    out = run_in_kernel(url, headers, [
        "import os, json\n"
        f"print({marker!r}, json.dumps({{'env': dict(os.environ), 'password': {PASSWORD!r} in repr(os.environ)}}))",
        "from jupyter_vqpu.kernel.transport import resolve_client\nprint('CLIENT', type(resolve_client()).__name__)",
        "%load_ext jupyter_vqpu",
        "%%vqpu ideal shots=64 seed=2 --wait -o t\n" + BELL_QASM2,
        "print('RESULT', t.view['state'], sum(t.counts.values()), sorted(t.counts))",
    ])
    seen = json.loads(out[0].split(marker, 1)[1])
    env = seen["env"]
    assert "VQPU_REDIS_URL" not in env and "VQPU_SCRIPT_LOADER_URL" not in env, sorted(env)
    assert not seen["password"], sorted(env)
    assert not [k for k, v in env.items() if "redis://" in v or "rediss://" in v], sorted(env)
    assert env.get("VQPU_API_URL", "").startswith(url) and env.get("VQPU_API_TOKEN"), sorted(env)
    assert out[1].strip() == "CLIENT ApiClient", out[1]
    assert "Error" not in out[3], out[3]
    line = next(x for x in out[4].splitlines() if x.startswith("RESULT"))
    state, total, outcomes = line.split(" ", 3)[1:]
    assert state == "completed" and total == "64" and set(eval(outcomes)) <= {"00", "11"}, line  # our own list
    assert proc.poll() is None
