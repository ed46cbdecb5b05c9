"""A runner that writes garbage result files, for the chaos harness: does the agent refuse them?

    python -m benchmarks.garbage_runner agent [vqpu agent options]
        an agent exactly like ``vqpu agent --executor local``, except that its jobs run this module
    python -m benchmarks.garbage_runner            a warm worker (what such an agent starts)
    python -m benchmarks.garbage_runner BUNDLE     a cold runner (``--cold``)

The job runs the real runner, then, for one task in ``$CHAOS_GARBAGE_EVERY`` (default 2,
chosen by a hash of the task id, so every attempt of a task agrees), replaces the
successful result.json with one kind of garbage a broken or hostile job could leave: not
an object, not JSON at all, counts that are not a mapping, counts that do not sum to the
shots, a negative count, a bitstring that is not one. Each garbled attempt is appended to
``$CHAOS_GARBAGE_LOG`` (one JSON line), which is how the harness knows what to expect: the
task fails with reason ``bad_result``, never completes, never sticks.

A test helper, not shipped code: it lives beside the harness and is found on PYTHONPATH
from the repository root, which the agent passes on to its jobs.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

MODULE = "benchmarks.garbage_runner"
KINDS = ("not_an_object", "not_json", "counts_not_a_mapping", "counts_wrong_sum", "negative_count",
         "bad_bitstring")


def choice(task_id: str, every: int) -> str | None:
    """The kind of garbage this task gets, or None for a task left alone."""
    digest = hashlib.sha256(task_id.encode()).digest()
    if int.from_bytes(digest[:4], "big") % max(1, every):
        return None
    return KINDS[int.from_bytes(digest[4:8], "big") % len(KINDS)]


def garbage(kind: str, result: dict[str, Any]) -> bytes:
    """A result.json of ``kind`` built from a real (successful) ``result``."""
    if kind == "not_an_object":
        return json.dumps(["not", "an", "object"]).encode()
    if kind == "not_json":
        return b"\x00{garbage"
    bad = dict(result)
    counts = dict(result.get("counts") or {"00": result.get("shots", 1)})
    if kind == "counts_not_a_mapping":
        bad["counts"] = "zzz"
    elif kind == "counts_wrong_sum":
        bad["counts"] = {k: v * 2 + 1 for k, v in counts.items()}
    elif kind == "negative_count":
        first = next(iter(counts))
        bad["counts"] = {**counts, first: -5}
    else:  # bad_bitstring
        bad["counts"] = {"zz": sum(counts.values())}
    return json.dumps(bad).encode()


def run_bundle(bundle_dir: Path) -> dict:
    """The real runner, then (for a chosen task) garbage in place of its result.json."""
    from jupyter_vqpu_agent import bundle

    result = _real_run_bundle(bundle_dir)
    task_id = result.get("task_id")
    kind = choice(task_id, int(os.environ.get("CHAOS_GARBAGE_EVERY", "2"))) if task_id and result.get("ok") else None
    if kind is not None:
        bundle.write_atomic(Path(bundle_dir) / bundle.RESULT_FILE, garbage(kind, result))
        log = os.environ.get("CHAOS_GARBAGE_LOG")
        if log:
            line = json.dumps({"task": task_id, "attempt": result.get("attempt"), "kind": kind}) + "\n"
            fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)  # one write: whole lines
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
    return result  # the worker protocol says what the runner did; the agent reads result.json


def _patch_runner() -> None:
    """Make ``jupyter_vqpu_agent.runner.run_bundle`` ours, so the real worker loop runs it."""
    global _real_run_bundle
    from jupyter_vqpu_agent import runner

    if runner.run_bundle is not run_bundle:
        _real_run_bundle = runner.run_bundle
        runner.run_bundle = run_bundle


_real_run_bundle = None  # set by _patch_runner


def agent_main(argv: list[str]) -> int:
    """``vqpu agent`` with a local executor whose workers (and cold runners) are this module."""
    import jupyter_vqpu_agent.executors as executors
    from jupyter_vqpu import cli
    from jupyter_vqpu_agent.executors.local import LocalExecutor

    def make_executor(name: str, args=None, work_root: Path | None = None) -> LocalExecutor:
        if name != "local":
            raise SystemExit("the garbage agent runs the local executor only")
        return LocalExecutor(slots=max(1, getattr(args, "capacity", 1)), warm=not getattr(args, "cold", False),
                             log_dir=work_root, runner_module=MODULE, worker_module=MODULE)

    executors.make_executor = make_executor  # cmd_agent looks it up when it runs
    return cli.main(["agent", *argv])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "agent":
        return agent_main(args[1:])
    _patch_runner()
    if args:
        from jupyter_vqpu_agent import runner

        return runner.main(args)
    from jupyter_vqpu_agent import worker

    return worker.main()


if __name__ == "__main__":
    sys.exit(main())
