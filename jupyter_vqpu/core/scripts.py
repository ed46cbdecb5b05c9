"""The control-plane scripts: Lua files under ``lua/``, registered once.

Each script is the shared prelude plus its own file. ``redis-py``'s
``Script`` runs EVALSHA and, on NOSCRIPT (a restarted Redis, SCRIPT FLUSH),
loads the script and retries, so callers never see that error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from typing import Any

from redis.commands.core import Script
from redis.exceptions import NoScriptError

from jupyter_vqpu.core.keys import Keys
from jupyter_vqpu.core.specs import SPECS

#: One script per control-plane change; each one's KEYS/ARGV order is its Spec in specs.py.
NAMES = tuple(SPECS)


@cache
def source(name: str) -> str:
    lua = resources.files(__package__) / "lua"
    return (lua / "prelude.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()


class LoaderScript(Script):
    """A script run (EVALSHA) by one client and loaded, when Redis lacks it, by another.

    The service's own Redis user then needs no SCRIPT LOAD (which, with EVALSHA, is
    EVAL of any Lua): only the loader, a separate trusted user, may put Lua into Redis."""

    def __init__(self, client, text: str, loader) -> None:
        super().__init__(client, text)
        self.loader = loader

    def __call__(self, keys=None, args=None, client=None):
        keys, args = list(keys or []), list(args or [])
        client = client or self.registered_client
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.loader.script_load(self.script)
            return client.evalsha(self.sha, len(keys), *keys, *args)


class Scripts:
    """The registered scripts of one Redis client, as callables by name.

    ``loader``: a client of a trusted user that loads the scripts (``vqpu-admin`` in
    ``vqpu acl``'s file); without one, ``client`` loads them itself."""

    def __init__(self, client, loader=None) -> None:
        self.loader = loader if loader is not None else client
        for name in NAMES:
            script = client.register_script(source(name)) if loader is None else \
                LoaderScript(client, source(name), loader)
            setattr(self, name, script)

    def load_all(self) -> None:
        """SCRIPT LOAD every script now: least-privilege users (agents) may only EVALSHA,
        so a trusted client loads them first (and again after a SCRIPT FLUSH)."""
        for name in NAMES:
            self.loader.script_load(getattr(self, name).script)

    def ensure_loaded(self) -> int:
        """Load whichever scripts Redis lacks (one SCRIPT EXISTS round trip when none is missing).

        A Redis restarted without persistence of its script cache, or a SCRIPT
        FLUSH, leaves agents (EVALSHA only) unable to run anything: the trusted
        services call this periodically so that they recover by themselves.
        Returns how many scripts were loaded."""
        scripts = [getattr(self, name) for name in NAMES]
        present = self.loader.script_exists(*(s.sha for s in scripts))
        missing = [s for s, ok in zip(scripts, present) if not ok]
        for script in missing:
            self.loader.script_load(script.script)
        return len(missing)

    def call(self, name: str, k: Keys | None, *, client: Any = None, each: Iterable[Mapping[str, Any]] = (),
             **named: Any) -> Any:
        """Run script ``name`` with its KEYS and ARGV built by its Spec from ``k`` and the named
        arguments: the one way every call site runs a script (``client``: a pipeline)."""
        keys, args = SPECS[name].build(k, each=each, **named)
        return getattr(self, name)(keys=keys, args=args, client=client)

    def __getattr__(self, name: str) -> Script:  # for type checkers; real ones set above
        raise AttributeError(name)
