"""What a simulation will cost, said before it is submitted.

The runner chooses Aer's method with ``core.method.choose_method``; ``estimate``
asks the same cost model (so the notebook's estimate and the job agree) and
turns its choice into what a person can weigh before pressing Enter: the active
qubits, the method, the memory one state takes (statevector 16 * 2^n bytes,
density matrix 16 * 4^n), the predicted time, and a warning when either is
large. Before transpiling, the kernel knows only the circuit's width, gate count
and shots, so the noise is taken as a typical per-gate error. Pure Python: the
kernel and the job both use it.
"""

from __future__ import annotations

from dataclasses import dataclass

from jupyter_vqpu.core.method import CircuitFacts, NoiseFacts, choose_method, estimates

#: One state past this many bytes earns a warning before submission (24 qubits as a statevector).
WARN_BYTES = 256 * 2**20
#: A predicted run past this many seconds earns a warning ("expect minutes").
WARN_SECONDS = 60.0
#: Expected noise events per gate before the circuit is laid out on the device (a typical IBM error).
TYPICAL_ERROR_PER_GATE = 1e-3


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


@dataclass(frozen=True)
class Estimate:
    active_qubits: int
    method: str  # what the runner's cost model chooses, in its words (statevector, density_matrix, ...)
    state_bytes: int
    seconds: float  # predicted simulation time on one CPU
    warning: str  # empty when nothing is worth a warning

    def describe(self) -> str:
        """One line: "12 active qubits, statevector, 64.0 KiB per state, about 0.2 s"."""
        line = (f"{self.active_qubits} active qubits, {self.method.replace('_', ' ')}, "
                f"{human_bytes(self.state_bytes)} per state, about {self.seconds:.2g} s")
        return line + (f" - {self.warning}" if self.warning else "")


def estimate(active_qubits: int, ops: int, shots: int, noisy: bool) -> Estimate:
    """The cost of simulating ``ops`` gates on ``active_qubits`` qubits for ``shots`` shots."""
    # the entangling structure is unknown before transpiling: assume the worst bond dimension
    facts = CircuitFacts(active_qubits=active_qubits, ops=ops, cut_crossings=(active_qubits // 2,))
    noise = NoiseFacts(noisy=noisy, error_per_shot=ops * TYPICAL_ERROR_PER_GATE if noisy else 0.0, readout=noisy)
    choice = choose_method("automatic", facts, noise, shots)
    method = "statevector" if choice.method == "automatic" else choice.method
    if method == "matrix_product_state":  # n tensors of chi x chi x 2 complex amplitudes
        state = 16 * 2 * active_qubits * 4 ** (active_qubits // 2)
    else:
        state = 16 * (4 if method == "density_matrix" else 2) ** active_qubits
    # noise-free: Aer evolves one state and samples it, as one statevector shot costs
    seconds = min(choice.estimates.values()) if choice.estimates else estimates(facts, noise, 1)["statevector"]
    warning = ""
    if state >= WARN_BYTES:
        warning = f"one state needs {human_bytes(state)} of memory; expect a long run"
    elif seconds >= WARN_SECONDS:
        warning = (f"about {seconds:.0f} s of simulation ({shots} noisy shots): "
                   "fewer shots or qubits, or the ideal device, are faster")
    return Estimate(active_qubits, method, state, seconds, warning)
