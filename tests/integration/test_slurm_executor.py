"""The Slurm executor against a real single-node Slurm (.ci/slurm-up.sh).

Jobs run ``tests.integration.fake_runner`` instead of ``jupyter_vqpu_agent.runner`` (no
Qiskit needed); task.json options steer it (sleep, exit, no_result). Every
wait is a poll with a deadline. The time-limit case needs Slurm's one-minute
minimum plus its 30 s enforcement period, so its job is submitted when the
module starts and checked by the last test, while the others run.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from jupyter_vqpu_agent import bundle
from jupyter_vqpu_agent.executors.base import Job
from jupyter_vqpu_agent.executors.slurm import SlurmConfig, SlurmExecutor

from tests.conftest import ensure_slurm, stop_slurm

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
RUNNER = "tests.integration.fake_runner"


def scontrol_state(job_id: str) -> str:
    out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=10)
    for word in out.stdout.split():
        if word.startswith("JobState="):
            return word.split("=", 1)[1]
    return ""


class Recorder:
    """A thread-safe Reporter that remembers everything, with deadline waits."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.cv = threading.Condition()

    def _add(self, *event) -> None:
        with self.cv:
            self.events.append(event)
            self.cv.notify_all()

    def scheduled(self, job, detail):
        self._add("scheduled", job.task_id, detail)

    def running(self, job, detail):
        self._add("running", job.task_id, detail)

    def finished(self, job, result):
        self._add("finished", job.task_id, result)

    def failed(self, job, reason, message):
        self._add("failed", job.task_id, reason, message)

    def of(self, job: Job) -> list[tuple]:
        with self.cv:
            return [e for e in self.events if e[1] == job.task_id]

    def wait_for(self, job: Job, kind: str, timeout: float = 30, pred=lambda e: True) -> tuple:
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for e in self.events:
                    if e[1] == job.task_id and e[0] == kind and pred(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {kind} for {job.task_id} within {timeout} s; saw {self.of(job)}")
                self.cv.wait(left)


def kinds(events: list[tuple]) -> list[str]:
    """Event kinds with repeated "scheduled" (pending-reason updates) folded into one."""
    out: list[str] = []
    for e in events:
        if not (out and out[-1] == e[0] == "scheduled"):
            out.append(e[0])
    return out


def wait_until(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def make_job(root: Path, name: str = "", timeout_s: float = 300, **options) -> Job:
    task_id = f"fez.{uuid.uuid4().hex[:16].upper()}"
    d = root / task_id / "attempt-1"
    spec = bundle.TaskSpec(task_id=task_id, device="fez", attempt=1, snapshot_id="snap-1", shots=100,
                           circuit_format="qasm3", options=options)
    bundle.stage(d, spec, b'{"name": "fez"}', "OPENQASM 3.0;\n")
    return Job(task_id=task_id, attempt=1, bundle_dir=d, timeout_s=timeout_s, name=name)


def config(**kw) -> SlurmConfig:
    base = dict(runner_module=RUNNER, poll_interval_s=0.2, time_limit="00:05:00", pythonpath=str(REPO),
                python=sys.executable)
    base.update(kw)
    return SlurmConfig(**base)


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A Slurm that answers: the running one, or one .ci/slurm-up.sh starts (and .ci/slurm-down.sh stops).

    Also submits the time-limit job early (see the module docstring)."""
    started = ensure_slurm()
    root = tmp_path_factory.mktemp("slurm-bundles")
    early = SlurmExecutor(config(time_limit="1"))  # one minute: Slurm's minimum
    early_rec = Recorder()
    early.start(early_rec)
    timeout_job = make_job(root, name="over-time", sleep=600)
    early.submit(timeout_job)
    yield {"root": root, "timeout": (early, early_rec, timeout_job)}
    early.cancel(timeout_job)
    early.shutdown()
    if started:
        stop_slurm()


@pytest.fixture
def root(slurm_cluster) -> Path:
    return slurm_cluster["root"]


@pytest.fixture
def executor():
    made: list[SlurmExecutor] = []

    def make(**kw) -> tuple[SlurmExecutor, Recorder]:
        ex = SlurmExecutor(config(**kw))
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
    wait_until(lambda: ex.tracked() == [], 30, "the poller to drop the cancelled job")
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
    wait_until(lambda: "fake runner for" in bundle.tail(job.bundle_dir / "runner.out"), 30, "the runner to start")
    ex.cancel(job)
    wait_until(lambda: ex.tracked() == [], 30, "the poller to drop the cancelled job")
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
