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
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
