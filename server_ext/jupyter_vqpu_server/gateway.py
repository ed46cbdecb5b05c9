"""``vqpu gateway``: the control plane's API run once for a whole JupyterHub, as a hub service.

It serves the very routes of the server extension (``handlers.API_ROUTES``, the
same endpoint classes and the same ``VqpuService``) under the service's prefix,
e.g. ``/services/vqpu/api/``. Only the way a request becomes a ``Caller``
differs: here it is JupyterHub's word, through ``HubOAuth``:

- ``Authorization: token <JUPYTERHUB_API_TOKEN>`` (kernels, terminals, the
  per-user server extension forwarding the lab panel's calls), or
- the browser's OAuth cookie (``/services/vqpu/`` starts the login), accepted
  for writes only with an XSRF token, as every JupyterHub service does.

The hub checks that the token may access this service
(``access:services!service=vqpu``); the token's custom scopes then say what
the caller may do (see ``caller.py``). Identity and groups always come from the
hub, never from the request. Per-group quotas (``group_limits``) pick the
``Limits`` each submission is checked against.

Only this process and the agents hold Redis credentials.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import fields, replace
from typing import Any

from tornado import httpclient, web
from tornado.websocket import WebSocketHandler
from traitlets import Dict, Float, Int, List, Unicode, default, validate
from traitlets.config import Application

from jupyter_vqpu.core.control import Limits
from jupyter_vqpu.core.errors import VqpuError
from jupyter_vqpu_server.caller import SCOPE_INSTRUCT, Caller, caller_from_hub
from jupyter_vqpu_server.handlers import ApiMixin, api_handlers
from jupyter_vqpu_server.service import VqpuService
from jupyter_vqpu_server.settings import ServiceSettings

log = logging.getLogger("vqpu.gateway")

LIMIT_FIELDS = tuple(f.name for f in fields(Limits))
#: Limits where 0 means "no limit": for these, 0 is the most generous value.
_ZERO_UNLIMITED = ("max_queued_per_owner", "submissions_per_minute")


def _limits_from(values: dict[str, Any], base: Limits, where: str) -> Limits:
    unknown = sorted(set(values) - set(LIMIT_FIELDS))
    if unknown:
        raise VqpuError(f"unknown limit(s) {', '.join(unknown)} in {where}", f"known limits: {', '.join(LIMIT_FIELDS)}")
    bad = [k for k, v in values.items() if isinstance(v, bool) or not isinstance(v, int) or v < 0]
    if bad:
        raise VqpuError(f"limit(s) {', '.join(bad)} in {where} must be whole numbers >= 0", "0 means no limit "
                        "for max_queued_per_owner and submissions_per_minute")
    return replace(base, **values)


def most_generous(limits: Iterable[Limits]) -> Limits:
    """Field by field, the most generous of several groups' limits (0 counts as unlimited where it means that)."""
    limits = list(limits)
    out = {}
    for name in LIMIT_FIELDS:
        values = [getattr(lim, name) for lim in limits]
        if name in _ZERO_UNLIMITED and 0 in values:
            out[name] = 0
        else:
            out[name] = max(values)
    return Limits(**out)


class Quotas:
    """Which ``Limits`` a caller's submissions are checked against.

    A user in one or more configured groups gets, limit by limit, the most
    generous value among those groups (a student who is also in a research
    group is not held to the class quota). A user in no configured group gets
    ``default``. Values a group leaves out come from ``default``."""

    def __init__(self, default: dict[str, Any], groups: dict[str, dict[str, Any]]) -> None:
        self.default = _limits_from(default, Limits(), "default_limits")
        self.groups = {g: _limits_from(v, self.default, f"group_limits[{g!r}]") for g, v in groups.items()}

    def for_caller(self, caller: Caller) -> Limits:
        mine = [self.groups[g] for g in sorted(caller.groups) if g in self.groups]
        return most_generous(mine) if mine else self.default


