"""The job runner, the warm worker and the per-circuit noise model.

The faithfulness test compares our noise model with ``AerSimulator.from_backend(FakeFez())``
on the same transpiled circuit and seed: the counts must be identical, not merely close.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jupyter_vqpu.core import catalog
from jupyter_vqpu.core import result as result_schema
from jupyter_vqpu.core import snapshot as S
from jupyter_vqpu_agent import bundle, runner
from jupyter_vqpu_agent.noise import noise_model_for

REPO = Path(__file__).resolve().parents[2]
GHZ3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[3] q;\nbit[3] c;\nh q[0];\ncx q[0], q[1];\ncx q[1], q[2];\nc = measure q;\n'
WHEN = "2026-01-02T03:04:05Z"


class Device:
    def __init__(self, doc: dict) -> None:
        self.doc = doc
        self.data = S.canonical_bytes(doc)
        self.sid = S.snapshot_id(self.data)


@pytest.fixture(scope="module")
def fez() -> Device:
    return Device(catalog.builtin_snapshot("fez", created_at=WHEN))


@pytest.fixture(scope="module")
def ideal() -> Device:
    return Device(S.ideal_snapshot(created_at=WHEN))


@pytest.fixture(scope="module")
def reference_sim():
    """AerSimulator.from_backend(FakeFez()): seconds to build, so once per module."""
    from qiskit_aer import AerSimulator
    from qiskit_ibm_runtime.fake_provider import FakeFez

    return AerSimulator.from_backend(FakeFez())


def stage(where: Path, dev: Device, circuit: str = GHZ3, *, shots: int = 4096, seed: int | None = 7,
          fmt: str = "qasm3", data: bytes | None = None, sid: str | None = None, **options) -> Path:
    spec = bundle.TaskSpec(task_id=f"t-{where.name}", device=dev.doc["device"], attempt=1,
                           snapshot_id=sid or dev.sid, shots=shots, circuit_format=fmt, seed=seed, options=options)
    return bundle.stage(where, spec, data if data is not None else dev.data, circuit)


def tvd(a: dict, b: dict) -> float:
    na, nb = sum(a.values()), sum(b.values())
    return 0.5 * sum(abs(a.get(k, 0) / na - b.get(k, 0) / nb) for k in set(a) | set(b))


# ------------------------------------------------------------ faithfulness


def test_noise_model_counts_identical_to_aer_from_backend(fez, reference_sim):
    from qiskit import transpile
    from qiskit_aer import AerSimulator

    from jupyter_vqpu.core.circuits import parse_circuit

    tqc = transpile(parse_circuit(GHZ3), target=S.build_target(fez.doc), optimization_level=1, seed_transpiler=3)
    used = sorted({tqc.find_bit(q).index for inst in tqc.data for q in inst.qubits})
    assert len(used) == 3
    model = noise_model_for(fez.doc, used)
    ours = AerSimulator(noise_model=model, seed_simulator=11).run(tqc, shots=4096).result().get_counts()
    reference_sim.set_options(seed_simulator=11)
    ref = reference_sim.run(tqc, shots=4096).result().get_counts()
    assert ours == ref
    assert set(model.noise_qubits) == set(used)  # nothing about the other 153 qubits
    assert sorted(model.basis_gates) == sorted(reference_sim.options.noise_model.basis_gates)


def test_a_circuits_model_holds_only_the_instructions_it_runs_and_gives_the_same_counts(fez, reference_sim):
    """The runner's model for a circuit: the entries of the instructions it runs, nothing else on its qubits
    (the others are never applied, and building them is what a new circuit shape would pay), with
    from_backend's counts at the same seed under a density matrix."""
    from qiskit import QuantumCircuit, transpile
    from qiskit_aer import AerSimulator

    from jupyter_vqpu.core.circuits import parse_circuit
    from jupyter_vqpu_agent.noise import instructions_of

    tqc = transpile(parse_circuit(GHZ3), target=S.build_target(fez.doc), optimization_level=1, seed_transpiler=3)
    used = sorted({tqc.find_bit(q).index for inst in tqc.data for q in inst.qubits})
    runs = instructions_of([tqc])
    assert runs and ("measure", (used[0],)) in runs and all(max(q) < 156 for _, q in runs if q)
    model = noise_model_for(fez.doc, used, fez.sid, runs)
    whole = noise_model_for(fez.doc, used, fez.sid)
    kept = {(name, qargs) for name, by in model._local_quantum_errors.items() for qargs in by}
    every = {(name, qargs) for name, by in whole._local_quantum_errors.items() for qargs in by}
    assert kept <= runs and kept < every  # e.g. no reset or id entries: the circuit runs neither
    assert set(model.readout_matrices()) == {q for name, (q, *_) in runs if name == "measure"}
    dm = {"method": "density_matrix", "seed_simulator": 5}
    ours = AerSimulator(noise_model=model, **dm).run(tqc, shots=3000).result().get_counts()
    assert ours == reference_sim.run(tqc, shots=3000, **dm).result().get_counts()

    flow = QuantumCircuit(1, 1)
    flow.measure(0, 0)
    with flow.if_test((flow.clbits[0], 1)):
        flow.x(0)
    assert instructions_of([tqc, flow]) is None  # a block's instructions are not listed: every entry instead
    boxed = QuantumCircuit(1, 1)
    with boxed.box():
        boxed.x(0)
    assert instructions_of([boxed]) is None


