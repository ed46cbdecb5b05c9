"""The job runner: what a Slurm job (or a local process) executes for one task attempt.

    python -m jupyter_vqpu_agent.runner BUNDLE_DIR

It reads only its bundle and writes only ``result.json``: it imports neither
Redis nor Jupyter and opens no socket, so a job is hermetic and can be replayed
from its bundle alone. Exit status 0 means a successful result, 2 a failure
result (the reason is in result.json).

Pipeline: verify the snapshot hash -> parse the circuit under bounds -> build the
device Target -> transpile (routing to the coupling map, native gates) -> noise
model for the physical qubits the transpiled circuit uses -> simulate with Aer.
Module-level caches (snapshot documents, Targets, noise models) make the second
task in a warm worker process cost only its own transpile and simulation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from jupyter_vqpu.core.cache import Memo, cache_bytes, json_bytes
from jupyter_vqpu.core.errors import CircuitError, LimitExceeded, SnapshotError
from jupyter_vqpu.core.method import choose_method
from jupyter_vqpu.core.result import MAX_TRANSPILED_QASM_CHARS
from jupyter_vqpu.core.snapshot import load_snapshot, snapshot_id
from jupyter_vqpu_agent import bundle, private

# Verified snapshot documents by id (a warm worker re-reads the same bytes task after task).
DOCS: Memo[dict] = Memo(maxsize=cache_bytes("snapshots"), getsizeof=json_bytes)


class _Failure(Exception):
    """A failure with its result reason; the message is the one line the user reads."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


#: What a noisy run's model covered, as the result records it (``simulator.noise_scope``).
NOISE_SCOPES = {
    False: "the circuit's qubits, the instructions it runs (the same channels as from_backend; counts statistically "
           "equal)",
    True: "the whole device (Aer's own from_backend model: counts identical at the same seed)",
}


def select_device(available: list[str], requested: str | None, *, gpu_build: bool = True,
                  vendor: str | None = None, hardware: str | None = None) -> tuple[str, str]:
    """(device, reason) for Aer: the GPU when Aer can see one, else the CPU, saying why.

    ``requested`` ("CPU"/"GPU", from the task options) wins where it can be met;
    a GPU request without a visible GPU falls back to the CPU rather than failing,
    with the reason recorded. ``gpu_build`` tells the two "no GPU" cases apart;
    ``vendor`` ("nvidia"/"amd", from Aer's own library: ``gpu_vendor``) names the GPU
    in the reason, and ``hardware`` (``gpu_hardware``: what the node has) says why a
    GPU the node has is not used (e.g. an AMD GPU under a CUDA or CPU-only Aer)."""
    want = (requested or "").strip().upper() or None
    if want not in (None, "CPU", "GPU"):
        raise ValueError(f"unknown simulator device {requested!r}; use CPU or GPU")
    has_gpu = "GPU" in available
    if not gpu_build:
        missing = "qiskit-aer built without GPU support"
    elif vendor and hardware and vendor != hardware:
        missing = f"qiskit-aer is {_VENDOR_NAMES[vendor]} build but the node's GPU is {_VENDOR_NAMES[hardware]}"
    else:
        missing = "no GPU device visible to qiskit-aer"
    if not gpu_build and hardware:
        missing += f" (the node has {_VENDOR_NAMES[hardware]} GPU: install a matching qiskit-aer GPU build)"
    what = f"GPU ({_VENDOR_NAMES[vendor]})" if vendor else "GPU"
    if want == "CPU":
        return "CPU", "CPU requested by the task"
    if want == "GPU":
        return ("GPU", f"{what} requested by the task") if has_gpu else ("CPU", f"GPU requested but {missing}")
    return ("GPU", f"{what} visible to qiskit-aer") if has_gpu else ("CPU", missing)


_VENDOR_NAMES = {"nvidia": "an NVIDIA (CUDA)", "amd": "an AMD (ROCm)"}
# Libraries an Aer GPU build links: CUDA's runtime (and cuStateVec) or ROCm's HIP runtime.
_VENDOR_MARKERS = ((b"libamdhip64", "amd"), (b"libcudart", "nvidia"), (b"libcustatevec", "nvidia"))


