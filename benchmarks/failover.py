"""Benchmark: the outage a client sees when the control plane's master is killed (kill -9).

For Sentinel (a master, a replica, 3 sentinels, down-after 1 s) and a Redis Cluster
(3 masters + 3 replicas, cluster-node-timeout 1.5 s), a client submits to ``fez`` in a
loop through the real ControlPlane (its URL's retry and reconnect machinery, plus the
caller's retry that every vQPU client has: same idempotency key). The master that holds
fez is killed; the outage is the time from the kill to the first acknowledged submission
after it, and the longest gap between two acknowledged submissions around it. Every
acknowledged submission is then looked up on the new master (lost = acknowledged, absent).

With ``--wait-replicas 1`` each submission waits for a replica; the killed master is
restarted once its replica has been promoted (it rejoins as the new master's replica),
since until a replica is back no write can be acknowledged at that level: the outage then
includes the restart and resync of a replica.

    python benchmarks/failover.py [--trials 3] [--wait-replicas 0] [--json]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

from tests.support import RedisClusterServers, SentinelServers  # noqa: E402


def _run(kind: str, wait_replicas: int, hold_s: float = 2.0) -> dict:
    import redis

    from jupyter_vqpu.core.connection import connect
    from jupyter_vqpu.core.control import ControlPlane
    from jupyter_vqpu.core.errors import ControlPlaneUnavailable
    from jupyter_vqpu.core.keys import Keys

    tmp = Path(tempfile.mkdtemp(prefix=f"vqpu-failover-{kind}-"))
    servers = SentinelServers(tmp).start() if kind == "sentinel" else RedisClusterServers(tmp).start()
    base = servers.url() if kind == "sentinel" else servers.url
    url = base + (("&" if "?" in base else "?") + f"wait_replicas={wait_replicas}&wait_timeout_ms=500"
                  if wait_replicas else "")
    try:
        cp = ControlPlane(connect(url))
        cp.seed(["fez"])
        acked: list[tuple[float, str]] = []
        stop = threading.Event()
        errors = 0

        def loop() -> None:
            nonlocal errors
            i = 0
            while not stop.is_set():
                key = f"k{i}"
                try:
                    view = cp.submit(owner="bench", device="fez", circuit=C.BELL, shots=10, idempotency_key=key)
                    acked.append((time.monotonic(), view["task_id"]))
                    i += 1
                except (ControlPlaneUnavailable, redis.RedisError, redis.exceptions.RedisClusterException):
                    errors += 1  # the caller's retry: the same key again
                    time.sleep(0.02)

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        while len(acked) < 50:
            time.sleep(0.01)
        if kind == "sentinel":
            victim = servers.server(servers.master_port())
        else:
            victim = servers.master_of(Keys("fez").device)
        killed_at = time.monotonic()
        victim.kill(9)
        if wait_replicas:  # after the promotion (not before: that would be a restart, not a failover)
            while time.monotonic() < killed_at + 60 and _master_port(servers, kind) in (None, victim.port):
                time.sleep(0.02)
            victim.start()
        deadline = killed_at + 120
        while not any(ts > killed_at for ts, _ in acked) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(hold_s)
        stop.set()
        t.join(30)
        after = [ts for ts, _ in acked if ts > killed_at]
        first = after[0] - killed_at if after else float("nan")
        stamps = [ts for ts, _ in acked]
        gap = max(b - a for a, b in zip(stamps, stamps[1:])) if len(stamps) > 1 else float("nan")
        lost = sum(1 for _, tid in acked if not retry_exists(cp, Keys("fez").task(tid)))
        return {"kind": kind, "wait_replicas": wait_replicas, "outage_s": first, "longest_gap_s": gap,
                "acked": len(acked), "lost": lost, "client_errors": errors}
    finally:
        servers.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _master_port(servers, kind: str) -> int | None:
    """The port of fez's master now (None while no live master holds its slot)."""
    from jupyter_vqpu.core.keys import Keys

    try:
        return servers.master_port() if kind == "sentinel" else servers.master_of(Keys("fez").device).port
    except Exception:  # noqa: BLE001 - mid-failover
        return None


def retry_exists(cp, key: str) -> bool:
    for _ in range(50):
        try:
            return bool(cp.redis.exists(key))
        except Exception:  # noqa: BLE001 - the cluster may still be settling
            time.sleep(0.1)
    return False


def main(argv: list[str] | None = None) -> int:
    p = C.parser(__doc__, "failover")
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--wait-replicas", type=int, default=0)
    p.add_argument("--kinds", default="sentinel,cluster")
    args = p.parse_args(argv)
    if args.smoke or args.quick:
        args.trials = 1
    print(f"failover: kill -9 of fez's master, {args.trials} trial(s) each; {C.load()}", flush=True)
    rows = []
    for kind in args.kinds.split(","):
        for _ in range(args.trials):
            r = _run(kind, args.wait_replicas)
            r["load"] = C.load().split(" (")[0]
            rows.append(r)
            print(f"  {kind:<9} outage {r['outage_s']:.2f} s, longest gap {r['longest_gap_s']:.2f} s, "
                  f"{r['acked']} acknowledged, {r['lost']} lost, {r['client_errors']} refused calls retried "
                  f"({r['load']})", flush=True)
    print()
    print(C.table(rows, [("kind", "deployment", ""), ("wait_replicas", "WAIT", "d"), ("outage_s", "outage s", ".2f"),
                         ("longest_gap_s", "gap s", ".2f"), ("acked", "acked", "d"), ("lost", "lost", "d"),
                         ("client_errors", "retries", "d"), ("load", "load after", "")]))
    if args.json:
        C.emit_json({"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
