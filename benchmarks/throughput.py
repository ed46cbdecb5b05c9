"""Benchmark: control-plane throughput against one Redis: submissions/s and claim-and-binds/s.

For 1, 4 and 16 concurrent client processes (multiprocessing, fork: no shared GIL),
each running the real code paths against one private redis-server for a fixed time:

  submit         ControlPlane.submit of a tiny pre-validated Bell circuit (the
                 client parses it with Qiskit, runs the submit script, reads the view back)
  submit-script  the submit script alone: cp.scripts.submit(keys, args) with prepared
                 arguments: the control plane's own rate, without the client's Python
  claim          an agent's claim path on a pre-filled queue: cp.read_work (XREADGROUP,
                 count 1) then cp.claim_next (head of the pending set + the claim-and-bind
                 script); latency is the claim_next call

Rates are operations completed / wall time of the phase (all processes together);
latencies are per call (client side). Redis runs with AOF (appendfsync everysec).

    python benchmarks/throughput.py [--duration 4] [--levels 1,4,16] [--quick] [--json]
    python benchmarks/throughput.py --cluster [--wait-replicas 1] [--modes submit-script,claim]

``--cluster``: the same phases with work spread over three devices (fez, torino, marrakesh,
whose hash slots live on three different masters), first on one redis-server, then on a
3-master Redis Cluster with a replica each (tests/support.RedisClusterServers); worker i
uses device i mod 3. ``--wait-replicas N`` makes every write wait for N replicas (WAIT),
the price of acknowledged-means-replicated (on one node there are none: use it with --cluster).

``--json``: the last line has submit_per_s, submit_script_per_s, claim_per_s (best
concurrency) and claim_p99_ms (at the claim's best concurrency), plus per-concurrency rows.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

DEVICE = "ideal"
TARGET_RATE, TARGET_CLAIM_P99_MS = 2000.0, 10.0


def _cp(url: str):
    from jupyter_vqpu.core.connection import connect
    from jupyter_vqpu.core.control import ControlPlane

    return ControlPlane(connect(url))


CLUSTER_DEVICES = ["fez", "torino", "marrakesh"]  # hash slots 713, 8339, 12892: one per master of three


def _script_args(cp, owner: str, fields: dict, device: str = DEVICE):
    """submit.lua's KEYS and ARGV for a new task, built by its Spec as the control plane does."""
    from jupyter_vqpu.core.keys import new_task_id
    from jupyter_vqpu.core.specs import SPECS

    return SPECS["submit"].build(cp.keys(device), **cp.submit_args(new_task_id(device), owner, fields))


def _submit_script(cp, keys, args):
    """The submit script alone, acknowledged as the control plane acknowledges (WAIT when asked)."""
    return cp._acknowledged(keys[0], lambda p: cp.scripts.submit(keys=keys, args=args, client=p))


def _fields(device: str = DEVICE) -> dict:
    return {"device": device, "shots": "100", "optimization_level": "1", "circuit": C.BELL,
            "circuit_format": "qasm2", "num_qubits": "2", "options": "{}"}


def worker(mode: str, url: str, index: int, barrier, start_box, duration: float, out,
           devices: tuple[str, ...] = (DEVICE,)) -> None:
    cp = _cp(url)
    owner = f"tp{index}"
    device = devices[index % len(devices)]
    fields = _fields(device)
    lat: list[float] = []
    ops = 0
    if mode == "submit":
        cp.submit(owner=owner, device=device, circuit=C.BELL, shots=100)  # warm: parser imported, scripts loaded
    elif mode == "submit-script":
        keys, args = _script_args(cp, owner, fields, device)
        _submit_script(cp, keys, args)
    barrier.wait()
    start = start_box.value
    while time.time() < start:
        time.sleep(0.0005)
    end_at = start + duration
    consumer = f"bench-claimer-{index}"
    misses = 0
    t = time.time()
    while t < end_at:
        if mode == "submit":
            t0 = time.perf_counter()
            cp.submit(owner=owner, device=device, circuit=C.BELL, shots=100)
            lat.append(time.perf_counter() - t0)
            ops += 1
        elif mode == "submit-script":
            keys, args = _script_args(cp, owner, fields, device)
            t0 = time.perf_counter()
            reply = _submit_script(cp, keys, args)
            lat.append(time.perf_counter() - t0)
            assert reply[0] == "created", reply
            ops += 1
        else:
            entries = cp.read_work([device], consumer, 1, 50)
            if not entries:
                misses += 1
                if misses >= 3:
                    break  # the queue ran dry
            for device, eid, _ in entries:
                t0 = time.perf_counter()
                claim = cp.claim_next(device, consumer, 30_000, eid)
                lat.append(time.perf_counter() - t0)
                if claim is not None:
                    ops += 1
        t = time.time()
    out.put({"index": index, "ops": ops, "lat": lat, "start": start, "end": min(time.time(), end_at)})


