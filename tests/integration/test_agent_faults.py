"""Agents against faults, on a real redis-server (and real Slurm where named): Redis away longer than a
lease, Redis out of memory, SCRIPT FLUSH under the least-privilege ACL, a broken work root beside a
healthy agent, dead threads, garbage result files. Nothing may end stuck, and nothing fails the queue
for a fault of the agent's own."""

# ruff: noqa: F811  (fixtures imported from other test modules are passed by name)
from __future__ import annotations

import json
import logging
import sys
import threading
import time

import pytest

from jupyter_vqpu.core.client import Client
from jupyter_vqpu.core.connection import connect
from jupyter_vqpu.core.control import ControlPlane
from jupyter_vqpu_agent.executors.base import Executor, Job
from jupyter_vqpu_agent.executors.local import LocalExecutor
from tests.agents import EchoExecutor, Running, wait_for
from tests.conftest import GHZ3
from tests.support import RedisServer

pytestmark = pytest.mark.redis

FAKE_RUNNER = "tests.integration.fake_runner"


class ReleaseExecutor(Executor):
    """Holds jobs named 'hold' (others complete at once) until the test releases them; the
    report then comes from the executor's own thread, as a real executor's does."""

    name = "release"

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.held = threading.Event()
        self.threads: list[threading.Thread] = []
        self.cancelled: list[str] = []

    def submit(self, job: Job) -> None:
        self.reporter.scheduled(job, {"executor": self.name, "job_id": f"r-{job.task_id}"})
        self.reporter.running(job, {})
        if job.name == "hold":
            self.jobs[job.task_id] = job
            self.held.set()
        else:
            self._finish(job)

    def _finish(self, job: Job) -> None:
        from jupyter_vqpu_agent import bundle

        spec = bundle.read_spec(job.bundle_dir)
        self.reporter.finished(job, {"ok": True, "counts": {"101": spec.shots}, "shots": spec.shots,
                                     "snapshot_id": spec.snapshot_id, "task_id": job.task_id})

    def release(self, task_id: str) -> threading.Thread:
        t = threading.Thread(target=self._finish, args=(self.jobs[task_id],), name="release-report")
        t.start()
        self.threads.append(t)
        return t

    def cancel(self, job: Job) -> None:
        self.cancelled.append(job.task_id)


def _events(cp: ControlPlane, device: str, event: str) -> list[dict]:
    return [json.loads(f["data"]) for _, f in cp.redis.xrange(cp.keys(device).events) if f.get("event") == event]


# --------------------------------------------- Redis away longer than a lease


