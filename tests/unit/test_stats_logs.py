"""Quick checks of the operations pieces: the stats hash's parsing, its Lua twin, the JSON log formatter."""

from __future__ import annotations

import json
import logging
import math
import re
from importlib import resources

import fakeredis
import pytest

from jupyter_vqpu import cli
from jupyter_vqpu.core.control import ControlPlane
from jupyter_vqpu.core.logs import JsonFormatter, configure, task_fields
from jupyter_vqpu.core.snapshot import ideal_snapshot
from jupyter_vqpu.core.stats import LATENCY_BOUNDS_S, parse_stats
from tests.conftest import GHZ3


def test_the_lua_buckets_are_the_python_buckets():
    prelude = (resources.files("jupyter_vqpu.core") / "lua" / "prelude.lua").read_text()
    table = prelude.split("local LATENCY_BUCKETS = {", 1)[1].split("\n}", 1)[0]
    pairs = re.findall(r"\{(\d+), '([0-9.]+)'\}", table)
    assert [float(label) for _, label in pairs] == list(LATENCY_BOUNDS_S)
    assert [int(ms) for ms, _ in pairs] == [round(b * 1000) for b in LATENCY_BOUNDS_S]


def test_parse_stats_makes_cumulative_buckets_and_ignores_junk():
    s = parse_stats({"finished:completed": "5", "failed:lost": "2", "requeued": "3", "lat:run:le:0.05": "1",
                     "lat:run:le:10": "3", "lat:run:le:+Inf": "1", "lat:run:sum_ms": "12500", "junk": "x",
                     "lat:run:le:nonsense": "4", "other": "7"})
    assert s.finished == {"completed": 5, "failed": 0, "cancelled": 0}
    assert s.failed == {"lost": 2} and s.requeued == 3
    run = s.latency["run"]
    assert run.count == 5 and run.sum_s == 12.5
    assert run.buckets[0] == (0.05, 1) and dict(run.buckets)[10.0] == 4 and run.buckets[-1] == (math.inf, 5)
    assert [b for b, _ in run.buckets] == [*LATENCY_BOUNDS_S, math.inf]
    assert run.quantile(0.5) == 10.0 and run.quantile(1.0) == math.inf
    assert parse_stats({}).latency == {}


def test_the_scripts_count_ends_on_fakeredis():
    cp = ControlPlane(fakeredis.FakeRedis(decode_responses=True))
    cp.publish("ideal", lambda v: ideal_snapshot(8, version=v))
    a = cp.submit(owner="u", device="ideal", circuit=GHZ3, shots=10)["task_id"]
    b = cp.submit(owner="u", device="ideal", circuit=GHZ3, shots=10)["task_id"]
    cp.ensure_group("ideal")
    claim = cp.claim_next("ideal", "ag", 30_000, "")
    assert claim.task_id == a
    assert cp.finish(a, "ag", claim.token, "completed", result={"counts": {}}) == "ok"
    assert cp.finish(a, "ag", claim.token, "completed", result={"counts": {}}) != "ok"  # a repeat counts nothing
    cp.cancel(b, by="u")
    cp.cancel(b, by="u")
    stats = cp.stats("ideal")
    assert stats.finished == {"completed": 1, "failed": 0, "cancelled": 1}
    assert stats.latency["queue"].count == 1 and stats.latency["total"].count == 1
    assert "run" not in stats.latency  # it never reported running


def test_task_fields_take_the_device_from_the_id():
    assert task_fields("fez.0k3j9x2m1q7abcde", 2) == {"task_id": "fez.0k3j9x2m1q7abcde", "device": "fez", "attempt": 2}
    assert task_fields("not a task id") == {"task_id": "not a task id"}


def test_the_json_formatter_writes_one_object_with_the_extras():
    logger = logging.getLogger("vqpu.test.json")
    record = logger.makeRecord("vqpu.test.json", logging.WARNING, __file__, 1, "claimed %s", ("fez.1",), None,
                               extra=task_fields("fez.0k3j9x2m1q7abcde", 1))
    line = JsonFormatter().format(record)
    assert "\n" not in line
    rec = json.loads(line)
    assert rec["message"] == "claimed fez.1" and rec["level"] == "WARNING" and rec["logger"] == "vqpu.test.json"
    assert rec["task_id"] == "fez.0k3j9x2m1q7abcde" and rec["device"] == "fez" and rec["attempt"] == 1
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", rec["ts"])
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        import sys

        record = logger.makeRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    rec = json.loads(JsonFormatter().format(record))
    assert "RuntimeError: boom" in rec["exc"]


def test_configure_replaces_its_own_handler_and_the_cli_knows_the_flag():
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    try:
        first = configure("json")
        second = configure("human")
        assert first not in root.handlers and second in root.handlers
    finally:
        root.handlers[:] = before
        root.setLevel(level)
    with pytest.raises(ValueError, match="unknown log format"):
        configure("xml")
    assert cli.build_parser().parse_args(["agent", "--log-format", "json"]).log_format == "json"
    assert cli.build_parser().parse_args(["agent"]).log_format == "human"
