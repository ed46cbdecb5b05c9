"""The device noise model: built once per snapshot, entry by entry, and handed to Aer per qubit set.

Qiskit Aer's ``NoiseModel.from_backend`` turns a whole device into a noise model:
for IBM Fez that is 156 qubits and ~1,100 calibrated gates, seconds of work,
and Aer then serialises the model (``to_dict`` + a JSON round trip) on every
``run`` call. Every channel Aer's device model uses (depolarizing + thermal
relaxation per gate, readout error per qubit, relaxation during delays) is local
to the qubits an instruction acts on, so the device model is a set of entries,
one per calibrated (instruction, qubits), each a function of that instruction's
properties and its qubits' T1/T2 alone.

``DeviceNoise`` (one per snapshot) is that set, filled lazily: the first circuit
that touches an instruction builds its entry with Aer's own ``from_backend`` (on
a Target holding only the missing instructions, the device's numbering and qubit
properties kept), and the entry's serialised form once. A qubit set's model is
then a filter (~1 ms): the entries inside the set, in Aer's order, plus the
device's delay-relaxation pass. ``PreparedNoiseModel`` is a real ``NoiseModel``
(Aer inspects its basis gates and passes) whose ``to_dict`` returns the cached
serialised entries, so no run re-serialises it. The channels are Aer's own, entry
for entry (using Aer's own assembly keeps us faithful when Aer's device model
changes), and a density matrix gives ``AerSimulator.from_backend(device)``'s counts
bit for bit. Statevector trajectories are drawn in an order that depends on every
entry of the model, so a qubit set's model gives counts that are statistically
equal, not identical; the whole device's (every qubit: what a task naming a method
gets) gives from_backend's counts at the same seed (tests/unit/test_runner.py).

The same model without its readout errors (``without_readout``) is what shot
branching may run (Aer's branching mis-samples in-model readout errors); the
runner then applies the readout errors itself as a classical channel
(``apply_readout``), exactly as Aer's ``ReadoutError`` would on each shot.

Caches are bounded in bytes (``cache_bytes``), not entries: a model is ~0.1-1 MB
per qubit set and a whole device several MB, so an entry count says nothing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from qiskit.circuit import CONTROL_FLOW_OP_NAMES
from qiskit.providers import BackendV2, Options
from qiskit.transpiler import Target
from qiskit_aer.noise import NoiseModel
from qiskit_aer.noise.noise_model import AerJSONEncoder

from jupyter_vqpu.core.cache import Memo, cache_bytes, json_bytes
from jupyter_vqpu.core.snapshot import build_target, canonical_bytes, snapshot_id

#: Resident bytes per estimated byte of an entry's serialised form: the serialised dict plus Aer's
#: QuantumError (its circuits) behind it. Measured: Fez's whole device, 302 MB of RSS, 83 MB of dicts.
ENTRY_RSS_FACTOR = 3.6


class _TargetBackend(BackendV2):
    """The least a BackendV2 needs to be for ``NoiseModel.from_backend``: a Target."""

    def __init__(self, target: Target) -> None:
        super().__init__(name="vqpu-noise-view")
        self._target = target

    @property
    def target(self) -> Target:
        return self._target

    @property
    def max_circuits(self) -> None:
        return None

    @classmethod
    def _default_options(cls) -> Options:
        return Options()

    def run(self, run_input: Any, **options: Any) -> Any:  # pragma: no cover - never run
        raise NotImplementedError("a noise view is not a simulator")


def restrict_target(target: Target, qubits: frozenset[int] | None = None,
                    keep: set[tuple[str, tuple[int, ...]]] | None = None) -> Target:
    """A Target with the same qubits, numbering and operations, but properties only on ``qubits``
    (or only on the ``keep`` (name, qargs) pairs).

    Instructions outside are dropped; global instructions (control flow, ideal gates)
    stay global, so ``operation_names`` (which Aer uses as the noise model's basis
    gates) are the device's own."""
    sub = Target(
        description=target.description,
        num_qubits=target.num_qubits,
        dt=target.dt,
        qubit_properties=target.qubit_properties,
    )
    for name in target.operation_names:
        op = target.operation_from_name(name)
        props = target[name]
        if None in props:  # a global instruction: available on any qubits
            sub.add_instruction(op, name=name)
            continue
        if keep is not None:
            chosen = {qargs: p for qargs, p in props.items() if (name, qargs) in keep}
        else:
            chosen = {qargs: p for qargs, p in props.items() if qubits is not None and qubits.issuperset(qargs)}
        sub.add_instruction(op, chosen, name=name)
    return sub


