"""Prometheus metrics after real tasks went through a real agent, against a real redis-server;
and ``GET {base_url}vqpu/metrics`` on a real Jupyter server, with its access rules."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jupyter_server.auth import Authorizer, IdentityProvider, User
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import HTTPClientError

from jupyter_vqpu import cli
from jupyter_vqpu.core.client import Client
from jupyter_vqpu.core.connection import connect
from jupyter_vqpu_server.collector import VqpuCollector, render
from tests.agents import PassFailExecutor, Running, wait_for
from tests.conftest import GHZ3

pytestmark = pytest.mark.redis

GROUPS = {"alice": "physics-101", "bob": "physics-101", "carol": "staff"}
PHASES = ("queue", "schedule", "run", "total")


def group_of(owner: str) -> str:
    return GROUPS.get(owner, "other")


Samples = dict[tuple[str, frozenset], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by (sample name, labels)."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(client: Any, **kwargs: Any) -> Samples:
    body, _ = render(VqpuCollector(client, **kwargs))
    return parse(body.decode())


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"no sample {name}{labels}; have {sorted(k for k in samples if k[0] == name)}"
    return samples[key]


def test_metrics_count_what_real_tasks_did(seeded, redis_url, tmp_path):
    cp = seeded
    running = Running(redis_url, PassFailExecutor(), tmp_path, devices=("ideal",))
    try:
        done = [Client(control=cp, owner="alice").submit(GHZ3, device="ideal", shots=10) for _ in range(3)]
        done.append(Client(control=cp, owner="bob").submit(GHZ3, device="ideal", shots=10, name="fail-1"))
        states = [cp.wait(t.id, timeout=60)["state"] for t in done]
        assert states == ["completed"] * 3 + ["failed"]
        # fez has no agent: its tasks stay queued, one is cancelled
        queued = [Client(control=cp, owner=o).submit(GHZ3, device="fez", shots=10).id
                  for o in ("alice", "alice", "bob", "carol")]
        cp.cancel(queued[0], by="alice")
        # the agent's presence is written by its keep-alive thread; wait until it is visible
        wait_for(lambda: cp.devices(["ideal"])[0]["agents"], what="the agent's presence")
        live = scrape(cp.redis, group_of=group_of)
    finally:
        running.stop()

    assert value(live, "vqpu_agents_alive", device="ideal") == 1
    assert value(live, "vqpu_agents_alive", device="fez") == 0
    for s in (live, scrape(cp.redis, group_of=group_of)):
        assert value(s, "vqpu_queue_depth", device="fez") == 3
        assert value(s, "vqpu_queue_depth", device="ideal") == 0
        assert value(s, "vqpu_queue_depth_by_group", device="fez", group="physics-101") == 2
        assert value(s, "vqpu_queue_depth_by_group", device="fez", group="staff") == 1
        assert value(s, "vqpu_tasks_held", device="ideal") == 0
        assert value(s, "vqpu_tasks_finished_total", device="ideal", outcome="completed") == 3
        assert value(s, "vqpu_tasks_finished_total", device="ideal", outcome="failed") == 1
        assert value(s, "vqpu_tasks_finished_total", device="ideal", outcome="cancelled") == 0
        assert value(s, "vqpu_tasks_finished_total", device="fez", outcome="cancelled") == 1
        assert value(s, "vqpu_tasks_finished_total", device="fez", outcome="completed") == 0
        assert value(s, "vqpu_tasks_failed_total", device="ideal", reason="runner_error") == 1
        assert value(s, "vqpu_tasks_requeued_total", device="ideal") == 0
        assert value(s, "vqpu_device_draining", device="fez") == 0
        assert value(s, "vqpu_snapshot_age_seconds", device="fez") >= 0
        for phase in PHASES:  # every finished attempt went queue -> schedule -> run
            assert value(s, "vqpu_task_latency_seconds_count", device="ideal", phase=phase) == 4
            assert value(s, "vqpu_task_latency_seconds_bucket", device="ideal", phase=phase, le="+Inf") == 4
            assert 0 <= value(s, "vqpu_task_latency_seconds_sum", device="ideal", phase=phase) < 60
            ladder = sorted((float(dict(k[1])["le"]), v) for k, v in s.items()
                            if k[0] == "vqpu_task_latency_seconds_bucket" and dict(k[1]).get("phase") == phase
                            and dict(k[1])["device"] == "ideal")
            assert [v for _, v in ladder] == sorted(v for _, v in ladder), "buckets are cumulative"
        # a cancelled task is counted, but has no phase latencies
        assert not [k for k in s if k[0].startswith("vqpu_task_latency") and dict(k[1])["device"] == "fez"]

    # the agent said goodbye when it stopped
    assert value(scrape(cp.redis), "vqpu_agents_alive", device="ideal") == 0
    # the default grouping: one group
    assert value(scrape(cp.redis), "vqpu_queue_depth_by_group", device="fez", group="all") == 3
    # the same figures from a second "replica" with its own connection, reading only ideal
    other = scrape(connect(redis_url), devices=["ideal"])
    assert value(other, "vqpu_tasks_finished_total", device="ideal", outcome="completed") == 3
    assert not [k for k in other if dict(k[1]).get("device") == "fez"]
    assert cp.stats("ideal").as_dict()["finished"] == {"completed": 3, "failed": 1, "cancelled": 0}


def test_lost_leases_are_counted_as_requeued_then_failed_lost(seeded):
    cp = seeded
    tid = Client(control=cp, owner="dave").submit(GHZ3, device="ideal", shots=10).id
    cp.ensure_group("ideal")
    assert cp.claim_next("ideal", "ghost", 60_000, "").attempt == 1
    assert cp.recover("ideal", max_attempts=2, by="test", task_ids=[tid], force=True) == [(tid, "requeued", 1)]
    assert cp.claim_next("ideal", "ghost", 60_000, "").attempt == 2
    assert cp.recover("ideal", max_attempts=2, by="test", task_ids=[tid], force=True) == [(tid, "failed", 2)]
    s = scrape(cp.redis)
    assert value(s, "vqpu_tasks_requeued_total", device="ideal") == 1
    assert value(s, "vqpu_tasks_failed_total", device="ideal", reason="lost") == 1
    assert value(s, "vqpu_tasks_finished_total", device="ideal", outcome="failed") == 1
    assert value(s, "vqpu_task_latency_seconds_count", device="ideal", phase="total") == 1
    # no agent ran it to its end: its queue/schedule/run times are not its own
    assert ("vqpu_task_latency_seconds_count", frozenset({"device": "ideal", "phase": "run"}.items())) not in s


def test_vqpu_metrics_prints_the_exposition(seeded, redis_url, capsys):
    Client(control=seeded, owner="erin").submit(GHZ3, device="fez", shots=10)
    assert cli.main(["metrics", "--redis-url", redis_url]) == 0
    s = parse(capsys.readouterr().out)
    assert value(s, "vqpu_queue_depth", device="fez") == 1
    assert value(s, "vqpu_agents_alive", device="ideal") == 0


# ------------------------------------------------------------ the endpoint

TOKENS = {"admin-token": "alice", "student-token": "bob"}
ADMIN = {"Authorization": "token admin-token"}
STUDENT = {"Authorization": "token student-token"}
PROMETHEUS_TOKEN = "prom-scrape-secret"


class Users(IdentityProvider):
    """alice (an administrator) and bob (a student), by token."""

    def get_user(self, handler: Any) -> User | None:
        auth = handler.request.headers.get("Authorization", "")
        name = TOKENS.get(auth[len("token "):].strip()) if auth.lower().startswith("token ") else None
        if name is None:
            return None
        handler._token_authenticated = True
        return User(username=name)


class OnlyAdminsReadMetrics(Authorizer):
    """Everyone may use the API; only alice may read the operator's metrics."""

    def is_authorized(self, handler: Any, user: User, action: str, resource: str) -> bool:
        return user.username == "alice" if resource == "vqpu_metrics" else user.username in TOKENS.values()


