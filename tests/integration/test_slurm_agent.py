# ruff: noqa: F811  (the slurm_cluster fixture is imported, and pytest passes it by name)
"""The agent with the Slurm executor: real Redis, real single-node Slurm, the real runner where it matters."""

from __future__ import annotations

import pytest

from jupyter_vqpu.core.client import Client
from tests.agents import Running, wait_for
from tests.conftest import GHZ3
from tests.slurm_support import fake, scontrol_state, slurm

pytestmark = [pytest.mark.slurm, pytest.mark.redis]


def test_a_fez_task_runs_end_to_end_through_sbatch(slurm_cluster, seeded, redis_url, tmp_path):
    running = Running(redis_url, slurm(), tmp_path, devices=("fez",))
    try:
        task = Client(control=seeded).submit(GHZ3, device="fez", shots=1024, seed=3)
        record = task.result(timeout=240)
    finally:
        running.stop()
    assert record["state"] == "completed" and sum(record["counts"].values()) == 1024
    assert record["executor"] == "slurm" and record["job_id"].isdigit()
    assert scontrol_state(record["job_id"]) == "COMPLETED"
    events = [e["event"] for e in seeded.history(task.id)]
    assert events[0] == "queued" and events[1] == "claimed" and events[-1] == "completed"
    assert "scheduled" in events and "running" in events


@pytest.mark.parametrize("where", ["pending", "running"])
def test_cancel_reaches_scancel(slurm_cluster, seeded, redis_url, tmp_path, where):
    extra = ["--begin=now+3600"] if where == "pending" else []
    running = Running(redis_url, fake(extra_sbatch=extra), tmp_path, devices=("ideal",))
    try:
        task = Client(control=seeded).submit(GHZ3, device="ideal", shots=10, options={"sleep": 120})
        target = "scheduled" if where == "pending" else "running"
        view = wait_for(lambda: (v := seeded.task(task.id))["state"] == target and v["job_id"] and v, 60, target)
        job_id = view["job_id"]
        assert scontrol_state(job_id) == ("PENDING" if where == "pending" else "RUNNING")
        task.cancel()
        wait_for(lambda: scontrol_state(job_id) == "CANCELLED", 60, "scancel")
        wait_for(lambda: running.agent.held == {}, 30, "the agent to let go")
        assert seeded.task(task.id)["state"] == "cancelled" and seeded.result(task.id) is None
    finally:
        running.stop()


def test_a_failing_job_fails_the_task_with_its_reason(slurm_cluster, seeded, redis_url, tmp_path):
    running = Running(redis_url, fake(), tmp_path, devices=("ideal",))
    try:
        task = Client(control=seeded).submit(GHZ3, device="ideal", shots=10,
                                             options={"exit": 3, "stderr": "boom: the simulator fell over"})
        view = seeded.wait(task.id, timeout=120)
    finally:
        running.stop()
    assert view["state"] == "failed" and view["reason"] == "job_failed"
    assert "3" in view["error"] and "boom: the simulator fell over" in view["error"]


def test_a_restarted_agent_reattaches_instead_of_resubmitting(slurm_cluster, seeded, redis_url, tmp_path):
    first = Running(redis_url, fake(), tmp_path, devices=("ideal",), agent_id="hpc-agent", drain_timeout_s=0.1)
    task = Client(control=seeded).submit(GHZ3, device="ideal", shots=10, options={"sleep": 6})
    view = wait_for(lambda: (v := seeded.task(task.id))["state"] == "running" and v, 60, "running")
    job_id = view["job_id"]
    first.stop()  # SIGTERM-like drain: the Slurm job keeps running
    assert scontrol_state(job_id) in ("RUNNING", "COMPLETING", "COMPLETED")
    second = Running(redis_url, fake(), tmp_path, devices=("ideal",), agent_id="hpc-agent")
    try:
        final = seeded.wait(task.id, timeout=120)
    finally:
        second.stop()
    assert final["state"] == "completed" and final["attempts"] == 1 and final["job_id"] == job_id
    history = seeded.history(task.id)
    assert [e["event"] for e in history].count("claimed") == 1
    assert {e.get("job_id") for e in history if e["event"] == "scheduled"} == {job_id}
