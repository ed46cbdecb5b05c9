"""Slurm for tests: the CI cluster fixture, a recording Reporter, staged bundles, executors.

Shared by the Slurm executor, pilot, agent and fault tests (a test module never imports
another one: tests/unit/test_code_rules.py). Jobs run ``tests.integration.fake_runner``
unless a test asks for the real runner."""

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
from jupyter_vqpu_agent.executors.slurm import SlurmExecutor
from jupyter_vqpu_agent.executors.slurm_config import SlurmConfig
from tests.conftest import REPO, ensure_slurm, stop_slurm

RUNNER = "tests.integration.fake_runner"


def scontrol_state(job_id: str) -> str:
    """What Slurm says of a job right now ("" once it has forgotten it)."""
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


def make_job(root: Path, name: str = "", timeout_s: float = 300, **options) -> Job:
    """A staged bundle for the fake runner; ``options`` steer it (sleep, exit, no_result)."""
    task_id = f"fez.{uuid.uuid4().hex[:16].upper()}"
    d = root / task_id / "attempt-1"
    spec = bundle.TaskSpec(task_id=task_id, device="fez", attempt=1, snapshot_id="snap-1", shots=100,
                           circuit_format="qasm3", options=options)
    bundle.stage(d, spec, b'{"name": "fez"}', "OPENQASM 3.0;\n")
    return Job(task_id=task_id, attempt=1, bundle_dir=d, timeout_s=timeout_s, name=name)


def ci_config(**kw) -> SlurmConfig:
    """A SlurmConfig for the test cluster: the fake runner, fast polls, this checkout on PYTHONPATH."""
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
    early = SlurmExecutor(ci_config(time_limit="1"))  # one minute: Slurm's minimum
    early_rec = Recorder()
    early.start(early_rec)
    timeout_job = make_job(root, name="over-time", sleep=600)
    early.submit(timeout_job)
    yield {"root": root, "timeout": (early, early_rec, timeout_job)}
    early.cancel(timeout_job)
    early.shutdown()
    if started:
        stop_slurm()


def slurm(**kw) -> SlurmExecutor:
    """A Slurm executor whose jobs run the real runner (``jupyter_vqpu_agent.runner``)."""
    return SlurmExecutor(ci_config(**{"runner_module": "jupyter_vqpu_agent.runner", **kw}))


def fake(**kw) -> SlurmExecutor:
    """A Slurm executor whose jobs run the fake runner (no Qiskit needed)."""
    return SlurmExecutor(ci_config(**kw))
