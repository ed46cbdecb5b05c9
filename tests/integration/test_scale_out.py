"""The same control plane on one node, a 3-master Redis Cluster with replicas, and under Sentinel.

Every test here takes the ``deployment`` fixture (tests/conftest.py), so it runs on all three
real deployments. On the cluster the devices used (fez, torino, marrakesh) hash to three
different masters, so every call that spans devices really spans nodes.
"""

from __future__ import annotations

import pytest

from jupyter_vqpu.core.client import Client
from jupyter_vqpu.core.connection import connect, is_cluster, node_client
from jupyter_vqpu.core.control import ControlPlane
from jupyter_vqpu.core.keys import Keys
from tests.agents import EchoExecutor, HoldExecutor, Running
from tests.conftest import BELL_QASM2
from tests.support import wait_for

pytestmark = pytest.mark.redis

#: One device per master of a 3-master cluster (hash slots 713, 8339, 12892).
DEVICES = ["fez", "torino", "marrakesh"]


def _cp(url: str) -> ControlPlane:
    cp = ControlPlane(connect(url))
    cp.seed(DEVICES)
    return cp


def test_devices_span_masters_on_the_cluster(redis_cluster):
    """The premise of the cluster runs: the test devices are served by three different masters."""
    redis_cluster.flushall()
    masters = {redis_cluster.master_of(Keys(d).device).port for d in DEVICES}
    assert len(masters) == 3


def test_the_lifecycle_across_devices(deployment):
    """Seed, submit, one read of work over all devices, claim, one lease renewal over all devices,
    finish, views, events from every device: each call that spans devices works on every deployment."""
    cp = _cp(deployment)
    assert sorted(cp.device_names()) == sorted(DEVICES)  # seed registered every device (MOVED killed it)
    for d in DEVICES:
        cp.ensure_group(d)
    cursors = {d: cp.last_event_id(d) for d in DEVICES}
    ids = {d: cp.submit(owner="alice", device=d, circuit=BELL_QASM2, shots=8, idempotency_key=f"k-{d}")["task_id"]
           for d in DEVICES}
    assert {cp.task(t)["state"] for t in ids.values()} == {"queued"}  # task() reads TIME on the device's node
    pointers = []
    wait_for(lambda: pointers.extend(cp.read_work(DEVICES, "agent-1", 10, 500)) or
             {d for d, _, _ in pointers} == set(DEVICES), 60, "a work pointer from every device")
    claims = [cp.claim_next(d, "agent-1", 30_000, eid) for d, eid, _ in pointers]
    assert sorted(c.task_id for c in claims) == sorted(ids.values())
    verdicts = cp.heartbeat([(c.task_id, c.token) for c in claims], "agent-1", 30_000)
    assert verdicts == {c.task_id: "ok" for c in claims}
    for c in claims:
        assert cp.finish(c.task_id, "agent-1", c.token, "completed", result={"snapshot_id": c.snapshot_id}) == "ok"
    assert {cp.task(t)["state"] for t in ids.values()} == {"completed"}
    assert [t["task_id"] for t in cp.tasks("alice")] and len(cp.tasks("alice")) == 3
    assert {v["name"] for v in cp.devices()} == set(DEVICES)
    assert all(cp.expired(d) == [] for d in DEVICES)
    seen: set[str] = set()
    wait_for(lambda: seen.update(f.get("task", "") for _, _, f in cp.read_events(cursors, 500)) or
             set(ids.values()) <= seen, 60, "events from every device")
    # An idempotent retry returns the same task on every deployment.
    again = cp.submit(owner="alice", device="fez", circuit=BELL_QASM2, shots=8, idempotency_key="k-fez")
    assert again["task_id"] == ids["fez"]


