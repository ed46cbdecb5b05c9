"""Which Redis to talk to, and how.

One rule everywhere (CLI, agent, Client, server extension): an explicit URL,
else ``VQPU_REDIS_URL``, else the embedded default (started when needed).

TLS is a ``rediss://`` URL; its options are redis-py's, as query parameters,
passed through untouched: ``ssl_ca_certs`` (the CA that signed the server's
certificate), ``ssl_certfile`` / ``ssl_keyfile`` (a client certificate, when
the server requires one), ``ssl_cert_reqs``, ``ssl_check_hostname``. E.g.
``rediss://vqpu-agent:PASS@redis.example.org:6380/0?ssl_ca_certs=/etc/vqpu/ca.pem``.

Past one node (docs/operations.md, "Redis Cluster and Sentinel"):

- ``redis+cluster://[user:password@]host:port[,host:port...][/0]``: a Redis Cluster, any
  of its nodes as seeds; every device is one hash slot (``vqpu:{fez}:...``), so devices
  spread over the masters and every script stays on one slot.
- ``redis+sentinel://[user:password@]host:port[,host:port...]/service-name[/0]``: the
  master Sentinel names ``service-name`` now, looked up again on every reconnect, so a
  failover (or a restarted ex-master demoted to a replica) moves the clients with it.
  ``?sentinel_username=`` / ``?sentinel_password=`` when the sentinels require their own auth.
- ``rediss+cluster://`` / ``rediss+sentinel://``: the same over TLS (the ``ssl_*`` options above).

Durability (any scheme): ``?wait_replicas=N`` makes submit, claim and finish return only
after ``WAIT N`` confirms the write on N replicas (``wait_timeout_ms``, default 1000), and
``?wait_aof=1`` after ``WAITAOF 1 0`` (the master's own AOF fsync; Redis 7.2+ only: older
servers are detected and refused with a readable error). A shortfall raises NotDurable,
which a client retries with its idempotency key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from jupyter_vqpu.core.errors import ControlPlaneUnavailable, InvalidRequest

ENV_URL = "VQPU_REDIS_URL"
#: A trusted Redis user's URL that only (re)loads the control-plane scripts (see core/acl.py).
ENV_LOADER_URL = "VQPU_SCRIPT_LOADER_URL"


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    auth, sep, hosts = parts.netloc.rpartition("@")
    if sep and ":" in auth:
        return urlunsplit(parts._replace(netloc=f"{auth.split(':', 1)[0]}:***@{hosts}"))
    return url


SINGLE, CLUSTER, SENTINEL = "single", "cluster", "sentinel"
_SCHEMES = {"redis": (SINGLE, False), "rediss": (SINGLE, True), "unix": (SINGLE, False),
            "redis+cluster": (CLUSTER, False), "rediss+cluster": (CLUSTER, True),
            "redis+sentinel": (SENTINEL, False), "rediss+sentinel": (SENTINEL, True)}
_URL_FORMS = ("redis://host:port/0, rediss://..., unix:///path, redis+cluster://host:port[,host:port...], "
              "redis+sentinel://host:port[,host:port...]/service-name[/0] (rediss+... for TLS)")
#: Query options that are ours, not redis-py's (taken out before redis-py sees the URL).
_DURABILITY_OPTIONS = ("wait_replicas", "wait_timeout_ms", "wait_aof")
_SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")


@dataclass(frozen=True)
class Durability:
    """What "acknowledged" means: WAIT for ``replicas`` replicas (and WAITAOF where ``aof``)
    before submit, claim and finish return, within ``timeout_ms``. The default (0, False) is
    the single node's own word, as before: an operator raises it per deployment."""

    replicas: int = 0
    timeout_ms: int = 1000
    aof: bool = False

    @property
    def enabled(self) -> bool:
        return self.replicas > 0 or self.aof


@dataclass(frozen=True)
class Target:
    """A parsed control-plane URL: which kind of deployment, where, as whom."""

    kind: str
    url: str  # SINGLE: the URL redis-py gets (our options taken out)
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    username: str | None = None
    password: str | None = None
    db: int = 0
    tls: bool = False
    options: dict[str, str] = field(default_factory=dict)  # redis-py's own query options (ssl_*)
    sentinel_auth: dict[str, str] = field(default_factory=dict)
    durability: Durability = Durability()


def _bad_url(url: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"bad Redis URL {redact(url)}: {why}", f"use one of: {_URL_FORMS}")


