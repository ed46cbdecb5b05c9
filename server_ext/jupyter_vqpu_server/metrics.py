"""``GET {base_url}vqpu/metrics``: the control plane's Prometheus metrics.

Self-contained on purpose, so that both the per-user server extension and the
hub-wide gateway can route to it. It reads from the tornado settings:

- ``vqpu_service``: the VqpuService whose Redis client the collector reads;
- ``vqpu_metrics_token``: a bearer token for Prometheus (empty: none accepted);
- ``vqpu_metrics_group_of``: optional ``owner -> group`` callable for the
  queue-depth-by-group metric.

Who may read it: Prometheus with ``Authorization: Bearer <vqpu_metrics_token>``,
or an authenticated user whom the server's authorizer allows to ``read`` the
``vqpu_metrics`` resource (on a single-user server that is its owner; a hub
deployment's authorizer grants it to admins). No credentials: 401; a user who
is not allowed: 403. Queue depth per group is operator data, not a student's.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Any

import redis
from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import JupyterHandler
from tornado import web

from jupyter_vqpu_server.collector import VqpuCollector, render

AUTH_RESOURCE = "vqpu_metrics"
_COLLECTOR = "vqpu_metrics_collector"


class MetricsHandler(JupyterHandler):
    """Prometheus text (or OpenMetrics, if the scraper asks for it) from Redis, at each scrape."""

    auth_resource = AUTH_RESOURCE

    def _bearer_ok(self) -> bool:
        expected = self.settings.get("vqpu_metrics_token") or ""
        auth = self.request.headers.get("Authorization", "")
        scheme, _, given = auth.partition(" ")
        if not expected or scheme.lower() != "bearer" or not given.strip():
            return False
        return hmac.compare_digest(given.strip().encode(), expected.encode())

    def _check_access(self) -> None:
        if self._bearer_ok():
            return
        user = self.current_user
        if user is None:
            raise web.HTTPError(401, "metrics need a bearer token or a signed-in administrator")
        if not self.authorizer.is_authorized(self, user, "read", AUTH_RESOURCE):
            raise web.HTTPError(403, "%s may not read the vQPU metrics", getattr(user, "username", "this user"))

    def _collector(self) -> VqpuCollector:
        """One collector per application, built on first scrape (the service connects lazily)."""
        collector = self.settings.get(_COLLECTOR)
        if collector is None:
            service = self.settings["vqpu_service"]
            # the devices this server serves, if it is limited to some; else every registered one
            devices = sorted(getattr(service, "allowed", ())) or None
            collector = VqpuCollector(service.cp.redis, devices=devices,
                                      group_of=self.settings.get("vqpu_metrics_group_of"))
            self.settings[_COLLECTOR] = collector
        return collector

    @allow_unauthenticated  # the bearer token is checked here, not by the server's login
    async def get(self) -> None:
        self._check_access()
        accept = self.request.headers.get("Accept", "")
        try:
            body, content_type = await asyncio.get_running_loop().run_in_executor(
                None, lambda: render(self._collector(), accept)
            )
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise web.HTTPError(503, "the vQPU control plane (Redis) is unreachable: %s", exc) from None
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors as one readable JSON line, like the API's (never a traceback or an HTML page)."""
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        message = self._reason
        if isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        elif exc is not None and not isinstance(exc, web.HTTPError):
            status_code, message = 500, "internal error in the vQPU metrics; the server log has the details"
        self.set_status(status_code)
        self.set_header("Content-Type", "application/json")
        if status_code == 401:  # set here: tornado clears the headers before write_error
            self.set_header("WWW-Authenticate", 'Bearer realm="vqpu metrics"')
        self.finish(json.dumps({"error": {401: "unauthenticated", 403: "forbidden", 503: "unavailable"}.get(
            status_code, "http_error"), "message": message, "hint": _HINTS.get(status_code, "")}))


_HINTS = {
    401: "send 'Authorization: Bearer <token>' (VqpuApp.metrics_token), or sign in as an administrator",
    403: "ask the operator; metrics are for whoever runs the service",
    503: "check Redis; the service retries on the next scrape",
}