@pytest.fixture
def jp_server_config(redis_url, seeded):
    return {
        "ServerApp": {
            "jpserver_extensions": {"jupyter_vqpu_server": True},
            "identity_provider_class": Users,
            "authorizer_class": OnlyAdminsReadMetrics,
        },
        "VqpuApp": {"redis_url": redis_url, "events_block_ms": 200, "metrics_token": PROMETHEUS_TOKEN,
                    "metrics_group_of": group_of},
    }


@pytest.fixture
def jp_auth_header():
    return ADMIN


async def status_of(fetch_call: Any) -> tuple[int, dict, Any]:
    with pytest.raises(HTTPClientError) as info:
        await fetch_call
    response = info.value.response
    return info.value.code, json.loads(response.body or b"{}"), response.headers


@pytest.mark.parametrize("headers", [{"Authorization": ""}, {"Authorization": "Bearer not-the-token"},
                                     {"Authorization": "token wrong"}])
async def test_the_endpoint_wants_credentials(jp_fetch, headers):
    code, err, response_headers = await status_of(jp_fetch("vqpu", "metrics", headers=dict(headers)))
    assert code == 401 and err["error"] == "unauthenticated" and err["hint"]
    assert response_headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_student_may_not_read_the_metrics(jp_fetch):
    code, err, _ = await status_of(jp_fetch("vqpu", "metrics", headers=dict(STUDENT)))
    assert (code, err["error"]) == (403, "forbidden")


async def test_an_admin_and_prometheus_read_the_metrics(jp_fetch):
    r = await jp_fetch("vqpu", "api", "tasks", method="POST", headers=dict(STUDENT),
                       body=json.dumps({"device": "fez", "circuit": GHZ3, "shots": 10}))
    assert r.code == 201
    for headers in (ADMIN, {"Authorization": f"Bearer {PROMETHEUS_TOKEN}"}):
        r = await jp_fetch("vqpu", "metrics", headers=dict(headers))
        assert r.code == 200 and r.headers["Content-Type"].startswith("text/plain")
        s = parse(r.body.decode())
        assert value(s, "vqpu_queue_depth_by_group", device="fez", group="physics-101") == 1
        assert value(s, "vqpu_queue_depth", device="fez") == 1
    r = await jp_fetch("vqpu", "metrics", headers={"Authorization": f"Bearer {PROMETHEUS_TOKEN}",
                                                    "Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.headers["Content-Type"].startswith("application/openmetrics-text")
    assert r.body.decode().endswith("# EOF\n")