def gpu_vendor(library: Path | None = None) -> str | None:
    """Which GPU runtime Aer's compiled controller links ("nvidia", "amd"), or None for a CPU build.

    Read from the shared library's bytes (its dynamic section names what it links), so it
    needs no GPU, no driver and no vendor tool; ``library`` is for tests."""
    if library is None:
        import qiskit_aer

        found = sorted(Path(qiskit_aer.__file__).parent.glob("backends/controller_wrappers*"))
        if not found:
            return None
        library = found[0]
    try:
        data = library.read_bytes()
    except OSError:
        return None
    for marker, vendor in _VENDOR_MARKERS:
        if marker in data:
            return vendor
    return None


def gpu_hardware(dev: Path = Path("/dev")) -> str | None:
    """The GPU the node has, by its device files: NVIDIA (/dev/nvidia0...) or AMD (/dev/kfd); None."""
    if any(dev.glob("nvidia[0-9]*")):
        return "nvidia"
    if (dev / "kfd").exists():
        return "amd"
    return None


def _aer_has_gpu_build() -> bool:
    """Whether the installed qiskit-aer is a GPU build (qiskit-aer-gpu*, or a library linking a GPU runtime)."""
    for dist in metadata.distributions():
        name = (dist.metadata.get("Name") or "").lower().replace("_", "-")
        if name.startswith("qiskit-aer-gpu"):
            return True
    return _gpu_names()[0] is not None


_DEVICE_INFO: tuple[list[str], bool] | None = None
_GPU_NAMES: tuple[str | None, str | None] | None = None


def device_info() -> tuple[list[str], bool]:
    """(devices Aer can use, whether it is a GPU build), once per process."""
    global _DEVICE_INFO
    if _DEVICE_INFO is None:
        from qiskit_aer import AerSimulator

        _DEVICE_INFO = (list(AerSimulator().available_devices()), _aer_has_gpu_build())
    return _DEVICE_INFO


def _gpu_names() -> tuple[str | None, str | None]:
    """(Aer's GPU vendor, the node's GPU vendor), once per process: for the device reason and cuStateVec."""
    global _GPU_NAMES
    if _GPU_NAMES is None:
        _GPU_NAMES = (gpu_vendor(), gpu_hardware())
    return _GPU_NAMES


def _snapshot(data: bytes, expected_id: str) -> tuple[dict, bool]:
    """The verified snapshot document, and whether these bytes were verified before."""
    sid = snapshot_id(data)
    if sid != expected_id:
        load_snapshot(data, expected_id)  # raises the readable mismatch
    # raises on non-canonical bytes or a bad schema; verified bytes hit the cache
    return DOCS.get(sid, lambda: load_snapshot(data, expected_id))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0].strip() if text else ""
    return (first or type(exc).__name__)[:500]


def run_bundle(bundle_dir: Path) -> dict:
    """Run one bundle and write its result.json; returns the result (never raises for task errors)."""
    started = time.perf_counter()
    bundle_dir = Path(bundle_dir)
    head: dict[str, Any] = {"task_id": None, "attempt": None}
    try:
        spec = bundle.read_spec(bundle_dir)
        head = {"task_id": spec.task_id, "attempt": spec.attempt}
        result = {"ok": True, **head, **_execute(bundle_dir, spec, started)}
    except _Failure as exc:
        result = {"ok": False, **head, "reason": exc.reason, "error": str(exc)}
    except Exception as exc:  # a bug or an environment problem: still one readable line
        where = "cannot read the task" if head["task_id"] is None else "runner error"
        result = {"ok": False, **head, "reason": "runner_error", "error": f"{where}: {type(exc).__name__}: {_one_line(exc)}"}
    try:
        bundle.write_result(bundle_dir, result)
    except OSError as exc:
        print(f"vqpu runner: cannot write the result in {bundle_dir}: {exc}", file=sys.stderr)
    return result


