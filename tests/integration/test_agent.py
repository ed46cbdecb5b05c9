"""Agents against a real redis-server: races, lifecycle end to end, fencing of zombies."""

from __future__ import annotations

from collections import Counter

import pytest

from jupyter_vqpu.core.client import Client
from tests.agents import EchoExecutor, HoldExecutor, Running, wait_for
from tests.conftest import GHZ3

pytestmark = pytest.mark.redis


def test_four_agents_racing_over_200_tasks_complete_each_exactly_once(seeded, redis_url, tmp_path):
    cp = seeded
    client = Client(control=cp, owner="racer")
    ids = [client.submit(GHZ3, device="ideal", shots=10).id for _ in range(200)]
    agents = [Running(redis_url, EchoExecutor(), tmp_path / f"a{i}", agent_id=f"agent-{i}", capacity=4)
              for i in range(4)]
    try:
        for tid in ids:
            assert cp.wait(tid, timeout=60)["state"] == "completed"
    finally:
        for a in agents:
            a.stop()
    completions = Counter()
    claimers = Counter()
    for tid in ids:
        events = cp.history(tid)
        completions[tid] = sum(1 for e in events if e["event"] == "completed")
        claims = [e for e in events if e["event"] == "claimed"]
        assert len(claims) == 1 and claims[0]["attempt"] == 1
        claimers[claims[0]["agent"]] += 1
        assert not [e for e in events if e["event"] == "fenced"]
    assert set(completions.values()) == {1}
    assert sum(claimers.values()) == 200
    assert len(claimers) >= 2, f"the work should spread over the agents: {claimers}"
    assert sum(a.agent.stats["completed"] for a in agents) == 200


def test_cancel_reaches_the_executor_of_a_running_task(seeded, redis_url, tmp_path):
    cp = seeded
    ex = HoldExecutor()
    running = Running(redis_url, ex, tmp_path)
    try:
        tid = Client(control=cp).submit(GHZ3, device="ideal", shots=10).id
        wait_for(lambda: cp.task(tid)["state"] == "running", what="running")
        cp.cancel(tid, by="me")
        wait_for(lambda: tid in ex.cancelled, what="executor cancel")  # via the next heartbeat
        ex.release(tid, cp.task(tid)["snapshot_id"])  # a late result from the killed job
        assert cp.task(tid)["state"] == "cancelled" and cp.result(tid) is None
        assert running.agent.held == {}
    finally:
        running.stop()


def test_a_zombie_agents_result_is_never_visible(seeded, redis_url, tmp_path):
    """An agent stalls past its lease; the task is rerun elsewhere; the zombie's late result is fenced."""
    cp = seeded
    zombie_ex = HoldExecutor()
    zombie = Running(redis_url, zombie_ex, tmp_path / "z", agent_id="zombie", lease_s=1.0, renew_s=30, capacity=1,
                     reap_every_s=3600)
    tid = Client(control=cp).submit(GHZ3, device="ideal", shots=10).id
    zombie_ex.submitted.wait(10)
    # the zombie holds the task but renews nothing (renew_s=30): its 1 s lease runs out
    wait_for(lambda: cp.expired("ideal") == [tid], what="lease expiry")
    fresh = Running(redis_url, EchoExecutor(), tmp_path / "f", agent_id="fresh", reap_every_s=0.2)
    try:
        assert cp.wait(tid, timeout=30)["state"] == "completed"
        zombie_ex.release(tid, cp.task(tid)["snapshot_id"])
        assert cp.result(tid)["counts"] == {"0": 10}  # the fresh attempt's, not the zombie's {"1": 1}
        events = cp.history(tid)
        assert [e["event"] for e in events].count("completed") == 1
        fenced = [e for e in events if e["event"] == "fenced"]
        zombie_claim = next(e for e in events if e["event"] == "claimed" and e["agent"] == "zombie")
        assert fenced and fenced[-1]["agent"] == "zombie" and fenced[-1]["token"] == zombie_claim["token"]
        assert cp.task(tid)["attempts"] == 2
    finally:
        fresh.stop()
        zombie.stop()


def test_agent_drains_on_stop_and_hands_back_what_it_holds(seeded, redis_url, tmp_path):
    cp = seeded
    ex = HoldExecutor()
    running = Running(redis_url, ex, tmp_path, drain_timeout_s=0.5)
    tid = Client(control=cp).submit(GHZ3, device="ideal", shots=10).id
    ex.submitted.wait(10)
    running.stop()
    view = cp.task(tid)
    assert view["state"] == "queued" and tid in ex.cancelled
    assert cp.devices(["ideal"])[0]["status"] == "offline"


def test_a_lost_job_is_handed_back_at_once(seeded, redis_url, tmp_path):
    """An executor that loses a job (its allocation died) gets the task requeued without waiting for the lease."""
    cp = seeded
    ex = HoldExecutor()
    running = Running(redis_url, ex, tmp_path, capacity=1, drain_timeout_s=0.5)
    try:
        tid = Client(control=cp).submit(GHZ3, device="ideal", shots=10).id
        ex.submitted.wait(10)
        ex.submitted.clear()
        ex.reporter.lost(ex.jobs[tid], "the pilot allocation ended")
        wait_for(lambda: cp.task(tid)["attempts"] == 2, 30, "the second attempt")
        requeued = [e for e in cp.history(tid) if e["event"] == "queued" and e.get("reason") == "lease_expired"]
        assert len(requeued) == 1 and requeued[0]["lost_agent"] == running.agent.cfg.agent_id
    finally:
        running.stop()
