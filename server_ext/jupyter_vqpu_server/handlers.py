"""HTTP and WebSocket handlers for the vQPU API (``.../vqpu/api/``), shared by two apps.

Thin on purpose: take the authenticated ``Caller``, pass it and the request to
``VqpuService``, write JSON. The endpoints are written ONCE here, as mixins;
each app combines them with its own base class, which only authenticates and
derives the Caller:

- the Jupyter server extension (``ServerApiBase`` / ``ServerSocketBase`` below):
  jupyter_server's identity provider and authorizer;
- the hub gateway (``gateway.HubApiBase`` / ``gateway.HubSocketBase``):
  JupyterHub OAuth and custom scopes.

``api_handlers(prefix, http_base, socket_base)`` builds the routes from
``API_ROUTES``, so both apps serve exactly the same ones. Errors of every
handler go through ONE translator (``ApiMixin.write_error``): a VqpuError
becomes its own status and ``{"error", "message", "hint"}``; anything
unexpected becomes a generic 500 whose traceback goes to the log only.
"""

from __future__ import annotations

import asyncio
import functools
import getpass
import json
import math
from http.client import responses
from typing import Any

from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.auth.identity import IdentityProvider, PasswordIdentityProvider
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.extension.handler import ExtensionHandlerMixin
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from jupyter_vqpu.core.errors import InvalidRequest, VqpuError
from jupyter_vqpu_server.caller import Caller
from jupyter_vqpu_server.request_body import parse_json_body, too_large
from jupyter_vqpu_server.service import VqpuService

AUTH_RESOURCE = "vqpu"
#: Request bodies the API reads at most, when the app sets no ``vqpu_max_request_bytes``.
DEFAULT_MAX_REQUEST_BYTES = 4_000_000
#: jupyter_server authorizer resource for device administration (drain, resume, publish) on a server
ADMIN_RESOURCE = "vqpu_admin"
_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
}
_HTTP_HINTS = {
    401: "send 'Authorization: token <your JupyterHub API token>' (kernels and terminals have it as "
         "$JUPYTERHUB_API_TOKEN), or sign in",
}


def _http_message(exc: web.HTTPError | None, status: int) -> str:
    """The readable part of a tornado HTTPError (auth failures, 405s), else the status phrase."""
    if exc is not None and exc.log_message:
        try:
            return exc.log_message % exc.args if exc.args else exc.log_message
        except (TypeError, ValueError):
            return exc.log_message
    return responses.get(status, "error")


# ------------------------------------------------------------ shared parts


