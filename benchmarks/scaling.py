"""Benchmark: service overhead stays flat while the simulator's time grows with qubits and shots.

Tasks go through the real path: ControlPlane.submit -> agent (this process, local
executor's warm worker) -> runner -> ControlPlane.wait, one at a time. Series:

  ideal/ghz     GHZ-n on the noise-free device (Clifford: Aer picks the stabilizer method, cheap at any n)
  ideal/layered n-qubit brickwork of seeded rotations + CX, 3 layers (statevector: 2^n)
  fez/ghz       GHZ-n on IBM Fez (routing to heavy-hex, calibration noise)
  fez/layered   the same brickwork on IBM Fez

Two sweeps: qubits (4..26, 1,000 shots) and shots (1k, 10k, 100k at 8 qubits).
Every point runs once unmeasured (its cold overhead, e.g. the noise model for a new
qubit set, is reported apart), then ``--reps`` times with the same seed (the runner's
caches warm, as in a steady stream of tasks), and reports the medians of

  e2e         client submit -> ControlPlane.wait returns
  simulate    the runner's simulate time
  overhead    e2e - simulate (includes the runner's transpile and noise-model build)
  service     e2e - the runner's total (control plane + agent + worker hand-off only)

A series stops growing when the next point's predicted simulate time is over
``--cap`` seconds (noisy simulation of wide circuits runs shot by shot: 2^n each).

    python benchmarks/scaling.py [--quick] [--json] [--plot docs/img/scaling.png]

``--json``: the last line has overhead_flat_ratio (max / min of the per-point
overhead medians), service_flat_ratio (same for service), simulate_max_s, and the rows.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

QUBITS = (4, 8, 12, 16, 20, 22, 24, 26)
QUICK_QUBITS = (4, 8, 12, 16)
SHOTS = (1_000, 10_000, 100_000)
SERIES = (("ideal", "ghz"), ("ideal", "layered"), ("fez", "ghz"), ("fez", "layered"))
SWEEP_QUBITS_SHOTS, SWEEP_SHOTS_QUBITS = 1_000, 8


def circuit(kind: str, n: int) -> str:
    import noise_model  # benchmarks/noise_model.py: the same GHZ and layered circuits
    from qiskit import qasm2

    return qasm2.dumps(noise_model.ghz(n) if kind == "ghz" else noise_model.layered(n))


def run_point(cp, device: str, kind: str, n: int, shots: int, reps: int) -> dict:
    text = circuit(kind, n)
    samples = []
    for _ in range(reps + 1):  # the first run warms the worker's caches (noise model for this qubit set): kept apart
        t0 = C.now()
        tid = cp.submit(owner="bench", device=device, circuit=text, shots=shots, seed=7)["task_id"]
        view = cp.wait(tid, timeout=900)
        e2e = C.now() - t0
        if view["state"] != "completed":
            raise RuntimeError(f"{device}/{kind} n={n} shots={shots}: {view['state']}: {view.get('error')}")
        tm = cp.result(tid)["timings"]
        samples.append({"e2e": e2e, "simulate": tm["simulate"], "overhead": e2e - tm["simulate"],
                        "service": e2e - tm["total"], "transpile": tm["transpile"], "noise_model": tm["noise_model"]})
    cold, samples = samples[0], samples[1:]
    med = {k: C.percentile([s[k] for s in samples], 50) for k in samples[0]}
    return {"series": f"{device}/{kind}", "qubits": n, "shots": shots, "reps": reps, **med,
            "cold_overhead": cold["overhead"], "cold_noise_model": cold["noise_model"]}


def main(argv: list[str] | None = None) -> int:
    p = C.parser(__doc__, "scaling")
    p.add_argument("--reps", type=int, default=3, help="runs per point (medians reported)")
    p.add_argument("--cap", type=float, default=30.0, help="skip points predicted to simulate longer (s)")
    p.add_argument("--max-qubits", type=int, default=26)
    args = p.parse_args(argv)
    qubits = [q for q in QUBITS if q <= args.max_qubits]
    shots_list = list(SHOTS)
    if args.quick:
        qubits, args.cap = [q for q in QUICK_QUBITS if q <= args.max_qubits], min(args.cap, 4.0)
    if args.smoke:
        qubits, shots_list, args.reps, args.cap = [4, 8], [1_000, 10_000], 1, min(args.cap, 2.0)

    before = C.load()
    print(f"scaling: qubits {qubits} at {SWEEP_QUBITS_SHOTS} shots, shots {shots_list} at "
          f"{SWEEP_SHOTS_QUBITS} qubits, {args.reps} reps, cap {args.cap:g} s; {before}", flush=True)
    rows: list[dict] = []
    skipped: list[str] = []
    started = time.monotonic()
    with C.Bench("scaling") as b:
        cp = b.control(seed=["ideal", "fez"])
        b.agent(["ideal", "fez"], slots=1)
        for device in ("ideal", "fez"):  # warm the worker's per-snapshot caches
            cp.wait(cp.submit(owner="bench", device=device, circuit=C.BELL, shots=10, seed=1)["task_id"], timeout=300)
        for device, kind in SERIES:
            last = None
            for sweep, points in (("qubits", [(n, SWEEP_QUBITS_SHOTS) for n in qubits]),
                                  ("shots", [(SWEEP_SHOTS_QUBITS, s) for s in shots_list])):
                last = None
                for n, shots in points:
                    if last is not None:
                        # statevector trajectories: 2^n per gate per shot, gates ~ n; shots linear at most
                        grow = 2.0 ** (n - last["qubits"]) * (n / last["qubits"]) * (shots / last["shots"])
                        predicted = last["simulate"] * grow
                        if predicted > args.cap:
                            skipped.append(f"{device}/{kind} {n}q {shots} shots (predicted {predicted:.0f} s)")
                            print(f"  {device}/{kind:<8} {n:>3}q {shots:>7} shots: skipped, predicted "
                                  f"{predicted:.0f} s > cap {args.cap:g} s", flush=True)
                            break
                    r = run_point(cp, device, kind, n, shots, args.reps)
                    r["sweep"] = sweep
                    r["load"] = C.load().split(" (")[0]
                    rows.append(r)
                    last = r
                    print(f"  {r['series']:<12} {n:>3}q {shots:>7} shots: e2e {r['e2e']:8.3f} s  simulate "
                          f"{r['simulate']:8.3f} s  overhead {r['overhead'] * 1e3:7.1f} ms  service "
                          f"{r['service'] * 1e3:6.1f} ms  (transpile {r['transpile'] * 1e3:.1f} ms, noise model "
                          f"{r['noise_model'] * 1e3:.1f} ms; {r['load']})", flush=True)
    elapsed = time.monotonic() - started
    after = C.load()
    print()
    print(C.table([{**r, "e2e_ms": r["e2e"] * 1e3, "sim_ms": r["simulate"] * 1e3, "ovh_ms": r["overhead"] * 1e3,
                    "svc_ms": r["service"] * 1e3, "cold_ms": r["cold_overhead"] * 1e3, "tr_ms": r["transpile"] * 1e3, "nm_ms": r["noise_model"] * 1e3}
                   for r in rows],
                  [("series", "series", ""), ("sweep", "sweep", ""), ("qubits", "qubits", "d"), ("shots", "shots", "d"),
                   ("e2e_ms", "e2e ms", ".1f"), ("sim_ms", "simulate ms", ".1f"), ("ovh_ms", "overhead ms", ".1f"),
                   ("svc_ms", "service ms", ".1f"), ("cold_ms", "cold ovh ms", ".1f"), ("tr_ms", "transpile ms", ".1f"), ("nm_ms", "noise model ms", ".1f"),
                   ("load", "load", "")]))
    ovh = [r["overhead"] for r in rows]
    svc = [r["service"] for r in rows]
    summary = {
        "overhead_flat_ratio": max(ovh) / min(ovh),
        "service_flat_ratio": max(svc) / min(svc),
        "overhead_min_ms": min(ovh) * 1e3, "overhead_max_ms": max(ovh) * 1e3,
        "service_min_ms": min(svc) * 1e3, "service_max_ms": max(svc) * 1e3,
        "simulate_max_s": max(r["simulate"] for r in rows),
        "simulate_min_s": min(r["simulate"] for r in rows),
        "skipped": skipped, "load_before": before, "load_after": after, "elapsed_s": elapsed,
        "rows": rows,
    }
    print(f"\noverhead (e2e - simulate) {summary['overhead_min_ms']:.1f}..{summary['overhead_max_ms']:.1f} ms "
          f"(max/min {summary['overhead_flat_ratio']:.2f}); service (e2e - runner total) "
          f"{summary['service_min_ms']:.1f}..{summary['service_max_ms']:.1f} ms (max/min "
          f"{summary['service_flat_ratio']:.2f}); simulate {summary['simulate_min_s'] * 1e3:.1f} ms.."
          f"{summary['simulate_max_s']:.2f} s; {len(rows)} points in {elapsed:.0f} s; after: {after}")
    plot(rows, args.plot)
    if args.json:
        C.emit_json(summary)
    return 0


def plot(rows: list[dict], path: str) -> None:
    plt = C.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    colors = {"ideal/ghz": "tab:blue", "ideal/layered": "tab:purple", "fez/ghz": "tab:red",
              "fez/layered": "tab:green"}
    for ax, sweep, x in ((axes[0], "qubits", "qubits"), (axes[1], "shots", "shots")):
        for series, color in colors.items():
            rs = sorted((r for r in rows if r["series"] == series and r["sweep"] == sweep), key=lambda r: r[x])
            if not rs:
                continue
            xs = [r[x] for r in rs]
            ax.plot(xs, [r["simulate"] for r in rs], "o-", color=color, label=f"{series} simulate")
            ax.plot(xs, [r["overhead"] for r in rs], "s--", color=color, label=f"{series} overhead")
            ax.plot(xs, [r["service"] for r in rs], "^:", color=color, alpha=0.6, label=f"{series} service")
        ax.set_yscale("log")
        ax.set_xlabel(x + (" (1,000 shots)" if x == "qubits" else " (8 qubits)"))
        if x == "shots":
            ax.set_xscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("seconds (median per point)")
    axes[0].set_title("vs qubits: simulator time grows, overhead stays flat")
    axes[1].set_title("vs shots")
    axes[1].legend(fontsize=7, loc="upper left")
    C.save(fig, path)


if __name__ == "__main__":
    sys.exit(main())
