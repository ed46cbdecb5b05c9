"""Fast checks of the lifecycle scripts on fakeredis (the real-Redis tests in tests/integration are the proof)."""

from __future__ import annotations

import fakeredis
import pytest

from jupyter_vqpu.core.control import ControlPlane
from jupyter_vqpu.core.snapshot import ideal_snapshot
from tests.conftest import GHZ3


@pytest.fixture
def cp():
    plane = ControlPlane(fakeredis.FakeRedis(decode_responses=True))
    plane.publish("ideal", lambda v: ideal_snapshot(8, version=v))
    return plane


def test_submit_claim_finish_and_fencing(cp):
    tid = cp.submit(owner="u", device="ideal", circuit=GHZ3, shots=10, idempotency_key="k")["task_id"]
    assert cp.submit(owner="u", device="ideal", circuit=GHZ3, shots=10, idempotency_key="k")["task_id"] == tid
    cp.ensure_group("ideal")
    (dev, entry, ptid), = cp.read_work(["ideal"], "a", 1, 10)
    claim = cp.claim(dev, ptid, "a", 30_000, entry)
    assert claim.attempt == 1 and claim.task_id == tid
    assert cp.finish(tid, "a", "1-00000000", "completed", result={"counts": {}}) == "fenced"
    assert cp.finish(tid, "a", claim.token, "completed", result={"counts": {"0": 10}}) == "ok"
    assert [e["event"] for e in cp.history(tid)] == ["queued", "claimed", "fenced", "completed"]