class ApiMixin:
    """What every vQPU endpoint shares: the service, the caller, JSON in and out, the error translator.

    The app's base class provides ``caller`` (a Caller) once the request is authenticated."""

    settings: dict[str, Any]
    request: Any
    caller: Caller

    @property
    def service(self) -> VqpuService:
        return self.settings["vqpu_service"]

    @property
    def api_base(self) -> str:
        """The URL path the API is served under (for Location headers)."""
        return self.settings["vqpu_api_base"]

    @property
    def max_request_bytes(self) -> int:
        return int(self.settings.get("vqpu_max_request_bytes") or DEFAULT_MAX_REQUEST_BYTES)

    async def prepare(self) -> None:
        """Refuse an oversized body from its Content-Length, before reading it (413).

        The endpoints that take a body stream it (``api_handlers``), so tornado has
        read none of it yet; a chunked body is cut off at the limit by the connection.
        A streamed request answered before its body is read has its connection
        closed by tornado, which breaks a keep-alive proxy (JupyterHub's) for the
        next request: so the app's own refusals (401, 403) are held until the
        (bounded) body is read and raised then (``_refuse_if_held``); only the 413
        closes the connection, on purpose."""
        self._held_error: BaseException | None = None
        try:
            started = super().prepare()  # type: ignore[misc]
            if started is not None:
                await started
        except Exception as exc:
            if not getattr(self, "vqpu_streamed", False):
                raise
            self._held_error = exc
        self._body_chunks: list[bytes] = []
        self._body_size = 0
        limit = self.max_request_bytes
        declared = self.request.headers.get("Content-Length")
        if declared is not None:
            size = int(declared) if declared.strip().isdigit() else -1
            if size < 0:
                raise InvalidRequest("the Content-Length header is not a number", "send a valid HTTP request")
            if size > limit:
                raise too_large(size, limit)
        connection = getattr(self.request, "connection", None)
        if hasattr(connection, "set_max_body_size"):
            connection.set_max_body_size(limit)

    def _refuse_if_held(self) -> None:
        if getattr(self, "_held_error", None) is not None:
            raise self._held_error

    def data_received(self, chunk: bytes) -> None:
        """A piece of a streamed body: kept up to the limit, counted past it."""
        self._body_size += len(chunk)
        if self._body_size <= self.max_request_bytes:
            self._body_chunks.append(chunk)

    def json_body(self) -> Any:
        """The request body as JSON, size and depth bounded first; a 400 (413) that says what is wrong otherwise."""
        chunks = getattr(self, "_body_chunks", None)
        if chunks is None:  # a handler that does not stream its body
            body = self.request.body
        elif self._body_size > self.max_request_bytes:
            raise too_large(self._body_size, self.max_request_bytes)
        else:
            body = b"".join(chunks)
        return parse_json_body(body, max_bytes=self.max_request_bytes)

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Expected errors are the user's, not the server's: one info line, no traceback."""
        if isinstance(value, VqpuError):
            self.log.info("vqpu %s %s -> %s: %s", self.request.method, self.request.path, value.code, value.message)
            return
        super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        if isinstance(exc, VqpuError):
            status, body = exc.http_status, exc.to_dict()
        elif isinstance(exc, web.HTTPError) or exc is None:
            status = status_code
            body = {"error": _HTTP_CODES.get(status, "http_error"), "message": _http_message(exc, status),
                    "hint": _HTTP_HINTS.get(status, "")}
        else:  # a bug: details are in the log (log_exception), not in the reply
            status = 500
            body = {
                "error": "internal_error",
                "message": "internal error in the vQPU service",
                "hint": "the server log has the details",
            }
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))


# ------------------------------------------------------------- endpoints


class DevicesEndpoint(ApiMixin):
    async def get(self) -> None:
        self.write_json(await self.service.run(self.service.devices, self.caller))


class HealthEndpoint(ApiMixin):
    """``GET health``: whether the service reaches the control plane now (docs/api.md)."""

    async def get(self) -> None:
        self.write_json(await self.service.run(self.service.health, self.caller, guard=False))


class SnapshotEndpoint(ApiMixin):
    async def get(self, device: str, snapshot_id: str | None = None) -> None:
        data = await self.service.run(self.service.snapshot, self.caller, device, snapshot_id)
        self.set_header("Content-Type", "application/json")
        self.finish(data)  # already canonical JSON; sent byte for byte so its id (a hash) verifies


class SnapshotsEndpoint(ApiMixin):
    """``POST devices/{name}/snapshots``: publish new calibration (operators only)."""

    async def post(self, device: str) -> None:
        view = await self.service.run(self.service.publish_calibration, self.caller, device, self.json_body())
        self.write_json(view, 201)


class DeviceStateEndpoint(ApiMixin):
    """``POST devices/{name}/drain`` and ``.../resume`` (operators only)."""

    async def post(self, device: str, action: str) -> None:
        state = "draining" if action == "drain" else "active"
        self.write_json(await self.service.run(self.service.set_admin_state, self.caller, device, state))


class TasksEndpoint(ApiMixin):
    async def get(self) -> None:
        owner = self.get_argument("owner", None) or None
        group = self.get_argument("group", None) or None
        limit = self.get_argument("limit", None)
        self.write_json(await self.service.run(self.service.list, self.caller, owner, group, limit))

    async def post(self) -> None:
        view = await self.service.run(self.service.submit, self.caller, self.json_body())
        self.set_header("Location", url_path_join(self.api_base, "tasks", view["task_id"]))
        self.write_json(view, 201)


class TaskEndpoint(ApiMixin):
    async def get(self, task_id: str) -> None:
        self.write_json(await self.service.run(self.service.get, self.caller, task_id))

    async def delete(self, task_id: str) -> None:
        self.write_json(await self.service.run(self.service.cancel, self.caller, task_id))


class TaskCircuitEndpoint(ApiMixin):
    """``GET tasks/{id}/circuit``: the circuit as submitted and as transpiled (the panel's detail view)."""

    async def get(self, task_id: str) -> None:
        self.write_json(await self.service.run(self.service.circuit, self.caller, task_id))


class EventsPollEndpoint(ApiMixin):
    """Long-poll fallback for clients that cannot keep a WebSocket open."""

    async def get(self) -> None:
        cursor = self.get_argument("cursor", "")
        raw = self.get_argument("timeout", "25")
        try:
            timeout = float(raw)
        except ValueError:
            timeout = math.nan
        if not math.isfinite(timeout) or timeout < 0:
            raise InvalidRequest(f"timeout must be a number of seconds >= 0, got {raw!r}", "e.g. timeout=25")
        self.write_json(await self.service.poll(self.caller, cursor, timeout))


class EventsSocketEndpoint:
    """Pushes the caller's task events and device status as JSON messages.

    Messages: ``{"type": "event", ...}`` as in the long-poll, and
    ``{"type": "devices", "devices": [...]}`` on connect, after device-level
    events and every ``devices_interval`` seconds. The app's socket base
    authenticates the upgrade (``get``) and sets ``caller``."""

    settings: dict[str, Any]
    caller: Caller
    _forwarder: asyncio.Task | None = None
    _sub: Any = None

    @property
    def service(self) -> VqpuService:
        return self.settings["vqpu_service"]

    async def open(self, *args: Any, **kwargs: Any) -> None:
        super().open(*args, **kwargs)  # type: ignore[misc]  # starts the keep-alive pings
        self._sub = await self.service.pump.subscribe(self.caller.name)
        if self.ws_connection is None:  # closed while we waited
            self.service.pump.unsubscribe(self._sub)
            return
        self._forwarder = asyncio.get_running_loop().create_task(self._forward())

    def on_message(self, message: str | bytes) -> None:
        """Clients have nothing to say on this socket; ignore what they send."""

    def on_close(self) -> None:
        if self._sub is not None:
            self.service.pump.unsubscribe(self._sub)
        if self._forwarder is not None:
            self._forwarder.cancel()

    async def _send_devices(self) -> None:
        try:
            devices = await self.service.run(self.service.devices, self.caller)
        except VqpuError as exc:
            await self.write_message(json.dumps({"type": "error", **exc.to_dict(),
                                                 "control_plane": self.service.connection}))
            return
        await self.write_message(json.dumps({"type": "devices", "devices": devices,
                                             "control_plane": self.service.connection}))

    async def _forward(self) -> None:
        interval = float(self.settings.get("vqpu_devices_interval", 10))
        try:
            await self._send_devices()
            while True:
                try:
                    message = await asyncio.wait_for(self._sub.queue.get(), interval)
                except asyncio.TimeoutError:
                    await self._send_devices()
                    continue
                await self.write_message(json.dumps(message))
                if self._sub.overflowed:
                    self.close(1013, "too many events queued for this client; reconnect")
                    return
                if message.get("task") is None:  # snapshot / agent_online / agent_offline
                    await self._send_devices()
        except WebSocketClosedError:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("vqpu: events socket failed")
            self.close(1011, "internal error in the vQPU service")


_DEVICE = r"(?P<device>[^/]+)"

#: Every route of the API, relative to its prefix: (pattern, endpoint, is_websocket).
#: The one list both apps serve; the hub authorization-matrix test enumerates it.
API_ROUTES: list[tuple[str, type, bool]] = [
    ("devices", DevicesEndpoint, False),
    ("health", HealthEndpoint, False),
    (rf"devices/{_DEVICE}/snapshot", SnapshotEndpoint, False),
    (rf"devices/{_DEVICE}/snapshot/(?P<snapshot_id>[^/]+)", SnapshotEndpoint, False),
    (rf"devices/{_DEVICE}/snapshots", SnapshotsEndpoint, False),
    (rf"devices/{_DEVICE}/(?P<action>drain|resume)", DeviceStateEndpoint, False),
    ("tasks", TasksEndpoint, False),
    (r"tasks/(?P<task_id>[^/]+)", TaskEndpoint, False),
    (r"tasks/(?P<task_id>[^/]+)/circuit", TaskCircuitEndpoint, False),
    ("events", EventsSocketEndpoint, True),
    ("events/poll", EventsPollEndpoint, False),
]


@functools.cache
def _concrete(endpoint: type, base: type) -> type:
    """``endpoint`` served by ``base``: one class per pair, so names stay stable in logs.

    Endpoints that take a body (a ``post``) stream it, so that ``ApiMixin.prepare``
    sees the Content-Length before tornado reads (up to its 100 MB default) any of it;
    their methods first raise what ``prepare`` held back (see there)."""
    namespace: dict[str, Any] = {"vqpu_streamed": True}
    streamed = issubclass(endpoint, ApiMixin) and not issubclass(base, WebSocketHandler) and hasattr(endpoint, "post")
    if streamed:
        for verb in ("get", "post", "delete"):
            if hasattr(endpoint, verb):
                namespace[verb] = _after_held_error(getattr(endpoint, verb))
    cls = type(f"{endpoint.__name__.removesuffix('Endpoint')}{base.__name__}", (endpoint, base),
               namespace if streamed else {})
    return web.stream_request_body(cls) if streamed else cls


def _after_held_error(method: Any) -> Any:
    """``method``, after raising what ``ApiMixin.prepare`` held back until the body was read."""

    @functools.wraps(method)
    async def run(self: ApiMixin, *args: Any, **kwargs: Any) -> None:
        self._refuse_if_held()
        await method(self, *args, **kwargs)

    return run


def api_handlers(prefix: str, http_base: type, socket_base: type) -> list[tuple[str, type]]:
    """The API's tornado routes under ``prefix`` (a regex path such as ``/vqpu/api``)."""
    prefix = prefix.rstrip("/")
    return [(f"{prefix}/{pattern}", _concrete(endpoint, socket_base if ws else http_base))
            for pattern, endpoint, ws in API_ROUTES]


# ------------------------------------------- the Jupyter server extension's bases

_SINGLE_PERSON_PROVIDERS = (IdentityProvider, PasswordIdentityProvider)
_SERVER_ACCOUNT = getpass.getuser()
ACTIONS = {"GET": "read", "HEAD": "read", "OPTIONS": "read"}


class ServerCallerMixin:
    """The Caller on a Jupyter server: its identity provider names the user, its authorizer grants rights."""

    settings: dict[str, Any]
    current_user: Any

    @property
    def user_name(self) -> str:
        """The authenticated user; the only owner a task can get through this API.

        jupyter_server's stock token/password identity gives every cookie-less
        token request a fresh random name, although such a server belongs to one
        person: there the owner is the account the server runs as. Real identity
        providers (JupyterHub's, OAuth) name their users and are used as they are."""
        provider = self.settings.get("identity_provider")
        if type(provider) in _SINGLE_PERSON_PROVIDERS:
            return _SERVER_ACCOUNT
        return self.current_user.username

    @functools.cached_property
    def caller(self) -> Caller:
        """Everyone the server lets in may submit; device administration needs ``vqpu_admin``.

        Nobody oversees others' tasks here: a server is one person's (or, with a
        custom authorizer, several people's who each see their own)."""
        operates = self.authorizer.is_authorized(self, self.current_user, "write", ADMIN_RESOURCE)
        return Caller(name=self.user_name, submit=True, operates=bool(operates))


class ServerApiBase(ServerCallerMixin, ExtensionHandlerMixin, APIHandler):
    """The server extension's JSON handlers: jupyter_server login (403 without), then its authorizer on ``vqpu``."""

    auth_resource = AUTH_RESOURCE

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()  # authenticates; an API handler answers 403 rather than redirecting
        if self.current_user is None:
            raise web.HTTPError(403, "not signed in to this Jupyter server")
        action = ACTIONS.get(self.request.method or "", "write")
        if not self.authorizer.is_authorized(self, self.current_user, action, AUTH_RESOURCE):
            raise web.HTTPError(403, "%s may not %s the vQPU API", self.current_user.username, action)


class ServerSocketBase(ServerCallerMixin, ExtensionHandlerMixin, WebSocketMixin, WebSocketHandler, JupyterHandler):
    """The server extension's events socket: authenticated like jupyter_server's kernel socket
    (``ws_authenticated``: a 403 instead of a login redirect, then the authorizer on ``vqpu``)."""

    auth_resource = AUTH_RESOURCE

    def set_default_headers(self) -> None:
        """No API headers (CSP etc.) on a websocket upgrade, as for kernel sockets."""

    @ws_authenticated
    @authorized
    async def get(self, *args: Any, **kwargs: Any) -> None:
        await super().get(*args, **kwargs)
