"""What a newcomer trips on in the first hour (issue 13), against a real redis-server, a real agent
and the real `vqpu` command: the ids people see are the ids people may type, a calibration change
can be rolled back, the Task answers the questions a Qiskit user asks, the CLI reads like one."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from jupyter_vqpu.core.client import Client
from jupyter_vqpu.core.errors import (
    AmbiguousReference,
    InvalidRequest,
    LimitExceeded,
    ResultTimeout,
    TaskNotFound,
    UnknownSnapshot,
)
from jupyter_vqpu.core.lifecycle import TaskState
from tests.agents import EchoExecutor, Running
from tests.cli_support import GHZ, vqpu
from tests.conftest import BELL_QASM2, GHZ3, REPO

pytestmark = pytest.mark.redis

#: What a rollback changes in a snapshot document; everything else is the restored calibration.
BOOKKEEPING = ("version", "created_at", "source")


def content(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in BOOKKEEPING}


def drift(cp, device: str = "fez") -> tuple[str, int]:
    """Publish a copy of the current snapshot with T1 halved (what the drift notebook does)."""
    base = json.loads(cp.snapshot_bytes(device))

    def build(version: int) -> dict:
        doc = json.loads(json.dumps(base))
        doc.update(version=version, source="test: T1 halved")
        for q in doc["qubits"]:
            if q.get("t1"):
                q["t1"] /= 2
        return doc

    return cp.publish(device, build)


# ------------------------------------------------------------------ snapshot references


def test_snapshot_references_people_see_are_accepted_everywhere(seeded, redis_url):
    cp = seeded
    sid = cp.devices(["fez"])[0]["snapshot_id"]
    new_sid, _ = drift(cp)
    client = Client(control=cp, owner="ada")
    for ref in (sid[:12], sid[:8], sid.upper()[:10], "v1", "1", "fez@v1", f"Fez@{sid[:12]}", sid):
        assert cp.resolve_snapshot("fez", ref) == sid, ref
        task = client.submit(BELL_QASM2, device="fez", shots=10, snapshot=ref)
        assert task.view["snapshot_id"] == sid and task.view["pinned"], ref
    assert cp.resolve_snapshot("fez", "v2") == new_sid
    # the document, by short id and by version, is the one published (hash-checked by Client.snapshot)
    assert client.snapshot("fez", "v1") == client.snapshot("fez", sid[:12]) == json.loads(cp.snapshot_bytes("fez", sid))

    with pytest.raises(UnknownSnapshot, match="no snapshot version 7; the newest is v2"):
        cp.resolve_snapshot("fez", "v7")
    with pytest.raises(UnknownSnapshot, match="no snapshot starting with"):
        cp.resolve_snapshot("fez", "0123abcd")
    with pytest.raises(UnknownSnapshot, match="invalid snapshot reference"):
        cp.resolve_snapshot("fez", "635e96")  # 6 hex digits: too short to be safe
    with pytest.raises(InvalidRequest, match="a snapshot of ideal, but the task is for fez"):
        client.submit(BELL_QASM2, device="fez", shots=10, snapshot="ideal@v1")


def test_an_ambiguous_snapshot_prefix_lists_the_candidates(seeded):
    cp = seeded
    k = cp.keys("fez")
    # Two ids that share their first 8 digits (sha256 will not make them for us): index entries suffice,
    # since resolution reads only the device's snapshot index.
    a, b = "abcdef01" + "1" * 56, "abcdef01" + "2" * 56
    cp.redis.zadd(k.snapshots, {a: 50, b: 51})
    with pytest.raises(AmbiguousReference) as info:
        cp.resolve_snapshot("fez", "abcdef01")
    assert a[:12] in info.value.message and b[:12] in info.value.message
    assert len(str(info.value).splitlines()) == 1
    assert cp.resolve_snapshot("fez", "abcdef012") == b and cp.resolve_snapshot("fez", "v50") == a


def test_references_cannot_smuggle_patterns_or_size_into_the_lookup(seeded):
    """Hostile references: glob characters never reach ZSCAN MATCH, sizes are bounded before any lookup."""
    cp = seeded
    client = Client(control=cp, owner="ada")
    mine = client.submit(BELL_QASM2, device="ideal", shots=1)
    for ref in ("*", "abcdef0*", "abcdef0[0-9a-f]", "?" * 12, "v-1", "v1e9", "fez@", "@v1", "x" * 10_000,
                "fez@fez@v1", "v1 v2", "0x12345678"):
        with pytest.raises(UnknownSnapshot):
            cp.resolve_snapshot("fez", ref)
    for ref in ("ideal.*", "ideal.m8[a-z]", "ideal." + "?" * 8, "ideal.", "*.abcd", "ideal.abc", "i" * 5000,
                "ideal.m8sj\x00", mine.id[:8] + "*"):
        with pytest.raises(TaskNotFound):
            client.task(ref)


# ------------------------------------------------------------------ rollback


def test_rollback_publishes_the_earlier_content_as_a_new_version(seeded, redis_url):
    cp = seeded
    v1 = json.loads(cp.snapshot_bytes("fez"))
    drifted_sid, _ = drift(cp)
    out = vqpu("device", "rollback", "FEZ", url=redis_url)
    assert out.returncode == 0, out.stderr
    assert "published v3" in out.stdout and "content of v1" in out.stdout
    now = cp.devices(["fez"])[0]
    current = json.loads(cp.snapshot_bytes("fez"))
    assert now["snapshot_version"] == 3 and content(current) == content(v1) and current["version"] == 3
    assert "rollback to v1" in current["source"]
    # history is never rewritten: every version is still there, under its own id
    assert [v for v, _ in cp.snapshot_ids("fez")] == [1, 2, 3]
    assert json.loads(cp.snapshot_bytes("fez", drifted_sid))["version"] == 2

    listed = vqpu("device", "snapshots", "fez", url=redis_url)
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if re.match(r"[* ] v\d", line)]
    assert len(rows) == 3 and rows[-1].startswith("* v3") and not rows[0].startswith("*")
    assert v1["created_at"].replace("T", " ").removesuffix("Z") in rows[0]  # dates are shown
    # --to names any earlier one; naming the current one is refused in one line
    again = vqpu("device", "rollback", "fez", "--to", "v2", url=redis_url)
    assert again.returncode == 0 and "content of v2" in again.stdout, again.stderr
    same = vqpu("device", "rollback", "fez", "--to", "v4", url=redis_url)
    assert same.returncode == 1 and "already the current one" in same.stderr


# ------------------------------------------------------------------ task references


def test_task_prefixes_resolve_among_your_own_tasks(seeded):
    cp = seeded
    ada = Client(control=cp, owner="ada")
    bob = Client(control=cp, owner="bob")
    first = ada.submit(BELL_QASM2, device="ideal", shots=10)
    second = ada.submit(BELL_QASM2, device="ideal", shots=10)
    theirs = bob.submit(BELL_QASM2, device="ideal", shots=10)
    common = 0  # time-ordered ids: tasks submitted together share a long prefix
    while first.id[common] == second.id[common]:
        common += 1
    assert ada.task(first.id[:common + 1]).id == first.id
    assert ada.cancel(second.id[:common + 1])["task_id"] == second.id
    with pytest.raises(AmbiguousReference) as info:
        ada.task(first.id[:common])
    assert first.id in info.value.message and second.id in info.value.message and theirs.id not in info.value.message
    # a prefix finds only the asker's tasks; a whole id is taken as it is
    with pytest.raises(TaskNotFound):
        bob.task(first.id[:common + 1])
    assert bob.task(theirs.id).id == theirs.id


# ------------------------------------------------------------------ the Qiskit-familiar Task


def test_task_has_the_surface_of_a_qiskit_job(seeded, redis_url, tmp_path):
    cp = seeded
    client = Client(control=cp, owner="ada")
    task = client.submit(GHZ3, device="ideal", shots=64, seed=1, tags=["ghz", "week3", "ghz"], name="ghz-3")
    assert task.job_id() == task.id and task.tags == ["ghz", "week3"]
    assert task.status() is TaskState.QUEUED and not task.done() and not task.in_final_state()
    with pytest.raises(ResultTimeout):
        task.wait_for_final_state(timeout=0.5)  # no agent serves yet
    assert client.list()[0]["tags"] == ["ghz", "week3"]
    running = Running(redis_url, EchoExecutor(), tmp_path / "work")
    try:
        assert task.wait_for_final_state(timeout=120) is TaskState.COMPLETED
    finally:
        running.stop()
    assert task.done() and task.status() is TaskState.COMPLETED and task.view["state"] == "completed"
    usage = task.usage()
    assert usage["shots"] == 64 and "simulated_seconds" in usage and usage["total_seconds"] >= 0
    with pytest.raises(LimitExceeded, match="11 tags is over the limit of 10"):
        client.submit(GHZ3, device="ideal", tags=[f"t{i}" for i in range(11)])
    with pytest.raises(InvalidRequest, match="printable"):
        client.submit(GHZ3, device="ideal", tags=["bad\nline"])
    with pytest.raises(InvalidRequest, match="list of text labels"):
        client.submit(GHZ3, device="ideal", tags="ghz")


def test_interrupting_result_says_the_task_goes_on_and_how_to_cancel(seeded):
    from jupyter_vqpu.core.task import Task, WaitInterrupted

    task = Client(control=seeded, owner="ada").submit(GHZ3, device="ideal", shots=10)

    class Interrupted:
        """The transport as it is when Ctrl-C lands in its blocking read."""

        def watch(self, task_id, timeout=None, on_idle=None):
            yield task.view
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as info:  # still a KeyboardInterrupt, for `except KeyboardInterrupt`
        Task(Interrupted(), task.view).result()
    assert isinstance(info.value, WaitInterrupted) and info.value.__cause__ is None and info.value.__suppress_context__
    text = str(info.value)
    assert f"task {task.id} is still queued" in text and f"vqpu cancel {task.id}" in text
    assert seeded.task(task.id)["state"] == "queued"


def test_a_single_circuit_qiskit_job_id_is_its_task_id(seeded, redis_url, tmp_path):
    from qiskit import QuantumCircuit

    from jupyter_vqpu.kernel.backend import get_backend

    client = Client(control=seeded, owner="ada")
    backend = get_backend("Fez", client=client)
    qc = QuantumCircuit(1)
    qc.x(0)
    qc.measure_all()
    running = Running(redis_url, EchoExecutor(), tmp_path / "work", devices=("fez",))
    try:
        job = backend.run(qc, shots=16)
        assert [t["task_id"] for t in client.list()] == [job.job_id()]
        assert job.result(timeout=120).success
        # A run of several circuits: its id is findable in `vqpu tasks` too (as the task's id, or a job:<id> tag).
        pair = backend.run([qc, qc], shots=16)
        listed = client.list()
        assert any(t["task_id"] == pair.job_id() or f"job:{pair.job_id()}" in t["tags"] for t in listed), listed
        assert pair.result(timeout=120).success
    finally:
        running.stop()


# ------------------------------------------------------------------ the CLI


def test_cli_reads_like_a_tool(seeded, redis_url):
    cp = seeded
    Client(control=cp).submit(GHZ3, device="ideal", shots=10, name="my-ghz", tags=["week3"])
    run = vqpu("run", GHZ, "--device", "IDEAL", "--no-wait", url=redis_url)  # names match case-insensitively
    assert run.returncode == 0 and run.stdout.startswith("ideal."), run.stderr
    tasks = vqpu("tasks", url=redis_url)
    header, *rows = tasks.stdout.splitlines()
    assert header.split()[:5] == ["task", "name", "state", "shots", "submitted"], header
    assert any("my-ghz #week3" in r and "just now" in r for r in rows), rows
    devices = vqpu("devices", url=redis_url).stdout
    assert " ago" in devices or "just now" in devices
    # a prefix of the id is enough
    tid = run.stdout.strip()
    status = vqpu("status", tid[:-6], "--json", url=redis_url)
    assert status.returncode == 0 and json.loads(status.stdout)["task_id"] == tid, status.stderr


def test_cli_json_errors_are_json(seeded, redis_url):
    out = vqpu("run", GHZ, "--device", "nosuch", "--json", url=redis_url)
    assert out.returncode == 1
    err = json.loads(out.stdout)
    assert err["error"] == "unknown_device" and "nosuch" in err["message"] and err["hint"]
    out = vqpu("run", GHZ, "--snapshot", "v99", "--json", url=redis_url)
    assert out.returncode == 1 and json.loads(out.stdout)["error"] == "unknown_snapshot"
    out = vqpu("run", GHZ, "--shots", "many", "--json", url=redis_url)  # a usage error, from argparse
    err = json.loads(out.stdout)
    assert out.returncode == 2 and err["error"] == "usage" and "--shots" in err["message"] and "--help" in err["hint"]


def test_cli_output_into_a_closed_pipe_is_no_traceback(seeded, redis_url):
    """`vqpu tasks | head -1`: the reader is gone before the listing is written. Its end of the pipe is
    closed before the CLI starts, so every write the CLI makes meets a closed pipe (a reader that reads
    a line first races the CLI: a listing that fits in the pipe plus the reader's buffer never fails)."""
    import os

    client = Client(control=seeded)
    for i in range(40):
        client.submit(GHZ3, device="ideal", shots=10, name=f"a-fairly-long-task-name-{i:03d}", tags=["pipe-test"])
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {k: v for k, v in os.environ.items() if k != "VQPU_REDIS_URL"}
    proc = subprocess.Popen([sys.executable, "-m", "jupyter_vqpu.cli", "tasks", "--redis-url", redis_url],
                            stdout=write_end, stderr=subprocess.PIPE, cwd=REPO, env=env)
    os.close(write_end)
    err = proc.stderr.read().decode()
    proc.wait(120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.returncode == 141, err


def test_an_openqasm3_syntax_error_names_line_and_column(seeded, redis_url, tmp_path):
    bad = tmp_path / "bad.qasm"
    bad.write_text('OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\nh q[0]\ncx q[0], q[1];\n')
    out = vqpu("run", str(bad), "--device", "ideal", "--json", url=redis_url)
    assert out.returncode == 1
    err = json.loads(out.stdout)
    assert err["error"] == "invalid_circuit" and "line " in err["message"] and "column " in err["message"], err
