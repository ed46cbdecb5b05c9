"""The `vqpu` command line as a user runs it: subprocesses against a real Redis and a real agent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_support import GHZ, vqpu
from tests.conftest import REPO, free_port

pytestmark = pytest.mark.redis


@pytest.fixture
def agent_proc(seeded, redis_url, tmp_path):
    """`vqpu agent` serving fez only (ideal has no agent, so its tasks stay queued)."""
    e = {k: v for k, v in os.environ.items() if k != "VQPU_REDIS_URL"}
    log = open(tmp_path / "agent.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_vqpu.cli", "agent", "--devices", "fez", "--executor", "local",
         "--work-root", str(tmp_path / "work"), "--redis-url", redis_url, "--capacity", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=e, cwd=REPO)
    yield proc
    proc.terminate()
    assert proc.wait(60) == 0, (tmp_path / "agent.log").read_text()[-2000:]


def test_run_json_has_the_documented_fields(seeded, redis_url, agent_proc):
    out = vqpu("run", GHZ, "--device", "fez", "--shots", "1024", "--seed", "3", "--json", url=redis_url)
    assert out.returncode == 0, out.stderr
    rec = json.loads(out.stdout)
    for key in ("task_id", "state", "device", "snapshot_id", "shots", "counts", "layout", "attempts", "timings", "phases"):
        assert key in rec
    assert rec["state"] == "completed" and rec["device"] == "fez" and rec["shots"] == 1024
    assert sum(rec["counts"].values()) == 1024 and rec["attempts"] == 1 and len(rec["snapshot_id"]) == 64

    status = json.loads(vqpu("status", rec["task_id"], "--json", url=redis_url).stdout)
    assert status["attempts"] == 1
    events = [e["event"] for e in status["history"]]
    assert events == ["queued", "claimed", "scheduled", "running", "completed"]
    claimed = status["history"][1]
    assert claimed["agent"] and claimed["attempt"] == 1 and claimed["token"].startswith("1-") and claimed["snapshot"] == rec["snapshot_id"]

    human = vqpu("run", GHZ, "--device", "fez", "--shots", "256", url=redis_url)
    assert human.returncode == 0 and "completed on fez" in human.stdout and "counts (256 shots)" in human.stdout


def test_no_wait_then_wait(seeded, redis_url, agent_proc):
    out = vqpu("run", GHZ, "--device", "fez", "--shots", "100", "--no-wait", url=redis_url)
    assert out.returncode == 0, out.stderr
    tid = out.stdout.strip()
    assert tid.startswith("fez.")
    waited = json.loads(vqpu("wait", tid, "--json", url=redis_url).stdout)
    assert waited["task_id"] == tid and waited["state"] == "completed"
    listed = json.loads(vqpu("tasks", "--json", url=redis_url).stdout)
    assert tid in [t["task_id"] for t in listed]


def test_python_file_input(seeded, redis_url, agent_proc, tmp_path):
    f = tmp_path / "bell.py"
    f.write_text("from qiskit import QuantumCircuit\nqc = QuantumCircuit(2)\nqc.h(0)\nqc.cx(0, 1)\nqc.measure_all()\n")
    out = vqpu("run", str(f), "--device", "fez", "--shots", "200", "--json", url=redis_url)
    assert out.returncode == 0, out.stderr
    assert sum(json.loads(out.stdout)["counts"].values()) == 200


def test_cancel_a_queued_task(seeded, redis_url):
    tid = vqpu("run", GHZ, "--device", "ideal", "--no-wait", url=redis_url).stdout.strip()
    out = vqpu("cancel", tid, url=redis_url)
    assert out.returncode == 0 and "cancelled" in out.stdout
    assert json.loads(vqpu("status", tid, "--json", url=redis_url).stdout)["state"] == "cancelled"
    waited = vqpu("wait", tid, url=redis_url)
    assert waited.returncode == 1 and "cancelled" in waited.stdout


@pytest.mark.parametrize(
    "args, words",
    [
        (["run", GHZ, "--device", "nosuch"], "unknown device 'nosuch'"),
        (["run", GHZ, "--shots", "0"], "shots must be at least 1"),
        (["run", GHZ, "--shots", "1000000000"], "over the limit"),
        (["run", "/nonexistent/circuit.qasm"], "circuit.qasm"),
        (["status", "fez.nosuchtask00"], "no task fez.nosuchtask00"),
        (["device", "update", "fez", "--calibration", "/nonexistent.json"], "nonexistent.json"),
    ],
)
def test_bad_input_is_one_line_and_a_nonzero_exit(seeded, redis_url, args, words):
    out = vqpu(*args, url=redis_url)
    assert out.returncode != 0
    assert words in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and out.stderr.startswith("vqpu: error: ")
    assert len(out.stderr.strip().splitlines()) <= 2


def test_unparsable_qasm_file(seeded, redis_url, tmp_path):
    f = tmp_path / "bad.qasm"
    f.write_text("OPENQASM 2.0;\nqreg q[2];\nnotagate q[0];\n")
    out = vqpu("run", str(f), "--device", "ideal", url=redis_url)
    assert out.returncode == 1 and "Traceback" not in out.stderr and out.stderr.startswith("vqpu: error: ")


def test_unreachable_redis(tmp_path):
    out = vqpu("devices", url=f"redis://127.0.0.1:{free_port()}/0")
    assert out.returncode == 1 and "cannot reach the control plane" in out.stderr and "Traceback" not in out.stderr


def test_device_update_publishes_a_new_snapshot_and_keeps_the_old(seeded, redis_url, tmp_path):
    from jupyter_vqpu.core import catalog

    conf, props = catalog.builtin_calibration("fez")
    props = json.loads(json.dumps(props))
    props["last_update_date"] = "2026-11-24T10:00:00+00:00"
    props["qubits"][0] = [dict(p, value=p["value"] * 0.5) if p["name"] == "T1" else p for p in props["qubits"][0]]
    f = tmp_path / "props_fez_new.json"
    f.write_text(json.dumps(props))
    old = seeded.devices(["fez"])[0]["snapshot_id"]
    out = vqpu("device", "update", "fez", "--calibration", str(f), url=redis_url)
    assert out.returncode == 0, out.stderr
    assert "version 2" in out.stdout
    listed = vqpu("device", "snapshots", "fez", url=redis_url).stdout.split()
    assert old in listed and len([w for w in listed if len(w) == 64]) == 2
    new = json.loads(vqpu("device", "show", "fez", url=redis_url).stdout)
    old_doc = json.loads(vqpu("device", "show", "fez", old, url=redis_url).stdout)
    assert new["qubits"][0]["t1"] == pytest.approx(old_doc["qubits"][0]["t1"] * 0.5)
    assert new["coupling_map"] == old_doc["coupling_map"] and new["version"] == 2


def test_recover_dry_run_changes_nothing(seeded, redis_url):
    out = vqpu("recover", "--dry-run", url=redis_url)
    assert out.returncode == 0 and "dry run" in out.stdout


def test_embedded_default_up_run_down(tmp_path):
    """The README's first command: no URL anywhere, the embedded default starts itself."""
    env = {"VQPU_HOME": str(tmp_path / "home")}
    up = vqpu("up", env=env)
    assert up.returncode == 0, up.stderr
    home = Path(env["VQPU_HOME"])
    try:
        assert (home / "password").stat().st_mode & 0o777 == 0o600
        assert "***" in up.stdout and (home / "password").read_text().strip() not in up.stdout
        pids = {f: (home / f).read_text() for f in ("redis.pid", "agent.pid")}
        again = vqpu("up", env=env)
        assert again.returncode == 0
        assert {f: (home / f).read_text() for f in pids} == pids, "a second `vqpu up` must reuse what runs"
        out = vqpu("run", GHZ, "--device", "fez", "--shots", "512", "--json", env=env)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["state"] == "completed"
        import redis

        from jupyter_vqpu.core import embedded

        os.environ["VQPU_HOME"] = env["VQPU_HOME"]
        try:
            client = redis.Redis.from_url(embedded.url())
            cfg = client.config_get("*")
            assert cfg["appendonly"] == "yes" and cfg["bind"] == "127.0.0.1"
            assert cfg["maxmemory-policy"] == "noeviction"
            with pytest.raises(redis.AuthenticationError):
                redis.Redis(port=client.connection_pool.connection_kwargs["port"]).ping()
        finally:
            del os.environ["VQPU_HOME"]
    finally:
        down = vqpu("down", env=env)
    assert down.returncode == 0 and "redis-server" in down.stdout and "agent" in down.stdout
    assert vqpu("down", env=env).stdout.strip() == "nothing was running"