def test_noise_model_cache_and_ideal(fez, ideal):
    assert noise_model_for(fez.doc, [0, 1, 2]) is noise_model_for(fez.doc, (2, 1, 0), fez.sid)
    assert noise_model_for(ideal.doc, [0, 1]) is None
    with pytest.raises(ValueError, match="outside the device"):
        noise_model_for(fez.doc, [0, 156])


# ------------------------------------------------------------------ runner


def test_fez_ghz_shows_device_noise_and_ideal_does_not(tmp_path, fez, ideal):
    noisy = runner.run_bundle(stage(tmp_path / "fez", fez))
    clean = runner.run_bundle(stage(tmp_path / "ideal", ideal))
    assert noisy["ok"] and clean["ok"], (noisy, clean)
    assert set(clean["counts"]) == {"000", "111"} and sum(clean["counts"].values()) == 4096
    off = sum(v for k, v in noisy["counts"].items() if k not in ("000", "111"))
    assert off > 20 and sum(noisy["counts"].values()) == 4096
    assert tvd(noisy["counts"], clean["counts"]) > 0.01
    # routed onto coupled Fez qubits
    cmap = {tuple(p) for p in fez.doc["coupling_map"]}
    a, b, c = noisy["layout"]
    assert (a, b) in cmap and (b, c) in cmap
    # where Aer says it ran, next to where the runner asked (a GPU node's result names cuStateVec too)
    assert noisy["simulator"]["aer_device"] == noisy["simulator"]["device"] == "CPU"
    assert "custatevec" not in noisy["simulator"]


def test_result_schema(tmp_path, fez):
    result = runner.run_bundle(stage(tmp_path / "b", fez, shots=100))
    assert result == json.loads((tmp_path / "b" / bundle.RESULT_FILE).read_text())
    assert {"ok", "task_id", "attempt", "snapshot_id", "shots", "seed", "counts", "layout", "num_qubits",
            "simulator", "timings"} <= set(result)
    assert result["ok"] is True and result["task_id"] == "t-b" and result["attempt"] == 1
    assert result["snapshot_id"] == fez.sid and result["shots"] == 100 and result["seed"] == 7
    assert result["num_qubits"] == 3 and len(result["layout"]) == 3 and all(0 <= q < 156 for q in result["layout"])
    assert all(isinstance(k, str) and isinstance(v, int) for k, v in result["counts"].items())
    sim = result["simulator"]
    assert sim["device"] in ("CPU", "GPU") and sim["reason"] and sim["method"]
    assert sim["aer_version"] and sim["qiskit_version"]
    assert set(result["timings"]) >= {"load", "transpile", "noise_model", "simulate", "total"}
    assert all(isinstance(v, float) and v >= 0 for v in result["timings"].values())
    assert result_schema.problem(result, shots=100) is None  # what the agent checks before finish


