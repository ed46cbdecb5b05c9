"""The device noise model, built for the qubits a circuit actually uses.

Qiskit Aer's ``NoiseModel.from_backend`` turns a whole device into a noise model:
for IBM Fez that is 156 qubits and ~1,100 calibrated gates, seconds of work per
call, and a large model that Aer then serialises on every run. A transpiled
circuit touches a handful of those qubits, and every channel Aer's device model
uses (depolarizing + thermal relaxation per gate, readout error per qubit,
relaxation during delays) is local to the qubits an instruction acts on.

So we hand ``NoiseModel.from_backend`` a backend whose Target holds only the
instruction properties on the used physical qubits, with the device's qubit
numbering and qubit properties kept. Aer then assembles the model exactly as it
does for the full device (same basis gates, same channels, same values), just
without the qubits the circuit never touches: counts are bit-identical to
``AerSimulator.from_backend(device)`` with the same seed, at a fraction of the
cost. Using Aer's own assembly rather than re-implementing it keeps us faithful
when Aer's device model changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from qiskit.providers import BackendV2, Options
from qiskit.transpiler import Target
from qiskit_aer.noise import NoiseModel

from jupyter_vqpu.core.cache import Memo
from jupyter_vqpu.core.snapshot import build_target, canonical_bytes, snapshot_id

# Per (snapshot id, physical qubit set).
NOISE_MODELS: Memo[NoiseModel] = Memo(maxsize=128)


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


def restrict_target(target: Target, qubits: frozenset[int]) -> Target:
    """A Target with the same qubits, numbering and operations, but properties only on ``qubits``.

    Instructions whose qargs leave ``qubits`` are dropped; global instructions
    (control flow, ideal gates) stay global, so ``operation_names`` (which Aer
    uses as the noise model's basis gates) are the device's own."""
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
        keep = {qargs: p for qargs, p in props.items() if qubits.issuperset(qargs)}
        sub.add_instruction(op, keep, name=name)
    return sub


def noise_model_for(doc: dict, physical_qubits: Iterable[int], sid: str | None = None) -> NoiseModel | None:
    """Aer's device noise model for ``doc``, limited to ``physical_qubits``; None for a noise-free device.

    Cached per (snapshot id, qubit set): a warm worker running the same kind of
    circuit again pays nothing. Treat the returned model as read-only.
    ``sid`` skips re-hashing the document when the caller already knows its id."""
    return noise_model_with_hit(doc, physical_qubits, sid)[0]


def noise_model_with_hit(doc: dict, physical_qubits: Iterable[int],
                         sid: str | None = None) -> tuple[NoiseModel | None, bool]:
    """``noise_model_for`` and whether the model was already cached (a runner records it)."""
    if not doc.get("noise"):
        return None, False
    qubits = frozenset(int(q) for q in physical_qubits)
    n = doc["num_qubits"]
    bad = sorted(q for q in qubits if not 0 <= q < n)
    if bad:
        raise ValueError(f"physical qubits {bad} are outside the device's 0..{n - 1}")
    sid = sid or snapshot_id(canonical_bytes(doc))
    return NOISE_MODELS.get(
        (sid, qubits), lambda: NoiseModel.from_backend(_TargetBackend(restrict_target(build_target(doc, sid), qubits)))
    )


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
