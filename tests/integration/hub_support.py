"""A real JupyterHub for the hub tests: configurable-http-proxy, SimpleLocalProcessSpawner, DummyAuthenticator.

The hub runs ``docs/hub/jupyterhub_config.py`` (the documented configuration,
so the docs cannot rot) plus a small overlay with what a test needs: loopback
ports, a private state directory, the test authenticator and spawner, and a
``test-admin`` service token used only to mint users' tokens and start servers.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import requests

from tests.conftest import REPO
from tests.support import free_port

HUB_CONFIG = REPO / "docs" / "hub" / "jupyterhub_config.py"
CHP_BIN = REPO / ".ci" / "node" / "node_modules" / ".bin"
USERS = ("ada", "bob", "prof", "admin", "eve")  # two students, their instructor, the vQPU admin, an outsider

OVERLAY = """
c = get_config()  # noqa: F821
load_subconfig({docs!r})  # noqa: F821
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {proxy_port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.JupyterHub.db_url = "sqlite:///{state}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{state}/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = "{state}/jupyterhub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{state}/home/{{username}}"
c.Spawner.cmd = [{python!r}, "-m", "jupyterhub.singleuser"]
c.Spawner.env_keep = ["PATH", "PYTHONPATH", "LANG", "HOME_FOR_TESTS"]
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.Spawner.args = ["--allow-root"]  # CI runs as root; a no-op otherwise
c.JupyterHub.services.append({{"name": "test-admin", "api_token": {admin_token!r}}})
c.JupyterHub.load_roles.append({{"name": "test-admin", "services": ["test-admin"],
    "scopes": ["admin:users", "admin:servers", "tokens", "read:groups", "access:servers"]}})
"""


class Hub:
    """A running JupyterHub (a subprocess) and a way to act as each of its users."""

    def __init__(self, state: Path, redis_url: str) -> None:
        self.state = state
        self.redis_url = redis_url
        self.proxy_port = free_port()
        self.gateway_port = free_port()
        self.url = f"http://127.0.0.1:{self.proxy_port}"
        self.gateway_url = f"http://127.0.0.1:{self.gateway_port}"
        self.admin_token = secrets.token_hex(16)
        self.proc: subprocess.Popen | None = None
        self.tokens: dict[str, str] = {}

    # ------------------------------------------------------------ life cycle

    def start(self, timeout: float = 90) -> Hub:
        (self.state / "home").mkdir(parents=True, exist_ok=True)
        config = self.state / "jupyterhub_test_config.py"
        config.write_text(OVERLAY.format(
            docs=str(HUB_CONFIG), proxy_port=self.proxy_port, hub_port=free_port(), proxy_api_port=free_port(),
            state=self.state, python=sys.executable, admin_token=self.admin_token))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VQPU_", "JUPYTERHUB_", "JPY_"))}
        env.update(PATH=f"{CHP_BIN}:{env.get('PATH', '')}", PYTHONPATH=str(REPO), VQPU_REDIS_URL=self.redis_url,
                   VQPU_GATEWAY_URL=self.gateway_url, CONFIGPROXY_AUTH_TOKEN=secrets.token_hex(16))
        self.log = open(self.state / "jupyterhub.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(config)], cwd=self.state,
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                ok = requests.get(f"{self.url}/hub/api/", timeout=2).status_code == 200
                gw = requests.get(f"{self.url}/services/vqpu/api/devices", timeout=2).status_code == 401
                if ok and gw:
                    break
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"JupyterHub did not come up; log:\n{self.log_tail()}")
            time.sleep(0.2)
        for user in USERS:
            self.ensure_user(user)
        return self

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join((self.state / "jupyterhub.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # the hub stops its servers and the managed vqpu service
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()

    # ------------------------------------------------------------ hub API

    def hub_api(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"token {self.admin_token}", **kw.pop("headers", {})}
        return requests.request(method, f"{self.url}/hub/api/{path}", headers=headers, timeout=30, **kw)

    def ensure_user(self, name: str) -> None:
        if self.hub_api("GET", f"users/{name}").status_code == 404:
            assert self.hub_api("POST", f"users/{name}").status_code == 201
        r = self.hub_api("POST", f"users/{name}/tokens", json={"note": "hub test", "expires_in": 3600})
        assert r.status_code == 201, r.text
        self.tokens[name] = r.json()["token"]

    def start_server(self, name: str, timeout: float = 120) -> None:
        r = self.hub_api("POST", f"users/{name}/server")
        assert r.status_code in (201, 202, 400), r.text  # 400: already running
        deadline = time.monotonic() + timeout
        while True:
            server = (self.hub_api("GET", f"users/{name}").json().get("servers") or {}).get("")
            if server and server.get("ready"):
                return
            assert time.monotonic() < deadline, f"{name}'s server did not start:\n{self.log_tail()}"
            time.sleep(0.25)

    # ------------------------------------------------------------ as a user

    def api(self, user: str | None, method: str, path: str, *, base: str | None = None, **kw: Any) -> requests.Response:
        """A call to the gateway's API (through the hub's proxy) with ``user``'s token."""
        headers = dict(kw.pop("headers", {}))
        if user is not None:
            headers["Authorization"] = f"token {self.tokens[user]}"
        url = (base or f"{self.url}/services/vqpu/api/") + path
        return requests.request(method, url, headers=headers, timeout=60, allow_redirects=False, **kw)

    def browser(self, user: str) -> requests.Session:
        """A browser-like session signed in to the hub and, through OAuth, to the vqpu service."""
        s = requests.Session()
        s.get(f"{self.url}/hub/login", timeout=30)
        r = s.post(f"{self.url}/hub/login", data={"username": user, "password": "x", "_xsrf": s.cookies.get("_xsrf")},
                   timeout=30, allow_redirects=False)
        assert r.status_code == 302, (r.status_code, r.text[:300])
        home = s.get(f"{self.url}/services/vqpu/", timeout=60)  # hub login -> OAuth -> callback -> home
        assert home.status_code == 200, (home.status_code, home.url, home.text[:300])
        s.vqpu_home = home.json()  # type: ignore[attr-defined]
        return s

    # ------------------------------------------------------------ a user's kernel

    def run_in_kernel(self, user: str, cells: list[str], timeout: float = 180) -> list[str]:
        """Run cells in a new kernel of ``user``'s single-user server; each cell's text output (errors included)."""
        base = f"{self.url}/user/{user}/api/kernels"
        headers = {"Authorization": f"token {self.tokens[user]}"}
        r = requests.post(base, json={"name": "python3"}, headers=headers, timeout=60)
        assert r.status_code == 201, r.text
        kid = r.json()["id"]
        try:
            return asyncio.run(_execute(f"ws://127.0.0.1:{self.proxy_port}/user/{user}/api/kernels/{kid}/channels",
                                        headers, cells, timeout))
        finally:
            requests.delete(f"{base}/{kid}", headers=headers, timeout=60)


async def _execute(url: str, headers: dict, cells: list[str], timeout: float) -> list[str]:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    ws = await websocket_connect(HTTPRequest(url + f"?session_id={uuid.uuid4().hex}", headers=headers))
    outputs = []
    try:
        for code in cells:
            msg_id = uuid.uuid4().hex
            await ws.write_message(json.dumps({
                "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": "s",
                           "version": "5.3"},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                            "allow_stdin": False, "stop_on_error": True}}))
            text: list[str] = []
            deadline = time.monotonic() + timeout
            while True:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"cell timed out: {code[:80]!r}; output so far: {''.join(text)}"
                raw = await asyncio.wait_for(ws.read_message(), remaining)
                assert raw is not None, "the kernel's socket closed"
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream":
                    text.append(content["text"])
                elif kind in ("execute_result", "display_data"):
                    text.append(str(content["data"].get("text/plain", "")))
                elif kind == "error":
                    text.append(f"{content['ename']}: {content['evalue']}")
                elif kind == "status" and content["execution_state"] == "idle":
                    break
            outputs.append("".join(text))
    finally:
        ws.close()
    return outputs
