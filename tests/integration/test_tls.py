"""TLS to Redis on a real redis-server: the control plane and an agent work over rediss://, plaintext is refused.

The CA, the server's and the client's certificates are made at test time by
trustme in the test's temporary directory: no key or certificate is committed.
"""

from __future__ import annotations

import importlib
import os

import pytest
import redis

from jupyter_vqpu import cli
from jupyter_vqpu.core.client import Client
from jupyter_vqpu.core.connection import connect
from jupyter_vqpu.core.control import ControlPlane
from jupyter_vqpu.core.errors import ControlPlaneUnavailable
from tests.agents import EchoExecutor, Running
from tests.conftest import GHZ3, need_binary
from tests.support import RedisServer, TlsFiles

pytestmark = pytest.mark.redis


def _trustme():
    try:
        return importlib.import_module("trustme")
    except ImportError:
        msg = "trustme is not installed (pip install '.[test]'); it makes the throwaway CA"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    """A TLS-only redis-server that requires client certificates (mutual TLS), with a fresh CA."""
    need_binary("redis-server", "the control plane's store")
    trustme = _trustme()
    d = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("vqpu-agent")
    files = TlsFiles(ca=d / "ca.pem", cert=d / "server.pem", key=d / "server.key",
                     client_cert=d / "client.pem", client_key=d / "client.key", require_client_cert=True)
    ca.cert_pem.write_to_path(str(files.ca))
    server.cert_chain_pems[0].write_to_path(str(files.cert))
    server.private_key_pem.write_to_path(str(files.key))
    client.cert_chain_pems[0].write_to_path(str(files.client_cert))
    client.private_key_pem.write_to_path(str(files.client_key))
    for key in (files.key, files.client_key):
        key.chmod(0o600)
    srv = RedisServer(d / "data", tls=files)
    try:
        srv.start()
    except RuntimeError as exc:  # e.g. a redis-server built without TLS
        if os.environ.get("CI"):
            pytest.fail(f"a TLS redis-server would not start: {exc}")
        pytest.skip(f"a TLS redis-server would not start: {exc}")
    yield srv
    srv.stop()


@pytest.fixture
def tls_cp(tls_redis):
    plane = ControlPlane(connect(tls_redis.url))
    plane.redis.flushall()
    plane.seed(["ideal"])
    return plane


def test_the_control_plane_and_an_agent_work_over_tls(tls_redis, tls_cp, tmp_path):
    assert tls_redis.url.startswith("rediss://")
    running = Running(tls_redis.url, EchoExecutor(), tmp_path, devices=("ideal",))
    try:
        view = Client(control=tls_cp, owner="tls-user").submit(GHZ3, device="ideal", shots=10).result(timeout=60)
    finally:
        running.stop()
    assert view["state"] == "completed" and view["agent"] == running.agent.cfg.agent_id
    assert tls_cp.stats("ideal").finished["completed"] == 1


def test_the_cli_takes_a_rediss_url(tls_redis, tls_cp, capsys):
    assert cli.main(["devices", "--json", "--redis-url", tls_redis.url]) == 0
    assert '"name": "ideal"' in capsys.readouterr().out


def test_a_plaintext_client_is_refused_with_a_hint(tls_redis, tls_cp):
    with pytest.raises(ControlPlaneUnavailable) as info:
        connect(tls_redis.plain_url)
    assert "rediss://" in info.value.hint


def test_a_client_that_does_not_trust_the_ca_is_refused(tls_redis, tls_cp):
    files = tls_redis.tls
    url = (f"rediss://127.0.0.1:{tls_redis.port}/0?ssl_certfile={files.client_cert}&ssl_keyfile={files.client_key}"
           "&ssl_ca_certs=/etc/ssl/certs/ca-certificates.crt")
    with pytest.raises(ControlPlaneUnavailable) as info:
        connect(url)
    assert "certificate" in info.value.message.lower() and "ssl_ca_certs" in info.value.hint


def test_a_client_without_a_certificate_is_refused_when_the_server_requires_one(tls_redis, tls_cp):
    plain_tls = f"rediss://127.0.0.1:{tls_redis.port}/0?{tls_redis.tls.url_query(with_client_cert=False)}"
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(plain_tls, socket_timeout=5).ping()