class GroupDirectory:
    """Members of hub groups, asked of the hub with the service's token and cached for ``ttl`` seconds.

    Needed for instructors: ``custom:vqpu:instruct!group=physics101`` names a
    group, and a task names only its owner."""

    def __init__(self, api_url: str, token: str, ttl: float = 60.0) -> None:
        self.api_url = api_url.rstrip("/") + "/"
        self.token = token
        self.ttl = ttl
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._groups_of: dict[str, frozenset[str]] = {}  # callers seen, for the metrics' per-group queue depth

    def cached(self, group: str) -> frozenset[str]:
        hit = self._cache.get(group)
        return hit[1] if hit else frozenset()

    async def members(self, group: str) -> frozenset[str]:
        hit = self._cache.get(group)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        url = self.api_url + "groups/" + urllib.parse.quote(group, safe="")
        request = httpclient.HTTPRequest(url, headers={"Authorization": f"token {self.token}"}, request_timeout=20)
        response = await httpclient.AsyncHTTPClient().fetch(request, raise_error=False)
        if response.code == 404:
            users: frozenset[str] = frozenset()
        elif response.code != 200:
            log.warning("vqpu: cannot read hub group %s (%s); the gateway's role needs read:groups", group,
                        response.code)
            return hit[1] if hit else frozenset()
        else:
            users = frozenset(json.loads(response.body).get("users") or [])
        self._cache[group] = (time.monotonic() + self.ttl, users)
        return users

    async def caller(self, model: dict[str, Any]) -> Caller:
        """The Caller for a hub user model, with the members of every group it instructs looked up."""
        for scope in model.get("scopes") or []:
            base, _, flt = scope.partition("!")
            if base == SCOPE_INSTRUCT and flt.startswith("group="):
                await self.members(flt[len("group="):])
        caller = caller_from_hub(model, self.cached)
        self._groups_of[caller.name] = caller.groups
        return caller

    def group_of(self, owner: str, preferred: Iterable[str] = ()) -> str:
        """The group a task owner counts under in the metrics: a quota group they belong to, else
        any hub group, else 'none'; 'unknown' for an owner not seen since the gateway started."""
        groups = self._groups_of.get(owner)
        if groups is None:
            return "unknown"
        mine = sorted(groups & frozenset(preferred)) or sorted(groups)
        return mine[0] if mine else "none"


# ------------------------------------------------------------ handler bases


def _hub_auth_class():
    from jupyterhub.services.auth import HubOAuth

    return HubOAuth


try:  # jupyterhub is the [hub] extra: import lazily where it is missing, so the extension never needs it
    from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated, UserNotAllowed
except ImportError:  # pragma: no cover - exercised only without the extra
    HubOAuthenticated = object  # type: ignore[assignment,misc]
    HubOAuthCallbackHandler = None  # type: ignore[assignment]
    UserNotAllowed = Exception  # type: ignore[assignment,misc]


class HubCallerMixin(HubOAuthenticated):
    """Authenticates with JupyterHub in ``prepare`` and sets ``caller``.

    No credentials: 401. A hub user or service the hub does not let access this
    service, or one without any vQPU scope: 403. A cookie counts for writes (and
    for non-navigation reads) only with a matching XSRF token (HubOAuth's rule)."""

    caller: Caller

    @property
    def hub_auth(self) -> Any:
        return self.settings["hub_auth"]

    @hub_auth.setter
    def hub_auth(self, value: Any) -> None:  # HubAuthenticated has a setter; settings are the source here
        raise AttributeError("hub_auth comes from the application settings")

    def get_login_url(self) -> str:
        raise web.HTTPError(401, "sign in to JupyterHub first")

    async def authenticate(self) -> None:
        model = await self.hub_auth.get_user(self, sync=False)
        if not model:
            raise web.HTTPError(401, "no valid JupyterHub token or login")
        try:
            model = self.check_hub_user(model)
        except UserNotAllowed:
            raise web.HTTPError(403, "%s %s may not access the vqpu service", model.get("kind", "user"),
                                model.get("name")) from None
        self.current_user = model
        self.caller = await self.settings["vqpu_directory"].caller(model)
        if not self.caller.any_right:
            raise web.HTTPError(403, "%s holds no vQPU scope (custom:vqpu:submit, :instruct or :admin)",
                                self.caller.name)


