"""The simulation paths the runner may take, run one at a time on a circuit family: one definition for
the method-equality tests (tests/unit/test_method_equality.py) and the cost-model fit
(benchmarks/cost_model.py), so the benchmark times exactly what the test proves equal."""

from __future__ import annotations

import numpy as np
from circuit_families import ALL_FAMILIES

from jupyter_vqpu.core import catalog
from jupyter_vqpu.core import snapshot as S


def fez_device(created_at: str) -> tuple[dict, str, object]:
    """(snapshot document, its id, its Target) for IBM Fez's built-in calibration."""
    doc = catalog.builtin_snapshot("fez", created_at=created_at)
    sid = S.snapshot_id(S.canonical_bytes(doc))
    return doc, sid, S.build_target(doc, sid)


def prepared(fez, family: str, n: int, reference: bool = False):
    """The transpiled circuit and the model the runner simulates it on (the entries of the instructions it
    runs), or with ``reference`` the device model of its qubits (every entry there)."""
    from qiskit import transpile

    from jupyter_vqpu_agent.noise import instructions_of, noise_model_for

    doc, sid, target = fez
    tqc = transpile(ALL_FAMILIES[family](n), target=target, optimization_level=1, seed_transpiler=1)
    used = sorted({tqc.find_bit(q).index for inst in tqc.data for q in inst.qubits})
    return tqc, noise_model_for(doc, used, sid, None if reference else instructions_of([tqc]))


def run(path: str, tqc, model, shots: int, seed: int) -> dict[str, int]:
    """Counts of one path (the paths as jupyter_vqpu_agent.runner._simulate runs them)."""
    from qiskit_aer import AerSimulator

    from jupyter_vqpu_agent import runner
    from jupyter_vqpu_agent.noise import apply_readout, without_readout

    if path == "reference":
        return AerSimulator(noise_model=model, seed_simulator=seed).run(tqc, shots=shots).result().get_counts()
    if path in ("statevector", "density_matrix", "matrix_product_state"):
        return AerSimulator(noise_model=model, method=path, seed_simulator=seed).run(
            tqc, shots=shots).result().get_counts()
    if path == "branching":
        _, _, measured = runner.circuit_facts(tqc, model)
        bare = AerSimulator(noise_model=without_readout(model), method="statevector", shot_branching_enable=True,
                            seed_simulator=seed).run(tqc, shots=shots).result().get_counts()
        return apply_readout(bare, measured, model.readout_matrices(), tqc.num_clbits,
                             np.random.default_rng([seed, 1]))
    if path == "branching_readout_in_model":  # Aer's branching on the full model: the known wrong one
        return AerSimulator(noise_model=model, method="statevector", shot_branching_enable=True,
                            seed_simulator=seed).run(tqc, shots=shots).result().get_counts()
    raise ValueError(path)
