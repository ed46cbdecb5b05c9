"""A real redis-server on a loopback port, for the tests and the benchmarks alike."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class TlsFiles:
    """PEM files for a TLS-only redis-server (made at test time, e.g. with trustme; never committed).

    ``client_cert``/``client_key`` are what the tests' own clients present; with
    ``require_client_cert`` the server refuses clients without one (mutual TLS)."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path | None = None
    client_key: Path | None = None
    require_client_cert: bool = False

    def server_args(self) -> list[str]:
        return ["--tls-cert-file", str(self.cert), "--tls-key-file", str(self.key), "--tls-ca-cert-file", str(self.ca),
                "--tls-auth-clients", "yes" if self.require_client_cert else "no"]

    def url_query(self, with_client_cert: bool = True) -> str:
        """redis-py's TLS options as URL query parameters (``rediss://...?ssl_ca_certs=...``)."""
        params = {"ssl_ca_certs": str(self.ca)}
        if with_client_cert and self.client_cert and self.client_key:
            params.update(ssl_certfile=str(self.client_cert), ssl_keyfile=str(self.client_key))
        return urlencode(params)


#: Redis 7's default ``shutdown-timeout``: how long a master may wait on SIGTERM for lagging replicas
#: (a teardown gives a server that, plus 20 s, before SIGKILL).
REDIS_SHUTDOWN_TIMEOUT_S = 10


def end_process(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM a process this test suite started, again each second (a redis-server refuses a SIGTERM
    while it writes its initial AOF, logs "Writing initial AOF, can't exit." and runs on: a replica
    just after a full sync), and SIGKILL it if it has not exited after ``grace_s``."""
    deadline = time.monotonic() + grace_s
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait(10)
            return
        proc.terminate()
        try:
            proc.wait(1)
        except subprocess.TimeoutExpired:
            pass


class RedisServer:
    """A real redis-server on a loopback port, with AOF in its own directory.

    With ``tls``, it listens for TLS only (no plaintext port) and ``url`` is a
    ``rediss://`` URL that trusts the test CA and presents the client certificate."""

    def __init__(self, directory: Path, port: int | None = None, password: str | None = None,
                 tls: TlsFiles | None = None, username: str | None = None, extra_args: tuple[str, ...] = ()) -> None:
        """``username`` names an ACL user (defined by ``extra_args``, e.g. ``--aclfile``) that ``url``
        logs in as; without it ``password`` is the default user's (``--requirepass``)."""
        self.dir = directory
        self.port = port or free_port()
        self.password = password
        self.tls = tls
        self.username = username
        self.extra_args = tuple(extra_args)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f"{self.username or ''}:{self.password}@" if self.password else ""
        if self.tls:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?{self.tls.url_query()}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def plain_url(self) -> str:
        """The same server as a plaintext URL: what a client without TLS would try."""
        auth = f"{self.username or ''}:{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.dir.mkdir(parents=True, exist_ok=True)
        ports = ["--port", "0", "--tls-port", str(self.port), *self.tls.server_args()] if self.tls else \
            ["--port", str(self.port)]
        cmd = [binary, *ports, "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
               "--appendfsync", "everysec", "--dir", str(self.dir), "--maxmemory-policy", "noeviction",
               "--logfile", str(self.dir / "redis.log")]
        if self.password and not self.username:
            cmd += ["--requirepass", self.password]
        cmd += self.extra_args
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    log = (self.dir / "redis.log").read_text(errors="replace") if (self.dir / "redis.log").exists() else ""
                    last = log.strip().splitlines()[-1] if log.strip() else "no log"
                    raise RuntimeError(f"redis-server did not start ({last}); see {self.dir / 'redis.log'}") from None
                time.sleep(0.01)

    def kill(self, sig: int = 9) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)

    def stop(self) -> None:
        """Ends the server (``end_process``): a failover test's teardown failed when one SIGTERM, sent
        while the restarted old master wrote its initial AOF as a replica, was refused and never repeated."""
        if self.proc:
            end_process(self.proc, REDIS_SHUTDOWN_TIMEOUT_S + 20)


