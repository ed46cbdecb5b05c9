"""Each fast simulation path samples the device model's distribution: proven by a two-sample test.

The reference is Aer's own choice on the device model of the circuit's qubits: the channels of
``AerSimulator.from_backend(FakeFez())`` there, entry for entry (whose counts the whole-device model
gives bit for bit: tests/unit/test_runner.py). Each fast path the runner may pick (a density
matrix; a statevector with shot branching on the model without readout errors, readout applied
per shot as a classical channel; a matrix product state) is run, on the model the runner builds
(only the entries of the instructions the circuit runs), with another seed, and the two samples
are compared:

- a chi-square test of homogeneity over the outcomes (outcomes expected fewer than 5 times
  pooled into one bin), which must not reject at p < 1e-4 (the decision);
- the same over the outcomes' Hamming weights (n + 1 bins), and each bit's frequency (a two-sample
  test per bit, Bonferroni-corrected), neither rejecting at p < 1e-4: at 15-20 qubits a few hundred
  shots over 2^n outcomes leave the first test almost nothing to compare, while a weight or a bit's
  frequency is estimated from every shot (tests/distributions.py shows the difference); and
- the total-variation distance against its sampling floor, computed explicitly: for two
  samples of N1 and N2 shots of the same distribution p, E|p1_k - p2_k| ~ sqrt(2/pi) *
  sqrt(p_k (1 - p_k) (1/N1 + 1/N2)), summed over outcomes and halved; the TVD must stay within
  3x that (a sanity bound: with two dominant outcomes, as GHZ has, one 2.5-sigma cell doubles it).

A negative control shows the test has the power to see a wrong path: Aer's shot branching
with readout errors IN the model (the bug the classical channel avoids) is rejected.

The families are tests/circuit_families.py's: five written here and three of MQT Bench's own
generated circuits. Seeds are fixed, so a pass or a failure reproduces. By default a
representative subset runs (3 and 5 qubits, every path, every family; a few minutes). The wide
rows (10, 15 and 20 active qubits, where a reference costs minutes to an hour) are marked slow and
run with VQPU_EQUALITY_ALL=1 (VQPU_EQUALITY_LOG=FILE writes each comparison's statistics as a JSON
line). At 15 and 20 qubits the path the runner itself chooses is tested against the reference
(fewer shots at 20, where Aer's per-shot reference costs 0.5-3 s a shot here), and the two exact
fast paths (branching and MPS, different algorithms) against each other with more shots.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from circuit_families import ALL_FAMILIES  # noqa: E402
from distributions import equality_report, same_distribution  # noqa: E402
from simulation_paths import fez_device, prepared, run  # noqa: E402

WHEN = "2026-01-02T03:04:05Z"
ALL = os.environ.get("VQPU_EQUALITY_ALL") == "1"
LOG = os.environ.get("VQPU_EQUALITY_LOG")


@pytest.fixture(scope="module")
def fez():
    return fez_device(WHEN)


def assert_same_distribution(ours: dict, ref: dict, what: str) -> None:
    r = equality_report(ours, ref)
    if LOG:  # one JSON line per comparison, for docs/performance.md's equality table
        with open(LOG, "a") as f:
            f.write(json.dumps({"row": what, "shots": sum(ours.values()), **r}) + "\n")
    assert same_distribution(r), (
        f"{what}: chi-square p={r['p']:.2e} (outcomes), {r['p_marginals']:.2e} (per bit), {r['p_weights']:.2e} "
        f"(Hamming weight); TVD {r['tvd']:.4f}, sampling floor {r['tvd_floor']:.4f}")


# (family, active qubits asked for, path, shots); the reference runs the same shots with another seed
SMALL = [(f, n, path, shots) for f in ALL_FAMILIES for n in (3, 5)
         for path, shots in (("density_matrix", 100_000), ("branching", 20_000), ("matrix_product_state", 5_000))]
WIDE = ([(f, 10, path, 10_000) for f in ALL_FAMILIES for path in ("density_matrix", "branching")]
        + [(f, 10, "matrix_product_state", 2_000) for f in ALL_FAMILIES])
CROSS = [(f, n, shots) for f in ALL_FAMILIES for n, shots in ((15, 2_000), (20, 1_000))]
# what the runner itself picks at 15 and 20 qubits, against the reference; Aer's per-shot reference costs
# ~12 ms a shot at 15 qubits and ~0.5 s at 20 on two cores, hence fewer shots (a wider floor) there
CHOSEN = [(f, n, shots) for f in ALL_FAMILIES for n, shots in ((15, 2_000), (20, 200))]
slow = pytest.mark.skipif(not ALL, reason="wide rows: VQPU_EQUALITY_ALL=1 (or benchmarks/noise_model.py)")
# a wide row is minutes of Aer's per-shot reference on a loaded 2-core box: past the suite's hang guard
wide = pytest.mark.timeout(3600)


_REFERENCES: dict[tuple[str, int, int], dict[str, int]] = {}


def reference(fez, family: str, n: int, shots: int) -> dict[str, int]:
    """The reference's counts for a row, computed once per (family, qubits, shots): a wide row's reference
    is minutes of per-shot trajectories, and the density-matrix and branching rows share it."""
    key = (family, n, shots)
    if key not in _REFERENCES:
        tqc, model = prepared(fez, family, n, reference=True)
        _REFERENCES[key] = run("reference", tqc, model, shots, seed=10**6)
    return _REFERENCES[key]


def _check(fez, family, n, path, shots):
    tqc, model = prepared(fez, family, n)
    ref = reference(fez, family, n, shots)
    ours = run(path, tqc, model, shots, seed=7)
    assert sum(ours.values()) == shots
    assert_same_distribution(ours, ref, f"{family}{n} {path}")


@pytest.mark.parametrize(("family", "n", "path", "shots"), SMALL)
def test_fast_path_samples_the_reference_distribution(fez, family, n, path, shots):
    _check(fez, family, n, path, shots)


@pytest.mark.slow
@slow
@wide
@pytest.mark.parametrize(("family", "n", "path", "shots"), WIDE)
def test_fast_path_samples_the_reference_distribution_wide(fez, family, n, path, shots):
    _check(fez, family, n, path, shots)


@pytest.mark.slow
@slow
@wide
@pytest.mark.parametrize(("family", "n", "shots"), CROSS)
def test_branching_and_mps_agree_where_the_reference_is_too_slow(fez, family, n, shots):
    tqc, model = prepared(fez, family, n)
    assert_same_distribution(run("branching", tqc, model, shots, 7), run("matrix_product_state", tqc, model, shots, 8),
                             f"{family}{n} branching vs MPS")


def _chosen_path(tqc, model, shots: int) -> str:
    """The path of this module that runs what the runner picks for the circuit (its cost model, and
    its MPS probe where the model asks for one)."""
    from jupyter_vqpu_agent import runner

    choice = runner.decide(tqc, runner.circuit_facts(tqc, model), model, shots, "automatic", "CPU", seed=7)
    if choice.options.get("shot_branching_enable"):
        return "branching"
    return {"density_matrix": "density_matrix", "matrix_product_state": "matrix_product_state"}.get(
        choice.method, "reference")


@pytest.mark.slow
@slow
@wide
@pytest.mark.parametrize(("family", "n", "shots"), CHOSEN)
def test_the_runners_choice_samples_the_reference_distribution_wide(fez, family, n, shots):
    """At 15 and 20 active qubits, the method the runner would choose (its cost model, run here with the
    runner's own noise model and readout channel) against Aer's own choice on the device model of its qubits."""
    tqc, model = prepared(fez, family, n)
    path = _chosen_path(tqc, model, shots)
    ours = run(path, tqc, model, shots, seed=7)
    assert sum(ours.values()) == shots
    assert_same_distribution(ours, reference(fez, family, n, shots), f"{family}{n} {path} (the runner's choice)")


def test_the_test_sees_a_wrong_path_branching_with_readout_in_the_model(fez):
    """Negative control: Aer's shot branching mis-samples in-model readout errors, and this test says so."""
    tqc, model = prepared(fez, "ghz", 5)
    ref = reference(fez, "ghz", 5, 20_000)
    wrong = run("branching_readout_in_model", tqc, model, 20_000, seed=7)
    with pytest.raises(AssertionError, match="chi-square"):
        assert_same_distribution(wrong, ref, "in-model readout branching")
    # and the path the runner uses instead passes on the same circuit and shots
    assert_same_distribution(run("branching", tqc, model, 20_000, seed=7), ref, "branching + readout channel")


def test_readout_channel_flips_exactly_as_the_matrices_say():
    """apply_readout on a known input: each bit flips with P[true][recorded], independently per shot."""
    from jupyter_vqpu_agent.noise import apply_readout

    shots = 200_000
    p = {0: np.array([[0.9, 0.1], [0.3, 0.7]]), 1: np.array([[1.0, 0.0], [0.0, 1.0]])}
    out = apply_readout({"01": shots}, {0: 0, 1: 1}, p, 2, np.random.default_rng(3))  # clbit 0 = 1, clbit 1 = 0
    assert set(out) <= {"01", "00"} and sum(out.values()) == shots
    flipped = out.get("00", 0) / shots
    assert abs(flipped - 0.3) < 4 * math.sqrt(0.3 * 0.7 / shots)  # P(record 0 | true 1) on qubit 0
    # registers keep Aer's grouping, and an unmeasured clbit stays 0
    assert set(apply_readout({"0 1": 10}, {0: 0}, {0: np.eye(2)}, 2, np.random.default_rng(1))) == {"0 1"}
