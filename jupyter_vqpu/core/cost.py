"""What a simulation will cost, said before it is submitted.

The runner chooses Aer's method with ``choose_method`` (here, so that the
notebook's estimate and the job agree on it); ``estimate`` turns the same
choice into what a person can weigh before pressing Enter: the active qubits,
the method, the memory one state takes (statevector 16 * 2^n bytes, density
matrix 16 * 4^n), and a warning when that, or the work of sampling a noisy
circuit shot by shot, is large. Pure Python: the kernel and the job both use it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Widest circuit simulated as a density matrix (4^10 amplitudes: 16 MB).
DENSITY_MATRIX_MAX_QUBITS = 10
#: One state past this many bytes earns a warning before submission (24 qubits as a statevector).
WARN_BYTES = 256 * 2**20
#: Amplitude updates (shots x gates x 2^n for noisy trajectories, gates x 2^n otherwise) past which a
#: warning says it will take a while: about a minute of one CPU core at ~1e9 updates per second.
WARN_WORK = 6e10


def choose_method(method: str, noisy: bool, active_qubits: int, shots: int) -> str:
    """Aer's 'automatic' runs noisy circuits as one trajectory per shot, at 2^n work each; a
    density matrix costs 4^n once for all shots. Past 2^n / 2 shots the matrix is cheaper
    (measured: 10 qubits, 1,024 shots, 0.47 s as trajectories, 0.19 s as a matrix)."""
    if method != "automatic" or not noisy or active_qubits > DENSITY_MATRIX_MAX_QUBITS:
        return method
    return "density_matrix" if shots >= 2 ** active_qubits // 2 else method


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


@dataclass(frozen=True)
class Estimate:
    active_qubits: int
    method: str  # what the runner will choose: statevector or density_matrix
    state_bytes: int
    work: float  # amplitude updates, roughly
    warning: str  # empty when nothing is worth a warning

    def describe(self) -> str:
        """One line: "12 active qubits, statevector, 64.0 KiB per state"."""
        line = f"{self.active_qubits} active qubits, {self.method.replace('_', ' ')}, {human_bytes(self.state_bytes)} per state"
        return line + (f" - {self.warning}" if self.warning else "")


def estimate(active_qubits: int, ops: int, shots: int, noisy: bool) -> Estimate:
    """The cost of simulating ``ops`` gates on ``active_qubits`` qubits for ``shots`` shots."""
    method = choose_method("automatic", noisy, active_qubits, shots)
    if method == "density_matrix":
        state, work = 16 * 4**active_qubits, float(max(ops, 1)) * 4**active_qubits
    else:
        method = "statevector"
        state = 16 * 2**active_qubits
        # With noise, 'automatic' samples each shot as its own trajectory through the circuit.
        work = float(max(ops, 1)) * 2**active_qubits * (shots if noisy else 1)
    warning = ""
    if state >= WARN_BYTES:
        warning = f"one state needs {human_bytes(state)} of memory; expect a long run"
    elif work >= WARN_WORK:
        warning = (f"about {work:.0e} amplitude updates ({shots} noisy shots, each a trajectory): "
                   "expect minutes; fewer shots or qubits, or the ideal device, are faster")
    return Estimate(active_qubits, method, state, work, warning)