def _int_option(url: str, options: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = options.pop(name, None)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise _bad_url(url, f"{name} must be a whole number from {low} to {high}, got {raw[:20]!r}")
    return int(raw)


def parse_url(url: str) -> Target:
    """The deployment a URL names (see the module docstring); a readable InvalidRequest if it names none."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in _SCHEMES:
        raise _bad_url(url, f"unknown scheme {scheme!r}" if scheme else "no scheme")
    kind, tls = _SCHEMES[scheme]
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    durability = Durability(
        replicas=_int_option(url, options, "wait_replicas", 0, 0, 100),
        timeout_ms=_int_option(url, options, "wait_timeout_ms", 1000, 1, 600_000),
        aof=bool(_int_option(url, options, "wait_aof", 0, 0, 1)))
    sentinel_auth = {k.split("_", 1)[1]: options.pop(k) for k in _SENTINEL_OPTIONS if k in options}
    if sentinel_auth and kind != SENTINEL:
        raise _bad_url(url, "sentinel_username/sentinel_password apply to redis+sentinel:// URLs only")
    if kind == SINGLE:
        plain = urlunsplit(parts._replace(query=urlencode(options)))
        return Target(SINGLE, plain, tls=tls, options=options, durability=durability)
    auth, _, hosts = parts.netloc.rpartition("@")
    username, _, password = auth.partition(":") if auth else ("", "", "")
    nodes = []
    for hostport in hosts.split(","):
        host, _, port = hostport.rpartition(":")
        if not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
            raise _bad_url(url, f"each node must be host:port, got {hostport[:60]!r}")
        nodes.append((host.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    service = ""
    if kind == SENTINEL:
        if not path:
            raise _bad_url(url, "a Sentinel URL names the master's service name after the nodes")
        service, path = unquote(path[0]), path[1:]
    if len(path) > 1 or (path and not (path[0].isascii() and path[0].isdigit())):
        raise _bad_url(url, f"unexpected path {parts.path[:60]!r}")
    db = int(path[0]) if path else 0
    if kind == CLUSTER and db != 0:
        raise _bad_url(url, "a Redis Cluster has only database 0")
    return Target(kind, "", tuple(nodes), service, unquote(username) or None, unquote(password) or None, db, tls,
                  options, sentinel_auth, durability)


#: What a failover or an outage raises, on any deployment: the call may succeed if retried shortly
#: (a 503 to an API caller). Cluster errors are not all RedisError subclasses; READONLY is a write
#: that reached a demoted master (Sentinel clients then reconnect to the new one).
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError, redis.TimeoutError, redis.exceptions.ReadOnlyError, redis.exceptions.BusyLoadingError,
    redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError, redis.exceptions.AskError,
    redis.exceptions.MasterDownError, redis.exceptions.RedisClusterException,
)


def durability_setting(replicas: int, timeout_ms: int, aof: bool) -> Durability | None:
    """A knob's durability (traitlets, ``--wait-replicas``): None when ``replicas`` < 0 and no
    AOF wait is asked, meaning "what the URL says" (``?wait_replicas=``, 0 without it)."""
    if replicas < 0 and not aof:
        return None
    if timeout_ms < 1:
        raise InvalidRequest(f"wait_timeout_ms must be at least 1, got {timeout_ms}", "e.g. 1000")
    return Durability(max(replicas, 0), timeout_ms, aof)


def durability_of(client: object) -> Durability:
    """The durability the client's URL asked for (``connect`` records it on the client)."""
    return getattr(client, "vqpu_durability", None) or Durability()


def is_cluster(client: object) -> bool:
    """Whether ``client`` talks to a Redis Cluster (calls that span devices are then split per device)."""
    return isinstance(client, redis.RedisCluster)


def node_client(client: redis.Redis, key: str) -> redis.Redis:
    """A client of the one node that serves ``key``: the cluster master of its slot, else ``client``.

    Used for what must run on the key's own node outside a script: TIME (the device's
    clock), and a write followed by WAIT on the same connection."""
    if is_cluster(client):
        return client.get_redis_connection(client.get_node_from_key(key))  # type: ignore[attr-defined]
    return client


def server_time_ms(client: redis.Redis, key: str | None = None) -> int:
    """Server time in ms: the node holding ``key`` (each device's clock is its own master's)."""
    if is_cluster(client) and key is None:
        client = client.get_redis_connection(client.get_random_primary_node())  # type: ignore[attr-defined]
    elif key is not None:
        client = node_client(client, key)
    sec, usec = client.time()
    return sec * 1000 + usec // 1000


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


def _client_options(target: Target) -> dict:
    """What every client gets, whichever the deployment: timeouts, retries, decoded replies."""
    return dict(
        decode_responses=True,
        socket_connect_timeout=5,
        # Longer than any blocking read we issue (XREAD/XREADGROUP BLOCK <= 5 s), so an idle
        # block is not mistaken for a dead connection; still finite, so a dead one is noticed.
        socket_timeout=30,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), 4),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


