"""Benchmark: a parameter sweep end to end, as ONE vQPU task, against local Aer in one call.

What a VQE/QAOA user does: transpile a parametrised ansatz for Fez once, bind N points
(50 and 500), and run them all. Two ways, same bound circuits, same seed, 1,000 shots:

  vqpu   ``get_backend("fez").run(circuits)``: one submission, one claim, one bundle, one
         runner pass (one Target, one noise model) through a real control plane and agent
  aer    ``AerSimulator.from_backend(FakeFez()).run(circuits)``: one call on a simulator
         built once beforehand (its construction not charged), as a careful local user would

Both run the density-matrix method with the same seed, so their counts must be identical
(checked for every point). Per-circuit overhead = (vqpu - aer) / N.

    python benchmarks/sweep.py [--points 50,500] [--shots 1000] [--quick] [--smoke] [--json]
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402


def ansatz(width: int = 4):
    """A hardware-efficient ansatz: two layers of RY around a CZ chain, 2 * width parameters."""
    from qiskit import QuantumCircuit
    from qiskit.circuit import ParameterVector

    theta = ParameterVector("t", 2 * width)
    qc = QuantumCircuit(width)
    for q in range(width):
        qc.ry(theta[q], q)
    for q in range(width - 1):
        qc.cz(q, q + 1)
    for q in range(width):
        qc.ry(theta[width + q], q)
    qc.measure_all()
    return qc


def main(argv: list[str] | None = None) -> int:
    parser = C.parser(__doc__, "sweep")
    parser.add_argument("--points", default="50,500")
    parser.add_argument("--shots", type=int, default=1000)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    sizes = [5] if args.smoke else [50] if args.quick else [int(p) for p in args.points.split(",")]

    import numpy as np
    from qiskit import transpile
    from qiskit_aer import AerSimulator
    from qiskit_ibm_runtime.fake_provider import FakeFez

    from jupyter_vqpu.core.client import Client
    from jupyter_vqpu.kernel.backend import VqpuBackend

    print(C.load(), flush=True)
    reference = AerSimulator.from_backend(FakeFez())
    rows = []
    with C.Bench("sweep") as bench:
        cp = bench.control(seed=["fez"])
        bench.agent(["fez"], lease_s=600, task_timeout_s=3600)
        backend = VqpuBackend("fez", Client(control=cp, owner="bench"))
        isa = transpile(ansatz(), backend=backend, optimization_level=2, seed_transpiler=1)
        warm = isa.assign_parameters(np.zeros(isa.num_parameters))
        backend.run(warm, shots=10).result(timeout=600)  # both sides warm: worker caches, Aer's imports
        reference.run(warm, shots=10, method="density_matrix").result()
        rng = np.random.default_rng(5)
        for n in sizes:
            bound = [isa.assign_parameters(rng.uniform(0, np.pi, isa.num_parameters)) for _ in range(n)]
            t0 = time.perf_counter()
            job = backend.run(bound, shots=args.shots, seed_simulator=3, method="density_matrix")
            result = job.result(timeout=3600)
            vqpu_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            ref = reference.run(bound, shots=args.shots, seed_simulator=3, method="density_matrix").result()
            aer_s = time.perf_counter() - t0
            identical = all(result.get_counts(i) == ref.get_counts(i) for i in range(n))
            timings = job.task.result()["timings"]
            rows.append({"points": n, "vqpu_s": vqpu_s, "aer_s": aer_s, "vqpu_ms": 1e3 * vqpu_s / n,
                         "aer_ms": 1e3 * aer_s / n, "overhead_ms": 1e3 * (vqpu_s - aer_s) / n,
                         "simulate_s": timings["simulate"], "identical": identical})
    print(C.table(rows, [("points", "points", "d"), ("vqpu_s", "vqpu s", ".2f"), ("aer_s", "local Aer s", ".2f"),
                         ("vqpu_ms", "vqpu ms/circuit", ".1f"), ("aer_ms", "Aer ms/circuit", ".1f"),
                         ("overhead_ms", "overhead ms/circuit", ".1f"), ("simulate_s", "runner simulate s", ".2f"),
                         ("identical", "identical counts", "")]))
    print(C.load(), flush=True)
    plt = C.pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [r["vqpu_ms"] for r in rows], 0.4, label="vQPU (one task)")
    ax.bar([x + 0.2 for x in xs], [r["aer_ms"] for r in rows], 0.4, label="local Aer (one call)")
    ax.set_xticks(list(xs), [f"{r['points']} points" for r in rows])
    ax.set_ylabel("ms per circuit")
    ax.legend()
    C.save(fig, args.plot)
    if args.json:
        C.emit_json({"rows": rows, "identical_counts": all(r["identical"] for r in rows),
                     "overhead_per_circuit_ms_max": max(r["overhead_ms"] for r in rows)})
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
