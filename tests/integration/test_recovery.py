"""Nothing lost, nothing twice: claim-time binding under churn, bounded retries, the fault-injection harness."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from jupyter_vqpu.core.client import Client
from jupyter_vqpu.core.snapshot import ideal_snapshot
from tests.agents import EchoExecutor, Running, wait_for
from tests.conftest import GHZ3, REPO

pytestmark = pytest.mark.redis


def test_every_task_binds_the_snapshot_current_at_its_claim(seeded, redis_url, tmp_path):
    """The device is mutated over and over while four agents claim."""
    cp = seeded
    client = Client(control=cp, owner="churn")
    ids = [client.submit(GHZ3, device="ideal", shots=10).id for _ in range(150)]
    stop = threading.Event()
    published: dict[int, str] = {}

    def mutate():
        while not stop.is_set():
            sid, version = cp.publish("ideal", lambda v: ideal_snapshot(32, version=v))
            published[version] = sid

    publisher = threading.Thread(target=mutate)
    publisher.start()
    agents = [Running(redis_url, EchoExecutor(), tmp_path / f"a{i}", agent_id=f"a{i}", capacity=3) for i in range(4)]
    try:
        for tid in ids:
            assert cp.wait(tid, timeout=60)["state"] == "completed"
    finally:
        stop.set()
        publisher.join()
        for a in agents:
            a.stop()
    versions = dict((v, sid) for v, sid in cp.snapshot_ids("ideal"))
    assert len(versions) > 5, "the device should have been mutated many times during the run"
    # stream order of publishes and claims: the claim saw the newest publish before it
    current, seen_versions = None, set()
    bound = {}
    for _, f in cp.redis.xrange(cp.keys("ideal").events):
        data = json.loads(f["data"])
        if f["event"] == "snapshot":
            current = data["snapshot"]
        elif f["event"] == "claimed":
            bound[f["task"]] = data["snapshot"]
            assert data["snapshot"] == current, "a claim bound a snapshot that was not current"
            assert versions[data["device_version"]] == data["snapshot"]
            seen_versions.add(data["device_version"])
    assert len(seen_versions) > 1
    for tid in ids:
        claims = [e for e in cp.history(tid) if e["event"] == "claimed"]
        assert len(claims) == 1 and cp.task(tid)["snapshot_id"] == claims[0]["snapshot"] == bound[tid]
        assert cp.result(tid)["snapshot_id"] == bound[tid]


def _agent(redis_url: str, tmp_path, name: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "VQPU_REDIS_URL"}
    return subprocess.Popen(
        [sys.executable, "-m", "jupyter_vqpu.cli", "agent", "--devices", "ideal", "--agent-id", name,
         "--work-root", str(tmp_path / name), "--redis-url", redis_url, "--lease", "1", "--renew", "0.25",
         "--reap-every", "0.2", "--max-attempts", "3", "--capacity", "1"],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_task_whose_executor_dies_on_every_attempt_ends_failed_lost(seeded, redis_url, tmp_path):
    cp = seeded
    tid = Client(control=cp).submit(GHZ3, device="ideal", shots=10).id
    survivors = []
    try:
        for attempt in (1, 2, 3):
            proc = _agent(redis_url, tmp_path, f"doomed{attempt}")
            survivors.append(proc)
            wait_for(lambda a=attempt: cp.task(tid)["attempts"] == a and cp.task(tid)["state"] != "queued",
                     60, f"attempt {attempt} to be claimed")
            proc.send_signal(signal.SIGKILL)  # the agent and its job die with the attempt
            proc.wait()
        # a healthy agent's reaper finds the last expired lease and dead-letters the task
        reaper = _agent(redis_url, tmp_path, "reaper")
        survivors.append(reaper)
        view = wait_for(lambda: (v := cp.task(tid))["state"] in ("failed", "completed") and v, 60, "the verdict")
    finally:
        for p in survivors:
            if p.poll() is None:
                p.terminate()
                p.wait(30)
    assert view["state"] == "failed" and view["reason"] == "lost" and view["attempts"] == 3
    requeues = [e for e in cp.history(tid) if e["event"] == "queued" and e.get("reason") == "lease_expired"]
    assert len(requeues) == 2


def test_a_redis_restart_under_the_shipped_acl_file_keeps_every_acknowledged_task(tmp_path):
    """Redis 7 writes a script's effects to the AOF as MULTI/EXEC; replaying EXEC re-checks the ACL
    as the default user (redis/redis#14541, fixed upstream in #14545), so a default user with no
    rights silently drops every scripted write on restart. Found by the chaos harness (--acl
    with --redis-kill): every task gone after kill -9. The shipped file must survive a restart."""
    from jupyter_vqpu.core.acl import acl_file
    from jupyter_vqpu.core.control import ControlPlane
    from tests.support import RedisServer

    (tmp_path / "users.acl").write_text(acl_file("agent-pw", "gateway-pw", ["ideal"]))
    server = RedisServer(tmp_path, username="vqpu-gateway", password="gateway-pw",
                         extra_args=("--aclfile", str(tmp_path / "users.acl"))).start()
    try:
        import redis

        cp = ControlPlane(redis.Redis.from_url(server.url, decode_responses=True))
        cp.seed(["ideal"])
        cp.scripts.load_all()
        tid = Client(control=cp, owner="acl").submit(GHZ3, device="ideal", shots=10).id
        server.kill(signal.SIGKILL)
        server.start()
        cp.scripts.load_all()
        assert cp.task(tid)["state"] == "queued", "the acknowledged task was lost across the restart"
        with pytest.raises(redis.exceptions.AuthenticationError):  # and still no way in without a password
            redis.Redis(host="127.0.0.1", port=server.port).hgetall(cp.keys("ideal").device)
    finally:
        server.stop()


def test_an_agent_under_the_shipped_acl_renews_the_lease_of_a_long_task(seeded, redis_server, tmp_path):
    """Found by the chaos harness (--acl): every lease renewal of a least-privilege agent failed with
    NOPERM, so any task longer than a lease was requeued and fenced, and after max attempts failed
    'lost'. The renewal pipelines the progress script, and redis-py's pipeline first runs SCRIPT
    EXISTS, which the agent's rules do not grant. A task held for three leases must keep attempt 1."""
    from jupyter_vqpu.core.acl import agent_rules
    from tests.agents import HoldExecutor

    admin = seeded.redis
    admin.acl_setuser("vqpu-agent", enabled=True, passwords=["+renew-pw"], reset=True)
    admin.execute_command("ACL", "SETUSER", "vqpu-agent", *agent_rules(["ideal"]))
    url = f"redis://vqpu-agent:renew-pw@127.0.0.1:{redis_server.port}/0"
    hold = HoldExecutor()
    running = Running(url, hold, tmp_path, lease_s=1.0, renew_s=0.25)
    try:
        task = Client(control=seeded).submit(GHZ3, device="ideal", shots=10)
        wait_for(lambda: task.id in hold.jobs, 60, "the task to be running")
        held_since = seeded.server_time()
        wait_for(lambda: seeded.server_time() > held_since + 3.0, 60, "three leases to pass")
        view = seeded.task(task.id)
        events = [e["event"] + ":" + str(e.get("reason", "")) for e in seeded.history(task.id)]
        assert view["state"] == "running" and view["attempts"] == 1, f"the lease was not renewed: {events}"
        lease_until = int(seeded.redis.hget(seeded.keys("ideal").task(task.id), "lease_until")) / 1000
        assert lease_until > held_since + 2.0, f"the lease was not renewed: {events}"
        hold.release(task.id, view["snapshot_id"])
        assert task.result(timeout=60)["state"] == "completed"
    finally:
        running.stop()
        admin.acl_deluser("vqpu-agent")


def _chaos(*args: str, tasks: int) -> tuple[subprocess.CompletedProcess, dict]:
    """Run benchmarks/chaos.py and parse its JSON report (its last line).

    The harness decides by itself when a run has stopped moving (a stall limit derived from
    this machine's calibration); the timeout here only catches a hung harness and grows with
    the work, so a slow but moving run on a loaded machine is never cut short."""
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "chaos.py"), "--tasks", str(tasks), *args, "--json"],
                         capture_output=True, text=True, timeout=900 + 10 * tasks, cwd=REPO)
    lines = out.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("{"), f"no report: {out.stdout[-2000:]} {out.stderr[-2000:]}"
    return out, json.loads(lines[-1])


