"""Smoke test of the benchmarks: each runs at a tiny size as a subprocess and ends with its JSON line.

Not a timing test: no assertion is made on any figure, only that the benchmark
exits 0, writes its plot and prints the documented keys (see docs/performance.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, ensure_slurm, need_binary, stop_slurm

pytestmark = [pytest.mark.redis, pytest.mark.slow]

CASES = {
    "overhead": (["--smoke"], {"overhead_p50_ms", "overhead_p95_ms", "overhead_p99_ms", "e2e_p50_ms",
                               "simulate_p50_ms", "phases_p50_ms", "per_circuit"}),
    "throughput": (["--smoke"], {"submit_per_s", "submit_script_per_s", "claim_per_s", "claim_p99_ms", "rows"}),
    "scaling": (["--smoke"], {"overhead_flat_ratio", "simulate_max_s", "service_flat_ratio", "rows"}),
    "sweep": (["--smoke"], {"rows", "identical_counts", "overhead_per_circuit_ms_max"}),
    "cost_model": (["--smoke"], {"fitted", "current", "log_rms_current", "log_rms_fitted", "circuits",
                                 "picks_fastest_current", "picks_fastest_fitted", "rows"}),
    "class_load": (["--smoke"], {"submit_p50_ms", "submit_p99_ms", "accepted", "rejected_by_quota", "leaks", "ok"}),
    "noise_model": (["--smoke"], {"speedup_fresh_min", "speedup_warm_min", "equality_p_min", "tvd_over_floor_max",
                                  "noise_speedup_min", "tvd_max", "tvd_floor_max", "within_sampling_noise", "rows"}),
}


def run_benchmark(name: str, extra: list[str], tmp_path: Path, timeout: float = 120, plots: bool = True) -> dict:
    args = [sys.executable, str(REPO / "benchmarks" / f"{name}.py"), *extra, "--json"]
    plot = tmp_path / f"{name}.png"
    args += ["--plot", str(plot)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VQPU_")}
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, f"{name} printed nothing"
    summary = json.loads(lines[-1])
    assert not plots or (plot.is_file() and plot.stat().st_size > 1000), f"{name} wrote no plot"
    return summary


@pytest.mark.parametrize("name", sorted(CASES))
def test_benchmark_runs_and_reports_its_documented_keys(name, tmp_path):
    need_binary("redis-server", "the benchmarks start their own")
    extra, keys = CASES[name]
    summary = run_benchmark(name, extra, tmp_path)
    missing = keys - set(summary)
    assert not missing, f"{name}: missing keys {sorted(missing)} in {sorted(summary)}"


def test_fidelity_benchmark_runs_mqt_bench_circuits_through_the_service(tmp_path):
    """MQT Bench (a test dependency) generates the circuits; one task runs them; each row is compared."""
    need_binary("redis-server", "the benchmarks start their own")
    summary = run_benchmark("fidelity", ["--smoke"], tmp_path, timeout=300, plots=False)
    assert summary["circuits"] >= 1 and {"no_worse", "tvd_mean_vqpu", "tvd_mean_qiskit", "same_layout"} <= set(summary)
    assert all(row["circuit"].split("_")[0] in {"ae", "bv", "dj", "ghz"} for row in summary["rows"])


@pytest.mark.slurm
def test_slurm_overhead_benchmark_runs_every_mode():
    """Per-task sbatch, pilot and local, one task each on the real single-node Slurm (table only, no plot)."""
    need_binary("redis-server", "the benchmarks start their own")
    started = ensure_slurm()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VQPU_")}
        proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "slurm_overhead.py"), "--tasks", "1",
                               "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    finally:
        if started:
            stop_slurm()
    assert proc.returncode == 0, f"exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["tasks"] == 1
    for mode in ("local", "pilot", "sbatch"):
        assert {f"{mode}_p50_ms", f"{mode}_p95_ms", f"{mode}_e2e_p50_ms", f"{mode}_simulate_p50_ms"} <= set(summary)


def test_cost_model_refits_saved_timings_without_timing_again(tmp_path):
    """--refit reads an earlier --json run's rows: the same timings, so the fit starts from what they say."""
    first = run_benchmark("cost_model", ["--smoke"], tmp_path)
    saved = tmp_path / "timings.json"
    saved.write_text(json.dumps(first) + "\n")
    again = run_benchmark("cost_model", ["--refit", str(saved)], tmp_path)
    assert [r["seconds"] for r in again["rows"]] == [r["seconds"] for r in first["rows"]]
    assert again["circuits"] == first["circuits"] and again["current"] == first["current"]
