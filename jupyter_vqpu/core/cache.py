"""The one bounded, thread-safe memo the long-lived processes share.

A warm worker sees the same snapshot, Target and noise model many times; each
is worth keeping, none may grow without bound, and the worker's executor threads
and the pilot's children ask concurrently. ``cachetools`` does the eviction
(least recently used, optionally bounded by a size function such as bytes); this
adds the lock and counts hits, so a result can say what it reused.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable, Mapping
from typing import Any, Generic, TypeVar

from cachetools import LRUCache

V = TypeVar("V")

#: The knob: megabytes a warm worker may keep in its caches (env, inherited by every job).
CACHE_ENV = "VQPU_CACHE_MB"
DEFAULT_CACHE_MB = 768
#: How the budget is shared between the kinds of cached object. Aer's model of a whole 156-qubit device
#: is ~300 MB resident (runner noise.py), so by default one whole device fits, or several partly used.
SHARES = {"device_noise": 0.6, "noise_models": 0.1, "targets": 0.25, "snapshots": 0.05}


def cache_bytes(kind: str, environ: Mapping[str, str] | None = None) -> int:
    """The byte bound of one cache ``kind`` (a key of ``SHARES``) from ``VQPU_CACHE_MB``."""
    raw = (os.environ if environ is None else environ).get(CACHE_ENV, "").strip()
    try:
        total_mb = float(raw) if raw else DEFAULT_CACHE_MB
    except ValueError:
        raise ValueError(f"{CACHE_ENV}={raw!r} is not a number of megabytes (e.g. {CACHE_ENV}=512)") from None
    if total_mb <= 0:
        raise ValueError(f"{CACHE_ENV} must be positive, got {raw!r}")
    return int(total_mb * 2**20 * SHARES[kind])


def json_bytes(obj: Any) -> int:
    """Size estimate of a JSON-shaped Python object (dicts, lists, floats, strings) in memory.

    A float or small int in a list costs a pointer plus its object (~32 B), a dict
    entry ~100 B; the estimate walks the structure once, linear in its size."""
    stack, total = [obj], 0
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            total += 64 + 100 * len(o)
            stack.extend(o.values())
        elif isinstance(o, (list, tuple)):
            total += 56 + 8 * len(o)
            stack.extend(o)
        elif isinstance(o, str):
            total += 49 + len(o)
        else:
            total += 32
    return total


class Memo(Generic[V]):
    """``get(key, make)``: the cached value, or ``make()``'s, remembered. ``make`` runs outside the lock,
    so a slow build never blocks readers of other keys (two racing builders both build; one wins)."""

    def __init__(self, maxsize: float, getsizeof: Callable[[V], float] | None = None) -> None:
        self._cache: LRUCache = LRUCache(maxsize, getsizeof=getsizeof)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, make: Callable[[], V]) -> tuple[V, bool]:
        """(value, whether it was already cached)."""
        with self._lock:
            try:
                value = self._cache[key]
            except KeyError:
                pass
            else:
                self.hits += 1
                return value, True
        value = make()
        with self._lock:
            self.misses += 1
            try:
                self._cache[key] = value
            except ValueError:  # larger than the whole cache: use it, do not keep it
                pass
        return value, False

    def put(self, key: Hashable, value: V) -> None:
        """Store ``value`` again: a value that grew in place is re-measured (and may evict others)."""
        with self._lock:
            try:
                self._cache[key] = value
            except ValueError:  # now larger than the whole cache
                self._cache.pop(key, None)

    @property
    def currsize(self) -> float:
        """What the cache holds now, in ``getsizeof`` units (bytes for a byte-bounded cache)."""
        with self._lock:
            return self._cache.currsize

    @property
    def maxsize(self) -> float:
        return self._cache.maxsize

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)
