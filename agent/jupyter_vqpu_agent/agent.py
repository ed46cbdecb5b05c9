"""The HPC-side agent: claims work for its devices and realises it.

It only ever connects outbound, to Redis. The main thread blocks on the
devices' work streams (XREADGROUP), claims through the claim-and-bind script,
stages a hermetic bundle and hands it to the executor. A second thread renews
the leases of held tasks, announces the agent's presence and runs the reaper.
Executor reports come from executor threads and become fenced script calls.

Every failed Redis call, wherever it happens, is classified by
:func:`jupyter_vqpu_agent.faults.classify` (transient / waits for an operator /
bug). A report that cannot be delivered within the task's lease is let go:
the agent stops renewing the task and frees its capacity, and delivers the
report later if the fenced scripts still accept its token. Faults of the
agent's own (it cannot write its work root) hand the task back without using
an attempt and make the agent back off and announce itself unhealthy, rather
than fail the queue's tasks one after the other.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_vqpu.core.control import Claim, ControlPlane
from jupyter_vqpu.core.errors import VqpuError
from jupyter_vqpu.core.keys import TASK_ID_RE
from jupyter_vqpu.core.lifecycle import TaskState
from jupyter_vqpu.core.logs import task_fields
from jupyter_vqpu_agent import bundle, private
from jupyter_vqpu_agent.executors.base import Executor, Job
from jupyter_vqpu_agent.faults import BUG, OPERATOR, Backoff, Fault, classify

log = logging.getLogger("vqpu.agent")


@dataclass
class AgentConfig:
    """Knobs of one agent process (the CLI maps its flags onto these)."""

    devices: list[str]
    work_root: Path
    agent_id: str = ""
    lease_s: float = 30.0
    renew_s: float = 10.0
    max_attempts: int = 3
    capacity: int = 2
    block_ms: int = 2000
    reap_every_s: float = 5.0
    presence_ttl_s: float = 15.0
    task_timeout_s: float = 600.0
    drain_timeout_s: float = 60.0
    #: Hand-backs of one task for agents' own faults before it fails with reason agent_fault.
    max_handbacks: int = 3
    #: First pause in claiming after a fault of the agent's own (doubles up to the max).
    fault_backoff_s: float = 1.0
    fault_backoff_max_s: float = 300.0
    #: Bundles of finished attempts are removed this long after their last change (0: keep them).
    bundle_retention_s: float = 24 * 3600.0
    #: Reports that could not be delivered in their lease, kept to deliver later (oldest dropped first).
    max_undelivered: int = 1000
    undelivered_ttl_s: float = 3600.0

    def __post_init__(self) -> None:
        self.work_root = Path(self.work_root)
        if not self.agent_id:
            # Stable across restarts on the same host and work root, so a restarted
            # agent finds (and re-attaches to) the jobs its predecessor started.
            digest = hashlib.sha256(str(self.work_root.resolve()).encode()).hexdigest()[:8]
            self.agent_id = f"{socket.gethostname()}-{digest}"


@dataclass
class Held:
    claim: Claim
    job: Job
    claimed_at: float = field(default_factory=time.monotonic)


@dataclass
class Undelivered:
    """A final report the agent let go of (Redis was away longer than the lease); retried later.

    The fenced scripts accept it only while its token is still current, so a
    late delivery can never overwrite another attempt's outcome."""

    job: Job
    what: str  # 'completed' | 'failed' | 'released'
    send: Callable[[], Any]
    since: float = field(default_factory=time.monotonic)


class AgentFault(Exception):
    """A fault of the agent's own (its work root, its executor), not of the task."""


