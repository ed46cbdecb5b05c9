"""Shared fixtures: a real redis-server per test session, flushed per test."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support import (  # noqa: F401  (re-exported for the tests)
    RedisClusterServers,
    RedisServer,
    SentinelServers,
    free_port,
)

# jp_fetch, jp_serverapp, ... for the server extension's tests (plugins belong in the root conftest).
pytest_plugins = ["pytest_jupyter.jupyter_server"]

REPO = Path(__file__).resolve().parents[1]

# A test that uses one of these fixtures needs that real component, and carries its
# marker whatever its module says: `-m "not hub"` deselects exactly the tests that
# start a JupyterHub, `-m redis` selects every test that talks to a redis-server.
FIXTURE_MARKERS = {
    "redis": {"redis_server", "redis_url", "cp", "seeded", "vqpu_lab", "redis_cluster", "redis_sentinel",
              "deployment"},
    "slurm": {"slurm_cluster"},
    "browser": {"browser", "lab_page", "vqpu_lab"},
    "hub": {"hub"},
}


# What decides where a client-side process goes (kernel/transport.py): a server extension started
# in-process hands VQPU_API_URL/TOKEN to its kernels through os.environ, and a later test's `vqpu`
# subprocess must not inherit them.
TRANSPORT_ENV = ("VQPU_REDIS_URL", "VQPU_API_URL", "VQPU_API_TOKEN", "VQPU_SCRIPT_LOADER_URL", "JUPYTERHUB_API_TOKEN")


@pytest.fixture(autouse=True)
def _transport_env_does_not_leak():
    before = {k: os.environ[k] for k in TRANSPORT_ENV if k in os.environ}
    yield
    for k in TRANSPORT_ENV:
        if k in before:
            os.environ[k] = before[k]
        else:
            os.environ.pop(k, None)


def pytest_collection_modifyitems(config, items):
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in FIXTURE_MARKERS.items():
            if used & fixtures and item.get_closest_marker(marker) is None:
                item.add_marker(marker)


def need_binary(name: str, why: str) -> str:
    """The binary's path; a skip where it is absent, except in CI, where absence is a failure."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} is not installed ({why}); .ci/run installs it"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    need_binary("redis-server", "the control plane's store")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server) -> str:
    import redis

    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@pytest.fixture
def cp(redis_url):
    from jupyter_vqpu.core.connection import connect
    from jupyter_vqpu.core.control import ControlPlane

    return ControlPlane(connect(redis_url))


@pytest.fixture
def seeded(cp):
    """A control plane with fez and ideal registered."""
    cp.seed(["fez", "ideal"])
    return cp


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    """A real Redis Cluster: 3 masters, each with a replica (redis-cli --cluster create)."""
    need_binary("redis-server", "the control plane's store")
    need_binary("redis-cli", "builds the Redis Cluster")
    cluster = RedisClusterServers(tmp_path_factory.mktemp("cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory):
    """A real master + replica watched by 3 sentinels (never failed over: failover tests make their own)."""
    need_binary("redis-server", "the control plane's store and its sentinels")
    servers = SentinelServers(tmp_path_factory.mktemp("sentinel")).start()
    yield servers
    servers.stop()


#: The deployments a key test runs on (``deployment`` fixture): one node, a cluster, Sentinel.
DEPLOYMENTS = ("single", "cluster", "sentinel")


@pytest.fixture(params=DEPLOYMENTS)
def deployment(request) -> str:
    """The control-plane URL of each deployment in turn, emptied: a test that takes this runs on
    a single node, on a 3-master cluster with replicas and under Sentinel (started on first use)."""
    if request.param == "single":
        return request.getfixturevalue("redis_url")
    servers = request.getfixturevalue(f"redis_{request.param}")
    servers.flushall()
    return servers.url if request.param == "cluster" else servers.url()


GHZ3 = """OPENQASM 3.0;
include "stdgates.inc";
qubit[3] q;
bit[3] c;
h q[0];
cx q[0], q[1];
cx q[1], q[2];
c = measure q;
"""

BELL_QASM2 = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
cx q[0],q[1];
measure q -> c;
"""



SLURM_BINARIES = ("sbatch", "squeue", "scontrol", "scancel", "sinfo", "slurmctld", "slurmd", "munged")


def slurm_ready() -> bool:
    import subprocess

    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and any(s.strip() in ("idle", "mixed", "allocated") for s in out.stdout.splitlines())


def ensure_slurm() -> bool:
    """A Slurm that answers: the running one, or one .ci/slurm-up.sh starts. True when we started it
    (stop it with stop_slurm()). Missing Slurm skips locally and fails under CI."""
    import subprocess

    missing = [b for b in SLURM_BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]
    if missing:
        msg = f"Slurm is not installed (missing {', '.join(missing)}); .ci/install installs it"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    if slurm_ready():
        return False
    if os.geteuid() != 0:
        pytest.fail("Slurm is installed but not running, and starting it (.ci/slurm-up.sh) needs root")
    up = subprocess.run(["bash", str(REPO / ".ci" / "slurm-up.sh")], capture_output=True, text=True,
                        timeout=120, stdin=subprocess.DEVNULL)
    assert up.returncode == 0, f".ci/slurm-up.sh failed:\n{up.stdout}\n{up.stderr}"
    return True


def stop_slurm() -> None:
    import subprocess

    subprocess.run(["bash", str(REPO / ".ci" / "slurm-down.sh")], timeout=120, stdin=subprocess.DEVNULL)
