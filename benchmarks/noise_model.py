"""Benchmark: our per-circuit noise model vs ``AerSimulator.from_backend(FakeFez())``.

For GHZ and layered (brickwork of seeded rotations + CX) circuits on IBM Fez,
transpiled ONCE against the snapshot's Target, it runs the same transpiled
circuit with the same seed two ways and prints side by side:

  ours  noise_model_for(snapshot, used qubits) (cold cache) + AerSimulator run
  ref   AerSimulator.from_backend(FakeFez()) construction + run

with the speedup (ref total / ours total), the total-variation distance between
the two count distributions and whether the counts are identical. The reference
simulator is constructed once (fresh FakeFez included) and that construction
time is charged to every row, as a runner that built it per task would pay it.

    python benchmarks/noise_model.py [--quick] [--json]

``--json``: the last printed line is one JSON object with noise_speedup_min,
tvd_max, tvd_floor_max, identical_counts, within_sampling_noise (plus the rows).

The runner simulates a noisy circuit of at most 10 active qubits as a density
matrix once its shots outnumber half its 2^n amplitudes (``jupyter_vqpu_agent.runner.choose_method``);
the reference keeps Aer's per-shot trajectories. Those rows cannot give identical
counts, so they are checked against sampling noise measured on the reference
itself (the same circuit with another seed).
"""

from __future__ import annotations

import random
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

# (active qubits, shots): noisy statevector simulation costs 2^n per shot, so wide rows use fewer shots.
FULL = ((3, 4096), (5, 4096), (10, 1024), (15, 256), (20, 32))
QUICK = ((3, 2048), (5, 2048), (10, 1024))


def ghz(n: int):
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(n, n, name=f"ghz{n}")
    qc.h(0)
    for i in range(n - 1):
        qc.cx(i, i + 1)
    qc.measure(range(n), range(n))
    return qc


def layered(n: int, layers: int = 3, seed: int = 11):
    """Seeded single-qubit rotations with alternating CX brickwork: generic, entangling, non-Clifford."""
    from qiskit import QuantumCircuit

    rng = random.Random(seed * 1000 + n)
    qc = QuantumCircuit(n, n, name=f"layered{n}")
    for layer in range(layers):
        for q in range(n):
            qc.ry(rng.uniform(0, 3.1416), q)
            qc.rz(rng.uniform(0, 3.1416), q)
        for q in range(layer % 2, n - 1, 2):
            qc.cx(q, q + 1)
    qc.measure(range(n), range(n))
    return qc


def tvd(a: dict[str, int], b: dict[str, int]) -> float:
    na, nb = sum(a.values()) or 1, sum(b.values()) or 1
    return 0.5 * sum(abs(a.get(k, 0) / na - b.get(k, 0) / nb) for k in set(a) | set(b))


