"""The HPC-side agent: claims work for its devices and realises it.

It only ever connects outbound, to Redis. The main thread blocks on the
devices' work streams (XREADGROUP), claims through the claim-and-bind script,
stages a hermetic bundle and hands it to the executor. A second thread renews
the leases of held tasks, announces the agent's presence and runs the reaper.
Executor reports come from executor threads and become fenced script calls.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from jupyter_vqpu.core.control import Claim, ControlPlane
from jupyter_vqpu.core.logs import task_fields
from jupyter_vqpu_agent import bundle
from jupyter_vqpu_agent.executors.base import Executor, Job

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


class Agent:
    def __init__(self, cp: ControlPlane, executor: Executor, config: AgentConfig) -> None:
        self.cp = cp
        self.executor = executor
        self.cfg = config
        self.held: dict[str, Held] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()  # stop claiming
        self._done = threading.Event()  # everything stopped
        self._freed = threading.Event()
        self._snapshots: dict[str, bytes] = {}
        self.stats = {"claimed": 0, "completed": 0, "failed": 0, "fenced": 0, "recovered": 0}

    @property
    def lease_ms(self) -> int:
        return int(self.cfg.lease_s * 1000)

    # ---------------------------------------------------------- running

    def run(self) -> None:
        """Serve until stop() is called; then drain and return."""
        self.cp.check_server()
        for d in self.cfg.devices:
            self.cp.ensure_group(d)
        self.executor.start(self)
        self._reattach()
        keeper = threading.Thread(target=self._keep_alive, name="vqpu-keepalive", daemon=True)
        keeper.start()
        log.info("agent %s serving %s with the %s executor", self.cfg.agent_id, ",".join(self.cfg.devices),
                 self.executor.name)
        backoff = 0.1
        next_stale_scan = 0.0
        while not self._stop.is_set():
            try:
                free = self.cfg.capacity - len(self.held)
                if free <= 0:
                    self._freed.clear()
                    self._freed.wait(1.0)
                    continue
                if time.monotonic() >= next_stale_scan:
                    next_stale_scan = time.monotonic() + self.cfg.reap_every_s
                    for d in self.cfg.devices:
                        for item in self.cp.stale_work(d, self.cfg.agent_id, self.lease_ms, count=free):
                            self._take(*item)
                entries = self.cp.read_work(self.cfg.devices, self.cfg.agent_id, free, self.cfg.block_ms)
                for item in entries:
                    if self._stop.is_set():
                        break  # unclaimed pointers stay pending; another agent's reaper picks them up
                    self._take(*item)
                backoff = 0.1
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("control plane unreachable (%s); retrying in %.1f s", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except (redis.exceptions.NoScriptError, redis.exceptions.NoPermissionError) as exc:
                # A restarted or flushed Redis forgot the scripts, and a least-privilege agent may not load
                # them: the gateway (or `vqpu device seed`) does. Wait for it rather than fail.
                log.warning("control-plane scripts are not loaded in Redis (%s); waiting for the gateway "
                            "or `vqpu device seed` to load them; retrying in %.1f s", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:
                log.exception("agent main loop error")
                self._stop.wait(1.0)
        self._drain()
        self._done.set()
        keeper.join(timeout=5)

    def _reattach(self) -> None:
        """Resume tracking the jobs a previous process with our agent id left running.

        What the executor cannot find any more is handed back to the queue at
        once rather than after its lease runs out."""
        for d in self.cfg.devices:
            for claim in self.cp.held_by(d, self.cfg.agent_id):
                job = Job(task_id=claim.task_id, attempt=claim.token, timeout_s=self.cfg.task_timeout_s,
                          bundle_dir=self.cfg.work_root / d / claim.task_id / f"attempt-{claim.token}",
                          name=claim.fields.get("name", ""))
                with self._lock:
                    self.held[claim.task_id] = Held(claim, job)
                if self.executor.reattach(job):
                    log.info("re-attached to %s attempt %d", claim.task_id, claim.token,
                             extra=task_fields(claim.task_id, claim.token))
                    continue
                self._release(claim.task_id)
                self.cp.recover(d, max_attempts=self.cfg.max_attempts, by=self.cfg.agent_id,
                                task_ids=[claim.task_id], force=True)
                log.warning("%s attempt %d was lost with the previous agent process; requeued",
                            claim.task_id, claim.token, extra=task_fields(claim.task_id, claim.token))

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
            self.cp.recover(h.claim.device, max_attempts=self.cfg.max_attempts, by=self.cfg.agent_id,
                            task_ids=[h.claim.task_id], force=True)
            self._release(h.claim.task_id)
        self.executor.shutdown(wait=True)
        for d in self.cfg.devices:
            try:
                self.cp.presence(d, self.cfg.agent_id, 0)
            except redis.RedisError:
                pass
        log.info("agent %s stopped (%s)", self.cfg.agent_id, self.stats)

    # --------------------------------------------------------- claiming

    def _take(self, device: str, entry_id: str, pointer_task: str) -> None:
        claim = self.cp.claim_next(device, self.cfg.agent_id, self.lease_ms, entry_id)
        if claim is None:
            return
        task_id = claim.task_id
        self.stats["claimed"] += 1
        f = claim.fields
        attempt_dir = self.cfg.work_root / device / task_id / f"attempt-{claim.token}"
        job = Job(task_id=task_id, attempt=claim.token, bundle_dir=attempt_dir,
                  timeout_s=self.cfg.task_timeout_s, name=f.get("name", ""))
        with self._lock:
            self.held[task_id] = Held(claim, job)
        try:
            spec = bundle.TaskSpec(
                task_id=task_id, device=device, attempt=claim.token, snapshot_id=claim.snapshot_id,
                shots=int(f["shots"]), circuit_format=f.get("circuit_format", "qasm3"),
                seed=int(f["seed"]) if f.get("seed") else None,
                optimization_level=int(f.get("optimization_level") or 1),
                options=_json(f.get("options")),
            )
            bundle.stage(attempt_dir, spec, self._snapshot(device, claim.snapshot_id), f.get("circuit", ""))
        except Exception as exc:
            log.exception("staging %s failed", task_id, extra=task_fields(task_id, claim.token))
            self.failed(job, "staging_error", f"could not stage the job bundle: {exc}")
            return
        log.info("claimed %s attempt %d snapshot %s", task_id, claim.token, claim.snapshot_id[:12],
                 extra={**task_fields(task_id, claim.token), "snapshot_id": claim.snapshot_id})
        self.executor.submit(job)

    def _snapshot(self, device: str, sid: str) -> bytes:
        data = self._snapshots.get(sid)
        if data is None:
            data = self._snapshots[sid] = self.cp.snapshot_bytes(device, sid)
        return data

    def _holder(self, job: Job) -> Held | None:
        with self._lock:
            h = self.held.get(job.task_id)
        return h if h is not None and h.job.attempt == job.attempt else None

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

    # ---------------------------------------------- Reporter (executor side)

    def scheduled(self, job: Job, detail: dict[str, Any]) -> None:
        self._progress(job, "scheduled", detail)

    def running(self, job: Job, detail: dict[str, Any]) -> None:
        self._progress(job, "running", detail)

    def _progress(self, job: Job, state: str, detail: dict[str, Any]) -> None:
        if self._holder(job) is None:
            return
        verdict = self._call(self.cp.progress, job.task_id, self.cfg.agent_id, job.attempt, state, detail,
                             self.lease_ms)
        if verdict is not None:
            self._verdict(job, verdict[0], final=False)

    def finished(self, job: Job, result: dict[str, Any]) -> None:
        h = self._holder(job)
        if h is None:
            return
        if result.get("snapshot_id") != h.claim.snapshot_id:
            self.failed(job, "runner_error", "the runner used another snapshot than the one bound at claim")
            return
        verdict = self._call(self.cp.finish, job.task_id, self.cfg.agent_id, job.attempt, "completed",
                             result=result)
        if verdict == "ok":
            self.stats["completed"] += 1
            log.info("completed %s attempt %d", job.task_id, job.attempt, extra=task_fields(job.task_id, job.attempt))
        if verdict is not None:
            self._verdict(job, verdict, final=True)

    def failed(self, job: Job, reason: str, message: str) -> None:
        if self._holder(job) is None:
            return
        verdict = self._call(self.cp.finish, job.task_id, self.cfg.agent_id, job.attempt, "failed",
                             reason=reason, error=message)
        if verdict == "ok":
            self.stats["failed"] += 1
            log.warning("failed %s attempt %d (%s): %s", job.task_id, job.attempt, reason, message,
                        extra={**task_fields(job.task_id, job.attempt), "reason": reason})
        if verdict is not None:
            self._verdict(job, verdict, final=True)

    def lost(self, job: Job, message: str) -> None:
        """The job vanished with the place it ran in: hand the task back now (attempt counted)."""
        h = self._holder(job)
        if h is None:
            return
        log.warning("%s attempt %d lost: %s; handing it back", job.task_id, job.attempt, message,
                    extra=task_fields(job.task_id, job.attempt))
        self._call(self.cp.recover, h.claim.device, max_attempts=self.cfg.max_attempts, by=self.cfg.agent_id,
                   task_ids=[job.task_id], force=True)
        self._release(job.task_id)

    def _call(self, fn, *args, **kwargs):
        """A control-plane write from an executor thread, retried while Redis is away.

        Gives up only when the lease would be gone anyway; then the reaper
        requeues the task and our token is void."""
        deadline = time.monotonic() + self.cfg.lease_s
        delay = 0.1
        while True:
            try:
                return fn(*args, **kwargs)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if time.monotonic() + delay > deadline:
                    log.error("giving up on %s: control plane unreachable (%s)", args[0], exc,
                              extra=task_fields(kwargs["task_ids"][0] if "task_ids" in kwargs else args[0]))
                    return None
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    # ------------------------------------------- leases, presence, reaper

    def _keep_alive(self) -> None:
        next_reap = 0.0
        interval = min(self.cfg.renew_s, self.cfg.presence_ttl_s / 3)
        while not self._done.is_set():
            try:
                for d in self.cfg.devices:
                    self.cp.presence(d, self.cfg.agent_id, int(self.cfg.presence_ttl_s * 1000))
                with self._lock:
                    held = [(tid, h.job.attempt) for tid, h in self.held.items()]
                    jobs = {tid: h.job for tid, h in self.held.items()}
                for tid, verdict in self.cp.heartbeat(held, self.cfg.agent_id, self.lease_ms).items():
                    self._verdict(jobs[tid], verdict, final=False)
                if time.monotonic() >= next_reap and not self._stop.is_set():
                    next_reap = time.monotonic() + self.cfg.reap_every_s
                    for d in self.cfg.devices:
                        for tid, what, attempt in self.cp.recover(d, max_attempts=self.cfg.max_attempts,
                                                                  by=self.cfg.agent_id):
                            if what in ("requeued", "failed"):
                                self.stats["recovered"] += 1
                                log.warning("reaper: %s %s after attempt %s", tid, what, attempt,
                                            extra=task_fields(tid, attempt))
            except redis.RedisError as exc:
                log.warning("keep-alive: %s", exc)
            except Exception:
                log.exception("keep-alive error")
            self._done.wait(interval)


def _json(text: str | None) -> dict:
    import json

    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}
