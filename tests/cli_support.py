"""The ``vqpu`` command line for tests: run it as a user would, in a subprocess from this checkout."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO, TRANSPORT_ENV

GHZ = str(REPO / "notebooks" / "ghz3.qasm")


def vqpu(*args: str, url: str | None = None, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """``python -m jupyter_vqpu.cli ARGS`` without the caller's Redis or API settings (unless ``env`` sets
    them): which control plane it reaches is the test's choice alone."""
    e = {k: v for k, v in os.environ.items() if k not in TRANSPORT_ENV}
    e.update(env or {})
    cmd = [sys.executable, "-m", "jupyter_vqpu.cli", *args]
    if url:
        cmd += ["--redis-url", url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=e, cwd=REPO)
