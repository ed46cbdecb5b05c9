"""A Qiskit ``BackendV2`` for each vQPU device.

Existing Qiskit code (``transpile(qc, backend)``, ``backend.run``, ``BackendSamplerV2`` /
``BackendEstimatorV2`` and qiskit-ibm-runtime's ``SamplerV2(mode=backend)`` /
``EstimatorV2(mode=backend)``) runs on a vQPU unchanged:

- ``.target`` is built from one device snapshot, and the backend is bound to it: its
  runs pin that snapshot, so a calibration published later cannot change what a circuit
  transpiled for this Target runs against; ``refresh()`` (or a new backend) moves on.
- ``run`` submits ONE task for a list of circuits (one claim, one job, one runner pass),
  as QPY, so every circuit Aer runs travels exactly; its result holds one
  ``ExperimentResult`` per circuit, each seeded as Aer seeds circuit i of a list.
- like IBM's backends, ``run`` takes circuits already for the device (ISA: transpile them
  first) and runs them as they are, keeping their layout.
- run options are honoured or refused with one line, never ignored.
"""

from __future__ import annotations

import random
from typing import Any

from qiskit.exceptions import QiskitError
from qiskit.providers import BackendV2, JobStatus, JobV1, Options
from qiskit.result import Result
from qiskit.result.models import ExperimentResult, ExperimentResultData

from jupyter_vqpu import __version__
from jupyter_vqpu.core.errors import TaskCancelled, TaskFailed
from jupyter_vqpu.core.lifecycle import TaskState

_STATUS = {TaskState.QUEUED: JobStatus.QUEUED, TaskState.CLAIMED: JobStatus.QUEUED,
           TaskState.SCHEDULED: JobStatus.QUEUED, TaskState.RUNNING: JobStatus.RUNNING,
           TaskState.COMPLETED: JobStatus.DONE, TaskState.FAILED: JobStatus.ERROR,
           TaskState.CANCELLED: JobStatus.CANCELLED}
#: Circuits one run sends as one task (the control plane's default ``max_circuits``); primitives split
#: longer sweeps into jobs of this many.
MAX_CIRCUITS = 1000
#: Run options we honour; anything else is refused (``run`` says which).
RUN_OPTIONS = ("shots", "seed_simulator", "memory", "optimization_level", "method", "noise_model", "device")
#: Options Qiskit's primitives pass that change nothing here: measurement level 2 (counts) is the only one.
_NEUTRAL = {"meas_level": (2,), "init_qubits": (True,)}


