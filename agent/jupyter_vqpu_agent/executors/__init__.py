"""Executors realise jobs: ``local`` (subprocesses here), ``slurm`` (sbatch per task) and
``slurm-pilot`` (one long-running allocation for many tasks)."""

from __future__ import annotations

import argparse
from pathlib import Path

from jupyter_vqpu_agent.executors.base import Executor, Job, Reporter

__all__ = ["Executor", "Job", "Reporter", "make_executor"]


def make_executor(name: str, args: argparse.Namespace | None = None, work_root: Path | None = None) -> Executor:
    """Build the executor the agent's command line asks for."""
    if name == "local":
        from jupyter_vqpu_agent.executors.local import LocalExecutor

        cold = bool(getattr(args, "cold", False))
        return LocalExecutor(slots=max(1, getattr(args, "capacity", 1)), warm=not cold, log_dir=work_root)
    if name == "slurm":
        from jupyter_vqpu_agent.executors.slurm import SlurmExecutor
        from jupyter_vqpu_agent.executors.slurm_config import SlurmConfig

        path = getattr(args, "slurm_config", None)
        config = SlurmConfig.load(path) if path else SlurmConfig()
        partition = getattr(args, "partition", None)
        if partition:
            config = SlurmConfig.from_mapping({**_asdict(config), "partition": partition})
        return SlurmExecutor(config)
    if name == "slurm-pilot":
        from jupyter_vqpu_agent.executors.pilot import SlurmPilotExecutor
        from jupyter_vqpu_agent.executors.slurm_config import PilotConfig

        path = getattr(args, "slurm_config", None)
        config = PilotConfig.load(path) if path else PilotConfig()
        if getattr(args, "partition", None):
            config = PilotConfig.from_mapping({**_asdict(config), "partition": args.partition})
        return SlurmPilotExecutor(config, work_root=work_root)
    raise ValueError(f"unknown executor {name!r}")


def _asdict(config) -> dict:
    import dataclasses

    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