def free_cluster_port() -> int:
    """A loopback port whose cluster-bus port (port + 10000) is free too."""
    import random

    for _ in range(200):
        port = random.randint(20000, 29999)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free pair of ports for a cluster node")


def _poll(check, what: str, timeout: float = 30.0, every: float = 0.05):
    """``check()``'s first truthy value, polled until ``timeout`` (a RuntimeError naming ``what`` after)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except Exception:  # noqa: BLE001 - a node still starting answers with errors
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(every)


class RedisClusterServers:
    """A real Redis Cluster on loopback: ``masters`` masters, each with ``replicas`` replicas
    (``redis-cli --cluster create``), AOF on, a short node timeout so a failover takes seconds."""

    def __init__(self, directory: Path, masters: int = 3, replicas: int = 1, password: str | None = None) -> None:
        self.dir = directory
        self.masters = masters
        self.replicas = replicas
        self.password = password
        self.nodes: list[RedisServer] = []

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return "redis+cluster://" + auth + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:2]) + "/0"

    def start(self) -> RedisClusterServers:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed (Debian: apt-get install redis-tools)")
        for i in range(self.masters * (1 + self.replicas)):
            port = free_cluster_port()
            auth = ("--masterauth", self.password) if self.password else ()
            self.nodes.append(RedisServer(self.dir / f"node-{port}", port=port, password=self.password, extra_args=(
                "--cluster-enabled", "yes", "--cluster-config-file", str(self.dir / f"node-{port}" / "nodes.conf"),
                "--cluster-node-timeout", "1500", "--repl-diskless-sync-delay", "0", *auth)).start())
        auth_args = ["-a", self.password, "--no-auth-warning"] if self.password else []
        out = subprocess.run([cli, *auth_args, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                              "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                             capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {out.stdout[-2000:]} {out.stderr[-2000:]}")
        self.wait_healthy()
        return self

    def client(self, node: RedisServer):
        import redis

        return redis.Redis(host="127.0.0.1", port=node.port, password=self.password, decode_responses=True)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Every live node says cluster_state:ok and every master has its replicas linked."""
        def ok() -> bool:
            live = [n for n in self.nodes if n.proc and n.proc.poll() is None]
            if not all(self.client(n).cluster("info")["cluster_state"] == "ok" for n in live):
                return False
            masters = [n for n in live if self.client(n).info("replication")["role"] == "master"]
            return len(masters) == self.masters and all(
                _replicas_online(self.client(n)) >= self.replicas for n in masters if len(live) == len(self.nodes))
        _poll(ok, "the Redis Cluster to be healthy", timeout)

    def master_of(self, key: str) -> RedisServer:
        """The live master that holds ``key``'s slot now."""
        slot = _keyslot(key)
        for n in self.nodes:
            if n.proc and n.proc.poll() is None and self.client(n).info("replication")["role"] == "master":
                if any(int(s) <= slot <= int(e) for s, e in self._own_slots(n)):
                    return n
        raise RuntimeError(f"no master holds {key}")

    def _own_slots(self, node: RedisServer) -> list:
        myid = self.client(node).execute_command("CLUSTER", "MYID")
        return [(s, e) for s, e, master, *_ in self.client(node).execute_command("CLUSTER", "SLOTS")
                if master[2] == myid]

    def flushall(self) -> None:
        for n in self.nodes:
            if n.proc and n.proc.poll() is None and self.client(n).info("replication")["role"] == "master":
                self.client(n).flushall()

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


def _replicas_online(client) -> int:
    """How many replicas of this master have finished their sync (WAIT counts only those)."""
    info = client.info("replication")
    return sum(1 for i in range(int(info.get("connected_slaves", 0)))
               if info.get(f"slave{i}", {}).get("state") == "online")


def _keyslot(key: str) -> int:
    from redis.crc import key_slot

    return key_slot(key.encode())


