"""Which Aer method simulates a circuit under the device's noise fastest while keeping its output
distribution exactly the device model's: a cost model over facts about the transpiled circuit.

Aer's ``automatic`` runs a noisy circuit as one statevector trajectory per shot
(2^n work per gate per shot). Every alternative here samples the same
distribution, only where it is exact:

- ``density_matrix``: the mixed state once (4^n per gate), then all shots
  sampled from it; needs terminal measurements (otherwise Aer reruns it per
  shot) and 16 * 4^n bytes.
- ``statevector`` with shot branching: shots share one state until a noise
  operation samples a different outcome for some of them, so a circuit whose
  shots mostly see no error costs a few trajectories, not one per shot. Aer's
  branching mis-samples readout errors kept in the noise model (P(GHZ-10) came
  out 0.72 or 0.95 against 0.866), so the model runs WITHOUT its readout errors
  and the runner applies them per shot afterwards as a classical channel, which
  is exact only when every measurement is terminal and writes its own clbit.
- ``matrix_product_state``: one trajectory per shot too, but its cost is set by
  the bond dimension chi, which the entangling structure bounds: across a cut
  between qubits, chi <= 2^(two-qubit gates crossing it) (a CZ/CX/ECR has
  operator Schmidt rank 2) and <= 2^min(left, right). Exact (Aer truncates
  nothing below 1e-16 by default); a deep brickwork makes the bound reach the
  cap, and then it loses to a statevector (16 qubits, 10 layers: 12 s vs 2.6 s).
- ``stabilizer``: Clifford gates and noise that is a mixture of Clifford
  operations (depolarizing, and relaxation with T2 <= T1); Aer's own automatic
  choice finds it too, so it is left to Aer and said so.

The constants are seconds per unit of work, fitted on the 2-core development
machine (docs/performance.md, "The cost model"); what matters is their ratio,
which holds across machines of one kind. Pure Python: the job and anything that
wants to predict it can use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

#: A density matrix past this many bytes (16 * 4^n) is not considered (12 qubits: 256 MiB).
DENSITY_MATRIX_MAX_BYTES = 256 * 2**20

# Seconds per unit, fitted (log least squares, benchmarks/cost_model.py) on 64 timings of fez circuits on an
# otherwise idle 2-core machine (a Slurm job has its cores to itself): GHZ, layered, QFT, QAOA, W state and VQE at
# 5-20 active qubits, 8-4,096 shots (docs/performance.md, "The cost model"). An "op" is a gate or the noise
# operation that follows it; a trajectory is one shot's (or one branch's) pass.
RUN_FIXED = 0.03            # what any Aer run call costs whatever its method and shots (set-up, result)
SV_PER_OP_SHOT = 1.3e-7     # per op per shot: sampling the noise, bookkeeping
SV_PER_AMP = 1.5e-9         # per op per amplitude (2^n of them) per trajectory
BR_PER_OP_SHOT = 2.0e-7     # branching, per op per shot: which branch each shot follows
BR_PER_OP_BRANCH = 5.4e-6   # branching, per op per branch: a Kraus channel's outcome probabilities on each branch
#                             (what makes a deep circuit whose shots all split slower than plain trajectories)
BR_PER_AMP = 1.65e-9        # branching, per op per amplitude per branch
#: From this many qubits a statevector op costs several times less per amplitude: past 14 Aer spreads each
#: gate over the cores (its ``statevector_parallel_threshold``), and from 14 it fuses gates into unitaries of
#: up to five qubits (``fusion_threshold``). Measured, 14-qubit runs still follow the constants above, and
#: 15-20 qubit runs took 2-12x less than those predict.
WIDE_QUBITS = 15
SV_FUSED_PER_AMP = 4.1e-10  # per op per amplitude per trajectory, from WIDE_QUBITS
BR_FUSED_PER_AMP = 4.2e-10  # per op per amplitude per branch, from WIDE_QUBITS
DM_PER_ELEMENT = 3.9e-8     # per density-matrix element (4^n of them), whatever the depth
DM_PER_OP_ELEMENT = 2.8e-10  # per op per element, once for all shots (Aer fuses gates and their noise into
#                              superoperators, so an op costs far less than a pass over the matrix)
MPS_PER_OP_SHOT = 1.2e-5    # per op per trajectory
MPS_PER_CHI3 = 1.0e-5       # per unit of ``mps_work`` per trajectory: fitted where the chi bound is tight
#                             (a 16-qubit 10-layer brickwork), so elsewhere an upper bound
#: Probe (time one noisy MPS shot) when the bound says one trajectory costs at most this multiple of the whole
#: best other run: the bound is loose on heavy-hex by two orders of magnitude (GHZ-20: chi 2, bound 16; the
#: 20-qubit layered brickwork: one shot took 23 ms against a bound of 6.6 s, 2.8x the 2.3 s predicted for
#: branching all 32 shots; with the probe, MPS ran them in 0.47 s where branching took 4.4 s). A probe costs
#: the real shot, typically milliseconds; only where the bound is tight and the shots are a handful can it cost
#: up to this multiple of the run.
PROBE_SHARE = 4.0
#: ... and only when the best other method would take this long (below, a probe cannot pay for itself).
PROBE_MIN_S = 0.5


@dataclass(frozen=True)
class CircuitFacts:
    """What the cost model needs to know about a transpiled circuit (extracted once by the runner)."""

    active_qubits: int
    ops: int                     # gates, resets, delays (not measurements or barriers)
    cut_crossings: tuple[int, ...] = ()  # per cut between consecutive active qubits: log2 of the chi bound
    clifford: bool = False       # every gate is Clifford
    terminal_measurements: bool = True  # measurements only at the end, each into its own clbit, no control flow
    mean_span: float = 1.0       # mean distance (in active-qubit order) of the two-qubit gates
    #: sum over two-qubit gates of span * chi^3 at the time of the gate (chi from the crossings so far):
    #: what one MPS trajectory spends in its SVDs; None: estimate it from the final chi bound
    mps_work: float | None = None
    #: seconds per shot of a noisy MPS run, when measured (a probe: one shot's time over the shots Aer
    #: runs at once): it replaces the bound (noise makes an MPS contract the whole chain to sample each
    #: Kraus operator, which no structural bound sees)
    mps_trajectory_s: float | None = None

    @property
    def log2_chi(self) -> int:
        """log2 of the largest bond dimension the entangling structure allows."""
        return max(self.cut_crossings, default=0)


@dataclass(frozen=True)
class NoiseFacts:
    noisy: bool
    error_per_shot: float = 0.0  # expected number of non-identity noise events in one shot (sum over ops)
    readout: bool = False        # the model carries readout errors
    clifford: bool = False       # every noise channel is a mixture of Clifford operations


@dataclass(frozen=True)
class Choice:
    """The method, the extra Aer options, whether readout runs as a classical channel, and why."""

    method: str
    why: str
    options: dict = field(default_factory=dict)
    readout_channel: bool = False  # run the model without readout errors and apply them per shot afterwards
    probe: bool = False  # worth timing one noisy MPS shot (``CircuitFacts.mps_trajectory_s``) and choosing again
    estimates: dict = field(default_factory=dict)  # method -> predicted seconds, for the record


def branches(shots: int, error_per_shot: float) -> float:
    """Expected trajectories a branching run follows: each shot that sees any error splits off
    (Poisson in the summed error rates); the rest share one state."""
    p_any = 1.0 - math.exp(-max(error_per_shot, 0.0))
    return 1.0 + shots * p_any


#: The fitted constants by name: what ``estimates`` reads, and what benchmarks/cost_model.py refits.
CONSTANTS = ("RUN_FIXED", "SV_PER_OP_SHOT", "SV_PER_AMP", "SV_FUSED_PER_AMP", "BR_PER_OP_SHOT", "BR_PER_OP_BRANCH",
             "BR_PER_AMP", "BR_FUSED_PER_AMP", "DM_PER_ELEMENT", "DM_PER_OP_ELEMENT", "MPS_PER_OP_SHOT", "MPS_PER_CHI3")


def constants() -> dict[str, float]:
    """The constants in force, by name."""
    return {name: globals()[name] for name in CONSTANTS}


def estimates(c: CircuitFacts, n: NoiseFacts, shots: int,
              k: Mapping[str, float] | None = None) -> dict[str, float]:
    """Predicted seconds per exact method (only the methods that are exact for this circuit); ``k``: other
    values for some of the constants (a fit trying them)."""
    k = {**constants(), **(k or {})}
    ops = max(c.ops, 1) * (2 if n.noisy else 1)  # a noisy gate is followed by its noise operation
    width = c.active_qubits
    fused = width >= WIDE_QUBITS
    sv_amp, br_amp = (k["SV_FUSED_PER_AMP"], k["BR_FUSED_PER_AMP"]) if fused else (k["SV_PER_AMP"], k["BR_PER_AMP"])
    out = {"statevector": k["RUN_FIXED"] + shots * ops * (k["SV_PER_OP_SHOT"] + sv_amp * 2.0 ** width)}
    if c.terminal_measurements:
        out["statevector+branching"] = k["RUN_FIXED"] + ops * (
            shots * k["BR_PER_OP_SHOT"] + branches(shots, n.error_per_shot) * (k["BR_PER_OP_BRANCH"] + br_amp * 2.0 ** width))
        if 16 * 4.0 ** width <= DENSITY_MATRIX_MAX_BYTES:
            out["density_matrix"] = k["RUN_FIXED"] + 4.0 ** width * (k["DM_PER_ELEMENT"] + k["DM_PER_OP_ELEMENT"] * ops)
    if c.mps_trajectory_s is not None:
        out["matrix_product_state"] = k["RUN_FIXED"] + shots * c.mps_trajectory_s
    else:
        work = c.mps_work if c.mps_work is not None else ops * max(c.mean_span, 1.0) * 8.0 ** min(c.log2_chi, width // 2)
        out["matrix_product_state"] = k["RUN_FIXED"] + shots * (ops * k["MPS_PER_OP_SHOT"] + k["MPS_PER_CHI3"] * work)
    return out


def choose_method(requested: str, circuit: CircuitFacts, noise: NoiseFacts, shots: int, *,
                  device: str = "CPU") -> Choice:
    """The fastest exact method for this circuit, shots and noise, with the reason in words."""
    if requested == "aer_default":
        return Choice("automatic", "exact reference requested: Aer's own choice on the full device model")
    if requested != "automatic":
        return Choice(requested, f"{requested} requested by the task")
    if not noise.noisy:
        return Choice("automatic", "noise-free: Aer samples one final state for all shots "
                                   "(stabilizer for Clifford circuits, else a statevector)")
    if circuit.clifford and noise.clifford:
        return Choice("automatic", "Clifford circuit and Clifford noise: Aer runs it as a stabilizer simulation")
    est = estimates(circuit, noise, shots)
    if device == "GPU":  # Aer's matrix product state runs on the CPU only; the others take cuStateVec
        est.pop("matrix_product_state", None)
    best = min(est, key=est.get)
    others = [v for k, v in est.items() if k != "matrix_product_state"]
    probe = (best != "matrix_product_state" and circuit.mps_trajectory_s is None and "matrix_product_state" in est
             and min(others) >= PROBE_MIN_S and est["matrix_product_state"] / max(shots, 1) <= PROBE_SHARE * min(others))
    rounded = {k: round(v, 4) for k, v in est.items()}
    runner_up = sorted(est.values())[1] if len(est) > 1 else est[best]
    gain = f"{runner_up / est[best]:.1f}x ahead of the next" if est[best] > 0 else ""
    n = circuit.active_qubits
    if best == "density_matrix":
        why = (f"{n} active qubits, {shots} shots, terminal measurements: one density matrix "
               f"(16*4^{n} B) for all shots is cheapest, {gain}")
        return Choice("density_matrix", why, estimates=rounded, probe=probe)
    if best == "statevector+branching":
        why = (f"{n} active qubits, ~{noise.error_per_shot:.2f} noise events per shot: shots share a state "
               f"until an error splits them (~{branches(shots, noise.error_per_shot):.0f} of {shots} trajectories), "
               f"readout errors applied per shot as a classical channel; {gain}")
        return Choice("statevector", why, options={"shot_branching_enable": True},
                      readout_channel=noise.readout, estimates=rounded, probe=probe)
    if best == "matrix_product_state":
        bound = (f"a noisy shot costs {circuit.mps_trajectory_s * 1e3:.0f} ms (timed)" if circuit.mps_trajectory_s is not None
                 else f"bond dimension at most 2^{circuit.log2_chi} from the entangling structure")
        why = f"{n} active qubits, {bound}: matrix product state, {gain}"
        return Choice("matrix_product_state", why, estimates=rounded)
    why = f"{n} active qubits, {shots} shots: one statevector trajectory per shot (Aer's default) is cheapest"
    return Choice("statevector", why, estimates=rounded, probe=probe)
