"""Which Redis to talk to, and how.

One rule everywhere (CLI, agent, Client, server extension): an explicit URL,
else ``VQPU_REDIS_URL``, else the embedded default (started when needed).
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from .errors import ControlPlaneUnavailable

ENV_URL = "VQPU_REDIS_URL"


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def resolve_url(url: str | None = None, *, start_embedded: bool = True) -> str:
    if url:
        return url
    env = os.environ.get(ENV_URL)
    if env:
        return env
    from . import embedded

    return embedded.ensure_running() if start_embedded else embedded.url()


def connect(url: str | None = None, *, start_embedded: bool = True, check: bool = True) -> redis.Redis:
    """A Redis client that retries transient connection errors with backoff."""
    resolved = resolve_url(url, start_embedded=start_embedded)
    client = redis.Redis.from_url(
        resolved,
        decode_responses=True,
        socket_connect_timeout=5,
        # Longer than any blocking read we issue (XREAD/XREADGROUP BLOCK <= 5 s), so an idle
        # block is not mistaken for a dead connection; still finite, so a dead one is noticed.
        socket_timeout=30,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), 4),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )
    if check:
        try:
            client.ping()
        except redis.AuthenticationError as exc:
            raise ControlPlaneUnavailable(
                f"the control plane at {redact(resolved)} refused our credentials ({exc})",
                f"check the password in the URL or in {ENV_URL}",
            ) from None
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise ControlPlaneUnavailable(
                f"cannot reach the control plane at {redact(resolved)} ({exc})",
                f"start it with `vqpu up`, or set {ENV_URL} / --redis-url to a running Redis",
            ) from None
    return client
