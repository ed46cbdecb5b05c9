"""Structured logs: the agent's task lines carry task_id / device / attempt, as JSON a log pipeline can index."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys

import pytest

from jupyter_vqpu.core.client import Client
from jupyter_vqpu.core.logs import JsonFormatter
from tests.agents import PassFailExecutor, Running
from tests.conftest import GHZ3, REPO

pytestmark = pytest.mark.redis


@pytest.fixture
def json_log():
    """The vqpu loggers' records as JSON lines in a buffer, for the duration of a test."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("vqpu")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_every_agent_line_about_a_task_names_it(seeded, redis_url, tmp_path, json_log):
    cp = seeded
    running = Running(redis_url, PassFailExecutor(), tmp_path, devices=("ideal",))
    try:
        ok = Client(control=cp, owner="alice").submit(GHZ3, device="ideal", shots=10).id
        bad = Client(control=cp, owner="bob").submit(GHZ3, device="ideal", shots=10, name="fail-x").id
        assert cp.wait(ok, timeout=60)["state"] == "completed"
        assert cp.wait(bad, timeout=60)["state"] == "failed"
    finally:
        running.stop()
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]  # each line is one JSON object
    assert all({"ts", "level", "logger", "message"} <= set(rec) for rec in lines)
    for rec in lines:
        for tid in (ok, bad):
            if tid in rec["message"]:
                assert (rec.get("task_id"), rec.get("device"), rec.get("attempt")) == (tid, "ideal", 1), rec
    about = {tid: [rec for rec in lines if rec.get("task_id") == tid] for tid in (ok, bad)}
    assert [rec["message"].split()[0] for rec in about[ok]] == ["claimed", "completed"]
    assert about[ok][0]["snapshot_id"] == cp.task(ok)["snapshot_id"]
    failed = about[bad][-1]
    assert failed["level"] == "WARNING" and failed["reason"] == "runner_error" and "boom" in failed["message"]


def test_vqpu_agent_log_format_json(seeded, redis_url, tmp_path):
    """The real command line: `vqpu agent --log-format json` writes only JSON lines, with the task's fields."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "VQPU_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_vqpu.cli", "agent", "--redis-url", redis_url, "--devices", "ideal",
         "--work-root", str(tmp_path / "work"), "--agent-id", "json-agent", "--log-format", "json"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )
    try:
        tid = Client(control=seeded, owner="alice").submit(GHZ3, device="ideal", shots=10, seed=1).id
        assert seeded.wait(tid, timeout=120)["state"] == "completed"
    finally:
        proc.send_signal(signal.SIGTERM)  # the agent drains and exits
        _, err = proc.communicate(timeout=60)
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    mine = [rec for rec in lines if rec.get("task_id") == tid]
    assert [rec["message"].split()[0] for rec in mine] == ["claimed", "completed"], err
    assert all(rec["device"] == "ideal" and rec["attempt"] == 1 for rec in mine)
    assert proc.returncode == 0, err
