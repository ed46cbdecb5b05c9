"""Agents for tests: stand-in executors, an agent serving in a thread, an ACL'ed agent URL.

Shared by the integration and browser tests (a test module never imports another one:
tests/unit/test_code_rules.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from jupyter_vqpu.core.acl import agent_rules
from jupyter_vqpu.core.connection import connect
from jupyter_vqpu.core.control import ControlPlane
from jupyter_vqpu_agent.agent import Agent, AgentConfig
from jupyter_vqpu_agent.executors.base import Executor, Job
from tests.support import wait_for

__all__ = ["EchoExecutor", "HoldExecutor", "PassFailExecutor", "Running", "agent_url", "wait_for"]


class EchoExecutor(Executor):
    """Completes every job at once with a result naming the bound snapshot.

    For tests of the control plane's claim race, where the simulator is beside the point."""

    name = "echo"

    def submit(self, job: Job) -> None:
        from jupyter_vqpu_agent import bundle

        spec = bundle.read_spec(job.bundle_dir)
        self.reporter.scheduled(job, {"executor": "echo", "job_id": f"echo-{job.task_id}"})
        self.reporter.running(job, {})
        self.reporter.finished(job, {"ok": True, "counts": {"0": spec.shots}, "snapshot_id": spec.snapshot_id,
                                     "task_id": job.task_id, "attempt": job.attempt})

    def cancel(self, job: Job) -> None:
        pass


class HoldExecutor(Executor):
    """Holds every job until released: lets a test act while a task is running."""

    name = "hold"

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.cancelled: list[str] = []
        self.submitted = threading.Event()

    def submit(self, job: Job) -> None:
        self.jobs[job.task_id] = job
        self.reporter.scheduled(job, {"executor": "hold", "job_id": "h1", "reason": "held"})
        self.reporter.running(job, {})
        self.submitted.set()

    def cancel(self, job: Job) -> None:
        self.cancelled.append(job.task_id)

    def release(self, task_id: str, snapshot_id: str) -> None:
        job = self.jobs[task_id]
        self.reporter.finished(job, {"ok": True, "counts": {"1": 1}, "snapshot_id": snapshot_id})


class Running:
    """An agent serving in a background thread for the duration of a test."""

    def __init__(self, url: str, executor: Executor, tmp: Path, devices=("ideal",), **cfg) -> None:
        cfg.setdefault("block_ms", 200)
        cfg.setdefault("renew_s", 0.5)
        self.agent = Agent(ControlPlane(connect(url)), executor,
                           AgentConfig(devices=list(devices), work_root=tmp, **cfg))
        self.thread = threading.Thread(target=self.agent.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.agent.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()


class PassFailExecutor(EchoExecutor):
    """Completes every job at once, except those whose task name starts with 'fail': they fail as runner errors."""

    name = "passfail"

    def submit(self, job: Job) -> None:
        if not job.name.startswith("fail"):
            super().submit(job)
            return
        self.reporter.scheduled(job, {"executor": "passfail", "job_id": f"pf-{job.task_id}"})
        self.reporter.running(job, {})
        self.reporter.failed(job, "runner_error", "the simulation failed: boom")


PASSWORD = "agent-test-password"


@pytest.fixture
def agent_url(seeded, redis_server):
    """A Redis URL for the user ``vqpu-agent`` with only the agent's ACL rules for ``ideal``."""
    admin = seeded.redis
    admin.acl_setuser("vqpu-agent", enabled=True, passwords=[f"+{PASSWORD}"], reset=True)
    admin.execute_command("ACL", "SETUSER", "vqpu-agent", *agent_rules(["ideal"]))
    yield f"redis://vqpu-agent:{PASSWORD}@127.0.0.1:{redis_server.port}/0"
    admin.acl_deluser("vqpu-agent")
