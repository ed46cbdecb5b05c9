"""A stand-in for ``jupyter_vqpu_agent.runner`` in the Slurm executor tests (no Qiskit needed).

Run as ``python -m tests.integration.fake_runner BUNDLE_DIR``. Like the real
runner it reads only its bundle and writes only result.json; what it does is
steered by ``options`` in task.json:

    {"sleep": S}        sleep S seconds first
    {"stderr": TEXT}    print TEXT to stderr
    {"exit": N}         exit with status N without writing a result
    {"no_result": true} exit 0 without writing a result
    {"fail": REASON}    write a failed result (ok: false) with that reason
    {"raw_result": TEXT} write TEXT as result.json, whatever it is (a hostile or broken job)
    {"counts": VALUE}   write an ok result with these counts instead of the fixed ones
otherwise it writes an ok result with fixed counts.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

from jupyter_vqpu_agent import bundle


def main(argv: list[str]) -> int:
    bundle_dir = Path(argv[0])
    spec = bundle.read_spec(bundle_dir)
    opts = spec.options or {}
    print(f"fake runner for {spec.task_id} on {socket.gethostname()} pid {os.getpid()}", flush=True)
    if opts.get("stderr"):
        print(opts["stderr"], file=sys.stderr, flush=True)
    if opts.get("sleep"):
        time.sleep(float(opts["sleep"]))
    if "exit" in opts:
        print(f"fake runner: exiting with status {opts['exit']}", file=sys.stderr, flush=True)
        return int(opts["exit"])
    if opts.get("no_result"):
        print("fake runner: leaving without a result", file=sys.stderr, flush=True)
        return 0
    if opts.get("fail"):
        bundle.write_result(bundle_dir, {"ok": False, "task_id": spec.task_id, "reason": opts["fail"],
                                         "error": f"fake failure {opts['fail']}"})
        return 0
    if "raw_result" in opts:
        bundle.write_atomic(bundle_dir / bundle.RESULT_FILE, str(opts["raw_result"]).encode())
        return 0
    bundle.write_result(bundle_dir, {
        "ok": True, "task_id": spec.task_id, "attempt": spec.attempt, "snapshot_id": spec.snapshot_id,
        "shots": spec.shots,
        "counts": opts["counts"] if "counts" in opts else {"00": spec.shots // 2, "11": spec.shots - spec.shots // 2},
        "env": {k: os.environ.get(k, "") for k in ("VQPU_TASK_ID", "VQPU_TASK_NAME", "VQPU_REDIS_URL",
                                                   "http_proxy", "SLURM_JOB_ID")},
    })
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
