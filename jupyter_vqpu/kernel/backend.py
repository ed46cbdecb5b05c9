"""A Qiskit ``BackendV2`` for each vQPU device.

Existing Qiskit code (``transpile(qc, backend)``, ``backend.run``, and the
``BackendSamplerV2`` primitive) runs on a vQPU unchanged: ``.target`` is built
from the device's current snapshot, and ``run`` submits one task per circuit.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from qiskit.providers import BackendV2, JobStatus, JobV1, Options
from qiskit.result import Result
from qiskit.result.models import ExperimentResult, ExperimentResultData

from jupyter_vqpu import __version__
from jupyter_vqpu.core.errors import TaskCancelled, TaskFailed

_STATUS = {"queued": JobStatus.QUEUED, "claimed": JobStatus.QUEUED, "scheduled": JobStatus.QUEUED,
           "running": JobStatus.RUNNING, "completed": JobStatus.DONE, "failed": JobStatus.ERROR,
           "cancelled": JobStatus.CANCELLED}


class VqpuJob(JobV1):
    """One ``run`` call: a task per circuit, gathered into one ``Result``."""

    def __init__(self, backend: VqpuBackend, tasks: list[Any], circuits: list[Any], shots: int,
                 seed: int | None, memory: bool) -> None:
        super().__init__(backend, str(uuid.uuid4()))
        self.tasks = tasks
        self._circuits = circuits
        self._shots = shots
        self._seed = seed
        self._memory = memory

    def submit(self) -> None:  # tasks are submitted by VqpuBackend.run
        raise NotImplementedError("VqpuJob is submitted by VqpuBackend.run")

    def task_ids(self) -> list[str]:
        return [t.id for t in self.tasks]

    def status(self) -> JobStatus:
        states = [_STATUS.get(t.status().get("state"), JobStatus.QUEUED) for t in self.tasks]
        for s in (JobStatus.ERROR, JobStatus.CANCELLED, JobStatus.RUNNING, JobStatus.QUEUED):
            if s in states:
                return s
        return JobStatus.DONE

    def cancel(self) -> None:
        for t in self.tasks:
            t.cancel()

    def result(self, timeout: float | None = None) -> Result:
        experiments = []
        success = True
        for i, (task, qc) in enumerate(zip(self.tasks, self._circuits)):
            header = {"name": qc.name, "memory_slots": qc.num_clbits, "metadata": dict(qc.metadata or {}),
                      "creg_sizes": [[c.name, c.size] for c in qc.cregs]}
            try:
                record = task.result(timeout)
            except (TaskFailed, TaskCancelled) as exc:
                success = False
                experiments.append(ExperimentResult(shots=self._shots, success=False, status=str(exc),
                                                    data=ExperimentResultData(), header=header))
                continue
            counts = {hex(int(k.replace(" ", "") or "0", 2)): v for k, v in record["counts"].items()}
            memory = None
            if self._memory:
                # Shots are independent, so a seeded shuffle of the counts is a faithful shot sequence.
                memory = [k for k, v in counts.items() for _ in range(v)]
                random.Random(record.get("seed", self._seed or 0) + i).shuffle(memory)
            experiments.append(ExperimentResult(
                shots=self._shots, success=True, data=ExperimentResultData(counts=counts, memory=memory),
                header=header, seed=record.get("seed"),
            ))
        return Result(backend_name=self._backend.name, backend_version=__version__, job_id=self.job_id(),
                      success=success, results=experiments)


class VqpuBackend(BackendV2):
    """A vQPU device seen from Qiskit."""

    def __init__(self, device: str, client: Any) -> None:
        from jupyter_vqpu.core.snapshot import build_target

        self._client = client
        self.device = device
        self.snapshot = client.snapshot(device)
        super().__init__(name=f"vqpu_{device}", description=f"vQPU {device} (snapshot {self.snapshot_id[:12]})",
                         backend_version=__version__)
        self._target = build_target(self.snapshot)

    @property
    def snapshot_id(self) -> str:
        from jupyter_vqpu.core.snapshot import canonical_bytes, snapshot_id

        return snapshot_id(canonical_bytes(self.snapshot))

    @property
    def target(self):
        return self._target

    @property
    def max_circuits(self) -> int | None:
        return None

    @classmethod
    def _default_options(cls) -> Options:
        return Options(shots=1024, seed_simulator=None, memory=False, optimization_level=1)

    def run(self, run_input: Any, **options: Any) -> VqpuJob:
        from qiskit import QuantumCircuit

        circuits = [run_input] if isinstance(run_input, QuantumCircuit) else list(run_input)
        opts = {**self.options.__dict__, **options}
        shots = int(opts.get("shots") or 1024)
        seed = opts.get("seed_simulator")
        tasks = [
            self._client.submit(qc, device=self.device, shots=shots, seed=None if seed is None else int(seed),
                                optimization_level=int(opts.get("optimization_level", 1)), name=qc.name or None)
            for qc in circuits
        ]
        return VqpuJob(self, tasks, circuits, shots, seed, bool(opts.get("memory")))


def get_backend(device: str = "fez", *, client: Any = None) -> VqpuBackend:
    """The BackendV2 for ``device``, connected the way ``%%vqpu`` connects."""
    if client is None:
        from jupyter_vqpu.kernel.transport import resolve_client

        client = resolve_client()
    return VqpuBackend(device, client)
