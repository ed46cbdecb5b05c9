"""Which Redis to talk to, and how.

One rule everywhere (CLI, agent, Client, server extension): an explicit URL,
else ``VQPU_REDIS_URL``, else the embedded default (started when needed).

TLS is a ``rediss://`` URL; its options are redis-py's, as query parameters,
passed through untouched: ``ssl_ca_certs`` (the CA that signed the server's
certificate), ``ssl_certfile`` / ``ssl_keyfile`` (a client certificate, when
the server requires one), ``ssl_cert_reqs``, ``ssl_check_hostname``. E.g.
``rediss://vqpu-agent:PASS@redis.example.org:6380/0?ssl_ca_certs=/etc/vqpu/ca.pem``.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from jupyter_vqpu.core.errors import ControlPlaneUnavailable

ENV_URL = "VQPU_REDIS_URL"
#: A trusted Redis user's URL that only (re)loads the control-plane scripts (see core/acl.py).
ENV_LOADER_URL = "VQPU_SCRIPT_LOADER_URL"


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
    from jupyter_vqpu.core import embedded

    return embedded.ensure_running() if start_embedded else embedded.url()


class EmbeddedConnection(redis.Connection):
    """A connection to the embedded default that looks up its port again on every (re)connect.

    ``vqpu down`` then ``vqpu up`` brings the embedded Redis back on a new free port (same
    password, same data); a long-lived client (the Jupyter server extension, a notebook's
    ``Client()``) follows it on its next retry instead of knocking at the old port forever."""

    def _connect(self):  # type: ignore[override]
        from jupyter_vqpu.core import embedded

        if embedded.status()["redis_pid"] is None:
            raise redis.ConnectionError("the embedded vQPU control plane is not running: start it with `vqpu up`")
        try:
            self.port = urlsplit(embedded.url()).port or self.port
        except (ControlPlaneUnavailable, OSError, ValueError):
            pass  # no state yet: the port we have is as good as any, and a refusal says why
        return super()._connect()


def follows_embedded(url: str | None) -> bool:
    """True when ``url`` (as given to ``connect``) means the embedded default: no URL here or in the environment."""
    return not url and not os.environ.get(ENV_URL)


def connect(url: str | None = None, *, start_embedded: bool = True, check: bool = True) -> redis.Redis:
    """A Redis client that retries transient connection errors with backoff.

    Without a URL (here or in ``VQPU_REDIS_URL``) it is the embedded default's, and it
    follows that one across `vqpu down` / `vqpu up` (``EmbeddedConnection``)."""
    resolved = resolve_url(url, start_embedded=start_embedded)
    extra = {"connection_class": EmbeddedConnection} if follows_embedded(url) else {}
    client = redis.Redis.from_url(
        resolved,
        **extra,
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
                f"cannot reach the control plane at {redact(resolved)} ({exc})", _unreachable_hint(resolved, exc)
            ) from None
    return client


def _unreachable_hint(url: str, exc: BaseException) -> str:
    """What to do about a failed connection; TLS mistakes get their own advice."""
    text = str(exc).lower()
    tls = urlsplit(url).scheme == "rediss"
    if tls and ("certificate" in text or "ssl" in text or "tls" in text):
        return ("the TLS handshake failed: give the CA that signed the server's certificate as ?ssl_ca_certs=FILE "
                "(and ?ssl_certfile=/ssl_keyfile= if the server requires a client certificate)")
    if not tls and ("reset by peer" in text or "closed by server" in text or "connection closed" in text):
        return "the server closed the connection at once: if it only speaks TLS, use a rediss:// URL"
    return f"start it with `vqpu up`, or set {ENV_URL} / --redis-url to a running Redis"
