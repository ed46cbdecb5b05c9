"""A Jupyter server with the vqpu extension for tests: two token users (alice, bob), the server config
fixture, and helpers to read a response or a failure."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from jupyter_server.auth import Authorizer, IdentityProvider, User
from tornado.httpclient import HTTPClientError

from tests.support import free_port, wait_for

TOKENS = {"alice-token": "alice", "bob-token": "bob"}


ALICE = {"Authorization": "token alice-token"}


BOB = {"Authorization": "token bob-token"}


class TwoUsers(IdentityProvider):
    """Maps the test tokens to users, from the Authorization header or ``?token=`` (websockets)."""

    def get_user(self, handler: Any) -> User | None:
        auth = handler.request.headers.get("Authorization", "")
        token = (
            auth[len("token ") :].strip() if auth.lower().startswith("token ") else handler.get_argument("token", "")
        )
        name = TOKENS.get(token)
        if name is None:
            return None
        handler._token_authenticated = True  # token auth: no XSRF cookie needed, as for real tokens
        return User(username=name)


class VqpuUsers(Authorizer):
    """alice and bob may use the vqpu resource (and nothing else matters here)."""

    def is_authorized(self, handler: Any, user: User, action: str, resource: str) -> bool:
        return user.username in TOKENS.values()


@pytest.fixture
def jp_server_config(redis_url, seeded):
    return {
        "ServerApp": {
            "jpserver_extensions": {"jupyter_vqpu_server": True},
            "identity_provider_class": TwoUsers,
            "authorizer_class": VqpuUsers,
        },
        "VqpuApp": {"redis_url": redis_url, "events_block_ms": 200, "devices_interval": 2},
    }


@pytest.fixture
def jp_auth_header():
    return ALICE


def body(response: Any) -> Any:
    return json.loads(response.body)


async def fails(fetch_call: Any) -> tuple[int, dict]:
    """Await a request that must fail; its status and JSON body."""
    with pytest.raises(HTTPClientError) as info:
        await fetch_call
    raw = info.value.response.body if info.value.response is not None else b""
    try:
        return info.value.code, json.loads(raw or b"{}")
    except ValueError:
        return info.value.code, {}


@contextlib.contextmanager
def jupyter_server_process(tmp_path: Path, env: dict[str, str], *args: str, ready_path: str = "vqpu/api/devices"):
    """A real ``jupyter server`` subprocess with the vqpu extension on a free loopback port, started with
    ``env`` (the caller's choice of VQPU_* variables) and extra ``args``; ready once ``ready_path``
    answers 200. Yields (url, headers, proc, log_path, port); stops it by its pid."""
    port, token = free_port(), secrets.token_hex(16)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("VQPU_", "JUPYTERHUB_"))}
    base.update(JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), VQPU_HOME=str(tmp_path / "vqpu-home"), **env)
    log_path = tmp_path / "server.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False",
         f"--ServerApp.root_dir={tmp_path}", "--ServerApp.jpserver_extensions={'jupyter_vqpu_server': True}",
         "--allow-root", *args],
        env=base, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp_path)
    url, headers = f"http://127.0.0.1:{port}", {"Authorization": f"token {token}"}

    def ready() -> bool:
        assert proc.poll() is None, log_path.read_text()[-2000:]
        try:
            return requests.get(f"{url}/{ready_path}", headers=headers, timeout=10).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_for(ready, 120, "the jupyter server to answer")  # a cold start imports jupyter_server on a busy box
        yield url, headers, proc, log_path, port
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
