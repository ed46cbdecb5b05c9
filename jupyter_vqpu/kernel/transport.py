"""Which way a client-side surface reaches the control plane: one rule for all of them.

The magic, the Qiskit backend and the CLI all ask :func:`resolve_client`, so a
kernel, a terminal and a script with the same environment reach the same place:

1. an explicit Redis URL: the operator's direct ``Client`` over Redis;
2. an explicit API URL: the HTTP API (token from ``VQPU_API_TOKEN`` or
   ``JUPYTERHUB_API_TOKEN``);
3. ``VQPU_REDIS_URL`` in the environment: an operator's shell, over Redis;
4. ``VQPU_API_URL`` in the environment: what a Jupyter server or the hub gives
   its kernels and terminals, over HTTP (they hold no Redis credentials);
5. otherwise the embedded default (a local Redis, started when needed).

The HTTP client is pure standard library; the Redis one is imported only when
the rule picks it, so a kernel that speaks HTTP never loads redis.
"""

from __future__ import annotations

import os
from typing import Any

from jupyter_vqpu.kernel.http import ENV_API_URL, ApiClient, api_token

ENV_REDIS_URL = "VQPU_REDIS_URL"


def api_client(redis_url: str | None = None, api_url: str | None = None) -> ApiClient | None:
    """The HTTP client when the rule (module doc) picks the API, else None."""
    if redis_url:
        return None
    if api_url:
        return ApiClient(api_url, api_token())
    if os.environ.get(ENV_REDIS_URL):
        return None
    if os.environ.get(ENV_API_URL):
        return ApiClient()
    return None


def resolve_client(redis_url: str | None = None, api_url: str | None = None) -> Any:
    """A client with the same API either way (``submit``, ``task``, ``list``, ``devices``, ...)."""
    api = api_client(redis_url, api_url)
    if api is not None:
        return api
    from jupyter_vqpu.core.client import Client

    return Client(redis_url)