def test_one_renew_call_per_device_renews_its_leases_and_fences_a_stale_token(deployment):
    """The heartbeat is one renew script call per device (monitored: one EVALSHA per device), each
    lease pushed out, and a token that is not the claim's is fenced without stopping the others."""
    cp = _cp(deployment)
    for d in DEVICES:
        cp.ensure_group(d)
    for i in range(2):
        for d in DEVICES:
            cp.submit(owner="alice", device=d, circuit=BELL_QASM2, shots=8, idempotency_key=f"r-{d}-{i}")
    claims = []
    wait_for(lambda: [claims.append(c) for d in DEVICES for c in [cp.claim_next(d, "agent-1", 1_000, "")] if c]
             and len(claims) >= 2 * len(DEVICES), 60, "two claims per device")
    before = {c.task_id: cp.redis.zscore(cp.keys(c.task_id.split(".")[0]).leases, c.task_id) for c in claims}
    held = [(c.task_id, c.token) for c in claims]
    stale = claims[0]
    held[0] = (stale.task_id, stale.token + "0")  # not this claim's token
    calls: list[str] = []
    real = cp.scripts.call

    def counting(name, *a, **kw):
        calls.append(name)
        return real(name, *a, **kw)

    cp.scripts.call = counting
    verdicts = cp.heartbeat(held, "agent-1", 60_000)
    assert calls == ["renew"] * len(DEVICES)
    assert verdicts[stale.task_id] == "fenced" and [v for t, v in verdicts.items() if t != stale.task_id] == \
        ["ok"] * (len(claims) - 1)
    for c in claims[1:]:
        assert cp.redis.zscore(cp.keys(c.task_id.split(".")[0]).leases, c.task_id) > before[c.task_id] + 30_000
    assert cp.redis.zscore(cp.keys(stale.task_id.split(".")[0]).leases, stale.task_id) == before[stale.task_id]
    fenced = [e for e in cp.history(stale.task_id) if e["event"] == "fenced"]
    assert fenced and fenced[-1]["write"] == "heartbeat"


def test_an_agent_serves_devices_on_different_masters(deployment, tmp_path):
    """A real agent serving three devices: its multi-device read, lease renewal and reaper all work
    (on a cluster, XREADGROUP over several slots is CROSSSLOT; the agent reads per device)."""
    cp = _cp(deployment)
    running = Running(deployment, EchoExecutor(), tmp_path, devices=DEVICES, reap_every_s=0.5)
    try:
        client = Client(control=cp)
        ids = [client.submit(BELL_QASM2, device=d, shots=16).id for d in DEVICES for _ in range(2)]
        for tid in ids:
            assert cp.wait(tid, timeout=60)["state"] == "completed"
    finally:
        running.stop()
    # counted once the agent has stopped: it counts a completion just after its finish script, which is
    # when cp.wait can already see the task completed (CI, loaded: 5 of 6 counted at that moment)
    assert running.agent.stats["completed"] == len(ids)


def test_capacity_holds_across_all_of_an_agents_devices(deployment, tmp_path):
    """--capacity 1 over three devices with work on each: one task held at a time, never three
    (XREADGROUP's COUNT is per stream); the pointers beyond capacity are kept and served later."""
    cp = _cp(deployment)
    ex = HoldExecutor()
    running = Running(deployment, ex, tmp_path, devices=DEVICES, capacity=1, reap_every_s=3600)
    try:
        client = Client(control=cp)
        ids = [client.submit(BELL_QASM2, device=d, shots=16).id for d in DEVICES]
        done: list[str] = []
        for _ in ids:
            held = wait_for(lambda: [t for t in ids if t not in done and t in ex.jobs], 60, "a held task")
            # Every device's pointer has been delivered by now or soon; the agent must not hold more.
            leases = sum(cp.redis.zcard(Keys(d).leases) for d in DEVICES)
            assert len(held) == 1 and leases == 1 and len(running.agent.held) == 1
            [tid] = held
            ex.release(tid, cp.task(tid)["snapshot_id"])
            assert cp.wait(tid, timeout=60)["state"] == "completed"
            done.append(tid)
        assert sorted(done) == sorted(ids)
    finally:
        running.stop()


def test_time_is_asked_of_each_devices_own_node(redis_cluster):
    """On the cluster, TIME goes to the master of the device's slot (a pipeline would send it anywhere)."""
    redis_cluster.flushall()
    client = connect(redis_cluster.url)
    assert is_cluster(client)
    for d in DEVICES:
        node = node_client(client, Keys(d).device)
        assert node.connection_pool.connection_kwargs["port"] == redis_cluster.master_of(Keys(d).device).port


