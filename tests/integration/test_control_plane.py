"""The task lifecycle scripts against a real redis-server.

These drive the scripts the way an agent does (claim, progress, finish) so each
rule can be checked at the exact interleaving that matters.
"""

from __future__ import annotations

import json

import pytest

from jupyter_vqpu.core.control import ControlPlane
from jupyter_vqpu.core.errors import (
    CircuitError,
    DeviceDraining,
    InvalidRequest,
    LimitExceeded,
    TaskNotFound,
    UnknownDevice,
    UnknownSnapshot,
)
from jupyter_vqpu.core.snapshot import ideal_snapshot
from tests.conftest import BELL_QASM2, GHZ3
from tests.support import wait_for

pytestmark = pytest.mark.redis

LEASE = 30_000


def submit(cp: ControlPlane, owner: str = "alice", device: str = "ideal", **kw):
    kw.setdefault("circuit", GHZ3)
    kw.setdefault("shots", 100)
    return cp.submit(owner=owner, device=device, **kw)


def next_claim(cp: ControlPlane, agent: str = "a1", device: str = "ideal"):
    """Read one pointer as agent ``agent`` and claim it."""
    cp.ensure_group(device)
    items = cp.read_work([device], agent, 1, 100)
    assert items, "expected work in the stream"
    dev, entry, tid = items[0]
    return cp.claim(dev, tid, agent, LEASE, entry)


def events_of(cp: ControlPlane, task_id: str) -> list[str]:
    return [e["event"] for e in cp.history(task_id)]


def test_full_lifecycle_through_the_scripts(seeded):
    cp = seeded
    view = submit(cp)
    assert view["state"] == "queued" and view["queue_position"] == 1 and view["attempts"] == 0
    claim = next_claim(cp)
    assert claim.task_id == view["task_id"] and claim.attempt == 1 and claim.token.startswith("1-")
    assert claim.fields["circuit"] == GHZ3 and claim.fields["shots"] == "100"
    assert cp.progress(claim.task_id, "a1", claim.token, "scheduled", {"job_id": "42", "reason": "Priority"})[0] == "ok"
    assert cp.task(claim.task_id)["job_reason"] == "Priority"
    assert cp.progress(claim.task_id, "a1", claim.token, "running", {"job_id": "42"})[0] == "ok"
    result = {"ok": True, "counts": {"000": 50, "111": 50}, "snapshot_id": claim.snapshot_id}
    assert cp.finish(claim.task_id, "a1", claim.token, "completed", result=result) == "ok"
    final = cp.task(claim.task_id)
    assert final["state"] == "completed" and final["attempts"] == 1 and final["job_id"] == "42"
    assert set(final["phases"]) == {"queued", "claimed", "scheduled", "running", "total"}
    assert final["phases"]["total"] == pytest.approx(sum(v for k, v in final["phases"].items() if k != "total"), abs=1e-3)
    assert cp.result(claim.task_id)["counts"] == {"000": 50, "111": 50}
    assert events_of(cp, claim.task_id) == ["queued", "claimed", "scheduled", "running", "completed"]
    # every transition is also on the device events stream, with the owner for projection
    stream = cp.redis.xrange(cp.keys("ideal").events)
    mine = [f["event"] for _, f in stream if f.get("task") == claim.task_id]
    assert mine == ["queued", "claimed", "scheduled", "running", "completed"]
    assert all(f["owner"] == "alice" for _, f in stream if f.get("task") == claim.task_id)
    # the lease is gone and nothing is pending
    assert cp.redis.zcard(cp.keys("ideal").leases) == 0
    assert cp.redis.zcard(cp.keys("ideal").pending) == 0


def test_claim_consumes_its_stream_pointer(seeded):
    cp = seeded
    submit(cp)
    next_claim(cp)
    k = cp.keys("ideal")
    assert cp.redis.xlen(k.queue) == 0
    assert cp.redis.xpending(k.queue, "agents")["pending"] == 0


def test_idempotent_submit_returns_the_same_task(seeded):
    cp = seeded
    a = submit(cp, idempotency_key="job-1")
    b = submit(cp, idempotency_key="job-1")
    c = submit(cp, owner="bob", idempotency_key="job-1")  # keys are per owner
    assert a["task_id"] == b["task_id"] != c["task_id"]
    k = cp.keys("ideal")
    assert cp.redis.zcard(k.pending) == 2 and cp.redis.xlen(k.queue) == 2


