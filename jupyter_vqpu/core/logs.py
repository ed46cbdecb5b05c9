"""Log formats for the long-running processes (``vqpu agent``, the gateway).

``human`` (the default) is the one-line text format people read in a terminal.
``json`` writes one JSON object per line for a log pipeline (journald ->
Loki / Elasticsearch): the message, its level, logger and time, and every
structured field a log call passed with ``extra=`` at the top level, so a query
like ``task_id="fez.0k3j..."`` finds every line about one task on every agent.

Plain standard library on purpose: a formatter is thirty lines, and the
processes that use it should not depend on a logging package's API changes.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from jupyter_vqpu.core.keys import TASK_ID_RE

FORMATS = ("human", "json")
HUMAN_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def task_fields(task_id: str, attempt: int | None = None, device: str | None = None) -> dict[str, Any]:
    """The structured fields of a log line about one task: ``extra=task_fields(tid, attempt)``.

    The device is part of a task id, so callers need not pass it."""
    fields: dict[str, Any] = {"task_id": task_id}
    m = TASK_ID_RE.match(task_id or "")
    if device or m:
        fields["device"] = device or m.group(1)
    if attempt is not None:
        fields["attempt"] = int(attempt)
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (UTC, ISO 8601, ms), level, logger, message, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure(fmt: str = "human", level: int = logging.INFO, stream: Any = None) -> logging.Handler:
    """Send the root logger's records to ``stream`` (stderr) in ``fmt``; returns the handler.

    Replaces handlers an earlier configure() installed, so calling it twice is harmless."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; use one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(HUMAN_FORMAT))
    handler._vqpu = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_vqpu", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
