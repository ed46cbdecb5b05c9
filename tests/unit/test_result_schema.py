"""The runner's result schema (jupyter_vqpu/core/result.py), checked by the agent before finish."""

from __future__ import annotations

from pathlib import Path

import pytest

from jupyter_vqpu.core import result as R
from jupyter_vqpu_agent import bundle
from jupyter_vqpu_agent.executors.base import Job, report_result

SID = "a" * 64


def ok(**over):
    base = {"ok": True, "task_id": "fez.x", "attempt": 1, "snapshot_id": SID, "shots": 10, "seed": 7,
            "counts": {"00": 4, "11": 6}, "layout": [3, 4], "final_layout": [3, 4], "physical_qubits": [3, 4],
            "num_qubits": 2, "simulator": {"method": "density_matrix", "device": "CPU", "reason": "no GPU",
                                           "aer_version": "0.17", "qiskit_version": "2.1"},
            "timings": {"load": 0.1, "transpile": 0.2, "noise_model": 0.0, "simulate": 0.3, "total": 0.6}}
    base.update(over)
    return base


def test_a_runner_shaped_result_passes():
    assert R.problem(ok(), shots=10) is None
    assert R.problem(ok(counts={"01 1": 10}), shots=10) is None  # two classical registers
    assert R.problem({"ok": False, "task_id": "fez.x", "attempt": 1, "reason": "invalid_circuit",
                      "error": "line 3: no such gate"}) is None


@pytest.mark.parametrize("result,words", [
    ([1, 2, 3], "JSON list, not an object"),
    ("zzz", "JSON str, not an object"),
    (None, "JSON NoneType"),
    ({"counts": {"0": 10}}, "'ok' must be true or false"),
    ({"ok": "yes"}, "'ok' must be true or false"),
    (ok(counts="zzz"), "'counts' must be an object"),
    (ok(counts=[["00", 10]]), "'counts' must be an object"),
    (ok(counts={"00": 4, "11": 5}), "sum to 9, not to the 10 shots"),
    (ok(counts={"00": 11, "11": -1}), "whole number >= 0"),
    (ok(counts={"00": 4.0, "11": 6}), "whole number >= 0"),
    (ok(counts={"00": True, "11": 9}), "whole number >= 0"),
    (ok(counts={"0x3": 10}), "not a bitstring"),
    (ok(counts={"<script>": 10}), "not a bitstring"),
    (ok(counts={str(i): 1 for i in range(11)}), "more than the 10 shots"),
    (ok(shots="10"), "'shots' must be a whole number"),
    (ok(shots=20, counts={"0": 20}), "for 20 shots but the task asked for 10"),
    (ok(snapshot_id=5), "'snapshot_id'"),
    (ok(snapshot_id="a" * 129), "'snapshot_id'"),
    (ok(timings={"total": "fast"}), "'timings' must be an object of seconds"),
    (ok(layout="0,1"), "'layout' must be a list"),
    (ok(attempt="1"), "'attempt' must be a whole number"),
    ({"ok": False, "error": {"nested": 1}}, "'error' of a failed result must be text"),
    (ok(transpiled_qasm=["OPENQASM 3.0;"]), "'transpiled_qasm' must be text"),
    (ok(transpiled_qasm="x" * (R.MAX_TRANSPILED_QASM_CHARS + 1)), "'transpiled_qasm' must be text of at most"),
])
def test_off_schema_results_say_what_is_wrong(result, words):
    problem = R.problem(result, shots=10)
    assert problem is not None and words in problem, problem
    assert "\n" not in problem and len(problem) < 300


def test_a_huge_key_is_refused_before_the_pattern_runs():
    problem = R.problem(ok(counts={"0" * (R.MAX_BITSTRING_CHARS + 1): 10}), shots=10)
    assert problem and "not a bitstring" in problem


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def finished(self, job, result):
        self.events.append(("finished", result["counts"]))

    def failed(self, job, reason, message):
        self.events.append(("failed", reason, message))


def _job(tmp_path: Path, shots: int = 10) -> Job:
    spec = bundle.TaskSpec(task_id="fez.x", device="fez", attempt=1, snapshot_id=SID, shots=shots,
                           circuit_format="qasm3")
    bundle.stage(tmp_path, spec, b"{}", "x")
    return Job(task_id="fez.x", attempt=1, bundle_dir=tmp_path, timeout_s=60)


def test_report_result_fails_off_schema_results_with_bad_result(tmp_path):
    rec = Recorder()
    job = _job(tmp_path)
    report_result(rec, job, ok())
    report_result(rec, job, [1, 2])
    report_result(rec, job, ok(counts="zzz"))
    report_result(rec, job, ok(shots=20, counts={"0": 20}))  # the bundle's task asked for 10
    report_result(rec, job, None)
    assert rec.events[0] == ("finished", {"00": 4, "11": 6})
    assert [e[1] for e in rec.events[1:]] == ["bad_result", "bad_result", "bad_result", "runner_error"]
    assert "not an object" in rec.events[1][2] and "'counts' must be an object" in rec.events[2][2]


def test_an_oversized_result_file_is_refused_unread(tmp_path, monkeypatch):
    import jupyter_vqpu_agent.bundle as B

    monkeypatch.setattr(B, "MAX_RESULT_BYTES", 100)
    (tmp_path / bundle.RESULT_FILE).write_text('{"ok": true, "pad": "' + "x" * 200 + '"}')
    result = bundle.read_result(tmp_path)
    assert result["ok"] is False and result["reason"] == "bad_result" and "over the limit of 100" in result["error"]
