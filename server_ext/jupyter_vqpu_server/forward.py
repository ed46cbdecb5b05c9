"""A hub-spawned server's ``vqpu/api``: forwarded to the hub gateway, with no Redis here.

Under a JupyterHub the control plane runs once, as the ``vqpu`` hub service
(``vqpu gateway``). A student's single-user server holds no Redis credentials;
the JupyterLab panel still calls ``{base_url}vqpu/api`` on it, so this module
forwards those calls (HTTP and the events WebSocket) to the gateway with the
server's own ``$JUPYTERHUB_API_TOKEN``. The gateway identifies the caller from
that token: the server's owner. Whoever the hub lets into this server can run
code as its owner in its kernels anyway, so acting as the owner here grants
nothing new.
"""

from __future__ import annotations

import asyncio
from typing import Any

from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import httpclient, web
from tornado.websocket import WebSocketClosedError, WebSocketHandler, websocket_connect

from jupyter_vqpu_server.handlers import ACTIONS, AUTH_RESOURCE

#: Request headers passed on to the gateway (never the browser's cookies or Authorization).
_PASS_HEADERS = ("Content-Type", "Accept")
_TIMEOUT_S = 120.0  # above the long-poll's longest wait (60 s)


class ForwardMixin:
    """The upstream (gateway API URL, token) from the app's settings."""

    settings: dict[str, Any]

    @property
    def upstream(self) -> tuple[str, str]:
        return self.settings["vqpu_upstream"]


class ForwardHandler(ForwardMixin, ExtensionHandlerMixin, APIHandler):
    """Forwards one API call to the gateway and relays its status, JSON body and Location."""

    auth_resource = AUTH_RESOURCE

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        if self.current_user is None:
            raise web.HTTPError(403, "not signed in to this Jupyter server")
        action = ACTIONS.get(self.request.method or "", "write")
        if not self.authorizer.is_authorized(self, self.current_user, action, AUTH_RESOURCE):
            raise web.HTTPError(403, "%s may not %s the vQPU API", self.current_user.username, action)

    async def _forward(self, path: str) -> None:
        base, token = self.upstream
        url = base + path + (f"?{self.request.query}" if self.request.query else "")
        headers = {k: self.request.headers[k] for k in _PASS_HEADERS if k in self.request.headers}
        headers["Authorization"] = f"token {token}"
        body = self.request.body if self.request.method in ("POST", "PUT", "PATCH") else None
        request = httpclient.HTTPRequest(url, method=self.request.method, headers=headers, body=body,
                                         request_timeout=_TIMEOUT_S, follow_redirects=False,
                                         allow_nonstandard_methods=True)
        try:
            response = await httpclient.AsyncHTTPClient().fetch(request, raise_error=False)
        except OSError as exc:
            raise web.HTTPError(503, "cannot reach the hub's vqpu service at %s (%s)", base, exc) from None
        if response.code == 599:
            raise web.HTTPError(503, "cannot reach the hub's vqpu service at %s (%s)", base, response.error)
        self.set_status(response.code)
        self.set_header("Content-Type", response.headers.get("Content-Type", "application/json"))
        if "Location" in response.headers and response.code < 300:
            tail = response.headers["Location"].rsplit("/vqpu/api/", 1)[-1]
            self.set_header("Location", self.settings["vqpu_api_base"].rstrip("/") + "/" + tail)
        self.finish(response.body or b"")

    async def get(self, path: str) -> None:
        await self._forward(path)

    async def post(self, path: str) -> None:
        await self._forward(path)

    async def delete(self, path: str) -> None:
        await self._forward(path)


class ForwardSocketHandler(ForwardMixin, ExtensionHandlerMixin, WebSocketMixin, WebSocketHandler, JupyterHandler):
    """Relays the gateway's events WebSocket to the browser, message by message."""

    auth_resource = AUTH_RESOURCE
    _upstream_ws: Any = None
    _pump: asyncio.Task | None = None

    def set_default_headers(self) -> None:
        """No API headers (CSP etc.) on a websocket upgrade, as for kernel sockets."""

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        if not self.authorizer.is_authorized(self, self.current_user, "read", AUTH_RESOURCE):
            raise web.HTTPError(403)
        base, token = self.upstream
        url = "ws" + base[len("http"):] + "events"
        try:
            self._upstream_ws = await websocket_connect(
                httpclient.HTTPRequest(url, headers={"Authorization": f"token {token}"}, request_timeout=30))
        except httpclient.HTTPClientError as exc:
            raise web.HTTPError(exc.code if exc.code != 599 else 503, "the hub's vqpu service refused the events "
                                "socket (%s)", exc) from None
        except OSError as exc:
            raise web.HTTPError(503, "cannot reach the hub's vqpu service at %s (%s)", base, exc) from None
        await super().get(*args, **kwargs)

    async def open(self, *args: Any, **kwargs: Any) -> None:
        super().open(*args, **kwargs)
        self._pump = asyncio.get_running_loop().create_task(self._relay())

    async def _relay(self) -> None:
        try:
            while True:
                message = await self._upstream_ws.read_message()
                if message is None:  # the gateway closed: close ours, the client reconnects
                    self.close(1012, "the hub's vqpu service closed the events socket")
                    return
                await self.write_message(message)
        except WebSocketClosedError:
            pass

    def on_message(self, message: str | bytes) -> None:
        """Clients have nothing to say on this socket; ignore what they send."""

    def on_close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
        if self._upstream_ws is not None:
            self._upstream_ws.close()


def forward_handlers(prefix: str) -> list[tuple[str, type]]:
    """Routes that forward every ``{prefix}/...`` call (the events socket included) to the gateway."""
    prefix = prefix.rstrip("/")
    return [(f"{prefix}/events", ForwardSocketHandler), (f"{prefix}/(?P<path>.+)", ForwardHandler)]