#: How Aer spreads one seed_simulator over the circuits of one run: circuit i gets seed + 2113 * i
#: (qiskit-aer's controller_execute, "shift the seed for each successive experiment"), so a list
#: here gives each circuit the counts Aer gives it in the same list.
AER_SEED_SHIFT = 2113


def circuit_seed(seed: int, index: int) -> int:
    """The simulator seed of circuit ``index`` of a task seeded ``seed``, as Aer derives it."""
    return (seed + AER_SEED_SHIFT * index) % 2**63


def _execute(bundle_dir: Path, spec: bundle.TaskSpec, started: float) -> dict:
    """Every circuit of the task in one pass: one snapshot, one Target, one noise model (for the
    physical qubits any circuit uses), then each circuit transpiled and simulated with its own seed.

    The result's top level describes the first circuit (what a single-circuit task always
    returned); a task of several also has ``experiments``, one entry per circuit, in order."""
    from jupyter_vqpu.core import run_options
    from jupyter_vqpu.core.snapshot import target_for
    from jupyter_vqpu_agent.noise import instructions_of, noise_model_with_hit

    if isinstance(spec.shots, bool) or not isinstance(spec.shots, int) or spec.shots < 1:
        raise _Failure("runner_error", f"shots must be a positive whole number, got {spec.shots!r}")
    options = spec.options if isinstance(spec.options, dict) else {}
    unknown = run_options.unknown(options)
    if unknown:
        raise _Failure("runner_error", f"unknown run option(s) {', '.join(unknown)}; this runner knows "
                                       f"{', '.join(run_options.KNOWN)}")
    for name, value in options.items():
        wrong = run_options.problem(name, value)
        if wrong:
            raise _Failure("runner_error", wrong)
    method = options.get("method") or "automatic"
    noisy = options.get("noise", True)
    try:
        available, gpu_build = device_info()
        device, reason = select_device(available, options.get("device"), gpu_build=gpu_build, vendor=_gpu_names()[0],
                                       hardware=_gpu_names()[1])
    except ValueError as exc:
        raise _Failure("runner_error", str(exc)) from None
    seed = spec.seed if spec.seed is not None else random.SystemRandom().randrange(2**31)

    # ---- load: snapshot, circuits, target
    try:
        data = (bundle_dir / spec.snapshot_file).read_bytes()
    except OSError as exc:
        raise _Failure("invalid_snapshot", f"cannot read the snapshot file: {exc.strerror or exc}") from None
    try:
        doc, doc_hit = _snapshot(data, spec.snapshot_id)
    except SnapshotError as exc:
        raise _Failure("invalid_snapshot", str(exc)) from None
    if doc["device"] != spec.device:
        raise _Failure("invalid_snapshot", f"the bundled snapshot is for device {doc['device']!r}, "
                                           f"the task for {spec.device!r}")
    try:
        entries = bundle.read_circuits(bundle_dir, spec)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _Failure("invalid_circuit", f"cannot read the circuit file: {_one_line(exc)}") from None
    many = bool(spec.circuits_file)
    circuits = [_parse(text, fmt, doc["num_qubits"], i if many else None) for i, (fmt, text) in enumerate(entries)]
    if not circuits:
        raise _Failure("invalid_circuit", "the task has no circuits")
    target, target_hit = target_for(doc, spec.snapshot_id)
    loaded = time.perf_counter()

    # ---- transpile each to the device (or check it is for the device already)
    skip = bool(options.get("skip_transpilation"))
    passes = _PassManagerOnce(target, spec.optimization_level, seed)
    prepared = [_prepare(qc, target, spec, passes, skip, i if many else None) for i, qc in enumerate(circuits)]
    used_all = sorted({q for _, _, used in prepared for q in used})
    transpiled = time.perf_counter()

    # ---- one noise model (none for an ideal run): for the physical qubits the circuits use, or, when
    # the task names a trajectory method or Aer's own choice, the whole device's. Aer draws trajectories
    # in an order that depends on every entry of the model (two models that agree on the circuit's
    # qubits can give other counts), so only the whole device gives from_backend's counts bit for bit
    # there; a density matrix samples no trajectories and is bit-identical on either (docs/performance.md).
    # The circuits' own model holds only the entries of the instructions they run (the others are never
    # applied, and building one is what a new circuit shape costs).
    exact = method not in ("automatic", "density_matrix")
    scope = range(doc["num_qubits"]) if exact else used_all
    only = None if exact or not noisy else instructions_of(tqc for _, tqc, _ in prepared)
    noise, noise_hit = noise_model_with_hit(doc, scope, spec.snapshot_id, only) if noisy else (None, False)
    modelled = time.perf_counter()

    # ---- simulate each circuit with its own seed (Aer's spread of one seed over a list)
    experiments = []
    sims = simulate_all([tqc for _, tqc, _ in prepared], spec.shots, seed, noise, method, device)
    for i, ((qc, tqc, used), original) in enumerate(zip(prepared, circuits)):
        this_seed = circuit_seed(seed, i)
        counts, sim = sims[i]
        if tqc.layout is None and tqc is original and original.num_qubits == target.num_qubits:
            layout = final_layout = used  # written for the device (e.g. OpenQASM on $n): its qubits are physical
        else:
            layout, final_layout = _layouts(tqc, original.num_qubits)
        experiments.append({
            "shots": spec.shots, "seed": this_seed, "counts": counts, "layout": layout,
            "final_layout": final_layout, "physical_qubits": used, "num_qubits": original.num_qubits,
            "method": sim["method"], "simulator": sim, "transpiled": tqc is not original,
            "qubit_errors": _qubit_errors(doc, used), "estimated_fidelity": _estimated_fidelity(tqc, target),
        })
    done = time.perf_counter()

    import qiskit
    import qiskit_aer

    first = experiments[0]
    transpiled_qasm = transpiled_text(prepared[0][1])
    result = {
        "snapshot_id": spec.snapshot_id,
        **{k: v for k, v in first.items() if k not in ("method", "simulator")},
        "seed": seed,
        **({"transpiled_qasm": transpiled_qasm} if transpiled_qasm is not None else {}),
        "simulator": {**{k: str(v) for k, v in first["simulator"].items() if v is not None},
                      "device": device, "reason": reason, "noise": ("device" if noisy else "none"),
                      **({"noise_scope": NOISE_SCOPES[exact]} if noisy else {}),
                      "aer_version": qiskit_aer.__version__, "qiskit_version": qiskit.__version__},
        # what this run reused from earlier ones in the same (warm) process
        "cache": {"snapshot": doc_hit, "target": target_hit, "noise_model": noise_hit},
        "timings": {"load": loaded - started, "transpile": transpiled - loaded, "noise_model": modelled - transpiled,
                    "simulate": done - modelled, "total": done - started},
    }
    if many:
        result["experiments"] = experiments
    return result


