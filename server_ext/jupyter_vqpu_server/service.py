"""The vQPU service behind the HTTP API: ControlPlane plus who-may-see-what.

Handlers stay thin: they hand the authenticated ``Caller`` (see caller.py) and
the request's data to ``VqpuService`` and serialise what comes back. Everything
about ownership lives here, so the rules ("a user sees and touches only their
own tasks, unless they oversee the owner; the owner of a new task is always the
caller; only an operator drains a device or publishes a snapshot") are written
once, for the server extension and the hub gateway alike.

The ControlPlane speaks blocking redis-py. ``VqpuService.run`` moves every
call onto a small dedicated thread pool so that a slow Redis never stalls the
Jupyter server's event loop, and ``EventPump`` keeps ONE blocking stream read
going for all connected clients instead of one per WebSocket or long-poll.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import redis

from jupyter_vqpu.core.connection import (
    UNAVAILABLE_ERRORS,
    Durability,
    connect,
    follows_embedded,
    redact,
    resolve_url,
)
from jupyter_vqpu.core.control import ControlPlane, Limits
from jupyter_vqpu.core.errors import ControlPlaneUnavailable, InvalidRequest, NotAuthorized, TaskNotFound, UnknownDevice
from jupyter_vqpu.core.keys import check_device_name, device_name
from jupyter_vqpu.core.lifecycle import TaskState
from jupyter_vqpu.core.parsing import ParserPool
from jupyter_vqpu_server.caller import Caller

log = logging.getLogger("vqpu.server")

T = TypeVar("T")

#: Submission fields a client may send, with the JSON types each accepts
#: (None means "may be null / absent").
SUBMIT_FIELDS: dict[str, tuple[type, ...]] = {
    "device": (str,),
    "circuit": (str, type(None)),
    "circuits": (list, type(None)),  # several circuits, one task: texts or {circuit, circuit_format}
    "options": (dict, type(None)),  # run options (core/run_options.py)
    "circuit_format": (str, type(None)),
    "shots": (int,),
    "seed": (int, type(None)),
    "optimization_level": (int,),
    "name": (str, type(None)),
    "snapshot": (str, type(None)),
    "idempotency_key": (str, type(None)),
    "tags": (list, type(None)),
}
REQUIRED_FIELDS = ("device",)
MAX_POLL_TIMEOUT_S = 60.0
# How many non-blocking reads one poll makes past other users' events before answering empty.
_SKIP_READS = 20


def encode_cursor(cursors: dict[str, str]) -> str:
    """An opaque cursor: per-device stream ids, as URL-safe base64 of JSON."""
    raw = json.dumps(cursors, sort_keys=True, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, str]:
    """The inverse of ``encode_cursor``; a readable 400 for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        data = None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and _is_stream_id(v) for k, v in data.items()
    ):
        raise InvalidRequest("the events cursor is not one this server gave out", "start again without a cursor")
    for name in data:
        check_device_name(name)
    return data


def _is_stream_id(value: str) -> bool:
    ms, _, seq = value.partition("-")
    return ms.isdigit() and seq.isdigit()


NO_RIGHTS_HINT = "ask whoever runs this hub for the custom:vqpu:submit scope"


#: Tasks ``GET tasks`` returns per owner without a ``limit``, and the most it returns with one.
LIST_LIMIT = 50
MAX_LIST_LIMIT = 500


def list_limit(raw: str | int | None) -> int:
    """``limit`` of ``GET tasks`` as a number of tasks; a readable 400 unless 1 to MAX_LIST_LIMIT."""
    if raw is None or raw == "":
        return LIST_LIMIT
    text = str(raw)
    if not (text.isascii() and text.isdigit() and len(text) <= 4 and 1 <= int(text) <= MAX_LIST_LIMIT):
        raise InvalidRequest(f"limit must be a whole number from 1 to {MAX_LIST_LIMIT}, got {text[:20]!r}",
                             "e.g. limit=200")
    return int(text)


