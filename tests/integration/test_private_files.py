"""Bundles, spools, logs and results are private (0700 directories, 0600 files) whatever the umask.

On a shared scratch file system every cluster user can list the work root; a
student's circuit and counts must not be readable by the others. Each test runs
REAL tasks (the real runner) under a permissive process umask (022, the usual
default, inherited by every process the agent starts) and then walks the whole
work root.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from jupyter_vqpu.core.client import Client
from jupyter_vqpu_agent import private
from jupyter_vqpu_agent.executors.local import LocalExecutor
from tests.agents import Running
from tests.conftest import BELL_QASM2, REPO, ensure_slurm, stop_slurm

pytestmark = pytest.mark.redis


@pytest.fixture
def permissive_umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def modes_under(root: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Every directory's and file's permission bits under ``root`` (root included), by relative path."""
    dirs = {".": stat.S_IMODE(root.lstat().st_mode)}
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            p = Path(dirpath, name)
            dirs[str(p.relative_to(root))] = stat.S_IMODE(p.lstat().st_mode)
        for name in filenames:
            p = Path(dirpath, name)
            files[str(p.relative_to(root))] = stat.S_IMODE(p.lstat().st_mode)
    return dirs, files


def assert_private(root: Path, expect: set[str]) -> dict[str, int]:
    dirs, files = modes_under(root)
    names = {Path(f).name for f in files}
    assert expect <= names, f"expected {sorted(expect - names)} under {root}; found {sorted(files)}"
    loose_dirs = {d: oct(m) for d, m in dirs.items() if m != 0o700}
    loose_files = {f: oct(m) for f, m in files.items() if m != 0o600}
    assert not loose_dirs and not loose_files, (loose_dirs, loose_files)
    return files


def run_tasks(redis_url: str, cp, executor, work: Path, n: int = 2, timeout: float = 240) -> list[dict]:
    running = Running(redis_url, executor, work, devices=("ideal",))
    try:
        client = Client(control=cp, owner="student")
        tasks = [client.submit(BELL_QASM2, device="ideal", shots=20, seed=i) for i in range(n)]
        return [t.result(timeout=timeout) for t in tasks]
    finally:
        running.stop()


@pytest.mark.parametrize("warm", [True, False], ids=["warm-worker", "fresh-runner"])
def test_local_executor_leaves_only_private_files(seeded, redis_url, tmp_path, permissive_umask, warm):
    work = tmp_path / "work"  # created by the agent
    views = run_tasks(redis_url, seeded, LocalExecutor(slots=1, warm=warm, log_dir=work / "logs"), work)
    assert [v["state"] for v in views] == ["completed", "completed"]
    expect = {"task.json", "snapshot.json", "circuit.qasm", "result.json"}
    expect |= {"worker-0.log"} if warm else {"runner.out", "runner.err"}
    assert_private(work, expect)


def test_private_helpers_correct_an_existing_loose_file_and_create_parents_0700(tmp_path, permissive_umask):
    loose = tmp_path / "old.log"
    loose.write_text("x")
    loose.chmod(0o644)
    with private.open_private(loose, append=True) as fh:
        fh.write(b"y")
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600 and loose.read_text() == "xy"
    private.make_dirs(tmp_path / "a" / "b" / "c")
    private.make_dirs(tmp_path / "a" / "b" / "c")  # idempotent
    assert [stat.S_IMODE((tmp_path / p).stat().st_mode) for p in ("a", "a/b", "a/b/c")] == [0o700] * 3


# ------------------------------------------------------------ real Slurm


@pytest.fixture(scope="module")
def slurm_up():
    started = ensure_slurm()
    yield
    if started:
        stop_slurm()


@pytest.mark.slurm
def test_slurm_jobs_leave_only_private_files(slurm_up, seeded, redis_url, tmp_path, permissive_umask):
    from jupyter_vqpu_agent.executors.slurm import SlurmExecutor
    from jupyter_vqpu_agent.executors.slurm_config import SlurmConfig

    work = tmp_path / "work"
    executor = SlurmExecutor(SlurmConfig(poll_interval_s=0.2, time_limit="00:05:00", pythonpath=str(REPO),
                                         python=sys.executable))
    views = run_tasks(redis_url, seeded, executor, work)
    assert [v["state"] for v in views] == ["completed", "completed"] and views[0]["executor"] == "slurm"
    # job.sbatch and slurm_job_id are ours; runner.out/.err are created by slurmstepd with the job's umask
    assert_private(work, {"job.sbatch", "slurm_job_id", "runner.out", "runner.err", "result.json", "task.json"})


@pytest.mark.slurm
def test_a_pilot_and_its_spool_leave_only_private_files(slurm_up, seeded, redis_url, tmp_path, permissive_umask):
    from jupyter_vqpu_agent.executors.pilot import SlurmPilotExecutor
    from jupyter_vqpu_agent.executors.slurm_config import PilotConfig

    work = tmp_path / "work"
    executor = SlurmPilotExecutor(PilotConfig(
        poll_interval_s=0.2, pilot_time_limit="00:05:00", renew_margin_s=30, idle_timeout_s=60,
        pythonpath=str(REPO), python=sys.executable, release_on_shutdown=True), work_root=work)
    views = run_tasks(redis_url, seeded, executor, work, timeout=300)
    assert [v["state"] for v in views] == ["completed", "completed"]
    files = assert_private(work, {"pilot.sbatch", "pilot.out", "pilot.err", "state.json", "pilot.alive",
                                  "child-0.log", "result.json", "task.json"})
    assert any(f.startswith("pilot-spool/") for f in files)
