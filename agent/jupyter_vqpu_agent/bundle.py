"""The hermetic job bundle: the only thing a job reads, and its result file.

A bundle is a directory the compute node can see. It holds everything one
attempt of one task needs, so that the job never talks to the control plane:

    task.json       what to run (ids, shots, seed, options, file names)
    snapshot.json   the bound device snapshot, byte-for-byte as published
    circuit.qasm    the circuit as text (OpenQASM 2/3, or base64 QPY: task.json says which)
    circuits.json   a task of several circuits: [[format, text], ...] in order (one file, one
                    fsync; circuit.qasm is then the first, for anyone reading the bundle by hand)
    result.json     written by the runner, atomically, when it ends

This module is shared by the agent (which writes bundles and reads results)
and the runner (which reads bundles and writes results). It imports neither
Redis nor Jupyter.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jupyter_vqpu.core.result import MAX_RESULT_BYTES
from jupyter_vqpu_agent.private import make_dirs, write_atomic

TASK_FILE = "task.json"
SNAPSHOT_FILE = "snapshot.json"
CIRCUIT_FILE = "circuit.qasm"
CIRCUITS_FILE = "circuits.json"
RESULT_FILE = "result.json"
STDOUT_FILE = "runner.out"
STDERR_FILE = "runner.err"


@dataclass
class TaskSpec:
    """What the runner needs to know about the task; mirrors task.json."""

    task_id: str
    device: str
    attempt: int
    snapshot_id: str
    shots: int
    circuit_format: str  # "qasm2" | "qasm3" | "qpy"
    seed: int | None = None
    optimization_level: int = 2
    options: dict[str, Any] = field(default_factory=dict)
    circuit_file: str = CIRCUIT_FILE
    snapshot_file: str = SNAPSHOT_FILE
    #: a task of several circuits: the file that holds them all ('' : the one circuit_file)
    circuits_file: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSpec:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def batch_of(fields: dict[str, str]) -> list[tuple[str, str]] | None:
    """A task's circuits as (format, text) from its fields, or None for a task of one circuit.

    The control plane wrote the field (a JSON list of [format, text]) after parsing every entry."""
    raw = fields.get("circuits")
    if not raw:
        return None
    entries = json.loads(raw)
    if not isinstance(entries, list) or not all(isinstance(e, list) and len(e) == 2 and all(isinstance(x, str)
                                                                                          for x in e) for e in entries):
        raise ValueError("the task's circuits field is not a list of [format, text]")
    return [(e[0], e[1]) for e in entries]


def stage(bundle_dir: Path, spec: TaskSpec, snapshot_bytes: bytes, circuit_text: str,
          batch: list[tuple[str, str]] | None = None) -> Path:
    """Create a bundle directory for one attempt (0700, as is every directory it creates on the
    way). Re-staging the same attempt overwrites it. ``batch``: all of a task's circuits as
    (format, text), one file each, listed in task.json."""
    make_dirs(bundle_dir)
    write_atomic(bundle_dir / spec.snapshot_file, snapshot_bytes)
    write_atomic(bundle_dir / spec.circuit_file, circuit_text.encode())
    if batch:
        spec.circuits_file = CIRCUITS_FILE
        write_atomic(bundle_dir / CIRCUITS_FILE, json.dumps([list(e) for e in batch]).encode())
    # task.json last: its presence marks a complete bundle.
    write_atomic(bundle_dir / TASK_FILE, json.dumps(asdict(spec), sort_keys=True).encode())
    stale = bundle_dir / RESULT_FILE
    if stale.exists():
        stale.unlink()
    return bundle_dir


def read_spec(bundle_dir: Path) -> TaskSpec:
    return TaskSpec.from_dict(json.loads((bundle_dir / TASK_FILE).read_text()))


def read_circuits(bundle_dir: Path, spec: TaskSpec) -> list[tuple[str, str]]:
    """(format, text) of every circuit the bundle runs, in order (one for a single-circuit task)."""
    if not spec.circuits_file:
        return [(spec.circuit_format, (bundle_dir / spec.circuit_file).read_text(encoding="utf-8"))]
    return batch_of({"circuits": (bundle_dir / spec.circuits_file).read_text(encoding="utf-8")}) or []


def write_result(bundle_dir: Path, result: dict[str, Any]) -> None:
    write_atomic(bundle_dir / RESULT_FILE, json.dumps(result, sort_keys=True).encode())


def read_result(bundle_dir: Path) -> dict[str, Any] | None:
    """The runner's result, or None when the runner left none (it crashed or was killed)."""
    path = bundle_dir / RESULT_FILE
    try:
        size = path.stat().st_size
        if size > MAX_RESULT_BYTES:  # bounded before it is read or parsed
            return {"ok": False, "reason": "bad_result",
                    "error": f"the result file is {size} bytes, over the limit of {MAX_RESULT_BYTES}"}
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:  # not JSON, not UTF-8: what the job wrote is not a result
        return {"ok": False, "error": f"the result file is not JSON: {exc}", "reason": "bad_result"}
    except OSError as exc:
        return {"ok": False, "error": f"unreadable result file: {exc}", "reason": "runner_error"}


def tail(path: Path, max_bytes: int = 2000) -> str:
    """The end of a log file, for failure messages."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            return fh.read().decode(errors="replace").strip()
    except OSError:
        return ""
