"""Pilot mode: ONE long-running Slurm allocation runs many tasks (``--executor slurm-pilot``).

Per-task Slurm jobs pay a queue wait and a Python start-up (Qiskit import) for
every task. Here the executor keeps a pilot allocation (``slurm/pilot.sbatch.tmpl``,
``python -m jupyter_vqpu_agent.spool SPOOL``) whose warm workers run task after task, each
still hermetic: its own bundle directory and snapshot, its own result.json.

The agent and the pilot talk ONLY through files in the allocation's spool
directory (``SPOOL_ROOT/pilot-.../``, see :mod:`jupyter_vqpu_agent.spool` for the layout):

* ``submit`` makes sure a pilot exists (``sbatch`` when none does), drops a marker
  into its ``inbox/`` (write a hidden temporary, then rename) and reports
  ``scheduled`` with the allocation's job id and reason ``pilot allocation
  pending`` or ``queued in pilot``;
* ONE watcher thread lists the spools every ``spool_poll_s`` (20 ms): a marker in
  ``running/`` is ``running``; one in ``done/`` is ``finished``/``failed`` from the
  bundle's result.json (:func:`~agent.executors.base.report_result`);
* every ``poll_interval_s`` it asks Slurm about the allocations (ONE ``squeue``)
  and checks each pilot's heartbeat (``pilot.alive`` mtime). A pilot that ended
  or went silent while a task was in ``running/`` has lost it:
  :func:`~agent.executors.base.report_lost`. Markers still in the inbox of a
  pilot that stops taking work (drained, idle-closed, dead) move to another one;
* renewal: when the allocation has less than ``renew_margin_s`` left and there is
  work, a successor is submitted; once it is ready the old pilot is told to drain
  (it finishes what it runs and exits) and its queued markers move over;
* idle release: a pilot with nothing to do for ``idle_timeout_s`` exits by itself;
  the next task starts a new one;
* ``cancel``: a queued marker is removed from the inbox (then the pilot never sees
  it); a running one gets a ``cancel/`` marker and the pilot kills its worker.

Slurm commands go through :class:`~jupyter_vqpu_agent.executors.slurm_commands.SlurmCommands`
(timeouts, retries with backoff, sbatch adoption), the script through
:mod:`~jupyter_vqpu_agent.executors.slurm_render`'s validated ``#SBATCH`` rendering; the
settings are :class:`~jupyter_vqpu_agent.executors.slurm_config.PilotConfig`. This module never
imports Redis.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_vqpu.core.errors import VqpuError
from jupyter_vqpu.core.logs import task_fields
from jupyter_vqpu_agent import bundle, private
from jupyter_vqpu_agent import spool as spool
from jupyter_vqpu_agent.executors.base import Executor, Job, Reporter, one_line, report_lost, report_result
from jupyter_vqpu_agent.executors.slurm_commands import SchedulerError, SlurmCommands, map_state
from jupyter_vqpu_agent.executors.slurm_config import PilotConfig, SlurmConfig
from jupyter_vqpu_agent.executors.slurm_render import (
    export_lines,
    find_template,
    job_name,
    sanitize_job_name,
    sbatch_lines,
    substitute,
)

log = logging.getLogger("vqpu.executor.pilot")

PILOT_TEMPLATE_NAME = "pilot.sbatch.tmpl"
SCRIPT_FILE = "pilot.sbatch"
BUNDLE_POINTER = "pilot_job.json"  # in the bundle: which spool and marker name hold it (for re-attach)

REASON_PENDING = "pilot allocation pending"
REASON_QUEUED = "queued in pilot"


@dataclass
class _Pilot:
    gen: str
    spool: Path
    job_id: str | None = None
    slurm_kind: str = "pending"  # pending | running | final
    slurm_reason: str = ""
    doc: dict = field(default_factory=dict)  # state.json
    doc_mtime: float = 0.0
    ever_ready: bool = False
    dead: str = ""  # why it is gone ("" while alive)
    drain_asked: bool = False
    successor: str | None = None
    misses: int = 0
    last_work: float = field(default_factory=time.monotonic)

    @property
    def state(self) -> str:
        return self.doc.get("state", "")

    def accepting(self, stop_claiming_s: float) -> bool:
        if self.dead or self.drain_asked or self.state in ("draining", "closed", "exited"):
            return False
        deadline = self.doc.get("deadline")
        return not (deadline and time.time() > deadline - stop_claiming_s)


@dataclass
class _Tracked:
    job: Job
    name: str
    pilot: _Pilot
    reason: str = ""
    running_reported: bool = False
    cancelled: bool = False


class SlurmPilotExecutor(Executor):
    name = "slurm-pilot"
    survives_agent = True

    def __init__(self, config: PilotConfig | None = None, *, work_root: Path | None = None, **overrides: Any) -> None:
        if config is None:
            config = PilotConfig(**overrides)
        elif overrides:
            raise TypeError("pass a PilotConfig or keyword settings, not both")
        self.config = config
        root = Path(config.spool_dir) if config.spool_dir else Path(work_root or Path.cwd()) / "pilot-spool"
        self.spool_root = root.resolve()
        self.commands = SlurmCommands(config)
        self.calls = self.commands.calls
        self._lock = threading.RLock()
        self._launch_lock = threading.Lock()
        self._pilots: dict[str, _Pilot] = {}
        self._tracked: dict[tuple[str, int], _Tracked] = {}
        self._cancelled: set[tuple[str, int]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_slurm_poll = 0.0
        self._watch = spool.DirWatch(config.spool_inotify)
        self._watched: set[str] = set()

    # -------------------------------------------------------------- API

    def start(self, reporter: Reporter) -> None:
        super().start(reporter)
        private.make_dirs(self.spool_root)
        self._adopt_live_pilots()
        if self._thread is None:
            self._stop.clear()
            self.commands.stop.clear()
            self._thread = threading.Thread(target=self._loop, name="slurm-pilot-watcher", daemon=True)
            self._thread.start()

    def submit(self, job: Job) -> None:
        with self._lock:
            if job.key in self._cancelled:
                self._cancelled.discard(job.key)
                return
        name = f"{time.time_ns()}-{sanitize_job_name(job.task_id, 60)}-a{sanitize_job_name(job.claim_tag, 40)}"
        try:
            pilot = self._active_pilot(create=True)
            assert pilot is not None
            self._drop(pilot, name, job)
        except (VqpuError, OSError) as exc:
            msg = exc.message if isinstance(exc, VqpuError) else str(exc)
            log.warning("pilot submission of %s failed: %s", job.task_id, msg,
                        extra=task_fields(job.task_id, job.attempt))
            self.reporter.failed(job, "scheduler_failed", one_line(f"could not hand the task to a pilot: {msg}"))
            return
        t = _Tracked(job, name, pilot)
        self._report_scheduled(t)
        with self._lock:
            self._tracked[job.key] = t
            pilot.last_work = time.monotonic()
            cancelled = job.key in self._cancelled
        if cancelled:
            self.cancel(job)

    def cancel(self, job: Job) -> None:
        with self._lock:
            self._cancelled.add(job.key)
            t = self._tracked.get(job.key)
            if t is None:
                return
            t.cancelled = True
        inbox = t.pilot.spool / spool.INBOX / t.name
        try:
            inbox.unlink()  # still queued: the pilot never sees it
        except FileNotFoundError:
            pass
        else:
            self._forget(t)
            return
        try:  # claimed: ask the pilot to kill it; the watcher drops it when it lands in done/
            private.write_atomic(t.pilot.spool / spool.CANCEL / t.name, b"cancel\n", durable=False)
        except OSError as exc:
            log.warning("could not ask pilot %s to cancel %s: %s", t.pilot.job_id, job.task_id, exc,
                        extra=task_fields(job.task_id, job.attempt))

    def reattach(self, job: Job) -> bool:
        try:
            ptr = json.loads((Path(job.bundle_dir) / BUNDLE_POINTER).read_text())
            spool_dir, name = Path(ptr["spool"]), str(ptr["name"])
        except (OSError, ValueError, KeyError, TypeError):
            return False
        with self._lock:
            pilot = next((p for p in self._pilots.values() if p.spool == spool_dir), None)
        if pilot is None:
            pilot = self._load_pilot(spool_dir)
            if pilot is None:
                return False
            try:
                self._poll_slurm([pilot])
            except SchedulerError as exc:
                log.warning("re-attaching to pilot %s without confirmation: %s", pilot.job_id, exc,
                            extra=task_fields(job.task_id, job.attempt))
            with self._lock:
                self._pilots.setdefault(pilot.gen, pilot)
                pilot = self._pilots[pilot.gen]
        where = next((d for d in (spool.DONE, spool.RUNNING, spool.INBOX) if (spool_dir / d / name).exists()), None)
        if where is None and bundle.read_result(Path(job.bundle_dir)) is None:
            return False
        if pilot.dead and where == spool.RUNNING:
            return False  # it died with its allocation: the agent requeues it now
        job.handle["slurm_job_id"] = pilot.job_id
        t = _Tracked(job, name, pilot, reason="re-attached", running_reported=where in (spool.RUNNING, spool.DONE))
        if where is None:  # it left a result but no marker: settle it from the result
            self.reporter.running(job, self._running_detail(pilot))
            report_result(self.reporter, job, bundle.read_result(Path(job.bundle_dir)))
            return True
        with self._lock:
            self._tracked[job.key] = t
        log.info("re-attached %s attempt %d to pilot %s (%s)", job.task_id, job.attempt, pilot.job_id, where,
                 extra=task_fields(job.task_id, job.attempt))
        return True

    def shutdown(self, wait: bool = True) -> None:
        """Stop watching. Pilots keep running (and idle out), unless release_on_shutdown."""
        if self.config.release_on_shutdown:
            self.release()
        self._stop.set()
        self.commands.stop.set()
        if self._thread is not None and wait:
            self._thread.join(timeout=self.config.command_timeout_s + 5)
        self._thread = None

    def release(self) -> None:
        """Give the allocations back: running pilots drain (finish their tasks, then exit), pending ones are cancelled."""
        with self._lock:
            pilots = [p for p in self._pilots.values() if not p.dead]
        for p in pilots:
            self._ask_drain(p)
            if p.job_id and not p.ever_ready and p.slurm_kind == "pending":
                self.commands.scancel(p.job_id)

    def pilots(self) -> list[dict]:
        """The allocations known now: job id, spool, Slurm kind, pilot state."""
        with self._lock:
            return [{"job_id": p.job_id, "spool": str(p.spool), "slurm": p.slurm_kind, "state": p.state,
                     "dead": p.dead, "draining": p.drain_asked} for p in self._pilots.values()]

    def tracked(self) -> list[str]:
        with self._lock:
            return [t.job.task_id for t in self._tracked.values()]

    # ------------------------------------------------------- pilots

    def _active_pilot(self, create: bool, exclude: _Pilot | None = None) -> _Pilot | None:
        with self._launch_lock:
            stop_claiming = self.config.renew_margin_s / 2
            with self._lock:
                live = [p for p in self._pilots.values() if p is not exclude and p.accepting(stop_claiming)]
            ready = [p for p in live if p.state == "ready"]
            if ready or live:
                return (ready or live)[-1]
            return self._launch() if create else None

    def _launch(self) -> _Pilot:
        cfg = self.config
        gen = f"pilot-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        sp = self.spool_root / gen
        for d in spool.DIRS:
            private.make_dirs(sp / d)
        pilot = _Pilot(gen, sp)
        script = sp / SCRIPT_FILE
        private.write_atomic(script, self._render(gen, sp).encode())  # 0600: sbatch reads it
        pseudo = Job(task_id=gen[len("pilot-"):], attempt=1, bundle_dir=sp, timeout_s=0, name="pilot")
        name = job_name(cfg, pseudo)
        job_id = self.commands.submit(script, chdir=sp, stdout=sp / "pilot.out", stderr=sp / "pilot.err", name=name)
        pilot.job_id = job_id
        private.write_atomic(sp / spool.JOB_ID_FILE, f"{job_id}\n".encode())
        with self._lock:
            self._pilots[gen] = pilot
        log.info("pilot allocation %s submitted (spool %s)", job_id, sp)
        self._next_slurm_poll = 0.0
        return pilot

    def _render(self, gen: str, sp: Path) -> str:
        cfg = self.config
        q = shlex.quote
        limit = cfg.limit_s
        pseudo = Job(task_id=gen[len("pilot-"):], attempt=1, bundle_dir=sp, timeout_s=limit or 0, name="pilot")
        lines_cfg = SlurmConfig.from_mapping({**{f: getattr(cfg, f) for f in SlurmConfig.__dataclass_fields__},
                                              "time_limit": cfg.pilot_time_limit})
        args = ["--slots", str(cfg.pilot_slots), "--runner-module", cfg.runner_module,
                "--time-limit-s", f"{limit or 0:g}", "--stop-claiming-s", f"{cfg.renew_margin_s / 2:g}",
                "--idle-timeout-s", f"{cfg.idle_timeout_s:g}", "--poll-s", f"{cfg.spool_poll_s:g}",
                "--heartbeat-s", f"{cfg.heartbeat_s:g}"] + ([] if cfg.spool_inotify else ["--no-inotify"])
        values = {
            "vqpu_sbatch": "\n".join(sbatch_lines(lines_cfg, pseudo)),
            "vqpu_spool": q(str(sp)),
            "vqpu_exports": "\n".join(export_lines(cfg)),
            "vqpu_setup": "\n".join(cfg.setup) if cfg.setup else ":",
            "vqpu_python": q(cfg.python),
            "vqpu_pilot_module": q(cfg.pilot_module),
            "vqpu_pilot_args": " ".join(q(a) for a in args),
        }
        return substitute(find_template(PILOT_TEMPLATE_NAME, cfg.pilot_template), values, "the pilot template")

    def _load_pilot(self, sp: Path) -> _Pilot | None:
        try:
            job_id = (sp / spool.JOB_ID_FILE).read_text().strip()
        except OSError:
            return None
        if not re.fullmatch(r"\d+", job_id):
            return None
        p = _Pilot(sp.name, sp, job_id=job_id)
        self._refresh_doc(p)
        p.ever_ready = p.state in ("ready", "draining", "closed")
        if p.state in ("closed", "exited"):
            p.dead = f"the pilot allocation {job_id} ended ({p.doc.get('reason') or p.state})"
        return p

    def _adopt_live_pilots(self) -> None:
        """A restarted agent keeps using the allocations its predecessor left running."""
        found = []
        try:
            entries = sorted(self.spool_root.iterdir())
        except OSError:
            return
        for sp in entries:
            if sp.is_dir() and sp.name not in self._pilots:
                p = self._load_pilot(sp)
                if p is not None and not p.dead:
                    found.append(p)
        if not found:
            return
        try:
            self._poll_slurm(found)
        except SchedulerError as exc:
            log.warning("could not check the pilots left running: %s", exc)
            return
        with self._lock:
            for p in found:
                if not p.dead:
                    self._pilots[p.gen] = p
                    log.info("adopted pilot allocation %s (%s)", p.job_id, p.state or "starting")

    def _ask_drain(self, p: _Pilot) -> None:
        if p.drain_asked:
            return
        p.drain_asked = True
        try:
            private.write_atomic(p.spool / spool.DRAINING_FILE, b"drain\n", durable=False)
        except OSError as exc:
            log.warning("could not ask pilot %s to drain: %s", p.job_id, exc)

    def _refresh_doc(self, p: _Pilot) -> None:
        path = p.spool / spool.STATE_FILE
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if mtime == p.doc_mtime:
            return
        try:
            p.doc = json.loads(path.read_text())
            p.doc_mtime = mtime
        except (OSError, ValueError):
            return
        if p.state in ("ready", "draining"):
            p.ever_ready = True

    # ----------------------------------------------------------- markers

    def _drop(self, pilot: _Pilot, name: str, job: Job) -> None:
        bundle_dir = Path(job.bundle_dir).resolve()
        self._point(job, pilot, name)
        private.write_atomic(pilot.spool / spool.INBOX / name, spool.marker_text(bundle_dir, job.timeout_s).encode(),
                             durable=False)

    def _point(self, job: Job, pilot: _Pilot, name: str) -> None:
        job.handle["slurm_job_id"] = pilot.job_id
        job.handle["pilot_spool"] = str(pilot.spool)
        private.write_atomic(Path(job.bundle_dir) / BUNDLE_POINTER,
                             json.dumps({"spool": str(pilot.spool), "name": name, "job_id": pilot.job_id}).encode(),
                             durable=False)

    def _report_scheduled(self, t: _Tracked) -> None:
        reason = REASON_QUEUED if t.pilot.state == "ready" else REASON_PENDING
        if reason != t.reason and not t.cancelled:
            t.reason = reason
            self.reporter.scheduled(t.job, {"executor": self.name, "job_id": t.pilot.job_id, "reason": reason})

    def _running_detail(self, p: _Pilot) -> dict:
        return {"executor": self.name, "job_id": p.job_id, "node": p.doc.get("host", "")}

    def _forget(self, t: _Tracked) -> None:
        with self._lock:
            if self._tracked.get(t.job.key) is t:
                del self._tracked[t.job.key]
            self._cancelled.discard(t.job.key)
            t.pilot.last_work = time.monotonic()

    def _migrate(self, t: _Tracked) -> None:
        """Move a queued marker from a pilot that takes no more work to one that does."""
        old = t.pilot
        src = old.spool / spool.INBOX / t.name
        if not src.exists():
            return
        try:
            target = self._active_pilot(create=True, exclude=old)
        except VqpuError as exc:
            if src.exists():
                try:
                    src.unlink()
                except FileNotFoundError:
                    return  # claimed meanwhile
                self._forget(t)
                self.reporter.failed(t.job, "scheduler_failed",
                                     one_line(f"could not start a new pilot allocation: {exc.message}"))
            return
        assert target is not None
        try:
            os.rename(src, target.spool / spool.INBOX / t.name)
        except FileNotFoundError:
            return  # the old pilot claimed it after all: it is in running/ there
        t.pilot = target
        try:
            self._point(t.job, target, t.name)
        except OSError as exc:
            log.warning("could not record the new pilot of %s: %s", t.job.task_id, exc,
                        extra=task_fields(t.job.task_id, t.job.attempt))
        t.reason = ""
        log.info("%s moved from pilot %s to pilot %s", t.job.task_id, old.job_id, target.job_id,
                 extra=task_fields(t.job.task_id, t.job.attempt))
        self._report_scheduled(t)

    def _finalize(self, t: _Tracked) -> None:
        p = t.pilot
        done = p.spool / spool.DONE / t.name
        try:
            status = json.loads(done.read_text())
        except (OSError, ValueError):
            status = {"status": "failed", "message": "unreadable done marker"}
        self._forget(t)
        try:
            done.unlink()
        except FileNotFoundError:
            pass
        if t.cancelled:
            return
        job = t.job
        if not t.running_reported:
            t.running_reported = True
            self.reporter.running(job, self._running_detail(p))
        result = bundle.read_result(Path(job.bundle_dir))
        what = status.get("status")
        msg = str(status.get("message") or "")
        if what == "timeout":
            self.reporter.failed(job, "timeout", one_line(msg or f"the job ran over its time limit of {job.timeout_s:g} s"))
        elif result is None and what in ("crashed", "failed", "cancelled"):
            self.reporter.failed(job, "runner_error", one_line(msg or "the runner ended without writing a result"))
        else:
            report_result(self.reporter, job, result)

    # ------------------------------------------------------------ watcher

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._scan()
                if time.monotonic() >= self._next_slurm_poll:
                    self._next_slurm_poll = time.monotonic() + self.config.poll_interval_s
                    with self._lock:
                        pilots = [p for p in self._pilots.values() if not p.dead]
                    if pilots:
                        self._poll_slurm(pilots)
                    self._manage()
            except SchedulerError as exc:
                log.warning("Slurm poll failed (%s); retrying in %.1f s", exc, self.config.poll_interval_s)
            except Exception:
                log.exception("pilot watcher error")
            self._watch.wait(self.config.spool_poll_s)

    def _scan(self) -> None:
        with self._lock:
            pilots = list(self._pilots.values())
            items = list(self._tracked.values())
        for p in pilots:
            self._refresh_doc(p)
            if p.gen not in self._watched and not p.dead:
                self._watched.add(p.gen)
                for d in (p.spool, p.spool / spool.RUNNING, p.spool / spool.DONE):
                    try:
                        self._watch.add(d)
                    except OSError:
                        pass
        by_pilot: dict[str, list[_Tracked]] = {}
        for t in items:
            by_pilot.setdefault(t.pilot.gen, []).append(t)
        stop_claiming = self.config.renew_margin_s / 2
        for gen, ts in by_pilot.items():
            p = ts[0].pilot
            running = set(spool.list_markers(p.spool / spool.RUNNING))
            done = set(spool.list_markers(p.spool / spool.DONE))
            for t in ts:
                if t.name in done:
                    self._finalize(t)
                elif t.name in running:
                    if not t.running_reported and not t.cancelled:
                        t.running_reported = True
                        self.reporter.running(t.job, self._running_detail(p))
                    if p.dead:
                        self._forget(t)
                        if not t.cancelled:
                            report_lost(self.reporter, t.job, one_line(f"{p.dead} while the task ran"
                                                                        + self._pilot_err(p)))
                elif t.cancelled:
                    continue
                elif p.dead and not p.ever_ready:
                    # It never started: do not hand the work to pilot after failing pilot.
                    if (p.spool / spool.INBOX / t.name).exists():
                        try:
                            (p.spool / spool.INBOX / t.name).unlink()
                        except FileNotFoundError:
                            continue
                        self._forget(t)
                        self.reporter.failed(t.job, "scheduler_failed",
                                             one_line(f"{p.dead} before the pilot started" + self._pilot_err(p)))
                elif not p.accepting(stop_claiming):
                    self._migrate(t)
                else:
                    self._report_scheduled(t)

    def _pilot_err(self, p: _Pilot) -> str:
        tail = [s for s in bundle.tail(p.spool / "pilot.err", 1500).splitlines() if s.strip()]
        return f"; pilot stderr: {' | '.join(tail[-2:])}" if tail else ""

    def _poll_slurm(self, pilots: list[_Pilot]) -> None:
        ids = [p.job_id for p in pilots if p.job_id]
        if not ids:
            return
        listed = self.commands.squeue(ids)
        now = time.time()
        for p in pilots:
            if not p.job_id or p.dead:
                continue
            info = listed.get(p.job_id) or self.commands.lookup(p.job_id)
            if info is None:
                p.misses += 1
                if p.misses >= self.config.lost_after_polls:
                    p.dead = f"Slurm no longer knows the pilot allocation {p.job_id}"
                continue
            p.misses = 0
            kind, _ = map_state(info.state)
            if kind == "pending":
                p.slurm_kind, p.slurm_reason = "pending", info.reason
            elif kind == "running":
                p.slurm_kind = "running"
                self._refresh_doc(p)
                try:
                    age = now - (p.spool / spool.ALIVE_FILE).stat().st_mtime
                except FileNotFoundError:
                    age = 0.0  # not started yet
                if age > self.config.heartbeat_stale_s:
                    p.dead = f"the pilot allocation {p.job_id} stopped answering (no heartbeat for {age:.0f} s)"
                    log.warning("%s: cancelling it", p.dead)
                    self.commands.scancel(p.job_id)
            elif kind != "unknown":
                p.slurm_kind = "final"
                self._refresh_doc(p)
                why = p.doc.get("reason") if p.state in ("closed", "exited") else ""
                p.dead = f"the pilot allocation {p.job_id} ended ({info.state.split()[0]}" + (f": {why})" if why else ")")
            if p.dead:
                log.info("%s", p.dead)

    def _manage(self) -> None:
        """Renewal and clean-up, once per Slurm poll."""
        cfg = self.config
        with self._lock:
            pilots = list(self._pilots.values())
            busy = {t.pilot.gen for t in self._tracked.values()}
        for p in pilots:
            if p.dead:
                if p.gen not in busy:
                    with self._lock:
                        self._pilots.pop(p.gen, None)
                continue
            if p.successor:
                succ = self._pilots.get(p.successor)
                if succ is None or succ.dead:
                    p.successor = None
                elif succ.state == "ready":
                    log.info("pilot %s is ready: draining pilot %s", succ.job_id, p.job_id)
                    self._ask_drain(p)
                continue
            deadline = p.doc.get("deadline")
            if p.state != "ready" or p.drain_asked or not deadline:
                continue
            recent = p.gen in busy or time.monotonic() - p.last_work < max(cfg.idle_timeout_s, 1.0)
            if time.time() > deadline - cfg.renew_margin_s and recent:
                try:
                    succ = self._launch()
                except (VqpuError, OSError) as exc:
                    log.warning("could not submit a successor for pilot %s: %s", p.job_id, exc)
                    continue
                p.successor = succ.gen
                log.info("pilot %s ends in %.0f s: successor %s submitted", p.job_id, deadline - time.time(),
                         succ.job_id)
