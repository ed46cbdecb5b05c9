"""HTTP and WebSocket handlers for ``{base_url}vqpu/api/``.

Thin on purpose: authenticate, authorise on the ``vqpu`` resource, pass the
user name and the request to ``VqpuService``, write JSON. Errors of every
handler go through ONE translator (``VqpuHandler.write_error``): a VqpuError
becomes its own status and ``{"error", "message", "hint"}``; anything
unexpected becomes a generic 500 whose traceback goes to the log only.
"""

from __future__ import annotations

import asyncio
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

from jupyter_vqpu.errors import InvalidRequest, VqpuError

from .service import VqpuService

AUTH_RESOURCE = "vqpu"
_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
}


def _http_message(exc: web.HTTPError | None, status: int) -> str:
    """The readable part of a tornado HTTPError (auth failures, 405s), else the status phrase."""
    if exc is not None and exc.log_message:
        try:
            return exc.log_message % exc.args if exc.args else exc.log_message
        except (TypeError, ValueError):
            return exc.log_message
    return responses.get(status, "error")


_SINGLE_PERSON_PROVIDERS = (IdentityProvider, PasswordIdentityProvider)
_SERVER_ACCOUNT = getpass.getuser()


class VqpuMixin:
    """What every vQPU handler shares: the service and the caller's name."""

    settings: dict[str, Any]
    current_user: Any

    @property
    def service(self) -> VqpuService:
        return self.settings["vqpu_service"]

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


class VqpuHandler(VqpuMixin, ExtensionHandlerMixin, APIHandler):
    """Base of the JSON API handlers, holding the one error translator."""

    auth_resource = AUTH_RESOURCE

    def json_body(self) -> Any:
        """The request body as JSON; a 400 that says what is wrong otherwise."""
        body = self.request.body
        if not body:
            raise InvalidRequest("the request has no body", "send a JSON object")
        try:
            return json.loads(body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidRequest(f"the request body is not valid JSON ({exc})", "send a JSON object") from None

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
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
            body = {"error": _HTTP_CODES.get(status, "http_error"), "message": _http_message(exc, status), "hint": ""}
        else:  # a bug: details are in the log (log_exception), not in the reply
            status = 500
            body = {
                "error": "internal_error",
                "message": "internal error in the vQPU service",
                "hint": "the Jupyter server log has the details",
            }
        self.set_status(status)
        self.finish(json.dumps(body))


class DevicesHandler(VqpuHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json(await self.service.run(self.service.devices))


class SnapshotHandler(VqpuHandler):
    @web.authenticated
    @authorized
    async def get(self, device: str, snapshot_id: str | None = None) -> None:
        data = await self.service.run(self.service.snapshot, device, snapshot_id)
        self.finish(data)  # already canonical JSON; sent byte for byte so its id (a hash) verifies


class TasksHandler(VqpuHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json(await self.service.run(self.service.list, self.user_name))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        view = await self.service.run(self.service.submit, self.user_name, self.json_body())
        self.set_header("Location", url_path_join(self.base_url, "vqpu/api/tasks", view["task_id"]))
        self.write_json(view, 201)


class TaskHandler(VqpuHandler):
    @web.authenticated
    @authorized
    async def get(self, task_id: str) -> None:
        self.write_json(await self.service.run(self.service.get, self.user_name, task_id))

    @web.authenticated
    @authorized
    async def delete(self, task_id: str) -> None:
        self.write_json(await self.service.run(self.service.cancel, self.user_name, task_id))


class EventsPollHandler(VqpuHandler):
    """Long-poll fallback for clients that cannot keep a WebSocket open."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        cursor = self.get_argument("cursor", "")
        raw = self.get_argument("timeout", "25")
        try:
            timeout = float(raw)
        except ValueError:
            timeout = math.nan
        if not math.isfinite(timeout) or timeout < 0:
            raise InvalidRequest(f"timeout must be a number of seconds >= 0, got {raw!r}", "e.g. timeout=25")
        self.write_json(await self.service.poll(self.user_name, cursor, timeout))


class EventsSocketHandler(VqpuMixin, ExtensionHandlerMixin, WebSocketMixin, WebSocketHandler, JupyterHandler):
    """Pushes the caller's task events and device status as JSON messages.

    Authenticated like jupyter_server's kernel socket: ``ws_authenticated``
    (a 403 instead of a login redirect) and the authorizer on ``vqpu``.
    Messages: ``{"type": "event", ...}`` as in the long-poll, and
    ``{"type": "devices", "devices": [...]}`` on connect, after device-level
    events and every ``VqpuApp.devices_interval`` seconds."""

    auth_resource = AUTH_RESOURCE
    _forwarder: asyncio.Task | None = None
    _sub: Any = None

    def set_default_headers(self) -> None:
        """No API headers (CSP etc.) on a websocket upgrade, as for kernel sockets."""

    @ws_authenticated
    @authorized
    async def get(self, *args: Any, **kwargs: Any) -> None:
        await super().get(*args, **kwargs)

    async def open(self, *args: Any, **kwargs: Any) -> None:
        super().open(*args, **kwargs)  # starts the keep-alive pings
        self._sub = await self.service.pump.subscribe(self.user_name)
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
            devices = await self.service.run(self.service.devices)
        except VqpuError as exc:
            await self.write_message(json.dumps({"type": "error", **exc.to_dict()}))
            return
        await self.write_message(json.dumps({"type": "devices", "devices": devices}))

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