class VqpuService:
    """The control plane as one authenticated caller may use it.

    Every method takes the ``Caller``; none trusts an owner from the request.
    Methods are blocking; call them through ``run`` from async code.
    ``limits_for`` picks the submission limits of a caller (the gateway's
    per-group quotas); without it every caller gets ``limits``.
    """

    def __init__(
        self,
        redis_url: str = "",
        *,
        script_loader_url: str = "",
        devices: Iterable[str] = (),
        limits: Limits | None = None,
        limits_for: Callable[[Caller], Limits] | None = None,
        max_workers: int = 8,
        events_block_ms: int = 5000,
        control: ControlPlane | None = None,
        parser: ParserPool | None = None,
        durability: Durability | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.durability = durability  # None: the URL's ?wait_replicas= (see core/connection.py)
        self.script_loader_url = script_loader_url
        # Circuits are parsed in these sandboxed processes, never in the server's own (see core/parsing.py).
        self._own_parser = control is None  # a pool handed in with the service is closed with it
        self.parser = parser or (control.parser if control is not None else ParserPool())
        self.allowed = frozenset(devices)
        self.limits = limits or Limits()
        self.limits_for = limits_for
        self.events_block_ms = events_block_ms
        self._cp = control
        self._cp_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="vqpu-api")
        self.pump = EventPump(self, block_ms=events_block_ms)
        # No URL and none in the environment: the embedded default, which `vqpu down` / `vqpu up` may move
        # to another port; such a service looks it up again instead of holding on to the old one.
        self.follows_embedded = control is None and follows_embedded(redis_url)
        #: What the last call found (the panel's live dot): see ``health`` and docs/api.md.
        self.connection: dict[str, Any] = {"state": "unknown", "message": "", "hint": "", "since": time.time()}

    # ------------------------------------------------------------ plumbing

    @property
    def cp(self) -> ControlPlane:
        """The ControlPlane, connected on first use (in a worker thread).

        Connecting lazily keeps server start-up fast and lets the server come
        up even when the embedded Redis has to be started or is down."""
        if self._cp is None:
            with self._cp_lock:
                if self._cp is None:
                    url = resolve_url(self.redis_url or None)
                    loader = connect(self.script_loader_url, check=False) if self.script_loader_url else None
                    # The embedded default is connected to by name (no URL), so that it is followed to a new port.
                    client = connect(None if self.follows_embedded else url, check=False)
                    self._cp = ControlPlane(client, limits=self.limits, script_loader=loader, durability=self.durability,
                                            parser=self.parser)
                    log.info("vqpu: control plane at %s%s", redact(url),
                             f" (scripts loaded by {redact(self.script_loader_url)})" if loader else "")
        return self._cp

    def warm_up(self) -> None:
        """Start the parser processes now (each loads qiskit in a second or two), without waiting for them.

        The server itself never imports the OpenQASM importers: a native
        importer that crashes on a hostile circuit takes only a worker down."""
        self.parser.start()

    async def run(self, fn: Callable[..., T], *args: Any, guard: bool = True) -> T:
        """Run a blocking call on the service's pool; Redis outages become a 503.

        The first call starts the event pump, which also keeps the scripts loaded. ``guard=False``
        for a call that guards its own Redis work (health): its return says nothing about Redis."""
        self.pump.start()
        if not guard:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._guarded, fn, args)

    def _guarded(self, fn: Callable[..., T], args: tuple) -> T:
        try:
            try:
                out = fn(*args)
            except (redis.ConnectionError, redis.TimeoutError):
                if not self._follow_embedded():
                    raise
                out = fn(*args)  # once more, on the embedded default's new address
        except UNAVAILABLE_ERRORS as exc:  # an outage, or a failover in progress (Cluster, Sentinel)
            error = ControlPlaneUnavailable(
                f"the vQPU control plane is unreachable ({exc})", "try again shortly; tell the operator if it persists"
            )
            self._note("unreachable", error)
            raise error from None
        except ControlPlaneUnavailable as exc:
            self._note("not_running" if self.follows_embedded else "unreachable", exc)
            raise
        self._note("connected")
        return out

    def _note(self, state: str, error: ControlPlaneUnavailable | None = None) -> None:
        if self.connection["state"] != state:
            log.log(logging.INFO if state == "connected" else logging.WARNING, "vqpu: control plane %s%s", state,
                    f": {error}" if error else "")
            self.connection = {"state": state, "message": error.message if error else "",
                               "hint": error.hint if error else "", "since": time.time()}

    def _follow_embedded(self) -> bool:
        """After a refused connection to the embedded default: True to try once more (its connections
        look up its current port, which `vqpu down` / `vqpu up` changes: ``EmbeddedConnection``); a
        readable ControlPlaneUnavailable ("run `vqpu up`") when it is not running; False otherwise."""
        if not self.follows_embedded:
            return False
        from jupyter_vqpu.core import embedded

        if embedded.status()["redis_pid"] is None:
            raise ControlPlaneUnavailable("the embedded vQPU control plane is not running",
                                          "run `vqpu up` in a terminal; this server reconnects by itself")
        return True

    def health_check(self) -> dict[str, Any]:
        """Ping the control plane (following the embedded default if it moved); the connection state."""
        try:
            self._guarded(lambda: self.cp.redis.ping(), ())
        except ControlPlaneUnavailable:
            pass
        return {**self.connection, "embedded": self.follows_embedded}

    def health(self, caller: Caller) -> dict[str, Any]:
        """Whether this service reaches the control plane right now (the panel's live dot).

        ``state``: ``connected``; ``unreachable`` (Redis does not answer); ``not_running`` (the
        embedded default is stopped: `vqpu up` starts it and this service follows by itself);
        with ``message``/``hint`` saying why and what to do, ``since`` (epoch seconds) when the
        state began, ``embedded`` whether this service follows the embedded default."""
        self.require_use(caller)
        return self.health_check()

    async def close(self) -> None:
        await self.pump.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._own_parser:
            self.parser.close()

    # -------------------------------------------------------------- rights

    @staticmethod
    def require(allowed: bool, message: str, hint: str = NO_RIGHTS_HINT) -> None:
        if not allowed:
            raise NotAuthorized(message, hint)

    def require_use(self, caller: Caller) -> None:
        """Any vQPU right at all: what reading devices, snapshots and one's own tasks needs."""
        self.require(caller.any_right, f"{caller.name} may not use the vQPU service")

    # ------------------------------------------------------------- devices

    def device_names(self) -> list[str]:
        names = self.cp.device_names()
        return [n for n in names if n in self.allowed] if self.allowed else names

    def _check_device(self, device: Any) -> str:
        """The device a request names, in its registered (lower-case) form; served by this service."""
        if not isinstance(device, str):
            raise InvalidRequest(f"device must be a device name, got {device!r}", 'e.g. "fez"')
        device = device_name(device)
        if self.allowed and device not in self.allowed:
            known = ", ".join(sorted(self.allowed))
            raise UnknownDevice(f"unknown device {device!r}", f"known devices: {known}")
        return device

    def devices(self, caller: Caller) -> list[dict[str, Any]]:
        self.require_use(caller)
        return self.cp.devices(self.device_names())

    def snapshot(self, caller: Caller, device: str, snapshot_id: str | None = None) -> bytes:
        self.require_use(caller)
        return self.cp.snapshot_bytes(self._check_device(device), snapshot_id)  # an id, a prefix, v3 or fez@v3

    def set_admin_state(self, caller: Caller, device: str, state: str) -> dict[str, Any]:
        """Drain a device (no new tasks; queued and running ones go on) or resume it."""
        self.require(caller.operates, f"{caller.name} may not drain or resume devices",
                     "device administration needs the custom:vqpu:admin scope")
        self.cp.set_admin_state(self._check_device(device), state)
        log.info("vqpu: %s set %s to %s", caller.name, device, state)
        return self.cp.devices([device])[0]

    def publish_calibration(self, caller: Caller, device: str, payload: Any) -> dict[str, Any]:
        """Publish a new snapshot from IBM calibration JSON sent in the body.

        The body is ``{"properties": {...}, "configuration": {...}}`` (configuration
        optional: the device's topology is kept) or a bare properties object. It goes
        through the same reader as ``vqpu device update FILE`` so that both check alike."""
        from jupyter_vqpu.core.snapshot import calibration_from_documents

        self.require(caller.operates, f"{caller.name} may not publish device snapshots",
                     "publishing calibration needs the custom:vqpu:admin scope")
        self._check_device(device)
        if not isinstance(payload, dict):
            raise InvalidRequest("the request body must be a JSON object",
                                 'send {"properties": {...}} with IBM backend properties')
        if set(payload) <= {"properties", "configuration"} and payload.get("configuration") is None:
            payload = payload.get("properties", payload)  # {"properties": ...} alone: the topology is kept
        conf, props = calibration_from_documents([("the request body", payload)])
        sid, version = self.cp.publish_calibration(device, conf, props, f"published over the API by {caller.name}")
        log.info("vqpu: %s published snapshot %s (v%s) for %s", caller.name, sid[:12], version, device)
        return {"device": device, "snapshot_id": sid, "version": version}

    # --------------------------------------------------------------- tasks

    def submit(self, caller: Caller, payload: Any) -> dict[str, Any]:
        """Validate a submission body and enqueue it with the caller as the owner, under the caller's limits."""
        self.require(caller.submit, f"{caller.name} may not submit tasks")
        if not isinstance(payload, dict):
            raise InvalidRequest("the request body must be a JSON object", 'e.g. {"device": "fez", "circuit": ...}')
        if "owner" in payload:
            raise InvalidRequest(
                "'owner' cannot be set: tasks belong to the authenticated user", "leave 'owner' out of the request"
            )
        unknown = sorted(set(payload) - set(SUBMIT_FIELDS))
        if unknown:
            raise InvalidRequest(
                f"unknown field(s): {', '.join(unknown)}", f"allowed fields: {', '.join(SUBMIT_FIELDS)}"
            )
        missing = [f for f in REQUIRED_FIELDS if payload.get(f) in (None, "")]
        if missing:
            raise InvalidRequest(f"missing field(s): {', '.join(missing)}", "send at least device and circuit")
        if payload.get("circuit") in (None, "") and payload.get("circuits") is None:
            raise InvalidRequest("missing field(s): circuit", "send at least device and circuit (or circuits)")
        for key, value in payload.items():
            types = SUBMIT_FIELDS[key]
            if isinstance(value, bool) or not isinstance(value, types):
                names = {int: "integer", str: "string", list: "a list", dict: "an object"}
                want = " or ".join("null" if t is type(None) else names[t] for t in types)
                raise InvalidRequest(f"{key} must be {want}, got {json.dumps(value)[:60]}", "")
        kwargs = dict(payload)
        kwargs["device"] = self._check_device(kwargs["device"])
        limits = self.limits_for(caller) if self.limits_for is not None else None
        return self.cp.submit(owner=caller.name, limits=limits, **kwargs)

    def list(self, caller: Caller, owner: str | None = None, group: str | None = None,
             limit: str | int | None = None) -> list[dict[str, Any]]:
        """The caller's tasks, newest first, at most ``limit`` (default LIST_LIMIT, at most MAX_LIST_LIMIT,
        per owner); or another user's (``owner``), or a course's (``group``), for who oversees them."""
        self.require_use(caller)
        n = list_limit(limit)
        if group is not None:
            self.require(group in caller.courses, f"{caller.name} does not oversee group {group!r}",
                         "instructors list the tasks of the groups their custom:vqpu:instruct scope names")
            owners = sorted(caller.courses[group])
            views = [v for o in owners for v in self.cp.tasks(o, self.device_names(), limit=n)]
            return sorted(views, key=lambda v: v.get("created_at") or 0, reverse=True)
        if owner is not None and owner != caller.name:
            self.require(caller.may_see(owner), f"{caller.name} may not see the tasks of {owner}",
                         "you can only see your own tasks")
            return self.cp.tasks(owner, self.device_names(), limit=n)
        return self.cp.tasks(caller.name, self.device_names(), limit=n)

    def _own(self, caller: Caller, task_id: str) -> str:
        """The whole id of the task ``task_id`` names (a prefix of the caller's own is enough);
        raises unless it exists (on a served device) and the caller may see it."""
        self.require_use(caller)
        task_id = self.cp.resolve_task(task_id, caller.name)
        device = task_id.split(".", 1)[0]
        if self.allowed and device not in self.allowed:
            raise TaskNotFound(f"no task {task_id}", "see your tasks at vqpu/api/tasks")
        if not caller.may_see(self.cp.owner_of(task_id)):
            raise NotAuthorized(f"task {task_id} belongs to another user", "you can only see and cancel your own tasks")
        return task_id

    def get(self, caller: Caller, task_id: str) -> dict[str, Any]:
        """The task's view, its history, and the measured result once completed."""
        task_id = self._own(caller, task_id)
        view = self.cp.task(task_id)
        view["history"] = self.cp.history(task_id)
        if view.get("state") == TaskState.COMPLETED:
            from jupyter_vqpu.core.task import merge_result

            view = merge_result(view, self.cp.result(task_id))
        return view

    def circuit(self, caller: Caller, task_id: str) -> dict[str, Any]:
        """What the task runs: the circuit as submitted and, once completed, as transpiled for the
        device (OpenQASM 3 from the runner's result; null before, or when it was too long to keep).

        A route of its own, not part of ``get``: the panel's list and the kernels' followers read
        tasks often and need neither text. The stored result was checked against the schema when
        the job handed it back; its bound is checked again here before the text is served."""
        from jupyter_vqpu.core.result import MAX_TRANSPILED_QASM_CHARS

        task_id = self._own(caller, task_id)
        circuit_format, text = self.cp.circuit(task_id)
        transpiled = (self.cp.result(task_id) or {}).get("transpiled_qasm")
        if not isinstance(transpiled, str) or len(transpiled) > MAX_TRANSPILED_QASM_CHARS:
            transpiled = None
        return {"task_id": task_id, "format": circuit_format, "circuit": text, "transpiled_qasm": transpiled}

    def cancel(self, caller: Caller, task_id: str) -> dict[str, Any]:
        task_id = self._own(caller, task_id)
        return self.cp.cancel(task_id, by=caller.name)

    # -------------------------------------------------------------- events

    def current_cursors(self) -> dict[str, str]:
        """Each served device's newest event id: "from now on"."""
        return {d: self.cp.last_event_id(d) for d in self.device_names()}

    def complete_cursors(self, cursors: dict[str, str]) -> dict[str, str]:
        """Drop devices no longer served; add new ones from their start (their streams are young)."""
        names = self.device_names()
        return {d: cursors.get(d, "0-0") for d in names}

    @staticmethod
    def project(user: str, device: str, event_id: str, fields: dict[str, str]) -> dict[str, Any] | None:
        """The client's view of one stream entry, or None when it is not ``user``'s to see.

        Task events are shown to the task's owner only; device-level events
        (snapshot, agent_online, agent_offline) carry no task and go to everyone."""
        task = fields.get("task") or None
        if task is not None and fields.get("owner") != user:
            return None
        try:
            data = json.loads(fields.get("data") or "{}")
        except ValueError:
            data = {}
        return {
            "type": "event",
            "device": device,
            "id": event_id,
            "event": fields.get("event", ""),
            "task": task,
            "data": data,
        }

    def events(
        self, user: str, cursors: dict[str, str], block_ms: int | None = None
    ) -> tuple[list[dict], dict[str, str]]:
        """The user's events after ``cursors`` and the advanced cursors.

        With ``block_ms`` None this never blocks; it keeps reading past other
        users' events a few batches so one poll is not wasted on them."""
        cursors = dict(cursors)
        if not cursors:
            return [], cursors
        for _ in range(_SKIP_READS):
            raw = self.cp.read_events(cursors, block_ms)
            out = [m for d, eid, f in raw if (m := self.project(user, d, eid, f)) is not None]
            if out or not raw or block_ms is not None:
                return out, cursors
        return [], cursors

    async def poll(self, caller: Caller, cursor: str, timeout: float) -> dict[str, Any]:
        """Long-poll: the caller's events after ``cursor``, waiting up to ``timeout`` s for some.

        Waiting costs no thread: it waits on the pump's next batch, then reads.
        Events are the caller's own tasks' (and device-level ones), also for
        instructors: they follow others' tasks by reading them."""
        self.require_use(caller)
        user = caller.name
        if cursor:
            cursors = await self.run(self.complete_cursors, decode_cursor(cursor))
        else:
            cursors = await self.run(self.current_cursors)
        deadline = time.monotonic() + max(0.0, min(timeout, MAX_POLL_TIMEOUT_S))
        self.pump.start()
        while True:
            batch = self.pump.next_batch()
            events, cursors = await self.run(self.events, user, cursors, None)
            remaining = deadline - time.monotonic()
            if events or remaining <= 0:
                return {"events": events, "cursor": encode_cursor(cursors)}
            try:
                await asyncio.wait_for(asyncio.shield(batch), remaining)
            except asyncio.TimeoutError:
                pass