def test_same_seed_same_counts_and_a_chosen_seed_is_recorded(tmp_path, fez):
    first = runner.run_bundle(stage(tmp_path / "a", fez, seed=42, shots=2000))
    again = runner.run_bundle(stage(tmp_path / "b", fez, seed=42, shots=2000))
    assert first["counts"] == again["counts"] and first["layout"] == again["layout"]
    unseeded = runner.run_bundle(stage(tmp_path / "c", fez, seed=None, shots=2000))
    assert isinstance(unseeded["seed"], int)
    replay = runner.run_bundle(stage(tmp_path / "d", fez, seed=unseeded["seed"], shots=2000))
    assert replay["counts"] == unseeded["counts"]


def test_bad_snapshot_hash_fails_with_invalid_snapshot(tmp_path, fez):
    data = bytearray(fez.data)
    data[data.index(b'"t1":') + 6] ^= 1
    where = stage(tmp_path / "b", fez, data=bytes(data))
    assert runner.main([str(where)]) == 2
    result = bundle.read_result(where)
    assert result["ok"] is False and result["reason"] == "invalid_snapshot"
    assert result["error"].startswith("snapshot hash mismatch") and "\n" not in result["error"]
    assert result["task_id"] == "t-b" and result["attempt"] == 1


def test_unparsable_qasm_fails_with_invalid_circuit(tmp_path, ideal):
    where = stage(tmp_path / "b", ideal, 'OPENQASM 2.0;\nqreg q[2];\nnotagate q[0];\n', fmt="qasm2")
    assert runner.main([str(where)]) == 2
    result = bundle.read_result(where)
    assert result["reason"] == "invalid_circuit" and "line 3" in result["error"] and "notagate" in result["error"]


def test_too_many_qubits_is_a_clear_error(tmp_path, fez):
    text = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[200] q;\nh q[0];\n'
    result = runner.run_bundle(stage(tmp_path / "b", fez, text))
    assert result["ok"] is False and result["reason"] == "invalid_circuit"
    assert "200 qubits" in result["error"] and "max_qubits=156" in result["error"]


def test_unreadable_bundle_is_a_runner_error(tmp_path):
    (tmp_path / "empty").mkdir()
    assert runner.main([str(tmp_path / "empty")]) == 2
    result = bundle.read_result(tmp_path / "empty")
    assert result["reason"] == "runner_error" and result["error"].startswith("cannot read the task")


@pytest.mark.parametrize(("available", "requested", "gpu_build", "expected"), [
    (["CPU", "GPU"], None, True, ("GPU", "GPU visible to qiskit-aer")),
    (["CPU"], None, True, ("CPU", "no GPU device visible to qiskit-aer")),
    (["CPU"], None, False, ("CPU", "qiskit-aer built without GPU support")),
    (["CPU", "GPU"], "CPU", True, ("CPU", "CPU requested by the task")),
    (["CPU", "GPU"], "gpu", True, ("GPU", "GPU requested by the task")),
    (["CPU"], "GPU", False, ("CPU", "GPU requested but qiskit-aer built without GPU support")),
    (["CPU"], "GPU", True, ("CPU", "GPU requested but no GPU device visible to qiskit-aer")),
])
def test_select_device(available, requested, gpu_build, expected):
    assert runner.select_device(available, requested, gpu_build=gpu_build) == expected


@pytest.mark.parametrize(("available", "gpu_build", "vendor", "hardware", "expected"), [
    (["CPU", "GPU"], True, "nvidia", "nvidia", ("GPU", "GPU (an NVIDIA (CUDA)) visible to qiskit-aer")),
    (["CPU", "GPU"], True, "amd", "amd", ("GPU", "GPU (an AMD (ROCm)) visible to qiskit-aer")),
    # a CUDA build of Aer on an AMD node sees no GPU: the CPU, and the reason names the mismatch
    (["CPU"], True, "nvidia", "amd",
     ("CPU", "qiskit-aer is an NVIDIA (CUDA) build but the node's GPU is an AMD (ROCm)")),
    # a CPU-only Aer on a node with an AMD GPU: the CPU, and what to install
    (["CPU"], False, None, "amd", ("CPU", "qiskit-aer built without GPU support (the node has an AMD (ROCm) GPU: "
                                         "install a matching qiskit-aer GPU build)")),
])
def test_select_device_names_the_gpu_vendor_or_why_not(available, gpu_build, vendor, hardware, expected):
    """There is no GPU on the development machine: the detection is tested with fakes."""
    assert runner.select_device(available, None, gpu_build=gpu_build, vendor=vendor, hardware=hardware) == expected


