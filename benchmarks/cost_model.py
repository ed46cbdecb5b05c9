"""Benchmark: each exact simulation path timed on the runner's own models, and the cost model fitted to them.

For circuit families (tests/circuit_families.py) at a width and a number of shots, it times the
paths the runner may take (tests/simulation_paths.py, what the method-equality test proves equal:
one statevector trajectory per shot, shot branching with the readout channel, a density matrix
where one fits), then fits the constants of ``jupyter_vqpu/core/method.py`` to the timings (least
squares on log time, every method's form as the code writes it) and prints, per circuit, what each
path took, what the current constants predict, and whether the method they pick was the fastest.

    python benchmarks/cost_model.py [--quick] [--json]

``--json``: the last line is one JSON object: fitted (name -> value), current (name -> value),
log_rms_current, log_rms_fitted, circuits, picks_fastest_current, picks_fastest_fitted, rows.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import _common as C  # noqa: E402

# (family, qubits asked for, shots): deep and shallow circuits on both sides of where the methods cross
FULL = (("ghz", 10, 1024), ("layered", 10, 1024), ("wstate", 10, 1024), ("qft", 8, 1024), ("qft", 10, 1024),
        ("qft", 10, 256), ("ghz", 10, 4096), ("layered", 11, 1024), ("qft", 11, 1024), ("ghz", 12, 1024),
        ("layered", 12, 1024), ("mqt-vqe_real_amp", 12, 1024), ("layered", 14, 128), ("qaoa", 10, 128),
        ("wstate", 14, 128), ("wstate", 5, 4096), ("qft", 5, 4096))
QUICK = (("ghz", 8, 1024), ("qft", 6, 1024), ("wstate", 5, 4096), ("layered", 10, 256))
SMOKE = (("ghz", 4, 256), ("qft", 4, 256))
#: the cost model's name for each timed path
METHOD = {"statevector": "statevector", "branching": "statevector+branching", "density_matrix": "density_matrix"}
#: the constants fitted, in the order of ``_predict``'s parameters
NAMES = ("RUN_FIXED", "SV_PER_OP_SHOT", "SV_PER_AMP", "BR_PER_OP_SHOT", "BR_PER_OP_BRANCH", "BR_PER_AMP",
         "DM_PER_ELEMENT", "DM_PER_OP_ELEMENT")
SKIP_OVER_S = 60.0  # a path the current model predicts past this is not timed (it would not be chosen)


def _predict(k: dict[str, float], row: dict) -> float:
    """Seconds for one timed path, in the form ``core/method.estimates`` writes it."""
    from jupyter_vqpu.core.method import branches

    ops, width, shots = row["ops2"], row["active_qubits"], row["shots"]
    if row["path"] == "statevector":
        return k["RUN_FIXED"] + shots * ops * (k["SV_PER_OP_SHOT"] + k["SV_PER_AMP"] * 2.0 ** width)
    if row["path"] == "branching":
        return k["RUN_FIXED"] + ops * (shots * k["BR_PER_OP_SHOT"] + branches(shots, row["error_per_shot"])
                                       * (k["BR_PER_OP_BRANCH"] + k["BR_PER_AMP"] * 2.0 ** width))
    return k["RUN_FIXED"] + 4.0 ** width * (k["DM_PER_ELEMENT"] + k["DM_PER_OP_ELEMENT"] * ops)


def _log_rms(k: dict[str, float], rows: list[dict]) -> float:
    return math.sqrt(sum(math.log(_predict(k, r) / r["seconds"]) ** 2 for r in rows) / len(rows))


def _picks_fastest(k: dict[str, float], rows: list[dict]) -> tuple[int, int]:
    """(circuits whose fastest timed path the constants predict fastest, circuits with two or more paths)."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["circuit"], []).append(r)
    groups = [g for g in by.values() if len(g) > 1]
    good = sum(min(g, key=lambda r: r["seconds"]) is min(g, key=lambda r: _predict(k, r)) for g in groups)
    return good, len(groups)


def main(argv: list[str] | None = None) -> int:
    parser = C.parser(__doc__, "cost_model")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")

    import numpy as np
    from scipy.optimize import least_squares
    from simulation_paths import fez_device, prepared, run

    from jupyter_vqpu.core import method
    from jupyter_vqpu_agent import runner

    fez = fez_device("2026-01-02T03:04:05Z")
    current = {name: getattr(method, name) for name in NAMES}
    cases = SMOKE if args.smoke else QUICK if args.quick else FULL
    rows: list[dict] = []
    print(f"{len(cases)} circuits; {C.load()}", flush=True)
    for family, n, shots in cases:
        tqc, model = prepared(fez, family, n)
        facts, noise, _ = runner.circuit_facts(tqc, model)
        est = method.estimates(facts, noise, shots)
        for path, name in METHOD.items():
            if name not in est or est[name] > SKIP_OVER_S:
                continue
            started = time.perf_counter()
            run(path, tqc, model, shots, seed=args.seed)
            rows.append({"circuit": f"{family}{n}x{shots}", "path": path, "active_qubits": facts.active_qubits,
                         "ops2": 2 * max(facts.ops, 1), "error_per_shot": noise.error_per_shot, "shots": shots,
                         "seconds": time.perf_counter() - started, "predicted_current": est[name]})
            print(f"{rows[-1]['circuit']:<26}{facts.active_qubits:>3} qubits  {path:<15}{rows[-1]['seconds']:>8.2f} s"
                  f"  (predicted {est[name]:.2f} s)", flush=True)

    def residuals(logk: np.ndarray) -> list[float]:
        k = dict(zip(NAMES, np.exp(logk)))
        return [math.log(_predict(k, r) / r["seconds"]) for r in rows]

    fit = least_squares(residuals, np.log([current[name] for name in NAMES]))
    fitted = {name: float(v) for name, v in zip(NAMES, np.exp(fit.x))}
    for r in rows:
        r["predicted_fitted"] = _predict(fitted, r)
    summary = {"current": current, "fitted": fitted, "log_rms_current": _log_rms(current, rows),
               "log_rms_fitted": _log_rms(fitted, rows), "circuits": _picks_fastest(current, rows)[1],
               "picks_fastest_current": _picks_fastest(current, rows)[0],
               "picks_fastest_fitted": _picks_fastest(fitted, rows)[0], "rows": rows}
    print("\nconstant              current     fitted")
    for name in NAMES:
        print(f"{name:<20}{current[name]:>10.3g}{fitted[name]:>11.3g}")
    print(f"log RMS error: current {summary['log_rms_current']:.2f}, fitted {summary['log_rms_fitted']:.2f}; "
          f"the fastest timed path is the predicted fastest on {summary['picks_fastest_current']} (current) / "
          f"{summary['picks_fastest_fitted']} (fitted) of {summary['circuits']} circuits")
    plot(rows, args.plot)
    if args.json:
        C.emit_json(summary)
    return 0


def plot(rows: list[dict], path: str) -> None:
    """Predicted against measured seconds, log-log, one marker per path."""
    plt = C.pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for p in METHOD:
        mine = [r for r in rows if r["path"] == p]
        ax.scatter([r["seconds"] for r in mine], [r["predicted_current"] for r in mine], label=p, s=18)
    lo = min(min(r["seconds"], r["predicted_current"]) for r in rows)
    hi = max(max(r["seconds"], r["predicted_current"]) for r in rows)
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("measured seconds")
    ax.set_ylabel("predicted seconds (core/method.py)")
    ax.legend(fontsize=8)
    ax.set_title("The runner's cost model")
    C.save(fig, path)


if __name__ == "__main__":
    sys.exit(main())
