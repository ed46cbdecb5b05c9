"""Benchmark: end-to-end latency of small circuits, split into service overhead and simulator time.

A real redis-server, a real agent (in this process, background thread) with the
local executor's warm worker, and a client that submits one task at a time and
blocks on ControlPlane.wait. Circuits: Bell (2 qubits) and GHZ-3, 100 shots, on
``ideal`` and ``fez`` (IBM Fez calibration noise), interleaved.

  end-to-end  from the client's submit call to the moment ControlPlane.wait returns the final view
  simulate    the runner's own simulate time (result timings)
  overhead    end-to-end minus simulate

The overhead is then split by the task history's server timestamps (ms):

  submit      client submit call -> 'queued' (client-side parse and the submit script)
  queue       queued -> claimed (agent wake-up on XREADGROUP, claim-and-bind)
  dispatch    claimed -> running (stage the bundle, 'scheduled' report, hand to the worker, 'running' report)
  runner      running -> completed minus simulate (load, transpile, noise model, result file, IPC, finish script)
  visible     completed -> ControlPlane.wait returns (events-stream wake-up, final task read)

    python benchmarks/overhead.py [--tasks 400] [--quick] [--json] [--plot docs/img/overhead.png]

``--json``: the last line has overhead_p50_ms, overhead_p95_ms, overhead_p99_ms,
e2e_p50_ms, simulate_p50_ms (all tasks), plus per-circuit and per-phase figures.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

KINDS = (("ideal", "bell", C.BELL), ("ideal", "ghz3", C.GHZ3), ("fez", "bell", C.BELL), ("fez", "ghz3", C.GHZ3))
PHASES = ("submit", "queue", "dispatch", "runner", "visible")
TARGET_P50_MS, TARGET_P99_MS = 50.0, 200.0


def one_task(cp, device: str, circuit: str, shots: int, seed: int) -> dict:
    t0 = C.now()
    tid = cp.submit(owner="bench", device=device, circuit=circuit, shots=shots, seed=seed)["task_id"]
    view = cp.wait(tid, timeout=120)
    t_visible = C.now()
    if view["state"] != "completed":
        raise RuntimeError(f"{tid} ended {view['state']}: {view.get('error')}")
    ts = {e["event"]: e["ts"] / 1000.0 for e in cp.history(tid)}
    timings = cp.result(tid)["timings"]
    sim = timings["simulate"]
    e2e = t_visible - t0
    return {
        "task": tid, "e2e": e2e, "simulate": sim, "overhead": e2e - sim,
        "runner_total": timings["total"], "transpile": timings["transpile"], "noise_model": timings["noise_model"],
        "load": timings["load"],
        "submit": ts["queued"] - t0,
        "queue": ts["claimed"] - ts["queued"],
        "dispatch": ts["running"] - ts["claimed"],
        "runner": ts["completed"] - ts["running"] - sim,
        "visible": t_visible - ts["completed"],
    }


def summarize(rows: list[dict]) -> dict:
    ms = lambda key: [r[key] * 1e3 for r in rows]  # noqa: E731
    out = {"n": len(rows)}
    for key in ("e2e", "simulate", "overhead"):
        for p, v in C.pcts(ms(key)).items():
            out[f"{key}_{p}_ms"] = v
    for key in PHASES + ("transpile", "noise_model", "load"):
        out[f"{key}_p50_ms"] = C.percentile(ms(key), 50)
        out[f"{key}_p99_ms"] = C.percentile(ms(key), 99)
    return out


def main(argv: list[str] | None = None) -> int:
    p = C.parser(__doc__, "overhead")
    p.add_argument("--tasks", type=int, default=400, help="measured tasks (spread over the 4 circuits)")
    p.add_argument("--warmup", type=int, default=3, help="unmeasured tasks per circuit first")
    p.add_argument("--shots", type=int, default=100)
    args = p.parse_args(argv)
    if args.quick:
        args.tasks, args.warmup = min(args.tasks, 120), min(args.warmup, 2)
    if args.smoke:
        args.tasks, args.warmup = min(args.tasks, 8), 1

    print(f"overhead: {args.tasks} tasks, {args.shots} shots, local executor (1 warm worker); {C.load()}", flush=True)
    rows: list[dict] = []
    started = time.monotonic()
    with C.Bench("overhead") as b:
        cp = b.control(seed=["ideal", "fez"])
        b.agent(["ideal", "fez"], slots=1)
        for i in range(args.warmup * len(KINDS)):
            device, _, circuit = KINDS[i % len(KINDS)]
            one_task(cp, device, circuit, args.shots, 10_000 + i)
        for i in range(args.tasks):
            device, name, circuit = KINDS[i % len(KINDS)]
            r = one_task(cp, device, circuit, args.shots, i)
            r["kind"] = f"{device}/{name}"
            rows.append(r)
    elapsed = time.monotonic() - started
    after = C.load()

    groups = {"all": rows}
    for device, name, _ in KINDS:
        groups[f"{device}/{name}"] = [r for r in rows if r["kind"] == f"{device}/{name}"]
    for device in ("ideal", "fez"):
        groups[device] = [r for r in rows if r["kind"].startswith(device + "/")]
    summaries = {k: summarize(v) for k, v in groups.items()}
    table_rows = [{"circuit": k, **s} for k, s in summaries.items()]
    print()
    print("latency per task, ms (client clock for end-to-end; overhead = end-to-end - runner simulate)")
    print(C.table(table_rows, [("circuit", "circuit", ""), ("n", "n", "d"),
                               ("e2e_p50_ms", "e2e p50", ".1f"), ("e2e_p99_ms", "e2e p99", ".1f"),
                               ("simulate_p50_ms", "sim p50", ".1f"), ("simulate_p99_ms", "sim p99", ".1f"),
                               ("overhead_p50_ms", "ovh p50", ".1f"), ("overhead_p95_ms", "ovh p95", ".1f"),
                               ("overhead_p99_ms", "ovh p99", ".1f")]))
    print()
    print("overhead by phase, ms (p50 / p99; server timestamps have 1 ms resolution)")
    print(C.table(
        [{"circuit": k, **{ph: f"{s[ph + '_p50_ms']:.1f} / {s[ph + '_p99_ms']:.1f}" for ph in PHASES},
          "transpile": f"{s['transpile_p50_ms']:.1f}", "noise": f"{s['noise_model_p50_ms']:.1f}",
          "load": f"{s['load_p50_ms']:.1f}"} for k, s in summaries.items()],
        [("circuit", "circuit", "")] + [(ph, ph, "") for ph in PHASES]
        + [("load", "(runner load p50", ""), ("transpile", "transpile p50", ""), ("noise", "noise p50)", "")]))
    a = summaries["all"]
    met_p50, met_p99 = a["overhead_p50_ms"] <= TARGET_P50_MS, a["overhead_p99_ms"] <= TARGET_P99_MS
    print(f"\ntarget overhead p50 <= {TARGET_P50_MS:g} ms: {'met' if met_p50 else 'MISSED'} ({a['overhead_p50_ms']:.1f}); "
          f"p99 <= {TARGET_P99_MS:g} ms: {'met' if met_p99 else 'MISSED'} ({a['overhead_p99_ms']:.1f}); "
          f"{len(rows)} tasks in {elapsed:.1f} s; before: see above, after: {after}")

    plot(rows, summaries, args.plot)
    if args.json:
        C.emit_json({
            "overhead_p50_ms": a["overhead_p50_ms"], "overhead_p95_ms": a["overhead_p95_ms"],
            "overhead_p99_ms": a["overhead_p99_ms"], "e2e_p50_ms": a["e2e_p50_ms"],
            "e2e_p99_ms": a["e2e_p99_ms"], "simulate_p50_ms": a["simulate_p50_ms"],
            "target_p50_met": met_p50, "target_p99_met": met_p99, "tasks": len(rows), "load_after": after,
            "phases_p50_ms": {ph: a[ph + "_p50_ms"] for ph in PHASES},
            "phases_p99_ms": {ph: a[ph + "_p99_ms"] for ph in PHASES},
            "per_circuit": {k: s for k, s in summaries.items() if k != "all"},
        })
    return 0


def plot(rows: list[dict], summaries: dict, path: str) -> None:
    plt = C.pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, style in (("overhead", "-"), ("simulate", "--"), ("e2e", ":")):
        for device, color in (("ideal", "tab:blue"), ("fez", "tab:red")):
            vals = sorted(r[key] * 1e3 for r in rows if r["kind"].startswith(device + "/"))
            if vals:
                ax1.plot(vals, [(i + 1) / len(vals) for i in range(len(vals))], style, color=color,
                         label=f"{device} {key}")
    ax1.axvline(TARGET_P50_MS, color="grey", lw=0.8)
    ax1.set_xscale("log")
    ax1.set_xlabel("ms per task")
    ax1.set_ylabel("fraction of tasks")
    ax1.set_title("CDF: service overhead vs simulator time")
    ax1.legend(fontsize=7)
    kinds = [k for k in summaries if "/" in k]
    bottom = [0.0] * len(kinds)
    for ph in PHASES:
        vals = [max(0.0, summaries[k][ph + "_p50_ms"]) for k in kinds]
        ax2.bar(kinds, vals, bottom=bottom, label=ph)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax2.bar(kinds, [summaries[k]["simulate_p50_ms"] for k in kinds], bottom=bottom, label="simulate", hatch="//",
            color="white", edgecolor="black")
    ax2.set_ylabel("ms (p50 of each phase, stacked)")
    ax2.set_title("where the time goes (p50)")
    ax2.legend(fontsize=7)
    C.save(fig, path)


if __name__ == "__main__":
    sys.exit(main())
