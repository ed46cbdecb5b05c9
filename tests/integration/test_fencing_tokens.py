"""Fencing tokens are unique per claim, not per attempt number (real redis-server).

A failover to a replica that had not yet received a claim rolls the task back to
its pre-claim state; the same claim made again gets the same attempt number. When
the token was the attempt number, both runs of the task passed the fence (the
chaos test saw 6 tasks run twice under one agent and token). claim.lua now mints
``<attempt>-<nonce>``: these tests roll a task back with DUMP/RESTORE of every key
the claim wrote and claim it again.
"""

from __future__ import annotations

import pytest
import redis

from tests.conftest import GHZ3


def _submit(cp) -> str:
    tid = cp.submit(owner="ada", device="ideal", circuit=GHZ3, shots=10)["task_id"]
    cp.ensure_group("ideal")
    return tid


def _rollback_point(cp, redis_url, tid):
    """What a replica that missed the claim holds: every key claim.lua writes, except the history
    (kept here so that the test can compare against every earlier claim)."""
    k = cp.keys("ideal")
    raw = redis.Redis.from_url(redis_url)  # bytes: DUMP's payload is not text
    dumps = {key: raw.dump(key) for key in (k.task(tid), k.pending, k.leases, k.device)}

    def restore():
        for key, blob in dumps.items():
            raw.delete(key)
            if blob is not None:
                raw.restore(key, 0, blob)

    return restore


def test_a_claim_replayed_after_a_rollback_gets_a_new_token(seeded, redis_url):
    cp = seeded
    tid = _submit(cp)
    restore = _rollback_point(cp, redis_url, tid)
    claims = []
    for _ in range(4):  # the same claim, replayed after each "failover"
        restore()
        assert cp.task(tid)["state"] == "queued" and cp.task(tid)["attempts"] == 0
        claims.append(cp.claim_next("ideal", "agent-1", 60_000, ""))
    assert [c.attempt for c in claims] == [1, 1, 1, 1]  # the attempt number repeats...
    assert len({c.token for c in claims}) == 4  # ...the token never does
    recorded = [e for e in cp.history(tid) if e["event"] == "claimed"]
    assert [e["token"] for e in recorded] == [c.token for c in claims]  # each recorded in the history
    assert all(e["attempt"] == 1 for e in recorded)
    assert cp.redis.hget(cp.keys("ideal").task(tid), "token") == claims[-1].token
    # only the claim that stands may write; the earlier runs under the same agent and attempt are fenced
    result = {"ok": True, "counts": {"000": 10}, "snapshot_id": claims[-1].snapshot_id}
    for old in claims[:-1]:
        assert cp.progress(tid, "agent-1", old.token, "running", {})[0] == "fenced"
        assert cp.finish(tid, "agent-1", old.token, "completed", result=result) == "fenced"
        assert cp.release(tid, "agent-1", old.token, "disk full", max_handbacks=3)[0] == "fenced"
    assert cp.task(tid)["state"] == "claimed" and cp.result(tid) is None
    assert cp.finish(tid, "agent-1", claims[-1].token, "completed", result=result) == "ok"
    fenced = [e for e in cp.history(tid) if e["event"] == "fenced"]
    assert len(fenced) == 9 and {e["token"] for e in fenced} == {c.token for c in claims[:-1]}


@pytest.mark.parametrize("forge", ["attempt", "prefix", "other_nonce", "padded"])
def test_every_fenced_script_compares_the_whole_token(seeded, forge):
    cp = seeded
    tid = _submit(cp)
    claim = cp.claim_next("ideal", "agent-1", 60_000, "")
    attempt, nonce = claim.token.split("-", 1)
    bad = {"attempt": attempt, "prefix": claim.token[:-1], "other_nonce": f"{attempt}-{'0' * len(nonce)}",
           "padded": claim.token + "0"}[forge]
    assert cp.progress(tid, "agent-1", bad)[0] == "fenced"
    assert cp.progress(tid, "agent-1", bad, "running", {})[0] == "fenced"
    assert cp.finish(tid, "agent-1", bad, "failed", reason="x", error="y") == "fenced"
    assert cp.release(tid, "agent-1", bad, "disk full", max_handbacks=3)[0] == "fenced"
    assert cp.task(tid)["state"] == "claimed"
    assert cp.progress(tid, "agent-1", claim.token, "running", {})[0] == "ok"


def test_the_held_claim_an_agent_reattaches_to_carries_the_token(seeded):
    cp = seeded
    tid = _submit(cp)
    claim = cp.claim_next("ideal", "agent-1", 60_000, "")
    (held,) = cp.held_by("ideal", "agent-1")
    assert (held.task_id, held.token, held.attempt) == (tid, claim.token, 1)
    assert cp.heartbeat([(tid, held.token)], "agent-1", 60_000) == {tid: "ok"}


@pytest.mark.parametrize("nonce", ["", "xyz12345", "ABCDEF12", "1234567", "0" * 33])
def test_claim_refuses_a_malformed_nonce(seeded, nonce):
    cp = seeded
    tid = _submit(cp)
    with pytest.raises(redis.ResponseError, match="nonce"):
        cp.scripts.call("claim", cp.keys("ideal"), agent="a", lease_ms=1000, group="agents", entry_id="",
                        events_maxlen=100, consume_on_skip=0, nonce=nonce, each=[{"task_id": tid}])
    assert cp.task(tid)["state"] == "queued" and cp.task(tid)["attempts"] == 0