class PreparedNoiseModel(NoiseModel):
    """A ``NoiseModel`` whose serialised form is computed once and kept.

    Aer calls ``to_dict(serializable=True)`` on every run (a JSON round trip of every
    error); here that is a lookup. Treat it as read-only: ``add_*`` after the first
    run would not reach the simulator."""

    def __init__(self, basis_gates: list[str]) -> None:
        super().__init__(basis_gates=basis_gates)
        self._serialised: dict | None = None
        self._entries: list[dict] = []  # serialised entries, in Aer's to_dict order
        self._no_readout: PreparedNoiseModel | None = None
        self.nbytes = 0  # this model's own containers (entries are the device's)
        #: (instruction, qubits) -> probability that its noise does something (1 - its dominant term):
        #: what a shot-branching run splits on, summed over a circuit by the cost model
        self.error_rates: dict[tuple[str, tuple[int, ...]], float] = {}
        #: every channel a mixture of Clifford operations (a stabilizer simulation can run it exactly)
        self.clifford = True

    def to_dict(self, serializable: bool = False) -> dict:
        if not serializable:
            return super().to_dict(False)
        if self._serialised is None:
            self._serialised = {"errors": list(self._entries)}
        return self._serialised

    def readout_matrices(self) -> dict[int, np.ndarray]:
        """Qubit -> its 2x2 readout matrix P(recorded | prepared), as Aer's ``ReadoutError`` holds it."""
        out = {}
        for qargs, error in self._local_readout_errors.items():
            out[qargs[0]] = np.asarray(error.probabilities, dtype=float)
        return out

    def has_readout(self) -> bool:
        return bool(self._local_readout_errors) or self._default_readout_error is not None


class DeviceNoise:
    """Aer's device noise model for one snapshot, entry by entry, built only where a circuit went."""

    def __init__(self, doc: dict, sid: str) -> None:
        self.sid = sid
        self.target = build_target(doc, sid)
        self.basis = list(self.target.operation_names)
        # (name, qargs) of every calibrated instruction, indexed by each of its qubits
        self._by_qubit: dict[int, list[tuple[str, tuple[int, ...]]]] = {}
        for name in self.basis:
            props = self.target[name]
            if None in props:
                continue
            for qargs in props:
                for q in qargs:
                    self._by_qubit.setdefault(q, []).append((name, qargs))
        # (name, qargs) -> (QuantumError, serialised entry, error rate, clifford) or None (ideal: left out)
        self._errors: dict[tuple[str, tuple[int, ...]], tuple[Any, dict, float, bool] | None] = {}
        self._readout: dict[int, tuple[Any, dict] | None] = {}
        self._passes: list | None = None
        self._lock = threading.Lock()
        self.nbytes = 4096

    def _build(self, missing: set[tuple[str, tuple[int, ...]]]) -> None:
        sub = NoiseModel.from_backend(_TargetBackend(restrict_target(self.target, keep=missing)))
        with self._lock:
            if self._passes is None:
                self._passes = list(sub._custom_noise_passes)
            for key in missing:
                name, qargs = key
                error = sub._local_quantum_errors.get(name, {}).get(qargs)
                if error is None:
                    self._errors[key] = None
                else:
                    entry = json.loads(json.dumps({**error.to_dict(), "operations": [name], "gate_qubits": [qargs]},
                                                  cls=AerJSONEncoder))
                    names = {op.operation.name for c in error.circuits for op in c.data}
                    self._errors[key] = (error, entry, 1.0 - float(max(error.probabilities)), names <= CLIFFORD_NOISE)
                    self.nbytes += ENTRY_RSS_FACTOR * json_bytes(entry)  # the entry and the QuantumError behind it
                if name == "measure":
                    ro = sub._local_readout_errors.get(qargs)
                    if ro is None:
                        self._readout[qargs[0]] = None
                    else:
                        entry = json.loads(json.dumps({**ro.to_dict(), "gate_qubits": [qargs]}, cls=AerJSONEncoder))
                        self._readout[qargs[0]] = (ro, entry)
                        self.nbytes += ENTRY_RSS_FACTOR * json_bytes(entry)

    def model(self, qubits: frozenset[int], instructions: Instructions | None = None) -> tuple[PreparedNoiseModel, bool]:
        """The model for circuits on ``qubits``, and whether every entry was built before.

        With ``instructions`` (the (name, physical qubits) the circuits run), only their entries:
        Aer applies an entry only to its own instruction on its own qubits, so the others change no
        distribution, and building an entry (Aer's relaxation and depolarizing algebra, ~5 ms) is
        what a new circuit shape pays; a circuit on 5 qubits runs about half of the 43 there."""
        wanted = sorted({key for q in qubits for key in self._by_qubit.get(q, ())
                         if qubits.issuperset(key[1]) and (instructions is None or key in instructions)},
                        key=lambda k: (self.basis.index(k[0]), k[1]))
        missing = {key for key in wanted if key not in self._errors}
        if missing or self._passes is None:
            self._build(missing)
        model = PreparedNoiseModel(self.basis)
        entries: list[dict] = []
        by_name: dict[str, dict[tuple[int, ...], Any]] = {}
        for key in wanted:
            built = self._errors[key]
            if built is None:
                continue
            by_name.setdefault(key[0], {})[key[1]] = built[0]
            entries.append(built[1])
            model.error_rates[key] = built[2]
            model.clifford = model.clifford and built[3]
            model._noise_qubits.update(key[1])
            model._noise_instructions.add(key[0])
        model._local_quantum_errors = by_name
        for q in sorted(qubits):
            ro = self._readout.get(q)
            if ro is not None and (instructions is None or ("measure", (q,)) in instructions):
                model._local_readout_errors[(q,)] = ro[0]
                model._noise_qubits.add(q)
                model._noise_instructions.add("measure")
                entries.append(ro[1])
        model._custom_noise_passes = list(self._passes or [])
        model._entries = entries
        model.nbytes = 1024 + 120 * len(entries) + 100 * len(instructions or ())  # its cache key holds the set
        return model, not missing