def test_gpu_vendor_and_hardware_from_fake_libraries_and_device_files(tmp_path):
    rocm, cuda, cpu = tmp_path / "rocm.so", tmp_path / "cuda.so", tmp_path / "cpu.so"
    rocm.write_bytes(b"\x7fELF...libamdhip64.so.6\x00librocblas.so\x00")
    cuda.write_bytes(b"\x7fELF...libcudart.so.12\x00libcustatevec.so.1\x00")
    cpu.write_bytes(b"\x7fELF...libgomp.so.1\x00libopenblas.so\x00")
    assert [runner.gpu_vendor(p) for p in (rocm, cuda, cpu, tmp_path / "missing.so")] == ["amd", "nvidia", None, None]
    assert runner.gpu_vendor() is None  # this machine's Aer is the CPU build
    dev = tmp_path / "dev"
    dev.mkdir()
    assert runner.gpu_hardware(dev) is None
    (dev / "kfd").touch()
    assert runner.gpu_hardware(dev) == "amd"
    (dev / "nvidia0").touch()
    assert runner.gpu_hardware(dev) == "nvidia"


def test_select_device_refuses_nonsense(tmp_path, ideal):
    with pytest.raises(ValueError, match="unknown simulator device"):
        runner.select_device(["CPU"], "TPU")
    result = runner.run_bundle(stage(tmp_path / "b", ideal, device="TPU"))
    assert result["ok"] is False and result["reason"] == "runner_error" and "TPU" in result["error"]
    forced = runner.run_bundle(stage(tmp_path / "c", ideal, device="CPU"))
    assert forced["simulator"]["device"] == "CPU" and forced["simulator"]["reason"] == "CPU requested by the task"


# ----------------------------------------------------------- hermeticity

HERMETIC_PROBE = textwrap.dedent("""
    import json, sys
    events = []
    def hook(event, args):
        if event.startswith("socket."):
            events.append(event)
    sys.addaudithook(hook)
    from pathlib import Path
    from jupyter_vqpu_agent.runner import run_bundle
    from jupyter_vqpu_agent.worker import _warm_up
    _warm_up()  # what a warm worker does before its first task
    result = run_bundle(Path(sys.argv[1]))
    bad = sorted(m for m in sys.modules
                 if m.split(".")[0] in ("redis", "jupyter_client", "jupyter_core", "jupyter_server", "ipykernel",
                                        "IPython", "notebook", "jupyter_vqpu_server", "qiskit_ibm_runtime", "requests"))
    print(json.dumps({"ok": result["ok"], "socket_events": events, "modules": bad}))
""")


def test_runner_and_worker_import_no_redis_or_jupyter_and_open_no_socket(tmp_path, fez):
    where = stage(tmp_path / "b", fez, shots=200)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", HERMETIC_PROBE, str(where)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"ok": True, "socket_events": [], "modules": []}


# ------------------------------------------------------------------ worker


def test_worker_runs_two_bundles_warm(tmp_path, fez):
    first = stage(tmp_path / "one", fez, shots=1000)
    second = stage(tmp_path / "two", fez, shots=1000, seed=8)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "jupyter_vqpu_agent.worker"], input=f"{first}\n\n{second}\n", cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]  # nothing but protocol on stdout
    assert lines[0]["ready"] is True and isinstance(lines[0]["pid"], int)
    assert lines[1:] == [{"bundle": str(first), "ok": True}, {"bundle": str(second), "ok": True}]
    one, two = bundle.read_result(first), bundle.read_result(second)
    # one warm process: the first task builds the snapshot document, the Target and the noise
    # model; the second (same snapshot, same qubits) reuses all three
    assert one["cache"] == {"snapshot": False, "target": False, "noise_model": False}, one["cache"]
    assert two["cache"] == {"snapshot": True, "target": True, "noise_model": True}, two["cache"]
    assert two["physical_qubits"] == one["physical_qubits"]