def _parse(text: str, fmt: str | None, device_qubits: int, index: int | None) -> Any:
    from jupyter_vqpu.core.circuits import parse_circuit

    try:
        return parse_circuit(text, fmt or None, max_qubits=device_qubits)
    except (CircuitError, LimitExceeded) as exc:
        raise _Failure("invalid_circuit", _which(index) + str(exc)) from None


def _which(index: int | None) -> str:
    return "" if index is None else f"circuits[{index}]: "


class _PassManagerOnce:
    """The preset pass manager ``transpile(target=..., optimization_level=..., seed_transpiler=...)``
    builds on every call, built once per task: its circuits get exactly what ``transpile`` gives each
    of them (same passes, same seed, same result), without the 15-50 ms of building it per circuit
    (a 40-circuit sweep: 63 ms per circuit one ``transpile`` at a time, 10 ms with this)."""

    def __init__(self, target: Any, level: int, seed: int) -> None:
        self.target, self.level, self.seed = target, level, seed
        self._pm: Any = None

    def run(self, qc: Any) -> Any:
        from qiskit.transpiler import generate_preset_pass_manager

        with builtin_transpiler_plugins_only():
            if self._pm is None:
                self._pm = generate_preset_pass_manager(self.level, target=self.target, seed_transpiler=self.seed)
            return self._pm.run(qc, num_processes=1)


