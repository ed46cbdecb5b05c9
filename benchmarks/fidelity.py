"""Benchmark: what a Qiskit user on Fez gets, circuit by circuit, next to Qiskit's own default.

For MQT Bench circuits (algorithm level, 3-7 qubits; ``pip install mqt.bench``), it computes
the ideal output distribution (a statevector) and the total-variation distance (TVD) to it of

  vqpu  the service: ONE task of all the logical circuits through a real control plane, agent
        and runner (default optimization level, i.e. Qiskit's level 2 on the snapshot's Target)
  qiskit  Qiskit's default ``transpile(qc, backend=FakeFez())`` (level 2, its own seed) run on
        ``AerSimulator.from_backend(FakeFez())``

both as density matrices (``method=density_matrix``: exact noise, no trajectory sampling) with
the same number of shots. A row is "no worse" when the vQPU's TVD is at most Qiskit's plus the
sampling tolerance ``sum_k sqrt(p_k (1 - p_k) / shots)`` over Qiskit's outcome frequencies (two
runs of one distribution differ by about half that); the headline is the share of such rows.

    python benchmarks/fidelity.py [--quick] [--shots N] [--json]

``--json``: the last line is one JSON object: circuits, no_worse, no_worse_share, better,
same_layout, tvd_mean_vqpu, tvd_mean_qiskit (plus the rows).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import _common as C  # noqa: E402
from circuit_families import mqt_bench  # noqa: E402

# Static algorithm-level MQT Bench families (no mid-circuit measurement, no free parameters).
FAMILIES = ("ae", "bv", "dj", "ghz", "graphstate", "grover", "qaoa", "qft", "qftentangled", "qnn", "qpeexact",
            "qpeinexact", "randomcircuit", "vqe_real_amp", "vqe_su2", "vqe_two_local", "wstate")
SIZES = (3, 4, 5, 6, 7)
QUICK_SIZES = (3, 4)
MAX_ACTIVE_QUBITS = 10  # density matrices stay small (4^10)


def benchmark_circuits(sizes: tuple[int, ...]) -> list:
    out = []
    for family in FAMILIES:
        for n in sizes:
            try:
                qc = mqt_bench(family, n)
            except Exception:  # noqa: BLE001 (a family without this size)
                continue
            qc.name = f"{family}_{n}"
            out.append(qc)
    return out


def ideal_distribution(qc) -> dict[str, float]:
    """The exact distribution of the classical bits: the statevector before the final measurements,
    marginalised onto the measured qubits in clbit order (clbit 0 rightmost, as in counts)."""
    from qiskit.quantum_info import Statevector

    measured = {}
    for inst in qc.data:
        if inst.operation.name == "measure":
            measured[qc.find_bit(inst.clbits[0]).index] = qc.find_bit(inst.qubits[0]).index
    body = qc.remove_final_measurements(inplace=False)
    qargs = [measured[c] for c in range(qc.num_clbits) if c in measured]
    probs = Statevector(body).probabilities_dict(qargs=qargs)
    return {k: v for k, v in probs.items() if v > 1e-12}


def tvd(counts: dict[str, int], ideal: dict[str, float]) -> float:
    counts = {k.replace(" ", ""): v for k, v in counts.items()}
    shots = sum(counts.values())
    keys = set(counts) | set(ideal)
    return 0.5 * sum(abs(counts.get(k, 0) / shots - ideal.get(k, 0.0)) for k in keys)


def tolerance(counts: dict[str, int]) -> float:
    shots = sum(counts.values())
    return sum(math.sqrt((c / shots) * (1 - c / shots) / shots) for c in counts.values())


def main() -> int:
    p = C.parser(__doc__, "fidelity")
    p.add_argument("--shots", type=int, default=20_000)
    args = p.parse_args()
    sizes = QUICK_SIZES if (args.quick or args.smoke) else SIZES
    shots = 2000 if args.smoke else args.shots

    from qiskit import transpile
    from qiskit_aer import AerSimulator
    from qiskit_ibm_runtime.fake_provider import FakeFez

    from jupyter_vqpu.core.client import Client

    circuits = benchmark_circuits(sizes)
    if args.smoke:
        circuits = circuits[:4]
    print(f"{len(circuits)} MQT Bench circuits, {shots} shots each; {C.load()}", flush=True)
    fake = FakeFez()
    reference = AerSimulator.from_backend(fake)

    rows = []
    with C.Bench("fidelity") as bench:
        cp = bench.control(seed=["fez"])
        bench.agent(["fez"], lease_s=600, task_timeout_s=3600)
        client = Client(control=cp, owner="bench")
        started = time.perf_counter()
        task = client.submit(circuits, device="fez", shots=shots, seed=11, circuit_format="qpy",
                             options={"method": "density_matrix"}, name="fidelity")
        record = task.result(timeout=7200)
        service_s = time.perf_counter() - started
        experiments = record.get("experiments") or [record]

    for i, (qc, exp) in enumerate(zip(circuits, experiments)):
        tq = transpile(qc, backend=fake, seed_transpiler=1000 + i)  # Qiskit's default preset (level 2)
        active = len({tq.find_bit(q).index for inst in tq.data for q in inst.qubits})
        if active > MAX_ACTIVE_QUBITS or len(exp["physical_qubits"]) > MAX_ACTIVE_QUBITS:
            continue
        ref = reference.run(tq, shots=shots, seed_simulator=500 + i, method="density_matrix").result().get_counts()
        ideal = ideal_distribution(qc)
        ours, theirs = float(tvd(exp["counts"], ideal)), float(tvd(ref, ideal))
        tol = float(tolerance(ref))
        ref_layout = list(tq.layout.initial_index_layout(filter_ancillas=True))
        rows.append({"circuit": qc.name, "qubits": qc.num_qubits, "tvd_vqpu": ours, "tvd_qiskit": theirs,
                     "delta": ours - theirs, "tolerance": tol, "no_worse": bool(ours <= theirs + tol),
                     "same_layout": bool(exp["layout"] == ref_layout), "layout_vqpu": exp["layout"],
                     "fidelity_est": exp.get("estimated_fidelity")})

    print(C.table(rows, [("circuit", "circuit", ""), ("qubits", "n", "d"), ("tvd_vqpu", "TVD vqpu", ".4f"),
                         ("tvd_qiskit", "TVD qiskit", ".4f"), ("delta", "vqpu-qiskit", "+.4f"),
                         ("tolerance", "tol", ".4f"), ("no_worse", "no worse", ""),
                         ("same_layout", "same layout", ""), ("fidelity_est", "est. fidelity", ".3f")]))
    no_worse = sum(r["no_worse"] for r in rows)
    better = sum(r["delta"] < -r["tolerance"] for r in rows)
    same = sum(r["same_layout"] for r in rows)
    mean = (lambda key: sum(r[key] for r in rows) / len(rows)) if rows else (lambda key: math.nan)
    print(f"\nno worse than Qiskit's default on {no_worse}/{len(rows)} circuits ({no_worse / max(1, len(rows)):.0%}); "
          f"better beyond sampling noise on {better}; same initial layout on {same}; mean TVD vqpu "
          f"{mean('tvd_vqpu'):.4f} vs qiskit {mean('tvd_qiskit'):.4f}; the service ran all {len(circuits)} "
          f"circuits as one task in {service_s:.1f} s")
    if args.json:
        C.emit_json({"circuits": len(rows), "no_worse": no_worse, "no_worse_share": no_worse / max(1, len(rows)),
                     "better": better, "same_layout": same, "tvd_mean_vqpu": mean("tvd_vqpu"),
                     "tvd_mean_qiskit": mean("tvd_qiskit"), "service_s": service_s, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
