"""Prometheus metrics of the control plane, read from Redis at scrape time.

Nothing is counted in the service's memory: the end-of-task scripts keep
cumulative counters and latency histograms in each device's stats hash
(``jupyter_vqpu/core/stats.py``), and the live figures (queue depth, agents alive,
tasks held) are in the device's own keys. A scrape reads all of it in ONE
pipelined round trip, so any number of service replicas, restarted at any
time, report the same numbers and a scrape costs Redis a few reads per device.

Metrics (all labelled by ``device``):

- ``vqpu_queue_depth``: tasks waiting in the device's queue.
- ``vqpu_queue_depth_by_group{group}``: the same split by user group
  (``group_of(owner)``; one group "all" unless configured).
- ``vqpu_tasks_held``: tasks an agent holds (claimed, scheduled or running).
- ``vqpu_agents_alive``: agents whose presence has not expired.
- ``vqpu_device_draining``: 1 while the device takes no new tasks.
- ``vqpu_snapshot_age_seconds``: age of the current calibration snapshot.
- ``vqpu_tasks_finished_total{outcome}``: tasks that ended completed / failed / cancelled.
- ``vqpu_tasks_failed_total{reason}``: failed tasks by reason code.
- ``vqpu_tasks_requeued_total``: attempts returned to the queue after a lost lease.
- ``vqpu_task_latency_seconds{phase}``: histogram per phase: queue (waiting for a
  claim), schedule (claim to running: staging, sbatch, Slurm pending), run, total.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import redis
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from jupyter_vqpu.core.connection import is_cluster, server_time_ms
from jupyter_vqpu.core.keys import Keys
from jupyter_vqpu.core.stats import DeviceStats, parse_stats

log = logging.getLogger("vqpu.metrics")

DEFAULT_GROUP = "all"
_QUEUED = "queued:"


def all_one_group(owner: str) -> str:
    """The default grouping: every user in one group (label cardinality stays at one)."""
    return DEFAULT_GROUP


@dataclass
class DeviceReading:
    """What one scrape read about one device."""

    name: str
    queue_depth: int = 0
    queued_by_owner: dict[str, int] = field(default_factory=dict)
    held: int = 0
    agents_alive: int = 0
    draining: bool = False
    snapshot_age_s: float | None = None
    stats: DeviceStats = field(default_factory=DeviceStats)


class VqpuCollector(Collector):
    """A custom collector: reads Redis when Prometheus scrapes, holds no counts itself.

    Args:
        client: a redis-py client (decode_responses=True), e.g. ``ControlPlane.redis``.
        devices: the devices to report, or a callable giving them; None: every
            registered device (the registry is read in the same round trip; a
            device seen for the first time costs one more).
        group_of: maps an owner (user name) to the group its queued tasks are
            counted under. Called per owner per scrape: cache inside it if it is slow.
    """

    def __init__(self, client: redis.Redis, *, devices: Iterable[str] | Callable[[], Iterable[str]] | None = None,
                 group_of: Callable[[str], str] | None = None) -> None:
        self.redis = client
        self._devices = devices
        self.group_of = group_of or all_one_group
        self._known: list[str] = []  # the registry as of the last scrape
        self._group_errors_logged = False

    def describe(self) -> list[Metric]:
        """Nothing to describe up front: registering must not touch Redis."""
        return []

    # ---------------------------------------------------------- reading

    def _configured(self) -> list[str] | None:
        if self._devices is None:
            return None
        names = self._devices() if callable(self._devices) else self._devices
        return sorted(set(names))

    def read(self) -> list[DeviceReading]:
        """Everything a scrape reports, in one pipelined round trip (two when a new device appeared)."""
        configured = self._configured()
        names = configured if configured is not None else self._known
        # On a Redis Cluster the pipeline is split per node by the client, and each device's clock is
        # its own master's: TIME (keyless) is then asked per device, of the node holding it.
        cluster = is_cluster(self.redis)
        pipe = self.redis.pipeline(transaction=False)
        if not cluster:
            pipe.time()
        if configured is None:
            pipe.smembers(Keys.registry)
        for name in names:
            self._queue_reads(pipe, name)
        replies = pipe.execute()
        now_ms: int | None = None
        if not cluster:
            (sec, usec), replies = replies[0], replies[1:]
            now_ms = sec * 1000 + usec // 1000
        offset = 1 if configured is None else 0  # the registry's members come first
        per_device = {name: replies[offset + 5 * i:offset + 5 * i + 5] for i, name in enumerate(names)}
        if configured is None:
            registered = sorted(replies[0])
            new = [n for n in registered if n not in per_device]
            if new:
                pipe = self.redis.pipeline(transaction=False)
                for name in new:
                    self._queue_reads(pipe, name)
                more = pipe.execute()
                per_device.update({name: more[5 * i:5 * i + 5] for i, name in enumerate(new)})
            self._known = registered
            names = registered
        return [r for r in (self._reading(n, per_device[n], now_ms if now_ms is not None else
                                          server_time_ms(self.redis, Keys(n).device)) for n in names) if r is not None]

    @staticmethod
    def _queue_reads(pipe: redis.client.Pipeline, name: str) -> None:
        k = Keys(name)
        pipe.hgetall(k.device)
        pipe.zcard(k.pending)
        pipe.zcard(k.leases)
        pipe.zrange(k.agents, 0, -1, withscores=True)
        pipe.hgetall(k.stats)

    def _reading(self, name: str, replies: list, now_ms: int) -> DeviceReading | None:
        device, pending, held, agents, stats = replies
        if not device:  # registered but gone, or not registered yet
            return None
        queued = {}
        for field_name, value in device.items():
            if field_name.startswith(_QUEUED):
                try:
                    queued[field_name[len(_QUEUED):]] = max(0, int(value))
                except ValueError:
                    continue
        snapshot_at = device.get("snapshot_at")
        return DeviceReading(
            name=name,
            queue_depth=int(pending),
            queued_by_owner=queued,
            held=int(held),
            agents_alive=sum(1 for _, expires in agents if expires > now_ms),
            draining=device.get("admin_state") == "draining",
            snapshot_age_s=max(0.0, (now_ms - int(snapshot_at)) / 1000.0) if snapshot_at else None,
            stats=parse_stats(stats),
        )

    def _group(self, owner: str) -> str:
        try:
            return str(self.group_of(owner))
        except Exception:  # a broken group mapping must not take the metrics down with it
            if not self._group_errors_logged:
                log.exception("vqpu metrics: group_of(%r) failed; counting such owners as 'unknown'", owner)
                self._group_errors_logged = True
            return "unknown"

    # ------------------------------------------------------- exposition

    def collect(self) -> Iterator[Metric]:
        readings = self.read()
        depth = GaugeMetricFamily("vqpu_queue_depth", "Tasks waiting in the device's queue.", labels=["device"])
        by_group = GaugeMetricFamily("vqpu_queue_depth_by_group", "Queued tasks by the owner's user group.",
                                     labels=["device", "group"])
        held = GaugeMetricFamily("vqpu_tasks_held", "Tasks an agent holds (claimed, scheduled or running).",
                                 labels=["device"])
        alive = GaugeMetricFamily("vqpu_agents_alive", "Agents serving the device whose presence has not expired.",
                                  labels=["device"])
        draining = GaugeMetricFamily("vqpu_device_draining", "1 while the device is drained (takes no new tasks).",
                                     labels=["device"])
        age = GaugeMetricFamily("vqpu_snapshot_age_seconds", "Age of the device's current calibration snapshot.",
                                labels=["device"])
        finished = CounterMetricFamily("vqpu_tasks_finished", "Tasks that reached a final state, by outcome.",
                                       labels=["device", "outcome"])
        failed = CounterMetricFamily("vqpu_tasks_failed", "Failed tasks by reason code.", labels=["device", "reason"])
        requeued = CounterMetricFamily("vqpu_tasks_requeued", "Attempts returned to the queue after a lost lease.",
                                       labels=["device"])
        latency = HistogramMetricFamily(
            "vqpu_task_latency_seconds",
            "Time finished tasks spent per phase: queue (to claim), schedule (claim to running), run, total.",
            labels=["device", "phase"],
        )
        for r in readings:
            d = r.name
            depth.add_metric([d], r.queue_depth)
            groups: dict[str, int] = {}
            for owner, n in r.queued_by_owner.items():
                g = self._group(owner)
                groups[g] = groups.get(g, 0) + n
            for g, n in sorted(groups.items()):
                by_group.add_metric([d, g], n)
            held.add_metric([d], r.held)
            alive.add_metric([d], r.agents_alive)
            draining.add_metric([d], 1 if r.draining else 0)
            if r.snapshot_age_s is not None:
                age.add_metric([d], r.snapshot_age_s)
            for outcome, n in sorted(r.stats.finished.items()):
                finished.add_metric([d, outcome], n)
            for reason, n in sorted(r.stats.failed.items()):
                failed.add_metric([d, reason], n)
            requeued.add_metric([d], r.stats.requeued)
            for phase, h in r.stats.latency.items():
                buckets = [("+Inf" if math.isinf(b) else _le(b), n) for b, n in h.buckets]
                latency.add_metric([d, phase], buckets, h.sum_s)
        yield from (depth, by_group, held, alive, draining, age, finished, failed, requeued, latency)


def _le(bound: float) -> str:
    """Bucket bounds as Prometheus' own client writes them (0.05, 1.0, 3600.0)."""
    return repr(float(bound))


def render(collector: VqpuCollector, accept: str = "") -> tuple[bytes, str]:
    """One scrape's body and content type, in the format the scraper's Accept header asks for."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
