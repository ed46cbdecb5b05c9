"""Rendering the Slurm batch scripts: the ``#SBATCH`` lines, the job's exports, the template.

A template (``slurm/task.sbatch.tmpl``, ``slurm/pilot.sbatch.tmpl``) is bash with
``${vqpu_...}`` placeholders; only those are substituted, every other ``$`` stays
bash's. Every value that comes from a task (its id, name, bundle path) is
shell-quoted here, and every ``#SBATCH`` line is built from a validated
:class:`~jupyter_vqpu_agent.executors.slurm_config.SlurmConfig`, so a hostile
task name can neither run a command nor add a Slurm option.
"""

from __future__ import annotations

import math
import re
import shlex
import string
from pathlib import Path

from jupyter_vqpu_agent.executors.base import Job
from jupyter_vqpu_agent.executors.slurm_config import CONTROL_RE, SlurmConfig, SlurmConfigError
from jupyter_vqpu_agent.jobenv import source_pythonpath

TEMPLATE_NAME = "task.sbatch.tmpl"
_JOBNAME_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


class ScriptTemplate(string.Template):
    """Only ``${vqpu_name}`` is a placeholder; every other ``$`` is bash's."""

    flags = 0
    pattern = r"""
    \$(?:
      (?P<escaped>(?!)) |
      (?P<named>(?!)) |
      \{(?P<braced>vqpu_[a-z_]+)\} |
      (?P<invalid>(?!))
    )
    """


def template_text(config: SlurmConfig) -> str:
    """The batch script template: the configured file, the installed package data, or the checkout's."""
    return find_template(TEMPLATE_NAME, config.template)


def find_template(name: str, override: Path | str | None = None) -> str:
    """A batch script template by file name: ``override`` when set, else the installed
    package data (jupyter_vqpu_agent/slurm_templates/NAME), else the source checkout's slurm/NAME."""
    if override is not None:
        return Path(override).read_text()
    try:
        from importlib.resources import files

        res = files("jupyter_vqpu_agent") / "slurm_templates" / name
        if res.is_file():
            return res.read_text()
    except (ModuleNotFoundError, OSError, TypeError):
        pass
    repo = Path(__file__).resolve().parents[3] / "slurm" / name
    if repo.is_file():
        return repo.read_text()
    raise SlurmConfigError(f"the Slurm job template {name} was not found",
                           hint="reinstall jupyter-vqpu or set the template path in the Slurm configuration")


def sanitize_job_name(text: str, limit: int = 40) -> str:
    """``text`` cut to ``limit`` characters of [A-Za-z0-9_.-], safe in a job name or a file name."""
    return _JOBNAME_BAD.sub("_", text).strip("_.-")[:limit].strip("_.-")


def job_name(config: SlurmConfig, job: Job) -> str:
    """``PREFIX-NAME-TASKID-aTOKEN`` restricted to [A-Za-z0-9_.-]: safe on any command line or
    #SBATCH line, and unique per claim (sbatch retries look a lost submission up by it, so a
    claim replayed after a failover must not adopt the earlier claim's job)."""
    parts = [config.job_name_prefix, sanitize_job_name(job.name, 32), sanitize_job_name(job.task_id, 40),
             "a" + sanitize_job_name(job.claim_tag, 40)]
    return "-".join(p for p in parts if p)


def format_time_limit(seconds: float) -> str:
    """Seconds rounded up to whole minutes (at least one), as Slurm's D-HH:MM:SS."""
    minutes = max(1, math.ceil(seconds / 60.0))
    d, rem = divmod(minutes, 24 * 60)
    h, m = divmod(rem, 60)
    return f"{d}-{h:02d}:{m:02d}:00" if d else f"{h:02d}:{m:02d}:00"


def sbatch_lines(config: SlurmConfig, job: Job) -> list[str]:
    """The script's #SBATCH lines, from validated configuration only."""
    opts = [f"--job-name={job_name(config, job)}",
            f"--time={config.time_limit or format_time_limit(job.timeout_s)}",
            "--nodes=1", "--ntasks=1"]
    for option, value in (("partition", config.partition), ("account", config.account), ("qos", config.qos),
                          ("mem", config.mem), ("cpus-per-task", config.cpus_per_task), ("gres", config.gres)):
        if value:
            opts.append(f"--{option}={value}")
    opts.append("--requeue" if config.requeue else "--no-requeue")
    opts.extend(config.extra_sbatch)
    return [f"#SBATCH {o}" for o in opts]


def export_lines(config: SlurmConfig) -> list[str]:
    """The script's ``export`` lines: the configured environment (values shell-quoted) and the
    PYTHONPATH that finds this agent's code in the job (see :func:`jobenv.source_pythonpath`)."""
    q = shlex.quote
    exports = [f"export {k}={q(str(v))}" for k, v in config.env.items()]
    pp = source_pythonpath() if config.pythonpath is None else config.pythonpath
    if pp:
        exports.append(f'export PYTHONPATH={q(pp)}"${{PYTHONPATH:+:$PYTHONPATH}}"')
    return exports


def substitute(template: str, values: dict[str, str], what: str) -> str:
    """``template`` with its ``${vqpu_...}`` placeholders filled; an unknown one is a config error naming ``what``."""
    try:
        return ScriptTemplate(template).substitute(values)
    except KeyError as exc:
        raise SlurmConfigError(f"{what} uses an unknown placeholder ${{{exc.args[0]}}}",
                               hint="placeholders are: " + ", ".join(sorted(values))) from None


def render_script(config: SlurmConfig, job: Job) -> str:
    """The batch script for one job. Every task-derived value is shell-quoted."""
    q = shlex.quote
    bundle_dir = str(Path(job.bundle_dir).resolve())
    values = {
        "vqpu_sbatch": "\n".join(sbatch_lines(config, job)),
        "vqpu_task_id": q(job.task_id),
        "vqpu_attempt": q(str(int(job.attempt))),
        "vqpu_task_name": q(CONTROL_RE.sub(" ", job.name)[:200]),
        "vqpu_bundle": q(bundle_dir),
        "vqpu_exports": "\n".join(export_lines(config)),
        "vqpu_setup": "\n".join(config.setup) if config.setup else ":",
        "vqpu_python": q(config.python),
        "vqpu_runner": q(config.runner_module),
    }
    return substitute(template_text(config), values, "the Slurm job template")

