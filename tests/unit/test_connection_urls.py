"""Control-plane URLs: a single node, a Redis Cluster, Sentinel, TLS forms, durability options."""

from __future__ import annotations

import pytest

from jupyter_vqpu.core.connection import CLUSTER, SENTINEL, SINGLE, Durability, durability_setting, parse_url, redact
from jupyter_vqpu.core.errors import InvalidRequest


def test_each_form_parses():
    single = parse_url("redis://u:p@h:6379/2?ssl_ca_certs=x")
    assert single.kind == SINGLE and single.url.startswith("redis://u:p@h:6379/2") and single.durability == Durability()
    c = parse_url("redis+cluster://vqpu-agent:s3cret@10.0.0.1:7000,10.0.0.2:7001/0?wait_replicas=1&wait_timeout_ms=250")
    assert (c.kind, c.nodes, c.username, c.password, c.tls) == (
        CLUSTER, (("10.0.0.1", 7000), ("10.0.0.2", 7001)), "vqpu-agent", "s3cret", False)
    assert c.durability == Durability(replicas=1, timeout_ms=250)
    s = parse_url("rediss+sentinel://:pw@s1:26379,s2:26379/vqpu-main/3?ssl_ca_certs=/ca.pem&sentinel_password=sp")
    assert (s.kind, s.service, s.db, s.tls, s.password) == (SENTINEL, "vqpu-main", 3, True, "pw")
    assert s.options == {"ssl_ca_certs": "/ca.pem"} and s.sentinel_auth == {"password": "sp"}
    assert parse_url("redis+cluster://h:1").db == 0
    # Our options never reach redis-py's URL parser (which would pass them on as unknown keywords).
    assert "wait_replicas" not in parse_url("redis://h:1/0?wait_replicas=2").url


@pytest.mark.parametrize("url, words", [
    ("http://h:1", "unknown scheme"),
    ("h:6379", "no scheme"),
    ("redis+sentinel://h:26379", "service name"),
    ("redis+cluster://h:7000/1", "only database 0"),
    ("redis+cluster://h", "host:port"),
    ("redis+cluster://h:99999", "host:port"),
    ("redis+cluster://h:7000?wait_replicas=x", "wait_replicas must be a whole number"),
    ("redis://h:1?wait_replicas=-1", "wait_replicas must be a whole number"),
    ("redis://h:1?wait_replicas=" + "9" * 40, "wait_replicas must be a whole number"),
    ("redis://h:1?wait_aof=2", "wait_aof"),
    ("redis://h:1?sentinel_password=x", "redis+sentinel"),
])
def test_a_bad_url_is_one_readable_line_with_the_forms(url, words):
    with pytest.raises(InvalidRequest) as info:
        parse_url(url)
    assert words in info.value.message and "redis+cluster://" in info.value.hint
    assert "\n" not in info.value.message


def test_passwords_are_redacted_in_every_form():
    for url in ("redis://u:secret@h:1/0", "redis+cluster://u:secret@a:1,b:2/0", "redis+sentinel://:secret@a:1,b:2/m"):
        assert "secret" not in redact(url) and "***" in redact(url)


def test_the_knobs_override_the_url_only_when_set():
    assert durability_setting(-1, 1000, False) is None
    assert durability_setting(2, 500, False) == Durability(2, 500, False)
    assert durability_setting(-1, 1000, True) == Durability(0, 1000, True)
    with pytest.raises(InvalidRequest):
        durability_setting(1, 0, False)