def test_a_replica_shortfall_is_an_error_never_a_silent_success(redis_url):
    """?wait_replicas=1 on a node without replicas: the submission is refused as NotDurable every time
    (its retry with the same idempotency key too), never acknowledged."""
    from jupyter_vqpu.core.errors import NotDurable

    cp = ControlPlane(connect(redis_url + "?wait_replicas=1&wait_timeout_ms=50"))
    cp.seed(["fez"])
    for _ in range(2):
        with pytest.raises(NotDurable) as info:
            cp.submit(owner="alice", device="fez", circuit=BELL_QASM2, shots=8, idempotency_key="k")
        assert "0 of 1 replicas" in info.value.message and "idempotency key" in info.value.hint
    assert info.value.http_status == 503


def test_wait_aof_is_refused_before_any_write_where_redis_lacks_waitaof(redis_url):
    """Redis 7.0 (Debian 12) has no WAITAOF: ?wait_aof=1 is a readable error and nothing is written;
    on 7.2+ the submission is acknowledged after the master's fsync."""
    import redis

    cp = ControlPlane(connect(redis_url + "?wait_aof=1"))
    cp.seed(["fez"])
    version = tuple(int(x) for x in redis.Redis.from_url(redis_url).info("server")["redis_version"].split(".")[:2])
    if version >= (7, 2):
        assert cp.submit(owner="alice", device="fez", circuit=BELL_QASM2, shots=8)["state"] == "queued"
        return
    from jupyter_vqpu.core.errors import InvalidRequest

    with pytest.raises(InvalidRequest) as info:
        cp.submit(owner="alice", device="fez", circuit=BELL_QASM2, shots=8)
    assert "WAITAOF" in info.value.message and "wait_aof" in info.value.hint
    assert cp.tasks("alice") == []


def test_an_agent_with_only_its_acl_rules_serves_a_cluster(redis_cluster, tmp_path):
    """`vqpu acl`'s agent rules are enough for a cluster client (slot map, command table, WAIT):
    the rules set on every node, the agent acknowledges its claims and results on a replica."""
    from jupyter_vqpu.core.acl import agent_rules

    redis_cluster.flushall()
    cp = _cp(redis_cluster.url)
    for node in redis_cluster.nodes:
        redis_cluster.client(node).execute_command("ACL", "SETUSER", "vqpu-agent", "on", ">agent-pw",
                                                   *agent_rules(DEVICES))
    url = redis_cluster.url.replace("redis+cluster://", "redis+cluster://vqpu-agent:agent-pw@") + "?wait_replicas=1"
    running = Running(url, EchoExecutor(), tmp_path, devices=DEVICES, reap_every_s=0.5)
    try:
        ids = [Client(control=cp).submit(BELL_QASM2, device=d, shots=16).id for d in DEVICES]
        for tid in ids:
            assert cp.wait(tid, timeout=60)["state"] == "completed"
        assert running.agent.cp.durability.replicas == 1
    finally:
        running.stop()
        for node in redis_cluster.nodes:
            redis_cluster.client(node).acl_deluser("vqpu-agent")


def test_the_cli_seeds_and_lists_devices_on_every_deployment(deployment):
    """`vqpu device seed` registered only the first device on a cluster node (MOVED); a cluster or
    Sentinel URL on the command line serves every command."""
    import subprocess
    import sys

    def vqpu(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "jupyter_vqpu.cli", *args, "--redis-url", deployment],
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)

    seeded = vqpu("device", "seed", *DEVICES)
    assert seeded.returncode == 0, seeded.stderr
    listed = vqpu("devices")
    assert listed.returncode == 0, listed.stderr
    assert all(d in listed.stdout for d in DEVICES)
    bad = subprocess.run([sys.executable, "-m", "jupyter_vqpu.cli", "devices", "--redis-url", "redis+sentinel://h:1"],
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert bad.returncode != 0 and "service name" in bad.stderr and "Traceback" not in bad.stderr