def _prepare(qc: Any, target: Any, spec: bundle.TaskSpec, passes: _PassManagerOnce, skip: bool,
             index: int | None) -> tuple[Any, Any, list[int]]:
    """(circuit, circuit to simulate, physical qubits it uses). A circuit already for the device
    (as wide as the device, every instruction native on its qubits: what ``transpile(qc, backend)``
    returns) runs as it is, keeping the user's layout; ``skip`` demands that, else the circuit is
    transpiled at the task's optimization level (2 by default: Qiskit's default preset, noise-aware
    VF2 layout on the snapshot's error rates)."""
    from qiskit.circuit import CONTROL_FLOW_OP_NAMES
    from qiskit.transpiler.exceptions import TranspilerError

    from jupyter_vqpu.core.isa import not_for_device

    isa = not_for_device(qc, target)
    if skip and isa is not None:
        raise _Failure("invalid_circuit", f"{_which(index)}the circuit is not for {spec.device}: {isa} (transpile "
                                          f"it first: transpile(qc, backend))")
    if isa is None and (skip or qc.num_qubits == target.num_qubits):
        tqc = qc
    else:
        try:
            tqc = passes.run(qc)
        except TranspilerError as exc:
            raise _Failure("invalid_circuit", f"{_which(index)}the circuit cannot run on {spec.device}: "
                                              f"{_one_line(exc)}") from None
    ops = tqc.count_ops()
    if "measure" not in ops and not CONTROL_FLOW_OP_NAMES.intersection(ops):
        raise _Failure("invalid_circuit", f"{_which(index)}the circuit measures nothing, so it has no counts to "
                                          "return (add measurements, e.g. qc.measure_all())")
    used = sorted({tqc.find_bit(q).index for inst in tqc.data for q in inst.qubits})
    return qc, tqc, used


def _qubit_errors(doc: dict, used: list[int]) -> list[dict[str, Any]]:
    """The calibration of each physical qubit a circuit used: what its counts were exposed to."""
    out = []
    for q in used:
        props = doc["qubits"][q] if q < len(doc["qubits"]) else {}
        out.append({"qubit": q, **{k: props.get(k) for k in ("readout_error", "t1", "t2")}})
    return out


def _estimated_fidelity(tqc: Any, target: Any) -> float | None:
    """The product of (1 - error) over the transpiled circuit's instructions, from the Target's
    calibration: the figure the layout stage tries to maximise (None with control flow)."""
    fidelity = 1.0
    for inst in tqc.data:
        name = inst.operation.name
        if name in ("barrier", "delay"):
            continue
        qargs = tuple(tqc.find_bit(q).index for q in inst.qubits)
        try:
            props = target[name].get(qargs)
        except KeyError:
            return None
        if props is not None and props.error is not None:
            fidelity *= 1.0 - props.error
    return round(fidelity, 6)


def transpiled_text(tqc: Any, max_chars: int = MAX_TRANSPILED_QASM_CHARS) -> str | None:
    """The transpiled circuit as OpenQASM 3 text, for the panel's detail view; None when it is
    longer than ``max_chars`` (a deep circuit) or cannot be written as OpenQASM.

    Every instruction takes at least ~8 characters, so a circuit with more than
    ``max_chars / 8`` of them is not dumped at all: a huge circuit costs one length check,
    not a full dump that is then thrown away."""
    from qiskit import qasm3

    if len(tqc.data) > max_chars // 8:
        return None
    try:
        text = qasm3.dumps(tqc)
    except Exception:  # noqa: BLE001 (an exporter gap must not fail a run that simulated fine)
        return None
    return text if len(text) <= max_chars else None


