"""The notebook's estimate asks the runner's own cost model (core/method.py), so the two agree."""

from __future__ import annotations

from jupyter_vqpu.core import method
from jupyter_vqpu.core.cost import estimate


def test_the_estimate_names_the_method_the_runners_cost_model_picks():
    for n, ops, shots in [(3, 10, 4096), (8, 60, 8192), (10, 100, 64), (14, 200, 1024)]:
        est = estimate(n, ops, shots, noisy=True)
        facts = method.CircuitFacts(active_qubits=n, ops=ops, cut_crossings=(n // 2,))
        noise = method.NoiseFacts(noisy=True, error_per_shot=ops * 1e-3, readout=True)
        picked = method.choose_method("automatic", facts, noise, shots).method
        assert est.method == ("statevector" if picked == "automatic" else picked), (n, ops, shots)
    assert estimate(3, 10, 4096, noisy=True).method == "density_matrix"  # 8 amplitudes, many shots


def test_big_runs_are_warned_about_and_small_ones_are_not():
    assert estimate(3, 10, 1024, noisy=True).warning == ""
    assert "256.0 MiB" in estimate(24, 480, 1024, noisy=True).warning  # the 24-qubit, 20-layer case
    slow = estimate(20, 400, 4096, noisy=True)
    assert slow.warning and "s of simulation" in slow.warning and slow.seconds >= 60
    assert "about" in estimate(5, 10, 100, noisy=False).describe()


def test_wide_statevectors_cost_less_per_amplitude_and_a_fit_can_try_other_constants():
    """From WIDE_QUBITS Aer fuses gates and spreads them over the cores: the fused constants apply there and only
    there, and ``estimates(k=...)`` (what benchmarks/cost_model.py fits through) overrides them by name."""
    noise = method.NoiseFacts(noisy=True, error_per_shot=0.2)
    wide, narrow = method.WIDE_QUBITS, method.WIDE_QUBITS - 1
    for n in (narrow, wide):
        facts = method.CircuitFacts(active_qubits=n, ops=200)
        base = method.estimates(facts, noise, 256)
        doubled = method.estimates(facts, noise, 256, {"SV_FUSED_PER_AMP": 2 * method.SV_FUSED_PER_AMP,
                                                      "BR_FUSED_PER_AMP": 2 * method.BR_FUSED_PER_AMP})
        changed = {m for m in base if doubled[m] != base[m]}
        assert changed == ({"statevector", "statevector+branching"} if n == wide else set()), (n, changed)
    assert method.estimates(method.CircuitFacts(active_qubits=3, ops=10), noise, 64) == method.estimates(
        method.CircuitFacts(active_qubits=3, ops=10), noise, 64, method.constants())
