"""A Jupyter server with the vqpu extension for tests: two token users (alice, bob), the server config
fixture, and helpers to read a response or a failure."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jupyter_server.auth import Authorizer, IdentityProvider, User
from tornado.httpclient import HTTPClientError

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