@contextlib.contextmanager
def builtin_transpiler_plugins_only() -> Iterator[None]:
    """Let the transpiler see only Qiskit's own stage plugins while we transpile.

    Qiskit's preset pass managers load every installed transpiler plugin package
    through stevedore. With qiskit-ibm-runtime installed that imports its client
    stack (requests, urllib3: which creates and binds a socket while probing for
    IPv6), breaking the rule that a job opens no socket, and any plugin installed
    on a node could change results. The runner uses only the default stages, so
    foreign plugins are hidden for the duration of the call."""
    try:
        import stevedore
    except ImportError:  # a Qiskit without stevedore has no plugins to hide
        yield
        return
    original = stevedore.ExtensionManager.list_entry_points

    def qiskit_only(self, *args: Any, **kwargs: Any) -> list:
        points = original(self, *args, **kwargs)
        if not str(getattr(self, "namespace", "")).startswith("qiskit.transpiler."):
            return points
        return [ep for ep in points if ep.value.split(":")[0].split(".")[0] == "qiskit"]

    stevedore.ExtensionManager.list_entry_points = qiskit_only  # type: ignore[method-assign]
    try:
        yield
    finally:
        stevedore.ExtensionManager.list_entry_points = original  # type: ignore[method-assign]


def _layouts(tqc: Any, num_virtual: int) -> tuple[list[int], list[int]]:
    """Physical qubit of each virtual qubit at the start (layout) and at the end (after routing swaps)."""
    if tqc.layout is None:
        ident = list(range(num_virtual))
        return ident, ident
    return (list(tqc.layout.initial_index_layout(filter_ancillas=True)),
            list(tqc.layout.final_index_layout(filter_ancillas=True)))


#: Gates Aer's stabilizer method applies (a circuit of only these, with Clifford noise, runs as one).
CLIFFORD_GATES = frozenset({"id", "x", "y", "z", "h", "s", "sdg", "sx", "sxdg", "cx", "cy", "cz", "swap", "delay",
                            "reset", "barrier", "measure"})


def circuit_facts(tqc: Any, noise: Any = None) -> tuple[Any, Any, dict[int, int]]:
    """(CircuitFacts, NoiseFacts, clbit -> physical qubit of its measurement) of a transpiled circuit:
    one pass over its instructions, linear in its length."""
    from qiskit.circuit import CONTROL_FLOW_OP_NAMES

    from jupyter_vqpu.core.method import CircuitFacts, NoiseFacts

    used = sorted({tqc.find_bit(q).index for inst in tqc.data for q in inst.qubits})
    pos = {q: i for i, q in enumerate(used)}
    crossings = [0] * max(len(used) - 1, 0)
    rates = getattr(noise, "error_rates", {})
    ops = spans = twoq = 0
    error_per_shot = mps_work = 0.0
    clifford, terminal = True, True
    measured: dict[int, int] = {}   # clbit -> qubit
    done: set[int] = set()          # qubits measured already
    for inst in tqc.data:
        op = inst.operation
        name = op.name
        qargs = tuple(tqc.find_bit(q).index for q in inst.qubits)
        if name == "barrier":
            continue
        if name in CONTROL_FLOW_OP_NAMES or getattr(op, "condition", None) is not None:
            terminal = clifford = False
        if name == "measure":
            clbit = tqc.find_bit(inst.clbits[0]).index
            if clbit in measured or qargs[0] in done:
                terminal = False
            measured[clbit] = qargs[0]
            done.add(qargs[0])
            continue
        if done.intersection(qargs):
            terminal = False  # an operation after a measurement on the same qubit
        ops += 1
        clifford = clifford and name in CLIFFORD_GATES
        error_per_shot += rates.get((name, qargs), 0.0)
        if len(qargs) == 2:
            a, b = sorted((pos[qargs[0]], pos[qargs[1]]))
            rank_bits = 1 if name in ("cx", "cz", "ecr", "cy", "ch", "crx", "cry", "crz", "cp", "rzz") else 2
            for cut in range(a, b):
                crossings[cut] = min(crossings[cut] + rank_bits, min(cut + 1, len(used) - cut - 1))
            # an MPS applies it at the bond dimension reached so far across the cuts it spans
            mps_work += (b - a) * 8.0 ** max(crossings[a:b])
            spans += b - a
            twoq += 1
        elif len(qargs) > 2:
            for cut in range(pos[min(qargs, key=pos.get)], pos[max(qargs, key=pos.get)]):
                crossings[cut] += 2 * len(qargs)
    caps = [min(i + 1, len(used) - i - 1) for i in range(len(crossings))]
    facts = CircuitFacts(active_qubits=len(used), ops=ops, clifford=clifford, terminal_measurements=terminal,
                         cut_crossings=tuple(min(c, cap) for c, cap in zip(crossings, caps)),
                         mean_span=spans / twoq if twoq else 1.0, mps_work=mps_work)
    noisy = noise is not None
    noise_facts = NoiseFacts(noisy=noisy, error_per_shot=error_per_shot,
                             readout=noisy and noise.has_readout(), clifford=noisy and noise.clifford)
    return facts, noise_facts, measured


