"""The control-plane scripts: Lua files under ``lua/``, registered once.

Each script is the shared prelude plus its own file. ``redis-py``'s
``Script`` runs EVALSHA and, on NOSCRIPT (a restarted Redis, SCRIPT FLUSH),
loads the script and retries, so callers never see that error.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from redis.commands.core import Script

NAMES = ("submit", "claim", "progress", "finish", "cancel", "recover", "publish", "presence", "rate")


@cache
def source(name: str) -> str:
    lua = resources.files(__package__) / "lua"
    return (lua / "prelude.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()


class Scripts:
    """The registered scripts of one Redis client, as callables by name."""

    def __init__(self, client) -> None:
        for name in NAMES:
            setattr(self, name, client.register_script(source(name)))

    def load_all(self) -> None:
        """SCRIPT LOAD every script now: least-privilege users (agents) may only EVALSHA,
        so a trusted client loads them first (and again after a SCRIPT FLUSH)."""
        for name in NAMES:
            script = getattr(self, name)
            script.registered_client.script_load(script.script)

    def ensure_loaded(self) -> int:
        """Load whichever scripts Redis lacks (one SCRIPT EXISTS round trip when none is missing).

        A Redis restarted without persistence of its script cache, or a SCRIPT
        FLUSH, leaves agents (EVALSHA only) unable to run anything: the trusted
        services call this periodically so that they recover by themselves.
        Returns how many scripts were loaded."""
        scripts = [getattr(self, name) for name in NAMES]
        client = scripts[0].registered_client
        present = client.script_exists(*(s.sha for s in scripts))
        missing = [s for s, ok in zip(scripts, present) if not ok]
        for script in missing:
            client.script_load(script.script)
        return len(missing)

    def __getattr__(self, name: str) -> Script:  # for type checkers; real ones set above
        raise AttributeError(name)
