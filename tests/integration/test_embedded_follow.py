"""A Jupyter server on the embedded default follows it across `vqpu down` / `vqpu up` (issue 13).

`vqpu up` after `vqpu down` brings Redis back on a new free port. The server extension (and a
long-lived ``Client``) must find it there by itself, say "run `vqpu up`" while it is down, and
show the real state in ``GET vqpu/api/health`` (the panel's live dot). Real redis-server, real
agent, real Jupyter server; the embedded default lives in a temporary VQPU_HOME.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from tests.cli_support import vqpu

pytestmark = pytest.mark.redis


@pytest.fixture
def embedded_home(tmp_path, monkeypatch, redis_server):
    """An embedded default of our own (started with `vqpu up`), and an environment that names no Redis."""
    home = tmp_path / "vqpu-home"
    monkeypatch.setenv("VQPU_HOME", str(home))
    monkeypatch.delenv("VQPU_REDIS_URL", raising=False)
    monkeypatch.setenv("VQPU_API_URL", "")  # the server writes its own for its kernels; undone after the test
    up = vqpu("up", env={"VQPU_HOME": str(home)})
    assert up.returncode == 0, up.stderr
    yield home
    down = vqpu("down", env={"VQPU_HOME": str(home)})
    assert down.returncode == 0, down.stderr


@pytest.fixture
def jp_server_config(embedded_home):
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_vqpu_server": True}},
        "VqpuApp": {"events_block_ms": 200},  # no redis_url: the embedded default
    }


async def get(jp_fetch: Any, *path: str) -> tuple[int, Any]:
    try:
        r = await jp_fetch("vqpu", "api", *path)
        return r.code, json.loads(r.body)
    except HTTPClientError as exc:
        return exc.code, json.loads(exc.response.body) if exc.response is not None else {}


def port_of(home) -> int:
    return json.loads((home / "state.json").read_text())["port"]


async def test_the_server_follows_the_embedded_default_across_down_and_up(jp_fetch, jp_serverapp, embedded_home):
    env = {"VQPU_HOME": str(embedded_home)}
    code, devices = await get(jp_fetch, "devices")
    assert code == 200 and "fez" in {d["name"] for d in devices}, devices
    code, health = await get(jp_fetch, "health")
    assert code == 200 and health["state"] == "connected" and health["embedded"] is True, health
    first_port = port_of(embedded_home)

    assert vqpu("down", env=env).returncode == 0
    code, err = await get(jp_fetch, "devices")
    assert code == 503 and err["error"] == "control_plane_unavailable", err
    assert "not running" in err["message"] and "vqpu up" in err["hint"], err
    code, health = await get(jp_fetch, "health")
    assert code == 200 and health["state"] == "not_running" and "vqpu up" in health["hint"], health
    # what the events socket reports as control_plane: asking for health does not make it "connected"
    service = jp_serverapp.web_app.settings["vqpu_service"]
    assert service.connection["state"] == "not_running", service.connection

    assert vqpu("up", env=env).returncode == 0
    # Usually another port; either way, the server must answer from the running one, without a restart.
    print("embedded port", first_port, "->", port_of(embedded_home))
    code, devices = await get(jp_fetch, "devices")
    assert code == 200 and "fez" in {d["name"] for d in devices}, devices
    code, health = await get(jp_fetch, "health")
    assert health["state"] == "connected", health


def test_a_long_lived_client_follows_the_embedded_default(embedded_home):
    import redis

    from jupyter_vqpu.core.client import Client

    env = {"VQPU_HOME": str(embedded_home)}
    client = Client()  # no URL: the embedded default
    assert "fez" in {d["name"] for d in client.devices()}
    assert vqpu("down", env=env).returncode == 0
    with pytest.raises(redis.ConnectionError, match="not running: start it with `vqpu up`"):
        client.devices()
    assert vqpu("up", env=env).returncode == 0
    assert "fez" in {d["name"] for d in client.devices()}  # same object, new port
