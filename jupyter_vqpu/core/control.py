"""The control plane: device registry, snapshots and the task lifecycle in Redis.

This is the one place that holds Redis credentials and calls the scripts. The
operator CLI, the agent and the Jupyter server extension all go through it;
kernels never do (they speak HTTP to the server extension).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import redis

from jupyter_vqpu.core import refs, run_options
from jupyter_vqpu.core import snapshot as snap
from jupyter_vqpu.core.connection import Durability, durability_of, is_cluster, node_client, server_time_ms
from jupyter_vqpu.core.errors import (
    CircuitError,
    DeviceDraining,
    InvalidRequest,
    LimitExceeded,
    NotDurable,
    TaskNotFound,
    UnknownDevice,
    UnknownSnapshot,
    VqpuError,
)
from jupyter_vqpu.core.keys import SNAPSHOT_ID_RE, Keys, check_device_name, device_name, device_of, new_task_id
from jupyter_vqpu.core.lifecycle import HELD_STATES, TaskState, follow
from jupyter_vqpu.core.parsing import ParserPool, default_pool
from jupyter_vqpu.core.scripts import Scripts
from jupyter_vqpu.core.stats import DeviceStats, parse_stats
from jupyter_vqpu.core.streams import PerDeviceReads

log = logging.getLogger("vqpu.control")

GROUP = "agents"
EVENTS_MAXLEN = 100_000
IDEMPOTENCY_TTL_S = 7 * 24 * 3600
#: How many ids from the head of the queue one claim considers (agents racing for the head).
CLAIM_WINDOW = 8


@dataclass(frozen=True)
class Limits:
    """Bounds on what one submission may ask for; checked before enqueue."""

    max_shots: int = 1_000_000
    max_qubits: int = 30  # active qubits a simulation may use, whatever the device has
    max_circuit_bytes: int = 1_000_000
    max_ops: int = 200_000
    max_queued_per_owner: int = 0  # 0: unlimited
    submissions_per_minute: int = 0  # per owner, across devices; 0: unlimited
    max_name_chars: int = 200
    max_tags: int = 10  # tags on one task, each a short label (same characters as a name)
    max_tag_chars: int = 64
    # One task may carry many circuits (a backend.run list, a sampler sweep): bounds on the whole task.
    max_circuits: int = 1_000
    max_task_bytes: int = 4_000_000  # all of a task's circuits together
    max_total_shots: int = 10_000_000  # shots x circuits


@dataclass
class Claim:
    """What an agent gets from a successful claim: the task and its fencing token.

    The token is opaque (claim.lua mints ``<attempt>-<nonce>``): agents pass it back
    whole to every fenced script and never parse it; ``attempt`` is the number to show."""

    task_id: str
    device: str
    token: str
    snapshot_id: str
    fields: dict[str, str] = field(default_factory=dict)
    attempt: int = 0


def _ms_to_s(value: Any) -> float | None:
    return int(value) / 1000.0 if value not in (None, "") else None


def task_view(h: dict[str, str], position: int | None = None) -> dict[str, Any]:
    """The public shape of a task, as the CLI, the API and the widget show it."""
    state = h.get("state", "")
    view: dict[str, Any] = {
        "task_id": h.get("id"),
        "device": h.get("device"),
        "owner": h.get("owner"),
        "name": h.get("name") or None,
        "tags": json.loads(h["tags"]) if h.get("tags") else [],
        "state": state,
        "shots": int(h["shots"]) if h.get("shots") else None,
        "num_circuits": int(h.get("num_circuits") or 1),
        "seed": int(h["seed"]) if h.get("seed") else None,
        "optimization_level": int(h.get("optimization_level") or 1),
        "snapshot_id": h.get("snapshot") or h.get("pinned_snapshot") or None,
        "pinned": bool(h.get("pinned_snapshot")),
        "attempts": int(h.get("attempt") or 0),
        "agent": h.get("agent") or None,
        "executor": h.get("executor") or None,
        "job_id": h.get("job_id") or None,
        "job_reason": h.get("job_reason") or None,
        "reason": h.get("reason") or None,
        "error": h.get("error") or None,
        "queue_position": position if state == TaskState.QUEUED.value else None,
    }
    for name in ("created_at", "claimed_at", "scheduled_at", "started_at", "finished_at", "updated_at"):
        view[name] = _ms_to_s(h.get(name))
    view["phases"] = phases(view)
    return view


def phases(view: dict[str, Any]) -> dict[str, float]:
    """Where a task's time went, from its transition timestamps (seconds, server clock)."""
    marks = [("queued", "created_at", "claimed_at"), ("claimed", "claimed_at", "scheduled_at"),
             ("scheduled", "scheduled_at", "started_at"), ("running", "started_at", "finished_at"),
             ("total", "created_at", "finished_at")]
    return {name: round(view[b] - view[a], 4) for name, a, b in marks if view.get(a) and view.get(b)}


def check_tags(tags: Any, lim: Limits) -> list[str]:
    """Tags a user attaches to a task (``vqpu tasks`` shows them): a bounded list of short printable labels."""
    if isinstance(tags, str) or not isinstance(tags, (list, tuple)):
        raise InvalidRequest(f"tags must be a list of text labels, got {str(tags)[:60]!r}", 'e.g. tags=["ghz", "week3"]')
    if len(tags) > lim.max_tags:
        raise LimitExceeded(f"{len(tags)} tags is over the limit of {lim.max_tags}", "use fewer tags")
    out: list[str] = []
    for tag in tags:
        if not isinstance(tag, str) or not 0 < len(tag) <= lim.max_tag_chars or not tag.isprintable():
            raise InvalidRequest(f"each tag must be 1-{lim.max_tag_chars} printable characters, got {str(tag)[:70]!r}",
                                 'e.g. tags=["ghz", "week3"]')
        if tag not in out:
            out.append(tag)
    return out


