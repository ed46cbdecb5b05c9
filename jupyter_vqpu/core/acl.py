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

#: Every command the agent issues, directly or from its scripts. ``script|exists``: a redis-py
#: pipeline that runs scripts (the lease renewal) asks which are loaded before it sends EVALSHA;
#: it reveals only whether a given SHA is cached.
AGENT_COMMANDS = (
    "evalsha", "script|exists", "ping", "time", "hello", "client|setname",
    "xreadgroup", "xautoclaim", "xgroup|create", "xack", "xdel", "xadd", "xrange", "xrevrange",
    "hget", "hgetall", "hmget", "hset", "hsetnx", "hincrby", "hdel", "exists", "get", "set",
    "zadd", "zrem", "zrank", "zcard", "zrange", "zrangebyscore", "zscore", "rpush", "lrange", "smembers",
    # Acknowledged writes (?wait_replicas=): WAIT after a claim or finish, on the same connection. Not
    # WAITAOF: Redis 7.0 refuses the whole ACL rule for a command it does not know (add +waitaof on 7.2+).
    "wait",
    # A Redis Cluster client reads the slot map and the command table; a Sentinel client asks the role.
    "cluster|slots", "cluster|shards", "cluster|nodes", "cluster|myid", "command", "role", "readonly",
)


def password_hash(password: str) -> str:
    """The form ACL files take (``#<sha256>``), so the file holds no password."""
    return hashlib.sha256(password.encode()).hexdigest()


def agent_rules(devices: list[str]) -> list[str]:
    """ACL rules for an agent serving ``devices`` (without the user name and password)."""
    keys = [f"~vqpu:{{{check_device_name(d)}}}:*" for d in devices]
    return ["resetkeys", "resetchannels", "-@all", *(f"+{c}" for c in AGENT_COMMANDS), *keys,
            f"%R~{Keys.registry}"]


#: Script commands the service may not issue when a separate loader exists: SCRIPT LOAD + EVALSHA
#: (or EVAL, or a FUNCTION) is running any Lua, so only the trusted loader may put Lua into Redis.
_NO_LUA = ["-eval", "-eval_ro", "-function", "-fcall", "-fcall_ro"]
_NO_SCRIPT_ADMIN = ["-script|flush", "-script|kill"]


def gateway_rules(*, load_scripts: bool = True) -> list[str]:
    """The control-plane service (server extension or hub service): all vQPU keys, reads server
    config for its start-up checks; no KEYS, FLUSH*, EVAL, FUNCTION or SCRIPT FLUSH/KILL.

    ``load_scripts=False`` (an admin user exists to load them): no SCRIPT LOAD either, only
    EVALSHA of what the admin loaded and SCRIPT EXISTS (the service's periodic check)."""
    rules = ["resetkeys", "resetchannels", "+@all", "-@dangerous", "+config|get", "+info", *_NO_LUA,
             *_NO_SCRIPT_ADMIN]
    if not load_scripts:
        rules += ["-script", "+script|exists"]
    return [*rules, "~vqpu:*"]


def admin_rules() -> list[str]:
    """The operators' user (``vqpu device seed/update``, ``vqpu recover``) and the service's script
    loader (``script_loader_url``): the service's rights plus SCRIPT LOAD; still no EVAL or FUNCTION."""
    return gateway_rules(load_scripts=True)


def acl_file(agent_password: str, gateway_password: str, devices: list[str],
             admin_password: str | None = None) -> str:
    """An ACL file (``aclfile`` in redis.conf): the agent, the gateway, and the default user disabled.

    With ``admin_password``, a ``vqpu-admin`` user loads the scripts and the gateway user may not
    (give the service ``script_loader_url`` with the admin's credential)."""
    lines = [
        # Off: no client can authenticate as (or fall back to) the default user. Its rights are
        # still all: Redis 7.0 replays the AOF's MULTI/EXEC blocks (how it logs a script's effects)
        # as the default user and, since redis/redis#14541 (fixed upstream by #14545, not in 7.0),
        # silently drops every block that user may not run, so a restart lost every scripted
        # write. Being off, the rights are reachable only by the server's own replay.
        "user default off ~* &* +@all",
        " ".join(["user vqpu-agent on", f"#{password_hash(agent_password)}", *agent_rules(devices)]),
        " ".join(["user vqpu-gateway on", f"#{password_hash(gateway_password)}",
                  *gateway_rules(load_scripts=admin_password is None)]),
    ]
    if admin_password is not None:
        lines.append(" ".join(["user vqpu-admin on", f"#{password_hash(admin_password)}", *admin_rules()]))
    return "\n".join(lines) + "\n"
