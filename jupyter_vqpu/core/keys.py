"""The Redis key layout.

Every key that one script touches lives under the device's hash tag
(``vqpu:{fez}:...``), so each device maps to one Redis Cluster slot and
every script runs unchanged on a cluster. The only key outside a tag is the
device registry set, written by single-key commands.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time

from jupyter_vqpu.core.errors import InvalidRequest, TaskNotFound

DEVICE_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
TASK_ID_RE = re.compile(r"^([a-z][a-z0-9_-]{0,31})\.([0-9a-z]{8,40})$")
SNAPSHOT_ID_RE = re.compile(r"^[0-9a-f]{64}$")
_B32 = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford, lower case


#: A task id or a prefix of one: the device, a dot, at least 4 of the id's characters.
TASK_REF_RE = re.compile(r"^([a-z][a-z0-9_-]{0,31})\.([0-9a-z]{4,40})$")
#: How many characters follow the dot in a whole task id (see new_task_id).
TASK_ID_CHARS = 16


def check_device_name(name: str) -> str:
    if not isinstance(name, str) or not DEVICE_NAME_RE.match(name):
        raise InvalidRequest(
            f"invalid device name {name!r}",
            "use lower-case letters, digits, '-' and '_' (e.g. fez)",
        )
    return name


def device_name(name: str) -> str:
    """A device name as a person types it (``Fez``, `` fez ``) -> the registered form (``fez``), checked.

    Device names are lower case; every edge that takes a name from a user goes
    through this, so ``%%vqpu Fez`` and ``--device FEZ`` find ``fez``."""
    return check_device_name(name.strip().lower() if isinstance(name, str) else name)


def new_task_id(device: str) -> str:
    """``fez.<time-ordered id>``: the device is part of the id, so any task's
    keys can be computed from its id alone (no cross-slot index needed)."""
    n = (time.time_ns() // 1_000_000) << 40 | secrets.randbits(40)
    out = []
    for _ in range(16):
        out.append(_B32[n & 31])
        n >>= 5
    return f"{device}.{''.join(reversed(out))}"


def device_of(task_id: str) -> str:
    m = TASK_ID_RE.match(task_id or "")
    if not m:
        raise TaskNotFound(f"no task {task_id!r}", "task ids look like fez.0k3j9x2m1q7abcde; see `vqpu tasks`")
    return m.group(1)


class Keys:
    """Key names for one device."""

    registry = "vqpu:devices"

    def __init__(self, device: str, prefix: str = "vqpu") -> None:
        self.device_name = device
        base = f"{prefix}:{{{device}}}"
        self.base = base
        self.device = f"{base}:device"
        self.queue = f"{base}:queue"
        self.pending = f"{base}:pending"
        self.leases = f"{base}:leases"
        self.events = f"{base}:events"
        self.snapshots = f"{base}:snapshots"
        self.agents = f"{base}:agents"
        # Live agents that announced a problem (agent id -> why): written by presence.lua only.
        self.agent_health = f"{base}:agent_health"
        # Cumulative counters and latency histograms, written by the end-of-task scripts
        # and read by server_ext/jupyter_vqpu_server/collector.py: in Redis, so every service replica reports the same.
        self.stats = f"{base}:stats"

    def task(self, task_id: str) -> str:
        return f"{self.base}:task:{task_id}"

    def history(self, task_id: str) -> str:
        return f"{self.base}:task:{task_id}:history"

    def result(self, task_id: str) -> str:
        return f"{self.base}:task:{task_id}:result"

    def snapshot(self, snapshot_id: str) -> str:
        return f"{self.base}:snapshot:{snapshot_id}"

    def owner_index(self, owner: str) -> str:
        return f"{self.base}:owner:{owner}"

    @staticmethod
    def rate(owner: str) -> str:
        """An owner's submission-rate window: per user, not per device, so under its own tag."""
        digest = hashlib.sha256(owner.encode()).hexdigest()[:32]
        return f"vqpu:rate:{{{digest}}}"

    def idempotency(self, owner: str, key: str) -> str:
        # Hashed so that neither owner nor key can smuggle a separator.
        digest = hashlib.sha256(f"{owner}\0{key}".encode()).hexdigest()[:32]
        return f"{self.base}:idem:{digest}"
