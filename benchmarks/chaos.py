"""Fault-injection harness: nothing lost, nothing twice.

Starts a real redis-server (AOF) and K agents as separate processes, submits N
tasks from several client processes, and meanwhile injects faults:

- SIGKILL a random agent every few seconds and start a replacement;
- SIGSTOP one agent for longer than its lease, then SIGCONT it (a zombie);
- kill -9 Redis once and restart it on its AOF (same port);
- SCRIPT FLUSH once.

Then it audits from the task histories and the events stream and prints one
table. It exits non-zero if anything was lost or completed twice. Loopback
only, bounded in time and count.

    python benchmarks/chaos.py --tasks 300 --agents 4 --json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support import RedisServer  # noqa: E402  (the tests' real redis-server launcher)

DEVICE = "ideal"
CIRCUIT = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'


def client_main(url: str, count: int, index: int, out: str, shots: int) -> int:
    """One client process: submit ``count`` tasks, retrying through Redis faults with the same idempotency key."""
    import redis

    from jupyter_vqpu.core.client import Client
    from jupyter_vqpu.core.connection import connect
    from jupyter_vqpu.core.control import ControlPlane

    cp = ControlPlane(connect(url))
    client = Client(control=cp, owner=f"student{index}")
    ids = []
    for i in range(count):
        key = f"c{index}-{i}"
        for attempt in range(200):
            try:
                ids.append(client.submit(CIRCUIT, device=DEVICE, shots=shots, seed=i, idempotency_key=key).id)
                break
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                time.sleep(min(0.05 * (attempt + 1), 1.0))
        else:
            print(f"client {index}: gave up on {key}", file=sys.stderr)
    Path(out).write_text(json.dumps(ids))
    return 0


class Harness:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="vqpu-chaos-"))
        self.redis = RedisServer(self.tmp / "redis")
        self.agents: dict[str, subprocess.Popen] = {}
        self.counter = 0
        self.faults: list[str] = []
        self.rng = random.Random(args.seed)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("VQPU_")}
        self.env["PYTHONPATH"] = str(REPO) + os.pathsep + self.env.get("PYTHONPATH", "")

    def start_agent(self) -> str:
        self.counter += 1
        name = f"chaos-agent-{self.counter}"
        log = open(self.tmp / f"{name}.log", "wb")
        self.agents[name] = subprocess.Popen(
            [sys.executable, "-m", "jupyter_vqpu.cli", "agent", "--devices", DEVICE, "--executor", "local",
             "--agent-id", name, "--work-root", str(self.tmp / "work" / name), "--redis-url", self.redis.url,
             "--capacity", "2", "--lease", str(self.args.lease), "--renew", str(self.args.lease / 4),
             "--max-attempts", str(self.args.max_attempts), "--reap-every", "0.5"],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO)
        return name

    def run(self) -> dict:
        a = self.args
        self.redis.start()
        from jupyter_vqpu.core.connection import connect
        from jupyter_vqpu.core.control import ControlPlane

        cp = ControlPlane(connect(self.redis.url))
        cp.seed([DEVICE])
        for _ in range(a.agents):
            self.start_agent()
        t0 = time.monotonic()
        per_client = [a.tasks // a.clients + (1 if i < a.tasks % a.clients else 0) for i in range(a.clients)]
        clients = [
            subprocess.Popen([sys.executable, __file__, "--client", str(i), "--count", str(n), "--url", self.redis.url,
                              "--out", str(self.tmp / f"client{i}.json"), "--shots", str(a.shots)],
                             env=self.env, cwd=REPO)
            for i, n in enumerate(per_client)
        ]
        deadline = t0 + a.time_limit
        next_kill = t0 + a.kill_every
        zombie_at, redis_kill_at, flush_at = t0 + 1.5, t0 + a.kill_every * 1.5, t0 + a.kill_every * 2.5
        zombie: str | None = None
        zombie_until = 0.0
        done_clients = False
        submitted: list[str] = []
        unfinished: list[str] | None = None
        next_check = 0.0
        while time.monotonic() < deadline:
            now = time.monotonic()
            if not done_clients and all(c.poll() is not None for c in clients):
                done_clients = True
                for i in range(a.clients):
                    submitted += json.loads((self.tmp / f"client{i}.json").read_text())
            if now >= next_kill and a.kill_every > 0:
                victims = [n for n in self.agents if n != zombie and self.agents[n].poll() is None]
                if victims:
                    v = self.rng.choice(victims)
                    self.agents[v].kill()
                    self.agents[v].wait()
                    self.faults.append(f"{now - t0:6.1f}s SIGKILL {v}")
                    self.start_agent()
                next_kill = now + a.kill_every
            if zombie_at and now >= zombie_at:
                # Freeze an agent while it holds work, so that it wakes up as a zombie with stale tokens.
                holders = self.holders(cp)
                candidates = [n for n, p in self.agents.items() if p.poll() is None and n in holders]
                if candidates:
                    zombie = self.rng.choice(candidates)
                    self.agents[zombie].send_signal(signal.SIGSTOP)
                    zombie_until = now + a.lease * 3
                    self.faults.append(f"{now - t0:6.1f}s SIGSTOP {zombie} for {a.lease * 3:.0f}s")
                    zombie_at = 0.0
            if zombie and now >= zombie_until:
                self.agents[zombie].send_signal(signal.SIGCONT)
                self.faults.append(f"{now - t0:6.1f}s SIGCONT {zombie}")
                zombie = None
            if redis_kill_at and now >= redis_kill_at:
                self.redis.kill(signal.SIGKILL)
                self.faults.append(f"{now - t0:6.1f}s kill -9 redis")
                self.redis.start()
                self.faults.append(f"{time.monotonic() - t0:6.1f}s redis restarted on its AOF")
                redis_kill_at = 0.0
            if flush_at and now >= flush_at:
                try:
                    cp.redis.script_flush()
                    self.faults.append(f"{now - t0:6.1f}s SCRIPT FLUSH")
                    flush_at = 0.0
                except Exception:
                    pass
            if done_clients and not zombie and not redis_kill_at and not flush_at and now >= next_check:
                next_check = now + 1.0
                try:
                    unfinished = self.unfinished(cp, unfinished if unfinished is not None else submitted)
                    if not unfinished:
                        break
                except Exception:
                    pass
            time.sleep(0.1)
        wall = time.monotonic() - t0
        if zombie:
            self.agents[zombie].send_signal(signal.SIGCONT)
        for p in self.agents.values():
            if p.poll() is None:
                p.terminate()
        for p in self.agents.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        for c in clients:
            if c.poll() is None:
                c.kill()
        if not done_clients:
            for i in range(a.clients):
                f = self.tmp / f"client{i}.json"
                if f.exists():
                    submitted += json.loads(f.read_text())
        report = self.audit(cp, submitted, wall)
        self.redis.stop()
        if not a.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return report

    def cleanup(self) -> None:
        """Whatever happened, leave no process of ours behind."""
        for p in self.agents.values():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
                p.wait()
        self.redis.stop()

    @staticmethod
    def unfinished(cp, ids: list[str]) -> list[str]:
        """The tasks among ``ids`` that are not final yet (one pipelined round trip)."""
        pipe = cp.redis.pipeline(transaction=False)
        for t in ids:
            pipe.hget(cp.keys(DEVICE).task(t), "state")
        return [t for t, st in zip(ids, pipe.execute()) if st not in ("completed", "failed", "cancelled")]

    @staticmethod
    def holders(cp) -> set[str]:
        """Agents that hold a task right now."""
        try:
            k = cp.keys(DEVICE)
            return {cp.redis.hget(k.task(t), "agent") for t in cp.redis.zrange(k.leases, 0, -1)} - {None, ""}
        except Exception:
            return set()

    def audit(self, cp, submitted: list[str], wall: float) -> dict:
        states: dict[str, int] = {}
        failed_reasons: dict[str, int] = {}
        lost, twice, fenced, reclaim, bad_result = 0, 0, 0, [], 0
        for tid in submitted:
            try:
                view = cp.task(tid)
            except Exception:
                lost += 1
                continue
            states[view["state"]] = states.get(view["state"], 0) + 1
            if view["state"] not in ("completed", "failed", "cancelled"):
                lost += 1
            if view["state"] == "failed":
                failed_reasons[view["reason"] or "?"] = failed_reasons.get(view["reason"] or "?", 0) + 1
            history = cp.history(tid)
            completions = [e for e in history if e["event"] == "completed"]
            if len(completions) > 1:
                twice += 1
            fenced += sum(1 for e in history if e["event"] == "fenced")
            if view["state"] == "completed":
                result = cp.result(tid)
                # the visible result is the last attempt's, never a zombie's
                if not result or result.get("attempt") != view["attempts"] or completions[0]["token"] != view["attempts"]:
                    bad_result += 1
            requeued_at = None
            for e in history:
                if e["event"] == "queued" and e.get("reason") == "lease_expired":
                    requeued_at = e["ts"]
                elif e["event"] == "claimed" and requeued_at is not None:
                    reclaim.append(e["ts"] - requeued_at)
                    requeued_at = None
        dup_ids = len(submitted) - len(set(submitted))
        reclaim.sort()

        def pct(p: float) -> float | None:
            return round(reclaim[min(len(reclaim) - 1, int(p * len(reclaim)))], 1) if reclaim else None

        return {
            "tasks_requested": self.args.tasks,
            "tasks_submitted": len(submitted),
            "completed": states.get("completed", 0),
            "failed_with_reason": failed_reasons,
            "lost": lost + (self.args.tasks - len(submitted)),
            "completed_twice": twice,
            "duplicate_submissions": dup_ids,
            "zombie_writes_rejected": fenced,
            "zombie_results_visible": bad_result,
            "reclaims": len(reclaim),
            "reclaim_latency_p50_ms": pct(0.5),
            "reclaim_latency_p99_ms": pct(0.99),
            "reclaim_latency_median_ms": round(statistics.median(reclaim), 1) if reclaim else None,
            "agents_started": self.counter,
            "faults": self.faults,
            "wall_s": round(wall, 1),
        }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=300)
    p.add_argument("--agents", type=int, default=4)
    p.add_argument("--clients", type=int, default=3)
    p.add_argument("--shots", type=int, default=64)
    p.add_argument("--lease", type=float, default=3.0)
    p.add_argument("--max-attempts", type=int, default=5)
    p.add_argument("--kill-every", type=float, default=4.0)
    p.add_argument("--time-limit", type=float, default=300.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    p.add_argument("--json", action="store_true")
    # internal: a client process
    p.add_argument("--client", type=int, help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.client is not None:
        return client_main(a.url, a.count, a.client, a.out, a.shots)
    harness = Harness(a)
    try:
        report = harness.run()
    finally:
        harness.cleanup()
    rows = [(k, v) for k, v in report.items() if k != "faults"]
    print("faults injected:")
    for f in report["faults"]:
        print("  " + f)
    print(f"{'measure':<28}value")
    for k, v in rows:
        print(f"{k:<28}{v}")
    ok = report["lost"] == 0 and report["completed_twice"] == 0 and report["zombie_results_visible"] == 0
    print("PASS" if ok else "FAIL: something was lost or duplicated")
    if a.json:
        print(json.dumps(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
