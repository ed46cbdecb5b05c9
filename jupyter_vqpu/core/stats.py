"""Cumulative operations statistics of a device, as the end-of-task scripts keep them.

``finish.lua``, ``recover.lua`` and ``cancel.lua`` count every task's end and
the time its phases took into the device's stats hash (``Keys.stats``), in the
same atomic step as the transition itself. Keeping the numbers in Redis rather
than in a service's memory is what makes them right across several service
replicas and restarts: whoever reads the hash sees the same totals.

The hash's field names describe themselves (see ``lua/prelude.lua``)::

    finished:<outcome>            tasks that ended completed / failed / cancelled
    failed:<reason>               failed tasks by reason code
    requeued                      attempts handed back to the queue (lease expired)
    lat:<phase>:le:<bound s>      tasks whose <phase> took at most <bound> seconds
                                  (per bucket, not cumulative; '+Inf' for the rest)
    lat:<phase>:sum_ms            total milliseconds spent in <phase>

This module turns such a hash into plain data; it imports nothing but the
standard library, so the CLI and the metrics exporter share it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from jupyter_vqpu.core.lifecycle import TaskState

#: Latency phases, in lifecycle order: waiting in the queue (from (re)queueing to claim),
#: being scheduled (claim to running: staging, sbatch, Slurm pending), running, and end to end.
PHASES = ("queue", "schedule", "run", "total")
#: How a task ends, in lifecycle order (the final states).
OUTCOMES = tuple(s.value for s in TaskState if s.final)
#: The histogram's bucket bounds (seconds), as in ``LATENCY_BUCKETS`` of lua/prelude.lua (a unit
#: test keeps the two equal). Every bound is always exported, data or not, so that each
#: ``le`` series exists from the first scrape and rate() over it misses no increment.
LATENCY_BOUNDS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


@dataclass
class Histogram:
    """One phase's latency distribution: cumulative (upper bound s, count) pairs ending at +Inf."""

    buckets: list[tuple[float, int]] = field(default_factory=list)
    sum_s: float = 0.0

    @property
    def count(self) -> int:
        return self.buckets[-1][1] if self.buckets else 0

    def quantile(self, q: float) -> float | None:
        """The bucket bound that at least ``q`` of the observations fall under (None if empty).

        Coarse on purpose (no interpolation): for a quick look from the CLI; use
        Prometheus' histogram_quantile() for dashboards and alerts."""
        if not self.count:
            return None
        target = q * self.count
        for bound, cumulative in self.buckets:
            if cumulative >= target:
                return bound
        return math.inf


@dataclass
class DeviceStats:
    """A device's cumulative counters and latency histograms since its stats hash began."""

    finished: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    requeued: int = 0
    latency: dict[str, Histogram] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "finished": dict(self.finished),
            "failed": dict(self.failed),
            "requeued": self.requeued,
            "latency": {
                phase: {"count": h.count, "sum_s": round(h.sum_s, 3),
                        "buckets": [["+Inf" if math.isinf(b) else b, n] for b, n in h.buckets]}
                for phase, h in self.latency.items()
            },
        }


def parse_stats(h: dict[str, str]) -> DeviceStats:
    """A stats hash (HGETALL, decoded) as DeviceStats; unknown fields are ignored.

    Every phase with data gets the full bucket ladder, cumulative and ending at
    +Inf, as Prometheus requires of a histogram."""
    out = DeviceStats(finished={o: 0 for o in OUTCOMES})
    per_bucket: dict[str, dict[float, int]] = {}
    sums: dict[str, int] = {}
    for name, raw in h.items():
        try:
            value = int(raw)
        except (TypeError, ValueError):
            continue
        kind, _, rest = name.partition(":")
        if kind == "finished" and rest:
            out.finished[rest] = value
        elif kind == "failed" and rest:
            out.failed[rest] = value
        elif name == "requeued":
            out.requeued = value
        elif kind == "lat":
            phase, _, tail = rest.partition(":")
            if tail == "sum_ms":
                sums[phase] = value
            elif tail.startswith("le:"):
                try:
                    bound = float(tail[3:])  # float('+Inf') is inf
                except ValueError:
                    continue
                per_bucket.setdefault(phase, {})[bound] = value
    # The hash's own bounds too: stats written by another version of the scripts still add up.
    bounds = sorted(set(LATENCY_BOUNDS_S) | {b for buckets in per_bucket.values() for b in buckets} | {math.inf})
    seen = set(per_bucket) | set(sums)
    for phase in [p for p in PHASES if p in seen] + sorted(seen - set(PHASES)):
        counts = per_bucket.get(phase, {})
        running, ladder = 0, []
        for b in bounds:
            running += counts.get(b, 0)
            ladder.append((b, running))
        out.latency[phase] = Histogram(ladder, sums.get(phase, 0) / 1000.0)
    return out
