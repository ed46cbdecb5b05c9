"""Hostile input against real components: a real ``jupyter server`` with the extension, a real
redis-server, the real job runner and a real agent.

The server must answer every hostile request with a readable 4xx, stay up,
keep its memory and its log bounded; invalid submissions must count against
the sender's rate before anything is parsed; and in a job, where parsing stays
in-process (a job is hermetic), a parser crash must end as a failed task.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest
import requests

from jupyter_vqpu.core import snapshot as S
from jupyter_vqpu.core.control import Limits
from jupyter_vqpu.core.errors import CircuitError, LimitExceeded
from tests.agents import Running, wait_for
from tests.conftest import GHZ3
from tests.hostile_programs import RED_TEAM, programs
from tests.server_support import jupyter_server_process

pytestmark = pytest.mark.redis

BAD = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\nnotagate q[0];\n'


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


# ------------------------------------------------------------ rate and queue


def test_invalid_circuits_count_against_the_rate_before_any_parse(seeded):
    lim = Limits(submissions_per_minute=3)
    for _ in range(3):
        with pytest.raises(CircuitError, match="notagate"):
            seeded.submit(owner="mallory", device="fez", circuit=BAD, limits=lim)
    parsed = dict(seeded.parser.stats)
    with pytest.raises(LimitExceeded, match="you submitted 3 tasks in the last minute"):
        seeded.submit(owner="mallory", device="fez", circuit=BAD, limits=lim)
    with pytest.raises(LimitExceeded, match="you submitted 3 tasks"):
        seeded.submit(owner="mallory", device="fez", circuit=GHZ3, limits=lim)  # even a valid one, now
    assert seeded.parser.stats["requests"] == parsed["requests"]  # refused before the parser was asked
    assert seeded.submit(owner="alice", device="fez", circuit=GHZ3, limits=lim)["state"] == "queued"


def test_the_queue_cap_is_checked_before_the_parse(seeded):
    lim = Limits(max_queued_per_owner=1)
    seeded.submit(owner="mallory", device="fez", circuit=GHZ3, limits=lim)
    before = seeded.parser.stats["requests"]
    with pytest.raises(LimitExceeded, match="already have 1 tasks queued on fez"):
        seeded.submit(owner="mallory", device="fez", circuit=RED_TEAM["nested_parens"], limits=lim)
    assert seeded.parser.stats["requests"] == before


# ------------------------------------------------------------ the job side


@pytest.mark.parametrize("name", sorted(RED_TEAM))
def test_the_job_runner_refuses_hostile_circuits_as_failed_tasks(tmp_path, name):
    from jupyter_vqpu_agent import bundle

    doc = S.ideal_snapshot(created_at="2026-01-02T03:04:05Z")
    data = S.canonical_bytes(doc)
    spec = bundle.TaskSpec(task_id="t-hostile", device=doc["device"], attempt=1, snapshot_id=S.snapshot_id(data),
                           shots=10, circuit_format="qasm3", seed=1, options={})
    where = bundle.stage(tmp_path / "b", spec, data, RED_TEAM[name])
    proc = subprocess.run([sys.executable, "-m", "jupyter_vqpu_agent.runner", str(where)], capture_output=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr[-500:]
    result = bundle.read_result(where)
    assert result["ok"] is False and result["reason"] == "invalid_circuit", result
    assert len(proc.stderr) < 10_000  # no diagnostics flood in the job log either


def test_a_parser_crash_in_a_job_ends_as_a_failed_task_not_a_stuck_one(seeded, redis_url, tmp_path):
    from jupyter_vqpu_agent.executors.local import LocalExecutor

    ex = LocalExecutor(slots=1, warm=False, runner_module="tests.integration.crashing_runner",
                       log_dir=tmp_path / "logs")
    running = Running(redis_url, ex, tmp_path / "work", devices=("ideal",))
    try:
        task = seeded.submit(owner="alice", device="ideal", circuit=GHZ3, shots=10)
        done = wait_for(lambda: (t := seeded.task(task["task_id"]))["state"] in ("failed", "succeeded") and t,
                        timeout=180, what="the task to end")
    finally:
        running.stop()
    assert done["state"] == "failed" and done["reason"] == "runner_error", done
    assert "runner process died (exit -" in done["error"], done["error"]  # killed by a signal


# ------------------------------------------------------------ a real server


@pytest.fixture
def jupyter_server(seeded, redis_url, tmp_path):
    with jupyter_server_process(tmp_path, {}, f"--VqpuApp.redis_url={redis_url}", "--VqpuApp.parser_processes=1") \
            as server:
        yield server


def _raw_post(port: int, path: str, token: str, headers: dict[str, str], body_start: bytes) -> bytes:
    """Send headers and the start of a body only, then read what the server answers (it must not wait for more)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: token {token}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        s.sendall(head.encode() + body_start)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + 50:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def test_hostile_posts_get_fast_readable_4xx_and_the_server_stays_up(jupyter_server):
    url, headers, proc, log_path, port = jupyter_server
    api = f"{url}/vqpu/api/tasks"
    token = headers["Authorization"].split()[1]
    # Warm up (the parser process, the first request's imports) before taking the baseline.
    requests.post(api, json={"device": "fez", "circuit": GHZ3}, headers=headers, timeout=120).raise_for_status()
    rss_before, log_before = _rss_kb(proc.pid), log_path.stat().st_size

    bodies: list[tuple[str, bytes]] = []
    for name, text in RED_TEAM.items():
        bodies += [(f"red_team:{name}", json.dumps({"device": "fez", "circuit": text}).encode())] * 10
    hostile = [(f, t) for f, t in programs(3000, seed=11) if f not in ("mutation", "soup")][:250]
    bodies += [(f, json.dumps({"device": "fez", "circuit": t}).encode()) for f, t in hostile]
    bodies += [("json_deep", b"[" * 100_000 + b"]" * 100_000), ("json_deep_obj", b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
               ("binary", bytes(range(256)) * 40), ("not_utf8", b'{"device": "fez", "circuit": "\xff\xfe"}'),
               ("huge_int", b'{"device": "fez", "shots": ' + b"9" * 100_000 + b', "circuit": "x"}'),
               ("surrogate", b'{"device": "fez", "circuit": "OPENQASM 3.0;\\nqubit q;\\n\\udc80"}'),
               ("not_an_object", b"[1, 2, 3]"), ("empty", b"")]
    statuses, latencies = [], []
    for family, body in bodies:
        t0 = time.perf_counter()
        r = requests.post(api, data=body, headers={**headers, "Content-Type": "application/json"}, timeout=120)
        latencies.append(time.perf_counter() - t0)
        statuses.append(r.status_code)
        if r.status_code == 201 and family.split(":")[0] in ("operators", "registers"):
            continue  # a generated program that is simply valid (e.g. 17 terms of "1+"): queued like any
        assert 400 <= r.status_code < 500, (family, r.status_code, r.text[:300])
        err = r.json()
        assert err["error"] and err["message"] and "\n" not in err["message"], (family, err)

    # A body over the limit is refused from its Content-Length, before the server reads it.
    t0 = time.perf_counter()
    raw = _raw_post(port, "/vqpu/api/tasks", token, {"Content-Type": "application/json",
                                                      "Content-Length": str(50_000_000)}, b'{"device": "fez"')
    latencies.append(time.perf_counter() - t0)
    assert raw.startswith(b"HTTP/1.1 413"), raw[:300]
    assert b"payload_too_large" in raw and b"over the limit of 4000000" in raw

    assert proc.poll() is None
    assert requests.get(f"{url}/vqpu/api/devices", headers=headers, timeout=60).status_code == 200
    rss_after, log_after = _rss_kb(proc.pid), log_path.stat().st_size
    latencies.sort()
    figures = {"requests": len(latencies), "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
               "max_ms": round(1000 * latencies[-1], 1),
               "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1),
               "rss_kb": [rss_before, rss_after], "log_bytes": log_after - log_before}
    print("\nHOSTILE_HTTP " + json.dumps(figures))
    assert rss_after - rss_before < 150_000, figures  # the server parses nothing itself
    assert log_after - log_before < 2_000 * len(latencies), figures  # a line or two per request, no diagnostics


def test_a_refused_post_keeps_the_connection_usable(jupyter_server):
    """Streamed bodies: a 403 before the body is read must not close a keep-alive connection
    (JupyterHub's proxy reuses it for the next user's request)."""
    url, headers, proc, log_path, port = jupyter_server
    with requests.Session() as s:
        for _ in range(3):
            r = s.post(f"{url}/vqpu/api/tasks", json={"device": "fez", "circuit": GHZ3},
                       headers={"Authorization": "token wrong"}, timeout=60)
            assert r.status_code == 403, r.text[:200]
            r = s.get(f"{url}/vqpu/api/devices", headers=headers, timeout=60)  # same connection
            assert r.status_code == 200, r.text[:200]