class SentinelServers:
    """A master, ``replicas`` replicas and ``sentinels`` sentinels on loopback, monitoring ``service``;
    down-after 1 s so a failover takes a few seconds. The master requires ``password`` (so a test can
    cut a replica off by giving it a wrong ``masterauth``)."""

    def __init__(self, directory: Path, replicas: int = 1, sentinels: int = 3, service: str = "vqpu",
                 password: str = "pw-sentinel-test") -> None:
        self.dir = directory
        self.service = service
        self.password = password
        self.servers: list[RedisServer] = []
        self.n_replicas = replicas
        self.n_sentinels = sentinels
        self.sentinels: list[tuple[int, subprocess.Popen]] = []

    def url(self, query: str = "") -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p, _ in self.sentinels)
        return f"redis+sentinel://:{self.password}@{hosts}/{self.service}/0" + (f"?{query}" if query else "")

    def start(self) -> SentinelServers:
        fast = ("--repl-diskless-sync-delay", "0")
        master = RedisServer(self.dir / "master", password=self.password,
                             extra_args=("--masterauth", self.password, *fast)).start()
        self.servers.append(master)
        for i in range(self.n_replicas):
            self.servers.append(RedisServer(self.dir / f"replica-{i}", password=self.password, extra_args=(
                "--masterauth", self.password, *fast, "--replicaof", "127.0.0.1", str(master.port))).start())
        _poll(lambda: _replicas_online(self.client(master)) == self.n_replicas,
              "the replicas to link", 30)
        binary = shutil.which("redis-server")
        for i in range(self.n_sentinels):
            port = free_port()
            d = self.dir / f"sentinel-{port}"
            d.mkdir(parents=True, exist_ok=True)
            (d / "sentinel.conf").write_text(
                f"port {port}\nbind 127.0.0.1\ndir {d}\nlogfile {d / 'sentinel.log'}\n"
                f"sentinel monitor {self.service} 127.0.0.1 {master.port} 2\n"
                f"sentinel auth-pass {self.service} {self.password}\n"
                f"sentinel down-after-milliseconds {self.service} 1000\n"
                f"sentinel failover-timeout {self.service} 4000\n"
                f"sentinel parallel-syncs {self.service} 1\n")
            proc = subprocess.Popen([binary, str(d / "sentinel.conf"), "--sentinel"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.sentinels.append((port, proc))
        import redis

        for port, _ in self.sentinels:
            s = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
            _poll(lambda s=s: s.sentinel_master(self.service)["num-other-sentinels"] == self.n_sentinels - 1
                  and s.sentinel_master(self.service)["num-slaves"] == self.n_replicas, "the sentinels to agree", 30)
        return self

    def client(self, server: RedisServer):
        import redis

        return redis.Redis(host="127.0.0.1", port=server.port, password=self.password, decode_responses=True)

    def master_port(self) -> int:
        import redis

        s = redis.Redis(host="127.0.0.1", port=self.sentinels[0][0], decode_responses=True)
        return int(s.sentinel_get_master_addr_by_name(self.service)[1])

    def server(self, port: int) -> RedisServer:
        return next(s for s in self.servers if s.port == port)

    def flushall(self) -> None:
        self.client(self.server(self.master_port())).flushall()

    def diagnostics(self, lines: int = 12) -> str:
        """What each server says of its replication and the tail of every log: for a failure message,
        so a failover that never completes on a loaded CI machine says why."""
        out = []
        for server in self.servers:
            try:
                info = self.client(server).info("replication")
                state = {k: info.get(k) for k in ("role", "master_port", "master_link_status", "connected_slaves")}
            except Exception as e:  # noqa: BLE001 (a dead or unreachable server is itself the evidence)
                state = {"error": repr(e)}
            out.append(f"server {server.port}: {state}")
        logs = [s.dir / "redis.log" for s in self.servers] + sorted(self.dir.glob("sentinel-*/sentinel.log"))
        for log in logs:
            tail = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else ["(no log)"]
            out.append(f"--- {log.relative_to(self.dir)}\n" + "\n".join(tail))
        return "\n".join(out)

    def stop(self) -> None:
        for _, proc in self.sentinels:
            end_process(proc, REDIS_SHUTDOWN_TIMEOUT_S + 20)
        for s in self.servers:
            s.stop()


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` seconds pass
    (AssertionError naming ``what``): the tests' one way to wait, never a bare sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
