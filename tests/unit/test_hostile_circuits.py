"""Fuzz: 10,000 hostile or malformed programs through the control plane's parse path.

``ControlPlane.check_circuit`` is the one entry every service uses (server
extension, hub gateway, the CLI's direct mode): the cheap screen, then the
sandboxed parser pool. No Redis call is made on this path, so the client here
never connects. What must hold: every answer is a result or a 4xx VqpuError;
no parser process crashed or timed out; memory stayed bounded. Latencies are
measured and printed (docs/reliability.md records them), not asserted: a
wall clock must not decide a pass on a loaded CI box.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter

import pytest
import redis

from jupyter_vqpu.core.control import ControlPlane
from jupyter_vqpu.core.errors import VqpuError
from jupyter_vqpu.core.parsing import ParserPool
from tests.hostile_programs import RED_TEAM, programs

N_PROGRAMS = int(os.environ.get("VQPU_FUZZ_PROGRAMS", "10000"))


def _rss_kb(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@pytest.fixture(scope="module")
def control():
    pool = ParserPool(2)
    pool.warm_up()
    cp = ControlPlane(redis.Redis(host="127.0.0.1", port=1), parser=pool)  # never connected on this path
    yield cp
    pool.close()


def test_the_red_team_inputs_are_refused_without_reaching_a_parser(control):
    before = dict(control.parser.stats)
    for name, text in RED_TEAM.items():
        with pytest.raises(VqpuError) as err:
            control.check_circuit(text, None, 156)
        assert 400 <= err.value.http_status < 500 and err.value.hint, name
    assert control.parser.stats["refused_by_screen"] - before["refused_by_screen"] == len(RED_TEAM)
    assert control.parser.stats["parsed"] + control.parser.stats["user_errors"] == \
        before["parsed"] + before["user_errors"]


def test_ten_thousand_hostile_programs(control):
    pool = control.parser
    rss_before = _rss_kb()
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    by_family: Counter[str] = Counter()
    slowest = (0.0, "")
    for family, text in programs(N_PROGRAMS, seed=10):
        by_family[family.split(":")[0]] += 1
        t0 = time.perf_counter()
        try:
            control.check_circuit(text, None, 156)
            outcomes["accepted"] += 1
        except VqpuError as exc:
            assert 400 <= exc.http_status < 500, (family, exc)
            assert "\n" not in exc.message and len(exc.message) <= 500, (family, exc.message[:200])
            outcomes[exc.code] += 1
        dt = time.perf_counter() - t0
        latencies.append(dt)
        if dt > slowest[0]:
            slowest = (dt, family)
    worker_rss = [_rss_kb(pid) for pid in pool.pids()]
    rss_after = _rss_kb()
    latencies.sort()
    summary = {
        "programs": len(latencies), "families": dict(by_family), "outcomes": dict(outcomes),
        "pool": dict(pool.stats), "max_ms": round(1000 * latencies[-1], 1),
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 2),
        "median_ms": round(1000 * latencies[len(latencies) // 2], 3), "slowest_family": slowest[1],
        "test_rss_kb": [rss_before, rss_after], "worker_rss_kb": worker_rss,
    }
    print("\nFUZZ " + json.dumps(summary))
    assert len(latencies) == N_PROGRAMS
    assert pool.stats["crashes"] == 0 and pool.stats["timeouts"] == 0, summary
    # Most hostile text costs no round trip at all; what reaches a worker is parsed there, not here.
    assert pool.stats["refused_by_screen"] > N_PROGRAMS / 2, summary
    assert rss_after - rss_before < 200_000, summary  # this process parses nothing: it must not grow
    assert all(rss < pool.memory_mb * 1024 for rss in worker_rss), summary