def without_readout(model: PreparedNoiseModel) -> PreparedNoiseModel:
    """The same model minus its readout errors (kept on the model: built once)."""
    if model._no_readout is None:
        bare = PreparedNoiseModel(sorted(model.basis_gates))
        bare._local_quantum_errors = model._local_quantum_errors
        bare._noise_qubits = {q for d in model._local_quantum_errors.values() for qargs in d for q in qargs}
        bare._noise_instructions = set(model._local_quantum_errors)
        bare._custom_noise_passes = model._custom_noise_passes
        bare._entries = [e for e in model._entries if e.get("type") != "roerror"]
        bare.error_rates, bare.clifford = model.error_rates, model.clifford
        bare.nbytes = 1024 + 120 * len(bare._entries)
        model._no_readout = bare
        model.nbytes += bare.nbytes
    return model._no_readout


def apply_readout(counts: Mapping[str, int], clbit_qubits: Mapping[int, int], matrices: Mapping[int, np.ndarray],
                  num_clbits: int, rng: np.random.Generator) -> dict[str, int]:
    """Counts after each shot's measured bits pass through their qubit's readout channel.

    ``counts`` are Aer's (bit strings, clbit 0 rightmost) from a run without readout
    errors; ``clbit_qubits`` maps each clbit to the physical qubit whose measurement
    wrote it. Aer's ``ReadoutError`` on a measure of qubit q records outcome j for a
    true outcome i with probability ``P[i][j]``, independently per measurement and
    shot: here each shot's bit is kept or flipped with exactly that probability."""
    keys = list(counts)
    if not keys or not clbit_qubits:
        return dict(counts)
    reps = np.fromiter((counts[k] for k in keys), dtype=np.int64, count=len(keys))
    # one row per distinct outcome, one column per clbit (column c = clbit c)
    width = num_clbits
    table = np.array([[ch == "1" for ch in k.replace(" ", "")[::-1].ljust(width, "0")[:width]] for k in keys], dtype=bool)
    shots = np.repeat(table, reps, axis=0)
    for c, q in clbit_qubits.items():
        p = matrices.get(q)
        if p is None:
            continue
        bit = shots[:, c]
        # P(record 1 | true 0) = p[0][1]; P(record 0 | true 1) = p[1][0]
        flip = np.where(bit, p[1][0], p[0][1])
        shots[:, c] = bit ^ (rng.random(bit.shape[0]) < flip)
    packed = np.packbits(shots[:, ::-1], axis=1, bitorder="big") if width else np.zeros((len(shots), 0), np.uint8)
    uniq, freq = np.unique(packed, axis=0, return_counts=True)
    out = {}
    for row, f in zip(uniq, freq):
        bits = "".join(f"{b:08b}" for b in row)[:width]  # packbits pads the last byte on the right
        out[_with_spaces(bits, keys[0])] = int(f)
    return out


