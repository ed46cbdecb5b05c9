"""What a Qiskit user on Fez gets: the vQPU next to ``AerSimulator.from_backend(FakeFez())``.

Real components: a redis-server (fixtures), a real agent with the local executor running the
real runner in a warm worker process. The reference is Aer on the SAME transpiled circuits with
the same seed: counts must be identical, not close. One agent per module (a warm worker's qiskit
import costs seconds on a loaded box); tests submit and wait with deadlines, never sleep.
"""

from __future__ import annotations

import copy

import pytest
from qiskit import QuantumCircuit, transpile
from qiskit.circuit import Parameter
from qiskit.circuit.classical import expr

from jupyter_vqpu.core.client import Client
from jupyter_vqpu.core.errors import CircuitError, InvalidRequest
from jupyter_vqpu.kernel.backend import get_backend
from jupyter_vqpu_agent.executors.local import LocalExecutor
from tests.agents import Running

WAIT_S = 300  # one task of many circuits on a loaded 2-core box


@pytest.fixture
def fez_agent(seeded, redis_url, tmp_path):
    running = Running(redis_url, LocalExecutor(slots=1, warm=True, log_dir=tmp_path / "logs"), tmp_path / "work",
                      devices=("fez",), lease_s=120)
    yield seeded
    running.stop()


@pytest.fixture(scope="module")
def reference():
    from qiskit_aer import AerSimulator
    from qiskit_ibm_runtime.fake_provider import FakeFez

    return AerSimulator.from_backend(FakeFez())


def ghz(n: int) -> QuantumCircuit:
    qc = QuantumCircuit(n, name=f"ghz{n}")
    qc.h(0)
    for i in range(n - 1):
        qc.cx(i, i + 1)
    qc.measure_all()
    return qc


def dynamic() -> QuantumCircuit:
    """switch, classical expressions (&&, ^): what OpenQASM import cannot bring back."""
    qc = QuantumCircuit(3, 3, name="dynamic")
    qc.h(0)
    qc.measure(0, 0)
    qc.h(1)
    qc.measure(1, 1)
    with qc.switch(qc.clbits[0]) as case:
        with case(0):
            qc.x(2)
        with case(1):
            qc.h(2)
    with qc.if_test(expr.logic_and(qc.clbits[0], qc.clbits[1])):
        qc.x(2)
    with qc.if_test(expr.equal(expr.bit_xor(qc.clbits[0], qc.clbits[1]), True)):
        qc.z(2)
    qc.measure(2, 2)
    return qc


def initialize_in_a_gate() -> QuantumCircuit:
    inner = QuantumCircuit(1)
    inner.initialize([0.6, 0.8], 0)
    qc = QuantumCircuit(2, name="init-in-gate")
    qc.append(inner.to_instruction(label="prep"), [0])
    qc.cx(0, 1)
    qc.measure_all()
    return qc


def unitary() -> QuantumCircuit:
    from qiskit.quantum_info import random_unitary

    qc = QuantumCircuit(2, name="unitary")
    qc.unitary(random_unitary(4, seed=3), [0, 1])
    qc.measure_all()
    return qc


def test_a_list_is_one_task_and_every_circuit_matches_aer(fez_agent, reference):
    """backend.run([...]) is ONE task; circuit i has Aer's seed for circuit i, and its counts are
    Aer's on the same transpiled circuits, dynamic circuits, initialize and unitary included."""
    client = Client(control=fez_agent, owner="ada")
    backend = get_backend("fez", client=client)
    logical = [ghz(3), dynamic(), initialize_in_a_gate(), unitary(), ghz(4)]
    isa = transpile(logical, backend=backend, optimization_level=2, seed_transpiler=5)
    # one method named, so the reference runs the same one (the runner's own choice may differ from Aer's)
    job = backend.run(isa, shots=2000, seed_simulator=7, method="density_matrix")
    assert [t["task_id"] for t in client.list()] == [job.job_id()] == job.task_ids()  # one task, one job
    result = job.result(timeout=WAIT_S)
    assert result.success and len(result.results) == len(isa)
    for i, exp in enumerate(result.results):
        assert exp.seed_simulator == 7 + 2113 * i  # Aer: "shift the seed for each successive experiment"
        method = exp.metadata["method"]
        ref = reference.run(isa, shots=2000, seed_simulator=7, method=method).result()
        assert result.get_counts(i) == ref.get_counts(i), (i, isa[i].name, method)
        # the user's layout survives the trip (QPY keeps it), with the qubits' calibration
        assert exp.metadata["layout"] == list(isa[i].layout.initial_index_layout(filter_ancillas=True))
        assert [e["qubit"] for e in exp.metadata["qubit_errors"]] == exp.metadata["physical_qubits"]
    view = client.task(job.job_id()).view
    assert view["num_circuits"] == len(isa) and view["snapshot_id"] == backend.snapshot_id