def prefill(cp, n: int, devices: tuple[str, ...] = (DEVICE,)) -> None:
    from jupyter_vqpu.core.connection import node_client

    for device in devices:
        fields = _fields(device)
        for i in range(0, n, 500):
            pipe = node_client(cp.redis, cp.keys(device).device).pipeline(transaction=False)
            for _ in range(min(500, n - i)):
                keys, args = _script_args(cp, "filler", fields, device)
                cp.scripts.submit(keys=keys, args=args, client=pipe)
            pipe.execute()


def phase(b, mode: str, procs: int, duration: float, claim_rate_guess: float,
          devices: tuple[str, ...] = (DEVICE,), query: str = "") -> dict:
    """One (mode, concurrency) run against backend ``b`` (anything with ``url`` and ``control()``)."""
    url = b.url + (("&" if "?" in b.url else "?") + query if query else "")
    cp = b.control()
    cp.redis.flushall()
    cp.seed(list(devices))
    for device in devices:
        cp.ensure_group(device)
    if mode == "claim":
        # Each device's queue holds what its workers can drain in the phase (workers i mod len(devices)).
        per_device = -(-procs // len(devices))
        prefill(cp, int(claim_rate_guess * duration * 1.3 * per_device / max(procs, 1)) + 200, devices)
    calls_before = _script_calls(cp)
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(procs + 1)
    start_box = ctx.Value("d", 0.0)
    out = ctx.Queue()
    ps = [ctx.Process(target=worker, args=(mode, url, i, barrier, start_box, duration, out, devices), daemon=True)
          for i in range(procs)]
    for p in ps:
        p.start()
    start_box.value = time.time() + 0.3
    barrier.wait(timeout=120)
    results = [out.get(timeout=duration + 120) for _ in ps]
    for p in ps:
        p.join(30)
    ops = sum(r["ops"] for r in results)
    calls = {k: v - calls_before.get(k, 0) for k, v in _script_calls(cp).items()}
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    lat = [x * 1e3 for r in results for x in r["lat"]]
    q = C.pcts(lat)
    return {"mode": mode, "procs": procs, "ops": ops, "wall_s": wall, "rate": ops / wall if wall > 0 else 0.0,
            "p50_ms": q["p50"], "p95_ms": q["p95"], "p99_ms": q["p99"],
            "drained": mode == "claim" and wall < duration * 0.95,
            # Redis-side work per completed operation: claim races show up as extra ZRANGE + EVALSHA
            "evalsha_per_op": calls.get("evalsha", 0) / ops if ops else 0.0,
            "zrange_per_op": calls.get("zrange", 0) / ops if ops else 0.0}


def _script_calls(cp) -> dict[str, int]:
    """Redis-side command counts, summed over the masters of a cluster."""
    from jupyter_vqpu.core.connection import is_cluster

    names = ("evalsha", "zrange", "xreadgroup")
    if is_cluster(cp.redis):
        nodes = [cp.redis.get_redis_connection(n) for n in cp.redis.get_primaries()]
    else:
        nodes = [cp.redis]
    out = dict.fromkeys(names, 0)
    for node in nodes:
        stats = node.info("commandstats")
        for name in names:
            out[name] += stats.get(f"cmdstat_{name}", {}).get("calls", 0)
    return out


class ClusterBench:
    """A private 3-master Redis Cluster with a replica each, shaped like C.Bench for ``phase``."""

    def __enter__(self) -> ClusterBench:
        import shutil
        import tempfile

        from tests.support import RedisClusterServers

        self._rm = shutil.rmtree
        self.tmp = Path(tempfile.mkdtemp(prefix="vqpu-throughput-cluster-"))
        self.servers = RedisClusterServers(self.tmp).start()
        return self

    def __exit__(self, *exc) -> None:
        self.servers.stop()
        self._rm(self.tmp, ignore_errors=True)

    @property
    def url(self) -> str:
        return self.servers.url

    def control(self):
        return _cp(self.url)


def main_cluster(args, levels: list[int]) -> int:
    """--cluster: the phases on one node and on a cluster, three devices on three masters."""
    devices = tuple(CLUSTER_DEVICES)
    query = f"wait_replicas={args.wait_replicas}" if args.wait_replicas else ""
    before = C.load()
    print(f"throughput --cluster: devices {','.join(devices)}, {args.duration:g} s per phase, levels {levels}, "
          f"wait_replicas={args.wait_replicas}; {before}", flush=True)
    rows = []
    for name, backend in (("single", lambda: C.Bench("throughput")), ("cluster", ClusterBench)):
        with backend() as b:
            guess = 4000.0
            for mode in args.modes.split(","):
                for n in levels:
                    # One node has no replicas to WAIT for: its rows are the no-WAIT baseline.
                    r = phase(b, mode, n, args.duration, guess, devices, query if name == "cluster" else "")
                    if mode == "submit-script":
                        guess = max(guess, r["rate"])
                    r.update(deployment=name, load=C.load().split(" (")[0])
                    rows.append(r)
                    print(f"  {name:<8} {mode:<14} {n:>3} procs: {r['rate']:>8.0f}/s  p50 {r['p50_ms']:.2f} ms  "
                          f"p99 {r['p99_ms']:.2f} ms  ({r['ops']} ops; {r['load']})", flush=True)
    print()
    print(C.table(rows, [("deployment", "deployment", ""), ("mode", "mode", ""), ("procs", "procs", "d"),
                         ("rate", "ops/s", ".0f"), ("p50_ms", "p50 ms", ".2f"), ("p99_ms", "p99 ms", ".2f"),
                         ("ops", "ops", "d"), ("load", "load after", "")]))
    if args.json:
        C.emit_json({"devices": devices, "wait_replicas": args.wait_replicas, "load_before": before,
                     "load_after": C.load(), "rows": rows})
    return 0


def main(argv: list[str] | None = None) -> int:
    p = C.parser(__doc__, "throughput")
    p.add_argument("--duration", type=float, default=4.0, help="seconds per (mode, concurrency)")
    p.add_argument("--levels", default="1,4,16", help="concurrent processes, comma-separated")
    p.add_argument("--modes", default="submit,submit-script,claim", help="which phases, comma-separated")
    p.add_argument("--cluster", action="store_true", help="one node vs a 3-master cluster, work over 3 devices")
    p.add_argument("--wait-replicas", type=int, default=0, help="with --cluster: WAIT for N replicas per write")
    args = p.parse_args(argv)
    if args.quick:
        args.duration = min(args.duration, 1.5)
    if args.smoke:
        args.duration, args.levels = 0.3, "1,2"
    levels = [int(x) for x in args.levels.split(",")]
    if args.cluster:
        return main_cluster(args, levels)

    # Import the heavy parts before forking so every child inherits them warm.
    from jupyter_vqpu.core import circuits

    circuits.parse_circuit(C.BELL)
    before = C.load()
    print(f"throughput: {args.duration:g} s per phase, levels {levels}; {before}", flush=True)
    rows = []
    with C.Bench("throughput") as b:
        claim_guess = 4000.0
        for mode in args.modes.split(","):
            for n in levels:
                r = phase(b, mode, n, args.duration, claim_guess)
                if mode == "submit-script":
                    claim_guess = max(claim_guess, r["rate"])
                r["load"] = C.load().split(" (")[0]
                rows.append(r)
                print(f"  {mode:<14} {n:>3} procs: {r['rate']:>8.0f}/s  p50 {r['p50_ms']:.2f} ms  "
                      f"p99 {r['p99_ms']:.2f} ms  {r['evalsha_per_op']:.2f} EVALSHA/op  ({r['ops']} ops in {r['wall_s']:.2f} s{', queue drained' if r['drained'] else ''}; "
                      f"{r['load']})", flush=True)
    after = C.load()
    print()
    print(C.table(rows, [("mode", "mode", ""), ("procs", "procs", "d"), ("rate", "ops/s", ".0f"),
                         ("p50_ms", "p50 ms", ".2f"), ("p95_ms", "p95 ms", ".2f"), ("p99_ms", "p99 ms", ".2f"),
                         ("ops", "ops", "d"), ("evalsha_per_op", "EVALSHA/op", ".2f"),
                         ("zrange_per_op", "ZRANGE/op", ".2f"), ("load", "load after", "")]))

    def best(mode: str) -> dict:
        empty = {"rate": float("nan"), "procs": None, "p99_ms": float("nan")}
        return max((r for r in rows if r["mode"] == mode), key=lambda r: r["rate"], default=empty)

    bs, bss, bc = best("submit"), best("submit-script"), best("claim")
    verdicts = {
        "submit": bs["rate"] >= TARGET_RATE, "submit_script": bss["rate"] >= TARGET_RATE,
        "claim": bc["rate"] >= TARGET_RATE, "claim_p99": bc["p99_ms"] < TARGET_CLAIM_P99_MS,
    }
    print(f"\nbest: submit {bs['rate']:.0f}/s ({bs['procs']} procs), submit script {bss['rate']:.0f}/s "
          f"({bss['procs']} procs), claim {bc['rate']:.0f}/s ({bc['procs']} procs, p99 {bc['p99_ms']:.2f} ms)")
    print("targets (>= 2000/s each, claim p99 < 10 ms): " + ", ".join(
        f"{k} {'met' if v else 'MISSED'}" for k, v in verdicts.items()) + f"; before: {before}; after: {after}")
    plot(rows, levels, args.plot)
    if args.json:
        C.emit_json({
            "submit_per_s": bs["rate"], "submit_script_per_s": bss["rate"], "claim_per_s": bc["rate"],
            "claim_p99_ms": bc["p99_ms"], "best_procs": {"submit": bs["procs"], "submit_script": bss["procs"],
                                                         "claim": bc["procs"]},
            "targets_met": verdicts, "load_before": before, "load_after": after,
            "rows": rows,
        })
    return 0


def plot(rows: list[dict], levels: list[int], path: str) -> None:
    plt = C.pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for mode in ("submit", "submit-script", "claim"):
        rs = [r for r in rows if r["mode"] == mode]
        if not rs:
            continue
        ax1.plot([r["procs"] for r in rs], [r["rate"] for r in rs], "o-", label=mode)
        ax2.plot([r["procs"] for r in rs], [r["p99_ms"] for r in rs], "o-", label=f"{mode} p99")
        ax2.plot([r["procs"] for r in rs], [r["p50_ms"] for r in rs], "x:", label=f"{mode} p50")
    ax1.axhline(TARGET_RATE, color="grey", lw=0.8, ls="--", label="target 2000/s")
    ax2.axhline(TARGET_CLAIM_P99_MS, color="grey", lw=0.8, ls="--", label="claim p99 target")
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(n) for n in levels])
        ax.set_xlabel("concurrent processes")
        ax.legend(fontsize=7)
    ax1.set_ylabel("operations / s (all processes)")
    ax1.set_title("throughput against one Redis (2 cores)")
    ax2.set_yscale("log")
    ax2.set_ylabel("latency per call, ms")
    ax2.set_title("latency")
    C.save(fig, path)


if __name__ == "__main__":
    sys.exit(main())