def test_a_circuit_without_measurements_is_refused_readably(tmp_path, ideal):
    text = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\nh q[0];\n'
    result = runner.run_bundle(stage(tmp_path / "b", ideal, text))
    assert result["reason"] == "invalid_circuit" and "measures nothing" in result["error"]


def _facts(n: int, ops: int, crossings: int | None = None, *, terminal: bool = True, clifford: bool = False):
    from jupyter_vqpu.core.method import CircuitFacts

    cuts = tuple(min(crossings if crossings is not None else n, i + 1, n - i - 1) for i in range(n - 1))
    return CircuitFacts(active_qubits=n, ops=ops, cut_crossings=cuts, terminal_measurements=terminal,
                        clifford=clifford)


FEZ_NOISE = {"noisy": True, "error_per_shot": 0.3, "readout": True, "clifford": False}


@pytest.mark.parametrize("requested, facts, noise, shots, device, method, extra", [
    # 8 amplitudes, 4,096 shots: one density matrix for all shots
    ("automatic", _facts(3, 20), FEZ_NOISE, 4096, "CPU", "density_matrix", {}),
    # 15 qubits, deep enough that chi reaches its cap: shots share a state until an error splits them
    ("automatic", _facts(15, 240), FEZ_NOISE, 256, "CPU", "statevector", {"shot_branching_enable": True}),
    # 20 qubits in a chain (GHZ): chi <= 2 across every cut, matrix product state
    ("automatic", _facts(20, 140, 1), FEZ_NOISE, 32, "CPU", "matrix_product_state", {}),
    # ... but not on a GPU, where Aer's MPS does not run
    ("automatic", _facts(20, 140, 1), FEZ_NOISE, 32, "GPU", "statevector", {"shot_branching_enable": True}),
    # a 16-qubit, 10-layer brickwork: the chi bound is at its cap, a statevector wins (the MPS trap)
    ("automatic", _facts(16, 400), FEZ_NOISE, 100, "CPU", "statevector", {"shot_branching_enable": True}),
    # a deep QFT on 10 qubits: every shot splits (1.1 noise events each), so branching costs more than one
    # trajectory per shot, and the density matrix (Aer fuses gates and noise) beats both (2.3 s, 8.3 s, 25.5 s)
    ("automatic", _facts(10, 1125), {**FEZ_NOISE, "error_per_shot": 1.1}, 1024, "CPU", "density_matrix", {}),
    # a mid-circuit measurement: no classical readout channel, no density matrix; one trajectory per shot
    ("automatic", _facts(15, 240, terminal=False), FEZ_NOISE, 256, "CPU", "statevector", {}),
    # noise-free: Aer's own choice samples one state
    ("automatic", _facts(3, 20), {"noisy": False}, 4096, "CPU", "automatic", {}),
    # Clifford circuit, Clifford noise: Aer's stabilizer
    ("automatic", _facts(20, 40, clifford=True), {**FEZ_NOISE, "clifford": True}, 4096, "CPU", "automatic", {}),
    # the user's choice stands, and the exact reference is Aer's automatic on the full model
    ("statevector", _facts(3, 20), FEZ_NOISE, 4096, "CPU", "statevector", {}),
    ("aer_default", _facts(3, 20), FEZ_NOISE, 4096, "CPU", "automatic", {}),
])
def test_choose_method(requested, facts, noise, shots, device, method, extra):
    from jupyter_vqpu.core.method import NoiseFacts

    choice = runner.choose_method(requested, facts, NoiseFacts(**noise), shots, device=device)
    assert (choice.method, choice.options) == (method, extra), choice
    assert choice.why  # every choice says why
    # only a branching run of a model with readout errors applies them itself, per shot
    assert choice.readout_channel == bool(extra.get("shot_branching_enable") and noise.get("readout"))


