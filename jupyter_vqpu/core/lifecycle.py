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
    """The one vocabulary of task states (prelude.lua's STATE table and labextension/src/states.ts
    are checked against it by tests/unit/test_state_vocabulary.py).

    A ``str`` enum, so a member equals its value: ``h["state"] in FINAL_STATES`` works on
    the plain strings Redis returns, and JSON carries the value."""

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


    def __str__(self) -> str:  # f"{state}" is the value, as with a plain string
        return self.value


#: States a task never leaves: no more events, no Cancel button, a follower stops here.
FINAL_STATES = frozenset({TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED})
#: Held by an agent under a lease and a fencing token (the reaper recovers these).
HELD_STATES = frozenset({TaskState.CLAIMED, TaskState.SCHEDULED, TaskState.RUNNING})
#: Where cancel.lua takes a task from: every state that is not final.
CANCELLABLE_STATES = frozenset(s for s in TaskState if s not in FINAL_STATES)
#: What finish.lua accepts as an attempt's outcome.
OUTCOMES = frozenset({TaskState.COMPLETED, TaskState.FAILED})
#: What progress.lua accepts as a move (besides a heartbeat).
PROGRESS_STATES = frozenset({TaskState.SCHEDULED, TaskState.RUNNING})
ORDER = [s.value for s in TaskState]
#: How often a follower re-reads a queued task whose own events are silent (its position moves).
QUEUED_REFRESH_S = 3.0


def follow(task_id: str, status: Callable[[], dict[str, Any]], wait_for_change: Callable[[float], bool],
           timeout: float | None, hint: str, on_idle: Callable[[], None] | None = None,
           idle_s: float = 1.0) -> Iterator[dict[str, Any]]:
    """Yield a task's view now and after each change, until it is final.

    ``wait_for_change(seconds)`` blocks (on an events stream or a long-poll, never
    a busy loop) for at most that long and says whether the task may have changed.
    With ``on_idle``, no wait is longer than ``idle_s`` and ``on_idle()`` runs after
    each one that brought no change (a waiting widget's clock). Shared by the
    Redis and the HTTP transports. Raises ResultTimeout."""
    from jupyter_vqpu.core.errors import ResultTimeout

    deadline = None if timeout is None else time.monotonic() + timeout
    view = status()
    yield view
    while view.get("state") not in FINAL_STATES:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise ResultTimeout(f"task {task_id} is still {view.get('state')} after {timeout:g} s", hint)
        # A queued task's position moves with other users' claims and submissions (fair share),
        # which are not its own events: look again every few seconds while it waits.
        queued = view.get("state") == TaskState.QUEUED
        wait = QUEUED_REFRESH_S if queued else 20.0
        if on_idle is not None:
            wait = min(wait, idle_s)
        new = view
        if wait_for_change(wait if remaining is None else min(wait, remaining)) or queued:
            new = status()
        if new != view:
            view = new
            yield view
        elif on_idle is not None:
            on_idle()
