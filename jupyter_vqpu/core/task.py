"""The task handle every transport hands out, and the transport it needs.

Pure Python on purpose: the kernel's HTTP transport and the operator's Redis
``Client`` both return this ``Task``, and the kernel must not import redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from jupyter_vqpu.core.errors import TaskCancelled, TaskFailed


class Transport(Protocol):
    def status(self, task_id: str) -> dict[str, Any]: ...
    def wait(self, task_id: str, timeout: float | None = None) -> dict[str, Any]: ...
    def watch(self, task_id: str, timeout: float | None = None) -> Iterator[dict[str, Any]]: ...
    def fetch_result(self, task_id: str) -> dict[str, Any] | None: ...
    def cancel(self, task_id: str) -> dict[str, Any]: ...


def merge_result(view: dict[str, Any], result: dict[str, Any] | None) -> dict[str, Any]:
    """One task's final record: its view plus what the runner measured."""
    out = dict(view)
    if result:
        for key in ("counts", "layout", "timings", "simulator", "seed", "num_qubits"):
            if key in result:
                out[key] = result[key]
    return out


def raise_for_state(record: dict[str, Any]) -> dict[str, Any]:
    state = record.get("state")
    tid = record.get("task_id")
    if state == "failed":
        raise TaskFailed(f"task {tid} failed ({record.get('reason')}): {record.get('error')}",
                         f"see `vqpu status {tid}` for its history")
    if state == "cancelled":
        raise TaskCancelled(f"task {tid} was cancelled", "submit it again to run it")
    return record


class Task:
    """A handle on one submitted task."""

    def __init__(self, transport: Transport, view: dict[str, Any]) -> None:
        self._t = transport
        self.id: str = view["task_id"]
        self.view = view
        self._result: dict[str, Any] | None = None
        self.listeners: list[Any] = []

    def __repr__(self) -> str:
        return f"<vqpu Task {self.id} {self.view.get('state')} on {self.view.get('device')}>"

    def status(self) -> dict[str, Any]:
        self.view = self._t.status(self.id)
        return self.view

    @property
    def state(self) -> str:
        return self.view.get("state", "")

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the task to end; its record with counts, or TaskFailed / TaskCancelled.

        Listeners (a notebook widget) hear every change while this waits, on
        the waiting thread itself."""
        if self._result is None:
            for view in self._t.watch(self.id, timeout):
                self.view = view
                for listener in self.listeners:
                    listener(view)
            if self.view.get("state") == "completed":
                self._result = merge_result(self.view, self._t.fetch_result(self.id))
            else:
                raise_for_state(self.view)
        return self._result

    @property
    def counts(self) -> dict[str, int]:
        return self.result()["counts"]

    @property
    def snapshot(self) -> str | None:
        """The id of the device snapshot the task was bound to (None until claimed)."""
        if not self.view.get("snapshot_id"):
            self.status()
        return self.view.get("snapshot_id")

    def cancel(self) -> dict[str, Any]:
        self.view = self._t.cancel(self.id)
        return self.view
