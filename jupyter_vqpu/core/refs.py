"""The ids people type, resolved to the ids the control plane stores.

People read 12-digit snapshot ids and version numbers (``vqpu devices``, the
widget), and copy the start of a task id. Wherever a snapshot or a task is
named, these forms are accepted:

- a snapshot: the full 64-hex id; any unique prefix of at least 8 hex digits;
  a version ``v3`` (or ``3``); either of them after the device, ``fez@v3`` or
  ``fez@635e96f4``;
- a task: the full id ``fez.m86vxdgxz2csythj``, or ``fez.`` plus a unique
  prefix of at least 4 of its characters, among the asking owner's tasks.

Every lookup stays under one device's hash tag (the snapshot index
``vqpu:{D}:snapshots`` holds id -> version, the owner index
``vqpu:{D}:owner:<user>`` the owner's task ids), so nothing scans the keyspace
and it all works unchanged on Redis Cluster. An ambiguous prefix is one line
that lists the candidates.
"""

from __future__ import annotations

import re

import redis

from jupyter_vqpu.core.errors import AmbiguousReference, InvalidRequest, TaskNotFound, UnknownSnapshot
from jupyter_vqpu.core.keys import SNAPSHOT_ID_RE, TASK_ID_CHARS, TASK_REF_RE, Keys, device_name

MIN_SNAPSHOT_PREFIX = 8
_SNAPSHOT_REF = re.compile(r"^(?:(?P<device>[A-Za-z][A-Za-z0-9_-]{0,31})@)?"
                           r"(?:[vV](?P<version>\d{1,9})|(?P<bare>\d{1,6})|(?P<hex>[0-9a-fA-F]{8,64}))$")
#: Candidates named in an ambiguity message.
_SHOW = 5
#: Entries one ZSCAN round trip looks at (an index of a few thousand is a handful of trips).
_SCAN_COUNT = 1000


def split_snapshot_ref(ref: str, device: str) -> tuple[str, str]:
    """``fez@v3`` -> (``fez``, ``v3``); a device in the reference must be the one asked for."""
    if not isinstance(ref, str) or len(ref) > 100:
        raise UnknownSnapshot(f"invalid snapshot reference {str(ref)[:40]!r}", _REF_HINT)
    m = _SNAPSHOT_REF.match(ref.strip())
    if not m:
        raise UnknownSnapshot(f"invalid snapshot reference {ref[:70]!r}", _REF_HINT)
    named = m.group("device")
    if named is not None and device_name(named) != device:
        raise InvalidRequest(f"snapshot {ref!r} is a snapshot of {device_name(named)}, but the task is for {device}",
                             f"name a snapshot of {device}, or submit to {device_name(named)}")
    return device, ref.strip().split("@", 1)[-1]


_REF_HINT = "give a snapshot id (8 or more hex digits), a version such as v3, or fez@v3; see `vqpu device snapshots`"


def resolve_snapshot(r: redis.Redis, keys: Keys, ref: str) -> str:
    """The full snapshot id ``ref`` names on ``keys``' device. Raises UnknownSnapshot (one line)."""
    device = keys.device_name
    _, tail = split_snapshot_ref(ref, device)
    m = _SNAPSHOT_REF.match(tail)
    assert m is not None
    version = m.group("version") or m.group("bare")
    if version is not None:
        found = r.zrangebyscore(keys.snapshots, int(version), int(version))
        if not found:
            newest = r.zrange(keys.snapshots, -1, -1, withscores=True)
            top = f"; the newest is v{int(newest[0][1])}" if newest else ""
            raise UnknownSnapshot(f"{device} has no snapshot version {int(version)}{top}",
                                  f"list them with `vqpu device snapshots {device}`")
        return found[0]
    hexid = tail.lower()
    if SNAPSHOT_ID_RE.match(hexid):
        return hexid
    # The index holds one entry per published version: a handful, read in pieces by ZSCAN.
    matches = sorted({sid for sid, _ in r.zscan_iter(keys.snapshots, match=f"{hexid}*", count=_SCAN_COUNT)})
    if not matches:
        raise UnknownSnapshot(f"{device} has no snapshot starting with {hexid}",
                              f"list them with `vqpu device snapshots {device}`")
    if len(matches) > 1:
        shown = ", ".join(m[:12] for m in matches[:_SHOW]) + (" ..." if len(matches) > _SHOW else "")
        raise AmbiguousReference(f"snapshot prefix {hexid} is ambiguous on {device}: {shown}",
                              "give more digits, or a version such as v3")
    return matches[0]


def resolve_task(r: redis.Redis, keys_of, ref: str, owner: str | None) -> str:
    """The full task id ``ref`` names. A whole id is returned as it is (whoever owns it); a prefix
    is looked up among ``owner``'s tasks on the device it names. Raises TaskNotFound (one line)."""
    text = ref.strip() if isinstance(ref, str) else ""
    m = TASK_REF_RE.match(text.lower()) if len(text) <= 80 else None
    if not m:
        raise TaskNotFound(f"no task {str(ref)[:60]!r}", "task ids look like fez.m86vxdgxz2csythj; see `vqpu tasks`")
    device, suffix = m.groups()
    text = f"{device}.{suffix}"
    if len(suffix) >= TASK_ID_CHARS or owner is None:
        return text
    keys = keys_of(device)
    if r.exists(keys.task(text)):
        return text
    # Task ids are [0-9a-z] after the device: no glob characters reach MATCH.
    matches = sorted({tid for tid, _ in r.zscan_iter(keys.owner_index(owner), match=f"{text}*", count=_SCAN_COUNT)})
    if not matches:
        raise TaskNotFound(f"no task {text}", "nor any of yours that starts with it; see `vqpu tasks` for your tasks")
    if len(matches) > 1:
        shown = ", ".join(matches[:_SHOW]) + (" ..." if len(matches) > _SHOW else "")
        raise AmbiguousReference(f"task prefix {text} is ambiguous: {shown}", "give more characters of the id")
    return matches[0]