class Subscription:
    """One WebSocket's inbox of projected messages."""

    def __init__(self, user: str, maxsize: int = 1000) -> None:
        self.user = user
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize)
        self.overflowed = False

    def deliver(self, message: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.overflowed = True  # the socket closes; the client reconnects and resyncs


class EventPump:
    """One blocking XREAD over every device's events, fanned out to subscribers.

    It runs on its own single thread, so N open panels cost one Redis
    connection and one thread, not N, and never starve the request pool."""

    def __init__(self, service: VqpuService, block_ms: int = 5000, refresh_s: float = 10.0) -> None:
        self.service = service
        self.block_ms = block_ms
        self.refresh_s = refresh_s
        self.subscribers: set[Subscription] = set()
        self._task: asyncio.Task | None = None
        self._batch: asyncio.Future | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vqpu-events")
        self._ready: asyncio.Event | None = None

    async def ready(self) -> None:
        """Wait until the pump has its starting positions: events after this are delivered."""
        self.start()
        assert self._ready is not None
        await self._ready.wait()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._ready = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="vqpu-event-pump")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def subscribe(self, user: str) -> Subscription:
        await self.ready()
        sub = Subscription(user)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.subscribers.discard(sub)

    def next_batch(self) -> asyncio.Future:
        """A future resolved when the pump next sees new events (on any device)."""
        if self._batch is None or self._batch.done():
            self._batch = asyncio.get_running_loop().create_future()
        return self._batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        svc = self.service
        cursors: dict[str, str] = {}
        refreshed = 0.0
        while True:
            try:
                if time.monotonic() - refreshed > self.refresh_s:
                    if self._ready is not None and self._ready.is_set():
                        # Devices registered since: from their start, their first events included.
                        cursors = await loop.run_in_executor(self._pool, svc.complete_cursors, cursors)
                    else:
                        cursors = await loop.run_in_executor(self._pool, svc.current_cursors)
                        if self._ready is not None:
                            self._ready.set()
                    # A restarted or flushed Redis forgot the scripts, which least-privilege agents
                    # cannot load: this trusted service puts them back (one SCRIPT EXISTS when present).
                    loaded = await loop.run_in_executor(self._pool, svc.cp.scripts.ensure_loaded)
                    if loaded:
                        log.warning("vqpu: reloaded %d control-plane scripts Redis had lost", loaded)
                    refreshed = time.monotonic()
                if not cursors:
                    await asyncio.sleep(self.block_ms / 1000)
                    continue
                raw = await loop.run_in_executor(self._pool, svc.cp.read_events, cursors, self.block_ms)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("vqpu: event pump cannot read events; retrying", exc_info=True)
                await asyncio.sleep(2)
                with contextlib.suppress(Exception):  # the embedded default may have moved: follow it
                    await loop.run_in_executor(self._pool, svc.health_check)
                refreshed = 0.0
                continue
            if not raw:
                continue
            if self._batch is not None and not self._batch.done():
                self._batch.set_result(len(raw))
            for sub in list(self.subscribers):
                for device, eid, fields in raw:
                    message = svc.project(sub.user, device, eid, fields)
                    if message is not None:
                        sub.deliver(message)
