"""What a job's process inherits from the agent: never a way back to the control plane.

Every executor (local, Slurm, pilot) starts jobs with this environment, so a job
can import this code (from a source checkout too) but holds no Redis URL or
password: the runner reads its bundle and writes its result, nothing else."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

# Variables that could point a job at the control plane.
_CONTROL_PREFIXES = ("VQPU_REDIS", "REDIS_")


def source_pythonpath() -> str | None:
    """What a job needs on PYTHONPATH to import this code from a source checkout (the
    repository root for ``jupyter_vqpu``, ``agent/`` for ``jupyter_vqpu_agent``); None
    when it is installed, where the job's Python finds it by itself."""
    holder = Path(__file__).resolve().parents[1]  # agent/ in a checkout, site-packages when installed
    if holder.name in ("site-packages", "dist-packages"):
        return None
    return os.pathsep.join([str(holder.parent), str(holder)])


def job_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: ours) minus the control plane's variables, with this code importable."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith(_CONTROL_PREFIXES)}
    here = source_pythonpath()
    if here:
        env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