def _tls_options(target: Target) -> dict:
    """redis-py's ssl_* keywords from the URL's query (what ``from_url`` does for a single node)."""
    if not target.tls:
        if target.options:
            raise _bad_url("", f"unknown options {', '.join(sorted(target.options))} (ssl_* need a rediss+ URL)")
        return {}
    out: dict = {"ssl": True}
    for name, value in target.options.items():
        if not name.startswith("ssl_"):
            raise _bad_url("", f"unknown option {name!r}")
        out[name] = {"true": True, "false": False}.get(value.lower(), value)
    return out


def make_client(target: Target, *, embedded: bool = False) -> redis.Redis:
    """The one connection factory: a single node's client, a RedisCluster, or Sentinel's master client."""
    common = _client_options(target)
    if target.kind == SINGLE:
        extra = {"connection_class": EmbeddedConnection} if embedded else {}
        return redis.Redis.from_url(target.url, **extra, **common)
    auth = {"username": target.username, "password": target.password}
    if target.kind == CLUSTER:
        from redis.cluster import ClusterNode

        common.pop("retry_on_error")  # the cluster client retries connection errors itself
        return redis.RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in target.nodes], **auth,
                                  **_tls_options(target), **common)
    from redis.sentinel import Sentinel

    tls = _tls_options(target)
    sentinel = Sentinel(list(target.nodes), sentinel_kwargs={"socket_connect_timeout": 5, "socket_timeout": 5,
                                                             **tls, **target.sentinel_auth}, **tls)
    return sentinel.master_for(target.service, db=target.db, **auth, **common)


def connect(url: str | None = None, *, start_embedded: bool = True, check: bool = True) -> redis.Redis:
    """A Redis client that retries transient connection errors with backoff.

    Without a URL (here or in ``VQPU_REDIS_URL``) it is the embedded default's, and it
    follows that one across `vqpu down` / `vqpu up` (``EmbeddedConnection``). A cluster or
    Sentinel URL gives redis-py's cluster client or Sentinel's master client (``parse_url``);
    the URL's durability options ride on the client as ``vqpu_durability``."""
    resolved = resolve_url(url, start_embedded=start_embedded)
    target = parse_url(resolved)
    try:
        client = make_client(target, embedded=follows_embedded(url))
    except InvalidRequest as exc:
        raise _bad_url(resolved, exc.message.split(": ", 1)[-1]) from None
    except (redis.RedisError, redis.exceptions.RedisClusterException, OSError) as exc:
        # The cluster client reads the slot map when it is made: an unreachable seed list fails here.
        raise ControlPlaneUnavailable(f"cannot reach the control plane at {redact(resolved)} ({exc})",
                                      _unreachable_hint(resolved, exc)) from None
    client.vqpu_durability = target.durability  # type: ignore[attr-defined]
    client.vqpu_kind = target.kind  # type: ignore[attr-defined]
    if check:
        try:
            client.ping()
        except redis.AuthenticationError as exc:
            raise ControlPlaneUnavailable(
                f"the control plane at {redact(resolved)} refused our credentials ({exc})",
                f"check the password in the URL or in {ENV_URL}",
            ) from None
        except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.RedisClusterException, OSError) as exc:
            raise ControlPlaneUnavailable(
                f"cannot reach the control plane at {redact(resolved)} ({exc})", _unreachable_hint(resolved, exc)
            ) from None
    return client


def _unreachable_hint(url: str, exc: BaseException) -> str:
    """What to do about a failed connection; TLS mistakes get their own advice."""
    text = str(exc).lower()
    tls = urlsplit(url).scheme.startswith("rediss")
    if tls and ("certificate" in text or "ssl" in text or "tls" in text):
        return ("the TLS handshake failed: give the CA that signed the server's certificate as ?ssl_ca_certs=FILE "
                "(and ?ssl_certfile=/ssl_keyfile= if the server requires a client certificate)")
    if not tls and ("reset by peer" in text or "closed by server" in text or "connection closed" in text):
        return "the server closed the connection at once: if it only speaks TLS, use a rediss:// URL"
    if "sentinel" in urlsplit(url).scheme and "master" in text:
        return "the sentinels do not know that service name (or no master is up): check it with " \
               "`redis-cli -p SENTINEL_PORT sentinel masters`"
    return f"start it with `vqpu up`, or set {ENV_URL} / --redis-url to a running Redis"