def main(argv: list[str] | None = None) -> int:
    parser = C.parser(__doc__, "noise_model")
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")

    from jupyter_vqpu_agent import noise
    from jupyter_vqpu_agent.runner import choose_method
    from qiskit import transpile
    from qiskit_aer import AerSimulator
    from qiskit_ibm_runtime.fake_provider import FakeFez

    from jupyter_vqpu.core import catalog, snapshot

    doc = catalog.builtin_snapshot("fez")
    sid = snapshot.snapshot_id(snapshot.canonical_bytes(doc))
    target = snapshot.build_target(doc, sid)

    t = time.perf_counter()
    ref_sim = AerSimulator.from_backend(FakeFez())
    ref_build = time.perf_counter() - t
    print(f"reference: AerSimulator.from_backend(FakeFez()) constructed in {ref_build:.2f} s "
          f"(charged to every row below)")
    header = (f"{'circuit':<12}{'active':>6}{'shots':>7}  {'method':<15}{'ours nm':>8}{'ours sim':>9}{'ours tot':>9}  "
              f"{'ref run':>8}{'ref tot':>8}  {'speedup':>8}{'run only':>9}  {'TVD':>7}{'floor':>7}")
    print(header)
    print("-" * len(header))

    rows = []
    for n, shots in QUICK if args.quick or args.smoke else FULL:
        for make in (ghz, layered):
            qc = make(n)
            tqc = transpile(qc, target=target, optimization_level=1, seed_transpiler=args.seed)
            used = sorted({tqc.find_bit(q).index for inst in tqc.data for q in inst.qubits})

            noise.clear_cache()
            t0 = time.perf_counter()
            model = noise.noise_model_for(doc, used, sid)
            t1 = time.perf_counter()
            method = choose_method("automatic", True, len(used), shots)
            ours = AerSimulator(noise_model=model, seed_simulator=args.seed, method=method).run(
                tqc, shots=shots).result().get_counts()
            t2 = time.perf_counter()
            ref_sim.set_options(seed_simulator=args.seed)
            ref = ref_sim.run(tqc, shots=shots).result().get_counts()
            t3 = time.perf_counter()
            # Sampling noise, measured: the reference against itself with another seed (far
            # away: Aer seeds shot i with seed + i, so seed + 1 would repeat all but one shot).
            ref_sim.set_options(seed_simulator=args.seed + 10**6)
            floor = tvd(ref, ref_sim.run(tqc, shots=shots).result().get_counts())

            ours_total, ref_run = t2 - t0, t3 - t2
            row = {
                "circuit": qc.name, "active_qubits": len(used), "shots": shots,
                "ours_noise_model_s": t1 - t0, "ours_simulate_s": t2 - t1, "ours_total_s": ours_total,
                "ref_build_s": ref_build, "ref_run_s": ref_run, "ref_total_s": ref_build + ref_run,
                "speedup": (ref_build + ref_run) / ours_total, "speedup_run_only": ref_run / ours_total,
                "method": method, "tvd": tvd(ours, ref), "tvd_floor": floor, "identical": ours == ref,
            }
            rows.append(row)
            print(f"{qc.name:<12}{len(used):>6}{shots:>7}  {method:<15}{row['ours_noise_model_s'] * 1e3:>6.0f}ms"
                  f"{row['ours_simulate_s']:>8.2f}s{ours_total:>8.2f}s  {ref_run:>7.2f}s{row['ref_total_s']:>7.2f}s  "
                  f"{row['speedup']:>7.1f}x{row['speedup_run_only']:>8.1f}x  {row['tvd']:>7.4f}{floor:>7.4f}",
                  flush=True)

    # Same seed and same method give the same counts; a density matrix samples differently, so
    # there the check is statistical: within three times the reference's own seed-to-seed distance.
    within = [r["identical"] or r["tvd"] <= 3 * r["tvd_floor"] + 0.01 for r in rows]
    summary = {
        "noise_speedup_min": min(r["speedup"] for r in rows),
        "noise_build_speedup_min": min(ref_build / r["ours_noise_model_s"] for r in rows),
        "tvd_max": max(r["tvd"] for r in rows),
        "tvd_floor_max": max(r["tvd_floor"] for r in rows),
        "identical_counts": all(r["identical"] for r in rows if r["method"] == "automatic"),
        "within_sampling_noise": all(within),
        "ref_build_s": ref_build,
        "rows": rows,
    }
    print(f"\nspeedup (ref construction + run) / (ours noise model + run): min {summary['noise_speedup_min']:.1f}x; "
          f"noise-model build alone: min {summary['noise_build_speedup_min']:.0f}x; "
          f"max TVD {summary['tvd_max']:.4f} (seed-to-seed floor up to {summary['tvd_floor_max']:.4f}); "
          f"same method, same seed, identical counts: {'yes' if summary['identical_counts'] else 'NO'}; "
          f"within sampling noise: {'yes, every row' if summary['within_sampling_noise'] else 'NO'}")
    plot(rows, args.plot)
    if args.json:
        C.emit_json(summary)
    return 0 if summary["identical_counts"] else 1


def plot(rows: list[dict], path: str) -> None:
    """Time per row, ours vs the reference, on a log axis."""
    plt = C.pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    names = [f"{r['circuit']}\n{r['shots']} shots" for r in rows]
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["ours_total_s"] for r in rows], 0.4, label="ours: noise model + simulate")
    ax.bar([i + 0.2 for i in x], [r["ref_total_s"] for r in rows], 0.4,
           label="AerSimulator.from_backend(FakeFez()) + simulate")
    ax.set_yscale("log")
    ax.set_ylabel("seconds")
    ax.set_xticks(list(x), names, fontsize=7)
    ax.legend(fontsize=8)
    ax.set_title("Noise model for the used qubits vs the whole device")
    C.save(fig, path)


if __name__ == "__main__":
    sys.exit(main())
