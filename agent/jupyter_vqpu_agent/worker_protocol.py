"""The warm-worker line protocol, both ends: a worker serving bundles, and its parent reading it.

A warm worker (``python -m jupyter_vqpu_agent.worker``, or the pilot's
``python -m jupyter_vqpu_agent.spool --child MODULE``) reads bundle directories
on stdin, one per line, and answers on its ORIGINAL stdout, one JSON object per
line: ``{"ready": true, "pid": N}`` once warm, then ``{"bundle": PATH, "ok": BOOL}``
per input line. Before anything runs, fd 1 (and ``sys.stdout``) is pointed at
stderr, so whatever Qiskit, Aer or a runner prints cannot corrupt the protocol;
a parent still ignores any line that does not start with ``{``.

The parents are the local executor (:func:`read_message`, one worker per slot)
and the pilot (:func:`next_message` on its own buffers, many workers under one
selector). Standard library only: the pilot and the job processes import it.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

#: What a worker runs per bundle: True when the runner reported success.
RunBundle = Callable[[Path], bool]


def protocol_stream() -> TextIO:
    """Keep the real stdout for the protocol and point fd 1 (and sys.stdout) at stderr."""
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    sys.stdout.flush()
    os.dup2(2, 1)
    return proto


def serve(load: Callable[[], RunBundle], label: str) -> int:
    """The worker side: redirect stdout, ``load()`` (imports, warm-up: anything it prints goes to
    stderr), say ready, then run each bundle path read from stdin and answer for it.

    A bundle that raises (or exits) is answered ``ok: false`` with one line on stderr naming
    ``label``; the worker itself keeps serving until stdin closes."""
    proto = protocol_stream()
    run = load()
    _send(proto, {"ready": True, "pid": os.getpid()})
    for line in sys.stdin:
        path = line.strip()
        if not path:
            continue
        try:
            ok = bool(run(Path(path)))
        except SystemExit as exc:  # a runner's main() may exit with its status
            ok = exc.code in (0, None)
        except Exception as exc:  # the runner already guards; this only keeps the worker alive
            print(f"{label}: {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
            ok = False
        sys.stdout.flush()
        sys.stderr.flush()
        _send(proto, {"bundle": path, "ok": ok})
        release_freed_memory()  # after the answer: the next task waits for it, this one does not
    return 0


def release_freed_memory() -> None:
    """Hand the heap that the last task freed back to the OS (glibc's ``malloc_trim``).

    A big task's heap (Aer's threads allocate and free in their own malloc arenas) may be kept by
    glibc after it is freed, so a long-lived worker's RSS can step up after a big task and stay
    there though its caches are bounded (docs/performance.md: +155 MB over 1,000 tasks without
    this, +26 MB with it). Trimming costs about a millisecond; without glibc it does nothing."""
    global _TRIM
    if _TRIM is None:
        try:
            import ctypes
            import ctypes.util

            _TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM: Any = None


def _send(proto: TextIO, message: dict[str, Any]) -> None:
    proto.write(json.dumps(message) + "\n")
    proto.flush()


def next_message(buf: bytearray) -> dict[str, Any] | None:
    """The first complete protocol message in ``buf`` (consumed from it), or None when no whole
    message line is there yet. Lines that are not JSON objects are dropped."""
    while b"\n" in buf:
        i = buf.index(b"\n")
        raw = bytes(buf[:i]).decode(errors="replace")
        del buf[: i + 1]
        if not raw.startswith("{"):
            continue
        try:
            message = json.loads(raw)
        except ValueError:
            continue
        if isinstance(message, dict):
            return message
    return None


def read_message(proc: subprocess.Popen, deadline: float) -> dict[str, Any] | None:
    """The next protocol message from a worker process, or None on EOF or at the ``deadline``
    (``time.monotonic()``).

    Reads the raw pipe under select() with a buffer of its own kept on ``proc``, so a
    message already read ahead is never stuck behind a blocking select."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf: bytearray = proc.__dict__.setdefault("_vqpu_buf", bytearray())
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            message = next_message(buf)
            if message is not None:
                return message
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(timeout=remaining):
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            buf += chunk
