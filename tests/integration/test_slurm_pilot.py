"""Pilot mode (``slurm-pilot``) against a real single-node Slurm (.ci/slurm-up.sh).

Most tests run ``tests.integration.fake_runner`` in the pilot's warm children
(task.json options steer it: sleep, exit, ...); one runs the real runner on the
``ideal`` device through a real agent and Redis. The test cluster may have only
two CPUs, so every test gives its allocations back (drain, then scancel) before
the next one starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from jupyter_vqpu_agent import bundle
from jupyter_vqpu_agent import spool as spool
from jupyter_vqpu_agent.executors.pilot import REASON_PENDING, REASON_QUEUED, SlurmPilotExecutor
from jupyter_vqpu_agent.executors.slurm_config import PilotConfig
from tests.conftest import ensure_slurm, stop_slurm
from tests.slurm_support import REPO, RUNNER, Recorder, kinds, make_job, scontrol_state
from tests.support import wait_for

pytestmark = pytest.mark.slurm



class LostRecorder(Recorder):
    """A Recorder whose reporter has the ``lost`` method (the agent's hand-back-to-the-queue)."""

    def lost(self, job, message):
        self._add("lost", job.task_id, message)


@pytest.fixture(scope="module")
def pilot_cluster():
    """A Slurm that answers: the running one, or one .ci/slurm-up.sh starts (and .ci/slurm-down.sh stops).
    Unlike test_slurm_executor's fixture it keeps no job of its own on the (small) node."""
    started = ensure_slurm()
    yield
    if started:
        stop_slurm()


def pilot_config(**kw) -> PilotConfig:
    base = dict(runner_module=RUNNER, poll_interval_s=0.2, pilot_time_limit="00:05:00", renew_margin_s=30,
                idle_timeout_s=120, pythonpath=str(REPO), python=sys.executable, heartbeat_stale_s=10)
    base.update(kw)
    return PilotConfig(**base)


@pytest.fixture
def pilots(pilot_cluster, tmp_path):
    made: list[SlurmPilotExecutor] = []

    def make(recorder=None, **kw) -> tuple[SlurmPilotExecutor, Recorder]:
        ex = SlurmPilotExecutor(pilot_config(spool_dir=str(tmp_path / f"spool{len(made)}"), **kw))
        rec = recorder or Recorder()
        ex.start(rec)
        made.append(ex)
        return ex, rec

    yield make
    for ex in made:
        ids = [p.name for p in ex.spool_root.iterdir()] if ex.spool_root.exists() else []
        ex.shutdown()
        for d in ids:  # give every allocation back, whatever state the test left it in
            jid = (ex.spool_root / d / spool.JOB_ID_FILE)
            if jid.exists():
                subprocess.run(["scancel", jid.read_text().strip()], capture_output=True, timeout=30)


def job_ids(rec: Recorder, job) -> set[str]:
    return {e[2]["job_id"] for e in rec.of(job) if e[0] in ("scheduled", "running")}


def pilot_state(ex: SlurmPilotExecutor, job_id: str) -> dict:
    for d in ex.spool_root.iterdir():
        f = d / spool.JOB_ID_FILE
        if f.exists() and f.read_text().strip() == job_id:
            try:
                return json.loads((d / spool.STATE_FILE).read_text())
            except (OSError, ValueError):
                return {}
    return {}


def test_five_tasks_run_through_one_allocation(pilots, tmp_path, monkeypatch):
    monkeypatch.setenv("VQPU_REDIS_URL", "redis://:secret@controlplane:6379/0")
    ex, rec = pilots()
    jobs = [make_job(tmp_path / "b", name=f"t{i}") for i in range(5)]
    for j in jobs:
        ex.submit(j)
    results = [rec.wait_for(j, "finished", timeout=90)[2] for j in jobs]
    ids = set().union(*(job_ids(rec, j) for j in jobs))
    assert len(ids) == 1, ids  # exactly one Slurm job for five tasks
    (jid,) = ids
    assert ex.calls["sbatch"] == 1
    for j, r in zip(jobs, results):
        assert kinds(rec.of(j)) == ["scheduled", "running", "finished"], rec.of(j)
        assert r["ok"] and r["task_id"] == j.task_id and r["counts"] == {"00": 50, "11": 50}
        assert r["env"]["SLURM_JOB_ID"] == jid
        assert r["env"]["VQPU_REDIS_URL"] == ""  # hermetic: the allocation cannot find the control plane
        first = rec.of(j)[0][2]
        assert first["executor"] == "slurm-pilot" and first["reason"] in (REASON_PENDING, REASON_QUEUED)
        assert [e[2]["node"] for e in rec.of(j) if e[0] == "running"] == ["localhost"]
    assert scontrol_state(jid) == "RUNNING"  # still there for the next task
    later = make_job(tmp_path / "b", name="later")
    ex.submit(later)
    assert rec.of(later)[0][2]["reason"] == REASON_QUEUED
    rec.wait_for(later, "finished", timeout=30)
    assert job_ids(rec, later) == {jid}
    assert ex.tracked() == []
    assert list((ex.spool_root / next(iter(os.listdir(ex.spool_root))) / "done").iterdir()) == []


def test_failures_and_timeout_inside_the_pilot(pilots, tmp_path):
    ex, rec = pilots()
    bad = make_job(tmp_path / "b", name="bad", fail="invalid_circuit")
    crash = make_job(tmp_path / "b", name="crash", exit=3, stderr="boom: the runner exploded")
    slow = make_job(tmp_path / "b", name="slow", timeout_s=2, sleep=60)
    after = make_job(tmp_path / "b", name="after")
    for j in (bad, crash, slow, after):
        ex.submit(j)
    _, _, reason, message = rec.wait_for(bad, "failed", timeout=90)
    assert reason == "invalid_circuit" and "fake failure" in message
    _, _, reason, message = rec.wait_for(crash, "failed", timeout=30)
    assert reason == "runner_error" and "without writing a result" in message
    _, _, reason, message = rec.wait_for(slow, "failed", timeout=30)
    assert reason == "timeout" and "2 s" in message
    rec.wait_for(after, "finished", timeout=60)  # a fresh warm child replaced the killed one
    assert len(set().union(*(job_ids(rec, j) for j in (bad, crash, slow, after)))) == 1


def test_cancel_queued_and_running_tasks(pilots, tmp_path):
    ex, rec = pilots()
    long = make_job(tmp_path / "b", name="long", sleep=120)
    queued = make_job(tmp_path / "b", name="queued")
    ex.submit(long)
    ex.submit(queued)
    rec.wait_for(long, "running", timeout=90)
    assert kinds(rec.of(queued)) == ["scheduled"]
    ex.cancel(queued)
    assert queued.task_id not in ex.tracked()
    ex.cancel(long)
    wait_for(lambda: ex.tracked() == [], 30, "the pilot to stop the running task")
    time.sleep(0.5)
    assert kinds(rec.of(long)) == ["scheduled", "running"]  # nothing after the cancel
    assert kinds(rec.of(queued)) == ["scheduled"]
    assert bundle.read_result(long.bundle_dir) is None and bundle.read_result(queued.bundle_dir) is None
    ex.cancel(long)  # idempotent
    again = make_job(tmp_path / "b", name="again")
    ex.submit(again)
    rec.wait_for(again, "finished", timeout=60)
    assert job_ids(rec, again) == job_ids(rec, long)  # the same allocation, with a fresh child
    assert bundle.read_result(queued.bundle_dir) is None  # the pilot never saw it


def test_a_pilot_killed_mid_task_reports_the_task_lost(pilots, tmp_path):
    ex, rec = pilots(recorder=LostRecorder())
    job = make_job(tmp_path / "b", name="doomed", sleep=120)
    ex.submit(job)
    rec.wait_for(job, "running", timeout=90)
    (jid,) = job_ids(rec, job)
    subprocess.run(["scancel", jid], check=True, timeout=30)
    _, _, message = rec.wait_for(job, "lost", timeout=30)
    assert jid in message and "while the task ran" in message
    assert ex.tracked() == []
    # A reporter without lost() gets failed(job, "lost", ...).
    ex2, rec2 = pilots()
    job2 = make_job(tmp_path / "b", name="doomed2", sleep=120)
    ex2.submit(job2)
    rec2.wait_for(job2, "running", timeout=90)
    (jid2,) = job_ids(rec2, job2)
    subprocess.run(["scancel", jid2], check=True, timeout=30)
    assert rec2.wait_for(job2, "failed", timeout=30)[2] == "lost"


def test_renewal_starts_a_successor_and_the_work_goes_on(pilots, tmp_path):
    # A one-minute allocation (Slurm's minimum) renewed 50 s before its end: after ~10 s.
    ex, rec = pilots(pilot_time_limit="1", renew_margin_s=50, idle_timeout_s=60)
    done: list = []
    deadline = time.monotonic() + 100
    first_id = None
    while time.monotonic() < deadline:
        j = make_job(tmp_path / "b", name=f"r{len(done)}", sleep=0.5)
        ex.submit(j)
        rec.wait_for(j, "finished", timeout=60)
        done.append(j)
        ids = job_ids(rec, j)
        first_id = first_id or next(iter(ids))
        if ids != {first_id} and len(done) >= 3:
            break
    used = [job_ids(rec, j) for j in done]
    assert any(ids != {first_id} for ids in used), used
    successor = next(iter(used[-1]))
    assert successor != first_id
    # The old pilot drained and exited by itself, well before its time limit.
    wait_for(lambda: scontrol_state(first_id) == "COMPLETED", 40, "the old pilot to finish")
    assert pilot_state(ex, first_id)["state"] == "closed"
    j = make_job(tmp_path / "b", name="after-renewal")
    ex.submit(j)
    rec.wait_for(j, "finished", timeout=60)
    assert job_ids(rec, j) == {successor}


def test_an_idle_pilot_gives_its_allocation_back(pilots, tmp_path):
    ex, rec = pilots(idle_timeout_s=2)
    j = make_job(tmp_path / "b", name="once")
    ex.submit(j)
    rec.wait_for(j, "finished", timeout=90)
    (jid,) = job_ids(rec, j)
    wait_for(lambda: scontrol_state(jid) == "COMPLETED", 30, "the idle pilot to exit")
    assert pilot_state(ex, jid)["state"] == "closed" and "idle" in pilot_state(ex, jid)["reason"]
    wait_for(lambda: not any(p["job_id"] == jid for p in ex.pilots()), 10, "the executor to forget it")
    again = make_job(tmp_path / "b", name="again")
    ex.submit(again)
    assert rec.of(again)[0][2]["reason"] == REASON_PENDING
    rec.wait_for(again, "finished", timeout=90)
    (jid2,) = job_ids(rec, again)
    assert jid2 != jid


@pytest.mark.redis
def test_real_runner_through_the_agent(pilots, seeded, redis_url, tmp_path):
    from jupyter_vqpu.core.client import Client
    from tests.agents import Running
    from tests.conftest import BELL_QASM2

    ex = SlurmPilotExecutor(pilot_config(runner_module="jupyter_vqpu_agent.runner", spool_dir=str(tmp_path / "spool"),
                                         release_on_shutdown=True))
    running = Running(redis_url, ex, tmp_path / "work", devices=("ideal",), capacity=2)
    try:
        client = Client(control=seeded)
        tasks = [client.submit(BELL_QASM2, device="ideal", shots=100, seed=7) for _ in range(3)]
        records = [t.result(timeout=420) for t in tasks]  # a pilot allocation, then Qiskit imported in it, on a loaded box
    finally:
        running.stop()
    assert all(r["state"] == "completed" for r in records)
    assert {r["executor"] for r in records} == {"slurm-pilot"}
    assert len({r["job_id"] for r in records}) == 1
    for r in records:
        assert sum(r["counts"].values()) == 100 and set(r["counts"]) <= {"00", "11"}
    jid = records[0]["job_id"]
    wait_for(lambda: scontrol_state(jid) == "COMPLETED", 30, "release_on_shutdown to drain the pilot")