class HubApiBase(HubCallerMixin, web.RequestHandler):
    """The gateway's JSON handlers."""

    async def prepare(self) -> None:
        await self.authenticate()

    def check_xsrf_cookie(self) -> None:
        """HubOAuth checks XSRF where it accepts a cookie; tokens need none."""
        self.hub_auth.check_xsrf_cookie(self)


class HubSocketBase(HubCallerMixin, ApiMixin, WebSocketHandler):
    """The gateway's events socket: the same authentication before the upgrade."""

    async def get(self, *args: Any, **kwargs: Any) -> None:
        await self.authenticate()
        await super().get(*args, **kwargs)


class HubHomeHandler(HubCallerMixin, ApiMixin, web.RequestHandler):
    """``GET /services/vqpu/``: who you are to the gateway; starts the OAuth login in a browser.

    A browser without the service's cookie is sent through the hub's OAuth
    login and comes back with it. The reply carries the XSRF token that
    cookie-authenticated writes must send as ``X-XSRFToken``."""

    def get_login_url(self) -> str:
        return HubOAuthenticated.get_login_url(self)

    async def prepare(self) -> None:
        """Identify without blocking the loop; no user (or one not allowed here) goes to the login."""
        model = await self.hub_auth.get_user(self, sync=False)
        try:
            self.current_user = self.check_hub_user(model) if model else None
        except UserNotAllowed:
            raise web.HTTPError(403, "%s may not access the vqpu service", model.get("name")) from None

    @web.authenticated
    async def get(self) -> None:
        self.caller = await self.settings["vqpu_directory"].caller(self.current_user)
        c = self.caller
        self.write_json({
            "name": c.name, "groups": sorted(c.groups), "submit": c.submit, "operates": c.operates,
            "oversees_all": c.oversees_all, "courses": sorted(c.courses),
            "api": self.settings["vqpu_api_base"], "xsrf_token": self.xsrf_token.decode(),
        })


# ---------------------------------------------------------------- the app


