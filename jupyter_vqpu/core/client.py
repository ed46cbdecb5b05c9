"""The operator's Python client: the trusted transport that talks to Redis directly.

Kernels use the HTTP transport of the server extension instead
(``jupyter_vqpu.kernel.http``); both hand out the same ``Task`` handle
(``jupyter_vqpu.core.task``).
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator
from typing import Any

from jupyter_vqpu.core.control import ControlPlane, Limits
from jupyter_vqpu.core.task import Task


class Client:
    """Submit and follow tasks through Redis directly (operators, scripts, tests)."""

    def __init__(self, redis_url: str | None = None, *, owner: str | None = None, limits: Limits | None = None,
                 control: ControlPlane | None = None) -> None:
        if control is None:
            from jupyter_vqpu.core.connection import connect

            control = ControlPlane(connect(redis_url), limits=limits)
        self.cp = control
        self.owner = owner or getpass.getuser()

    # Transport
    def status(self, task_id: str) -> dict[str, Any]:
        return self.cp.task(task_id)

    def wait(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        return self.cp.wait(self.resolve(task_id), timeout)

    def watch(self, task_id: str, timeout: float | None = None,
              on_idle: Callable[[], None] | None = None) -> Iterator[dict[str, Any]]:
        return self.cp.watch(task_id, timeout, on_idle)

    def fetch_result(self, task_id: str) -> dict[str, Any] | None:
        return self.cp.result(task_id)

    def cancel(self, task_id: str) -> dict[str, Any]:
        return self.cp.cancel(self.resolve(task_id), by=self.owner)

    def resolve(self, task_id: str) -> str:
        """A whole task id, or a unique prefix of one of this owner's (``fez.m86vx``) -> the whole id."""
        return self.cp.resolve_task(task_id, self.owner)

    # Client API
    def submit(self, circuit: Any, device: str = "fez", shots: int = 1024, *, seed: int | None = None,
               idempotency_key: str | None = None, snapshot: str | None = None, optimization_level: int = 2,
               name: str | None = None, circuit_format: str | None = None,
               options: dict[str, Any] | None = None, tags: list[str] | None = None) -> Task:
        """Enqueue a circuit (a QuantumCircuit, OpenQASM 2/3 text, base64 QPY), or a list of them as ONE
        task (one claim, one job, a result per circuit). ``circuit_format="qpy"`` sends QuantumCircuits as QPY.

        ``snapshot`` pins one: its id, a unique prefix of 8+ hex digits, ``v3`` or ``fez@v3``."""
        from jupyter_vqpu.core.circuits import batch_to_wire, to_wire

        kw: dict[str, Any] = {}
        if isinstance(circuit, (list, tuple)):
            kw["circuits"] = batch_to_wire(circuit, circuit_format)
        else:
            kw["circuit_format"], kw["circuit"] = to_wire(circuit, circuit_format)
        view = self.cp.submit(owner=self.owner, device=device, shots=shots, seed=seed,
                              optimization_level=optimization_level, name=name, snapshot=snapshot,
                              idempotency_key=idempotency_key, options=options, tags=tags, **kw)
        return Task(self, view)

    def task(self, task_id: str) -> Task:
        return Task(self, self.cp.task(self.resolve(task_id)))

    def result(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        return self.task(task_id).result(timeout)

    def list(self, limit: int = 50) -> list[dict[str, Any]]:
        return self.cp.tasks(self.owner, limit=limit)

    def history(self, task_id: str) -> list[dict[str, Any]]:
        return self.cp.history(self.resolve(task_id))

    def devices(self) -> list[dict[str, Any]]:
        return self.cp.devices()

    def snapshot(self, device: str, snapshot_id: str | None = None) -> dict[str, Any]:
        """A device snapshot document (the current one by default), hash-checked."""
        from jupyter_vqpu.core.snapshot import load_snapshot
        from jupyter_vqpu.core.snapshot import snapshot_id as sid_of

        sid = self.cp.resolve_snapshot(device, snapshot_id) if snapshot_id else None
        data = self.cp.snapshot_bytes(device, sid)
        return load_snapshot(data, sid or sid_of(data))

    def rollback(self, device: str, to: str | None = None) -> tuple[str, int, int]:
        """Make an earlier snapshot current again as a new version (see ControlPlane.rollback)."""
        return self.cp.rollback(device, to)
