"""The task handle every transport hands out, and the transport it needs.

Pure Python on purpose: the kernel's HTTP transport and the operator's Redis
``Client`` both return this ``Task``, and the kernel must not import redis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from jupyter_vqpu.core.errors import TaskCancelled, TaskFailed, VqpuError
from jupyter_vqpu.core.lifecycle import FINAL_STATES, TaskState


class WaitInterrupted(VqpuError, KeyboardInterrupt):
    """Ctrl-C (or the notebook's stop button) while waiting for a result: the task itself goes on.

    Still a KeyboardInterrupt, so ``except KeyboardInterrupt`` and the CLI's exit code work;
    a VqpuError, so a notebook shows its one line (and the way to cancel) instead of a
    traceback from inside urllib or redis-py."""

    code = "interrupted"


class Transport(Protocol):
    def status(self, task_id: str) -> dict[str, Any]: ...
    def wait(self, task_id: str, timeout: float | None = None) -> dict[str, Any]: ...
    def watch(self, task_id: str, timeout: float | None = None,
              on_idle: Callable[[], None] | None = None) -> Iterator[dict[str, Any]]: ...
    def fetch_result(self, task_id: str) -> dict[str, Any] | None: ...
    def cancel(self, task_id: str) -> dict[str, Any]: ...


def merge_result(view: dict[str, Any], result: dict[str, Any] | None) -> dict[str, Any]:
    """One task's final record: its view plus what the runner measured."""
    out = dict(view)
    if result:
        for key in ("counts", "layout", "final_layout", "physical_qubits", "timings", "simulator", "seed",
                    "num_qubits", "qubit_errors", "estimated_fidelity", "transpiled", "experiments"):
            if key in result:
                out[key] = result[key]
        out["usage"] = usage(out)
    return out


def usage(record: dict[str, Any]) -> dict[str, Any]:
    """What a finished task used, in the words of a Qiskit job's usage: shots and seconds.

    ``simulated_seconds`` is Aer's own run, ``job_seconds`` the whole job (load,
    transpile, noise model, simulate), ``quantum_seconds`` the same as simulated (what
    IBM's ``usage()`` calls quantum time), ``queued_seconds`` the wait before a claim."""
    timings = record.get("timings") or {}
    phases = record.get("phases") or {}
    return {
        "shots": record.get("shots"),
        "simulated_seconds": timings.get("simulate"),
        "quantum_seconds": timings.get("simulate"),
        "job_seconds": timings.get("total"),
        "queued_seconds": phases.get("queued"),
        "total_seconds": phases.get("total"),
    }


def raise_for_state(record: dict[str, Any]) -> dict[str, Any]:
    state = record.get("state")
    tid = record.get("task_id")
    if state == TaskState.FAILED:
        raise TaskFailed(f"task {tid} failed ({record.get('reason')}): {record.get('error')}",
                         f"see `vqpu status {tid}` for its history")
    if state == TaskState.CANCELLED:
        raise TaskCancelled(f"task {tid} was cancelled", "submit it again to run it")
    return record


class Task:
    """A handle on one submitted task, with the surface of a Qiskit job.

    ``job_id()``, ``status()`` (a ``TaskState``), ``done()``, ``running()``,
    ``in_final_state()``, ``wait_for_final_state(timeout)``, ``result(timeout)``,
    ``cancel()``, ``usage()``; ``view`` is the raw dict the API answers with
    (``refresh()`` reads it again), ``tags`` what it was submitted with."""

    def __init__(self, transport: Transport, view: dict[str, Any]) -> None:
        self._t = transport
        self.id: str = view["task_id"]
        self.view = view
        self._result: dict[str, Any] | None = None
        self.listeners: list[Any] = []

    def __repr__(self) -> str:
        return f"<vqpu Task {self.id} {self.view.get('state')} on {self.view.get('device')}>"

    def job_id(self) -> str:
        """The id Qiskit code asks a job for: the task id itself (``vqpu status`` takes it)."""
        return self.id

    def refresh(self) -> dict[str, Any]:
        """Read the task's view again (the raw dict: state, queue position, snapshot, ...)."""
        self.view = self._t.status(self.id)
        return self.view

    def status(self) -> TaskState:
        """Where the task is now, read from the service: QUEUED ... COMPLETED / FAILED / CANCELLED."""
        return TaskState(self.refresh()["state"])

    @property
    def state(self) -> str:
        return self.view.get("state", "")

    @property
    def tags(self) -> list[str]:
        return list(self.view.get("tags") or [])

    def in_final_state(self) -> bool:
        """True once the task has ended (reads again until then)."""
        return self._state_now().final

    def done(self) -> bool:
        """True once the task completed successfully (as a Qiskit job's ``done()``)."""
        return self._state_now() is TaskState.COMPLETED

    def running(self) -> bool:
        return self._state_now() is TaskState.RUNNING

    def _state_now(self) -> TaskState:
        state = TaskState(self.view.get("state") or TaskState.QUEUED.value)
        return state if state.final else self.status()

    def wait_for_final_state(self, timeout: float | None = None) -> TaskState:
        """Block until the task ends (ResultTimeout after ``timeout`` s); its final state. Never raises
        for a failed or cancelled task: ``result()`` does that."""
        self._follow(timeout)
        return TaskState(self.view["state"])

    def _follow(self, timeout: float | None) -> None:
        """Follow the task to its end, telling listeners every change (and, about each second, the same view
        again, so that a widget's clock moves while the kernel waits here)."""
        on_idle = self._tick if self.listeners else None
        try:
            for view in self._t.watch(self.id, timeout, on_idle):
                self.view = view
                for listener in self.listeners:
                    listener(view)
        except KeyboardInterrupt:
            state = self.view.get("state", TaskState.QUEUED.value)
            raise WaitInterrupted(
                f"stopped waiting; task {self.id} is still {state} on the service",
                f"get its result later with Task.result() or `vqpu wait {self.id}`; "
                f"cancel it with .cancel() or `vqpu cancel {self.id}`",
            ) from None

    def _tick(self) -> None:
        """Time passed without a change: listeners hear the same view again (a widget's clock moves)."""
        for listener in self.listeners:
            listener(self.view)

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the task to end; its record with counts and usage, or TaskFailed / TaskCancelled.

        Listeners (a notebook widget) hear every change while this waits, on
        the waiting thread itself. Ctrl-C stops the waiting, not the task (WaitInterrupted)."""
        if self._result is None:
            if self.view.get("state") not in FINAL_STATES:  # a final state never changes
                self._follow(timeout)
            if self.view.get("state") == TaskState.COMPLETED:
                self._result = merge_result(self.view, self._t.fetch_result(self.id))
            else:
                raise_for_state(self.view)
        return self._result

    def usage(self) -> dict[str, Any]:
        """Shots and seconds of a finished task (waits for it): see ``usage`` in this module."""
        return self.result()["usage"]

    @property
    def counts(self) -> dict[str, int]:
        return self.result()["counts"]

    @property
    def snapshot(self) -> str | None:
        """The id of the device snapshot the task was bound to (None until claimed)."""
        if not self.view.get("snapshot_id"):
            self.refresh()
        return self.view.get("snapshot_id")

    def cancel(self) -> dict[str, Any]:
        self.view = self._t.cancel(self.id)
        return self.view
