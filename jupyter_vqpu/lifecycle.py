"""Task states and which of them are final.

The transitions themselves live in the Lua scripts (one atomic step each);
this module only names them for Python code.
"""

from __future__ import annotations

from enum import Enum


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