def _decode_pairs(flat: list) -> dict[str, str]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


class ControlPlane:
    """Operations on the control plane; every state change is one script call."""

    def __init__(self, client: redis.Redis, *, limits: Limits | None = None, events_maxlen: int = EVENTS_MAXLEN,
                 script_loader: redis.Redis | None = None, parser: ParserPool | None = None,
                 durability: Durability | None = None) -> None:
        self.redis = client
        # What "acknowledged" means for submit, claim and finish (the URL's ?wait_replicas= by default).
        self.durability = durability if durability is not None else durability_of(client)
        self._waitaof_checked = False
        # A Redis Cluster cannot read many devices' streams in one call: one blocking read per device.
        self._work_reads = PerDeviceReads(self._read_work_one, "vqpu-work")
        self._event_reads = PerDeviceReads(self._read_events_one, "vqpu-events", consuming=False)
        self.limits = limits or Limits()
        self._parser = parser  # where circuits are parsed (see the parser property)
        self.events_maxlen = events_maxlen
        # script_loader: a trusted user's client that (re)loads the scripts, so ours needs no SCRIPT LOAD.
        self.scripts = Scripts(client, loader=script_loader)
        self._keys: dict[str, Keys] = {}

    def check_server(self) -> list[str]:
        """Warnings about a Redis that could lose or evict control-plane state."""
        warnings = []
        try:
            policy = self.redis.config_get("maxmemory-policy").get("maxmemory-policy")
            aof = self.redis.config_get("appendonly").get("appendonly")
        except redis.ResponseError:  # CONFIG is not allowed for least-privilege users
            return warnings
        if policy and policy != "noeviction":
            warnings.append(
                f"Redis maxmemory-policy is {policy!r}: under memory pressure it may evict tasks; set it to noeviction"
            )
        if aof == "no":
            warnings.append("Redis runs without AOF (appendonly no): a crash loses acknowledged submissions")
        for w in warnings:
            log.warning(w)
        return warnings

    def keys(self, device: str) -> Keys:
        k = self._keys.get(device)
        if k is None:
            k = self._keys[device] = Keys(check_device_name(device))
        return k

    # ----------------------------------------------------------- devices

    def device_names(self) -> list[str]:
        return sorted(self.redis.smembers(Keys.registry))

    def _require_device(self, device: str) -> dict[str, str]:
        check_device_name(device)
        h = self.redis.hgetall(self.keys(device).device)
        if not h:
            known = ", ".join(self.device_names()) or "none"
            raise UnknownDevice(f"unknown device {device!r}", f"known devices: {known}; see `vqpu devices`")
        return h

    def server_time(self, device: str | None = None) -> float:
        """Server time in seconds: ``device``'s own node (on a cluster each master has its clock)."""
        return server_time_ms(self.redis, self.keys(device).device if device else None) / 1000

    def _times(self, names: list[str]) -> dict[str, float]:
        """Each device's server time: one TIME on a single node, one per device on a cluster."""
        if is_cluster(self.redis):
            return {name: self.server_time(name) for name in names}
        return dict.fromkeys(names, self.server_time())

    def devices(self, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Each device's status (online / draining / offline), queue depth and snapshot age."""
        names = list(names) if names is not None else self.device_names()
        nows = self._times(names)
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            k = self.keys(name)
            pipe.hgetall(k.device)
            pipe.zcard(k.pending)
            pipe.zcard(k.leases)
            pipe.zrangebyscore(k.agents, nows[name] * 1000, "+inf")
            pipe.hgetall(k.agent_health)
        replies = pipe.execute()
        out = []
        for i, name in enumerate(names):
            h, depth, held, agents, health = replies[5 * i : 5 * i + 5]
            if not h:
                continue
            unhealthy = {a: health[a] for a in agents if a in health}
            if h.get("admin_state") == "draining":
                status = "draining"
            elif not agents:
                status = "offline"
            else:  # live agents that all say they cannot run work do not make a device online
                status = "degraded" if len(unhealthy) == len(agents) else "online"
            snapshot_at = _ms_to_s(h.get("snapshot_at"))
            out.append(
                {
                    "name": name,
                    "status": status,
                    "num_qubits": int(h.get("num_qubits") or 0),
                    "queue_depth": depth,
                    "held": held,
                    "agents": sorted(agents),
                    "unhealthy_agents": unhealthy,
                    "offline_since": _ms_to_s(h.get("offline_since")) if not agents else None,
                    "snapshot_id": h.get("snapshot"),
                    "snapshot_version": int(h.get("version") or 0),
                    "snapshot_at": snapshot_at,
                    "snapshot_age_s": round(nows[name] - snapshot_at, 3) if snapshot_at else None,
                }
            )
        return out

    def snapshot_bytes(self, device: str, snapshot_id: str | None = None) -> bytes:
        """A snapshot's canonical bytes (the device's current one by default)."""
        device = device_name(device)
        h = self._require_device(device)
        sid = self.resolve_snapshot(device, snapshot_id) if snapshot_id else h.get("snapshot")
        if not sid or not SNAPSHOT_ID_RE.match(sid):
            raise UnknownSnapshot(f"no snapshot {sid!r} for {device}", "snapshot ids are 64 hex digits; see `vqpu devices`")
        data = self.redis.get(self.keys(device).snapshot(sid))
        if data is None:
            raise UnknownSnapshot(f"no snapshot {sid[:12]} for {device}", "list them with `vqpu device snapshots " + device + "`")
        return data.encode()

    def snapshot_ids(self, device: str) -> list[tuple[int, str]]:
        device = device_name(device)
        self._require_device(device)
        return [(int(v), sid) for sid, v in self.redis.zrange(self.keys(device).snapshots, 0, -1, withscores=True)]

    def resolve_snapshot(self, device: str, ref: str) -> str:
        """The full id of the snapshot ``ref`` names on ``device`` (a 64-hex id, a unique prefix of 8+ hex
        digits, ``v3``, ``fez@v3``; see core/refs.py). Raises UnknownSnapshot / AmbiguousReference."""
        return refs.resolve_snapshot(self.redis, self.keys(device_name(device)), ref)

    def resolve_task(self, ref: str, owner: str | None = None) -> str:
        """The full task id ``ref`` names: a whole id, or a unique prefix among ``owner``'s tasks."""
        return refs.resolve_task(self.redis, self.keys, ref, owner)

    def snapshot_history(self, device: str) -> list[dict[str, Any]]:
        """Every published snapshot of ``device``, oldest first: version, id, created_at, source, current."""
        device = device_name(device)
        h = self._require_device(device)
        k = self.keys(device)
        entries = self.snapshot_ids(device)
        docs = self.redis.mget([k.snapshot(sid) for _, sid in entries]) if entries else []
        out = []
        for (version, sid), raw in zip(entries, docs):
            doc = json.loads(raw) if raw else {}
            out.append({"version": version, "snapshot_id": sid, "created_at": doc.get("created_at"),
                        "calibration_date": doc.get("calibration_date"), "source": doc.get("source"),
                        "current": sid == h.get("snapshot")})
        return out

    def rollback(self, device: str, to: str | None = None) -> tuple[str, int, int]:
        """Make an earlier snapshot's content current again, as a NEW version (history is never rewritten).

        ``to`` names the snapshot (any form ``resolve_snapshot`` takes); by default the version
        before the current one, i.e. undo the last publication. The new document is the old one
        with the next version number, a fresh ``created_at`` and a source that says what it
        restores; it goes through ``publish`` (the compare-and-set script) like any calibration.
        Returns (new snapshot id, new version, version restored)."""
        device = device_name(device)
        h = self._require_device(device)
        current = int(h.get("version") or 0)
        if to is None:
            if current < 2:
                raise InvalidRequest(f"{device} has only one snapshot: nothing to roll back to",
                                     f"see `vqpu device snapshots {device}`")
            to = f"v{current - 1}"
        sid = self.resolve_snapshot(device, to)
        if sid == h.get("snapshot"):
            raise InvalidRequest(f"snapshot {sid[:12]} is already the current one of {device}",
                                 "name an earlier one with --to (e.g. --to v1)")
        target = snap.load_snapshot(self.snapshot_bytes(device, sid), sid)
        restored = int(target["version"])

        def build(version: int) -> dict:
            now = datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
            doc = dict(target, version=version, created_at=now)
            doc["source"] = f"rollback to v{restored} ({sid[:12]}): {target.get('source', '')}"[:500]
            return doc

        result = self.publish(device, build)
        assert result is not None
        return result[0], result[1], restored

    def publish(self, device: str, build: Callable[[int], dict], *, only_if_new: bool = False) -> tuple[str, int] | None:
        """Publish ``build(version)`` as the device's new current snapshot.

        ``build`` gets the next version number, because the version is inside
        the hashed document. Retries on a concurrent publisher. Returns
        (snapshot id, version), or None when ``only_if_new`` and the device exists."""
        k = self.keys(check_device_name(device))
        for _ in range(10):
            current = int(self.redis.hget(k.device, "version") or 0)
            if only_if_new and current:
                return None
            doc = build(current + 1)
            data = snap.canonical_bytes(doc)
            sid = snap.snapshot_id(data)
            status, version = self.scripts.call(
                "publish", k, device_name=device, snapshot_id=sid, data=data, version=current + 1,
                expected_version=current, num_qubits=doc["num_qubits"], events_maxlen=self.events_maxlen,
                only_if_new=int(only_if_new))
            if status == "published":
                self.redis.sadd(Keys.registry, device)
                log.info("published snapshot %s v%s for %s", sid[:12], version, device)
                return sid, int(version)
            if status == "exists":
                self.redis.sadd(Keys.registry, device)
                return None
        raise VqpuError(f"could not publish a snapshot for {device}: too many concurrent publishers", "try again")

    def seed(self, names: Iterable[str]) -> list[str]:
        """Register built-in devices that are not there yet; never replaces a snapshot."""
        from jupyter_vqpu.core import catalog

        self.scripts.load_all()
        added = []
        for name in names:
            if self.redis.exists(self.keys(name).device):
                self.redis.sadd(Keys.registry, name)
                continue
            if self.publish(name, lambda v, n=name: catalog.builtin_snapshot(n, version=v), only_if_new=True):
                added.append(name)
        return added

    def update_calibration(self, device: str, files: list[str]) -> tuple[str, int]:
        """Publish a new snapshot from IBM conf/props JSON files (a device mutation)."""
        import os

        conf, props = snap.read_calibration_files(files)
        return self.publish_calibration(device, conf, props,
                                        "calibration file " + ", ".join(os.path.basename(f) for f in files))

    def publish_calibration(self, device: str, conf: dict | None, props: dict, source: str) -> tuple[str, int]:
        """Publish a new snapshot from parsed IBM calibration; without ``conf`` the topology is kept."""
        self._require_device(device)
        base = snap.load_snapshot(self.snapshot_bytes(device))
        result = self.publish(
            device,
            lambda v: snap.snapshot_from_ibm(conf, props, device=device, version=v, source=source, base=base),
        )
        assert result is not None
        return result

    def set_admin_state(self, device: str, state: str) -> None:
        if state not in ("active", "draining"):
            raise InvalidRequest(f"unknown device state {state!r}", "use active or draining")
        self._require_device(device)
        self.redis.hset(self.keys(device).device, "admin_state", state)

    # ------------------------------------------------------------- tasks

    def validate(self, *, device: str, shots: Any, seed: Any, optimization_level: Any, name: Any,
                 tags: Any = None, limits: Limits | None = None) -> dict[str, str]:
        """Check the scalar fields of a submission; returns them as task fields."""
        lim = limits or self.limits
        if isinstance(shots, bool) or not isinstance(shots, int):
            raise InvalidRequest(f"shots must be a whole number, got {shots!r}", "e.g. shots=4096")
        if shots < 1:
            raise InvalidRequest(f"shots must be at least 1, got {shots}", "e.g. shots=4096")
        if shots > lim.max_shots:
            raise LimitExceeded(f"shots={shots} is over the limit of {lim.max_shots}", "ask for fewer shots")
        fields = {"device": device, "shots": str(shots)}
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
                raise InvalidRequest(f"seed must be a whole number in [0, 2^63), got {seed!r}", "e.g. seed=7")
            fields["seed"] = str(seed)
        if isinstance(optimization_level, bool) or optimization_level not in (0, 1, 2, 3):
            raise InvalidRequest(f"optimization_level must be 0, 1, 2 or 3, got {optimization_level!r}", "")
        fields["optimization_level"] = str(optimization_level)
        if name is not None:
            if not isinstance(name, str) or len(name) > lim.max_name_chars:
                raise InvalidRequest(f"name must be text of at most {lim.max_name_chars} characters", "")
            fields["name"] = name
        if tags is not None:
            fields["tags"] = json.dumps(check_tags(tags, lim))
        return fields

    @property
    def parser(self) -> ParserPool:
        """Where circuits are parsed: never this process (see ``parsing``); the shared pool unless given one."""
        if self._parser is None:
            self._parser = default_pool()
        return self._parser

    def check_circuit(self, text: str, fmt: str | None, device_qubits: int,
                      limits: Limits | None = None) -> tuple[str, int]:
        """Screen and parse the circuit (in the sandboxed parser pool) under the bounds; returns (format, active qubits)."""
        lim = limits or self.limits
        if not isinstance(text, str) or not text.strip():
            raise CircuitError("the circuit is empty", "send OpenQASM 2/3 text or a QuantumCircuit")
        facts = self.parser.parse(text, fmt, max_bytes=lim.max_circuit_bytes, max_ops=lim.max_ops)
        if facts.num_qubits > device_qubits:
            raise LimitExceeded(
                f"the circuit has {facts.num_qubits} qubits but the device has {device_qubits}",
                "use fewer qubits or a larger device (see `vqpu devices`)",
            )
        # A circuit already laid out on a 156-qubit device declares them all but
        # uses a few: the simulation cost follows the qubits that are touched.
        if facts.active_qubits > lim.max_qubits:
            raise LimitExceeded(
                f"the circuit acts on {facts.active_qubits} qubits, over the simulation limit of {lim.max_qubits}",
                "use fewer qubits",
            )
        return facts.format, facts.active_qubits

    def check_batch(self, circuit: Any, circuit_format: str | None, circuits: Any, shots: int,
                    lim: Limits) -> list[tuple[str | None, str]]:
        """The (format, text) of each circuit of a submission, with the task-wide bounds checked before any
        parse: how many circuits, their bytes together, shots times circuits. ``circuits`` is a list of
        texts or of ``{"circuit": text, "circuit_format": fmt}``; without it, the one ``circuit``."""
        if circuits is None:
            return [(circuit_format, circuit)]
        if circuit is not None:
            raise InvalidRequest("send either circuit or circuits, not both", "circuits=[...] runs several in one task")
        if isinstance(circuits, (str, bytes)) or not isinstance(circuits, (list, tuple)) or not circuits:
            raise InvalidRequest("circuits must be a non-empty list of circuits", 'e.g. circuits=[qasm_1, qasm_2]')
        if len(circuits) > lim.max_circuits:
            raise LimitExceeded(f"{len(circuits)} circuits in one task is over the limit of {lim.max_circuits}",
                                "split them over several tasks")
        if shots * len(circuits) > lim.max_total_shots:
            raise LimitExceeded(f"{len(circuits)} circuits x {shots} shots = {shots * len(circuits)} shots, over the "
                                f"limit of {lim.max_total_shots} per task", "ask for fewer shots or split the circuits")
        out: list[tuple[str | None, str]] = []
        total = 0
        for i, entry in enumerate(circuits):
            fmt = circuit_format
            if isinstance(entry, dict):
                if set(entry) - {"circuit", "circuit_format"}:
                    raise InvalidRequest(f"circuits[{i}] may hold only circuit and circuit_format", "")
                fmt, entry = entry.get("circuit_format", circuit_format), entry.get("circuit")
            if not isinstance(entry, str) or (fmt is not None and not isinstance(fmt, str)):
                raise InvalidRequest(f"circuits[{i}] must be circuit text (with an optional circuit_format)", "")
            total += len(entry)
            if total > lim.max_task_bytes:
                raise LimitExceeded(f"the task's circuits are over {lim.max_task_bytes} bytes together (the limit)",
                                    "split them over several tasks")
            out.append((fmt, entry))
        return out

    def submit(
        self,
        *,
        owner: str,
        device: str,
        circuit: str | None = None,
        circuit_format: str | None = None,
        shots: int = 1024,
        seed: int | None = None,
        optimization_level: int = 2,
        name: str | None = None,
        snapshot: str | None = None,
        idempotency_key: str | None = None,
        options: dict[str, Any] | None = None,
        limits: Limits | None = None,
        tags: list[str] | None = None,
        circuits: list[Any] | None = None,
    ) -> dict[str, Any]:
        """Validate and enqueue one task; with an idempotency key a retry returns the same task.

        ``circuits`` (instead of ``circuit``) makes one task of many circuits: one claim, one job,
        one runner pass with one Target and one noise model, a result per circuit (``experiments``).

        ``limits`` replaces this control plane's own for this one submission:
        a hub gateway passes the limits of the caller's group."""
        lim = limits or self.limits
        device = device_name(device)
        fields = self.validate(device=device, shots=shots, seed=seed, optimization_level=optimization_level,
                               name=name, tags=tags, limits=lim)
        dev = self._require_device(device)
        k = self.keys(device)
        if idempotency_key is not None and (not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 200):
            raise InvalidRequest("idempotency_key must be 1-200 characters of text", "")
        if snapshot is not None:
            snapshot = self.resolve_snapshot(device, snapshot)
        if idempotency_key:
            existing = self.redis.get(k.idempotency(owner, idempotency_key))
            if existing:
                if self.durability.enabled:  # a retry after NotDurable: the first write must be on replicas now
                    idem = k.idempotency(owner, idempotency_key)
                    self._acknowledged(idem, lambda p: p.expire(idem, IDEMPOTENCY_TTL_S))
                return self.task(existing)
        # Throttles before the parse, so that invalid circuits count too and a loop of them costs
        # no parsing past the limit (submit.lua enforces the queue cap again, atomically).
        if lim.submissions_per_minute > 0:
            self._check_rate(owner, lim.submissions_per_minute)
        if lim.max_queued_per_owner > 0 and int(dev.get(f"queued:{owner}") or 0) >= lim.max_queued_per_owner:
            raise LimitExceeded(f"you already have {lim.max_queued_per_owner} tasks queued on {device} (the limit)",
                                "wait for some to finish")
        opts = run_options.check(options)
        batch = self.check_batch(circuit, circuit_format, circuits, shots, lim)
        parsed = []
        for i, (fmt, text) in enumerate(batch):
            try:
                parsed.append((*self.check_circuit(text, fmt, int(dev.get("num_qubits") or 0), limits=lim), text))
            except VqpuError as exc:
                if circuits is not None:  # which one of many
                    exc.message = f"circuits[{i}]: {exc.message}"
                    exc.args = (exc.message,)
                raise
        fmt, nq, text = parsed[0]
        fields.update(circuit=text, circuit_format=fmt, num_qubits=str(max(p[1] for p in parsed)),
                      options=json.dumps(opts))
        if circuits is not None:
            fields.update(circuits=json.dumps([[f, t] for f, _, t in parsed]), num_circuits=str(len(parsed)))
        task_id = new_task_id(device)
        reply = self._acknowledged(k.device, lambda p: self.scripts.call("submit", k, client=p, **self.submit_args(
            task_id, owner, fields, idempotency_key, snapshot, lim.max_queued_per_owner)))
        status = reply[0]
        if status == "error":
            code, detail = reply[1], reply[2]
            if code == "unknown_device":
                raise UnknownDevice(f"unknown device {device!r}", "see `vqpu devices`")
            if code == "device_draining":
                raise DeviceDraining(f"device {device} is draining and takes no new tasks", "try another device or later")
            if code == "unknown_snapshot":
                raise UnknownSnapshot(f"no snapshot {detail[:12]} on {device}", f"list them with `vqpu device snapshots {device}`")
            if code == "queue_limit":
                raise LimitExceeded(f"you already have {detail} tasks queued on {device} (the limit)", "wait for some to finish")
            raise VqpuError(f"submit failed: {code} {detail}")
        if status == "existing":
            return self.task(reply[1])
        # The script says what it created: the view is built here, without reading the task back
        # (it is the state at submission, 'queued', even if an agent has claimed it since).
        _, _, position, now, seq, vtag, newest, offline_since = reply
        h = {"id": task_id, "owner": owner, "state": TaskState.QUEUED.value, "attempt": "0", "seq": str(seq), "vtag": str(vtag),
             "created_at": str(now), "updated_at": str(now), "pinned_snapshot": snapshot or "", **fields}
        return self._queued_view(h, int(position), int(now), float(newest) if newest else None, offline_since)

    def submit_args(self, task_id: str, owner: str, fields: dict[str, Any], idempotency_key: str | None = None,
                    snapshot: str | None = None, max_queued: int = 0) -> dict[str, Any]:
        """The named arguments of submit.lua (its Spec builds KEYS and ARGV from them; the
        benchmarks call the script alone with them)."""
        return dict(task_id=task_id, owner=owner, fields=json.dumps(fields),
                    idempotency_ttl_s=IDEMPOTENCY_TTL_S if idempotency_key else 0, idempotency_key=idempotency_key,
                    pinned_snapshot=snapshot or "", snapshot_id=snapshot, events_maxlen=self.events_maxlen,
                    max_queued=max_queued)

    def _check_rate(self, owner: str, per_minute: int) -> None:
        """A sliding one-minute window of submissions per owner, across devices."""
        reply = self.scripts.call("rate", None, owner=owner, max_count=per_minute,
                                  window_ms=60_000)
        if reply[0] == "limited":
            wait_s = max(1, -(-int(reply[1]) // 1000))
            raise LimitExceeded(f"you submitted {per_minute} tasks in the last minute (the limit)",
                                f"wait {wait_s} s before submitting again")

    def _task_hash(self, task_id: str) -> tuple[Keys, dict[str, str]]:
        k = self.keys(device_of(task_id))
        h = self.redis.hgetall(k.task(task_id))
        if not h:
            raise TaskNotFound(f"no task {task_id}", "see `vqpu tasks` for your tasks")
        return k, h

    def task(self, task_id: str) -> dict[str, Any]:
        k, h = self._task_hash(task_id)
        if h.get("state") != TaskState.QUEUED:
            return task_view(h)
        # All on the device's own node (a cluster client sends a pipeline's keyless TIME anywhere).
        pipe = node_client(self.redis, k.device).pipeline(transaction=False)
        pipe.zrank(k.pending, task_id)
        pipe.time()
        pipe.zrange(k.agents, -1, -1, withscores=True)
        pipe.hget(k.device, "offline_since")
        rank, (sec, usec), newest, offline_since = pipe.execute()
        return self._queued_view(h, rank + 1 if rank is not None else None, sec * 1000 + usec // 1000,
                                 newest[0][1] if newest else None, offline_since)

    @staticmethod
    def _queued_view(h: dict[str, str], position: int | None, now_ms: int, newest_agent_ms: float | None,
                     offline_since: str | None) -> dict[str, Any]:
        """A queued task's view, with a notice when no agent serves its device (why it is not moving)."""
        view = task_view(h, position)
        if newest_agent_ms is None or newest_agent_ms <= now_ms:
            since = _ms_to_s(offline_since) or _ms_to_s(h.get("created_at"))
            view["notice"] = f"no agent online for {view['device']} since " + time.strftime(
                "%H:%M", time.localtime(since)
            )
        return view

    def owner_of(self, task_id: str) -> str:
        return self._task_hash(task_id)[1].get("owner", "")

    def history(self, task_id: str) -> list[dict[str, Any]]:
        k = self.keys(device_of(task_id))
        return [json.loads(e) for e in self.redis.lrange(k.history(task_id), 0, -1)]

    def result(self, task_id: str) -> dict[str, Any] | None:
        k = self.keys(device_of(task_id))
        data = self.redis.get(k.result(task_id))
        return json.loads(data) if data else None

    def circuit(self, task_id: str) -> tuple[str, str]:
        _, h = self._task_hash(task_id)
        return h.get("circuit_format", "qasm3"), h.get("circuit", "")

    def tasks(self, owner: str, devices: Iterable[str] | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """An owner's most recent tasks across devices, newest first."""
        names = list(devices) if devices is not None else self.device_names()
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.zrevrange(self.keys(name).owner_index(owner), 0, limit - 1, withscores=True)
        ids = sorted(
            ((score, tid) for reply in pipe.execute() for tid, score in reply), reverse=True
        )[:limit]
        pipe = self.redis.pipeline(transaction=False)
        for _, tid in ids:
            k = self.keys(device_of(tid))
            pipe.hgetall(k.task(tid))
            pipe.zrank(k.pending, tid)
        replies = pipe.execute()
        return [
            task_view(replies[2 * i], replies[2 * i + 1] + 1 if replies[2 * i + 1] is not None else None)
            for i in range(len(ids))
            if replies[2 * i]
        ]

    def cancel(self, task_id: str, by: str) -> dict[str, Any]:
        """Cancel a task in any non-final state. Cancelling a final task changes nothing."""
        k = self.keys(device_of(task_id))
        reply = self.scripts.call("cancel", k, task_id=task_id, by=by, events_maxlen=self.events_maxlen)
        if reply[0] == "missing":
            raise TaskNotFound(f"no task {task_id}", "see `vqpu tasks` for your tasks")
        view = self.task(task_id)
        view["cancel"] = {"cancelled": reply[0] == TaskState.CANCELLED, "previous": reply[1]}
        return view

    # ----------------------------------------------------- waiting, events

    def last_event_id(self, device: str) -> str:
        last = self.redis.xrevrange(self.keys(device).events, count=1)
        return last[0][0] if last else "0-0"

    def read_events(self, cursors: dict[str, str], block_ms: int | None, count: int = 500) -> list[tuple[str, str, dict]]:
        """New events after each device's cursor: (device, event id, fields). Updates ``cursors``.

        On a Redis Cluster with several devices, one blocking XREAD per device (``PerDeviceReads``),
        returning when the first has events; the others are read again from the same cursors."""
        if is_cluster(self.redis) and len(cursors) > 1:
            out = self._event_reads.read({d: (c, count) for d, c in cursors.items()}, block_ms)
        else:
            out = self._read_events_one(None, (cursors, count), block_ms)
        for device, eid, _ in out:
            cursors[device] = eid
        return out

    def _read_events_one(self, device: str | None, arg: tuple, block_ms: int | None) -> list[tuple[str, str, dict]]:
        cursor, count = arg
        cursors = {device: cursor} if device is not None else cursor
        streams = {self.keys(d).events: c for d, c in cursors.items()}
        reply = self.redis.xread(streams, count=count, block=block_ms)
        return [(stream.split("{", 1)[1].split("}", 1)[0], eid, fields)
                for stream, entries in reply or [] for eid, fields in entries]

    def watch(self, task_id: str, timeout: float | None = None,
              on_idle: Callable[[], None] | None = None) -> Iterator[dict[str, Any]]:
        """Yield the task's view now and after each of its events, until it is final.

        Blocks on the events stream (no polling). Raises ResultTimeout."""
        device = device_of(task_id)
        cursors = {device: self.last_event_id(device)}

        def changed(seconds: float) -> bool:
            events = self.read_events(cursors, max(1, int(min(seconds, 2.0) * 1000)))
            return not events or any(f.get("task") == task_id for _, _, f in events)

        return follow(task_id, lambda: self.task(task_id), changed, timeout, f"wait longer with `vqpu wait {task_id}`",
                      on_idle)

    def wait(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        view: dict[str, Any] = {}
        for view in self.watch(task_id, timeout):
            pass
        return view

    # ----------------------------------------------------- agent's side

    def ensure_group(self, device: str) -> None:
        try:
            self.redis.xgroup_create(self.keys(device).queue, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read_work(self, devices: list[str], consumer: str, count: int, block_ms: int) -> list[tuple[str, str, str]]:
        """Block for new work pointers: (device, stream entry id, task id).

        ``count`` is per stream (XREADGROUP's), so several devices may deliver more pointers than
        the caller has room for: what it does not take stays in this consumer's pending list
        (the agent keeps it for later; XAUTOCLAIM hands it on if the agent dies). On a Redis
        Cluster, one blocking read per device (``PerDeviceReads``), none of them lost."""
        if is_cluster(self.redis) and len(devices) > 1:
            return self._work_reads.read({d: (consumer, count) for d in devices}, block_ms)
        return self._read_work_one(None, (devices, consumer, count), block_ms)

    def _read_work_one(self, device: str | None, arg: tuple, block_ms: int) -> list[tuple[str, str, str]]:
        if device is not None:
            consumer, count = arg
            devices = [device]
        else:
            devices, consumer, count = arg
        streams = {self.keys(d).queue: ">" for d in devices}
        reply = self.redis.xreadgroup(GROUP, consumer, streams, count=count, block=block_ms)
        return [(stream.split("{", 1)[1].split("}", 1)[0], eid, fields.get("task", ""))
                for stream, entries in reply or [] for eid, fields in entries]

    # ------------------------------------------------- acknowledged writes

    def _acknowledged(self, route_key: str, queue: Callable[[Any], Any]) -> Any:
        """Run one state change and return its reply once it is as durable as ``self.durability`` asks.

        ``queue(client)`` issues the change (a script call) on ``client``; without durability it
        runs as it always did. With it, the change and WAIT (or WAITAOF) go down one pipeline on
        the key's own node, because WAIT counts the replicas that have this connection's writes.
        Fewer than asked within the timeout raises NotDurable: the write is on the master but not
        acknowledged (a client retries with its idempotency key; a fenced script refuses a replay)."""
        d = self.durability
        if not d.enabled:
            return queue(None)
        if d.aof:
            self._check_waitaof(route_key)
        for attempt in range(3):
            pipe = node_client(self.redis, route_key).pipeline(transaction=False)
            queue(pipe)
            if d.aof:
                pipe.execute_command("WAITAOF", 1, d.replicas, d.timeout_ms)
            else:
                pipe.execute_command("WAIT", d.replicas, d.timeout_ms)
            try:
                reply, acked = pipe.execute()
            except redis.exceptions.NoScriptError:
                # A promoted master lacks our scripts (Redis 7.0 does not replicate SCRIPT LOAD);
                # the script did not run, so load them and run it again.
                self.scripts.load_all()
                continue
            except (redis.exceptions.MovedError, redis.ConnectionError):
                # The slot's master moved (a cluster failover) before the change ran, or the node is gone.
                if not is_cluster(self.redis) or attempt == 2:
                    raise
                self.redis.nodes_manager.initialize()  # type: ignore[attr-defined]
                continue
            local, replicas = (acked[0], acked[1]) if d.aof else (1, acked)
            if replicas < d.replicas or local < 1:
                what = f"{replicas} of {d.replicas} replicas" + (", not fsynced to the AOF" if local < 1 else "")
                raise NotDurable(f"the control plane confirmed the write on only {what} within {d.timeout_ms} ms",
                                 "retry (with the same idempotency key); if it persists, a replica is down or "
                                 "lagging: see `redis-cli info replication`")
            return reply
        raise NotDurable("the control plane's master kept moving during the write", "retry in a moment")

    def _check_waitaof(self, route_key: str) -> None:
        """WAITAOF exists from Redis 7.2: on an older server ``?wait_aof=1`` is a readable error, before any write."""
        if self._waitaof_checked:
            return
        try:
            node_client(self.redis, route_key).execute_command("WAITAOF", 0, 0, 1)
        except redis.ResponseError as exc:
            if "unknown command" in str(exc).lower():
                raise InvalidRequest("this Redis has no WAITAOF (Redis 7.2+), so ?wait_aof=1 cannot be honoured",
                                     "drop wait_aof from the URL (and set appendfsync always), or upgrade Redis") \
                    from None
            raise
        self._waitaof_checked = True

    def stale_work(self, device: str, consumer: str, min_idle_ms: int, count: int = 100) -> list[tuple[str, str, str]]:
        """Pointers delivered to a consumer that died before claiming them."""
        reply = self.redis.xautoclaim(self.keys(device).queue, GROUP, consumer, min_idle_ms, "0-0", count=count)
        return [(device, eid, fields.get("task", "")) for eid, fields in reply[1] if fields]

    def claim(self, device: str, task_id: str, agent: str, lease_ms: int, entry_id: str = "",
              consume_on_skip: bool = True) -> Claim | None:
        """Claim one named task (and consume the pointer that woke us)."""
        return self._claim_first(device, [task_id], agent, lease_ms, entry_id, consume_on_skip)

    def _claim_first(self, device: str, candidates: list[str], agent: str, lease_ms: int, entry_id: str,
                     consume_on_skip: bool) -> Claim | None:
        # A fresh nonce per call: the token (attempt-nonce) is then unique to this claim even
        # when a failover rolled the attempt counter back (see claim.lua).
        nonce = secrets.token_hex(8)
        reply = self._acknowledged(self.keys(device).device, lambda p: self.scripts.call(
            "claim", self.keys(device), client=p, agent=agent, lease_ms=lease_ms, group=GROUP, entry_id=entry_id,
            events_maxlen=self.events_maxlen, consume_on_skip=int(consume_on_skip), nonce=nonce,
            each=[{"task_id": t} for t in candidates]))
        if reply[0] != TaskState.CLAIMED:
            return None
        return Claim(reply[1], device, reply[3], reply[4], _decode_pairs(reply[5:]), attempt=int(reply[2]))

    def claim_next(self, device: str, agent: str, lease_ms: int, entry_id: str, tries: int = 8,
                   window: int = CLAIM_WINDOW) -> Claim | None:
        """Claim the task at the head of the queue, whichever task the pointer named.

        Pointers only wake agents up; the order is the pending set's (fair share
        across owners, see submit.lua), so a task returned by the reaper goes to
        the front again, and the queue position a user sees is the real one. The
        script gets the first ``window`` ids and takes the first still queued, so
        agents racing for the head do not all retry for one task; losing every
        candidate retries with the new head. The pointer is consumed only by a
        successful claim, or when the queue is empty (a cancelled task's
        leftover pointer)."""
        k = self.keys(device)
        for _ in range(tries):
            head = self.redis.zrange(k.pending, 0, window - 1)
            if not head:
                if not entry_id:
                    return None
                pipe = self.redis.pipeline(transaction=False)
                pipe.xack(k.queue, GROUP, entry_id)
                pipe.xdel(k.queue, entry_id)
                pipe.execute()
                return None
            claim = self._claim_first(device, head, agent, lease_ms, entry_id, consume_on_skip=False)
            if claim is not None:
                return claim
        return None  # heavy contention: the pointer stays pending and is redelivered later

    def progress(self, task_id: str, agent: str, token: str, state: str = "", detail: dict | None = None,
                 lease_ms: int = 30_000, client: Any = None) -> Any:
        """A fenced heartbeat (state '') or move to scheduled/running. Returns the script's verdict."""
        return self.scripts.call("progress", self.keys(device_of(task_id)), client=client, task_id=task_id,
                                 agent=agent, token=token, state=state, detail=json.dumps(detail or {}),
                                 lease_ms=lease_ms, events_maxlen=self.events_maxlen)

    def heartbeat(self, held: list[tuple[str, str]], agent: str, lease_ms: int) -> dict[str, str]:
        """Renew every held lease: one renew script call per device (on the node that serves it);
        returns task id -> 'ok' / 'cancelled' / 'final' / 'fenced'."""
        by_device: dict[str, list[tuple[str, str]]] = {}
        for task_id, token in held:
            by_device.setdefault(device_of(task_id), []).append((task_id, token))
        out: dict[str, str] = {}
        for device, leases in by_device.items():
            verdicts = self.scripts.call("renew", self.keys(device), agent=agent, lease_ms=lease_ms,
                                         events_maxlen=self.events_maxlen,
                                         each=[{"task_id": t, "token": tok} for t, tok in leases])
            out.update({tid: v for (tid, _), v in zip(leases, verdicts)})
        return out

    def finish(self, task_id: str, agent: str, token: str, outcome: str, *, result: dict | None = None,
               reason: str = "", error: str = "") -> str:
        """Complete or fail an attempt. Returns 'ok', 'cancelled' or 'fenced'."""
        k = self.keys(device_of(task_id))
        summary: dict[str, Any] = {}
        if result is not None:
            summary = {
                "snapshot": result.get("snapshot_id"),
                "timings": result.get("timings"),
                "simulator": (result.get("simulator") or {}).get("device"),
            }
        reply = self._acknowledged(k.device, lambda p: self.scripts.call(
            "finish", k, client=p, task_id=task_id, agent=agent, token=token, outcome=outcome,
            result=json.dumps(result) if result is not None else "", reason=reason,
            error=error[:1000], summary=json.dumps(summary), events_maxlen=self.events_maxlen))
        return reply[0]

    def held_by(self, device: str, agent: str) -> list[Claim]:
        """The tasks an agent id holds now (for an agent restarting to re-attach to its jobs)."""
        k = self.keys(device)
        ids = self.redis.zrange(k.leases, 0, -1)
        pipe = self.redis.pipeline(transaction=False)
        for tid in ids:
            pipe.hgetall(k.task(tid))
        out = []
        for tid, h in zip(ids, pipe.execute()):
            if h and h.get("agent") == agent and h.get("state") in HELD_STATES:
                out.append(Claim(tid, device, h.get("token", ""), h.get("snapshot", ""), h, attempt=int(h["attempt"])))
        return out

    def expired(self, device: str) -> list[str]:
        now_ms = int(self.server_time(device) * 1000)
        return self.redis.zrangebyscore(self.keys(device).leases, "-inf", now_ms)

    def recover(self, device: str, *, max_attempts: int, by: str, task_ids: Iterable[str] | None = None,
                force: bool = False) -> list[tuple[str, str, int]]:
        """Return expired tasks to the queue (or fail them as lost): (task, verdict, attempt)."""
        k = self.keys(device)
        out = []
        for task_id in list(task_ids) if task_ids is not None else self.expired(device):
            reply = self.scripts.call("recover", k, task_id=task_id, max_attempts=max_attempts, by=by,
                                      events_maxlen=self.events_maxlen, force="1" if force else "0")
            out.append((task_id, reply[0], int(reply[1]) if isinstance(reply[1], int) else 0))
        return out

    def presence(self, device: str, agent: str, ttl_ms: int, problem: str = "") -> int:
        """Announce an agent alive for ``ttl_ms`` (0: leaving); ``problem`` non-empty says it is
        unhealthy and why (the device view shows it). Returns the number of live agents."""
        k = self.keys(device)
        return int(self.scripts.call("presence", k, agent=agent, ttl_ms=ttl_ms, events_maxlen=self.events_maxlen,
                                     problem=problem[:300]))

    def release(self, task_id: str, agent: str, token: str, problem: str, *, max_handbacks: int) -> tuple[str, Any]:
        """Hand a held task back to the queue for a fault of the agent's own, without using an attempt.

        Fenced like ``finish``; keeps the task's fair-share place; after
        ``max_handbacks`` hand-backs the task fails with reason ``agent_fault``.
        Returns ('requeued' | 'failed', hand-backs) or ('cancelled' | 'final' | 'fenced', state)."""
        k = self.keys(device_of(task_id))
        reply = self.scripts.call("release", k, task_id=task_id, agent=agent, token=token,
                                  max_handbacks=max_handbacks, problem=problem[:1000], events_maxlen=self.events_maxlen)
        return reply[0], reply[1]

    def stats(self, device: str) -> DeviceStats:
        """The device's cumulative task counters and phase latency histograms (see jupyter_vqpu/core/stats.py)."""
        return parse_stats(self.redis.hgetall(self.keys(check_device_name(device)).stats))