def test_a_sweep_through_qiskit_primitives(fez_agent):
    """BackendSamplerV2 with a parameter sweep, and qiskit-ibm-runtime's SamplerV2/EstimatorV2 in
    local mode (they deep-copy the backend: it must be copy-safe), each sweep one task."""
    import numpy as np
    from qiskit.primitives import BackendEstimatorV2, BackendSamplerV2
    from qiskit.quantum_info import SparsePauliOp
    from qiskit_ibm_runtime import EstimatorV2, SamplerV2

    client = Client(control=fez_agent, owner="ada")
    backend = get_backend("fez", client=client)
    assert copy.deepcopy(backend) is backend
    theta = Parameter("t")
    qc = QuantumCircuit(1)
    qc.ry(theta, 0)
    qc.measure_all()
    isa = transpile(qc, backend=backend, optimization_level=2, seed_transpiler=1)
    angles = np.linspace(0, np.pi, 6)
    before = len(client.list())
    pub = BackendSamplerV2(backend=backend, options={"seed_simulator": 3}).run([(isa, angles)], shots=400)
    ones = [pub.result()[0].data.meas.get_counts(i).get("1", 0) for i in range(len(angles))]
    assert len(client.list()) == before + 1  # six circuits, one task
    assert ones[0] < 40 and ones[-1] > 360  # ry(0) -> |0>, ry(pi) -> |1>, through the device's noise

    sampler = SamplerV2(mode=backend, options={"default_shots": 300})
    meas = sampler.run([(isa, [[0.0], [np.pi]])]).result()[0].data.meas
    assert meas.get_counts(0).get("0", 0) > 270 and meas.get_counts(1).get("1", 0) > 270

    zq = QuantumCircuit(1)
    zq.ry(theta, 0)
    isa_e = transpile(zq, backend=backend, optimization_level=2, seed_transpiler=1)
    obs = SparsePauliOp("Z").apply_layout(isa_e.layout)
    for estimator in (EstimatorV2(mode=backend, options={"default_shots": 2000}),
                      BackendEstimatorV2(backend=backend, options={"default_precision": 0.03})):
        evs = estimator.run([(isa_e, obs, [[0.0], [np.pi]])]).result()[0].data.evs
        assert evs[0] > 0.8 and evs[1] < -0.8, evs


def test_run_options_are_honoured_or_refused(fez_agent, reference):
    client = Client(control=fez_agent, owner="ada")
    backend = get_backend("fez", client=client)
    isa = transpile(ghz(3), backend=backend, optimization_level=2, seed_transpiler=5)
    with pytest.raises(InvalidRequest, match="shots must be"):
        backend.run(isa, shots=0)
    with pytest.raises(InvalidRequest, match="unknown run option.*bogus"):
        backend.run(isa, bogus=1)
    with pytest.raises(InvalidRequest, match="unknown simulation method"):
        backend.run(isa, method="quantum_magic")
    with pytest.raises(CircuitError, match="not for fez.*transpile it first"):
        backend.run(ghz(3))  # h is not native on Fez: IBM refuses it too
    ideal = backend.run(isa, shots=500, seed_simulator=2, noise_model=None, method="statevector").result()
    assert set(ideal.get_counts()) == {"000", "111"}  # noise_model=None: no noise at all
    assert ideal.results[0].metadata["method"] == "statevector"
    from qiskit_aer import AerSimulator

    ref = AerSimulator(method="statevector").run(isa, shots=500, seed_simulator=2).result().get_counts()
    assert ideal.get_counts() == ref
    noisy = backend.run(isa, shots=500, seed_simulator=2, method="density_matrix").result()
    assert noisy.results[0].metadata["method"] == "density_matrix"
    assert noisy.get_counts() == reference.run(isa, shots=500, seed_simulator=2,
                                               method="density_matrix").result().get_counts()


