"""The one bounded, thread-safe memo the long-lived processes share.

A warm worker sees the same snapshot, Target and noise model many times; each
is worth keeping, none may grow without bound, and the worker's executor threads
and the pilot's children ask concurrently. ``cachetools`` does the eviction
(least recently used, optionally bounded by a size function such as bytes); this
adds the lock and counts hits, so a result can say what it reused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from cachetools import LRUCache

V = TypeVar("V")


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