def test_a_loose_mps_bound_is_probed_before_choosing():
    """The 20-qubit layered brickwork on Fez (its facts as circuit_facts gives them), 32 shots: the chi bound says
    6.6 s a shot, 2.8x the whole branching run predicted, but a shot took 23 ms (11 ms a round on two cores), and
    MPS ran the 32 shots in 0.47 s where branching took 4.4 s."""
    from jupyter_vqpu.core.method import CircuitFacts, NoiseFacts

    facts = CircuitFacts(active_qubits=20, ops=321, cut_crossings=(5,), mean_span=2.48, mps_work=656672.0)
    noise = NoiseFacts(True, 0.25, True, False)
    first = runner.choose_method("automatic", facts, noise, 32)
    assert first.method == "statevector" and first.probe  # branching, unless one timed MPS shot says otherwise
    assert first.estimates["matrix_product_state"] / 32 > first.estimates["statevector+branching"]  # a loose bound
    timed = dataclasses.replace(facts, mps_trajectory_s=0.011)
    assert runner.choose_method("automatic", timed, noise, 32).method == "matrix_product_state"


def test_the_probe_counts_the_shots_aer_runs_side_by_side(monkeypatch):
    """Aer runs noisy MPS shots one per core at once: on two cores 1,024 shots cost 512 rounds of the probe's
    shot, not 1,024 (GHZ-15, 256 shots, measured 0.88 s, against 256 x 12.6 ms = 3.2 s serial)."""
    from jupyter_vqpu.core.method import NoiseFacts

    monkeypatch.setattr(runner, "_probe_mps", lambda tqc, noise, seed: 0.002)
    monkeypatch.setattr(runner.os, "sched_getaffinity", lambda pid: {0, 1})
    facts = (_facts(15, 80, 1), NoiseFacts(True, 0.5, True, False), {})
    choice = runner.decide(None, facts, None, 1024, "automatic", "CPU", seed=1)
    assert choice.method == "matrix_product_state" and "1 ms (timed)" in choice.why, choice
    # one core: every shot in turn, 2 ms each, and shot branching (predicted about 1.3 s) is cheaper
    monkeypatch.setattr(runner.os, "sched_getaffinity", lambda pid: {0})
    serial = runner.decide(None, facts, None, 1024, "automatic", "CPU", seed=1)
    assert serial.method == "statevector" and serial.options == {"shot_branching_enable": True}, serial


def test_circuit_facts_see_structure_and_mid_circuit_measurements(fez):
    from qiskit import QuantumCircuit, transpile

    def facts(qc):
        tqc = transpile(qc, target=S.build_target(fez.doc), optimization_level=1, seed_transpiler=1)
        model = noise_model_for(fez.doc, sorted({tqc.find_bit(q).index for i in tqc.data for q in i.qubits}))
        return runner.circuit_facts(tqc, model)

    ghz = QuantumCircuit(6, 6)
    ghz.h(0)
    for i in range(5):
        ghz.cx(i, i + 1)
    ghz.measure(range(6), range(6))
    c, n, measured = facts(ghz)
    assert c.active_qubits >= 6 and c.terminal_measurements and c.log2_chi <= 2
    assert n.noisy and n.readout and 0 < n.error_per_shot < 1 and len(measured) == 6
    mid = QuantumCircuit(2, 2)
    mid.h(0)
    mid.measure(0, 0)
    mid.cx(0, 1)
    mid.measure(1, 1)
    assert facts(mid)[0].terminal_measurements is False


def test_a_small_noisy_circuit_runs_as_a_density_matrix_and_stays_faithful(tmp_path, fez, reference_sim):
    from qiskit import transpile

    result = runner.run_bundle(stage(tmp_path / "dm", fez, shots=4096, seed=3))
    assert result["ok"] and result["simulator"]["method"] == "density_matrix"
    # the same layout under the reference model, another seed: within sampling noise of each other
    from jupyter_vqpu.core.circuits import parse_circuit

    qc = parse_circuit(GHZ3, "qasm3")
    tqc = transpile(qc, target=S.build_target(fez.doc, fez.sid), initial_layout=result["layout"],
                    optimization_level=1, seed_transpiler=3)
    ref = reference_sim.run(tqc, shots=4096, seed_simulator=10**6).result().get_counts()
    assert tvd(result["counts"], ref) < 0.05


