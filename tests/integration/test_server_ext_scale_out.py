"""The Jupyter server extension on a Redis Cluster and under Sentinel: a real server, its API and
its event pump over devices that live on different masters (one blocking read per device)."""

from __future__ import annotations

import json

import pytest

from jupyter_vqpu.core.connection import connect
from jupyter_vqpu.core.control import ControlPlane
from tests.conftest import BELL_QASM2
from tests.server_support import ALICE, TwoUsers, VqpuUsers, body, jp_auth_header  # noqa: F401  (fixtures)

pytestmark = pytest.mark.redis

DEVICES = ["fez", "torino", "marrakesh"]  # three masters of the 3-master cluster


@pytest.fixture(params=["cluster", "sentinel"])
def scale_out_url(request) -> str:
    servers = request.getfixturevalue(f"redis_{request.param}")
    servers.flushall()
    url = servers.url if request.param == "cluster" else servers.url()
    ControlPlane(connect(url)).seed(DEVICES)
    return url


@pytest.fixture
def jp_server_config(scale_out_url):
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_vqpu_server": True}, "identity_provider_class": TwoUsers,
                      "authorizer_class": VqpuUsers},
        "VqpuApp": {"redis_url": scale_out_url, "events_block_ms": 200, "devices_interval": 2, "wait_replicas": 1},
    }


async def test_the_api_and_its_event_pump_span_masters(jp_fetch):
    devices = body(await jp_fetch("vqpu", "api", "devices"))
    assert sorted(d["name"] for d in devices) == sorted(DEVICES)
    start = body(await jp_fetch("vqpu", "api", "events", "poll", params={"timeout": "0"}))
    ids = []
    for d in DEVICES:
        reply = await jp_fetch("vqpu", "api", "tasks", method="POST", headers=ALICE, body=json.dumps(
            {"device": d, "circuit": BELL_QASM2, "shots": 16, "idempotency_key": f"k-{d}"}))
        ids.append(body(reply)["task_id"])
    seen: set[str] = set()
    cursor = start["cursor"]
    for _ in range(20):  # each poll waits up to 2 s; a loaded box may need several
        reply = body(await jp_fetch("vqpu", "api", "events", "poll", params={"cursor": cursor, "timeout": "2"}))
        seen |= {e["task"] for e in reply["events"]}
        cursor = reply["cursor"]
        if set(ids) <= seen:
            break
    assert set(ids) <= seen  # events from every master reached the caller
    for tid in ids:
        assert body(await jp_fetch("vqpu", "api", "tasks", tid))["state"] == "queued"