class VqpuGateway(ServiceSettings, Application):
    """The vQPU control plane's API as a JupyterHub service (``vqpu gateway``)."""

    name = "vqpu-gateway"
    description = "Serve the vQPU API once for a whole JupyterHub (run it as a hub-managed service)."

    config_file = Unicode("", config=True, help="A Python config file (c.VqpuGateway....) to load first.")
    ip = Unicode(config=True, help="Interface to listen on (default: the host of $JUPYTERHUB_SERVICE_URL).")
    port = Int(config=True, help="Port to listen on (default: the port of $JUPYTERHUB_SERVICE_URL).")
    service_prefix = Unicode(config=True, help="URL prefix (default: $JUPYTERHUB_SERVICE_PREFIX, /services/vqpu/).")
    redis_url = Unicode("", config=True, help="Redis URL of the control plane (default: $VQPU_REDIS_URL).")
    devices = List(Unicode(), default_value=[], config=True,
                   help="Device names served. Empty: every registered device.")
    default_limits = Dict(
        default_value={}, config=True,
        help="Limits for users in none of group_limits' groups, e.g. {'max_shots': 20000, "
        "'max_queued_per_owner': 5, 'submissions_per_minute': 30}. Keys: " + ", ".join(LIMIT_FIELDS) + ".",
    )
    group_limits = Dict(
        default_value={}, config=True,
        help="Hub group -> limits (keys as in default_limits; what a group leaves out comes from default_limits). "
        "A user in several listed groups gets the most generous value of each limit among them.",
    )
    group_cache_seconds = Float(60.0, config=True, help="How long hub group membership is cached (instructors).")
    hub_cache_seconds = Int(60, config=True, help="How long the hub's answer for a token is cached.")
    events_block_ms = Int(5000, config=True, help="How long one blocking read of the events streams waits (ms).")
    devices_interval = Int(10, config=True, help="Seconds between device-status messages on the events socket.")
    worker_threads = Int(16, config=True, help="Threads for blocking Redis calls.")
    metrics_token = Unicode(config=True, help="Bearer token for Prometheus at {prefix}metrics "
                            "(default: $VQPU_METRICS_TOKEN; empty: only vQPU admins may read the metrics).")
    cookie_secret_file = Unicode("", config=True, help="File holding the cookie secret (default: a random one "
                                 "per start, so browser sessions end with a restart; the hub logs them in again).")

    aliases = {"config": "VqpuGateway.config_file", "port": "VqpuGateway.port", "ip": "VqpuGateway.ip",
               "redis-url": "VqpuGateway.redis_url"}

    @default("ip")
    def _ip_default(self) -> str:
        url = os.environ.get("JUPYTERHUB_SERVICE_URL", "")
        return urllib.parse.urlsplit(url).hostname or "127.0.0.1" if url else "127.0.0.1"

    @default("port")
    def _port_default(self) -> int:
        url = os.environ.get("JUPYTERHUB_SERVICE_URL", "")
        return (urllib.parse.urlsplit(url).port or 80) if url else 10101

    @default("service_prefix")
    def _prefix_default(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/vqpu/")

    @validate("service_prefix")
    def _slashes(self, proposal: Any) -> str:
        return "/" + proposal["value"].strip("/") + "/"

    @default("script_loader_url")
    def _script_loader_default(self) -> str:
        return os.environ.get("VQPU_SCRIPT_LOADER_URL", "")

    @default("metrics_token")
    def _metrics_token_default(self) -> str:
        return os.environ.get("VQPU_METRICS_TOKEN", "")

    def initialize(self, argv: list[str] | None = None) -> None:
        self.parse_command_line(argv)
        if self.config_file:
            self.load_config_file(self.config_file)
            self.parse_command_line(argv)  # the command line wins over the file

    def make_app(self) -> web.Application:
        """The tornado application: API routes, the OAuth callback, the home page and the metrics."""
        if HubOAuthCallbackHandler is None:
            raise VqpuError("the gateway needs JupyterHub's service library", "pip install 'jupyter-vqpu[hub]'")
        self.quotas = Quotas(self.default_limits, self.group_limits)
        hub_auth = _hub_auth_class()(parent=self, cache_max_age=self.hub_cache_seconds)
        if not hub_auth.api_token:
            raise VqpuError("no JupyterHub API token for the gateway",
                            "run it as a JupyterHub-managed service, or set $JUPYTERHUB_API_TOKEN")
        self.service = VqpuService(self.redis_url, script_loader_url=self.script_loader_url, parser=self.parser_pool(),
                                   devices=self.devices, limits=self.quotas.default,
                                   limits_for=self.quotas.for_caller, max_workers=self.worker_threads,
                                   events_block_ms=self.events_block_ms,
                                   durability=self.durability())
        self.service.warm_up()
        directory = GroupDirectory(hub_auth.api_url, hub_auth.api_token, self.group_cache_seconds)
        prefix = self.service_prefix
        secret = open(self.cookie_secret_file, "rb").read().strip() if self.cookie_secret_file else os.urandom(32)
        settings = {
            "hub_auth": hub_auth,
            "vqpu_service": self.service,
            "vqpu_directory": directory,
            "vqpu_api_base": prefix + "api",
            "vqpu_devices_interval": self.devices_interval,
            "vqpu_max_request_bytes": self.max_request_bytes,
            "vqpu_metrics_token": self.metrics_token,
            "vqpu_metrics_group_of": lambda owner: directory.group_of(owner, self.group_limits),
            "cookie_secret": secret,
            "log_function": _log_request,
            "websocket_ping_interval": 30,
        }
        return web.Application(gateway_routes(prefix), **settings)

    async def serve(self) -> None:
        app = self.make_app()
        # The handlers answer 413 from Content-Length; this also stops a chunked body that never ends.
        server = app.listen(self.port, self.ip, xheaders=True, max_body_size=self.max_request_bytes + 65536)
        self.service.pump.start()  # events, and the script guard, from the start
        log.info("vqpu gateway serving %sapi/ on http://%s:%s", self.service_prefix, self.ip, self.port)
        stop = asyncio.Event()
        import signal

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.stop()
        await self.service.close()

    def start(self) -> None:
        asyncio.run(self.serve())


def gateway_routes(prefix: str = "/services/vqpu/") -> list[tuple[str, type]]:
    """Every route the gateway serves: the shared API, the OAuth callback, the home page, the metrics.

    One list, used by the app and enumerated by the hub authorization-matrix test."""
    prefix = "/" + prefix.strip("/") + "/"
    routes: list[tuple[str, type]] = [
        (prefix + "oauth_callback", oauth_callback_handler()),
        (prefix.rstrip("/") + "/?", HubHomeHandler),
        *api_handlers(prefix + "api", HubApiBase, HubSocketBase),
    ]
    metrics = hub_metrics_handler()
    if metrics is not None:
        routes.append((prefix + "metrics", metrics))
    return routes


def oauth_callback_handler() -> type:
    """JupyterHub's OAuth callback, with the gateway's HubOAuth (which holds the login's PKCE state)."""

    class GatewayOAuthCallbackHandler(HubCallerMixin, HubOAuthCallbackHandler):
        pass

    return GatewayOAuthCallbackHandler


def _log_request(handler: web.RequestHandler) -> None:
    """One line per request, with the hub user; never the token."""
    status = handler.get_status()
    user = getattr(getattr(handler, "caller", None), "name", "-")
    level = logging.INFO if status < 400 else logging.WARNING
    ms = 1000 * handler.request.request_time()
    log.log(level, "%s %s %s %s %.1fms", status, handler.request.method, handler.request.path, user, ms,
            extra={"status": status, "method": handler.request.method, "path": handler.request.path, "user": user,
                   "duration_ms": round(ms, 1)})


def hub_metrics_handler() -> type | None:
    """The server extension's metrics handler (server_ext/jupyter_vqpu_server/metrics.py), authenticated the gateway's way.

    Prometheus uses the bearer token as on a single-user server; a signed-in
    user may read the metrics only as a vQPU admin (custom:vqpu:admin)."""
    try:
        from jupyter_vqpu_server.metrics import MetricsHandler
    except ImportError:  # pragma: no cover
        return None

    class _AdminsOnly:
        def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
            caller = getattr(handler, "caller", None)
            return bool(caller and caller.operates)

    class HubMetricsHandler(HubCallerMixin, MetricsHandler):
        authorizer = _AdminsOnly()

        async def prepare(self) -> None:
            if self._bearer_ok():
                self.current_user = None
                return
            try:
                await self.authenticate()
            except web.HTTPError as exc:
                if exc.status_code == 401:
                    self.current_user = None  # the handler answers 401 with its own hint
                    return
                raise

        def set_default_headers(self) -> None:
            self.set_header("X-Content-Type-Options", "nosniff")

    return HubMetricsHandler


def main(argv: list[str] | None = None, log_format: str = "human") -> int:
    """``vqpu gateway [--config FILE] [--VqpuGateway.trait=value ...]``."""
    from jupyter_vqpu.core.logs import configure

    configure(log_format)
    app = VqpuGateway.instance()
    app.initialize(argv)
    app.start()
    return 0