def test_the_result_carries_the_transpiled_circuit_as_openqasm3(tmp_path, fez):
    """The panel's detail view shows what ran on the device: the routed, native-gate circuit."""
    from qiskit import qasm3

    result = runner.run_bundle(stage(tmp_path / "t", fez, shots=50))
    text = result["transpiled_qasm"]
    assert text.startswith("OPENQASM 3.0;") and len(text) <= result_schema.MAX_TRANSPILED_QASM_CHARS
    back = qasm3.loads(text)
    native = set(fez.doc["basis_gates"]) | {"barrier"}
    assert set(back.count_ops()) <= native, back.count_ops()  # no h / cx left: it is the transpiled one
    assert "cx" not in back.count_ops() and back.count_ops().get("measure") == 3
    assert result_schema.problem(result, shots=50) is None


def test_a_transpiled_circuit_past_the_bound_is_left_out_without_being_dumped(monkeypatch):
    from qiskit import QuantumCircuit, qasm3

    qc = QuantumCircuit(1, 1)
    for _ in range(200):
        qc.x(0)
    qc.measure(0, 0)
    assert runner.transpiled_text(qc, max_chars=100_000).count("x q[0];") == 200
    # 201 instructions cannot fit in 1,000 characters: refused on the count, before qasm3.dumps runs
    monkeypatch.setattr(qasm3, "dumps", lambda *_: pytest.fail("dumped a circuit that cannot fit"))
    assert runner.transpiled_text(qc, max_chars=1_000) is None


def test_aer_default_gives_the_reference_counts_and_automatic_says_why(tmp_path, fez, reference_sim):
    """method=aer_default is the exact reference: counts identical to AerSimulator.from_backend(FakeFez())
    on the same transpiled circuit and seed; automatic records the method it chose and why."""
    from qiskit import qasm3

    ref_task = runner.run_bundle(stage(tmp_path / "ref", fez, shots=3000, seed=5, method="aer_default"))
    assert ref_task["ok"], ref_task
    assert ref_task["simulator"]["why"].startswith("exact reference requested")
    tqc = qasm3.loads(ref_task["transpiled_qasm"])
    expected = reference_sim.run(tqc, shots=3000, seed_simulator=5).result().get_counts()
    assert ref_task["counts"] == expected
    fast = runner.run_bundle(stage(tmp_path / "fast", fez, shots=3000, seed=5))
    assert fast["ok"] and fast["simulator"]["method"] == "density_matrix"
    assert "density matrix" in fast["simulator"]["why"] and fast["simulator"]["estimates"]
    assert result_schema.problem(fast, shots=3000) is None


def test_a_named_method_gives_from_backends_counts_for_that_method(tmp_path, fez):
    """method="statevector" runs Aer's statevector on Aer's whole-device model: counts identical to
    AerSimulator.from_backend(FakeFez(), method="statevector") at the same seed. (On a model of only
    the circuit's qubits the channels are the same but Aer's trajectories draw in another order: this
    GHZ-3 then differs by a few counts, which is why a named method gets the whole device.)"""
    from qiskit import qasm3
    from qiskit_aer import AerSimulator
    from qiskit_ibm_runtime.fake_provider import FakeFez

    task = runner.run_bundle(stage(tmp_path / "sv", fez, shots=3000, seed=5, method="statevector"))
    assert task["ok"], task
    assert task["simulator"]["method"] == "statevector"
    assert task["simulator"]["noise_scope"].startswith("the whole device")
    tqc = qasm3.loads(task["transpiled_qasm"])
    reference = AerSimulator.from_backend(FakeFez(), method="statevector")
    assert task["counts"] == reference.run(tqc, shots=3000, seed_simulator=5).result().get_counts()
    fast = runner.run_bundle(stage(tmp_path / "auto", fez, shots=3000, seed=5))
    assert fast["simulator"]["noise_scope"].startswith("the circuit's qubits")


