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
