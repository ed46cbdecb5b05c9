"""Task states and which of them are final.

The transitions themselves live in the Lua scripts (one atomic step each);
this module only names them for Python code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from enum import Enum
from typing import Any


class TaskState(str, Enum):
    QUEUED = "queued"
    CLAIMED = "claimed"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL_STATES

    @property
    def held(self) -> bool:
        """Held by an agent under a lease."""
        return self in HELD_STATES


FINAL_STATES = frozenset({TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED})
HELD_STATES = frozenset({TaskState.CLAIMED, TaskState.SCHEDULED, TaskState.RUNNING})
ORDER = [s.value for s in TaskState]


def follow(task_id: str, status: Callable[[], dict[str, Any]], wait_for_change: Callable[[float], bool],
           timeout: float | None, hint: str) -> Iterator[dict[str, Any]]:
    """Yield a task's view now and after each change, until it is final.

    ``wait_for_change(seconds)`` blocks (on an events stream or a long-poll, never
    a busy loop) for at most that long and says whether the task may have changed.
    Shared by the Redis and the HTTP transports. Raises ResultTimeout."""
    from .errors import ResultTimeout

    final = {s.value for s in FINAL_STATES}
    deadline = None if timeout is None else time.monotonic() + timeout
    view = status()
    yield view
    while view.get("state") not in final:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise ResultTimeout(f"task {task_id} is still {view.get('state')} after {timeout:g} s", hint)
        if wait_for_change(20.0 if remaining is None else min(20.0, remaining)):
            new = status()
            if new != view:
                view = new
                yield view