class Agent:
    def __init__(self, cp: ControlPlane, executor: Executor, config: AgentConfig) -> None:
        self.cp = cp
        self.executor = executor
        self.cfg = config
        self.held: dict[str, Held] = {}
        self.undelivered: dict[str, Undelivered] = {}
        # Pointers delivered to us beyond our free capacity (XREADGROUP's COUNT is per stream, so
        # several devices can deliver more): kept, in order, and taken as capacity frees.
        self._backlog: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()  # stop claiming
        self._done = threading.Event()  # everything stopped
        self._freed = threading.Event()
        self._snapshots: dict[str, bytes] = {}
        # Health: problems with an expiry (monotonic), announced in presence while they last.
        self._problems: dict[str, float] = {}
        self._fault_backoff = Backoff(config.fault_backoff_s, config.fault_backoff_max_s)
        self._fault_until = 0.0
        self._fault_reason = ""
        self.stats = {"claimed": 0, "completed": 0, "failed": 0, "fenced": 0, "recovered": 0,
                      "handed_back": 0, "let_go": 0, "delivered_late": 0, "swept": 0}

    @property
    def lease_ms(self) -> int:
        return int(self.cfg.lease_s * 1000)

    # ---------------------------------------------------------- health

    def _note(self, problem: str, for_s: float | None = None) -> None:
        """Remember a problem to announce in presence for a while (default: one presence TTL)."""
        with self._lock:
            self._problems[problem] = time.monotonic() + (for_s if for_s is not None else self.cfg.presence_ttl_s)

    def health(self) -> str:
        """'' when healthy, else what is wrong (one line): what presence announces."""
        now = time.monotonic()
        problems = []
        if self._fault_reason and now < self._fault_until:
            problems.append(f"{self._fault_reason}; not claiming for {self._fault_until - now:.0f} s")
        try:
            problems += self.executor.health()
        except Exception as exc:  # a broken health check is itself a problem, never a crash
            problems.append(f"the executor's health check failed: {exc}")
        with self._lock:
            for p, until in list(self._problems.items()):
                if until < now:
                    del self._problems[p]
                elif p not in problems:
                    problems.append(p)
        return "; ".join(problems)[:300]

    def _fault(self, exc: BaseException, where: str) -> Fault:
        """Classify a failed control-plane call and log it as one readable line (a traceback for bugs)."""
        fault = classify(exc)
        if fault.kind == BUG:
            log.error("%s: %s", where, fault.message, exc_info=exc)
        else:
            log.warning("%s: %s; retrying", where, fault.message)
        if fault.kind == OPERATOR:
            self._note(fault.message)
        return fault

    def _retry(self, fn: Callable[[], Any], where: str) -> Any:
        """Run ``fn`` until it succeeds or the agent stops, backing off on Redis faults (start-up calls)."""
        backoff = Backoff()
        while True:
            try:
                return fn()
            except Exception as exc:
                if not self._fault(exc, where).retry or self._stop.is_set():
                    raise
                self._stop.wait(backoff.next())

    # ---------------------------------------------------------- running

    def run(self) -> None:
        """Serve until stop() is called; then drain and return."""
        self._retry(self.cp.check_server, "start-up")
        for d in self.cfg.devices:
            self._retry(lambda d=d: self.cp.ensure_group(d), "start-up")
        self.executor.start(self)
        self._retry(self._reattach, "re-attach")
        keeper = self._start_keeper()
        log.info("agent %s serving %s with the %s executor", self.cfg.agent_id, ",".join(self.cfg.devices),
                 self.executor.name)
        backoff = Backoff()
        next_stale_scan = 0.0
        while not self._stop.is_set():
            if not keeper.is_alive():
                problem = "the keep-alive thread died; restarted it"
                log.error(problem)
                self._note(problem, self.cfg.presence_ttl_s * 2)
                keeper = self._start_keeper()
            try:
                if not self._may_claim():
                    continue
                free = self.cfg.capacity - len(self.held)
                if free <= 0:
                    self._freed.clear()
                    self._freed.wait(1.0)
                    continue
                entries, self._backlog = self._backlog, []
                if time.monotonic() >= next_stale_scan:
                    next_stale_scan = time.monotonic() + self.cfg.reap_every_s
                    for d in self.cfg.devices:
                        entries += self.cp.stale_work(d, self.cfg.agent_id, self.lease_ms, count=free)
                if not entries:
                    entries = self.cp.read_work(self.cfg.devices, self.cfg.agent_id, free, self.cfg.block_ms)
                for n, item in enumerate(entries):
                    if self._stop.is_set() or not self._may_claim(wait=False):
                        break  # unclaimed pointers stay pending; another agent's reaper picks them up
                    if len(self.held) >= self.cfg.capacity:  # capacity is across all our devices
                        self._backlog = entries[n:]
                        break
                    self._take(*item)
                backoff.reset()
            except Exception as exc:
                fault = self._fault(exc, "main loop")
                self._stop.wait(backoff.next() if fault.retry else 1.0)
        self._drain()
        self._done.set()
        keeper.join(timeout=5)

    def _start_keeper(self) -> threading.Thread:
        keeper = threading.Thread(target=self._keep_alive, name="vqpu-keepalive", daemon=True)
        keeper.start()
        return keeper

    def _may_claim(self, wait: bool = True) -> bool:
        """False while backing off after a fault of the agent's own (waits a little when ``wait``).

        When the pause is over, the work root is probed before any claim, so a
        still-broken agent backs off again without touching a task."""
        if not self._fault_reason:
            return True
        now = time.monotonic()
        if now < self._fault_until:
            if wait:
                self._stop.wait(min(1.0, self._fault_until - now))
            return False
        problem = self._probe_work_root()
        if problem:
            self._agent_fault(problem)
            return False
        return True

    def _probe_work_root(self) -> str:
        """'' if the work root takes a small file now, else why not."""
        probe = self.cfg.work_root / f".vqpu-probe-{self.cfg.agent_id}"
        try:
            private.make_dirs(self.cfg.work_root)
            bundle.write_atomic(probe, b"probe")
            probe.unlink()
        except OSError as exc:
            return _work_root_problem(self.cfg.work_root, exc)
        return ""

    def _agent_fault(self, problem: str) -> None:
        """Stop claiming for a growing interval and say why in presence."""
        pause = self._fault_backoff.next()
        self._fault_reason = problem
        self._fault_until = time.monotonic() + pause
        log.error("%s; not claiming for %.1f s", problem, pause)

    def _agent_ok(self) -> None:
        if self._fault_reason:
            log.info("agent fault cleared: %s", self._fault_reason)
        self._fault_reason = ""
        self._fault_backoff.reset()

    def _reattach(self) -> None:
        """Resume tracking the jobs a previous process with our agent id left running.

        What the executor cannot find any more is handed back to the queue at
        once rather than after its lease runs out."""
        for d in self.cfg.devices:
            for claim in self.cp.held_by(d, self.cfg.agent_id):
                if claim.task_id in self.held:
                    continue  # a retried pass: already re-attached
                job = Job(task_id=claim.task_id, attempt=claim.attempt, token=claim.token,
                          timeout_s=self.cfg.task_timeout_s,
                          bundle_dir=self.cfg.work_root / d / claim.task_id / f"attempt-{claim.token}",
                          name=claim.fields.get("name", ""))
                with self._lock:
                    self.held[claim.task_id] = Held(claim, job)
                if self.executor.reattach(job):
                    log.info("re-attached to %s attempt %d", claim.task_id, claim.attempt,
                             extra=task_fields(claim.task_id, claim.attempt))
                    continue
                self._release(claim.task_id)
                self.cp.recover(d, max_attempts=self.cfg.max_attempts, by=self.cfg.agent_id,
                                task_ids=[claim.task_id], force=True)
                log.warning("%s attempt %d was lost with the previous agent process; requeued",
                            claim.task_id, claim.attempt, extra=task_fields(claim.task_id, claim.attempt))

    def stop(self) -> None:
        """Stop claiming; run() drains held work and returns."""
        self._stop.set()
        self._freed.set()

    def _drain(self) -> None:
        deadline = time.monotonic() + self.cfg.drain_timeout_s
        while self.held and time.monotonic() < deadline:
            self._freed.clear()
            self._freed.wait(0.5)
        with self._lock:
            leftovers = list(self.held.values())
        if leftovers and self.executor.survives_agent:
            # Batch jobs keep running; a restarted agent with our id re-attaches to them,
            # and if none comes their leases expire and the reaper requeues them.
            log.info("leaving %d job(s) running for re-attach", len(leftovers))
            leftovers = []
        for h in leftovers:  # hand back what did not finish in time
            self.executor.cancel(h.job)
            try:
                self.cp.recover(h.claim.device, max_attempts=self.cfg.max_attempts, by=self.cfg.agent_id,
                                task_ids=[h.claim.task_id], force=True)
            except Exception as exc:  # its lease expires and a reaper requeues it
                self._fault(exc, f"handing back {h.claim.task_id} on shutdown")
            self._release(h.claim.task_id)
        self.executor.shutdown(wait=True)
        self._deliver_undelivered()
        for d in self.cfg.devices:
            try:
                self.cp.presence(d, self.cfg.agent_id, 0)
            except Exception as exc:
                self._fault(exc, "leaving")
        log.info("agent %s stopped (%s)", self.cfg.agent_id, self.stats)

    # --------------------------------------------------------- claiming

    def _take(self, device: str, entry_id: str, pointer_task: str) -> None:
        claim = self.cp.claim_next(device, self.cfg.agent_id, self.lease_ms, entry_id)
        if claim is None:
            return
        faults_before = self._fault_until  # a fault found while starting this job must not be cleared below
        task_id = claim.task_id
        self.stats["claimed"] += 1
        # said before the job starts: a fast job reports its end from the executor before submit returns
        log.info("claimed %s attempt %d snapshot %s", task_id, claim.attempt, claim.snapshot_id[:12],
                 extra={**task_fields(task_id, claim.attempt), "snapshot_id": claim.snapshot_id})
        f = claim.fields
        attempt_dir = self.cfg.work_root / device / task_id / f"attempt-{claim.token}"
        job = Job(task_id=task_id, attempt=claim.attempt, token=claim.token, bundle_dir=attempt_dir,
                  timeout_s=self.cfg.task_timeout_s, name=f.get("name", ""))
        with self._lock:
            self.held[task_id] = Held(claim, job)
        try:
            spec = bundle.TaskSpec(
                task_id=task_id, device=device, attempt=claim.attempt, snapshot_id=claim.snapshot_id,
                shots=int(f["shots"]), circuit_format=f.get("circuit_format", "qasm3"),
                seed=int(f["seed"]) if f.get("seed") else None,
                optimization_level=int(f.get("optimization_level") or 2),
                options=_json(f.get("options")),
            )
            batch = bundle.batch_of(f)
        except (KeyError, ValueError, TypeError) as exc:  # the task's own fields: its fault
            self.failed(job, "staging_error", f"the task's fields are unusable: {exc}")
            return
        try:
            snapshot = self._snapshot(device, claim.snapshot_id)
            try:
                bundle.stage(attempt_dir, spec, snapshot, f.get("circuit", ""), batch)
            except OSError as exc:
                raise AgentFault(_work_root_problem(self.cfg.work_root, exc)) from exc
            self.executor.submit(job)
        except AgentFault as exc:
            self._hand_back(job, str(exc))
            self._agent_fault(str(exc))
            return
        except VqpuError as exc:  # the control plane lacks what the task names (its bound snapshot)
            self.failed(job, "staging_error", f"could not stage the job bundle: {exc}")
            return
        except Exception as exc:
            # Redis went away while reading the snapshot, or the executor could not take the job:
            # not the task's fault either, so it goes back without using an attempt.
            problem = (classify(exc).message if not isinstance(exc, OSError)
                       else _work_root_problem(self.cfg.work_root, exc))
            log.exception("could not start %s", task_id, extra=task_fields(task_id, claim.attempt))
            self._hand_back(job, f"could not start the job: {problem}")
            return
        if self._fault_until == faults_before:
            self._agent_ok()

    def _snapshot(self, device: str, sid: str) -> bytes:
        data = self._snapshots.get(sid)
        if data is None:
            data = self._snapshots[sid] = self.cp.snapshot_bytes(device, sid)
        return data

    def _holder(self, job: Job) -> Held | None:
        with self._lock:
            h = self.held.get(job.task_id)
        return h if h is not None and h.job.key == job.key else None

    def _release(self, task_id: str) -> None:
        with self._lock:
            self.held.pop(task_id, None)
        self._freed.set()

    def _verdict(self, job: Job, verdict: str, final: bool) -> None:
        if verdict == "ok" and not final:
            return
        if verdict == "fenced":
            self.stats["fenced"] += 1
            log.warning("%s attempt %d was fenced: another attempt owns it now", job.task_id, job.attempt,
                        extra=task_fields(job.task_id, job.attempt))
        if verdict in ("cancelled", "fenced") and not final:
            self.executor.cancel(job)
        self._release(job.task_id)

    def _hand_back(self, job: Job, problem: str) -> None:
        """Return a held task to the queue for a fault of ours, without using an attempt (release.lua)."""
        send = lambda: self.cp.release(job.task_id, self.cfg.agent_id, job.token, problem,  # noqa: E731
                                       max_handbacks=self.cfg.max_handbacks)
        reply = self._call(send, job)
        if reply is None:
            self._let_go(job, "released", send)
            return
        verdict, n = reply
        if verdict == "requeued":
            self.stats["handed_back"] += 1
            log.warning("%s attempt %d handed back (%s; hand-back %s of %s)", job.task_id, job.attempt, problem,
                        n, self.cfg.max_handbacks, extra=task_fields(job.task_id, job.attempt))
        elif verdict == "failed":
            self.stats["failed"] += 1
            log.error("%s failed after %s hand-backs by agents that could not run it (%s)", job.task_id, n,
                      problem, extra=task_fields(job.task_id, job.attempt))
        self._verdict(job, "ok" if verdict in ("requeued", "failed") else verdict, final=True)

    # ---------------------------------------------- Reporter (executor side)

    def scheduled(self, job: Job, detail: dict[str, Any]) -> None:
        self._progress(job, TaskState.SCHEDULED, detail)

    def running(self, job: Job, detail: dict[str, Any]) -> None:
        self._progress(job, TaskState.RUNNING, detail)

    def _progress(self, job: Job, state: str, detail: dict[str, Any]) -> None:
        if self._holder(job) is None:
            return
        verdict = self._call(lambda: self.cp.progress(job.task_id, self.cfg.agent_id, job.token, state, detail,
                                                      self.lease_ms), job)
        if verdict is not None:  # a lost progress report is harmless: the final one says it all
            self._verdict(job, verdict[0], final=False)

    def finished(self, job: Job, result: dict[str, Any]) -> None:
        h = self._holder(job)
        if h is None:
            return
        if result.get("snapshot_id") != h.claim.snapshot_id:
            self.failed(job, "runner_error", "the runner used another snapshot than the one bound at claim")
            return
        send = lambda: self.cp.finish(job.task_id, self.cfg.agent_id, job.token, TaskState.COMPLETED,  # noqa: E731
                                      result=result)
        self._final(job, "completed", send, self._call(send, job))

    def failed(self, job: Job, reason: str, message: str) -> None:
        if self._holder(job) is None:
            return
        if reason == "runner_error":
            # A job that died without a result while our work root cannot take a file (the disk
            # filled under it) failed for a fault of ours, not of the task: hand it back.
            problem = self._probe_work_root()
            if problem:
                self._agent_fault(problem)
                self._hand_back(job, problem)
                return
        send = lambda: self.cp.finish(job.task_id, self.cfg.agent_id, job.token, TaskState.FAILED,  # noqa: E731
                                      reason=reason, error=message)
        self._final(job, "failed", send, self._call(send, job), f" ({reason}): {message}", reason)

    def _final(self, job: Job, what: str, send: Callable[[], Any], verdict: str | None, detail: str = "",
               reason: str = "") -> None:
        if verdict is None:
            self._let_go(job, what, send)
            return
        if verdict == "ok":
            self.stats[what] += 1
            (log.info if what == "completed" else log.warning)(
                "%s %s attempt %d%s", what, job.task_id, job.attempt, detail,
                extra={**task_fields(job.task_id, job.attempt), **({"reason": reason} if reason else {})})
        self._verdict(job, verdict, final=True)

    def lost(self, job: Job, message: str) -> None:
        """The job vanished with the place it ran in: hand the task back now (attempt counted)."""
        h = self._holder(job)
        if h is None:
            return
        log.warning("%s attempt %d lost: %s; handing it back", job.task_id, job.attempt, message,
                    extra=task_fields(job.task_id, job.attempt))
        # If Redis is away too long, its lease runs out and a reaper requeues it all the same.
        self._call(lambda: self.cp.recover(h.claim.device, max_attempts=self.cfg.max_attempts, by=self.cfg.agent_id,
                                           task_ids=[job.task_id], force=True), job)
        self._release(job.task_id)

    def _call(self, fn: Callable[[], Any], job: Job) -> Any:
        """A control-plane write for a held task, retried (with backoff) while its lease lasts.

        Every failure is classified by :func:`faults.classify`: transient and
        operator faults are retried, a bug is not. Returns None when the call
        did not go through in time; the caller then lets the task go."""
        deadline = time.monotonic() + self.cfg.lease_s
        backoff = Backoff(0.1, 2.0)
        while True:
            try:
                return fn()
            except Exception as exc:
                fault = self._fault(exc, f"reporting {job.task_id} attempt {job.attempt}")
                delay = backoff.next()
                if not fault.retry or time.monotonic() + delay > deadline:
                    return None
                time.sleep(delay)

    def _let_go(self, job: Job, what: str, send: Callable[[], Any]) -> None:
        """Stop holding a task whose report could not be delivered within its lease.

        No more renewals (the lease runs out and a reaper requeues the task),
        its capacity is free for new work, and the report is kept, in a bounded
        list, to deliver later: the fenced script takes it only if our token is
        still current. The result itself stays in the bundle on disk."""
        if self._holder(job) is None:
            return
        self.stats["let_go"] += 1
        log.error("%s attempt %d: could not report it %s within its lease; letting it go (its bundle stays in "
                  "%s; the report is retried while its token is current)", job.task_id, job.attempt, what,
                  job.bundle_dir, extra=task_fields(job.task_id, job.attempt))
        with self._lock:
            self.undelivered[job.task_id] = Undelivered(job, what, send)
            while len(self.undelivered) > self.cfg.max_undelivered:
                self.undelivered.pop(next(iter(self.undelivered)))
        self._release(job.task_id)

    def _deliver_undelivered(self) -> bool:
        """Try once each report that was let go: delivered, refused by the fence, or kept for later.

        Returns False while some are kept because Redis still fails."""
        with self._lock:
            pending = list(self.undelivered.items())
        now = time.monotonic()
        for task_id, u in pending:
            if now - u.since > self.cfg.undelivered_ttl_s:
                log.warning("%s: dropping its undelivered report after %.0f s", task_id, now - u.since,
                            extra=task_fields(task_id, u.job.attempt))
                self._forget_undelivered(task_id, u)
                continue
            try:
                reply = u.send()
            except Exception as exc:
                if self._fault(exc, f"delivering the late report of {task_id}").retry:
                    return False  # Redis is still away: the others would fail the same way
                self._forget_undelivered(task_id, u)
                continue
            verdict = reply[0] if isinstance(reply, tuple) else reply
            self._forget_undelivered(task_id, u)
            if verdict in ("ok", "requeued", "failed"):
                self.stats["delivered_late"] += 1
                log.info("%s attempt %d: late report (%s) delivered", task_id, u.job.attempt, u.what,
                         extra=task_fields(task_id, u.job.attempt))
            else:
                log.warning("%s attempt %d: late report (%s) refused (%s): another attempt owns the task",
                            task_id, u.job.attempt, u.what, verdict, extra=task_fields(task_id, u.job.attempt))
        return True

    def _forget_undelivered(self, task_id: str, u: Undelivered) -> None:
        with self._lock:
            if self.undelivered.get(task_id) is u:
                del self.undelivered[task_id]

    # ------------------------------------------- leases, presence, reaper

    def _keep_alive(self) -> None:
        next_reap = 0.0
        next_sweep = 0.0
        interval = min(self.cfg.renew_s, self.cfg.presence_ttl_s / 3)
        while not self._done.is_set():
            # Three steps, each on its own: a presence the ACL or memory refuses must not stop renewals.
            try:
                problem = self.health()
                for d in self.cfg.devices:
                    self.cp.presence(d, self.cfg.agent_id, int(self.cfg.presence_ttl_s * 1000), problem)
            except Exception as exc:
                self._fault(exc, "presence")
            try:
                # Late reports first: they may still land before a reaper voids their token.
                self._deliver_undelivered()
                with self._lock:
                    held = [(tid, h.job.token) for tid, h in self.held.items()]
                    jobs = {tid: h.job for tid, h in self.held.items()}
                for tid, verdict in self.cp.heartbeat(held, self.cfg.agent_id, self.lease_ms).items():
                    self._verdict(jobs[tid], verdict, final=False)
            except Exception as exc:
                self._fault(exc, "lease renewal")
            try:
                if time.monotonic() >= next_reap and not self._stop.is_set():
                    next_reap = time.monotonic() + self.cfg.reap_every_s
                    for d in self.cfg.devices:
                        for tid in self.cp.expired(d):
                            if tid in self.undelivered:  # ours, with a late report: settled by its delivery
                                continue
                            [(_, what, attempt)] = self.cp.recover(d, max_attempts=self.cfg.max_attempts,
                                                                   by=self.cfg.agent_id, task_ids=[tid])
                            if what in ("requeued", "failed"):
                                self.stats["recovered"] += 1
                                log.warning("reaper: %s %s after attempt %s", tid, what, attempt,
                                            extra=task_fields(tid, attempt))
            except Exception as exc:
                self._fault(exc, "reaper")
            if self.cfg.bundle_retention_s > 0 and time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + min(600.0, max(self.cfg.reap_every_s, self.cfg.bundle_retention_s / 4))
                try:
                    self.sweep_bundles()
                except Exception:
                    log.exception("bundle sweep failed")
            self._done.wait(interval)

    def sweep_bundles(self) -> int:
        """Remove the bundles of tasks not changed for ``bundle_retention_s``; never one the agent
        still holds or has a report for. Returns how many task directories it removed (0 with retention 0)."""
        if self.cfg.bundle_retention_s <= 0:
            return 0
        cutoff = time.time() - self.cfg.bundle_retention_s
        with self._lock:
            keep = set(self.held) | set(self.undelivered)
        removed = 0
        for d in self.cfg.devices:
            try:
                entries = list((self.cfg.work_root / d).iterdir())
            except OSError:
                continue
            for task_dir in entries:
                if task_dir.name in keep or not TASK_ID_RE.match(task_dir.name) or not task_dir.is_dir():
                    continue
                if _newest_mtime(task_dir) >= cutoff:
                    continue
                shutil.rmtree(task_dir, ignore_errors=True)
                removed += 1
        if removed:
            self.stats["swept"] += removed
            log.info("removed %d bundle(s) older than %.0f s", removed, self.cfg.bundle_retention_s)
        return removed


def _newest_mtime(task_dir: Path) -> float:
    """The last change under a task's directory (its attempt directories and their files, one level)."""
    newest = task_dir.stat().st_mtime
    for attempt in task_dir.iterdir():
        try:
            newest = max(newest, attempt.stat().st_mtime)
            if attempt.is_dir():
                newest = max([newest, *(f.stat().st_mtime for f in attempt.iterdir())])
        except OSError:
            continue
    return newest


def _work_root_problem(work_root: Path, exc: OSError) -> str:
    """One line saying what is wrong with the work root."""
    if exc.errno == errno.ENOSPC:
        what = "is full (ENOSPC)"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        what = "is not writable"
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST):
        what = "is not a directory"
    else:
        what = "is unusable"
    return f"the work root {work_root} {what}: {exc.strerror or exc}"


def _json(text: str | None) -> dict:
    import json

    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}
