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
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from jupyter_vqpu.core.cache import Memo
from jupyter_vqpu.core.errors import CircuitError, LimitExceeded, SnapshotError
from jupyter_vqpu.core.result import MAX_TRANSPILED_QASM_CHARS
from jupyter_vqpu.core.snapshot import load_snapshot, snapshot_id
from jupyter_vqpu_agent import bundle, private

# Verified snapshot documents by id (a warm worker re-reads the same bytes task after task).
DOCS: Memo[dict] = Memo(maxsize=8)


class _Failure(Exception):
    """A failure with its result reason; the message is the one line the user reads."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def select_device(available: list[str], requested: str | None, *, gpu_build: bool = True) -> tuple[str, str]:
    """(device, reason) for Aer: the GPU when Aer can see one, else the CPU, saying why.

    ``requested`` ("CPU"/"GPU", from the task options) wins where it can be met;
    a GPU request without a visible GPU falls back to the CPU rather than failing,
    with the reason recorded. ``gpu_build`` tells the two "no GPU" cases apart."""
    want = (requested or "").strip().upper() or None
    if want not in (None, "CPU", "GPU"):
        raise ValueError(f"unknown simulator device {requested!r}; use CPU or GPU")
    has_gpu = "GPU" in available
    missing = "no GPU device visible to qiskit-aer" if gpu_build else "qiskit-aer built without GPU support"
    if want == "CPU":
        return "CPU", "CPU requested by the task"
    if want == "GPU":
        return ("GPU", "GPU requested by the task") if has_gpu else ("CPU", f"GPU requested but {missing}")
    return ("GPU", "GPU visible to qiskit-aer") if has_gpu else ("CPU", missing)


def _aer_has_gpu_build() -> bool:
    """Whether the installed qiskit-aer is a GPU build (qiskit-aer-gpu*), visible GPU or not."""
    for dist in metadata.distributions():
        name = (dist.metadata.get("Name") or "").lower().replace("_", "-")
        if name.startswith("qiskit-aer-gpu"):
            return True
    return False


_DEVICE_INFO: tuple[list[str], bool] | None = None


def _device_info() -> tuple[list[str], bool]:
    global _DEVICE_INFO
    if _DEVICE_INFO is None:
        from qiskit_aer import AerSimulator

        _DEVICE_INFO = (list(AerSimulator().available_devices()), _aer_has_gpu_build())
    return _DEVICE_INFO


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
    from jupyter_vqpu_agent.noise import noise_model_with_hit

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
        available, gpu_build = _device_info()
        device, reason = select_device(available, options.get("device"), gpu_build=gpu_build)
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
    prepared = [_prepare(qc, target, spec, seed, skip, i if many else None) for i, qc in enumerate(circuits)]
    used_all = sorted({q for _, _, used in prepared for q in used})
    transpiled = time.perf_counter()

    # ---- one noise model, for every physical qubit any circuit uses (none for an ideal run)
    noise, noise_hit = noise_model_with_hit(doc, used_all, spec.snapshot_id) if noisy else (None, False)
    modelled = time.perf_counter()

    # ---- simulate each circuit with its own seed (Aer's spread of one seed over a list)
    experiments = []
    for i, ((qc, tqc, used), original) in enumerate(zip(prepared, circuits)):
        this_seed = circuit_seed(seed, i)
        counts, used_method = _simulate(tqc, spec.shots, this_seed, noise, method, device, len(used))
        sim = {"method": used_method}
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
                      "device": device, "reason": reason, "noise": "device" if noisy else "none",
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


def _prepare(qc: Any, target: Any, spec: bundle.TaskSpec, seed: int, skip: bool,
             index: int | None) -> tuple[Any, Any, list[int]]:
    """(circuit, circuit to simulate, physical qubits it uses). A circuit already for the device
    (as wide as the device, every instruction native on its qubits: what ``transpile(qc, backend)``
    returns) runs as it is, keeping the user's layout; ``skip`` demands that, else the circuit is
    transpiled at the task's optimization level (2 by default: Qiskit's default preset, noise-aware
    VF2 layout on the snapshot's error rates)."""
    from qiskit import transpile
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
            with _builtin_transpiler_plugins_only():
                tqc = transpile(qc, target=target, optimization_level=spec.optimization_level, seed_transpiler=seed,
                                num_processes=1)
        except TranspilerError as exc:
            raise _Failure("invalid_circuit", f"{_which(index)}the circuit cannot run on {spec.device}: "
                                              f"{_one_line(exc)}") from None
    ops = tqc.count_ops()
    if "measure" not in ops and not any(name in ops for name in ("if_else", "for_loop", "while_loop", "switch_case")):
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
def _builtin_transpiler_plugins_only() -> Iterator[None]:
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
_FLOW = ("if_else", "for_loop", "while_loop", "switch_case")



#: Widest circuit simulated as a density matrix (4^10 amplitudes: 16 MB).
DENSITY_MATRIX_MAX_QUBITS = 10


def choose_method(method: str, noisy: bool, active_qubits: int, shots: int) -> str:
    """Aer's 'automatic' runs noisy circuits as one trajectory per shot, at 2^n work each; a
    density matrix costs 4^n once for all shots. Past 2^n / 2 shots the matrix is cheaper
    (measured: 10 qubits, 1,024 shots, 0.47 s as trajectories, 0.19 s as a matrix)."""
    if method != "automatic" or not noisy or active_qubits > DENSITY_MATRIX_MAX_QUBITS:
        return method
    return "density_matrix" if shots >= 2 ** active_qubits // 2 else method


def _simulate(tqc: Any, shots: int, seed: int, noise: Any, method: str, device: str,
              active_qubits: int) -> tuple[dict[str, int], str]:
    from qiskit_aer import AerSimulator

    method = choose_method(method, noise is not None, active_qubits, shots)
    options: dict[str, Any] = {"method": method, "seed_simulator": seed, "device": device}
    if noise is not None:
        options["noise_model"] = noise
    if device == "GPU":
        options["cuStateVec_enable"] = True
    result = AerSimulator(**options).run(tqc, shots=shots).result()
    if not result.success:
        status = getattr(result.results[0], "status", None) if result.results else None
        raise _Failure("runner_error", f"the simulator failed: {status or result.status}")
    counts = {str(k): int(v) for k, v in result.get_counts(0).items()}
    used_method = (result.results[0].metadata or {}).get("method", method)
    return counts, str(used_method)


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
