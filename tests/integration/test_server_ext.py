"""The server extension's API against a real Jupyter server and a real redis-server.

Two identities (alice, bob) come from a test IdentityProvider keyed by token,
so ownership is checked through the same authentication path as in production.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from tests.conftest import GHZ3
from tests.server_support import ALICE, BOB, body, fails, jp_auth_header, jp_server_config  # noqa: F401  (fixtures)

pytestmark = pytest.mark.redis


def submit_body(**overrides: Any) -> str:
    payload = {"device": "fez", "circuit": GHZ3, "shots": 100}
    payload.update(overrides)
    return json.dumps(payload)


async def submit(jp_fetch: Any, headers: dict = ALICE, **overrides: Any) -> dict:
    r = await jp_fetch("vqpu", "api", "tasks", method="POST", body=submit_body(**overrides), headers=dict(headers))
    assert r.code == 201
    return body(r)


async def test_devices_and_snapshots(jp_fetch):
    r = await jp_fetch("vqpu", "api", "devices")
    devices = body(r)
    assert {d["name"] for d in devices} == {"fez", "ideal"}
    fez = next(d for d in devices if d["name"] == "fez")
    assert fez["status"] == "offline" and fez["queue_depth"] == 0

    r = await jp_fetch("vqpu", "api", "devices", "fez", "snapshot")
    current = body(r)
    assert current["num_qubits"] == fez["num_qubits"]
    r2 = await jp_fetch("vqpu", "api", "devices", "fez", "snapshot", fez["snapshot_id"])
    assert r2.body == r.body

    code, err = await fails(jp_fetch("vqpu", "api", "devices", "nowhere", "snapshot"))
    assert (code, err["error"]) == (404, "unknown_device")
    code, err = await fails(jp_fetch("vqpu", "api", "devices", "fez", "snapshot", "0" * 64))
    assert (code, err["error"]) == (404, "unknown_snapshot")


@pytest.mark.parametrize("headers", [{"Authorization": ""}, {"Authorization": "token wrong"}])
async def test_auth_is_required(jp_fetch, headers):
    for parts, method, payload in [
        (("devices",), "GET", None),
        (("devices", "fez", "snapshot"), "GET", None),
        (("tasks",), "GET", None),
        (("tasks",), "POST", submit_body()),
        (("tasks", "fez.0000000000000000"), "GET", None),
        (("tasks", "fez.0000000000000000"), "DELETE", None),
        (("tasks", "fez.0000000000000000", "circuit"), "GET", None),
        (("events", "poll"), "GET", None),
    ]:
        code, _ = await fails(jp_fetch("vqpu", "api", *parts, method=method, body=payload, headers=dict(headers)))
        assert code in (401, 403), (parts, method, code)


async def test_submit_list_get_cancel(jp_fetch):
    view = await submit(jp_fetch, name="ghz", seed=7)
    tid = view["task_id"]
    assert view["owner"] == "alice" and view["state"] == "queued" and view["queue_position"] == 1

    listed = body(await jp_fetch("vqpu", "api", "tasks"))
    assert [t["task_id"] for t in listed] == [tid]

    got = body(await jp_fetch("vqpu", "api", "tasks", tid))
    assert got["name"] == "ghz" and got["seed"] == 7
    assert [h["event"] for h in got["history"]] == ["queued"]

    cancelled = body(await jp_fetch("vqpu", "api", "tasks", tid, method="DELETE"))
    assert cancelled["state"] == "cancelled" and cancelled["cancel"]["cancelled"] is True
    again = body(await jp_fetch("vqpu", "api", "tasks", tid, method="DELETE"))
    assert again["cancel"] == {"cancelled": False, "previous": "cancelled"}

    code, err = await fails(jp_fetch("vqpu", "api", "tasks", "fez.0000000000000000"))
    assert (code, err["error"]) == (404, "task_not_found")
    code, _ = await fails(jp_fetch("vqpu", "api", "tasks", "not-a-task-id!"))
    assert code == 404


async def test_completed_task_includes_result(jp_fetch, seeded):
    tid = (await submit(jp_fetch, device="ideal"))["task_id"]
    claim = seeded.claim("ideal", tid, "agent-1", 30_000)
    assert claim is not None
    assert seeded.progress(tid, "agent-1", claim.token, "running")[0] == "ok"
    result = {"counts": {"000": 52, "111": 48}, "snapshot_id": claim.snapshot_id}
    assert seeded.finish(tid, "agent-1", claim.token, "completed", result=result) == "ok"

    got = body(await jp_fetch("vqpu", "api", "tasks", tid))
    assert got["state"] == "completed" and got["counts"] == {"000": 52, "111": 48}
    assert [h["event"] for h in got["history"]] == ["queued", "claimed", "running", "completed"]


async def test_a_tasks_circuit_as_submitted_and_as_transpiled(jp_fetch, seeded):
    """``tasks/{id}/circuit`` (the panel's detail view): the owner's only; the transpiled text
    once a result carries it, and never a stored one past the schema's bound."""
    from jupyter_vqpu.core.result import MAX_TRANSPILED_QASM_CHARS

    tid = (await submit(jp_fetch, device="ideal"))["task_id"]
    got = body(await jp_fetch("vqpu", "api", "tasks", tid, "circuit"))
    assert got["task_id"] == tid and got["circuit"] == GHZ3 and got["format"]
    assert got["transpiled_qasm"] is None  # nothing has run yet
    code, err = await fails(jp_fetch("vqpu", "api", "tasks", tid, "circuit", headers=dict(BOB)))
    assert (code, err["error"]) == (403, "forbidden")

    claim = seeded.claim("ideal", tid, "agent-1", 30_000)
    transpiled = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nh $0;\n'
    assert seeded.finish(tid, "agent-1", claim.token, "completed",
                         result={"counts": {"000": 5}, "snapshot_id": claim.snapshot_id,
                                 "transpiled_qasm": transpiled}) == "ok"
    assert body(await jp_fetch("vqpu", "api", "tasks", tid, "circuit"))["transpiled_qasm"] == transpiled

    # a result stored past the bound (written around the agent's schema check) is not served
    big = (await submit(jp_fetch, device="ideal"))["task_id"]
    claim = seeded.claim("ideal", big, "agent-1", 30_000)
    seeded.finish(big, "agent-1", claim.token, "completed",
                  result={"counts": {"000": 5}, "snapshot_id": claim.snapshot_id,
                          "transpiled_qasm": "x" * (MAX_TRANSPILED_QASM_CHARS + 1)})
    assert body(await jp_fetch("vqpu", "api", "tasks", big, "circuit"))["transpiled_qasm"] is None
    code, err = await fails(jp_fetch("vqpu", "api", "tasks", "fez.0000000000000000", "circuit"))
    assert (code, err["error"]) == (404, "task_not_found")


async def test_the_task_list_takes_a_bounded_limit(jp_fetch):
    ids = [(await submit(jp_fetch, name=f"t{i}"))["task_id"] for i in range(3)]
    listed = body(await jp_fetch("vqpu", "api", "tasks", params={"limit": "2"}))
    assert [t["task_id"] for t in listed] == ids[::-1][:2]  # the newest two
    assert len(body(await jp_fetch("vqpu", "api", "tasks"))) == 3
    for bad in ("0", "501", "abc", "1e3", "-1", "\u00b2", "9" * 40):
        code, err = await fails(jp_fetch("vqpu", "api", "tasks", params={"limit": bad}))
        assert (code, err["error"]) == (400, "invalid_request") and "limit must be" in err["message"], (bad, err)


async def test_users_cannot_touch_each_others_tasks(jp_fetch):
    tid = (await submit(jp_fetch))["task_id"]
    for method in ("GET", "DELETE"):
        code, err = await fails(jp_fetch("vqpu", "api", "tasks", tid, method=method, headers=dict(BOB)))
        assert (code, err["error"]) == (403, "forbidden")
        assert "another user" in err["message"]
    assert body(await jp_fetch("vqpu", "api", "tasks", headers=dict(BOB))) == []
    assert body(await jp_fetch("vqpu", "api", "tasks", tid))["state"] == "queued"


@pytest.mark.parametrize(
    ("raw", "status", "code", "needle"),
    [
        ("{not json", 400, "invalid_request", "not valid JSON"),
        ("[1, 2]", 400, "invalid_request", "JSON object"),
        (submit_body(colour="red"), 400, "invalid_request", "colour"),
        (submit_body(shots=0), 400, "invalid_request", "shots"),
        (submit_body(shots="many"), 400, "invalid_request", "shots"),
        (submit_body(owner="bob"), 400, "invalid_request", "owner"),
        (submit_body(circuit="OPENQASM 3.0;\nqubit[2] q;\nfrobnicate q[0];\n"), 400, "invalid_circuit", ""),
        (submit_body(device="nowhere"), 404, "unknown_device", "nowhere"),
        (json.dumps({"device": "fez"}), 400, "invalid_request", "circuit"),
    ],
)
async def test_bad_submissions_are_readable(jp_fetch, raw, status, code, needle):
    got_status, err = await fails(jp_fetch("vqpu", "api", "tasks", method="POST", body=raw))
    assert (got_status, err["error"]) == (status, code), err
    assert needle in err["message"] and set(err) == {"error", "message", "hint"}


async def test_long_poll_sees_only_the_callers_events(jp_fetch):
    start = body(await jp_fetch("vqpu", "api", "events", "poll", params={"timeout": "0"}))
    assert start["events"] == [] and start["cursor"]

    mine = (await submit(jp_fetch))["task_id"]
    theirs = (await submit(jp_fetch, headers=BOB))["task_id"]
    await jp_fetch("vqpu", "api", "tasks", mine, method="DELETE")
    await jp_fetch("vqpu", "api", "tasks", theirs, method="DELETE", headers=dict(BOB))

    seen: list[dict] = []
    cursor = start["cursor"]
    for _ in range(5):
        reply = body(await jp_fetch("vqpu", "api", "events", "poll", params={"cursor": cursor, "timeout": "2"}))
        seen += reply["events"]
        cursor = reply["cursor"]
        if len(seen) >= 2:
            break
    assert [(e["task"], e["event"]) for e in seen] == [(mine, "queued"), (mine, "cancelled")]
    assert all(e["type"] == "event" and e["device"] == "fez" and e["id"] for e in seen)
    assert seen[1]["data"]["by"] == "alice"

    # Nothing new: the poll waits about its timeout, then answers empty with a usable cursor.
    reply = body(await jp_fetch("vqpu", "api", "events", "poll", params={"cursor": cursor, "timeout": "0.3"}))
    assert reply["events"] == []

    code, err = await fails(jp_fetch("vqpu", "api", "events", "poll", params={"cursor": "garbage!"}))
    assert (code, err["error"]) == (400, "invalid_request")
    code, _ = await fails(jp_fetch("vqpu", "api", "events", "poll", params={"timeout": "soon"}))
    assert code == 400


async def test_long_poll_wakes_on_a_new_event(jp_fetch):
    cursor = body(await jp_fetch("vqpu", "api", "events", "poll", params={"timeout": "0"}))["cursor"]
    waiting = asyncio.ensure_future(
        jp_fetch("vqpu", "api", "events", "poll", params={"cursor": cursor, "timeout": "10"})
    )
    await asyncio.sleep(0.3)
    tid = (await submit(jp_fetch))["task_id"]
    reply = body(await asyncio.wait_for(waiting, 5))
    assert [(e["task"], e["event"]) for e in reply["events"]] == [(tid, "queued")]


async def test_websocket_pushes_the_callers_events(jp_fetch, jp_ws_fetch, seeded):
    ws = await jp_ws_fetch("vqpu", "api", "events", headers=dict(ALICE))
    try:
        first = json.loads(await asyncio.wait_for(ws.read_message(), 5))
        assert first["type"] == "devices" and {d["name"] for d in first["devices"]} == {"fez", "ideal"}

        theirs = (await submit(jp_fetch, headers=BOB))["task_id"]
        mine = (await submit(jp_fetch))["task_id"]
        seeded.presence("fez", "agent-1", 10_000)  # a device-level event: everyone sees it

        events: list[dict] = []
        while not any(e.get("event") == "agent_online" for e in events):
            msg = json.loads(await asyncio.wait_for(ws.read_message(), 5))
            if msg["type"] == "event":
                events.append(msg)
        assert (mine, "queued") in [(e["task"], e["event"]) for e in events]
        assert theirs not in {e["task"] for e in events}
        online = next(e for e in events if e["event"] == "agent_online")
        assert online["task"] is None and online["data"]["agent"] == "agent-1"
    finally:
        ws.close()


async def test_websocket_requires_auth(jp_ws_fetch):
    with pytest.raises(HTTPClientError) as info:
        await jp_ws_fetch("vqpu", "api", "events", headers={"Authorization": "token wrong"})
    assert info.value.code in (401, 403)


class TestBaseUrl:
    """The API lives under the server's base_url like every other Jupyter route."""

    @pytest.fixture
    def jp_base_url(self):
        return "/hub/user/alice/"

    async def test_routes_under_prefix(self, jp_fetch, jp_ws_fetch):
        r = await jp_fetch("vqpu", "api", "devices")
        assert r.effective_url.split("?")[0].endswith("/hub/user/alice/vqpu/api/devices")
        r = await jp_fetch("vqpu", "api", "tasks", method="POST", body=submit_body())
        assert r.headers["Location"].startswith("/hub/user/alice/vqpu/api/tasks/")
        ws = await jp_ws_fetch("vqpu", "api", "events", headers=dict(ALICE))
        assert json.loads(await asyncio.wait_for(ws.read_message(), 5))["type"] == "devices"
        ws.close()


async def test_the_api_rides_out_a_redis_restart(jp_fetch, redis_server):
    before = body(await jp_fetch("vqpu", "api", "devices"))
    redis_server.stop()
    code, err = await fails(jp_fetch("vqpu", "api", "devices"))
    assert code == 503 and "control plane" in err["message"]
    redis_server.start()  # same port, its AOF kept the devices
    after = body(await jp_fetch("vqpu", "api", "devices"))
    assert [d["name"] for d in after] == [d["name"] for d in before]
    created = await jp_fetch("vqpu", "api", "tasks", method="POST",
                             body=json.dumps({"device": "ideal", "circuit": GHZ3, "shots": 10}))
    assert created.code == 201


async def test_the_service_reloads_scripts_a_flushed_redis_lost(jp_fetch, seeded):
    """Least-privilege agents may only EVALSHA: the service is the one that puts the scripts back."""
    await jp_fetch("vqpu", "api", "devices")  # the service is running
    seeded.redis.script_flush()
    claim_sha = seeded.scripts.claim.sha  # only agents run 'claim': nothing else would reload it
    deadline = asyncio.get_running_loop().time() + 30
    while not seeded.redis.script_exists(claim_sha)[0]:
        assert asyncio.get_running_loop().time() < deadline, "the service did not reload the scripts"
        await jp_fetch("vqpu", "api", "devices")
        await asyncio.sleep(0.2)


async def test_publishing_calibration_over_the_api_reads_it_like_the_cli(jp_fetch, seeded):
    from jupyter_vqpu.core import catalog

    conf, props = catalog.builtin_calibration("fez")
    props = json.loads(json.dumps(props))
    props["qubits"][0] = [dict(p, value=p["value"] * 0.5) if p["name"] == "T1" else p for p in props["qubits"][0]]
    old = seeded.devices(["fez"])[0]["snapshot_id"]
    for bad, needle in (({"qubits": "no"}, "neither an IBM backend configuration nor backend properties"),
                        ([1, 2], "must be a JSON object")):
        code, err = await fails(jp_fetch("vqpu", "api", "devices", "fez", "snapshots", method="POST",
                                         body=json.dumps(bad)))
        assert code == 400 and needle in err["message"], err
    assert seeded.devices(["fez"])[0]["snapshot_id"] == old  # a refused body changed nothing
    r = await jp_fetch("vqpu", "api", "devices", "fez", "snapshots", method="POST",
                       body=json.dumps({"properties": props}))
    made = body(r)
    assert r.code == 201 and made["version"] == 2 and made["snapshot_id"] != old
    new = json.loads((await jp_fetch("vqpu", "api", "devices", "fez", "snapshot")).body)
    assert new["source"] == "published over the API by alice"
    old_doc = json.loads(seeded.snapshot_bytes("fez", old))
    assert new["qubits"][0]["t1"] == pytest.approx(old_doc["qubits"][0]["t1"] * 0.5)
    assert new["coupling_map"] == old_doc["coupling_map"]  # no configuration sent: the topology is kept
