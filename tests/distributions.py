"""Comparing two samples of counts: total-variation distance, its sampling floor, a chi-square test.

Used by tests/unit/test_method_equality.py and benchmarks/noise_model.py, so the benchmark's
equality columns mean exactly what the test asserts."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import chi2_contingency


def tvd(a: dict, b: dict) -> float:
    na, nb = sum(a.values()), sum(b.values())
    return 0.5 * sum(abs(a.get(k, 0) / na - b.get(k, 0) / nb) for k in set(a) | set(b))


def tvd_floor(a: dict, b: dict) -> float:
    """The TVD two samples of these sizes show when drawn from the same (pooled) distribution."""
    na, nb = sum(a.values()), sum(b.values())
    total = na + nb
    spread = 1 / na + 1 / nb
    return 0.5 * math.sqrt(2 / math.pi) * sum(
        math.sqrt(max(p * (1 - p), 0.0) * spread) for p in ((a.get(k, 0) + b.get(k, 0)) / total for k in set(a) | set(b)))


def homogeneity_p(a: dict, b: dict) -> float:
    """Chi-square two-sample p-value over the outcomes; outcomes expected < 5 times pooled into one bin."""
    keys = sorted(set(a) | set(b))
    na, nb = sum(a.values()), sum(b.values())
    rows, rare = [], [0, 0]
    for k in keys:
        pooled = a.get(k, 0) + b.get(k, 0)
        if pooled * min(na, nb) / (na + nb) < 5:
            rare[0] += a.get(k, 0)
            rare[1] += b.get(k, 0)
        else:
            rows.append([a.get(k, 0), b.get(k, 0)])
    if rare[0] + rare[1]:
        rows.append(rare)
    if len(rows) < 2:
        return 1.0
    return float(chi2_contingency(np.array(rows).T, correction=False)[1])


def _bits(key: str) -> str:
    return key.replace(" ", "")


def marginals_p(a: dict, b: dict) -> float:
    """The smallest per-bit two-sample p-value (is bit k set as often in both?), Bonferroni-corrected.

    At 15-20 qubits a few hundred shots spread over 2^n outcomes leave the full-distribution test
    little to compare; one bit's frequency is estimated from every shot, so a path that gets one
    qubit's noise wrong shows here. Valid whatever the correlation between bits (Bonferroni)."""
    width = max((len(_bits(k)) for k in (*a, *b)), default=0)
    na, nb = sum(a.values()), sum(b.values())
    ones_a, ones_b = np.zeros(width), np.zeros(width)
    for counts, ones in ((a, ones_a), (b, ones_b)):
        for k, c in counts.items():
            ones += c * (np.frombuffer(_bits(k).encode(), np.uint8) == ord("1"))
    worst = 1.0
    for ka, kb in zip(ones_a, ones_b):
        if ka + kb in (0, na + nb):
            continue  # constant in both samples: nothing to compare
        worst = min(worst, float(chi2_contingency(np.array([[ka, na - ka], [kb, nb - kb]]), correction=False)[1]))
    return min(1.0, worst * max(width, 1))


def weights_p(a: dict, b: dict) -> float:
    """Chi-square two-sample p-value over the Hamming weight of the outcomes (n + 1 bins, not 2^n).

    Noise moves weight between neighbouring weights (a relaxation lowers it, a readout flip moves it
    by one), so a wrong noise rate shows in this low-dimensional histogram long before it shows in the
    sparse full distribution."""
    def by_weight(counts: dict) -> dict:
        out: dict[int, int] = {}
        for k, c in counts.items():
            w = _bits(k).count("1")
            out[w] = out.get(w, 0) + c
        return out
    return homogeneity_p(by_weight(a), by_weight(b))


def equality_report(ours: dict, ref: dict) -> dict[str, float]:
    """Every statistic the equality test decides on, by name (the benchmark prints the same)."""
    return {"p": homogeneity_p(ours, ref), "p_marginals": marginals_p(ours, ref), "p_weights": weights_p(ours, ref),
            "tvd": tvd(ours, ref), "tvd_floor": tvd_floor(ours, ref)}


def same_distribution(report: dict[str, float]) -> bool:
    """The equality test's decision on an ``equality_report``: no test rejects at p < 1e-4 and the TVD is
    within 3x its sampling floor."""
    return min(report["p"], report["p_marginals"], report["p_weights"]) >= 1e-4 and \
        report["tvd"] <= 3 * report["tvd_floor"]
