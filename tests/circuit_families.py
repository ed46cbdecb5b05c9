"""Circuit families for the method-equality tests and the benchmarks: one definition each.

GHZ (a chain: low entanglement per cut), a layered brickwork of seeded rotations (generic,
non-Clifford), the quantum Fourier transform of a superposition, a QAOA-like ring (ZZ phases
and X mixers) and a W state (one excitation spread over every qubit). Each measures every qubit.

``MQT_FAMILIES`` are MQT Bench's own generated circuits (algorithm level, ``mqt.bench``, a test
dependency), named ``mqt-<benchmark>``: the W state, the real-amplitudes VQE ansatz and
Bernstein-Vazirani, chosen because each stays on n active qubits on Fez up to 20 (graph states,
QAOA and the entangled QFT route onto 21-24)."""

from __future__ import annotations

import math
import random
import warnings
from functools import partial

from qiskit import QuantumCircuit


def ghz(n: int) -> QuantumCircuit:
    qc = QuantumCircuit(n, n, name=f"ghz{n}")
    qc.h(0)
    for i in range(n - 1):
        qc.cx(i, i + 1)
    qc.measure(range(n), range(n))
    return qc


def layered(n: int, layers: int = 3, seed: int = 11) -> QuantumCircuit:
    """Seeded single-qubit rotations with alternating CX brickwork: generic, entangling, non-Clifford."""
    rng = random.Random(seed * 1000 + n)
    qc = QuantumCircuit(n, n, name=f"layered{n}" if layers == 3 else f"brick{n}x{layers}")
    for layer in range(layers):
        for q in range(n):
            qc.ry(rng.uniform(0, 3.1416), q)
            qc.rz(rng.uniform(0, 3.1416), q)
        for q in range(layer % 2, n - 1, 2):
            qc.cx(q, q + 1)
    qc.measure(range(n), range(n))
    return qc


def qft(n: int) -> QuantumCircuit:
    """The QFT (qiskit.circuit.library) of a seeded product state: all-to-all controlled phases."""
    from qiskit.circuit.library import QFTGate

    rng = random.Random(n)
    qc = QuantumCircuit(n, n, name=f"qft{n}")
    for q in range(n):
        qc.ry(rng.uniform(0.2, 2.9), q)
    qc.append(QFTGate(n), range(n))
    qc.measure(range(n), range(n))
    return qc


def qaoa(n: int, p: int = 2) -> QuantumCircuit:
    """A QAOA-like ring: p rounds of ZZ phases on a ring and X mixers, fixed angles."""
    qc = QuantumCircuit(n, n, name=f"qaoa{n}")
    qc.h(range(n))
    for r in range(p):
        gamma, beta = 0.4 + 0.3 * r, 0.7 - 0.2 * r
        for q in range(n):
            qc.rzz(2 * gamma, q, (q + 1) % n)
        for q in range(n):
            qc.rx(2 * beta, q)
    qc.measure(range(n), range(n))
    return qc


def wstate(n: int) -> QuantumCircuit:
    """(|10..0> + |01..0> + ... + |0..01>) / sqrt(n), by a cascade of controlled rotations."""
    qc = QuantumCircuit(n, n, name=f"wstate{n}")
    qc.x(0)
    for i in range(n - 1):
        theta = 2 * math.acos(math.sqrt(1 / (n - i)))
        qc.cry(theta, i, i + 1)
        qc.cx(i + 1, i)
    qc.measure(range(n), range(n))
    return qc


FAMILIES = {"ghz": ghz, "layered": layered, "qft": qft, "qaoa": qaoa, "wstate": wstate}


def mqt_bench(benchmark: str, n: int) -> QuantumCircuit:
    """MQT Bench's ``benchmark`` on ``n`` qubits at the algorithm level, every qubit measured.

    Raises ValueError where MQT Bench has no parameter-free circuit of that size."""
    from mqt.bench import BenchmarkLevel, get_benchmark

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qc = get_benchmark(benchmark, BenchmarkLevel.ALG, n)
    if qc.parameters or qc.num_qubits != n:
        raise ValueError(f"MQT Bench has no parameter-free {benchmark} on {n} qubits")
    if "measure" not in qc.count_ops():
        qc.measure_all()
    qc.name = f"mqt-{benchmark}{n}"
    return qc


MQT_FAMILIES = {f"mqt-{b}": partial(mqt_bench, b) for b in ("wstate", "vqe_real_amp", "bv")}
ALL_FAMILIES = {**FAMILIES, **MQT_FAMILIES}
