"""Per-task overhead of the three ways to realise a task, side by side, on the local Slurm.

    python benchmarks/slurm_overhead.py [--tasks 20] [--quick] [--json]

(a) ``slurm``:       one Slurm batch job per task (sbatch, Python start-up, Qiskit import each time)
(b) ``slurm-pilot``: one long-running allocation whose warm worker runs every task
(c) ``local``:       the local executor's warm worker on this machine

Each mode gets a real redis-server (a free loopback port), the ``ideal`` device,
and an agent running in this process. One warm-up task per mode is not counted
(it starts the local worker or the pilot allocation; per-task Slurm jobs have
nothing to warm). Then ``--tasks`` small tasks (a 2-qubit Bell circuit, 100
shots) run ONE AT A TIME: the number is per-task latency, not throughput.

End-to-end is measured from the control plane's own task history: the
``queued`` event's timestamp to the ``completed`` one. The simulator's own time
(result ``timings.simulate``) is shown apart, and overhead = end-to-end minus
simulate. Needs Slurm up (``.ci/slurm-up.sh``) and redis-server on PATH.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

from jupyter_vqpu.core.lifecycle import TaskState  # noqa: E402

#: The states a task passes through on its way to a result, in order (the stages between them).
PATH = [TaskState.QUEUED, TaskState.CLAIMED, TaskState.SCHEDULED, TaskState.RUNNING, TaskState.COMPLETED]


def make_executor(mode: str, work: Path, slurm_poll: float, spool_poll: float, inotify: bool = True):
    if mode == "local":
        from jupyter_vqpu_agent.executors.local import LocalExecutor

        return LocalExecutor(slots=1, warm=True, log_dir=work)
    common = dict(pythonpath=str(C.REPO), python=sys.executable, time_limit="00:05:00")
    if mode == "sbatch":
        from jupyter_vqpu_agent.executors.slurm import SlurmExecutor
        from jupyter_vqpu_agent.executors.slurm_config import SlurmConfig

        return SlurmExecutor(SlurmConfig(poll_interval_s=slurm_poll, **common))
    from jupyter_vqpu_agent.executors.pilot import SlurmPilotExecutor
    from jupyter_vqpu_agent.executors.slurm_config import PilotConfig

    return SlurmPilotExecutor(PilotConfig(poll_interval_s=1.0, pilot_time_limit="00:30:00", idle_timeout_s=120,
                                          release_on_shutdown=True, spool_dir=str(work / "spool"),
                                          spool_poll_s=spool_poll, spool_inotify=inotify, **common))


def run_mode(mode: str, url: str, tasks: int, work: Path, slurm_poll: float, spool_poll: float,
             inotify: bool = True) -> dict:
    from jupyter_vqpu.core.connection import connect
    from jupyter_vqpu.core.control import ControlPlane
    from jupyter_vqpu_agent.agent import Agent, AgentConfig

    cp = ControlPlane(connect(url))
    cp.redis.flushall()
    cp.seed(["ideal"])
    agent = Agent(cp, make_executor(mode, work, slurm_poll, spool_poll, inotify),
                  AgentConfig(devices=["ideal"], work_root=work / "bundles", capacity=1, block_ms=500,
                              agent_id=f"bench-{mode}"))
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    rows = []
    try:
        for i in range(tasks + 1):
            tid = cp.submit(owner="bench", device="ideal", circuit=C.BELL, shots=100, seed=i,
                            name=f"bench-{mode}-{i}")["task_id"]
            view = cp.wait(tid, timeout=300)
            if view["state"] != "completed":
                raise RuntimeError(f"{mode}: task {tid} ended {view['state']}: {view.get('error')}")
            if i == 0:
                continue  # warm-up
            hist = {e["event"]: e for e in cp.history(tid)}
            e2e = (hist["completed"]["ts"] - hist["queued"]["ts"]) / 1000.0
            sim = float((cp.result(tid).get("timings") or {}).get("simulate") or 0.0)
            ts = {k.value: hist[k]["ts"] for k in PATH if k in hist}
            rows.append({"e2e": e2e, "simulate": sim, "overhead": e2e - sim, "job_id": view.get("job_id"),
                         "stages": {f"{a}->{b}": ts[b] - ts[a] for a, b in
                                    ((x.value, y.value) for x, y in zip(PATH, PATH[1:])) if a in ts and b in ts}})
    finally:
        agent.stop()
        thread.join(60)
    return {"rows": rows, "job_ids": sorted({str(r["job_id"]) for r in rows})}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=20, help="measured tasks per mode (default 20)")
    p.add_argument("--quick", action="store_true", help="5 tasks per mode")
    p.add_argument("--json", action="store_true", help="last line: one JSON object with the figures")
    p.add_argument("--modes", default="local,pilot,sbatch")
    p.add_argument("--slurm-poll", type=float, default=0.2, help="per-task Slurm executor's poll interval (s)")
    p.add_argument("--spool-poll", type=float, default=None, help="pilot's spool poll interval (s); default: PilotConfig's")
    p.add_argument("--no-inotify", action="store_true",
                   help="pilot: poll only, as between two hosts on NFS/Lustre (inotify sees same-host changes only)")
    args = p.parse_args(argv)
    if args.spool_poll is None:
        from jupyter_vqpu_agent.executors.slurm_config import PilotConfig

        args.spool_poll = PilotConfig.spool_poll_s
    n = 5 if args.quick else args.tasks
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    out: dict[str, dict] = {}
    with C.Bench("slurm-overhead") as b:
        for mode in modes:
            t0 = time.monotonic()
            out[mode] = run_mode(mode, b.url, n, b.tmp / mode, args.slurm_poll, args.spool_poll,
                                 not args.no_inotify)
            print(f"# {mode}: {n} tasks in {time.monotonic() - t0:.1f} s; Slurm job ids: "
                  f"{', '.join(out[mode]['job_ids'][:3])}{' ...' if len(out[mode]['job_ids']) > 3 else ''}",
                  file=sys.stderr)
    names = {"local": "local executor (warm worker)", "pilot": "slurm-pilot (one allocation)",
             "sbatch": "slurm (one sbatch per task)"}
    print(f"per-task latency over {n} sequential tasks (Bell circuit, ideal, 100 shots), milliseconds")
    print(f"{'mode':32s} {'e2e p50':>9s} {'e2e p95':>9s} {'sim p50':>9s} {'ovh p50':>9s} {'ovh p95':>9s} {'jobs':>5s}")
    figures: dict[str, float] = {}
    for mode in modes:
        rows = out[mode]["rows"]
        e2e = [r["e2e"] * 1000 for r in rows]
        sim = [r["simulate"] * 1000 for r in rows]
        ovh = [r["overhead"] * 1000 for r in rows]
        print(f"{names.get(mode, mode):32s} {statistics.median(e2e):9.1f} {C.percentile(e2e, 95):9.1f} "
              f"{statistics.median(sim):9.2f} {statistics.median(ovh):9.1f} {C.percentile(ovh, 95):9.1f} "
              f"{len(out[mode]['job_ids']):5d}")
        figures[f"{mode}_p50_ms"] = round(statistics.median(ovh), 2)
        figures[f"{mode}_p95_ms"] = round(C.percentile(ovh, 95), 2)
        figures[f"{mode}_e2e_p50_ms"] = round(statistics.median(e2e), 2)
        figures[f"{mode}_simulate_p50_ms"] = round(statistics.median(sim), 3)
    print("median milliseconds between the task's history events:")
    for mode in modes:
        rows = out[mode]["rows"]
        keys = list(rows[0]["stages"]) if rows else []
        print(f"  {mode:8s} " + "  ".join(f"{k} {statistics.median(r['stages'].get(k, 0) for r in rows):.0f}"
                                          for k in keys))
    if "local_p50_ms" in figures and "pilot_p50_ms" in figures:
        ratio = figures["pilot_p50_ms"] / figures["local_p50_ms"] if figures["local_p50_ms"] > 0 else float("inf")
        figures["pilot_over_local"] = round(ratio, 2)
        print(f"pilot overhead / local overhead (p50): {ratio:.2f}x -> "
              f"{'within' if ratio <= 2 else 'NOT within'} the 2x goal")
    if args.json:
        print(json.dumps({"tasks": n, **figures}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