class VqpuJob(JobV1):
    """One ``run`` call: one task for all its circuits, gathered into one ``Result``.

    ``job_id()`` is the task id (what ``vqpu tasks``, ``vqpu status`` and the panel show)."""

    def __init__(self, backend: VqpuBackend, task: Any, circuits: list[Any], shots: int,
                 seed: int | None, memory: bool) -> None:
        super().__init__(backend, task.id)
        self.task = task
        self.tasks = [task]
        self._circuits = circuits
        self._shots = shots
        self._seed = seed
        self._memory = memory

    def submit(self) -> None:  # the task is submitted by VqpuBackend.run
        raise NotImplementedError("VqpuJob is submitted by VqpuBackend.run")

    def task_ids(self) -> list[str]:
        return [self.task.id]

    def status(self) -> JobStatus:
        return _STATUS.get(self.task.status().value, JobStatus.QUEUED)

    def cancel(self) -> None:
        self.task.cancel()

    def usage(self) -> dict[str, Any]:
        """Shots (over all circuits) and seconds of the job (waits for it; see core/task.py ``usage``)."""
        used = dict(self.task.usage())
        used["shots"] = (used.get("shots") or 0) * len(self._circuits)
        return {k: used.get(k) for k in ("shots", "simulated_seconds", "quantum_seconds", "job_seconds")}

    def result(self, timeout: float | None = None) -> Result:
        """A ``Result`` with one ``ExperimentResult`` per circuit. A failed or cancelled task gives
        ``success=False`` experiments whose ``get_counts`` raises a QiskitError naming why."""
        headers = [{"name": qc.name, "memory_slots": qc.num_clbits, "metadata": dict(qc.metadata or {}),
                    "creg_sizes": [[c.name, c.size] for c in qc.cregs]} for qc in self._circuits]
        try:
            record = self.task.result(timeout)
        except (TaskFailed, TaskCancelled) as exc:
            experiments = [ExperimentResult(shots=self._shots, success=False, status=str(exc),
                                            data=ExperimentResultData(), header=h) for h in headers]
            return _Result(backend_name=self._backend.name, backend_version=__version__, job_id=self.job_id(),
                           success=False, results=experiments, status=str(exc))
        per_circuit = record.get("experiments") or [record]
        experiments = []
        for i, (header, exp) in enumerate(zip(headers, per_circuit)):
            counts = {hex(int(k.replace(" ", "") or "0", 2)): v for k, v in exp["counts"].items()}
            memory = None
            if self._memory:
                # Shots are independent, so a seeded shuffle of the counts is a faithful shot sequence.
                memory = [k for k, v in counts.items() for _ in range(v)]
                random.Random(exp.get("seed", self._seed or 0)).shuffle(memory)
            experiments.append(ExperimentResult(
                shots=self._shots, success=True, data=ExperimentResultData(counts=counts, memory=memory),
                header=header, seed_simulator=exp.get("seed"), status="DONE",
                metadata={"method": exp.get("method") or (record.get("simulator") or {}).get("method"),
                          **{k: exp.get(k) for k in ("layout", "final_layout", "physical_qubits", "qubit_errors",
                                                     "estimated_fidelity") if k in exp}},
            ))
        return Result(backend_name=self._backend.name, backend_version=__version__, job_id=self.job_id(),
                      success=True, results=experiments, snapshot_id=record.get("snapshot_id"))


class _Result(Result):
    """A failed job's Result: ``get_counts`` and friends raise a QiskitError that says why."""

    def data(self, experiment: Any = None) -> dict:
        exp = self._get_experiment(experiment)
        if not exp.success:
            raise QiskitError(f"no counts: {exp.status}")
        return super().data(experiment)