def test_a_gate_with_an_array_parameter_travels_exactly_and_matches_aer(tmp_path, fez, reference_sim):
    """A controlled unitary (its matrix an array parameter, as in MQT Bench's ``ae``), which OpenQASM 3
    cannot write: the client sends it as QPY, the runner reads it back exactly, and the counts are
    from_backend's on the same transpiled circuit and seed."""
    from qiskit import QuantumCircuit, transpile
    from qiskit.circuit.library import UnitaryGate
    from qiskit.quantum_info import random_unitary

    from jupyter_vqpu.core import circuits as C

    qc = QuantumCircuit(3, name="ae-like")
    qc.h([0, 1])
    qc.ry(0.7, 2)
    qc.append(UnitaryGate(random_unitary(2, seed=4)).control(1), [0, 2])
    qc.append(UnitaryGate(random_unitary(4, seed=5)).control(1), [1, 0, 2])
    qc.measure_all()
    assert "array parameter" in C.openqasm_would_change(qc)
    fmt, text = C.circuit_to_wire(qc)  # what %%vqpu and Client.submit send
    assert fmt == "qpy"
    task = runner.run_bundle(stage(tmp_path / "ae", fez, text, fmt=fmt, shots=2000, seed=9, method="aer_default"))
    assert task["ok"], task
    # the runner's own steps, here: the circuit read back, transpiled on the snapshot's Target with the task's seed
    target, _ = S.target_for(fez.doc, fez.sid)
    tqc = transpile(C.parse_circuit(text, "qpy"), target=target, optimization_level=2, seed_transpiler=9)
    assert task["physical_qubits"] == sorted({tqc.find_bit(q).index for i in tqc.data for q in i.qubits})
    assert task["counts"] == reference_sim.run(tqc, shots=2000, seed_simulator=9).result().get_counts()


def test_a_sweep_runs_in_one_aer_call_with_the_counts_of_one_by_one(fez, monkeypatch):
    """Circuits of one structure share one choice and one Aer call, and each gets the counts it
    gets alone under its own seed (circuit_seed); circuits the cost model treats differently run one by one."""
    from qiskit import QuantumCircuit, transpile
    from qiskit_aer import AerSimulator

    def point(theta: float, mid: bool = False) -> QuantumCircuit:
        qc = QuantumCircuit(3, 3)
        qc.ry(theta, 0)
        if mid:  # a mid-circuit measurement: no density matrix for this one, so another choice
            qc.measure(0, 0)
        qc.cx(0, 1)
        qc.cx(1, 2)
        qc.measure(range(3), range(3))
        return qc

    target = S.build_target(fez.doc)
    tqcs = transpile([point(0.3 * k) for k in range(1, 5)], target=target, optimization_level=1, seed_transpiler=2,
                     initial_layout=[0, 1, 2])
    model = noise_model_for(fez.doc, [0, 1, 2])
    calls = []
    real_run = AerSimulator.run
    monkeypatch.setattr(AerSimulator, "run", lambda self, c, **kw: calls.append(c) or real_run(self, c, **kw))
    together = runner.simulate_all(tqcs, 2000, 9, model, "automatic", "CPU")
    assert len(calls) == 1 and "one Aer call for 4 circuits" in together[0][1]["batch"]
    alone = [runner._simulate(t, 2000, runner.circuit_seed(9, i), model, "automatic", "CPU", 3)
             for i, t in enumerate(tqcs)]
    assert [c for c, _ in together] == [c for c, _ in alone]
    calls.clear()
    mixed = transpile([point(0.3), point(0.3, mid=True)], target=target, optimization_level=1, seed_transpiler=2,
                      initial_layout=[0, 1, 2])
    runner.simulate_all(mixed, 100, 9, model, "automatic", "CPU")
    assert len(calls) == 2
    # one odd point in a sweep splits it into runs of equal kind (3 calls, not 5), counts unchanged
    calls.clear()
    sweep = transpile([point(0.3), point(0.6), point(0.9, mid=True), point(1.2), point(1.5)], target=target,
                      optimization_level=1, seed_transpiler=2, initial_layout=[0, 1, 2])
    runs = runner.simulate_all(sweep, 2000, 9, model, "automatic", "CPU")
    assert [len(c) if isinstance(c, list) else 1 for c in calls] == [2, 1, 2]
    calls.clear()
    alone = [runner._simulate(t, 2000, runner.circuit_seed(9, i), model, "automatic", "CPU", 3)
             for i, t in enumerate(sweep)]
    assert [c for c, _ in runs] == [c for c, _ in alone]