def test_stale_fencing_token_is_rejected_and_recorded(seeded):
    cp = seeded
    tid = submit(cp)["task_id"]
    first = next_claim(cp, "zombie")
    # the zombie's lease runs out; the reaper (forced here) puts the task back
    assert cp.recover("ideal", max_attempts=3, by="test", task_ids=[tid], force=True) == [(tid, "requeued", 1)]
    second = next_claim(cp, "fresh")
    assert (first.attempt, second.attempt) == (1, 2) and first.token != second.token
    old, new = first.token, second.token
    # every write of the zombie is refused
    assert cp.progress(tid, "zombie", old)[0] == "fenced"
    assert cp.progress(tid, "zombie", old, "running", {})[0] == "fenced"
    bad = {"ok": True, "counts": {"111": 1}, "snapshot_id": first.snapshot_id}
    assert cp.finish(tid, "zombie", old, "completed", result=bad) == "fenced"
    # a right agent id with an old token is fenced too
    assert cp.finish(tid, "fresh", old, "completed", result=bad) == "fenced"
    assert cp.task(tid)["state"] == "claimed" and cp.result(tid) is None
    good = {"ok": True, "counts": {"000": 1}, "snapshot_id": second.snapshot_id}
    assert cp.finish(tid, "fresh", new, "completed", result=good) == "ok"
    assert cp.result(tid)["counts"] == {"000": 1}
    # and after completion nobody can overwrite it, not even the holder
    assert cp.finish(tid, "zombie", old, "completed", result=bad) == "fenced"
    assert cp.finish(tid, "fresh", new, "failed", reason="x", error="y") == "final"
    assert cp.task(tid)["state"] == "completed" and cp.result(tid)["counts"] == {"000": 1}
    history = cp.history(tid)
    fenced = [e for e in history if e["event"] == "fenced"]
    assert len(fenced) == 5 and {e["agent"] for e in fenced} == {"zombie", "fresh"}
    assert [e["event"] for e in history].count("completed") == 1


@pytest.mark.parametrize("stage", ["queued", "claimed", "scheduled", "running"])
def test_cancel_in_each_state(seeded, stage):
    cp = seeded
    tid = submit(cp)["task_id"]
    claim = None
    if stage != "queued":
        claim = next_claim(cp)
        if stage in ("scheduled", "running"):
            cp.progress(tid, "a1", claim.token, "scheduled", {"job_id": "7"})
        if stage == "running":
            cp.progress(tid, "a1", claim.token, "running", {})
    assert cp.task(tid)["state"] == stage
    view = cp.cancel(tid, by="alice")
    assert view["state"] == "cancelled" and view["cancel"] == {"cancelled": True, "previous": stage}
    k = cp.keys("ideal")
    assert cp.redis.zscore(k.leases, tid) is None and cp.redis.zscore(k.pending, tid) is None
    if claim is not None:
        # the agent learns of it from its next heartbeat and can no longer complete it
        assert cp.progress(tid, "a1", claim.token)[0] == "cancelled"
        assert cp.finish(tid, "a1", claim.token, "completed", result={"counts": {}}) == "cancelled"
        assert cp.result(tid) is None
    else:
        # the pointer left in the stream is skipped by the next claim
        cp.ensure_group("ideal")
        dev, entry, ptid = cp.read_work(["ideal"], "a1", 1, 100)[0]
        assert cp.claim(dev, ptid, "a1", LEASE, entry) is None
    # cancelling again changes nothing
    again = cp.cancel(tid, by="alice")
    assert again["cancel"] == {"cancelled": False, "previous": "cancelled"}
    assert events_of(cp, tid).count("cancelled") == 1


def test_cancel_after_completion_changes_nothing(seeded):
    cp = seeded
    tid = submit(cp)["task_id"]
    c = next_claim(cp)
    cp.finish(tid, "a1", c.token, "completed", result={"counts": {"0": 1}, "snapshot_id": c.snapshot_id})
    view = cp.cancel(tid, by="alice")
    assert view["state"] == "completed" and view["cancel"]["cancelled"] is False


def test_claim_binds_the_current_snapshot_at_claim_time(seeded):
    cp = seeded
    v1 = cp.devices(["ideal"])[0]["snapshot_id"]
    before = submit(cp)["task_id"]
    # device mutation BEFORE the claim: the task must run on the new snapshot
    v2, version = cp.publish("ideal", lambda v: ideal_snapshot(32, version=v))
    assert version == 2 and v2 != v1
    claim = next_claim(cp)
    assert claim.task_id == before and claim.snapshot_id == v2
    # device mutation AFTER the claim: the task keeps the snapshot it was bound to
    v3, _ = cp.publish("ideal", lambda v: ideal_snapshot(32, version=v))
    assert cp.task(before)["snapshot_id"] == v2 != v3
    claimed = [e for e in cp.history(before) if e["event"] == "claimed"][0]
    assert claimed["snapshot"] == v2 and claimed["device_version"] == 2
    # old snapshots stay readable
    assert json.loads(cp.snapshot_bytes("ideal", v1))["version"] == 1
    assert [v for v, _ in cp.snapshot_ids("ideal")] == [1, 2, 3]