def _with_spaces(bits: str, like: str) -> str:
    """``bits`` grouped by registers as Aer's key ``like`` is (``'01 101'``)."""
    if " " not in like:
        return bits
    out, i = [], 0
    for part in like.split(" "):
        out.append(bits[i:i + len(part)])
        i += len(part)
    return " ".join(out)


#: Operations a stabilizer simulation applies exactly (Aer's names inside a QuantumError's circuits).
CLIFFORD_NOISE = frozenset({"id", "x", "y", "z", "pauli", "h", "s", "sdg", "sx", "sxdg", "cx", "cz", "cy", "swap",
                            "reset"})

# Per snapshot id: the device's entries, filled as circuits use them.
DEVICE_NOISE: Memo[DeviceNoise] = Memo(maxsize=cache_bytes("device_noise"), getsizeof=lambda d: d.nbytes)
# Per (snapshot id, physical qubit set): the filtered model (its entries are the device's, counted there).
NOISE_MODELS: Memo[PreparedNoiseModel] = Memo(maxsize=cache_bytes("noise_models"), getsizeof=lambda m: m.nbytes)


#: (instruction name, physical qubits) pairs a set of circuits runs
Instructions = frozenset[tuple[str, tuple[int, ...]]]

def instructions_of(circuits: Iterable[Any]) -> Instructions | None:
    """Every (name, physical qubits) the transpiled ``circuits`` run, or None where control flow (a box
    included) hides instructions in its blocks (the model then covers every instruction on the qubits)."""
    out: set[tuple[str, tuple[int, ...]]] = set()
    for tqc in circuits:
        index = {q: i for i, q in enumerate(tqc.qubits)}
        for inst in tqc.data:
            if inst.operation.name in CONTROL_FLOW_OP_NAMES:
                return None
            out.add((inst.operation.name, tuple(index[q] for q in inst.qubits)))
    return frozenset(out)


def noise_model_for(doc: dict, physical_qubits: Iterable[int], sid: str | None = None,
                    instructions: Instructions | None = None) -> PreparedNoiseModel | None:
    """Aer's device noise model for ``doc``, limited to ``physical_qubits`` (and, given, to the
    ``instructions`` the circuits run: ``instructions_of``); None for a noise-free device.

    Cached per (snapshot id, qubit set, instructions): a warm worker running the same
    kind of circuit again pays nothing. Treat the returned model as read-only.
    ``sid`` skips re-hashing the document when the caller already knows its id."""
    return noise_model_with_hit(doc, physical_qubits, sid, instructions)[0]


def noise_model_with_hit(doc: dict, physical_qubits: Iterable[int], sid: str | None = None,
                         instructions: Instructions | None = None) -> tuple[PreparedNoiseModel | None, bool]:
    """``noise_model_for`` and whether the model was already cached (a runner records it)."""
    if not doc.get("noise"):
        return None, False
    qubits = frozenset(int(q) for q in physical_qubits)
    n = doc["num_qubits"]
    bad = sorted(q for q in qubits if not 0 <= q < n)
    if bad:
        raise ValueError(f"physical qubits {bad} are outside the device's 0..{n - 1}")
    sid = sid or snapshot_id(canonical_bytes(doc))

    def make() -> PreparedNoiseModel:
        device, _ = DEVICE_NOISE.get(sid, lambda: DeviceNoise(doc, sid))
        before = device.nbytes
        model, _ = device.model(qubits, instructions)
        if device.nbytes != before:
            DEVICE_NOISE.put(sid, device)  # it grew: re-account its bytes (may evict older snapshots)
        return model

    return NOISE_MODELS.get((sid, qubits, instructions), make)


def warm_up() -> None:
    """Build a throwaway one-qubit model, so a warm worker's first real task does not pay the imports."""
    from qiskit.circuit.library import Measure, XGate
    from qiskit.providers import QubitProperties
    from qiskit.transpiler import InstructionProperties

    target = Target(num_qubits=1, dt=1e-9, qubit_properties=[QubitProperties(t1=1e-4, t2=1e-4)])
    target.add_instruction(XGate(), {(0,): InstructionProperties(error=1e-3, duration=3e-8)})
    target.add_instruction(Measure(), {(0,): InstructionProperties(error=1e-2, duration=1e-6)})
    NoiseModel.from_backend(_TargetBackend(target))


def clear_cache() -> None:
    """Forget cached noise models (tests, and memory pressure in a long-lived worker)."""
    NOISE_MODELS.clear()
    DEVICE_NOISE.clear()
