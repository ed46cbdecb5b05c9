"""The interface between the agent and whatever realises a job.

An executor receives a staged bundle and reports back through a ``Reporter``.
It never talks to the control plane itself: the agent owns the fencing token
and turns reports into fenced control-plane writes. Reports may come from any
executor thread; the agent's reporter is thread-safe.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from jupyter_vqpu.core import result as result_schema


@dataclass
class Job:
    """One attempt of one task, as an executor sees it."""

    task_id: str
    attempt: int
    bundle_dir: Path
    timeout_s: float
    name: str = ""
    # Executor-owned bookkeeping (process handle, Slurm job id, ...).
    handle: dict[str, Any] = field(default_factory=dict)
    #: The claim's fencing token, opaque (``<attempt>-<nonce>``): unique per claim, where the
    #: attempt number is not (a Redis failover can roll it back and hand it out again).
    token: str = ""

    @property
    def claim_tag(self) -> str:
        """What names this claim's job in a scheduler or on disk: the token (the attempt for a
        Job built without one), so a replayed claim never adopts an earlier claim's job."""
        return self.token or str(int(self.attempt))

    @property
    def key(self) -> tuple[str, str]:
        return (self.task_id, self.claim_tag)


class Reporter(Protocol):
    """How an executor tells the agent what happened to a job."""

    def scheduled(self, job: Job, detail: dict[str, Any]) -> None:
        """Handed to a scheduler (detail: executor, job_id, reason)."""

    def running(self, job: Job, detail: dict[str, Any]) -> None:
        """The runner started."""

    def finished(self, job: Job, result: dict[str, Any]) -> None:
        """The runner wrote a successful result (the parsed result.json)."""

    def failed(self, job: Job, reason: str, message: str) -> None:
        """The job ended without a result. ``reason`` is a short code
        (``timeout``, ``runner_error``, ``scheduler_failed``, ...); ``message``
        is one readable line."""

    def lost(self, job: Job, message: str) -> None:
        """The job's runner vanished with the place it ran in (a pilot allocation
        ended or stopped answering mid-task): no result, not the task's fault.
        The agent hands the task back to the queue at once (attempt+1), as for
        any lost lease. Executors call :func:`report_lost`, which falls back to
        ``failed(job, "lost", message)`` for a reporter without this method."""


def one_line(text: str, limit: int = 600) -> str:
    """``text`` as one line of at most ``limit`` characters: a report's message is shown to the
    user on one line, and a scheduler's multi-line stderr must not turn into several."""
    text = " | ".join(s.strip() for s in text.splitlines() if s.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def report_result(reporter: Reporter, job: Job, result: Any) -> None:
    """Turn a runner's result.json (parsed, or None when it left none) into ``finished`` or ``failed``.

    Every executor's result goes through here, and is checked against the
    runner's result schema (:mod:`jupyter_vqpu.core.result`) first: what the
    job wrote is output of a user's circuit, so anything off schema (not an
    object, counts that are not bitstrings to counts summing to the shots)
    fails the task with reason ``bad_result`` instead of being stored, or
    leaving the task stuck."""
    if result is None:
        reporter.failed(job, "runner_error", "the runner ended without writing a result")
        return
    wrong = result_schema.problem(result, shots=_task_shots(job))
    if wrong is not None:
        reporter.failed(job, "bad_result", f"the job's result.json breaks the result schema: {wrong}")
    elif result["ok"]:
        reporter.finished(job, result)
    else:
        reporter.failed(job, result.get("reason") or "runner_error", result.get("error") or "runner failed")


def _task_shots(job: Job) -> int | None:
    """The shots the task asked for, from the bundle the agent staged (None if unreadable)."""
    from jupyter_vqpu_agent import bundle

    try:
        return int(bundle.read_spec(Path(job.bundle_dir)).shots)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def report_lost(reporter: Reporter, job: Job, message: str) -> None:
    """``reporter.lost`` where the reporter has it, else ``failed(job, "lost", message)``."""
    lost = getattr(reporter, "lost", None)
    if callable(lost):
        lost(job, message)
    else:
        reporter.failed(job, "lost", message)


class Executor(abc.ABC):
    """Realises jobs. Implementations: ``local`` (subprocess), ``slurm``."""

    name: str = "executor"
    #: Jobs outlive the agent process (a batch scheduler's do): on shutdown the
    #: agent leaves them running for a restarted agent to re-attach to.
    survives_agent: bool = False

    def start(self, reporter: Reporter) -> None:
        self.reporter = reporter

    @abc.abstractmethod
    def submit(self, job: Job) -> None:
        """Start the job; must not block on its completion."""

    @abc.abstractmethod
    def cancel(self, job: Job) -> None:
        """Stop the job if it is still pending or running (best effort, idempotent)."""

    def reattach(self, job: Job) -> bool:
        """Resume tracking a job a previous agent process started.

        Returns False when the executor cannot find it (then the agent lets the
        lease expire and the task is recovered)."""
        return False

    def health(self) -> list[str]:
        """What is wrong with the executor itself (a dead slot or poller thread), one line each.

        The agent calls this from its keep-alive thread and announces the
        problems in its presence (unhealthy), so a device is not shown as
        plainly online while its agent cannot run anything."""
        return []

    def shutdown(self, wait: bool = True) -> None:
        """Release resources; with ``wait``, let running jobs finish first."""
