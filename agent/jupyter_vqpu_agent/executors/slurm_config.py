"""The Slurm executors' configuration: :class:`SlurmConfig` (a job's ``#SBATCH`` knobs, the
commands' retries) and :class:`PilotConfig` (the pilot allocation's own), with their validation.

Every value here ends up on an ``#SBATCH`` line or in a batch script, so each
one is checked against a strict pattern when the config is built (not when a
job is rendered): a bad setting fails the agent's start with one readable line
instead of a job that Slurm rejects, or a script that does something else.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_vqpu.core.errors import VqpuError


class SlurmConfigError(VqpuError):
    """The Slurm executor's configuration is invalid."""

    code = "invalid_slurm_config"


NAME_RE = re.compile(r"^[A-Za-z0-9_.,+-]+$")  # partition, account, qos (comma lists allowed)
TIME_RE = re.compile(r"^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d{1,2}(:\d{1,2}){0,2}|UNLIMITED|INFINITE)$")
MEM_RE = re.compile(r"^\d+[KMGT]?$")
GRES_RE = re.compile(r"^[A-Za-z0-9_.:,=/+-]+$")
MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
EXPORT_RE = re.compile(r"^(ALL|NONE|NIL)(,[A-Za-z_][A-Za-z0-9_]*(=[^,\s]*)?)*$|^[A-Za-z_][A-Za-z0-9_]*(,[A-Za-z_][A-Za-z0-9_]*)*$")
EXTRA_RE = re.compile(r"^--[A-Za-z][A-Za-z0-9-]*(=[^\x00-\x1f\x7f]*)?$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# Options the executor sets itself; an extra line must not override them.
RESERVED_OPTIONS = {
    "--wrap": "the job script is the rendered template",
    "--output": "the executor sets it to BUNDLE_DIR/runner.out",
    "--error": "the executor sets it to BUNDLE_DIR/runner.err",
    "--chdir": "the executor sets it to the bundle directory",
    "--job-name": "the executor names the job (see job_name_prefix)",
    "--parsable": "the executor sets it",
    "--array": "one attempt is one job",
    "--test-only": "the job would never run",
    "--export": "use SlurmConfig.export",
    "--time": "use SlurmConfig.time_limit",
    "--partition": "use SlurmConfig.partition",
    "--account": "use SlurmConfig.account",
    "--qos": "use SlurmConfig.qos",
    "--mem": "use SlurmConfig.mem",
    "--cpus-per-task": "use SlurmConfig.cpus_per_task",
    "--gres": "use SlurmConfig.gres",
}


@dataclass
class SlurmConfig:
    """Knobs of the Slurm executor; see slurm/README.md for each one."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    # Slurm time format ("00:10:00", "90", "1-00:00:00"); None: the job's own
    # timeout (Job.timeout_s) rounded up to whole minutes.
    time_limit: str | None = None
    mem: str | None = None  # e.g. "4G"
    cpus_per_task: int | None = None
    gres: str | None = None  # e.g. "gpu:1"
    # Further sbatch options, one per entry, each "--option" or "--option=value"
    # (a leading "#SBATCH " is accepted and dropped).
    extra_sbatch: list[str] = field(default_factory=list)
    # Shell lines run before the runner: module loads, venv activation. Trusted
    # site configuration, pasted verbatim into the script.
    setup: list[str] = field(default_factory=list)
    # Extra environment variables exported in the job (values are shell-quoted).
    env: dict[str, str] = field(default_factory=dict)
    # The job's Python. Use "python" to take whatever the setup lines put on PATH.
    python: str = sys.executable
    runner_module: str = "jupyter_vqpu_agent.runner"
    # Prepended to the job's PYTHONPATH. None: the source checkout holding the
    # `agent` package when running from one, nothing when installed. "": nothing.
    pythonpath: str | None = None
    template: Path | str | None = None  # None: the packaged slurm/task.sbatch.tmpl
    job_name_prefix: str = "vqpu"
    poll_interval_s: float = 1.0
    export: str = "ALL"  # sbatch --export (the agent's environment minus Redis/proxy variables)
    requeue: bool = False  # False: --no-requeue; the control plane owns retries (attempt+1)
    bin_dir: str | None = None  # where sbatch/squeue/... live; None: PATH
    command_timeout_s: float = 30.0
    command_tries: int = 5
    backoff_s: float = 0.5  # first retry delay; doubles up to 8 s
    lost_after_polls: int = 3  # polls with no trace of a job in Slurm before it counts as lost

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> SlurmConfig:
        """A config from plain data (a parsed JSON/TOML table); unknown keys are an error."""
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise SlurmConfigError(f"unknown Slurm setting(s): {', '.join(unknown)}",
                                   hint="see slurm/README.md for the settings")
        return cls(**data)

    @classmethod
    def load(cls, path: Path | str) -> SlurmConfig:
        """A config from a .json or .toml file (TOML needs Python 3.11+)."""
        path = Path(path)
        text = path.read_text()
        if path.suffix == ".toml":
            import tomllib  # Python 3.11+

            data = tomllib.loads(text)
            data = data.get("slurm", data)  # a [slurm] table or the top level
        else:
            import json

            data = json.loads(text)
        return cls.from_mapping(data)

    def validate(self) -> None:
        def bad(what: str, value: Any, why: str) -> SlurmConfigError:
            return SlurmConfigError(f"invalid Slurm setting {what}={value!r}: {why}",
                                    hint="fix the Slurm executor configuration (see slurm/README.md)")

        for name in ("partition", "account", "qos"):
            v = getattr(self, name)
            if v is not None and not NAME_RE.fullmatch(v):
                raise bad(name, v, "only letters, digits and _ . , + - are allowed")
        if self.time_limit is not None and not TIME_RE.fullmatch(self.time_limit):
            raise bad("time_limit", self.time_limit, 'use a Slurm time such as "00:10:00", "30" or "1-00:00:00"')
        if self.mem is not None and not MEM_RE.fullmatch(self.mem):
            raise bad("mem", self.mem, 'use a size such as "4000" or "4G"')
        if self.cpus_per_task is not None and (not isinstance(self.cpus_per_task, int) or self.cpus_per_task < 1):
            raise bad("cpus_per_task", self.cpus_per_task, "a positive integer")
        if self.gres is not None and not GRES_RE.fullmatch(self.gres):
            raise bad("gres", self.gres, 'use a GRES such as "gpu:1" or "gpu:a100:2"')
        self.extra_sbatch = [check_extra(line) for line in self.extra_sbatch]
        for line in self.setup:
            if "\n" in line or "\r" in line or "\x00" in line:
                raise bad("setup", line, "one shell line per entry")
        for k, v in self.env.items():
            if not ENV_KEY_RE.fullmatch(k):
                raise bad("env", k, "not a shell variable name")
            if "\x00" in str(v):
                raise bad("env", k, "the value holds a NUL byte")
        if not self.python or "\x00" in self.python or "\n" in self.python:
            raise bad("python", self.python, "a path to a Python interpreter (or a name on the job's PATH)")
        if not MODULE_RE.fullmatch(self.runner_module):
            raise bad("runner_module", self.runner_module, "a dotted Python module name")
        if self.pythonpath is not None and CONTROL_RE.search(self.pythonpath):
            raise bad("pythonpath", self.pythonpath, "holds control characters")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.job_name_prefix):
            raise bad("job_name_prefix", self.job_name_prefix, "only letters, digits and _ . -")
        if not self.poll_interval_s > 0:
            raise bad("poll_interval_s", self.poll_interval_s, "must be positive")
        if not EXPORT_RE.fullmatch(self.export):
            raise bad("export", self.export, 'ALL, NONE, NIL or a comma list of variable names')
        if self.command_tries < 1 or self.command_timeout_s <= 0:
            raise bad("command_tries", self.command_tries, "at least one try with a positive timeout")


def check_extra(line: str) -> str:
    raw = line
    line = line.strip()
    if line.startswith("#SBATCH"):
        line = line[len("#SBATCH"):].strip()
    if not line.startswith("--"):
        raise SlurmConfigError(f"invalid extra sbatch option {raw!r}: it must start with '--' (long option form)",
                               hint='write e.g. "--constraint=a100"')
    if not EXTRA_RE.fullmatch(line):
        raise SlurmConfigError(f"invalid extra sbatch option {raw!r}: write --option or --option=value on one line",
                               hint='write e.g. "--constraint=a100"')
    opt = line.split("=", 1)[0]
    if opt in RESERVED_OPTIONS:
        raise SlurmConfigError(f"extra sbatch option {opt} is not allowed: {RESERVED_OPTIONS[opt]}",
                               hint="remove it from extra_sbatch")
    return line


def parse_time_limit(text: str) -> float | None:
    """A Slurm time ("30", "30:00", "1:00:00", "1-00:00:00", "UNLIMITED") in seconds; None when unlimited."""
    t = text.strip().upper()
    if t in ("UNLIMITED", "INFINITE"):
        return None
    days = 0
    if "-" in t:
        d, t = t.split("-", 1)
        days = int(d)
        parts = [int(x) for x in t.split(":")]
        while len(parts) < 3:
            parts.append(0)  # D-H, D-H:M
        h, m, s = parts
    else:
        parts = [int(x) for x in t.split(":")]
        if len(parts) == 1:
            h, m, s = 0, parts[0], 0
        elif len(parts) == 2:
            h, (m, s) = 0, parts
        else:
            h, m, s = parts
    return float(((days * 24 + h) * 60 + m) * 60 + s)


@dataclass
class PilotConfig(SlurmConfig):
    """SlurmConfig's #SBATCH knobs (partition, account, qos, mem, cpus, gres, extras,
    setup, env, python, ...) for the pilot allocation, plus the pilot's own.
    ``time_limit`` is not used: the allocation's is ``pilot_time_limit``."""

    pilot_time_limit: str = "00:30:00"  # the allocation's --time (Slurm format)
    renew_margin_s: float = 300.0  # submit a successor when the allocation has less than this left
    idle_timeout_s: float = 600.0  # a pilot with no task for this long exits (0: never)
    spool_dir: str | None = None  # None: WORK_ROOT/pilot-spool (must be on the shared file system)
    pilot_slots: int = 1  # tasks one pilot runs at once (one warm worker each)
    pilot_template: str | None = None  # None: the packaged slurm/pilot.sbatch.tmpl
    pilot_module: str = "jupyter_vqpu_agent.spool"
    spool_poll_s: float = 0.01  # how often both sides look at the spool
    spool_inotify: bool = True  # also wake on inotify events (same-host changes only; polling stays)
    heartbeat_s: float = 1.0  # the pilot touches pilot.alive this often
    heartbeat_stale_s: float = 30.0  # a running pilot silent this long is dead (scancel'ed, tasks lost)
    release_on_shutdown: bool = False  # True: an agent shutting down drains its pilots (no re-attach)

    def validate(self) -> None:
        super().validate()

        def bad(what: str, value: Any, why: str) -> SlurmConfigError:
            return SlurmConfigError(f"invalid pilot setting {what}={value!r}: {why}",
                                    hint="fix the Slurm pilot configuration (see slurm/README.md, Pilot mode)")

        if not isinstance(self.pilot_time_limit, str) or not TIME_RE.fullmatch(self.pilot_time_limit):
            raise bad("pilot_time_limit", self.pilot_time_limit, 'a Slurm time such as "00:30:00" or "30"')
        limit = parse_time_limit(self.pilot_time_limit)
        if not self.renew_margin_s >= 0 or (limit is not None and self.renew_margin_s >= limit):
            raise bad("renew_margin_s", self.renew_margin_s, "between 0 and the pilot's time limit")
        if not self.idle_timeout_s >= 0:
            raise bad("idle_timeout_s", self.idle_timeout_s, "0 (never) or a positive number of seconds")
        if not isinstance(self.pilot_slots, int) or self.pilot_slots < 1:
            raise bad("pilot_slots", self.pilot_slots, "a positive integer")
        if self.spool_dir is not None and CONTROL_RE.search(str(self.spool_dir)):
            raise bad("spool_dir", self.spool_dir, "holds control characters")
        if not MODULE_RE.fullmatch(self.pilot_module):
            raise bad("pilot_module", self.pilot_module, "a dotted Python module name")
        for name in ("spool_poll_s", "heartbeat_s", "heartbeat_stale_s"):
            if not getattr(self, name) > 0:
                raise bad(name, getattr(self, name), "must be positive")
        if self.heartbeat_stale_s <= 2 * self.heartbeat_s:
            raise bad("heartbeat_stale_s", self.heartbeat_stale_s, "must be well above heartbeat_s")

    @property
    def limit_s(self) -> float | None:
        """The allocation's time limit in seconds (None: unlimited)."""
        return parse_time_limit(self.pilot_time_limit)
