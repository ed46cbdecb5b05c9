"""One blocking stream read per device, for clients that cannot read many streams in one call.

On a Redis Cluster every device is its own hash slot, so one XREADGROUP/XREAD over
several devices' streams is a CROSSSLOT error. ``PerDeviceReads`` issues one blocking
read per device in its own thread and returns as soon as any of them has entries.

- ``consuming=True`` (XREADGROUP: a delivered pointer is in this consumer's pending list):
  a read still blocking when ``read`` returns is not abandoned; it stays in flight and
  its entries are returned by the next ``read``, so no delivered pointer is dropped,
  and no device's read is issued twice at once. One caller (the agent's main loop).
- ``consuming=False`` (XREAD after a cursor: reading consumes nothing): reads still
  blocking are left to finish on their own, their entries unused, since the caller's
  unchanged cursor reads them again next time. Any number of concurrent callers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

log = logging.getLogger("vqpu.streams")


class PerDeviceReads:
    """Blocking reads of many devices' streams, one thread per device (see the module docstring).

    ``read_one(device, arg, block_ms)`` performs one device's blocking read and returns a list."""

    def __init__(self, read_one: Callable[[str, Any, int], list], name: str = "vqpu-read", *,
                 consuming: bool = True, max_threads: int = 64) -> None:
        self._read_one = read_one
        self._consuming = consuming
        # Threads start as reads need them; each blocks at most block_ms on its own connection.
        self._pool = ThreadPoolExecutor(max_threads, thread_name_prefix=name)
        self._inflight: dict[str, Future] = {}

    def read(self, args: dict[str, Any], block_ms: int | None) -> list:
        """Entries from whichever devices have some, waiting up to ``block_ms`` for the first.

        ``args``: device -> its read argument (a cursor, a count); a device whose read is
        still in flight keeps the argument it was issued with. An error of one device's read
        is raised only when no other device returned entries (the read is issued again next time)."""
        inflight = self._inflight if self._consuming else {}
        for device, arg in args.items():
            if device not in inflight:
                inflight[device] = self._pool.submit(self._read_one, device, arg, block_ms)
        futures = [inflight[d] for d in args if d in inflight]
        # The reads block server-side for block_ms; allow for the round trip on a loaded machine.
        wait(futures, timeout=(block_ms / 1000 + 5) if block_ms is not None else None,
             return_when=FIRST_COMPLETED if block_ms else ALL_COMPLETED)  # non-blocking: every device
        out: list = []
        error: BaseException | None = None
        for device in list(inflight):
            future = inflight[device]
            if not future.done():
                continue
            del inflight[device]
            try:
                out.extend(future.result())
            except Exception as exc:  # noqa: BLE001 - reported below, once
                error = error or exc
        if error is not None:
            if not out:
                raise error
            log.warning("one device's stream read failed (%s); the others' entries are kept", error)
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
