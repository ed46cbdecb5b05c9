"""The calling convention of each control-plane script: its KEYS and ARGV, by name and in order.

A Lua script reads its keys and arguments by position, so the order is a
contract between one ``lua/*.lua`` file and every Python call site. It is
written down once, here, and checked against each file's ``-- KEYS[n] = name``
/ ``-- ARGV[n] = name`` header by tests/unit/test_script_specs.py, so a slot
added, removed or swapped on one side fails a test instead of silently writing
the wrong key. Call sites name what they pass (``task_id=..., agent=...``) and
never assemble a list themselves.

Keys are computed from a device's :class:`~jupyter_vqpu.core.keys.Keys` and the
named arguments (``task`` needs ``task_id``); an *optional* key is present
only when its argument is given, and the optional keys after it move up one
slot when it is absent (the script says how it finds them): no slot is ever
filled with a dummy key. A *repeated* group (claim's candidates) follows the
fixed slots once per item.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jupyter_vqpu.core.keys import Keys

#: How a key slot's name becomes a key: from the device's Keys and the call's named arguments.
#: A resolver returns None when the key is absent (only allowed for an optional slot).
KEY_OF: dict[str, Callable[[Any, Mapping[str, Any]], str | None]] = {
    "task": lambda k, a: k.task(a["task_id"]),
    "history": lambda k, a: k.history(a["task_id"]),
    "result": lambda k, a: k.result(a["task_id"]),
    "events": lambda k, a: k.events,
    "device": lambda k, a: k.device,
    "queue": lambda k, a: k.queue,
    "pending": lambda k, a: k.pending,
    "leases": lambda k, a: k.leases,
    "stats": lambda k, a: k.stats,
    "agents": lambda k, a: k.agents,
    "agent_health": lambda k, a: k.agent_health,
    "snapshots": lambda k, a: k.snapshots,
    "snapshot": lambda k, a: k.snapshot(a["snapshot_id"]) if a.get("snapshot_id") else None,
    "owner_index": lambda k, a: k.owner_index(a["owner"]),
    "idempotency": lambda k, a: k.idempotency(a["owner"], a["idempotency_key"]) if a.get("idempotency_key") else None,
    "rate": lambda k, a: Keys.rate(a["owner"]),
}
#: Named arguments that only choose keys (they are not ARGV of any script).
KEY_ONLY_ARGS = frozenset({"idempotency_key", "snapshot_id"})


@dataclass(frozen=True)
class Spec:
    """One script's KEYS and ARGV slots, in order.

    ``each_keys`` / ``each_args``: a group repeated once per item of ``each``
    after the fixed slots (KEYS[len(keys) + g*i + j], ARGV[len(args) + i])."""

    name: str
    keys: tuple[str, ...]
    args: tuple[str, ...]
    optional: frozenset[str] = frozenset()
    each_keys: tuple[str, ...] = ()
    each_args: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [n for n in (*self.keys, *self.each_keys) if n not in KEY_OF]
        if unknown:
            raise ValueError(f"{self.name}: no resolver for key slot(s) {unknown}")
        if not self.optional <= set(self.keys):
            raise ValueError(f"{self.name}: optional slots must be fixed key slots")
        first_optional = min((self.keys.index(n) for n in self.optional), default=len(self.keys))
        if any(n not in self.optional for n in self.keys[first_optional:]):
            raise ValueError(f"{self.name}: optional key slots must come last")

    def build(self, k: Keys | None, *, each: Iterable[Mapping[str, Any]] = (), **named: Any) -> tuple[list[str], list[Any]]:
        """(KEYS, ARGV) for one call: every ARGV slot by name, keys computed from ``k`` and the names
        (``k`` None for a script whose keys belong to no device: rate).

        Raises TypeError for a missing or unknown name, so a call site that drifts from the
        script fails at once rather than shifting every later slot."""
        named = {**self.defaults, **named}
        allowed = set(self.args) | KEY_ONLY_ARGS | {"task_id", "owner"}
        extra = set(named) - allowed
        if extra:
            raise TypeError(f"{self.name}: unknown argument(s) {sorted(extra)}")
        missing = [n for n in self.args if n not in named]
        if missing:
            raise TypeError(f"{self.name}: missing argument(s) {missing}")
        keys = []
        for slot in self.keys:
            key = KEY_OF[slot](k, named)
            if key is None:
                if slot not in self.optional:
                    raise TypeError(f"{self.name}: key {slot!r} needs its argument")
                continue
            keys.append(key)
        args = [named[n] for n in self.args]
        items = list(each)
        if items and not (self.each_keys or self.each_args):
            raise TypeError(f"{self.name}: takes no repeated group")
        for item in items:
            keys += [KEY_OF[slot](k, item) for slot in self.each_keys]
            args += [item[n] for n in self.each_args]
        return keys, args


SPECS: dict[str, Spec] = {s.name: s for s in (
    Spec("submit",
         keys=("task", "history", "events", "device", "queue", "pending", "owner_index", "agents",
               "idempotency", "snapshot"),
         optional=frozenset({"idempotency", "snapshot"}),
         args=("task_id", "owner", "fields", "idempotency_ttl_s", "pinned_snapshot", "events_maxlen",
               "max_queued")),
    Spec("claim",
         keys=("events", "device", "pending", "leases", "queue"),
         args=("agent", "lease_ms", "group", "entry_id", "events_maxlen", "consume_on_skip", "nonce"),
         each_keys=("task", "history"), each_args=("task_id",)),
    Spec("progress",
         keys=("task", "history", "events", "leases"),
         args=("task_id", "agent", "token", "state", "detail", "lease_ms", "events_maxlen")),
    Spec("renew",
         keys=("events", "leases"),
         args=("agent", "lease_ms", "events_maxlen"),
         each_keys=("task", "history"), each_args=("task_id", "token")),
    Spec("finish",
         keys=("task", "history", "events", "leases", "result", "stats"),
         args=("task_id", "agent", "token", "outcome", "result", "reason", "error", "summary",
               "events_maxlen")),
    Spec("release",
         keys=("task", "history", "events", "leases", "pending", "queue", "device", "stats"),
         args=("task_id", "agent", "token", "max_handbacks", "problem", "events_maxlen")),
    Spec("cancel",
         keys=("task", "history", "events", "leases", "pending", "device", "stats"),
         args=("task_id", "by", "events_maxlen")),
    Spec("recover",
         keys=("task", "history", "events", "leases", "pending", "queue", "device", "stats"),
         args=("task_id", "max_attempts", "by", "events_maxlen", "force")),
    Spec("publish",
         keys=("device", "snapshot", "snapshots", "events"),
         args=("device_name", "snapshot_id", "data", "version", "expected_version", "num_qubits",
               "events_maxlen", "only_if_new")),
    Spec("presence",
         keys=("agents", "events", "device", "agent_health"),
         args=("agent", "ttl_ms", "events_maxlen", "problem")),
    Spec("rate",
         keys=("rate",),
         args=("max_count", "window_ms")),
)}