def decide(tqc: Any, facts: tuple, noise: Any, shots: int, method: str, device: str, seed: int) -> Any:
    """The method the runner runs ``tqc`` with (a ``core.method.Choice``): the cost model's, and where
    the model asks for it, again after timing one noisy MPS shot (the chi bound may be loose)."""
    circuit, noise_facts, _ = facts
    choice = choose_method(method, circuit, noise_facts, shots, device=device)
    if choice.probe:
        # Aer runs MPS shots side by side, one per core (its parallel_shots), so a run costs the probe's
        # shot once per round of them (measured: GHZ-15, 256 shots, 0.88 s against 256 x 12.6 ms serial)
        rounds = shots / max(1, min(shots, len(os.sched_getaffinity(0))))
        per_shot = _probe_mps(tqc, noise, seed) * rounds / shots
        circuit = dataclasses.replace(circuit, mps_trajectory_s=per_shot)
        choice = choose_method(method, circuit, noise_facts, shots, device=device)
    return choice


def _probe_mps(tqc: Any, noise: Any, seed: int) -> float:
    """Seconds one noisy matrix-product-state shot of ``tqc`` takes in the simulator (Aer's own
    ``time_taken`` for the experiment, without the per-call set-up): what each shot will cost."""
    from qiskit_aer import AerSimulator

    result = AerSimulator(method="matrix_product_state", noise_model=noise, seed_simulator=seed).run(tqc, shots=1).result()
    return float(result.results[0].time_taken)


def _simulate(tqc: Any, shots: int, seed: int, noise: Any, method: str, device: str,
              active_qubits: int) -> tuple[dict[str, int], dict[str, Any]]:
    """Counts, and what ran: ``{"method", "why", ...}`` (the fastest exact method from
    ``jupyter_vqpu.core.method.choose_method``, or the task's own). A readout channel run
    simulates the model without its readout errors (shot branching) and applies them per shot."""
    return simulate_all([tqc], shots, seed, noise, method, device)[0]


def simulate_all(tqcs: list[Any], shots: int, seed: int, noise: Any, method: str,
                 device: str) -> list[tuple[dict[str, int], dict[str, Any]]]:
    """``_simulate`` for every circuit of a task, circuit i seeded ``circuit_seed(seed, i)``.

    Neighbouring circuits for which the cost model makes one choice (a parameter sweep: the same
    gates on the same qubits, other angles) run in ONE Aer call: one noise model, serialised once,
    and Aer's own per-circuit seeds, which continue ``circuit_seed``'s from the first of the run
    (seed + 2113 i is linear in i), so the counts are those of running them one by one. A sweep
    whose transpiled points fall into a few kinds (an angle the optimiser removes changes a point's
    gates) makes one call per run of equal kind, not one per circuit."""
    facts = [circuit_facts(t, noise) for t in tqcs]
    kinds = [_kind(choose_method(method, c, n, shots, device=device)) for c, n, _ in facts]
    out: list[tuple[dict[str, int], dict[str, Any]]] = []
    start = 0
    for _, run in itertools.groupby(range(len(tqcs)), key=kinds.__getitem__):
        size = len(list(run))
        out += _run_group(tqcs[start:start + size], facts[start:start + size], shots, circuit_seed(seed, start),
                          noise, method, device)
        start += size
    return out


