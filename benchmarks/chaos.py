"""Fault-injection harness: nothing lost, nothing twice, nothing stuck.

Starts a real redis-server (AOF) and K agents as separate processes, measures this
machine with a calibration batch, then submits N tasks from several client processes
(paced over the fault schedule, each retrying through Redis faults with the same
idempotency key) while it injects faults. Each fault is a flag; ``--all-faults`` turns
every one on:

  --kill-every S    SIGKILL an agent that holds work every S s (never faster than the
                    machine replaces agents, see below) and start a replacement
  --zombie          SIGSTOP an agent holding work for three leases, then SIGCONT it
  --redis-kill      kill -9 Redis once and restart it on its AOF (same port)
  --script-flush    SCRIPT FLUSH once
  --redis-outage    stop Redis for longer than a lease, then restart it on its AOF
  --maxmemory       CONFIG SET maxmemory just above the memory in use (noeviction) for
                    two leases, then restore it
  --acl             agents are least-privilege ACL users (the file from
                    jupyter_vqpu.core.acl, as `vqpu acl` prints it); clients and the
                    harness are the trusted gateway user, which reloads the scripts
                    every --reload-every s as the gateway does; an operator user
                    injects the CONFIG faults
  --full-disk       one extra agent whose work root fills up (a small tmpfs written
                    to ENOSPC; where mounting is not allowed, chattr +i on it as
                    root, chmod 555 otherwise)
  --garbage         one extra agent whose runner writes garbage result.json files
                    (benchmarks/garbage_runner.py)

Then it audits every task from its own history: none lost, none completed twice,
none stuck (every task final), no zombie's result visible, every garbled result
failed with reason ``bad_result`` (and nothing else did), every attempt the full-disk
agent held once its disk was full handed back to the queue, never failed (and no
``staging_error`` anywhere), every requested fault injected. It prints one table and exits
non-zero when any check fails.

No wall clock decides the outcome. The calibration batch measures how long this
machine takes to bring agents up (``ready_s``) and its throughput; from them come an
estimate of the run (reported, never enforced) and the stall limit: the run fails
only when no task has become final for that long (the clock pauses while Redis is
deliberately down or full), with a list of what is stuck. A slow run that is moving
is never cut short. Loopback only; processes and mounts are cleaned up.

    python benchmarks/chaos.py --tasks 300 --agents 4 --all-faults --json
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import json
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jupyter_vqpu.core.lifecycle import FINAL_STATES, TaskState  # noqa: E402
from tests.support import RedisServer  # noqa: E402  (the tests' real redis-server launcher)

DEVICE = "ideal"
CIRCUIT = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'
FINAL = FINAL_STATES
#: Events that end an attempt: its task is final, or back in line, or claimed again.
ATTEMPT_ENDS = FINAL_STATES | {TaskState.QUEUED, TaskState.CLAIMED}
ADMIN_USER = "chaos-admin"  # the operator: CONFIG SET for the maxmemory fault (the gateway user may not)
FULL_DISK_BYTES = 8 * 1024 * 1024


def _transient_errors() -> tuple[type[BaseException], ...]:
    """Errors a client rides out by retrying the same idempotent submission."""
    import redis

    from jupyter_vqpu.core.errors import ControlPlaneUnavailable

    return (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, redis.exceptions.OutOfMemoryError,
            redis.exceptions.ReadOnlyError, ControlPlaneUnavailable)


def client_main(url: str, count: int, index: int, out: str, shots: int, spread: float) -> int:
    """One client process: submit ``count`` tasks paced over ``spread`` seconds, retrying
    through Redis faults with the same idempotency key; each id is appended to ``out`` at once."""
    from jupyter_vqpu.core.client import Client
    from jupyter_vqpu.core.connection import connect
    from jupyter_vqpu.core.control import ControlPlane

    transient = _transient_errors()
    start = time.monotonic()
    with open(out, "a") as ids:
        client = None
        for i in range(count):
            pause = start + spread * i / max(1, count) - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # pacing the load, not synchronisation
            key = f"c{index}-{i}"
            for attempt in range(300):
                try:
                    if client is None:
                        client = Client(control=ControlPlane(connect(url)), owner=f"student{index}")
                    tid = client.submit(CIRCUIT, device=DEVICE, shots=shots, seed=i, idempotency_key=key).id
                    ids.write(tid + "\n")
                    ids.flush()
                    break
                except transient:
                    time.sleep(min(0.05 * (attempt + 1), 1.0))
            else:
                print(f"client {index}: gave up on {key}", file=sys.stderr)
    return 0


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL if the harness dies, so no agent outlives it."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class Fault:
    """One scheduled fault: ``begin`` at ``at`` s into the chaos phase (it returns False to be
    retried, e.g. while no agent holds work), ``end`` after ``duration`` s. ``downtime``
    faults stop all progress while active, so the stall clock pauses for them."""

    name: str
    at: float
    begin: Callable[[], bool]
    duration: float = 0.0
    end: Callable[[], None] | None = None
    downtime: bool = False
    state: str = "pending"
    began: float = 0.0
    refused: bool = False  # begin() was tried and could not start it yet


@dataclass
class Calibration:
    """What this machine does with no faults: how long agents take to serve their first task
    (``ready_s``, starting all of them at once, a pessimistic bound for one replacement) and
    the throughput of the warm pool."""

    tasks: int
    ready_s: float
    rate: float  # tasks/s
    wall_s: float
    ids: list[str] = field(default_factory=list)


def _attempt_end(history: list[dict], i: int) -> dict | None:
    """The event that ended the attempt claimed at ``history[i]`` (its first later transition
    out of the agent's hands), or None while it has not ended."""
    for e in history[i + 1:]:
        if e["event"] in ATTEMPT_ENDS:
            return e
    return None


class Stalled(Exception):
    """No task became final for the stall limit; the message says what is stuck."""


class Harness:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="vqpu-chaos-"))
        self.rng = random.Random(args.seed)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("VQPU_")}
        self.env["PYTHONPATH"] = str(REPO) + (os.pathsep + self.env["PYTHONPATH"] if self.env.get("PYTHONPATH") else "")
        self.agents: dict[str, subprocess.Popen] = {}
        self.role: dict[str, str] = {}
        self.killed: set[str] = set()
        self.frozen: set[str] = set()
        self.counter = 0
        self.faults: list[str] = []
        self.injected: Counter[str] = Counter()
        self.t0 = time.monotonic()
        self.mounts: list[Path] = []
        self.immutable: list[Path] = []
        self.full_disk_agent: str | None = None
        self.full_disk_since_ms: int | None = None
        self.full_disk_method = ""
        self.garbage_log = self.tmp / "garbage.jsonl"
        self.zombie: str | None = None
        self.maxmemory_restore: str | None = None
        self.oom_rejections = 0
        (self.tmp / "redis").mkdir()
        if args.acl:
            self.passwords = {u: secrets.token_hex(16) for u in ("vqpu-agent", "vqpu-gateway", ADMIN_USER)}
            acl = self.tmp / "redis" / "users.acl"
            acl.write_text(self.acl_text())
            acl.chmod(0o600)
            self.redis = RedisServer(self.tmp / "redis", username=ADMIN_USER, password=self.passwords[ADMIN_USER],
                                     extra_args=("--aclfile", str(acl)))
        else:
            self.passwords = {}
            self.redis = RedisServer(self.tmp / "redis")

    # ------------------------------------------------------------ setup

    def acl_text(self) -> str:
        """The shipped ACL file (agent, gateway, no default user) plus an operator for CONFIG SET."""
        from jupyter_vqpu.core.acl import acl_file, password_hash

        p = self.passwords
        return acl_file(p["vqpu-agent"], p["vqpu-gateway"], [DEVICE]) + \
            f"user {ADMIN_USER} on #{password_hash(p[ADMIN_USER])} ~* &* +@all\n"

    def url(self, user: str) -> str:
        """The URL for ``user`` (agent, gateway, admin); one URL for all without --acl."""
        if not self.args.acl:
            return self.redis.url
        return f"redis://{user}:{self.passwords[user]}@127.0.0.1:{self.redis.port}/0"

    def connect(self, user: str):
        """A harness-side connection: short timeouts and no retries, so the loop stays responsive
        while Redis is down."""
        import redis

        return redis.Redis.from_url(self.url(user), decode_responses=True, socket_connect_timeout=1, socket_timeout=10)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def note(self, kind: str, text: str) -> None:
        self.injected[kind] += 1
        self.faults.append(f"{self.elapsed():6.1f}s {text}")

    def start_agent(self, role: str = "plain") -> str:
        """Start one agent process: ``plain`` (the real agent), ``garbage`` (its runner writes
        garbage results) or ``full-disk`` (its work root will fill up)."""
        a = self.args
        self.counter += 1
        name = f"chaos-{role}-{self.counter}"
        work = self.tmp / "work" / name
        work.mkdir(parents=True, exist_ok=True)
        env = dict(self.env)
        entry = ["-m", "jupyter_vqpu.cli", "agent"]
        if role == "garbage":
            entry = ["-m", "benchmarks.garbage_runner", "agent"]
            env["CHAOS_GARBAGE_LOG"] = str(self.garbage_log)
            env["CHAOS_GARBAGE_EVERY"] = str(a.garbage_every)
        if role == "full-disk":
            self.full_disk_method = self.prepare_small_disk(work)
        log = open(self.tmp / f"{name}.log", "wb")
        self.agents[name] = subprocess.Popen(
            [sys.executable, *entry, "--devices", DEVICE, "--executor", "local",
             "--agent-id", name, "--work-root", str(work), "--redis-url", self.url("vqpu-agent"),
             "--capacity", "2" if role == "plain" else "1", "--lease", str(a.lease), "--renew", str(a.lease / 4),
             "--max-attempts", str(a.max_attempts), "--reap-every", "0.5"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO, preexec_fn=_die_with_parent)
        log.close()
        self.role[name] = role
        return name

    def prepare_small_disk(self, work: Path) -> str:
        """A work root that can be filled without touching the real disk: a small tmpfs when
        mount is allowed (a true ENOSPC), else the real directory, to be made immutable."""
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FULL_DISK_BYTES},mode=0755", "vqpu-chaos", str(work)],
                           capture_output=True, text=True)
        if r.returncode == 0:
            self.mounts.append(work)
            return "tmpfs"
        if os.geteuid() != 0:
            return "chmod"  # permissions bind a non-root agent
        if shutil.which("chattr") is None:
            raise SystemExit(f"--full-disk: cannot mount a tmpfs ({r.stderr.strip()}) and there is no chattr; "
                             "run without --full-disk")
        return "chattr"

    def seed(self) -> None:
        from jupyter_vqpu.core.control import ControlPlane

        self.cp = ControlPlane(self.connect("vqpu-gateway"))
        self.admin = self.connect(ADMIN_USER)
        self.cp.seed([DEVICE])
        self.cp.scripts.load_all()

    # ------------------------------------------------------- monitoring

    def holders(self) -> dict[str, int]:
        """How many tasks each agent holds right now (empty while Redis is unreachable)."""
        try:
            k = self.cp.keys(DEVICE)
            held = self.cp.redis.zrange(k.leases, 0, -1)
            pipe = self.cp.redis.pipeline(transaction=False)
            for t in held:
                pipe.hget(k.task(t), "agent")
            return dict(Counter(a for a in pipe.execute() if a))
        except Exception:
            return {}

    def states(self, ids: list[str]) -> dict[str, str | None]:
        """Each task's state (None: no such task), one pipelined round trip."""
        pipe = self.cp.redis.pipeline(transaction=False)
        for t in ids:
            pipe.hget(self.cp.keys(DEVICE).task(t), "state")
        return dict(zip(ids, pipe.execute()))

    def reload_scripts(self) -> None:
        """What the gateway does periodically: put back the scripts a restart or flush removed."""
        try:
            if self.cp.scripts.ensure_loaded():
                self.faults.append(f"{self.elapsed():6.1f}s   (trusted side reloaded the scripts)")
        except Exception:
            pass

    def live(self, role: str | None = "plain") -> list[str]:
        return [n for n, p in self.agents.items() if p.poll() is None and (role is None or self.role[n] == role)]

    def log_tail(self, name: str, lines: int = 3) -> str:
        try:
            text = (self.tmp / f"{name}.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip()[:200] for line in text[-lines:])

    def stuck_report(self, unfinished: list[str], quiet_s: float) -> str:
        """What is stuck: unfinished tasks by state, a few in detail, the agents and their last words."""
        lines = [f"no task became final for {quiet_s:.0f} s with {len(unfinished)} unfinished"]
        try:
            st = self.states(unfinished)
            lines.append("  by state: " + ", ".join(f"{s or 'missing (lost)'}={n}" for s, n in Counter(st.values()).items()))
            for tid in unfinished[:8]:
                h = self.cp.redis.hgetall(self.cp.keys(DEVICE).task(tid))
                last = [e["event"] + (f"({e['reason']})" if e.get("reason") else "") for e in self.cp.history(tid)[-4:]]
                holder = h.get("agent") or "-"
                alive = ("SIGSTOPped" if holder == self.zombie or holder in self.frozen else
                         "alive" if holder in self.agents and self.agents[holder].poll() is None else "not running")
                lines.append(f"  {tid}: {h.get('state')} attempt {h.get('attempt')} agent {holder} ({alive}); "
                             f"last events {', '.join(last)}")
        except Exception as exc:
            lines.append(f"  (Redis unreadable: {type(exc).__name__}: {exc})")
        for name in self.agents:
            state = "alive" if self.agents[name].poll() is None else f"exited {self.agents[name].returncode}"
            if name == self.zombie or name in self.frozen:
                state = "SIGSTOPped"
            lines.append(f"  agent {name} [{self.role[name]}] {state}: {self.log_tail(name)}")
        lines.append(f"  logs: {self.tmp} (kept)")
        return "\n".join(lines)

    # ------------------------------------------------------ calibration

    def calibrate(self) -> Calibration:
        """Serve a batch with no faults: how long until agents serve, and how fast they go."""
        from jupyter_vqpu.core.client import Client

        started = time.monotonic()
        slots = sum(2 if r == "plain" else 1 for r in self.role.values())
        n = max(8, 2 * slots)
        client = Client(control=self.cp, owner="calibration")
        ids = [client.submit(CIRCUIT, device=DEVICE, shots=self.args.shots, seed=i).id for i in range(n)]
        finals: list[float] = []
        pending = list(ids)
        while pending:
            if not self.live(None):
                raise Stalled("every agent exited during calibration:\n" + self.stuck_report(pending, 0))
            if time.monotonic() - started > self.args.startup_limit:
                raise Stalled(f"calibration: no agent served {n} tasks within --startup-limit "
                              f"{self.args.startup_limit:.0f} s\n" + self.stuck_report(pending, time.monotonic() - started))
            st = self.states(pending)
            now = time.monotonic()
            done = [t for t in pending if st[t] in FINAL]
            finals += [now] * len(done)
            pending = [t for t in pending if st[t] not in FINAL]
            time.sleep(0.05)
        first, last = finals[0], finals[-1]
        burst = sum(1 for f in finals if f == first)
        rate = (n - burst) / (last - first) if last > first else n / max(0.05, last - started)
        return Calibration(tasks=n, ready_s=first - started, rate=rate, wall_s=last - started, ids=ids)

    # ------------------------------------------------------------ faults

    def kill_agent(self) -> bool:
        held = self.holders()
        victims = [n for n in self.live() if n != self.zombie and n not in self.frozen and held.get(n)] or \
            [n for n in self.live() if n != self.zombie and n not in self.frozen]
        if not victims:
            return False
        v = self.rng.choice(victims)
        self.agents[v].kill()
        self.agents[v].wait()
        self.killed.add(v)
        self.note("sigkill", f"SIGKILL {v}" + (f" (holding {held[v]})" if held.get(v) else ""))
        self.start_agent()
        return True

    def zombie_begin(self) -> bool:
        held = self.holders()
        candidates = [n for n in self.live() if held.get(n)]
        if not candidates:
            return False  # try again next tick: a zombie must hold work
        self.zombie = self.rng.choice(candidates)
        self.agents[self.zombie].send_signal(signal.SIGSTOP)
        self.note("zombie", f"SIGSTOP {self.zombie} holding {held[self.zombie]} for {self.args.lease * 3:.0f}s")
        return True

    def zombie_end(self) -> None:
        if self.zombie:
            self.agents[self.zombie].send_signal(signal.SIGCONT)
            self.faults.append(f"{self.elapsed():6.1f}s   SIGCONT {self.zombie}")
            self.zombie = None

    def freeze(self) -> bool:
        """The harness's self-test: SIGSTOP every agent for good while submissions go on. Nothing can
        survive it; the run must end as stalled, saying what is stuck, instead of hanging."""
        for name in self.live(None):
            self.agents[name].send_signal(signal.SIGSTOP)
            self.frozen.add(name)
        self.note("freeze", f"SIGSTOP every agent for good ({len(self.frozen)})")
        return True

    def redis_kill(self) -> bool:
        self.redis.kill(signal.SIGKILL)
        self.note("redis_kill", "kill -9 redis")
        self.redis.start()
        self.faults.append(f"{self.elapsed():6.1f}s   redis restarted on its AOF")
        return True

    def script_flush(self) -> bool:
        try:
            self.admin.script_flush()  # an operator's act (the gateway user may not); agents then wait
        except Exception:
            return False
        self.note("script_flush", "SCRIPT FLUSH" + (" (agents are least-privilege ACL users)" if self.args.acl else ""))
        return True

    def outage_begin(self) -> bool:
        self.redis.kill(signal.SIGTERM)
        self.note("redis_outage", f"redis stopped for {self.outage_s():.1f}s (lease {self.args.lease:g}s)")
        return True

    def outage_end(self) -> None:
        self.redis.start()
        self.faults.append(f"{self.elapsed():6.1f}s   redis restarted on its AOF (same port)")

    def outage_s(self) -> float:
        return self.args.lease * 2.5

    def maxmemory_begin(self) -> bool:
        try:
            self.maxmemory_restore = self.admin.config_get("maxmemory")["maxmemory"]
            self.oom_before = self._oom_count()
            used = int(self.admin.info("memory")["used_memory"])
            self.admin.config_set("maxmemory", used + 64 * 1024)
        except Exception:
            return False
        self.note("maxmemory", f"maxmemory {used + 64 * 1024} (used {used}, noeviction) for {self.args.lease * 2:.0f}s")
        return True

    def maxmemory_end(self) -> None:
        for _ in range(100):
            try:
                self.oom_rejections += self._oom_count() - self.oom_before
                self.admin.config_set("maxmemory", self.maxmemory_restore or "0")
                self.faults.append(f"{self.elapsed():6.1f}s   maxmemory restored ({self.oom_rejections} writes "
                                   "rejected with OOM)")
                self.maxmemory_restore = None
                return
            except Exception:
                time.sleep(0.1)

    def _oom_count(self) -> int:
        return int(self.admin.info("errorstats").get("errorstat_OOM", {}).get("count", 0))

    def fill_disk(self) -> bool:
        name = self.full_disk_agent
        if name is None:
            return True
        work = self.tmp / "work" / name
        sec, usec = self.cp.redis.time()
        self.full_disk_since_ms = sec * 1000 + usec // 1000  # from before the fill: a task in flight counts
        if self.full_disk_method == "tmpfs":
            with open(work / ".filler", "wb", buffering=0) as fh:
                for size in (1 << 20, 4096, 1):
                    try:
                        while True:
                            fh.write(b"\0" * size)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
            how = "tmpfs filled (ENOSPC)"
        else:
            device_dir = work / DEVICE
            device_dir.mkdir(exist_ok=True)
            if self.full_disk_method == "chattr":  # root ignores permissions, not the immutable flag
                subprocess.run(["chattr", "+i", str(device_dir)], check=True)
                how = "work root made immutable (chattr +i)"
            else:
                device_dir.chmod(0o555)
                how = "work root made read-only (chmod 555)"
            self.immutable.append(device_dir)
        try:
            (work / DEVICE / "probe").mkdir(parents=True)
            (work / DEVICE / "probe" / "x").write_bytes(b"x" * 8192)
            raise RuntimeError(f"--full-disk: {work} is still writable after filling it")
        except OSError:
            pass
        self.note("full_disk", f"{name}: {how}")
        return True

    def release_disk(self) -> None:
        for path in self.immutable:
            if self.full_disk_method == "chattr":
                subprocess.run(["chattr", "-i", str(path)], capture_output=True)
            path.chmod(0o755)
        self.immutable.clear()
        for path in self.mounts:
            if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(path)], capture_output=True)  # a job's file may still be open
        self.mounts.clear()

    def schedule(self) -> list[Fault]:
        """The one-off faults, one after another, ``gap`` s apart (never two at once)."""
        a = self.args
        gap = 2 * a.lease
        at = 1.5
        faults = []

        def add(flag: bool, fault: Fault, after: float = 0.0) -> None:
            nonlocal at
            if flag:
                fault.at = at
                faults.append(fault)
                at += fault.duration + gap + after

        add(a.zombie, Fault("zombie", 0, self.zombie_begin, a.lease * 3, self.zombie_end))
        add(a.redis_kill, Fault("redis_kill", 0, self.redis_kill))
        add(a.script_flush, Fault("script_flush", 0, self.script_flush), after=a.reload_every)
        add(a.full_disk, Fault("full_disk", 0, self.fill_disk))
        add(a.redis_outage, Fault("redis_outage", 0, self.outage_begin, self.outage_s(), self.outage_end, downtime=True))
        add(a.maxmemory, Fault("maxmemory", 0, self.maxmemory_begin, a.lease * 2, self.maxmemory_end, downtime=True))
        add(a.freeze, Fault("freeze", 0, self.freeze))
        return faults

    # -------------------------------------------------------------- run

    def run(self) -> dict:
        a = self.args
        self.redis.start()
        self.seed()
        for _ in range(a.agents):
            self.start_agent()
        if a.garbage:
            self.start_agent("garbage")
        if a.full_disk:
            self.full_disk_agent = self.start_agent("full-disk")
        cal = self.calibrate()
        faults = self.schedule()
        schedule_s = max([f.at + f.duration for f in faults] + [0.0])
        # Replace agents no faster than the machine brings them up: at most half the pool warming at once.
        kill_every = max(a.kill_every, 2 * cal.ready_s / max(1, a.agents)) if a.kill_every > 0 else 0.0
        downtime = sum(f.duration for f in faults if f.downtime) + (a.lease * 3 if a.zombie else 0.0)
        # Submissions paced over the faults, so that each one meets work in flight (SIGKILLs: a few).
        spread = a.spread if a.spread is not None else max(schedule_s, 4 * kill_every)
        estimate = max(spread, a.tasks / cal.rate) + downtime + cal.ready_s + (a.reload_every if a.script_flush else 0.0)
        stall_s = a.stall_factor * (3 * cal.ready_s + 5 * a.lease + a.reload_every + 50 / cal.rate)
        self.faults.append(f"{self.elapsed():6.1f}s calibration: {cal.tasks} tasks in {cal.wall_s:.1f}s, agents ready "
                           f"after {cal.ready_s:.1f}s, {cal.rate:.1f} tasks/s; estimate {estimate:.0f}s, "
                           f"stall limit {stall_s:.0f}s, SIGKILL every {kill_every:.1f}s")

        t0 = time.monotonic()
        per_client = [a.tasks // a.clients + (1 if i < a.tasks % a.clients else 0) for i in range(a.clients)]
        outs = [self.tmp / f"client{i}.ids" for i in range(a.clients)]
        clients = [
            subprocess.Popen([sys.executable, __file__, "--client", str(i), "--count", str(n), "--url",
                              self.url("vqpu-gateway"), "--out", str(outs[i]), "--shots", str(a.shots),
                              "--spread", str(spread)],
                             env=self.env, cwd=REPO, preexec_fn=_die_with_parent)
            for i, n in enumerate(per_client)
        ]
        next_kill = t0 + kill_every if kill_every else float("inf")
        next_reload = 0.0
        next_check = 0.0
        last_progress = t0
        final: set[str] = set()
        submitted: list[str] = []
        stalled = None
        while True:
            now = time.monotonic()
            rel = now - t0
            clients_done = all(c.poll() is not None for c in clients)
            for f in faults:
                if f.state == "pending" and rel >= f.at:
                    if f.begin():
                        f.state, f.began = ("active", now) if f.duration else ("done", now)
                    else:
                        f.refused = True
                if f.state == "active" and now - f.began >= f.duration:
                    if f.end:
                        f.end()
                    f.state = "done"
                    if f.downtime:
                        last_progress = time.monotonic()  # a fresh stall interval after a deliberate outage
                if f.state == "active" and f.downtime:
                    last_progress = now
            faults_done = all(f.state == "done" for f in faults)
            # Faults that cannot begin once the work is done (a zombie needs work to hold) are given up.
            faults_over = all(f.state == "done" or (f.state == "pending" and f.refused) for f in faults)
            if now >= next_kill:
                if not any(f.state == "active" and f.downtime for f in faults):  # one outage at a time
                    self.kill_agent()
                next_kill = now + kill_every
            if now >= next_reload:
                self.reload_scripts()
                next_reload = now + a.reload_every
            if now >= next_check:
                next_check = now + 1.0
                submitted = [t for o in outs if o.exists() for t in o.read_text().split()]
                try:
                    todo = [t for t in submitted if t not in final]
                    st = self.states(todo) if todo else {}
                    # final, or gone: an acknowledged task whose hash vanished is lost (the audit counts
                    # it) and will never move again
                    newly = {t for t, s in st.items() if s in FINAL or s is None}
                    if newly or len(final) == len(submitted):
                        last_progress = now
                    final |= newly
                except Exception:
                    pass  # Redis is down: the stall clock keeps running unless we took it down
                unfinished = [t for t in submitted if t not in final]
                if clients_done and not unfinished and (faults_done or faults_over):
                    break
                if now - last_progress > stall_s:
                    stalled = self.stuck_report(unfinished, now - last_progress)
                    break
            time.sleep(0.1)
        wall = time.monotonic() - t0
        for f in faults:
            if f.state == "active" and f.end:
                f.end()
        self.zombie_end()
        self.stop_agents()
        for c in clients:
            if c.poll() is None:
                c.kill()
                c.wait()
        submitted = [t for o in outs if o.exists() for t in o.read_text().split()]
        self.reload_scripts()
        report = self.audit(submitted, cal, wall)
        report.update(calibration={"tasks": cal.tasks, "agents_ready_s": round(cal.ready_s, 1),
                                   "tasks_per_s": round(cal.rate, 1), "wall_s": round(cal.wall_s, 1)},
                      estimate_s=round(estimate, 1), wall_vs_estimate=round(wall / estimate, 2),
                      stall_limit_s=round(stall_s, 1),
                      kill_every_s=round(kill_every, 1), stalled=stalled,
                      wall_total_s=round(time.monotonic() - self.t0, 1))
        report["redis_log_critical"] = self.redis_critical()
        report["failures"] = self.verdict(report)
        self.redis.stop()
        if (report["failures"] and a.keep_on_failure) or a.keep:
            report["logs"] = str(self.tmp)
        return report

    def redis_critical(self) -> dict:
        """Redis's own CRITICAL/WARNING lines (e.g. an AOF replay that dropped writes), the first
        of each kind: where to look first when something was lost."""
        try:
            lines = (self.tmp / "redis" / "redis.log").read_text(errors="replace").splitlines()
        except OSError:
            return {}
        critical = [line for line in lines if "CRITICAL" in line or "Bad file format" in line]
        return {"count": len(critical), "first": critical[0][:400]} if critical else {}

    def stop_agents(self) -> None:
        for p in self.agents.values():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.terminate()
        for p in self.agents.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def cleanup(self) -> None:
        """Whatever happened, leave no process, mount or setting of ours behind."""
        for p in self.agents.values():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
                p.wait()
        self.release_disk()
        self.redis.stop()

    # ------------------------------------------------------------ audit

    def audit(self, submitted: list[str], cal: Calibration, wall: float) -> dict:
        cp = self.cp
        states: Counter[str] = Counter()
        failed_reasons: Counter[str] = Counter()
        lost, stuck, twice, fenced, visible = 0, [], 0, 0, 0
        reclaim: list[float] = []
        garbled: dict[str, dict[int, str]] = {}
        if self.garbage_log.exists():
            for line in self.garbage_log.read_text().splitlines():
                g = json.loads(line)
                garbled.setdefault(g["task"], {})[int(g["attempt"])] = g["kind"]
        garbage = Counter()
        disk = Counter()
        examples: dict[str, str] = {}
        everything = cal.ids + submitted
        for tid in everything:
            try:
                view = cp.task(tid)
            except Exception:
                lost += 1
                continue
            state = view["state"]
            states[state] += 1
            if state not in FINAL:
                stuck.append(tid)
            if state == "failed":
                failed_reasons[view["reason"] or "?"] += 1
                examples.setdefault(view["reason"] or "?", f"{tid}: {view.get('error') or ''}"[:300])
            history = cp.history(tid)
            completions = [e for e in history if e["event"] == "completed"]
            if len(completions) > 1:
                twice += 1
            fenced += sum(1 for e in history if e["event"] == "fenced")
            if state == "completed":
                result = cp.result(tid)
                # the visible result is the last attempt's, never a zombie's
                if not result or result.get("attempt") != view["attempts"] or completions[0]["attempt"] != view["attempts"]:
                    visible += 1
            requeued_at = None
            for e in history:
                if e["event"] == "queued" and e.get("reason") == "lease_expired":
                    requeued_at = e["ts"]
                elif e["event"] == "claimed" and requeued_at is not None:
                    reclaim.append(e["ts"] - requeued_at)
                    requeued_at = None
            # garbage: the final attempt's garbage must fail it with bad_result, and garbage is the only cause
            g = garbled.get(tid, {})
            if g:
                garbage["tasks"] += 1
                if state == "completed" and view["attempts"] in g:
                    garbage["accepted"] += 1
                elif view["attempts"] in g:
                    garbage["failed_bad_result" if state == "failed" and view["reason"] == "bad_result"
                            else f"{state}:{view['reason'] or ''}"] += 1
                else:
                    garbage["superseded_by_a_later_attempt"] += 1
            elif state == "failed" and view["reason"] == "bad_result":
                garbage["bad_result_without_garbage"] += 1
            # full disk: every attempt that agent held once its disk was full (claimed then, or still
            # in flight) goes back to the queue (or completed before the disk mattered), never fails
            if self.full_disk_since_ms is not None:
                for i, e in enumerate(history):
                    if e["event"] != "claimed" or e.get("agent") != self.full_disk_agent:
                        continue
                    end = _attempt_end(history, i)
                    if end is not None and end["ts"] < self.full_disk_since_ms:
                        continue
                    disk["held_when_full"] += 1
                    if end is None:
                        disk["attempt_unfinished"] += 1
                    elif end["event"] == "queued" and end.get("reason") == "agent_fault":
                        disk["handed_back"] += 1
                    elif end["event"] in (TaskState.QUEUED, TaskState.CLAIMED):
                        disk["requeued"] += 1  # its lease ran out (e.g. during an outage): also back in line
                    elif end["event"] == "completed":
                        disk["completed_on_it"] += 1
                    else:
                        disk[f"attempt_{end['event']}:{end.get('reason') or ''}"] += 1
                    if state == "completed" and view.get("agent") != self.full_disk_agent:
                        disk["then_completed_elsewhere"] += 1
        reclaim.sort()

        def pct(p: float) -> float | None:
            return round(reclaim[min(len(reclaim) - 1, int(p * len(reclaim)))], 1) if reclaim else None

        return {
            "tasks_requested": self.args.tasks,
            "tasks_submitted": len(submitted),
            "calibration_tasks": len(cal.ids),
            "completed": states.get("completed", 0),
            "failed_with_reason": dict(failed_reasons),
            "failure_examples": examples,
            "lost": lost + (self.args.tasks - len(set(submitted))),
            "stuck": len(stuck),
            "stuck_tasks": stuck[:20],
            "completed_twice": twice,
            "duplicate_submissions": len(submitted) - len(set(submitted)),
            "zombie_writes_rejected": fenced,
            "zombie_results_visible": visible,
            "garbage": dict(garbage),
            "full_disk": {**disk, "method": self.full_disk_method} if self.args.full_disk else {},
            "staging_errors": failed_reasons.get("staging_error", 0),
            "oom_rejections": self.oom_rejections,
            "reclaims": len(reclaim),
            "reclaim_latency_p50_ms": pct(0.5),
            "reclaim_latency_p99_ms": pct(0.99),
            "reclaim_latency_median_ms": round(statistics.median(reclaim), 1) if reclaim else None,
            "agents_started": self.counter,
            "agents_exited_by_themselves": {n: p.returncode for n, p in self.agents.items()
                                            if n not in self.killed and p.returncode not in (0, -15, None)},
            "faults_injected": dict(self.injected),
            "faults": self.faults,
            "wall_s": round(wall, 1),
        }

    def verdict(self, r: dict) -> list[str]:
        """Every check that failed, one readable line each."""
        a, out = self.args, []
        if r["stalled"]:
            out.append("stalled: " + r["stalled"].splitlines()[0])
        if r.get("redis_log_critical"):
            out.append(f"redis.log has {r['redis_log_critical']['count']} CRITICAL lines, the first: "
                       f"{r['redis_log_critical']['first'][:200]}")
        for key in ("lost", "stuck", "completed_twice", "duplicate_submissions", "zombie_results_visible",
                    "staging_errors"):
            if r[key]:
                out.append(f"{key} = {r[key]}")
        g = r["garbage"]
        if a.garbage:
            if not g.get("tasks"):
                out.append("garbage: no garbage result was written (did the garbage agent serve any task?)")
            bad = {k: v for k, v in g.items() if k not in ("tasks", "failed_bad_result", "superseded_by_a_later_attempt")}
            if bad:
                out.append(f"garbage results not failed with bad_result: {bad}")
        elif g.get("bad_result_without_garbage"):
            out.append(f"bad_result without garbage: {g['bad_result_without_garbage']}")
        d = r["full_disk"]
        if a.full_disk:
            bad = {k: v for k, v in d.items() if k.startswith("attempt_")}
            if bad:
                out.append(f"attempts the full-disk agent held once its disk was full that were not handed back: {bad}")
        wanted = {"sigkill": a.kill_every > 0, "zombie": a.zombie, "redis_kill": a.redis_kill,
                  "script_flush": a.script_flush, "redis_outage": a.redis_outage, "maxmemory": a.maxmemory,
                  "full_disk": a.full_disk}
        for kind, on in wanted.items():
            if on and not r["faults_injected"].get(kind):
                out.append(f"fault {kind} was requested but never injected")
        if a.maxmemory and r["faults_injected"].get("maxmemory") and not r["oom_rejections"]:
            out.append("maxmemory: Redis rejected no write with OOM (the limit was not reached)")
        return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=300)
    p.add_argument("--agents", type=int, default=4, help="ordinary agents (the special ones come on top)")
    p.add_argument("--clients", type=int, default=3)
    p.add_argument("--shots", type=int, default=64)
    p.add_argument("--lease", type=float, default=3.0)
    p.add_argument("--max-attempts", type=int, default=5)
    p.add_argument("--kill-every", type=float, default=4.0, help="seconds between SIGKILLs (0: none)")
    on = argparse.BooleanOptionalAction
    defaults = {"zombie": True, "redis_kill": True, "script_flush": True, "redis_outage": False, "maxmemory": False,
                "acl": False, "full_disk": False, "garbage": False}
    for name in defaults:
        p.add_argument("--" + name.replace("_", "-"), action=on, default=None)
    p.add_argument("--all-faults", action="store_true", help="every fault on, except those turned off by --no-...")
    p.add_argument("--freeze", action="store_true",
                   help="self-test: SIGSTOP every agent for good; the run must end as stalled")
    p.add_argument("--garbage-every", type=int, default=2, help="the garbage agent garbles one task in this many")
    p.add_argument("--reload-every", type=float, default=5.0, help="the trusted side's script check interval")
    p.add_argument("--spread", type=float, help="seconds to pace the submissions over (default: the fault schedule)")
    p.add_argument("--stall-factor", type=float, default=1.0, help="multiplies the measured stall limit")
    p.add_argument("--startup-limit", type=float, default=600.0,
                   help="safety net: seconds for the calibration batch before giving up")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    p.add_argument("--keep-on-failure", action=on, default=True, help="keep it when a check fails")
    p.add_argument("--json", action="store_true")
    # internal: a client process
    p.add_argument("--client", type=int, help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.client is not None:
        return client_main(a.url, a.count, a.client, a.out, a.shots, a.spread or 0.0)
    for name, default in defaults.items():
        if getattr(a, name) is None:
            setattr(a, name, a.all_faults or default)
    harness = Harness(a)
    report = None
    try:
        report = harness.run()
    except Stalled as exc:
        print(f"FAIL: {exc}")
        if a.json:
            print(json.dumps({"failures": [str(exc).splitlines()[0]], "stalled": str(exc)}))
        return 1
    finally:
        harness.cleanup()  # processes and mounts first, then the files
        if (report is not None and "logs" not in report) or (report is None and not a.keep_on_failure):
            shutil.rmtree(harness.tmp, ignore_errors=True)
    print("faults injected: " + ", ".join(f"{k} x{v}" for k, v in report["faults_injected"].items()))
    for f in report["faults"]:
        print("  " + f)
    print(f"{'measure':<28}value")
    for k, v in report.items():
        if k not in ("faults", "failures", "stalled", "stuck_tasks"):
            print(f"{k:<28}{v}")
    if report["stalled"]:
        print(report["stalled"])
    print("PASS" if not report["failures"] else "FAIL: " + "; ".join(report["failures"]))
    if a.json:
        print(json.dumps(report))
    return 0 if not report["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