def test_redis_down_longer_than_a_lease_lets_the_task_go_and_reports_it_later(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    cp = ControlPlane(connect(server.url))
    cp.seed(["ideal"])
    ex = ReleaseExecutor()
    running = Running(server.url, ex, tmp_path / "work", lease_s=2.0, renew_s=0.3, presence_ttl_s=3.0,
                      reap_every_s=0.5, capacity=1, drain_timeout_s=1)
    agent = running.agent
    try:
        client = Client(control=cp)
        held = client.submit(GHZ3, device="ideal", shots=10, name="hold")
        assert ex.held.wait(60)
        wait_for(lambda: cp.task(held.id)["state"] == "running", 30, "running")
        server.stop()  # SIGTERM: Redis writes its AOF and goes away
        ex.release(held.id)  # the job ends while the control plane is away
        # Within its lease the report cannot land: the agent lets the task go and frees its capacity.
        wait_for(lambda: agent.held == {} and held.id in agent.undelivered, 30, "the agent to let the task go")
        assert agent.stats["let_go"] == 1
        server.start()  # the same port, the same AOF
        cp = ControlPlane(connect(server.url))
        view = cp.wait(held.id, timeout=60)
        assert view["state"] == "completed" and cp.result(held.id)["counts"] == {"101": 10}
        assert view["attempts"] == 1  # delivered late on its still-current token, not rerun
        # the agent counts a delivery just after forgetting the report: wait for both
        wait_for(lambda: not agent.undelivered and agent.stats["delivered_late"], 30, "the late report to be delivered")
        assert agent.stats["delivered_late"] == 1
        # and the agent takes new work
        again = Client(control=cp).submit(GHZ3, device="ideal", shots=5)
        assert cp.wait(again.id, timeout=60)["state"] == "completed"
        assert cp.devices(["ideal"])[0]["status"] == "online"
    finally:
        running.stop()
        server.stop()


# --------------------------------------------- operator faults: OOM, SCRIPT FLUSH


def test_redis_out_of_memory_is_ridden_out_by_an_executor_thread(seeded, redis_url, tmp_path, caplog):
    cp = seeded
    ex = ReleaseExecutor()
    running = Running(redis_url, ex, tmp_path, capacity=1, lease_s=60, drain_timeout_s=1)
    admin = cp.redis
    try:
        task = Client(control=cp).submit(GHZ3, device="ideal", shots=10, name="hold")
        assert ex.held.wait(60)
        wait_for(lambda: cp.task(task.id)["state"] == "running", 30, "running")
        with caplog.at_level(logging.WARNING, logger="vqpu.agent"):
            admin.config_set("maxmemory-policy", "noeviction")
            admin.config_set("maxmemory", 1)  # everything that writes now gets OOM
            reporter = ex.release(task.id)
            wait_for(lambda: "out of memory" in caplog.text, 30, "the agent to report the OOM")
            assert reporter.is_alive()  # the executor's thread is retrying, not dead
            assert cp.task(task.id)["state"] == "running"
            admin.config_set("maxmemory", 0)
            view = cp.wait(task.id, timeout=60)
        reporter.join(30)
        assert view["state"] == "completed" and cp.result(task.id)["counts"] == {"101": 10}
        assert running.agent.held == {}
    finally:
        admin.config_set("maxmemory", 0)
        running.stop()


@pytest.mark.hub
def test_script_flush_under_the_least_privilege_acl_never_kills_a_report(seeded, agent_url, tmp_path, caplog):
    cp = seeded
    ex = ReleaseExecutor()
    running = Running(agent_url, ex, tmp_path, capacity=1, lease_s=60, drain_timeout_s=1)
    try:
        task = Client(control=cp).submit(GHZ3, device="ideal", shots=10, name="hold")
        assert ex.held.wait(60)
        wait_for(lambda: cp.task(task.id)["state"] == "running", 30, "running")
        with caplog.at_level(logging.WARNING, logger="vqpu.agent"):
            cp.redis.script_flush()
            reporter = ex.release(task.id)  # finish: NOSCRIPT, and the agent may not SCRIPT LOAD (NOPERM)
            wait_for(lambda: "reporting " + task.id in caplog.text and "NoPermissionError" in caplog.text, 30,
                     "the agent to hit NOPERM")
            assert reporter.is_alive() and cp.task(task.id)["state"] == "running"
            cp.scripts.load_all()  # the gateway's periodic check, or `vqpu device seed`
            view = cp.wait(task.id, timeout=60)
        reporter.join(30)
        assert view["state"] == "completed" and cp.result(task.id)["counts"] == {"101": 10}
    finally:
        running.stop()


# --------------------------------------------- the agent's own faults


def test_a_broken_work_root_hands_tasks_back_and_a_healthy_agent_completes_them(seeded, redis_url, tmp_path):
    cp = seeded
    broken_root = tmp_path / "not-a-directory"
    broken_root.write_text("a file where the work root should be")  # every mkdir under it fails
    broken = Running(redis_url, EchoExecutor(), broken_root, agent_id="broken", capacity=4,
                     fault_backoff_s=0.5, presence_ttl_s=3.0)
    healthy = None
    try:
        client = Client(control=cp, owner="class")
        ids = [client.submit(GHZ3, device="ideal", shots=10).id for _ in range(20)]
        wait_for(lambda: _events(cp, "ideal", "queued") and any(
            e.get("reason") == "agent_fault" for e in _events(cp, "ideal", "queued")), 60, "a hand-back")
        wait_for(lambda: "broken" in cp.devices(["ideal"])[0]["unhealthy_agents"], 30, "unhealthy presence")
        dev = cp.devices(["ideal"])[0]
        assert dev["status"] == "degraded" and "work root" in dev["unhealthy_agents"]["broken"]
        healthy = Running(redis_url, EchoExecutor(), tmp_path / "ok", agent_id="healthy", capacity=4)
        views = [cp.wait(tid, timeout=120) for tid in ids]
    finally:
        broken.stop()
        if healthy:
            healthy.stop()
    assert [v["state"] for v in views] == ["completed"] * 20
    assert {v["agent"] for v in views} == {"healthy"}
    handed = [e for e in _events(cp, "ideal", "queued") if e.get("reason") == "agent_fault"]
    assert handed and all(e["agent"] == "broken" for e in handed)
    assert len(handed) <= 4, "the broken agent backs off instead of draining the queue"
    assert cp.stats("ideal").failed == {}  # no task failed, staging_error or otherwise
    for e in handed:  # its fair-share place is kept: it went back to the head
        assert e["position"] <= 4
    first = next(v for v in views if v["task_id"] == handed[0]["task"])
    assert first["attempts"] == 2  # the claim counter moves on: no fencing token is reused
    claims = [e for e in cp.history(first["task_id"]) if e["event"] == "claimed"]
    assert [e["attempt"] for e in claims] == [1, 2] and len({e["token"] for e in claims}) == 2


class DiskFillsExecutor(Executor):
    """The disk fills under a running job: the job dies without a result (what a runner that cannot
    write its result.json looks like), and from then on the work root takes no file."""

    name = "disk-fills"

    def __init__(self, work_root) -> None:
        self.work_root = work_root

    def submit(self, job: Job) -> None:
        self.reporter.scheduled(job, {"executor": self.name, "job_id": f"d-{job.task_id}"})
        self.reporter.running(job, {})
        self.work_root.rename(self.work_root.with_name("moved-away"))
        self.work_root.write_text("full")  # the probe's file cannot be made any more
        self.reporter.failed(job, "runner_error", "the runner process died (exit 1): No space left on device")

    def cancel(self, job: Job) -> None:
        pass


def test_a_job_killed_by_a_disk_that_filled_under_it_is_handed_back_not_failed(seeded, redis_url, tmp_path):
    cp = seeded
    root = tmp_path / "root"
    filling = Running(redis_url, DiskFillsExecutor(root), root, agent_id="filling", fault_backoff_s=30)
    try:
        tid = Client(control=cp).submit(GHZ3, device="ideal", shots=10).id
        wait_for(lambda: any(e.get("reason") == "agent_fault" for e in _events(cp, "ideal", "queued")), 60,
                 "a hand-back")
    finally:
        filling.stop()
    healthy = Running(redis_url, EchoExecutor(), tmp_path / "ok", agent_id="healthy")
    try:
        view = cp.wait(tid, timeout=120)
    finally:
        healthy.stop()
    assert view["state"] == "completed" and view["agent"] == "healthy"
    assert cp.stats("ideal").failed == {}
    released = [e for e in cp.history(tid) if e["event"] == "queued" and e.get("reason") == "agent_fault"]
    assert len(released) == 1 and released[0]["agent"] == "filling"


def test_hand_backs_are_bounded_and_then_the_task_fails_with_a_clear_reason(seeded, redis_url, tmp_path):
    cp = seeded
    agents = []
    for i in range(3):  # each broken agent claims once, hands back, then probes its work root and backs off
        root = tmp_path / f"file-{i}"
        root.write_text("x")
        agents.append(Running(redis_url, EchoExecutor(), root, agent_id=f"broken-{i}", max_handbacks=2,
                              fault_backoff_s=30))
    try:
        tid = Client(control=cp).submit(GHZ3, device="ideal", shots=10).id
        view = cp.wait(tid, timeout=60)
    finally:
        for a in agents:
            a.stop()
    assert view["state"] == "failed" and view["reason"] == "agent_fault"
    assert "handed back 3 times" in view["error"] and "work root" in view["error"]
    claims = [e for e in cp.history(tid) if e["event"] == "claimed"]
    assert [e["attempt"] for e in claims] == [1, 2, 3] and len({e["token"] for e in claims}) == 3


def test_release_keeps_the_queue_place_and_recover_does_not_count_hand_backs(seeded):
    cp = seeded
    client = Client(control=cp)
    first, second = (client.submit(GHZ3, device="ideal", shots=10).id for _ in range(2))
    claim = cp.claim_next("ideal", "a1", 60_000, "")
    assert claim.task_id == first and claim.attempt == 1
    assert cp.release(first, "a1", "2-" + claim.token.split("-", 1)[1], "wrong token", max_handbacks=3)[0] == "fenced"
    assert cp.release(first, "a1", claim.token, "disk full", max_handbacks=3) == ("requeued", 1)
    view = cp.task(first)
    assert view["state"] == "queued" and view["queue_position"] == 1 and cp.task(second)["queue_position"] == 2
    assert cp.release(first, "a1", claim.token, "again", max_handbacks=3)[0] == "fenced"  # its token is void now
    claim = cp.claim_next("ideal", "a2", 1, "")
    assert claim.task_id == first and claim.attempt == 2  # a new token, never the released one
    wait_for(lambda: cp.expired("ideal") == [first], 10, "the 1 ms lease to run out")
    # max_attempts=2: two claims, but one was handed back: only one attempt is used, so it is requeued.
    assert cp.recover("ideal", max_attempts=2, by="test") == [(first, "requeued", 2)]
    queued = [e for e in cp.history(first) if e["event"] == "queued"]
    assert queued[1]["reason"] == "agent_fault" and queued[1]["error"] == "disk full"


# --------------------------------------------- health: presence tells the truth


def test_presence_carries_health_and_the_device_view_shows_it(seeded):
    cp = seeded
    cp.presence("ideal", "sick", 10_000, "the work root is full")
    dev = cp.devices(["ideal"])[0]
    assert dev["status"] == "degraded" and dev["unhealthy_agents"] == {"sick": "the work root is full"}
    cp.presence("ideal", "well", 10_000)
    assert cp.devices(["ideal"])[0]["status"] == "online"
    cp.presence("ideal", "sick", 10_000)  # recovered
    cp.presence("ideal", "sick", 10_000)
    assert cp.devices(["ideal"])[0]["unhealthy_agents"] == {}
    assert [e["agent"] for e in _events(cp, "ideal", "agent_unhealthy")] == ["sick"]
    assert [e["agent"] for e in _events(cp, "ideal", "agent_healthy")] == ["sick"]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # injected deaths
def test_a_dead_keep_alive_thread_is_restarted_and_reported(seeded, redis_url, tmp_path):
    cp = seeded
    ex = ReleaseExecutor()
    running = Running(redis_url, ex, tmp_path, capacity=1, lease_s=3, renew_s=0.3, presence_ttl_s=3,
                      drain_timeout_s=1)
    agent = running.agent
    try:
        task = Client(control=cp).submit(GHZ3, device="ideal", shots=10, name="hold")
        assert ex.held.wait(60)
        real = agent.cp.heartbeat
        calls = []

        def dies_once(*args, **kwargs):
            if not calls:
                calls.append(1)
                raise SystemExit("injected: the keep-alive thread dies")
            return real(*args, **kwargs)

        agent.cp.heartbeat = dies_once
        wait_for(lambda: any("keep-alive" in e.get("reason", "") for e in _events(cp, "ideal", "agent_unhealthy")),
                 30, "the unhealthy presence")
        lease = int(cp.redis.hget(cp.keys("ideal").task(task.id), "lease_until"))
        wait_for(lambda: int(cp.redis.hget(cp.keys("ideal").task(task.id), "lease_until")) > lease, 30,
                 "a renewal by the restarted thread")
        ex.release(task.id)
        assert cp.wait(task.id, timeout=60)["state"] == "completed"
    finally:
        running.stop()


class DiesOnce(LocalExecutor):
    """A local executor whose first slot thread dies mid-job (as from an error no handler expects)."""

    died = False

    def _run(self, slot, job):
        if not DiesOnce.died:
            DiesOnce.died = True
            raise SystemExit("injected: the slot thread dies")
        return super()._run(slot, job)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # injected deaths
def test_a_dead_local_slot_is_detected_restarted_and_its_task_requeued(seeded, redis_url, tmp_path):
    cp = seeded
    ex = DiesOnce(slots=1, warm=False, runner_module=FAKE_RUNNER, python=sys.executable, log_dir=tmp_path / "logs")
    running = Running(redis_url, ex, tmp_path / "work", capacity=1, renew_s=0.3, presence_ttl_s=3)
    try:
        task = Client(control=cp).submit(GHZ3, device="ideal", shots=10)
        view = cp.wait(task.id, timeout=120)
    finally:
        running.stop()
    assert view["state"] == "completed" and view["attempts"] == 2
    reasons = [e.get("reason", "") for e in _events(cp, "ideal", "agent_unhealthy")]
    assert any("slot 0 thread died" in r and "SystemExit" in r for r in reasons), reasons


# --------------------------------------------- bundle retention


def test_bundles_are_swept_after_their_retention_but_never_a_held_ones(seeded, redis_url, tmp_path):
    cp = seeded
    ex = ReleaseExecutor()
    work = tmp_path / "work"
    running = Running(redis_url, ex, work, capacity=2, bundle_retention_s=1.0, reap_every_s=0.2, renew_s=0.2,
                      drain_timeout_s=1)
    try:
        client = Client(control=cp)
        held = client.submit(GHZ3, device="ideal", shots=10, name="hold")
        assert ex.held.wait(60)
        done = client.submit(GHZ3, device="ideal", shots=10)
        assert seeded.wait(done.id, timeout=60)["state"] == "completed"
        assert (work / "ideal" / done.id).is_dir() and (work / "ideal" / held.id).is_dir()
        wait_for(lambda: not (work / "ideal" / done.id).exists(), 60, "the finished bundle to be swept")
        # the held task's bundle is as old, but it is still held
        # one bundle per claim, named by its token (attempt 1, then the nonce)
        assert len(list((work / "ideal" / held.id).glob("attempt-1-*/task.json"))) == 1
        assert time.time() - (work / "ideal" / held.id).stat().st_mtime > 1.0
        ex.release(held.id)
        assert cp.wait(held.id, timeout=60)["state"] == "completed"
        wait_for(lambda: not (work / "ideal" / held.id).exists(), 60, "its bundle to go once it is done")
        # the sweep is counted after its removals, so it may trail the directory's going by a moment
        wait_for(lambda: running.agent.stats["swept"] >= 2, 30, "the sweeps to be counted")
    finally:
        running.stop()


def test_retention_zero_keeps_bundles(seeded, redis_url, tmp_path):
    running = Running(redis_url, EchoExecutor(), tmp_path, bundle_retention_s=0, reap_every_s=0.1)
    try:
        done = Client(control=seeded).submit(GHZ3, device="ideal", shots=10)
        assert seeded.wait(done.id, timeout=60)["state"] == "completed"
        assert running.agent.sweep_bundles() == 0
    finally:
        running.stop()
    assert (tmp_path / "ideal" / done.id).is_dir()


def test_the_agent_command_has_the_knobs():
    from jupyter_vqpu.cli import build_parser

    args = build_parser().parse_args(["agent", "--bundle-retention", "0", "--max-handbacks", "5"])
    assert args.bundle_retention == 0 and args.max_handbacks == 5
    assert build_parser().parse_args(["agent"]).bundle_retention == 24 * 3600


# --------------------------------------------- garbage results


GARBAGE = [
    ({"raw_result": "[1, 2, 3]"}, "not an object"),
    ({"raw_result": '"zzz"'}, "not an object"),
    ({"counts": "zzz"}, "'counts' must be an object"),
    ({"counts": {"00": 3, "11": 3}}, "sum to 6, not to the 10 shots"),
    ({"counts": {"00": 12, "11": -2}}, "whole number >= 0"),
    ({"counts": {"hello": 10}}, "not a bitstring"),
    ({"raw_result": "{\"ok\": tru"}, "not JSON"),  # a job cut off mid-write, or junk
]


@pytest.mark.parametrize("options,words", GARBAGE)
def test_garbage_results_fail_with_bad_result_through_the_local_executor(seeded, redis_url, tmp_path, options,
                                                                        words):
    ex = LocalExecutor(slots=1, warm=False, runner_module=FAKE_RUNNER, log_dir=tmp_path / "logs")
    running = Running(redis_url, ex, tmp_path / "work")
    try:
        task = Client(control=seeded).submit(GHZ3, device="ideal", shots=10, options=options)
        view = seeded.wait(task.id, timeout=120)
    finally:
        running.stop()
    assert view["state"] == "failed" and view["reason"] == "bad_result", view
    assert words in view["error"] and seeded.result(task.id) is None


@pytest.mark.slurm
@pytest.mark.parametrize("options,words", [GARBAGE[0], GARBAGE[2]])
def test_garbage_results_fail_with_bad_result_through_slurm(slurm_cluster, seeded, redis_url, tmp_path, options,
                                                            words):
    from tests.slurm_support import fake

    running = Running(redis_url, fake(), tmp_path, devices=("ideal",))
    try:
        task = Client(control=seeded).submit(GHZ3, device="ideal", shots=10, options=options)
        view = seeded.wait(task.id, timeout=180)
    finally:
        running.stop()
    assert view["state"] == "failed" and view["reason"] == "bad_result", view
    assert words in view["error"] and seeded.result(task.id) is None

