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

# (family, qubits asked for, shots): deep and shallow circuits on both sides of where the methods cross, then
# 15-20 active qubits (from core/method.WIDE_QUBITS Aer fuses gates and spreads them over the cores), with few shots (a QFT-20 shot takes seconds)
FULL = (("ghz", 10, 1024), ("layered", 10, 1024), ("wstate", 10, 1024), ("qft", 8, 1024), ("qft", 10, 1024),
        ("qft", 10, 256), ("ghz", 10, 4096), ("layered", 11, 1024), ("qft", 11, 1024), ("ghz", 12, 1024),
        ("layered", 12, 1024), ("mqt-vqe_real_amp", 12, 1024), ("layered", 14, 128), ("qaoa", 10, 128),
        ("wstate", 14, 128), ("wstate", 5, 4096), ("qft", 5, 4096),
        ("ghz", 15, 256), ("layered", 15, 256), ("mqt-vqe_real_amp", 15, 256), ("qft", 15, 32), ("ghz", 20, 64),
        ("layered", 20, 64), ("qaoa", 15, 32), ("qft", 20, 8))
QUICK = (("ghz", 8, 1024), ("qft", 6, 1024), ("wstate", 5, 4096), ("layered", 10, 256))
SMOKE = (("ghz", 4, 256), ("qft", 4, 256))
#: the cost model's name for each timed path
METHOD = {"statevector": "statevector", "branching": "statevector+branching", "density_matrix": "density_matrix"}
SKIP_OVER_S = 60.0  # a path the current model predicts past this is not timed (it would not be chosen)


def _fitted_names() -> tuple[str, ...]:
    """The constants the timed paths determine (not MPS's: the runner times MPS by its probe)."""
    from jupyter_vqpu.core import method

    return tuple(name for name in method.CONSTANTS if not name.startswith("MPS_"))


def _predict(k: dict[str, float], row: dict) -> float:
    """Seconds for one timed path, from ``core/method.estimates`` itself with the constants ``k``."""
    from jupyter_vqpu.core import method

    facts = method.CircuitFacts(active_qubits=row["active_qubits"], ops=row["ops"])
    noise = method.NoiseFacts(noisy=True, error_per_shot=row["error_per_shot"])
    return method.estimates(facts, noise, row["shots"], k)[METHOD[row["path"]]]


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


def _time_paths(cases: tuple, seed: int) -> list[dict]:
    """One row per (circuit, path): what it took, and what the constants in the code predicted."""
    from simulation_paths import fez_device, prepared, run

    from jupyter_vqpu.core import method
    from jupyter_vqpu_agent import runner

    fez = fez_device("2026-01-02T03:04:05Z")
    rows: list[dict] = []
    for family, n, shots in cases:
        tqc, model = prepared(fez, family, n)
        facts, noise, _ = runner.circuit_facts(tqc, model)
        est = method.estimates(facts, noise, shots)
        for path, name in METHOD.items():
            if name not in est or est[name] > SKIP_OVER_S:
                continue
            started = time.perf_counter()
            run(path, tqc, model, shots, seed=seed)
            rows.append({"circuit": f"{family}{n}x{shots}", "path": path, "active_qubits": facts.active_qubits,
                         "ops": facts.ops, "error_per_shot": noise.error_per_shot, "shots": shots,
                         "seconds": time.perf_counter() - started})
            print(f"{rows[-1]['circuit']:<26}{facts.active_qubits:>3} qubits  {path:<15}{rows[-1]['seconds']:>8.2f} s"
                  f"  (predicted {est[name]:.2f} s)", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = C.parser(__doc__, "cost_model")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--refit", metavar="JSON", help="fit the rows of an earlier --json run (its last line) "
                        "instead of timing: the constants' form changed, the machine did not")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")

    import json

    import numpy as np
    from scipy.optimize import least_squares

    from jupyter_vqpu.core import method

    names = _fitted_names()
    current = {name: getattr(method, name) for name in names}
    if args.refit:
        rows = json.loads(Path(args.refit).read_text().strip().splitlines()[-1])["rows"]
        print(f"{len(rows)} timings from {args.refit}", flush=True)
    else:
        cases = SMOKE if args.smoke else QUICK if args.quick else FULL
        print(f"{len(cases)} circuits; {C.load()}", flush=True)
        rows = _time_paths(cases, args.seed)
    for r in rows:
        r["predicted_current"] = _predict(current, r)

    def residuals(logk: np.ndarray) -> list[float]:
        k = dict(zip(names, np.exp(logk)))
        return [math.log(_predict(k, r) / r["seconds"]) for r in rows]

    fit = least_squares(residuals, np.log([current[name] for name in names]))
    fitted = {name: float(v) for name, v in zip(names, np.exp(fit.x))}
    for r in rows:
        r["predicted_fitted"] = _predict(fitted, r)
    summary = {"current": current, "fitted": fitted, "log_rms_current": _log_rms(current, rows),
               "log_rms_fitted": _log_rms(fitted, rows), "circuits": _picks_fastest(current, rows)[1],
               "picks_fastest_current": _picks_fastest(current, rows)[0],
               "picks_fastest_fitted": _picks_fastest(fitted, rows)[0], "rows": rows}
    print("\nconstant              current     fitted")
    for name in names:
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
