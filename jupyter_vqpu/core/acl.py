"""Least-privilege Redis users: what an HPC agent may do, and nothing more.

An agent runs on a cluster login node; if it is compromised it must not be able
to read other devices' work, run arbitrary Lua, reconfigure or wipe Redis. It
gets the commands its code and its scripts issue (scripts run with the
caller's permissions), on its devices' keys only, and ``EVALSHA`` of scripts
that someone trusted has loaded: no ``EVAL``, no ``SCRIPT LOAD``, no
``FUNCTION``, no ``CONFIG``, no ``KEYS``, no ``FLUSHALL``.
"""

from __future__ import annotations

import hashlib

from jupyter_vqpu.core.keys import Keys, check_device_name

#: Every command the agent issues, directly or from its scripts.
AGENT_COMMANDS = (
    "evalsha", "ping", "time", "hello", "client|setname",
    "xreadgroup", "xautoclaim", "xgroup|create", "xack", "xdel", "xadd", "xrange", "xrevrange",
    "hget", "hgetall", "hmget", "hset", "hsetnx", "hincrby", "hdel", "exists", "get", "set",
    "zadd", "zrem", "zrank", "zcard", "zrange", "zrangebyscore", "zscore", "rpush", "lrange", "smembers",
)


def password_hash(password: str) -> str:
    """The form ACL files take (``#<sha256>``), so the file holds no password."""
    return hashlib.sha256(password.encode()).hexdigest()


def agent_rules(devices: list[str]) -> list[str]:
    """ACL rules for an agent serving ``devices`` (without the user name and password)."""
    keys = [f"~vqpu:{{{check_device_name(d)}}}:*" for d in devices]
    return ["resetkeys", "resetchannels", "-@all", *(f"+{c}" for c in AGENT_COMMANDS), *keys,
            f"%R~{Keys.registry}"]


def gateway_rules() -> list[str]:
    """The control-plane service (server extension or hub service): all vQPU keys, loads the
    scripts, reads server config for its start-up checks; still no KEYS, FLUSH* or EVAL."""
    return ["resetkeys", "resetchannels", "+@all", "-@dangerous", "+config|get", "+info", "-eval", "-eval_ro",
            "-function", "~vqpu:*"]


def acl_file(agent_password: str, gateway_password: str, devices: list[str]) -> str:
    """An ACL file (``aclfile`` in redis.conf): the agent, the gateway, and the default user disabled."""
    return "\n".join([
        "user default off",
        " ".join(["user vqpu-agent on", f"#{password_hash(agent_password)}", *agent_rules(devices)]),
        " ".join(["user vqpu-gateway on", f"#{password_hash(gateway_password)}", *gateway_rules()]),
    ]) + "\n"
