"""Fair share and per-submission limits, on a real redis-server.

The claim order is the pending set's order; submit.lua places each task by
start-time fair queuing, so these tests claim through the same path agents use
(``claim_next``) and check who gets served when.
"""

from __future__ import annotations

import threading

import pytest

from jupyter_vqpu.core.control import Limits
from jupyter_vqpu.core.errors import LimitExceeded
from tests.agents import EchoExecutor, Running, wait_for
from tests.conftest import BELL_QASM2

pytestmark = pytest.mark.redis


def submit(cp, owner: str, n: int = 1, device: str = "ideal") -> list[dict]:
    return [cp.submit(owner=owner, device=device, circuit=BELL_QASM2, shots=10) for _ in range(n)]


def claim_all(cp, n: int, device: str = "ideal") -> list[str]:
    out = []
    for _ in range(n):
        c = cp.claim_next(device, "agent-1", 30_000, "")
        assert c is not None
        out.append(c.task_id)
    return out


def test_ten_newcomers_are_served_within_the_first_claims_after_a_500_task_backlog(seeded):
    cp = seeded
    hog = [v["task_id"] for v in submit(cp, "hog", 500)]
    newcomers = {v["task_id"]: f"student{i}" for i in range(10) for v in submit(cp, f"student{i}")}
    order = claim_all(cp, 20)
    positions = [order.index(t) + 1 for t in newcomers]
    assert max(positions) <= 11, positions  # one hog task (queued first at the same tag), then every newcomer
    # the hog's backlog is untouched in its own order
    assert [t for t in order if t in set(hog)] == hog[: len(order) - len(newcomers)]


def test_the_queue_position_a_user_sees_is_the_claim_order(seeded):
    cp = seeded
    submit(cp, "hog", 30)
    late = submit(cp, "late")[0]
    shown = cp.task(late["task_id"])["queue_position"]
    assert late["queue_position"] == shown  # the submit reply and a later read agree
    assert shown < 30  # the newcomer is not behind the whole backlog
    order = claim_all(cp, 31)
    assert order.index(late["task_id"]) + 1 == shown


def test_a_cancelled_backlog_does_not_push_its_owner_to_the_back(seeded):
    cp = seeded
    submit(cp, "other", 5)
    for v in submit(cp, "quitter", 50):
        cp.cancel(v["task_id"], by="quitter")
    again = submit(cp, "quitter")[0]
    assert again["queue_position"] <= 2  # starts at the clock again, beside 'other''s first task


def test_owners_alternate_while_both_have_work(seeded):
    cp = seeded
    a = {v["task_id"] for v in submit(cp, "alice", 6)}
    submit(cp, "bob", 6)
    order = ["a" if t in a else "b" for t in claim_all(cp, 12)]
    assert "".join(order) == "ab" * 6


def test_a_requeued_task_goes_back_to_the_front(seeded):
    cp = seeded
    submit(cp, "alice", 3)
    first = cp.claim_next("ideal", "agent-1", 30_000, "")
    assert cp.recover("ideal", max_attempts=3, by="test", task_ids=[first.task_id], force=True)
    assert cp.task(first.task_id)["queue_position"] == 1
    assert claim_all(cp, 1) == [first.task_id]


def test_racing_agents_each_claim_a_distinct_task_from_the_window(seeded):
    cp = seeded
    submit(cp, "alice", 40)
    got: list[str] = []
    lock = threading.Lock()

    def agent(name: str) -> None:
        while True:
            c = cp.claim_next("ideal", name, 30_000, "")
            if c is None:
                return
            with lock:
                got.append(c.task_id)

    threads = [threading.Thread(target=agent, args=(f"agent-{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(got) == 40 and len(set(got)) == 40
    assert all(cp.task(t)["attempts"] == 1 for t in got)


def test_a_real_agent_serves_newcomers_before_the_backlog_ends(seeded, redis_url, tmp_path):
    cp = seeded
    hog = [v["task_id"] for v in submit(cp, "hog", 60)]
    newcomer = submit(cp, "newcomer")[0]["task_id"]
    running = Running(redis_url, EchoExecutor(), tmp_path, capacity=1)
    try:
        wait_for(lambda: cp.task(newcomer)["state"] == "completed", 60, "the newcomer's task")
        # At most the hog's first task and the one in flight went before it.
        done = [t for t in hog if cp.task(t)["state"] == "completed"]
        claimed_at = cp.task(newcomer)["claimed_at"]
        before = [t for t in hog if (cp.task(t)["claimed_at"] or 1e18) < claimed_at]
        assert len(before) <= 2, (len(before), len(done))
    finally:
        running.stop()


def test_group_limits_replace_the_defaults_for_one_submission(seeded):
    cp = seeded
    tight = Limits(max_shots=100, max_qubits=1, max_circuit_bytes=1000, max_queued_per_owner=2)
    with pytest.raises(LimitExceeded, match="shots=200 is over the limit of 100"):
        cp.submit(owner="s", device="ideal", circuit=BELL_QASM2, shots=200, limits=tight)
    with pytest.raises(LimitExceeded, match="acts on 2 qubits, over the simulation limit of 1"):
        cp.submit(owner="s", device="ideal", circuit=BELL_QASM2, shots=10, limits=tight)
    with pytest.raises(LimitExceeded, match="over the limit of (max_bytes=)?50"):
        cp.submit(owner="s", device="ideal", circuit=BELL_QASM2, shots=10, limits=Limits(max_circuit_bytes=50))
    one_qubit = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\ncreg c[1];\nh q[0];\nmeasure q -> c;'
    for _ in range(2):
        cp.submit(owner="s", device="ideal", circuit=one_qubit, shots=10, limits=tight)
    with pytest.raises(LimitExceeded, match="already have 2 tasks queued on ideal"):
        cp.submit(owner="s", device="ideal", circuit=one_qubit, shots=10, limits=tight)
    # the control plane's own (default) limits still apply to other submissions
    cp.submit(owner="s", device="ideal", circuit=BELL_QASM2, shots=200)
    assert len(cp.tasks("s")) == 3


def test_submissions_per_minute_are_limited_per_user_across_devices(seeded):
    cp = seeded
    lim = Limits(submissions_per_minute=3)
    cp.submit(owner="s", device="ideal", circuit=BELL_QASM2, shots=10, limits=lim)
    cp.submit(owner="s", device="fez", circuit=BELL_QASM2, shots=10, limits=lim)
    cp.submit(owner="s", device="ideal", circuit=BELL_QASM2, shots=10, limits=lim)
    with pytest.raises(LimitExceeded) as info:
        cp.submit(owner="s", device="fez", circuit=BELL_QASM2, shots=10, limits=lim)
    assert "you submitted 3 tasks in the last minute (the limit)" in info.value.message
    assert "wait" in info.value.hint and " s " in info.value.hint
    assert len(cp.tasks("s")) == 3  # the rejected one left nothing behind
    cp.submit(owner="other", device="fez", circuit=BELL_QASM2, shots=10, limits=lim)  # per user


def test_a_watcher_sees_its_queue_position_move_with_other_users_claims(seeded):
    cp = seeded
    submit(cp, "a")
    submit(cp, "b")
    mine = submit(cp, "c")[0]["task_id"]
    watch = cp.watch(mine, timeout=60)
    assert next(watch)["queue_position"] == 3
    claim_all(cp, 1)  # a's task: an event about a, none about c
    assert next(watch)["queue_position"] == 2
    claim_all(cp, 1)
    assert next(watch)["queue_position"] == 1
