"""Benchmark: a parameter sweep (one task, many circuits, one runner pass) against local Aer.

A QAOA-like 5-qubit ring with its two angles swept over N points (50 and 500), 1,000
shots each, on IBM Fez. Three ways, same circuits:

  runner   one multi-circuit bundle through ``jupyter_vqpu_agent.runner.run_bundle`` in a warm
           process (the snapshot, Target and noise model cached, as in a warm worker): what the
           service's job does for a sweep task
  aer      the user's local loop done well: transpile the N circuits once, then ONE
           ``AerSimulator.from_backend(FakeFez()).run(circuits)`` call on a simulator built once
           (warm, its construction not charged)
  aer+nm   the same single call with the runner's noise model for the used qubits: the simulation
           floor the runner could reach

and reports the per-circuit runner overhead (runner total minus its simulate phase, over N)
and the runner's phases. End to end through the control plane it adds the ~17 ms per *task*
measured by benchmarks/overhead.py (not per circuit).

    python benchmarks/sweep_runner.py [--points 50,500] [--format qpy|qasm3] [--quick] [--json]

``--format``: how the circuits reach the runner: QPY (default; what a Qiskit backend or sampler sends,
read by Qiskit's Rust reader) or OpenQASM 3 (the CLI's text; Qiskit's Python importer, ~30 ms a circuit).
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import _common as C  # noqa: E402


def sweep_circuits(points: int, n: int = 5):
    import math

    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter

    gamma, beta = Parameter("g"), Parameter("b")
    qc = QuantumCircuit(n, n)
    qc.h(range(n))
    for q in range(n):
        qc.rzz(2 * gamma, q, (q + 1) % n)
    for q in range(n):
        qc.rx(2 * beta, q)
    qc.measure(range(n), range(n))
    side = max(int(math.sqrt(points)), 1)
    values = [(0.1 + 1.4 * (i % side) / side, 0.1 + 1.4 * (i // side) / max(points // side, 1)) for i in range(points)]
    return [qc.assign_parameters({gamma: g, beta: b}) for g, b in values]


def main(argv: list[str] | None = None) -> int:
    parser = C.parser(__doc__, "sweep_runner")
    parser.add_argument("--points", default="50,500")
    parser.add_argument("--shots", type=int, default=1000)
    parser.add_argument("--format", choices=("qpy", "qasm3"), default="qpy",
                        help="the circuits' wire format: qpy (what a Qiskit backend or sampler sends) or qasm3 (the CLI)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    sizes = [5] if args.smoke else [50] if args.quick else [int(p) for p in args.points.split(",")]

    from qiskit import qasm3, transpile
    from qiskit_aer import AerSimulator
    from qiskit_ibm_runtime.fake_provider import FakeFez

    from jupyter_vqpu.core import catalog, snapshot
    from jupyter_vqpu.core.circuits import circuit_to_qpy
    from jupyter_vqpu_agent import bundle, noise, runner

    doc = catalog.builtin_snapshot("fez")
    data = snapshot.canonical_bytes(doc)
    sid = snapshot.snapshot_id(data)
    target = snapshot.build_target(doc, sid)
    ref = AerSimulator.from_backend(FakeFez())
    print(C.load())
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="vqpu-sweep-runner-"))
    for points in sizes:
        circuits = sweep_circuits(points)
        texts = [(args.format, circuit_to_qpy(c) if args.format == "qpy" else qasm3.dumps(c)) for c in circuits]
        spec = bundle.TaskSpec(task_id=f"sweep{points}", device="fez", attempt=1, snapshot_id=sid, shots=args.shots,
                               circuit_format=args.format, seed=5, options={})
        runs = []
        for i in range(2):  # the first warms the process's caches for this snapshot and layout
            where = bundle.stage(tmp / f"s{points}-{i}", spec, data, texts[0][1], batch=texts)
            t = time.perf_counter()
            result = runner.run_bundle(where)
            runs.append((time.perf_counter() - t, result))
        wall, result = runs[1]
        assert result["ok"], result.get("error")
        timings = result["timings"]

        t = time.perf_counter()
        tqcs = transpile(circuits, target=target, optimization_level=2, seed_transpiler=5)
        t_transpile = time.perf_counter() - t
        t = time.perf_counter()
        ref.run(tqcs, shots=args.shots, seed_simulator=5).result()
        t_aer = time.perf_counter() - t
        used = sorted({tq.find_bit(q).index for tq in tqcs for inst in tq.data for q in inst.qubits})
        model = noise.noise_model_for(doc, used, sid, noise.instructions_of(tqcs))  # what the runner builds
        t = time.perf_counter()
        AerSimulator(noise_model=model, method="density_matrix", seed_simulator=5).run(tqcs, shots=args.shots).result()
        t_floor = time.perf_counter() - t
        outside = timings["total"] - timings["simulate"]
        row = {"points": points, "format": args.format, "runner_wall_s": wall, "runner_total_s": timings["total"],
               "runner_transpile_s": timings["transpile"], "runner_simulate_s": timings["simulate"],
               "runner_overhead_per_circuit_ms": 1e3 * outside / points,
               "runner_load_s": timings["load"],
               "runner_simulate_per_circuit_ms": 1e3 * timings["simulate"] / points,
               "aer_transpile_s": t_transpile, "aer_one_call_s": t_aer, "aer_with_our_model_s": t_floor,
               "method": result.get("simulator", {}).get("method"),
               "speedup_vs_aer": (t_transpile + t_aer) / timings["total"]}
        rows.append(row)
        print(f"{points:>4} points: runner {timings['total']:.2f} s (transpile {timings['transpile']:.2f}, simulate "
              f"{timings['simulate']:.2f}; {row['runner_overhead_per_circuit_ms']:.1f} ms/circuit outside simulate, "
              f"{row['runner_simulate_per_circuit_ms']:.1f} ms/circuit simulating, {row['method']}); local Aer: "
              f"transpile {t_transpile:.2f} s + one run {t_aer:.2f} s; one run with our model {t_floor:.2f} s; "
              f"runner vs local Aer {row['speedup_vs_aer']:.1f}x", flush=True)
    print(C.load())
    summary = {"rows": rows, "overhead_per_circuit_ms_max": max(r["runner_overhead_per_circuit_ms"] for r in rows)}
    if args.json:
        C.emit_json(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