def test_pinned_snapshot_is_not_rebound(seeded):
    cp = seeded
    v1 = cp.devices(["ideal"])[0]["snapshot_id"]
    cp.publish("ideal", lambda v: ideal_snapshot(32, version=v))
    tid = submit(cp, snapshot=v1)["task_id"]
    assert next_claim(cp).snapshot_id == v1
    assert cp.task(tid)["pinned"] is True
    with pytest.raises(UnknownSnapshot):
        submit(cp, snapshot="0" * 64)


def test_recover_fails_a_task_after_max_attempts(seeded):
    cp = seeded
    tid = submit(cp)["task_id"]
    for attempt in (1, 2, 3):
        c = next_claim(cp, f"agent{attempt}")
        assert c.attempt == attempt
        verdict = cp.recover("ideal", max_attempts=3, by="test", task_ids=[tid], force=True)[0][1]
        assert verdict == ("requeued" if attempt < 3 else "failed")
    view = cp.task(tid)
    assert view["state"] == "failed" and view["reason"] == "lost" and view["attempts"] == 3
    assert "3 attempts" in view["error"]


def test_recover_leaves_live_leases_alone(seeded):
    cp = seeded
    tid = submit(cp)["task_id"]
    next_claim(cp)
    assert cp.expired("ideal") == []
    assert cp.recover("ideal", max_attempts=3, by="test", task_ids=[tid])[0][1] == "alive"
    assert cp.task(tid)["state"] == "claimed"


def test_recover_picks_up_an_expired_lease(seeded):
    cp = seeded
    tid = submit(cp)["task_id"]
    cp.ensure_group("ideal")
    dev, entry, _ = cp.read_work(["ideal"], "a1", 1, 100)[0]
    assert cp.claim(dev, tid, "a1", 1, entry) is not None  # a 1 ms lease
    deadline_ms = int(cp.redis.zscore(cp.keys("ideal").leases, tid))
    wait_for(lambda: cp.server_time() * 1000 > deadline_ms, 10, "Redis's clock to pass the 1 ms lease")
    assert cp.expired("ideal") == [tid]
    assert cp.recover("ideal", max_attempts=3, by="reaper") == [(tid, "requeued", 1)]
    view = cp.task(tid)
    assert view["state"] == "queued" and view["queue_position"] == 1


def test_queue_positions_follow_submission_order(seeded):
    cp = seeded
    ids = [submit(cp)["task_id"] for _ in range(3)]
    assert [cp.task(t)["queue_position"] for t in ids] == [1, 2, 3]
    next_claim(cp)
    assert [cp.task(t)["queue_position"] for t in ids[1:]] == [1, 2]


def test_draining_device_refuses_new_work(seeded):
    cp = seeded
    cp.set_admin_state("ideal", "draining")
    with pytest.raises(DeviceDraining):
        submit(cp)
    assert cp.devices(["ideal"])[0]["status"] == "draining"


def test_presence_makes_a_device_online(seeded):
    cp = seeded
    assert cp.devices(["fez"])[0]["status"] == "offline"
    assert cp.presence("fez", "a1", 10_000) == 1
    assert cp.devices(["fez"])[0]["status"] == "online"
    assert cp.presence("fez", "a1", 0) == 0
    dev = cp.devices(["fez"])[0]
    assert dev["status"] == "offline" and dev["offline_since"] is not None
    kinds = [f["event"] for _, f in cp.redis.xrange(cp.keys("fez").events)]
    assert "agent_online" in kinds and "agent_offline" in kinds


# ---------------------------------------------------------------- bad input


def _keys_snapshot(cp):
    return sorted(cp.redis.keys("*"))


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"device": "nosuch"}, UnknownDevice, "unknown device 'nosuch'"),
        ({"device": "Bad Name!"}, InvalidRequest, "invalid device name"),
        ({"shots": 0}, InvalidRequest, "at least 1"),
        ({"shots": -5}, InvalidRequest, "at least 1"),
        ({"shots": 10**9}, LimitExceeded, "over the limit"),
        ({"shots": "many"}, InvalidRequest, "whole number"),
        ({"seed": -1}, InvalidRequest, "seed"),
        ({"optimization_level": 7}, InvalidRequest, "optimization_level"),
        ({"circuit": "OPENQASM 2.0;\nqreg q[2];\nfoo q[0];\n"}, CircuitError, ""),
        ({"circuit": "this is not a circuit"}, CircuitError, ""),
        ({"circuit": ""}, CircuitError, "empty"),
        ({"circuit": "// x\n" * 300_000}, LimitExceeded, "bytes"),
        ({"device": "ideal", "circuit": "OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[40];\n"}, LimitExceeded, "qubits"),
        ({"device": "fez", "circuit": "OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[200];\n"}, LimitExceeded, "device has 156"),
        ({"device": "fez", "circuit": "OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[35];\nh q;\n"}, LimitExceeded,
         "acts on 35 qubits, over the simulation limit of 30"),
        ({"circuit": 'OPENQASM 2.0;\ninclude "/etc/passwd";\nqreg q[1];\n'}, CircuitError, ""),
    ],
)
def test_bad_input_gets_one_clear_line_and_writes_nothing(seeded, kwargs, error, words):
    cp = seeded
    before = _keys_snapshot(cp)
    with pytest.raises(error) as info:
        submit(cp, **kwargs)
    message = str(info.value)
    assert words in message
    assert "\n" not in info.value.message and "Traceback" not in message
    assert _keys_snapshot(cp) == before


