"""The runner's result schema: what a job's ``result.json`` must look like before it is stored.

The runner (``jupyter_vqpu_agent.runner.run_bundle``) writes one JSON object:

    ok              true | false
    task_id, attempt  the bundle's task id (text) and attempt (int), as in task.json
    on success:
      snapshot_id   the id of the snapshot the job used (the agent checks it is the bound one)
      shots         int >= 1, the shots asked for
      counts        {bitstring: int >= 0}, bitstrings of '0'/'1' (registers separated by spaces),
                    summing to ``shots``
      seed          int | null;  num_qubits int;  layout, final_layout, physical_qubits: lists of int
      simulator     {method, device, reason, aer_version, qiskit_version, ...}: text (also why,
                    estimates, noise_scope, aer_device: where Aer says it ran, custatevec)
      timings       {load, transpile, noise_model, simulate, total}: seconds
      transpiled_qasm  optional: the transpiled circuit as OpenQASM 3 text, at most
                    MAX_TRANSPILED_QASM_CHARS (the panel's detail view shows it)
      experiments   a task of several circuits: one object per circuit, in order, each with
                    the per-circuit fields above (shots, counts, seed, layouts, ...); the top
                    level then describes the first circuit
    on failure:
      reason        a short code (invalid_circuit, runner_error, ...)
      error         one readable line

The job runs a user's circuit, so its output is checked here, by the agent,
before the fenced ``finish`` stores it: a result that breaks the schema fails
the task with reason ``bad_result`` and says what is wrong, instead of being
stored for a user to trip over (or leaving the task stuck). The bounds run
before anything walks the data.
"""

from __future__ import annotations

import re
from typing import Any

#: Largest result.json the agent reads (counts of up to ~1e6 distinct outcomes of 30 bits fit).
MAX_RESULT_BYTES = 64 * 1024 * 1024
MAX_BITSTRING_CHARS = 4096
#: Longest transpiled circuit (OpenQASM 3 text) a result may carry; the runner leaves longer ones out.
MAX_TRANSPILED_QASM_CHARS = 256 * 1024
#: Most circuits one task's result may hold (the control plane's max_circuits is lower).
MAX_EXPERIMENTS = 100_000
_BITSTRING_RE = re.compile(r"^[01]+( [01]+)*$")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def problem(result: Any, shots: int | None = None) -> str | None:
    """What is wrong with a parsed result.json (one line), or None when it follows the schema.

    ``shots``, when known (from the task), is what the counts must sum to."""
    if not isinstance(result, dict):
        return f"the result is a JSON {type(result).__name__}, not an object"
    ok = result.get("ok")
    if not isinstance(ok, bool):
        return f"'ok' must be true or false, got {type(ok).__name__}"
    for name in ("task_id",):
        if result.get(name) is not None and not isinstance(result[name], str):
            return f"'{name}' must be text"
    if result.get("attempt") is not None and not _int(result["attempt"]):
        return "'attempt' must be a whole number"
    if not ok:
        for name in ("reason", "error"):
            if result.get(name) is not None and not isinstance(result[name], str):
                return f"'{name}' of a failed result must be text"
        return None
    return _success_problem(result, shots)


def _success_problem(result: dict, shots: int | None) -> str | None:
    sid = result.get("snapshot_id")
    if not isinstance(sid, str) or not 0 < len(sid) <= 128:  # the agent then checks it is the bound one
        return "'snapshot_id' must be the id of a snapshot (text)"
    got_shots = result.get("shots")
    if not _int(got_shots) or got_shots < 1:
        return f"'shots' must be a whole number >= 1, got {got_shots!r}"[:200]
    if shots is not None and got_shots != shots:
        return f"the result is for {got_shots} shots but the task asked for {shots}"
    counts = result.get("counts")
    if not isinstance(counts, dict):
        return f"'counts' must be an object mapping bitstrings to counts, got {type(counts).__name__}"
    if len(counts) > got_shots:
        return f"'counts' has {len(counts)} outcomes, more than the {got_shots} shots"
    total = 0
    for key, value in counts.items():
        if len(key) > MAX_BITSTRING_CHARS or not _BITSTRING_RE.match(key):
            return f"'counts' key {key[:40]!r} is not a bitstring of 0 and 1"
        if not _int(value) or value < 0:
            return f"'counts' value for {key[:40]!r} must be a whole number >= 0, got {value!r}"[:200]
        total += value
    if total != got_shots:
        return f"'counts' sum to {total}, not to the {got_shots} shots"
    if result.get("seed") is not None and not _int(result["seed"]):
        return "'seed' must be a whole number or null"
    if result.get("num_qubits") is not None and not _int(result["num_qubits"]):
        return "'num_qubits' must be a whole number"
    for name in ("layout", "final_layout", "physical_qubits"):
        value = result.get(name)
        if value is not None and (not isinstance(value, list) or not all(_int(q) for q in value)):
            return f"'{name}' must be a list of whole numbers"
    experiments = result.get("experiments")
    if experiments is not None:
        if not isinstance(experiments, list) or not experiments or len(experiments) > MAX_EXPERIMENTS:
            return f"'experiments' must be a list of 1-{MAX_EXPERIMENTS} results, one per circuit"
        for i, experiment in enumerate(experiments):
            if not isinstance(experiment, dict) or "experiments" in experiment:
                return f"'experiments[{i}]' must be an object"
            wrong = _success_problem({**experiment, "snapshot_id": sid}, shots)
            if wrong:
                return f"experiments[{i}]: {wrong}"
    transpiled = result.get("transpiled_qasm")
    if transpiled is not None and (not isinstance(transpiled, str) or len(transpiled) > MAX_TRANSPILED_QASM_CHARS):
        return f"'transpiled_qasm' must be text of at most {MAX_TRANSPILED_QASM_CHARS} characters"
    for name, check, what in (("timings", _number, "seconds"), ("simulator", lambda v: isinstance(v, str) or v is None,
                                                                  "text")):
        value = result.get(name)
        if value is None:
            continue
        if not isinstance(value, dict) or not all(check(v) for v in value.values()):
            return f"'{name}' must be an object of {what}"
    return None