class VqpuBackend(BackendV2):
    """A vQPU device seen from Qiskit, bound to the snapshot its ``target`` came from."""

    def __init__(self, device: str, client: Any, snapshot: str | None = None) -> None:
        from jupyter_vqpu.core.keys import device_name

        self._client = client
        self.device = device = device_name(device)
        super().__init__(name=f"vqpu_{device}", backend_version=__version__)
        self._bind(client.snapshot(device, snapshot))

    def _bind(self, doc: dict[str, Any]) -> None:
        from jupyter_vqpu.core.snapshot import build_target, canonical_bytes, snapshot_id

        self.snapshot = doc
        self._snapshot_id = snapshot_id(canonical_bytes(doc))
        self._target = build_target(doc)
        self.description = f"vQPU {self.device} (snapshot v{doc.get('version')} {self._snapshot_id[:12]})"

    def refresh(self) -> str:
        """Move on to the device's current snapshot (new Target, runs pinned to it); returns its id."""
        self._bind(self._client.snapshot(self.device))
        return self._snapshot_id

    @property
    def snapshot_id(self) -> str:
        """The snapshot this backend's Target came from; every run pins it."""
        return self._snapshot_id

    @property
    def snapshot_version(self) -> int | None:
        return self.snapshot.get("version")

    def __repr__(self) -> str:
        return (f"<VqpuBackend {self.device} snapshot v{self.snapshot_version} {self._snapshot_id[:12]} "
                f"(calibration {self.snapshot.get('calibration_date') or '?'}; refresh() moves on)>")

    def __deepcopy__(self, memo: dict) -> VqpuBackend:
        """A backend is a handle on a remote device, like its client: a deep copy is the same handle.

        qiskit-ibm-runtime's local mode deep-copies its options (``dataclasses.asdict``), backend
        included; copying our client would copy its connection and its lock (and fail)."""
        return self

    def __copy__(self) -> VqpuBackend:
        return self

    @property
    def target(self):
        return self._target

    @property
    def max_circuits(self) -> int | None:
        return MAX_CIRCUITS

    @classmethod
    def _default_options(cls) -> Options:
        return Options(shots=1024, seed_simulator=None, memory=False, optimization_level=2, method="automatic",
                       noise_model="device", device=None)

    def run(self, run_input: Any, **options: Any) -> VqpuJob:
        """Run circuits already for this device (``transpile(qc, backend)`` first) as one task.

        Options: shots (>= 1), seed_simulator (circuit i gets seed + 2113 i, as Aer), memory,
        method (an Aer method), noise_model=None (an ideal run of the same circuits), device
        (CPU/GPU). Anything else is refused with its name."""
        from qiskit import QuantumCircuit

        from jupyter_vqpu.core.errors import InvalidRequest
        from jupyter_vqpu.core.run_options import METHODS

        circuits = [run_input] if isinstance(run_input, QuantumCircuit) else list(run_input)
        if not circuits or not all(isinstance(c, QuantumCircuit) for c in circuits):
            raise InvalidRequest("run takes a QuantumCircuit or a list of them", "e.g. backend.run([tqc1, tqc2])")
        unknown = sorted(k for k in options if k not in RUN_OPTIONS and options[k] not in _NEUTRAL.get(k, ()))
        if unknown:
            raise InvalidRequest(f"unknown run option(s) for a vQPU: {', '.join(unknown)}",
                                 f"the options are {', '.join(RUN_OPTIONS)}")
        opts = {**self.options.__dict__, **{k: v for k, v in options.items() if k in RUN_OPTIONS}}
        shots = opts.get("shots")
        if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
            raise InvalidRequest(f"shots must be a whole number >= 1, got {shots!r}", "e.g. shots=4096")
        task_options: dict[str, Any] = {"skip_transpilation": True}
        method = opts.get("method") or "automatic"
        if method not in METHODS:
            raise InvalidRequest(f"unknown simulation method {method!r}", f"use one of {', '.join(METHODS)}")
        if method != "automatic":
            task_options["method"] = method
        noise = opts.get("noise_model", "device")
        if noise is None:
            task_options["noise"] = False
        elif noise != "device":
            raise InvalidRequest("a vQPU runs the device's calibrated noise model or none (noise_model=None)",
                                 "leave noise_model out, or pass noise_model=None for an ideal run")
        if opts.get("device"):
            task_options["device"] = opts["device"]
        self._check_isa(circuits)
        seed = opts.get("seed_simulator")
        kw = dict(device=self.device, shots=shots, seed=None if seed is None else int(seed),
                  optimization_level=int(opts.get("optimization_level", 2)), snapshot=self._snapshot_id,
                  circuit_format="qpy", options=task_options)
        if len(circuits) == 1:
            task = self._client.submit(circuits[0], name=circuits[0].name or None, **kw)
        else:
            task = self._client.submit(circuits, name=f"{len(circuits)} circuits", **kw)
        return VqpuJob(self, task, circuits, shots, seed, bool(opts.get("memory")))

    def _check_isa(self, circuits: list[Any]) -> None:
        """Refuse circuits that are not for this device, as IBM's backends do (before anything is sent)."""
        from jupyter_vqpu.core.errors import CircuitError
        from jupyter_vqpu.core.isa import not_for_device

        for i, qc in enumerate(circuits):
            wrong = not_for_device(qc, self._target)
            if wrong:
                where = f"circuit {i} ({qc.name})" if len(circuits) > 1 else f"circuit {qc.name!r}"
                raise CircuitError(f"{where} is not for {self.device}: {wrong}",
                                   "transpile it first: transpile(qc, backend) (or a preset pass manager "
                                   "for this backend)")


def get_backend(device: str = "fez", *, client: Any = None, snapshot: str | None = None) -> VqpuBackend:
    """The BackendV2 for ``device``, connected the way ``%%vqpu`` connects; ``snapshot`` binds an
    earlier one (its id, a prefix, ``v3``)."""
    if client is None:
        from jupyter_vqpu.kernel.transport import resolve_client

        client = resolve_client()
    return VqpuBackend(device, client, snapshot)
