"""Run each job as a Slurm batch job: ``sbatch``, ``squeue``/``scontrol``/``sacct``, ``scancel``.

The agent stays on a login or service node; every job is a batch script
rendered from ``slurm/task.sbatch.tmpl`` into its bundle directory
(``job.sbatch``) that ends in ``exec PYTHON -m jupyter_vqpu_agent.runner BUNDLE_DIR``.

* ``submit`` renders the script, calls ``sbatch --parsable`` and records the
  Slurm job id in ``job.handle["slurm_job_id"]`` and in ``BUNDLE_DIR/slurm_job_id``
  (so that a restarted agent can re-attach).
* ONE background thread polls every tracked job with one
  ``squeue -h -t all -j ID,ID,...`` call per interval; a job squeue no longer
  lists is looked up with ``scontrol show job`` and then ``sacct`` (when
  accounting is on). Slurm states become reports through :func:`map_state`.
* ``cancel`` is ``scancel`` (idempotent); a job we cancelled ends silently.
* Every Slurm command goes through
  :class:`~jupyter_vqpu_agent.executors.slurm_commands.SlurmCommands` (timeouts,
  retries with backoff, sbatch adoption); the configuration is
  :mod:`~jupyter_vqpu_agent.executors.slurm_config`'s, the script
  :mod:`~jupyter_vqpu_agent.executors.slurm_render`'s.

This module never imports Redis: it only reports to the agent's Reporter.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_vqpu.core.errors import VqpuError
from jupyter_vqpu.core.logs import task_fields
from jupyter_vqpu_agent import bundle, private
from jupyter_vqpu_agent.executors.base import Executor, Job, Reporter, one_line, report_result
from jupyter_vqpu_agent.executors.slurm_commands import JobInfo, SchedulerError, SlurmCommands, map_state
from jupyter_vqpu_agent.executors.slurm_config import SlurmConfig
from jupyter_vqpu_agent.executors.slurm_render import job_name, render_script

log = logging.getLogger("vqpu.executor.slurm")

SCRIPT_FILE = "job.sbatch"
JOB_ID_FILE = "slurm_job_id"


@dataclass
class _Tracked:
    job: Job
    job_id: str
    reason: str | None = None  # the pending reason last reported
    running_reported: bool = False
    cancelled: bool = False  # by us: end silently
    misses: int = 0
    unknown_logged: bool = False


def _stderr_tail(bundle_dir: Path, lines: int = 3) -> str:
    got = [s for s in bundle.tail(bundle_dir / bundle.STDERR_FILE, 2000).splitlines() if s.strip()]
    return " | ".join(got[-lines:])


# ---------------------------------------------------------------- executor


class SlurmExecutor(Executor):
    name = "slurm"
    survives_agent = True

    def __init__(self, config: SlurmConfig | None = None, *, commands: SlurmCommands | None = None,
                 **overrides: Any) -> None:
        if config is None:
            config = SlurmConfig(**overrides)
        elif overrides:
            raise TypeError("pass a SlurmConfig or keyword settings, not both")
        self.config = config
        self.commands = commands or SlurmCommands(config)
        self._lock = threading.Lock()
        self._tracked: dict[str, _Tracked] = {}
        self._cancelled_keys: set[tuple[str, int]] = set()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.calls = self.commands.calls  # Slurm command invocations, by name

    # -------------------------------------------------------------- API

    def start(self, reporter: Reporter) -> None:
        super().start(reporter)
        if self._thread is None:
            self._stop.clear()
            self.commands.stop.clear()
            self._thread = threading.Thread(target=self._poll_loop, name="slurm-poller", daemon=True)
            self._thread.start()

    def submit(self, job: Job) -> None:
        bundle_dir = Path(job.bundle_dir).resolve()
        with self._lock:
            if job.key in self._cancelled_keys:  # cancelled before we got to it
                self._cancelled_keys.discard(job.key)
                return
        try:
            script = bundle_dir / SCRIPT_FILE
            private.write_atomic(script, render_script(self.config, job).encode())  # 0600: sbatch reads it
            name = job_name(self.config, job)
            job_id = self.commands.submit(script, chdir=bundle_dir, stdout=bundle_dir / bundle.STDOUT_FILE,
                                          stderr=bundle_dir / bundle.STDERR_FILE, name=name)
        except VqpuError as exc:
            log.warning("sbatch for %s failed: %s", job.task_id, exc, extra=task_fields(job.task_id, job.attempt))
            self.reporter.failed(job, "scheduler_failed", one_line(f"could not submit the Slurm job: {exc.message}"))
            return
        except OSError as exc:
            log.warning("staging the Slurm script for %s failed: %s", job.task_id, exc,
                        extra=task_fields(job.task_id, job.attempt))
            self.reporter.failed(job, "scheduler_failed", one_line(f"could not write the Slurm job script: {exc}"))
            return
        job.handle["slurm_job_id"] = job_id
        try:
            private.write_atomic(bundle_dir / JOB_ID_FILE, f"{job_id}\n".encode())
        except OSError as exc:  # re-attach will not work, the job itself does
            log.warning("could not record Slurm job id %s in %s: %s", job_id, bundle_dir, exc,
                        extra=task_fields(job.task_id, job.attempt))
        with self._lock:
            cancelled = job.key in self._cancelled_keys
        if cancelled:
            self.commands.scancel(job_id)
            with self._lock:
                self._cancelled_keys.discard(job.key)
            return
        log.info("%s attempt %d is Slurm job %s", job.task_id, job.attempt, job_id,
                 extra=task_fields(job.task_id, job.attempt))
        # Report before tracking, so that "running" can never overtake "scheduled".
        self.reporter.scheduled(job, {"executor": self.name, "job_id": job_id, "reason": "submitted"})
        with self._lock:
            self._tracked[job_id] = _Tracked(job, job_id, cancelled=job.key in self._cancelled_keys)
        self._wake.set()

    def cancel(self, job: Job) -> None:
        with self._lock:
            self._cancelled_keys.add(job.key)
            job_id = job.handle.get("slurm_job_id")
            if job_id is None:
                job_id = next((i for i, t in self._tracked.items() if t.job.key == job.key), None)
            if job_id is not None and job_id in self._tracked:
                self._tracked[job_id].cancelled = True
        if job_id is not None:
            self.commands.scancel(str(job_id))

    def reattach(self, job: Job) -> bool:
        bundle_dir = Path(job.bundle_dir)
        try:
            job_id = (bundle_dir / JOB_ID_FILE).read_text().strip()
        except OSError:
            return False
        if not re.fullmatch(r"\d+", job_id):
            return False
        try:
            info = self.commands.squeue([job_id]).get(job_id) or self.commands.lookup(job_id)
        except SchedulerError as exc:
            # Slurm is unreachable right now: track the job anyway; the poller finds
            # out what became of it (or declares it lost) once Slurm answers.
            log.warning("re-attaching Slurm job %s without confirmation: %s", job_id, exc,
                        extra=task_fields(job.task_id, job.attempt))
            info = JobInfo("UNKNOWN")
        if info is None and bundle.read_result(bundle_dir) is None:
            log.info("Slurm job %s of %s is gone and left no result: not re-attached", job_id, job.task_id,
                     extra=task_fields(job.task_id, job.attempt))
            return False
        job.handle["slurm_job_id"] = job_id
        with self._lock:
            self._tracked[job_id] = _Tracked(job, job_id)
        log.info("re-attached %s attempt %d to Slurm job %s", job.task_id, job.attempt, job_id,
                 extra=task_fields(job.task_id, job.attempt))
        self._wake.set()
        return True

    def shutdown(self, wait: bool = True) -> None:
        """Stop the poller. Slurm jobs keep running; a new agent can re-attach to them."""
        self._stop.set()
        self.commands.stop.set()
        self._wake.set()
        if self._thread is not None and wait:
            self._thread.join(timeout=self.config.command_timeout_s + 5)
        self._thread = None

    def tracked(self) -> list[str]:
        """The Slurm job ids being followed now."""
        with self._lock:
            return list(self._tracked)

    # ------------------------------------------------------------- poller

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.config.poll_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.poll_once()
            except SchedulerError as exc:  # Slurm is away or busy: say so, without a traceback
                log.warning("Slurm poll failed (%s); retrying in %.1f s", exc, self.config.poll_interval_s)
            except Exception:  # the poller must survive anything
                log.exception("Slurm poll failed; retrying in %.1f s", self.config.poll_interval_s)

    def poll_once(self) -> None:
        """One round: one squeue for all tracked jobs, lookups for the ones it no longer lists."""
        with self._lock:
            items = dict(self._tracked)
        if not items:
            return
        listed = self.commands.squeue(list(items))
        for job_id, t in items.items():
            try:
                info = listed.get(job_id)
                if info is None:
                    info = self.commands.lookup(job_id)
                self._advance(t, info)
            except Exception:
                log.exception("Slurm job %s (%s): poll failed", job_id, t.job.task_id,
                              extra=task_fields(t.job.task_id, t.job.attempt))

    def _drop(self, t: _Tracked) -> None:
        with self._lock:
            self._tracked.pop(t.job_id, None)
            self._cancelled_keys.discard(t.job.key)

    def _advance(self, t: _Tracked, info: JobInfo | None) -> None:
        job = t.job
        if info is None:
            if bundle.read_result(Path(job.bundle_dir)) is not None:
                info = JobInfo("COMPLETED")  # Slurm forgot it (MinJobAge), but it left its result
            else:
                t.misses += 1
                if t.misses >= self.config.lost_after_polls:
                    self._drop(t)
                    if not t.cancelled:
                        self.reporter.failed(job, "job_lost", one_line(
                            f"Slurm no longer knows job {t.job_id} and it left no result"
                            + (f"; stderr: {tail}" if (tail := _stderr_tail(Path(job.bundle_dir))) else "")))
                return
        t.misses = 0
        kind, reason = map_state(info.state)
        if kind == "unknown":
            if not t.unknown_logged and info.state != "UNKNOWN":
                log.warning("Slurm job %s is in an unexpected state %r; still watching", t.job_id, info.state,
                            extra=task_fields(job.task_id, job.attempt))
                t.unknown_logged = True
            return
        if kind == "pending":
            why = info.reason
            if why and why != "None" and why != t.reason and not t.cancelled:
                t.reason = why
                self.reporter.scheduled(job, {"executor": self.name, "job_id": t.job_id, "reason": why})
            return
        if kind == "running":
            if not t.running_reported and not t.cancelled:
                t.running_reported = True
                self.reporter.running(job, {"executor": self.name, "job_id": t.job_id, "node": info.node})
            return
        # A final state.
        self._drop(t)
        if t.cancelled:
            log.info("Slurm job %s (%s) ended %s after our cancel", t.job_id, job.task_id, info.state,
                     extra=task_fields(job.task_id, job.attempt))
            return
        self._report_final(t, info, kind, reason)

    def _report_final(self, t: _Tracked, info: JobInfo, kind: str, reason: str | None) -> None:
        job = t.job
        bundle_dir = Path(job.bundle_dir)
        result = bundle.read_result(bundle_dir)
        started = kind != "cancelled" or bool(info.node) or result is not None
        if started and not t.running_reported:  # it started and ended between two polls
            t.running_reported = True
            self.reporter.running(job, {"executor": self.name, "job_id": t.job_id, "node": info.node})
        if result is not None and (not isinstance(result, dict) or result.get("ok")):
            report_result(self.reporter, job, result)  # checked against the result schema there
            return
        tail = _stderr_tail(bundle_dir)
        err = f"; stderr: {tail}" if tail else ""
        if kind == "completed" or (result is not None and reason == "job_failed"):
            why = result.get("reason") if result else None
            msg = (result.get("error") if result else None) or "the runner ended without writing a result"
            self.reporter.failed(job, why or "runner_error", one_line(f"{msg}{err}"))
            return
        if not info.exit_code or not info.time_limit:
            try:  # squeue shows neither exit code nor limit: ask scontrol once
                more = self.commands.lookup(t.job_id)
                if more is not None:
                    info.exit_code = info.exit_code or more.exit_code
                    info.time_limit = info.time_limit or more.time_limit
                    info.node = info.node or more.node
            except SchedulerError:
                pass
        jid = t.job_id
        code = info.exit_code.split(":")[0] if info.exit_code else "?"
        messages = {
            "job_failed": f"Slurm job {jid} failed with exit code {code}",
            "timeout": f"Slurm job {jid} ran over its time limit ({info.time_limit or self.config.time_limit or '?'}) "
                       "and was killed",
            "out_of_memory": f"Slurm job {jid} ran out of memory"
                             + (f" (--mem={self.config.mem})" if self.config.mem else ""),
            "node_fail": f"the node {info.node or '?'} failed while running Slurm job {jid}",
            "preempted": f"Slurm job {jid} was preempted",
            "boot_fail": f"the node for Slurm job {jid} failed to boot",
            "deadline": f"Slurm job {jid} missed its deadline",
            "revoked": f"Slurm job {jid} was revoked (it runs on another cluster of the federation)",
            "scheduler_cancelled": f"Slurm job {jid} was cancelled outside jupyter-vqpu (scancel or an administrator)",
        }
        assert reason is not None
        self.reporter.failed(job, reason, one_line(messages.get(reason, f"Slurm job {jid} ended {info.state}") + err))