CHAOS_FAULTS = ("sigkill", "zombie", "redis_kill", "script_flush", "redis_outage", "maxmemory", "full_disk")


@pytest.mark.slow
def test_fault_injection_harness_loses_nothing_and_completes_nothing_twice():
    """Every fault at once, agents as least-privilege ACL users: nothing lost, twice, or stuck;
    garbage results fail with bad_result; a full disk hands its tasks to the other agents."""
    tasks = 300
    out, report = _chaos("--agents", "4", "--clients", "3", "--kill-every", "3", "--all-faults", tasks=tasks)
    assert out.returncode == 0 and not report["failures"], "\n".join(report["failures"]) + "\n" + out.stdout[-4000:]
    assert report["stalled"] is None
    assert report["tasks_submitted"] == tasks and report["duplicate_submissions"] == 0
    assert report["completed"] + sum(report["failed_with_reason"].values()) == tasks + report["calibration_tasks"]
    assert report["lost"] == 0 and report["stuck"] == 0 and report["completed_twice"] == 0
    assert report["zombie_results_visible"] == 0
    assert report["zombie_writes_rejected"] >= 1, "the SIGSTOPped agent should have tried to write"
    for fault in CHAOS_FAULTS:
        assert report["faults_injected"].get(fault, 0) >= 1, f"{fault} was not injected: {report['faults']}"
    assert report["oom_rejections"] >= 1, "maxmemory was set but Redis refused no write"
    # garbage: every garbled final attempt failed with bad_result, and nothing else failed that way
    garbage = report["garbage"]
    assert garbage.get("failed_bad_result", 0) >= 1
    assert set(garbage) <= {"tasks", "failed_bad_result", "superseded_by_a_later_attempt"}, garbage
    assert report["failed_with_reason"].get("bad_result", 0) == garbage["failed_bad_result"]
    # the full disk is the agent's fault, never the task's: what it held goes back to the queue
    disk = report["full_disk"]
    assert report["staging_errors"] == 0
    assert not [k for k in disk if k.startswith("attempt_")], disk


@pytest.mark.slow
def test_the_harness_reports_a_stalled_run_with_what_is_stuck():
    """A fault nothing survives (every agent SIGSTOPped for good) ends the run as stalled, after
    the measured stall limit, naming the stuck tasks and agents, instead of hanging or passing."""
    out, report = _chaos("--agents", "2", "--clients", "1", "--kill-every", "0", "--no-zombie", "--no-redis-kill",
                         "--no-script-flush", "--freeze", "--stall-factor", "0.25", "--no-keep-on-failure", tasks=30)
    assert out.returncode == 1
    assert report["faults_injected"] == {"freeze": 1}
    stalled = report["stalled"]
    assert stalled and stalled.startswith("no task became final for"), stalled
    assert "SIGSTOPped" in stalled and "by state:" in stalled
    assert report["stuck"] >= 1 and any(f.startswith("stalled") for f in report["failures"])
