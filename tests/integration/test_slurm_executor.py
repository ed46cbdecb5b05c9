"""The Slurm executor against a real single-node Slurm (.ci/slurm-up.sh).

Jobs run ``tests.integration.fake_runner`` instead of ``jupyter_vqpu_agent.runner`` (no
Qiskit needed); task.json options steer it (sleep, exit, no_result). Every
wait is a poll with a deadline. The time-limit case needs Slurm's one-minute
minimum plus its 30 s enforcement period, so its job is submitted when the
module starts and checked by the last test, while the others run.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from jupyter_vqpu_agent import bundle
from jupyter_vqpu_agent.executors.base import Job
from jupyter_vqpu_agent.executors.slurm import SlurmExecutor
from tests.slurm_support import Recorder, ci_config, kinds, make_job, scontrol_state
from tests.support import wait_for

pytestmark = pytest.mark.slurm


@pytest.fixture
def root(slurm_cluster) -> Path:
    return slurm_cluster["root"]


@pytest.fixture
def executor():
    made: list[SlurmExecutor] = []

    def make(**kw) -> tuple[SlurmExecutor, Recorder]:
        ex = SlurmExecutor(ci_config(**kw))
        rec = Recorder()
        ex.start(rec)
        made.append(ex)
        return ex, rec

    yield make
    for ex in made:
        ex.shutdown()


def test_job_runs_end_to_end(root, executor, monkeypatch):
    monkeypatch.setenv("VQPU_REDIS_URL", "redis://:secret@controlplane:6379/0")
    monkeypatch.setenv("https_proxy", "http://proxy:3128")
    ex, rec = executor()
    job = make_job(root, name="bell $(touch pwned)", sleep=1)
    ex.submit(job)
    jid = job.handle["slurm_job_id"]
    assert (job.bundle_dir / "slurm_job_id").read_text().strip() == jid
    done = rec.wait_for(job, "finished", timeout=60)
    events = rec.of(job)
    assert kinds(events) == ["scheduled", "running", "finished"], events
    assert events[0][2] == {"executor": "slurm", "job_id": jid, "reason": "submitted"}
    assert all(set(e[2]) == {"executor", "job_id", "reason"} for e in events if e[0] == "scheduled")
    assert [e[2] for e in events if e[0] == "running"] == [{"executor": "slurm", "job_id": jid, "node": "localhost"}]
    result = done[2]
    assert result["ok"] and result["counts"] == {"00": 50, "11": 50} and result["snapshot_id"] == "snap-1"
    assert result["env"]["SLURM_JOB_ID"] == jid
    assert result["env"]["VQPU_TASK_NAME"] == "bell $(touch pwned)"
    assert result["env"]["VQPU_REDIS_URL"] == "" and result["env"]["http_proxy"] == ""
    assert "fake runner for" in (job.bundle_dir / "runner.out").read_text()
    assert not (job.bundle_dir / "pwned").exists()
    assert scontrol_state(jid) == "COMPLETED"
    assert ex.calls["sbatch"] == 1 and ex.tracked() == []


def test_cancel_pending_job(root, executor):
    ex, rec = executor(extra_sbatch=["--hold"])  # held: stays PENDING (JobHeldUser)
    job = make_job(root, name="held")
    ex.submit(job)
    jid = job.handle["slurm_job_id"]
    rec.wait_for(job, "scheduled", pred=lambda e: e[2]["reason"] == "JobHeldUser")
    assert scontrol_state(jid) == "PENDING"
    ex.cancel(job)
    wait_for(lambda: ex.tracked() == [], 30, "the poller to drop the cancelled job")
    assert scontrol_state(jid) == "CANCELLED"
    assert [e[2]["reason"] for e in rec.of(job)][-1] == "JobHeldUser"  # nothing after the cancel
    assert kinds(rec.of(job)) == ["scheduled"]
    ex.cancel(job)  # idempotent
    assert bundle.read_result(job.bundle_dir) is None


def test_cancel_running_job(root, executor):
    ex, rec = executor()
    job = make_job(root, name="long", sleep=120)
    ex.submit(job)
    jid = job.handle["slurm_job_id"]
    rec.wait_for(job, "running")
    wait_for(lambda: "fake runner for" in bundle.tail(job.bundle_dir / "runner.out"), 30, "the runner to start")
    ex.cancel(job)
    wait_for(lambda: ex.tracked() == [], 30, "the poller to drop the cancelled job")
    assert scontrol_state(jid) == "CANCELLED"
    assert kinds(rec.of(job)) == ["scheduled", "running"]
    assert bundle.read_result(job.bundle_dir) is None


def test_job_exiting_3_fails_with_stderr(root, executor):
    ex, rec = executor()
    job = make_job(root, name="exit3", exit=3, stderr="boom: the circuit exploded")
    ex.submit(job)
    _, _, reason, message = rec.wait_for(job, "failed", timeout=60)
    assert reason == "job_failed"
    assert f"Slurm job {job.handle['slurm_job_id']} failed with exit code 3" in message
    assert "boom: the circuit exploded" in message and "\n" not in message
    assert kinds(rec.of(job)) == ["scheduled", "running", "failed"]


def test_job_without_result_is_a_runner_error(root, executor):
    ex, rec = executor()
    job = make_job(root, name="noresult", no_result=True)
    ex.submit(job)
    _, _, reason, message = rec.wait_for(job, "failed", timeout=60)
    assert reason == "runner_error"
    assert message.startswith("the runner ended without writing a result")
    assert "leaving without a result" in message


def test_cancel_by_someone_else_is_reported(root, executor):
    ex, rec = executor()
    job = make_job(root, name="admin-cancel", sleep=120)
    ex.submit(job)
    rec.wait_for(job, "running")
    subprocess.run(["scancel", job.handle["slurm_job_id"]], check=True, timeout=30)
    _, _, reason, message = rec.wait_for(job, "failed", timeout=30)
    assert reason == "scheduler_cancelled" and "cancelled outside" in message


def test_sbatch_refusal_is_reported(root, executor):
    ex, rec = executor(partition="no-such-partition")
    job = make_job(root, name="bad-partition")
    ex.submit(job)
    _, _, reason, message = rec.wait_for(job, "failed", timeout=5)
    assert reason == "scheduler_failed" and "partition" in message.lower()
    assert ex.tracked() == [] and "slurm_job_id" not in job.handle


def test_reattach_after_agent_restart(root, executor):
    first, rec1 = executor()
    job = make_job(root, name="survivor", sleep=4)
    first.submit(job)
    jid = job.handle["slurm_job_id"]
    rec1.wait_for(job, "running")
    first.shutdown()  # the agent goes away; the Slurm job does not

    second, rec2 = executor()
    again = Job(task_id=job.task_id, attempt=1, bundle_dir=job.bundle_dir, timeout_s=300)
    assert second.reattach(again)
    assert again.handle["slurm_job_id"] == jid
    done = rec2.wait_for(again, "finished", timeout=60)
    assert done[2]["ok"]
    assert [e[0] for e in rec2.of(again)] == ["running", "finished"]
    assert kinds(rec1.of(job)) == ["scheduled", "running"]
    # Submitted exactly once: one sbatch call, one Slurm job with this name.
    assert first.calls["sbatch"] == 1 and second.calls["sbatch"] == 0
    name = f"vqpu-survivor-{job.task_id}-a1"
    out = subprocess.run(["squeue", "-h", "-t", "all", "-n", name, "-o", "%i"], capture_output=True, text=True,
                         timeout=30)
    assert out.stdout.split() == [jid]
    # A bundle that was never submitted cannot be re-attached.
    assert not second.reattach(make_job(root, name="never"))


def test_time_limit_reports_timeout(slurm_cluster):
    """Submitted at module start with a one-minute limit; Slurm enforces limits every 30 s."""
    ex, rec, job = slurm_cluster["timeout"]
    _, _, reason, message = rec.wait_for(job, "failed", timeout=150)
    assert reason == "timeout"
    assert "ran over its time limit (00:01:00)" in message
    assert scontrol_state(job.handle["slurm_job_id"]) == "TIMEOUT"
    assert kinds(rec.of(job)) == ["scheduled", "running", "failed"]