def _kind(choice: Any) -> tuple:
    """What must match for circuits to share an Aer call (a probe may still be pending: its own kind)."""
    return choice.method, tuple(sorted(choice.options.items())), choice.readout_channel, choice.probe


def _run_group(tqcs: list[Any], facts: list[tuple], shots: int, seed: int, noise: Any, method: str,
               device: str) -> list[tuple[dict[str, int], dict[str, Any]]]:
    import numpy as np
    from qiskit_aer import AerSimulator

    from jupyter_vqpu_agent.noise import apply_readout, without_readout

    choice = decide(tqcs[0], facts[0], noise, shots, method, device, seed)
    model = without_readout(noise) if (noise is not None and choice.readout_channel) else noise
    options: dict[str, Any] = {"method": choice.method, "seed_simulator": seed, "device": device, **choice.options}
    if model is not None:
        options["noise_model"] = model
    if device == "GPU" and _gpu_names()[0] != "amd":  # cuStateVec is NVIDIA's; a ROCm build runs Thrust
        options["cuStateVec_enable"] = True
    result = AerSimulator(**options).run(tqcs if len(tqcs) > 1 else tqcs[0], shots=shots).result()
    if not result.success:
        status = next((r.status for r in result.results if not r.success), None) if result.results else None
        raise _Failure("runner_error", f"the simulator failed: {status or result.status}")
    info: dict[str, Any] = {"why": choice.why}
    if choice.readout_channel:
        info["readout"] = "classical channel per shot"
    if choice.estimates:  # text, as every simulator field is (core/result.py)
        info["estimates"] = ", ".join(f"{k} {v:.3g} s" for k, v in sorted(choice.estimates.items(), key=lambda kv: kv[1]))
    if len(tqcs) > 1:
        info["batch"] = f"one Aer call for {len(tqcs)} circuits of one structure"
    out = []
    for i, (tqc, (_, _, measured)) in enumerate(zip(tqcs, facts)):
        counts = {str(k): int(v) for k, v in result.get_counts(i).items()}
        if choice.readout_channel:
            # its own stream, derived from the circuit's seed: the same seed gives the same counts
            counts = apply_readout(counts, measured, noise.readout_matrices(), tqc.num_clbits,
                                   np.random.default_rng([circuit_seed(seed, i), 0x5EAD0]))
        md = result.results[i].metadata or {}
        # where Aer says it ran (a GPU run names cuStateVec): what a benchmark on a GPU node records per row
        ran = {"aer_device": str(md.get("device", device)),
               **({"custatevec": str(bool(md["cuStateVec_enable"]))} if "cuStateVec_enable" in md else {})}
        out.append((counts, {"method": str(md.get("method", choice.method))
                             + ("+branching" if choice.options.get("shot_branching_enable") else ""), **info, **ran}))
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m jupyter_vqpu_agent.runner BUNDLE_DIR``: 0 on success, 2 on a failure result."""
    args = sys.argv[1:] if argv is None else argv
    os.umask(private.UMASK)  # a job process: whatever it writes is private (result.json is 0600 anyway)
    if len(args) != 1:
        print("usage: python -m jupyter_vqpu_agent.runner BUNDLE_DIR", file=sys.stderr)
        return 2
    result = run_bundle(Path(args[0]))
    summary = {k: result.get(k) for k in ("ok", "task_id", "attempt", "reason", "error") if result.get(k) is not None}
    if result.get("ok"):
        summary["timings"] = result.get("timings")
    print(json.dumps(summary, sort_keys=True), file=sys.stderr if not result.get("ok") else sys.stdout)
    return 0 if result.get("ok") else 2


if __name__ == "__main__":
    sys.exit(main())
