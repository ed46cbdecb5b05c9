"""The kernel's way to the control plane: the server extension's HTTP API.

Kernels never hold Redis credentials. The server extension (or the hub
service) puts its API URL and a token into the environment of the kernels it
starts; this transport uses them. Only the standard library is used here, so
the blocking calls work in any thread and at import time cost nothing.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from jupyter_vqpu.core.errors import ControlPlaneUnavailable, VqpuError
from jupyter_vqpu.core.lifecycle import follow
from jupyter_vqpu.core.task import Task

ENV_API_URL = "VQPU_API_URL"
ENV_API_TOKEN = "VQPU_API_TOKEN"


def api_token() -> str:
    """The token to present to the API: the one our server gave us, else the hub's."""
    return os.environ.get(ENV_API_TOKEN) or os.environ.get("JUPYTERHUB_API_TOKEN") or ""


def api_from_env() -> tuple[str, str] | None:
    """(API URL, token) that the server extension or the hub gave this process, if any."""
    url = os.environ.get(ENV_API_URL)
    if not url:
        return None
    return url.rstrip("/") + "/", api_token()


class ApiError(VqpuError):
    """An error the API answered with; keeps its status and code."""

    def __init__(self, status: int, code: str, message: str, hint: str = "") -> None:
        super().__init__(message, hint)
        self.http_status = status
        self.code = code


class HttpTransport:
    """Blocking JSON calls to ``{base}/vqpu/api/``."""

    def __init__(self, api_url: str, token: str = "", timeout: float = 30.0) -> None:
        self.api_url = api_url.rstrip("/") + "/"
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None, *, timeout: float | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.api_url + path.lstrip("/"), data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"token {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                raw = resp.read()
                return json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            try:
                err = json.loads(exc.read() or b"{}")
            except ValueError:
                err = {}
            raise ApiError(exc.code, err.get("error", "http_error"),
                           err.get("message") or f"the vQPU API answered {exc.code} {exc.reason}",
                           err.get("hint", "")) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ControlPlaneUnavailable(
                f"cannot reach the vQPU service at {self.api_url} ({getattr(exc, 'reason', exc)})",
                "is the Jupyter server (or the hub's vqpu service) running?",
            ) from None

    # Transport protocol (see client.Task)
    def status(self, task_id: str) -> dict[str, Any]:
        return self.request("GET", f"tasks/{urllib.parse.quote(task_id)}")

    def fetch_result(self, task_id: str) -> dict[str, Any] | None:
        return self.status(task_id)

    def cancel(self, task_id: str) -> dict[str, Any]:
        return self.request("DELETE", f"tasks/{urllib.parse.quote(task_id)}")

    def events(self, cursor: str | None, timeout: float) -> tuple[list[dict[str, Any]], str]:
        """Long-poll the caller's events after ``cursor``."""
        query = urllib.parse.urlencode({"cursor": cursor or "", "timeout": f"{timeout:g}"})
        reply = self.request("GET", f"events/poll?{query}", timeout=timeout + 15)
        return reply.get("events", []), reply.get("cursor", cursor or "")

    def watch(self, task_id: str, timeout: float | None = None, on_idle: Callable[[], None] | None = None):
        """Yield the task's view now and whenever it changes, until it is final (long-poll, no busy loop)."""
        cursor = [self.events(None, 0)[1]]

        def changed(seconds: float) -> bool:
            events, cursor[0] = self.events(cursor[0], seconds)
            return not events or any(e.get("task") == task_id for e in events)

        return follow(task_id, lambda: self.status(task_id), changed, timeout,
                      f"wait longer, or follow it with `%vqpu status {task_id}`", on_idle)

    def wait(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        view: dict[str, Any] = {}
        for view in self.watch(task_id, timeout):
            pass
        return view


class ApiClient:
    """The same client API as ``Client``, over HTTP (kernels, students' terminals)."""

    def __init__(self, api_url: str | None = None, token: str | None = None) -> None:
        if api_url is None:
            found = api_from_env()
            if found is None:
                raise ControlPlaneUnavailable("no vQPU API configured", f"set {ENV_API_URL} (and {ENV_API_TOKEN})")
            api_url, env_token = found
            token = token if token is not None else env_token
        self.transport = HttpTransport(api_url, token or "")

    def submit(self, circuit: Any, device: str = "fez", shots: int = 1024, **kw: Any) -> Task:
        """One task: a circuit, or a list of them (one claim, one job, a result per circuit); as ``Client.submit``."""
        from jupyter_vqpu.core.circuits import batch_to_wire, to_wire

        fmt = kw.pop("circuit_format", None)
        body = {"device": device, "shots": shots, **{k: v for k, v in kw.items() if v is not None}}
        if isinstance(circuit, (list, tuple)):
            body["circuits"] = batch_to_wire(circuit, fmt)
        else:
            fmt, body["circuit"] = to_wire(circuit, fmt)
            if fmt:
                body["circuit_format"] = fmt
        return Task(self.transport, self.transport.request("POST", "tasks", body))

    def task(self, task_id: str) -> Task:
        return Task(self.transport, self.transport.status(task_id))

    def list(self, limit: int = 50, *, owner: str | None = None, group: str | None = None) -> list[dict[str, Any]]:
        """Your tasks, newest first; an instructor may name another ``owner`` or a course ``group``."""
        query = urllib.parse.urlencode({k: v for k, v in (("owner", owner), ("group", group)) if v})
        return self.transport.request("GET", "tasks" + (f"?{query}" if query else ""))[:limit]

    def wait(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        return self.transport.wait(task_id, timeout)

    def fetch_result(self, task_id: str) -> dict[str, Any] | None:
        return self.transport.fetch_result(task_id)

    def cancel(self, task_id: str) -> dict[str, Any]:
        return self.transport.cancel(task_id)

    def devices(self) -> list[dict[str, Any]]:
        return self.transport.request("GET", "devices")

    def snapshot(self, device: str, snapshot_id: str | None = None) -> dict[str, Any]:
        path = f"devices/{device}/snapshot" + (f"/{snapshot_id}" if snapshot_id else "")
        return self.transport.request("GET", path)