def test_a_backend_is_bound_to_its_snapshot_until_refreshed(fez_agent):
    client = Client(control=fez_agent, owner="ada")
    backend = get_backend("fez", client=client)
    old = backend.snapshot_id
    assert old[:12] in repr(backend) and "v1" in repr(backend)
    isa = transpile(ghz(2), backend=backend, optimization_level=2, seed_transpiler=5)
    # a calibration update: the same device, one qubit's readout changed
    fez_agent.publish("fez", lambda v: {**backend.snapshot, "version": v,
                                        "qubits": [{**q, "readout_error": 0.2} for q in backend.snapshot["qubits"]]})
    assert fez_agent.devices(["fez"])[0]["snapshot_id"] != old
    job = backend.run(isa, shots=100, seed_simulator=1)
    assert job.result(timeout=WAIT_S).success
    assert client.task(job.job_id()).view["snapshot_id"] == old  # pinned: what its Target came from
    new = backend.refresh()
    assert new != old and backend.snapshot_id == new and "v2" in repr(backend)
    again = backend.run(isa, shots=100, seed_simulator=1)
    assert again.result(timeout=WAIT_S).success and client.task(again.job_id()).view["snapshot_id"] == new


def test_a_failed_task_raises_a_qiskit_error_not_a_type_error(fez_agent):
    from qiskit.exceptions import QiskitError

    client = Client(control=fez_agent, owner="ada")
    backend = get_backend("fez", client=client)
    qc = QuantumCircuit(2, name="no-measure")
    qc.x(0)  # native, so it is sent, but it measures nothing: the runner fails the task
    job = backend.run(qc, shots=10)
    result = job.result(timeout=WAIT_S)
    assert not result.success
    with pytest.raises(QiskitError, match="measures nothing"):
        result.get_counts()
    # a task on a device no agent serves stays queued until it is cancelled
    idle = get_backend("ideal", client=client)
    cancelled = idle.run(transpile(ghz(2), backend=idle), shots=10)
    cancelled.cancel()
    failed = cancelled.result(timeout=WAIT_S)
    assert not failed.success
    with pytest.raises(QiskitError, match="cancelled"):
        failed.get_counts()


def test_a_logical_circuit_gets_qiskits_default_placement_and_json_says_where(fez_agent, tmp_path, redis_url):
    """The runner transpiles a logical circuit at Qiskit's default level (2: noise-aware VF2 layout on
    the snapshot's error rates), not onto qubits 0..n-1; `vqpu run --json` reports where it ran."""
    import json

    from jupyter_vqpu.core.snapshot import build_target
    from tests.cli_support import vqpu

    path = tmp_path / "ghz.qasm"
    qc = ghz(4)
    from qiskit import qasm3

    path.write_text(qasm3.dumps(qc))
    out = vqpu("run", str(path), "--device", "fez", "--shots", "200", "--seed", "4", "--json", url=redis_url,
               timeout=WAIT_S)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    client = Client(control=fez_agent, owner="ada")
    target = build_target(client.snapshot("fez"))
    expected = transpile(qc, target=target, optimization_level=2, seed_transpiler=4)
    assert record["layout"] == list(expected.layout.initial_index_layout(filter_ancillas=True))
    assert record["layout"] != [0, 1, 2, 3]  # not the trivial layout that level 1 keeps
    assert record["final_layout"] and sorted(record["physical_qubits"]) == record["physical_qubits"]
    assert [e["qubit"] for e in record["qubit_errors"]] == record["physical_qubits"]
    assert all(0 < e["readout_error"] < 0.5 for e in record["qubit_errors"])
    assert 0 < record["estimated_fidelity"] < 1
