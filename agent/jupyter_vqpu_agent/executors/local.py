"""Run jobs on this machine: the embedded default's and the tests' executor.

Each job still runs in a separate process that reads only its bundle. By
default that process is a warm worker (``python -m jupyter_vqpu_agent.worker``) that keeps
Qiskit imported and the per-snapshot caches filled between tasks; with
``warm=False`` every job gets a fresh ``python -m jupyter_vqpu_agent.runner BUNDLE``, which
is exactly what a Slurm job runs. A job over its time limit, or a cancelled
one, has its process killed; a killed warm worker is replaced.
"""

from __future__ import annotations

import logging
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from jupyter_vqpu.core.logs import task_fields
from jupyter_vqpu_agent import bundle, private
from jupyter_vqpu_agent.executors.base import Executor, Job, Reporter, report_lost, report_result
from jupyter_vqpu_agent.jobenv import job_environment
from jupyter_vqpu_agent.worker_protocol import read_message

log = logging.getLogger("vqpu.executor.local")


class _Slot:
    """One concurrent job at a time, with its warm worker process if any."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: subprocess.Popen | None = None
        self.job: Job | None = None
        self.killed_for: tuple[str, int] | None = None
        self.thread: threading.Thread | None = None
        self.died: str = ""  # why its thread died, for health()
        self.orphan: Job | None = None  # the job its thread died with


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, *, slots: int = 1, warm: bool = True, python: str = sys.executable,
                 log_dir: Path | None = None, runner_module: str = "jupyter_vqpu_agent.runner",
                 worker_module: str = "jupyter_vqpu_agent.worker") -> None:
        self.warm = warm
        self.python = python
        self.log_dir = log_dir
        self.runner_module = runner_module
        self.worker_module = worker_module
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._cancelled: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self._slots = [_Slot(i) for i in range(slots)]
        self._threads: list[threading.Thread] = []
        self._closing = False

    # -------------------------------------------------------------- API

    def start(self, reporter: Reporter) -> None:
        super().start(reporter)
        for slot in self._slots:
            self._start_slot(slot)

    def _start_slot(self, slot: _Slot) -> None:
        t = threading.Thread(target=self._serve, args=(slot,), name=f"local-slot-{slot.index}", daemon=True)
        slot.thread = t
        t.start()
        self._threads.append(t)

    def health(self) -> list[str]:
        """Dead slot threads, each restarted here: the new thread first reports its predecessor's job lost
        (so the task goes back to the queue instead of being held forever), then serves again."""
        problems = []
        for slot in self._slots:
            if self._closing or slot.thread is None or slot.thread.is_alive():
                continue
            why = slot.died or "unknown"
            log.error("local executor: slot %d thread died (%s); restarting it", slot.index, why)
            problems.append(f"local executor slot {slot.index} thread died ({why}); restarted")
            slot.died = ""
            self._threads = [t for t in self._threads if t.is_alive()]
            self._start_slot(slot)
        return problems

    def submit(self, job: Job) -> None:
        busy = all(s.job is not None for s in self._slots)
        self.reporter.scheduled(job, {"executor": self.name, "job_id": f"local:{job.task_id}#{job.attempt}",
                                      "reason": "waiting for a free local worker" if busy else "starting"})
        self._jobs.put(job)

    def cancel(self, job: Job) -> None:
        with self._lock:
            self._cancelled.add(job.key)
            for slot in self._slots:
                if slot.job is not None and slot.job.key == job.key and slot.proc is not None:
                    slot.killed_for = job.key
                    _kill(slot.proc)

    def shutdown(self, wait: bool = True) -> None:
        self._closing = True
        if not wait:
            with self._lock:
                for slot in self._slots:
                    if slot.proc is not None:
                        _kill(slot.proc)
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join(timeout=30)
        for slot in self._slots:
            if slot.proc is not None:
                _stop_worker(slot.proc)

    def warm_up(self) -> None:
        """Start the warm workers now rather than at the first task."""
        if self.warm:
            for slot in self._slots:
                self._ensure_worker(slot)

    # ---------------------------------------------------------- workers

    def _serve(self, slot: _Slot) -> None:
        orphan, slot.orphan = slot.orphan, None
        if orphan is not None:
            report_lost(self.reporter, orphan, "the local executor slot running it died")
        try:
            self._serve_jobs(slot)
        except BaseException as exc:  # noted for health(), which restarts the slot
            slot.died = f"{type(exc).__name__}: {exc}"[:200]
            raise

    def _serve_jobs(self, slot: _Slot) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            with self._lock:
                if job.key in self._cancelled:
                    self._cancelled.discard(job.key)
                    continue
                slot.job = job
                slot.killed_for = None
            try:
                self._run(slot, job)
            except Exception as exc:  # a bug here must not take the slot down
                log.exception("local executor: %s failed", job.task_id, extra=task_fields(job.task_id, job.attempt))
                try:
                    self.reporter.failed(job, "runner_error", f"local executor error: {exc}")
                except Exception:
                    log.exception("local executor: could not report %s", job.task_id,
                                  extra=task_fields(job.task_id, job.attempt))
            except BaseException:
                slot.orphan = job  # the restarted slot reports it lost
                raise
            finally:
                with self._lock:
                    slot.job = None
                    self._cancelled.discard(job.key)

    def _run(self, slot: _Slot, job: Job) -> None:
        deadline = time.monotonic() + job.timeout_s
        if self.warm:
            proc = self._ensure_worker(slot)
            self.reporter.running(job, {"executor": self.name, "pid": proc.pid})
            assert proc.stdin is not None
            try:
                proc.stdin.write(f"{job.bundle_dir}\n".encode())
            except OSError:
                pass  # it died; read_message sees EOF
            if read_message(proc, deadline) is not None:
                self._report_result(job)
                return
            # No answer: killed (cancel, timeout) or crashed. Replace the worker.
            _kill(proc)
            proc.wait()
            slot.proc = None
            self._report_lost(slot, job, proc.returncode, deadline, self._worker_log(slot))
        else:
            out = private.open_private(job.bundle_dir / bundle.STDOUT_FILE)
            err = private.open_private(job.bundle_dir / bundle.STDERR_FILE)
            with out, err:
                proc = subprocess.Popen([self.python, "-m", self.runner_module, str(job.bundle_dir)],
                                        stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=job.bundle_dir,
                                        env=job_environment(), umask=private.UMASK)
            slot.proc = proc
            self.reporter.running(job, {"executor": self.name, "pid": proc.pid})
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill(proc)
                proc.wait()
            slot.proc = None
            if bundle.read_result(job.bundle_dir) is not None:
                self._report_result(job)
            else:
                self._report_lost(slot, job, proc.returncode, deadline, job.bundle_dir / bundle.STDERR_FILE)

    def _report_result(self, job: Job) -> None:
        report_result(self.reporter, job, bundle.read_result(job.bundle_dir))

    def _report_lost(self, slot: _Slot, job: Job, returncode: int | None, deadline: float, log_file: Path) -> None:
        if slot.killed_for == job.key:
            return  # cancelled: the agent already knows, nothing more to say
        if time.monotonic() >= deadline:
            self.reporter.failed(job, "timeout", f"the job ran over its time limit of {job.timeout_s:g} s and was killed")
            return
        detail = bundle.tail(log_file, 400).splitlines()
        self.reporter.failed(job, "runner_error",
                             f"the runner process died (exit {returncode})" + (f": {detail[-1]}" if detail else ""))

    def _worker_log(self, slot: _Slot) -> Path:
        if self.log_dir is None:  # a private directory of our own, not a guessable name in a shared /tmp
            self.log_dir = Path(tempfile.mkdtemp(prefix="vqpu-worker-logs-"))
        return self.log_dir / f"worker-{slot.index}.log"

    def _ensure_worker(self, slot: _Slot) -> subprocess.Popen:
        if slot.proc is not None and slot.proc.poll() is None:
            return slot.proc
        log_path = self._worker_log(slot)
        private.make_dirs(log_path.parent)
        with private.open_private(log_path, append=True) as err:
            proc = subprocess.Popen([self.python, "-m", self.worker_module], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=err, bufsize=0, env=job_environment(),
                                    umask=private.UMASK)
        hello = read_message(proc, time.monotonic() + 120)
        if hello is None or not hello.get("ready"):
            _kill(proc)
            raise RuntimeError(f"the warm worker did not start; see {log_path}")
        slot.proc = proc
        return proc


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            proc.kill()
        except ProcessLookupError:
            pass


def _stop_worker(proc: subprocess.Popen) -> None:
    try:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        _kill(proc)
        proc.wait()
