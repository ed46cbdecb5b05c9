"""Benchmark: agent + warm-worker resident memory over many mixed tasks (it must stay flat).

A real redis-server, a real agent (in this process) with the local executor's warm worker,
and a client that submits mixed tasks in batches: the circuit families of
tests/circuit_families.py at 2-12 qubits, on ``fez`` (noisy: a noise model per physical-qubit
set, so new layouts keep arriving) and ``ideal``, with varying seeds (so varying layouts).
After every batch it samples the RSS of this process (the agent) and of the worker process,
and prints the curve. The worker's caches are bounded in bytes by ``VQPU_CACHE_MB``
(``jupyter_vqpu.core.cache``; ``--cache-mb`` sets it for the worker started here).

    python benchmarks/memory.py [--tasks 2000] [--cache-mb 256] [--quick] [--json] [--direct]

``--direct``: no Redis and no agent; the bundles go straight to one warm worker process (where
the caches live), for when only the worker's curve is wanted.

``--json``: the last line has rss_first_mb, rss_last_mb, rss_max_mb, growth_last_half_mb (the
worker+agent RSS change over the second half of the run: flat means ~0) and the curve.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import _common as C  # noqa: E402
from circuit_families import FAMILIES  # noqa: E402


def rss_mb(pid: int) -> float:
    import psutil

    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.Error:
        return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = C.parser(__doc__, "memory")
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument("--cache-mb", type=float, default=256.0, help="VQPU_CACHE_MB for the worker")
    parser.add_argument("--direct", action="store_true",
                        help="no Redis or agent: feed staged bundles to a warm worker process (its RSS alone)")
    args = parser.parse_args(argv)
    tasks = 50 if args.smoke else 300 if args.quick else args.tasks
    os.environ["VQPU_CACHE_MB"] = str(args.cache_mb)  # the worker inherits it (jobenv keeps VQPU_CACHE_*)

    from qiskit import qasm3, transpile

    rng = random.Random(7)
    texts = []
    for _ in range(64):  # a pool of distinct circuits, drawn at random
        family = rng.choice(sorted(FAMILIES))
        n = rng.randint(2, 12 if family != "qft" else 8)
        qc = FAMILIES[family](n)
        texts.append(qasm3.dumps(transpile(qc, basis_gates=["rz", "sx", "x", "cx", "measure"], optimization_level=0)))

    print(C.load())
    curve = direct(args, rng, texts, tasks) if args.direct else through_agent(args, rng, texts, tasks)
    print(C.load())
    finish(args, tasks, curve)
    return 0


def direct(args, rng: random.Random, texts: list[str], tasks: int) -> list[dict]:
    """Bundles staged here, run by one ``python -m jupyter_vqpu_agent.worker`` fed on stdin."""
    import json
    import subprocess
    import tempfile

    from jupyter_vqpu.core import catalog, snapshot
    from jupyter_vqpu_agent import bundle
    from jupyter_vqpu_agent.jobenv import job_environment

    docs = {name: catalog.builtin_snapshot(name) if name != "ideal" else snapshot.ideal_snapshot()
            for name in ("fez", "ideal")}
    blobs = {name: snapshot.canonical_bytes(doc) for name, doc in docs.items()}
    tmp = Path(tempfile.mkdtemp(prefix="vqpu-memory-"))
    proc = subprocess.Popen([sys.executable, "-m", "jupyter_vqpu_agent.worker"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=job_environment())
    assert json.loads(proc.stdout.readline())["ready"]
    curve, started, done = [], time.perf_counter(), 0
    try:
        while done < tasks:
            for _ in range(min(args.batch, tasks - done)):
                device = "fez" if rng.random() < 0.7 else "ideal"
                spec = bundle.TaskSpec(task_id=f"t{done}", device=docs[device]["device"], attempt=1,
                                       snapshot_id=snapshot.snapshot_id(blobs[device]), shots=100,
                                       circuit_format="qasm3", seed=rng.randrange(2**31), options={})
                where = bundle.stage(tmp / f"b{done % 50}", spec, blobs[device], rng.choice(texts))
                proc.stdin.write(f"{where}\n")
                proc.stdin.flush()
                reply = json.loads(proc.stdout.readline())
                if not reply.get("ok"):
                    print(f"task {done}: {bundle.read_result(where).get('error')}", file=sys.stderr)
                done += 1
            worker_mb = rss_mb(proc.pid)
            curve.append({"tasks": done, "agent_mb": 0.0, "worker_mb": worker_mb, "total_mb": worker_mb,
                          "seconds": time.perf_counter() - started})
            if len(curve) % 4 == 0 or done == tasks:
                print(f"{done:>6} tasks  worker {worker_mb:7.1f} MB  ({time.perf_counter() - started:.0f} s)", flush=True)
    finally:
        proc.stdin.close()
        proc.wait(60)
    return curve


def through_agent(args, rng: random.Random, texts: list[str], tasks: int) -> list[dict]:
    curve = []
    with C.Bench("memory") as bench:
        cp = bench.control(["fez", "ideal"])
        agent = bench.agent(["fez", "ideal"], slots=1)
        started = time.perf_counter()
        done = 0
        while done < tasks:
            ids = []
            for _ in range(min(args.batch, tasks - done)):
                device = "fez" if rng.random() < 0.7 else "ideal"
                ids.append(cp.submit(owner="bench", device=device, circuit=rng.choice(texts), shots=100,
                                     seed=rng.randrange(2**31))["task_id"])
            for tid in ids:
                view = cp.wait(tid, timeout=600)
                if view.get("state") != "completed":
                    print(f"task {tid} ended {view.get('state')}: {view.get('error')}", file=sys.stderr)
            done += len(ids)
            worker = next((s.proc for s in agent.executor._slots if s.proc is not None), None)
            agent_mb, worker_mb = rss_mb(os.getpid()), rss_mb(worker.pid) if worker else float("nan")
            curve.append({"tasks": done, "agent_mb": agent_mb, "worker_mb": worker_mb, "total_mb": agent_mb + worker_mb,
                          "seconds": time.perf_counter() - started})
            if len(curve) % 4 == 0 or done == tasks:
                print(f"{done:>6} tasks  agent {agent_mb:7.1f} MB  worker {worker_mb:7.1f} MB  "
                      f"total {agent_mb + worker_mb:7.1f} MB  ({time.perf_counter() - started:.0f} s)", flush=True)
    return curve


def finish(args, tasks: int, curve: list[dict]) -> None:
    half = curve[len(curve) // 2]
    summary = {
        "tasks": tasks, "cache_mb": args.cache_mb,
        "rss_first_mb": curve[0]["total_mb"], "rss_last_mb": curve[-1]["total_mb"],
        "rss_max_mb": max(c["total_mb"] for c in curve),
        "growth_last_half_mb": curve[-1]["total_mb"] - half["total_mb"],
        "curve": curve,
    }
    print(f"RSS agent + worker: first batch {summary['rss_first_mb']:.0f} MB, max {summary['rss_max_mb']:.0f} MB, "
          f"last {summary['rss_last_mb']:.0f} MB; over the second half {summary['growth_last_half_mb']:+.0f} MB "
          f"(worker caches bounded at VQPU_CACHE_MB={args.cache_mb:g})")
    plot(curve, args.plot)
    if args.json:
        C.emit_json(summary)


def plot(curve: list[dict], path: str) -> None:
    plt = C.pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = [c["tasks"] for c in curve]
    ax.plot(x, [c["worker_mb"] for c in curve], label="warm worker")
    ax.plot(x, [c["agent_mb"] for c in curve], label="agent (+ benchmark client)")
    ax.plot(x, [c["total_mb"] for c in curve], label="total")
    ax.set_xlabel("tasks")
    ax.set_ylabel("RSS, MB")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.set_title("Resident memory over mixed tasks")
    C.save(fig, path)


if __name__ == "__main__":
    sys.exit(main())