def test_unknown_task_id(seeded):
    with pytest.raises(TaskNotFound):
        seeded.task("fez.doesnotexist")
    with pytest.raises(TaskNotFound):
        seeded.task("garbage")


def test_qasm2_is_accepted(seeded):
    view = submit(seeded, circuit=BELL_QASM2)
    assert seeded.circuit(view["task_id"])[0] == "qasm2"


def test_scripts_survive_script_flush(seeded):
    cp = seeded
    cp.redis.script_flush()
    assert submit(cp)["state"] == "queued"


def test_unreachable_redis_is_one_clear_line():
    from jupyter_vqpu.core.connection import connect
    from jupyter_vqpu.core.errors import ControlPlaneUnavailable
    from tests.conftest import free_port

    with pytest.raises(ControlPlaneUnavailable) as info:
        connect(f"redis://:secret@127.0.0.1:{free_port()}/0")
    assert "cannot reach the control plane" in info.value.message and "secret" not in str(info.value)


def test_the_redis_client_retries_through_a_restart(redis_server, cp):
    cp.seed(["ideal"])
    redis_server.stop()
    redis_server.start()
    # the AOF kept the device; the client reconnects by itself
    assert cp.devices(["ideal"])[0]["name"] == "ideal"
    assert submit(cp)["state"] == "queued"


def test_eviction_policy_other_than_noeviction_is_warned_about(cp):
    assert cp.check_server() == []
    cp.redis.config_set("maxmemory-policy", "allkeys-lru")
    try:
        warnings = cp.check_server()
    finally:
        cp.redis.config_set("maxmemory-policy", "noeviction")
    assert len(warnings) == 1 and "allkeys-lru" in warnings[0] and "noeviction" in warnings[0]


def test_a_queued_task_says_when_no_agent_serves_its_device(seeded):
    cp = seeded
    tid = submit(cp)["task_id"]
    assert cp.task(tid)["notice"].startswith("no agent online for ideal since ")
    cp.presence("ideal", "a1", 10_000)
    assert "notice" not in cp.task(tid)


def test_declared_but_idle_qubits_do_not_count_against_the_limit(seeded):
    """A circuit laid out on all 156 qubits of Fez that touches three of them is fine."""
    body = "".join(f"cx q[{a}], q[{b}];\n" for a, b in ((3, 4), (4, 5)))
    view = submit(seeded, device="fez",
                  circuit=f'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[156];\nh q[3];\n{body}')
    assert view["state"] == "queued"


def test_claims_follow_the_queue_order_and_a_requeued_task_goes_first(seeded):
    cp = seeded
    a, b, c = (submit(cp)["task_id"] for _ in range(3))
    cp.ensure_group("ideal")
    first = next_claim_in_order(cp, "a1")
    assert first.task_id == a
    cp.recover("ideal", max_attempts=3, by="test", task_ids=[a], force=True)
    assert cp.task(a)["queue_position"] == 1 and cp.task(b)["queue_position"] == 2
    # the pointer the reaper added sits behind b's and c's; the claim still takes a
    assert [next_claim_in_order(cp, "a2").task_id for _ in range(3)] == [a, b, c]
    # every pointer was consumed by exactly one claim
    assert cp.redis.xlen(cp.keys("ideal").queue) == 0
    assert cp.redis.xpending(cp.keys("ideal").queue, "agents")["pending"] == 0


def next_claim_in_order(cp: ControlPlane, agent: str):
    dev, entry, _ = cp.read_work(["ideal"], agent, 1, 100)[0]
    return cp.claim_next(dev, agent, LEASE, entry)


def test_a_leftover_pointer_of_a_cancelled_task_is_consumed_without_a_claim(seeded):
    cp = seeded
    tid = submit(cp)["task_id"]
    cp.cancel(tid, by="alice")
    cp.ensure_group("ideal")
    dev, entry, _ = cp.read_work(["ideal"], "a1", 1, 100)[0]
    assert cp.claim_next(dev, "a1", LEASE, entry) is None
    assert cp.redis.xlen(cp.keys("ideal").queue) == 0
