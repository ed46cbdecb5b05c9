"""The Python client and the task handle it returns.

``Client`` is the trusted operator transport: it talks to Redis directly
through the control plane. Kernels use the HTTP transport of the server
extension instead; both hand out the same ``Task`` handle.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from typing import Any, Protocol

from .control import ControlPlane, Limits
from .errors import TaskCancelled, TaskFailed


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


class Client:
    """Submit and follow tasks through Redis directly (operators, scripts, tests)."""

    def __init__(self, redis_url: str | None = None, *, owner: str | None = None, limits: Limits | None = None,
                 control: ControlPlane | None = None) -> None:
        if control is None:
            from .connection import connect

            control = ControlPlane(connect(redis_url), limits=limits)
        self.cp = control
        self.owner = owner or getpass.getuser()

    # Transport
    def status(self, task_id: str) -> dict[str, Any]:
        return self.cp.task(task_id)

    def wait(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        return self.cp.wait(task_id, timeout)

    def watch(self, task_id: str, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        return self.cp.watch(task_id, timeout)

    def fetch_result(self, task_id: str) -> dict[str, Any] | None:
        return self.cp.result(task_id)

    def cancel(self, task_id: str) -> dict[str, Any]:
        return self.cp.cancel(task_id, by=self.owner)

    # Client API
    def submit(self, circuit: Any, device: str = "fez", shots: int = 1024, *, seed: int | None = None,
               idempotency_key: str | None = None, snapshot: str | None = None, optimization_level: int = 1,
               name: str | None = None, circuit_format: str | None = None,
               options: dict[str, Any] | None = None) -> Task:
        """Enqueue a circuit (a QuantumCircuit or OpenQASM 2/3 text)."""
        text, fmt = circuit, circuit_format
        if not isinstance(circuit, str):
            from .circuits import circuit_to_wire

            fmt, text = circuit_to_wire(circuit)
        view = self.cp.submit(owner=self.owner, device=device, circuit=text, circuit_format=fmt, shots=shots,
                              seed=seed, optimization_level=optimization_level, name=name, snapshot=snapshot,
                              idempotency_key=idempotency_key, options=options)
        return Task(self, view)

    def task(self, task_id: str) -> Task:
        return Task(self, self.cp.task(task_id))

    def result(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        return self.task(task_id).result(timeout)

    def list(self, limit: int = 50) -> list[dict[str, Any]]:
        return self.cp.tasks(self.owner, limit=limit)

    def history(self, task_id: str) -> list[dict[str, Any]]:
        return self.cp.history(task_id)

    def devices(self) -> list[dict[str, Any]]:
        return self.cp.devices()

    def snapshot(self, device: str, snapshot_id: str | None = None) -> dict[str, Any]:
        """A device snapshot document (the current one by default), hash-checked."""
        from .snapshot import load_snapshot
        from .snapshot import snapshot_id as sid_of

        data = self.cp.snapshot_bytes(device, snapshot_id)
        return load_snapshot(data, snapshot_id or sid_of(data))
