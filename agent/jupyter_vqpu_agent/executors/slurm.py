"""Run each job as a Slurm batch job: ``sbatch``, ``squeue``/``scontrol``/``sacct``, ``scancel``.

The agent stays on a login or service node; every job is a batch script
rendered from ``slurm/task.sbatch.tmpl`` into its bundle directory
(``job.sbatch``) that ends in ``exec PYTHON -m jupyter_vqpu_agent.runner BUNDLE_DIR``.

* ``submit`` renders the script, calls ``sbatch --parsable`` and records the
  Slurm job id in ``job.handle["slurm_job_id"]`` and in ``BUNDLE_DIR/slurm_job_id``
  (so that a restarted agent can re-attach).
* ONE background thread polls every tracked job with one
  ``squeue -h -t all -j ID,ID,...`` call per interval; a job squeue no longer
  lists is looked up with ``scontrol show job`` and then ``sacct`` (when
  accounting is on). Slurm states become reports through :func:`map_state`.
* ``cancel`` is ``scancel`` (idempotent); a job we cancelled ends silently.
* Every Slurm command goes through :meth:`SlurmExecutor._slurm`: a subprocess
  timeout, bounded retries with exponential backoff on transient controller
  errors, and :class:`SchedulerError` for everything else.

This module never imports Redis: it only reports to the agent's Reporter.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import re
import shlex
import string
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_vqpu.core.errors import VqpuError
from jupyter_vqpu_agent import bundle, private
from jupyter_vqpu_agent.executors.base import Executor, Job, Reporter, report_result
from jupyter_vqpu_agent.jobenv import source_pythonpath

log = logging.getLogger("vqpu.executor.slurm")

SCRIPT_FILE = "job.sbatch"
JOB_ID_FILE = "slurm_job_id"
TEMPLATE_NAME = "task.sbatch.tmpl"


class SchedulerError(VqpuError):
    """A Slurm command failed (after retries, where the failure was transient)."""

    code = "scheduler_error"
    http_status = 503
    transient = False  # True: Slurm did not answer (busy, restarting); the same call may work later


class SlurmConfigError(VqpuError):
    """The Slurm executor's configuration is invalid."""

    code = "invalid_slurm_config"


# Messages of failures that are worth retrying: the controller is busy,
# restarting or briefly unreachable.
TRANSIENT_MARKERS = (
    "socket timed out",
    "unable to contact slurm controller",
    "resource temporarily unavailable",
    "connection refused",
    "connection timed out",
    "connection reset",
    "zero bytes were transmitted or received",
    "transport endpoint is not connected",
    "slurm backup controller in standby mode",
    "temporarily unable to accept job",
    "try again",
)
# scancel answers for jobs that are already gone: cancel is idempotent.
_GONE_MARKERS = ("invalid job id", "already completing or completed", "job has already finished")


# ------------------------------------------------------------------- config

_NAME_RE = re.compile(r"^[A-Za-z0-9_.,+-]+$")  # partition, account, qos (comma lists allowed)
_TIME_RE = re.compile(r"^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d{1,2}(:\d{1,2}){0,2}|UNLIMITED|INFINITE)$")
_MEM_RE = re.compile(r"^\d+[KMGT]?$")
_GRES_RE = re.compile(r"^[A-Za-z0-9_.:,=/+-]+$")
_MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EXPORT_RE = re.compile(r"^(ALL|NONE|NIL)(,[A-Za-z_][A-Za-z0-9_]*(=[^,\s]*)?)*$|^[A-Za-z_][A-Za-z0-9_]*(,[A-Za-z_][A-Za-z0-9_]*)*$")
_EXTRA_RE = re.compile(r"^--[A-Za-z][A-Za-z0-9-]*(=[^\x00-\x1f\x7f]*)?$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_JOBNAME_BAD = re.compile(r"[^A-Za-z0-9_.-]+")
# Options the executor sets itself; an extra line must not override them.
_RESERVED_OPTIONS = {
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
            if v is not None and not _NAME_RE.fullmatch(v):
                raise bad(name, v, "only letters, digits and _ . , + - are allowed")
        if self.time_limit is not None and not _TIME_RE.fullmatch(self.time_limit):
            raise bad("time_limit", self.time_limit, 'use a Slurm time such as "00:10:00", "30" or "1-00:00:00"')
        if self.mem is not None and not _MEM_RE.fullmatch(self.mem):
            raise bad("mem", self.mem, 'use a size such as "4000" or "4G"')
        if self.cpus_per_task is not None and (not isinstance(self.cpus_per_task, int) or self.cpus_per_task < 1):
            raise bad("cpus_per_task", self.cpus_per_task, "a positive integer")
        if self.gres is not None and not _GRES_RE.fullmatch(self.gres):
            raise bad("gres", self.gres, 'use a GRES such as "gpu:1" or "gpu:a100:2"')
        self.extra_sbatch = [_check_extra(line) for line in self.extra_sbatch]
        for line in self.setup:
            if "\n" in line or "\r" in line or "\x00" in line:
                raise bad("setup", line, "one shell line per entry")
        for k, v in self.env.items():
            if not _ENV_KEY_RE.fullmatch(k):
                raise bad("env", k, "not a shell variable name")
            if "\x00" in str(v):
                raise bad("env", k, "the value holds a NUL byte")
        if not self.python or "\x00" in self.python or "\n" in self.python:
            raise bad("python", self.python, "a path to a Python interpreter (or a name on the job's PATH)")
        if not _MODULE_RE.fullmatch(self.runner_module):
            raise bad("runner_module", self.runner_module, "a dotted Python module name")
        if self.pythonpath is not None and _CONTROL_RE.search(self.pythonpath):
            raise bad("pythonpath", self.pythonpath, "holds control characters")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.job_name_prefix):
            raise bad("job_name_prefix", self.job_name_prefix, "only letters, digits and _ . -")
        if not self.poll_interval_s > 0:
            raise bad("poll_interval_s", self.poll_interval_s, "must be positive")
        if not _EXPORT_RE.fullmatch(self.export):
            raise bad("export", self.export, 'ALL, NONE, NIL or a comma list of variable names')
        if self.command_tries < 1 or self.command_timeout_s <= 0:
            raise bad("command_tries", self.command_tries, "at least one try with a positive timeout")


def _check_extra(line: str) -> str:
    raw = line
    line = line.strip()
    if line.startswith("#SBATCH"):
        line = line[len("#SBATCH"):].strip()
    if not line.startswith("--"):
        raise SlurmConfigError(f"invalid extra sbatch option {raw!r}: it must start with '--' (long option form)",
                               hint='write e.g. "--constraint=a100"')
    if not _EXTRA_RE.fullmatch(line):
        raise SlurmConfigError(f"invalid extra sbatch option {raw!r}: write --option or --option=value on one line",
                               hint='write e.g. "--constraint=a100"')
    opt = line.split("=", 1)[0]
    if opt in _RESERVED_OPTIONS:
        raise SlurmConfigError(f"extra sbatch option {opt} is not allowed: {_RESERVED_OPTIONS[opt]}",
                               hint="remove it from extra_sbatch")
    return line


# ---------------------------------------------------------------- rendering


class _ScriptTemplate(string.Template):
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
    return _JOBNAME_BAD.sub("_", text).strip("_.-")[:limit].strip("_.-")


def job_name(config: SlurmConfig, job: Job) -> str:
    """``PREFIX-NAME-TASKID-aATTEMPT`` restricted to [A-Za-z0-9_.-]: safe on any command line or
    #SBATCH line, and unique per attempt (sbatch retries look a lost submission up by it)."""
    parts = [config.job_name_prefix, sanitize_job_name(job.name, 32), sanitize_job_name(job.task_id, 40),
             f"a{int(job.attempt)}"]
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
    if config.partition:
        opts.append(f"--partition={config.partition}")
    if config.account:
        opts.append(f"--account={config.account}")
    if config.qos:
        opts.append(f"--qos={config.qos}")
    if config.mem:
        opts.append(f"--mem={config.mem}")
    if config.cpus_per_task:
        opts.append(f"--cpus-per-task={config.cpus_per_task}")
    if config.gres:
        opts.append(f"--gres={config.gres}")
    opts.append("--requeue" if config.requeue else "--no-requeue")
    opts.extend(config.extra_sbatch)
    return [f"#SBATCH {o}" for o in opts]


def render_script(config: SlurmConfig, job: Job) -> str:
    """The batch script for one job. Every task-derived value is shell-quoted."""
    q = shlex.quote
    bundle_dir = str(Path(job.bundle_dir).resolve())
    exports = [f"export {k}={q(str(v))}" for k, v in config.env.items()]
    pp = source_pythonpath() if config.pythonpath is None else config.pythonpath
    if pp:
        exports.append(f'export PYTHONPATH={q(pp)}"${{PYTHONPATH:+:$PYTHONPATH}}"')
    values = {
        "vqpu_sbatch": "\n".join(sbatch_lines(config, job)),
        "vqpu_task_id": q(job.task_id),
        "vqpu_attempt": q(str(int(job.attempt))),
        "vqpu_task_name": q(_CONTROL_RE.sub(" ", job.name)[:200]),
        "vqpu_bundle": q(bundle_dir),
        "vqpu_exports": "\n".join(exports),
        "vqpu_setup": "\n".join(config.setup) if config.setup else ":",
        "vqpu_python": q(config.python),
        "vqpu_runner": q(config.runner_module),
    }
    try:
        return _ScriptTemplate(template_text(config)).substitute(values)
    except KeyError as exc:
        raise SlurmConfigError(f"the Slurm job template uses an unknown placeholder ${{{exc.args[0]}}}",
                               hint="placeholders are: " + ", ".join(sorted(values))) from None


def _slurm_path(path: Path) -> str:
    """A path for --output/--error: '%' is a Slurm filename pattern, so double it."""
    return str(path).replace("%", "%%")


def parse_job_id(out: str) -> str:
    """``sbatch --parsable`` prints ``ID`` or ``ID;CLUSTER``."""
    first = out.strip().splitlines()[-1] if out.strip() else ""
    job_id = first.split(";", 1)[0].strip()
    if not re.fullmatch(r"\d+", job_id):
        raise SchedulerError(f"sbatch printed no job id (got {out.strip()[:200]!r})",
                             hint="check the Slurm client configuration")
    return job_id


# ------------------------------------------------------------------ states

_PENDING = {"PENDING", "PD", "REQUEUED", "RQ", "REQUEUE_HOLD", "RH", "REQUEUE_FED", "RF", "RESV_DEL_HOLD", "RD",
            "SPECIAL_EXIT", "SE", "POWER_UP_NODE", "PO"}
_RUNNING = {"CONFIGURING", "CF", "RUNNING", "R", "COMPLETING", "CG", "SUSPENDED", "S", "STOPPED", "ST",
            "RESIZING", "RS", "SIGNALING", "SI", "STAGE_OUT", "SO", "UPDATE_DB", "UD"}
_FINAL = {
    "COMPLETED": ("completed", None), "CD": ("completed", None),
    "FAILED": ("failed", "job_failed"), "F": ("failed", "job_failed"),
    "TIMEOUT": ("failed", "timeout"), "TO": ("failed", "timeout"),
    "OUT_OF_MEMORY": ("failed", "out_of_memory"), "OOM": ("failed", "out_of_memory"),
    "NODE_FAIL": ("failed", "node_fail"), "NF": ("failed", "node_fail"),
    "PREEMPTED": ("failed", "preempted"), "PR": ("failed", "preempted"),
    "BOOT_FAIL": ("failed", "boot_fail"), "BF": ("failed", "boot_fail"),
    "DEADLINE": ("failed", "deadline"), "DL": ("failed", "deadline"),
    "REVOKED": ("failed", "revoked"), "RV": ("failed", "revoked"),
    "CANCELLED": ("cancelled", "scheduler_cancelled"), "CA": ("cancelled", "scheduler_cancelled"),
}


def map_state(slurm_state: str) -> tuple[str, str | None]:
    """A Slurm job state (long or short form, e.g. "CANCELLED by 0", "FAILED+") as
    ``(kind, reason)``: kind is pending | running | completed | failed | cancelled
    | unknown, reason the failure code a final non-success state reports."""
    words = (slurm_state or "").strip().upper().split()
    state = words[0].rstrip("+") if words else ""
    if state in _PENDING:
        return ("pending", None)
    if state in _RUNNING:
        return ("running", None)
    return _FINAL.get(state, ("unknown", None))


@dataclass
class JobInfo:
    """What Slurm says about one job."""

    state: str
    reason: str = ""
    node: str = ""
    exit_code: str = ""
    time_limit: str = ""


@dataclass
class _Tracked:
    job: Job
    job_id: str
    reason: str | None = None  # the pending reason last reported
    running_reported: bool = False
    cancelled: bool = False  # by us: end silently
    misses: int = 0
    unknown_logged: bool = False


def _one_line(text: str, limit: int = 600) -> str:
    text = " | ".join(s.strip() for s in text.splitlines() if s.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _stderr_tail(bundle_dir: Path, lines: int = 3) -> str:
    got = [s for s in bundle.tail(bundle_dir / bundle.STDERR_FILE, 2000).splitlines() if s.strip()]
    return " | ".join(got[-lines:])


def _command_env() -> dict[str, str]:
    """The environment Slurm commands get (and, with export=ALL, the job): ours minus control-plane and proxy variables."""
    drop_prefix = ("VQPU_REDIS", "REDIS_")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(drop_prefix) and k.lower() not in
           ("http_proxy", "https_proxy", "ftp_proxy", "all_proxy", "no_proxy")}
    # The umask slurmstepd creates the job's --output/--error files with (sbatch sends its own, or this):
    # the bundle's logs are as private as the bundle.
    env["SLURM_UMASK"] = f"{private.UMASK:04o}"
    return env


# ---------------------------------------------------------------- executor


class SlurmExecutor(Executor):
    name = "slurm"
    survives_agent = True

    def __init__(self, config: SlurmConfig | None = None, **overrides: Any) -> None:
        if config is None:
            config = SlurmConfig(**overrides)
        elif overrides:
            raise TypeError("pass a SlurmConfig or keyword settings, not both")
        self.config = config
        self._lock = threading.Lock()
        self._tracked: dict[str, _Tracked] = {}
        self._cancelled_keys: set[tuple[str, int]] = set()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._sacct_ok: bool | None = None
        self.calls: collections.Counter[str] = collections.Counter()  # Slurm command invocations, by name

    # -------------------------------------------------------------- API

    def start(self, reporter: Reporter) -> None:
        super().start(reporter)
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._poll_loop, name="slurm-poller", daemon=True)
            self._thread.start()

    def submit(self, job: Job) -> None:
        bundle_dir = Path(job.bundle_dir).resolve()
        with self._lock:
            if job.key in self._cancelled_keys:  # cancelled before we got to it
                self._cancelled_keys.discard(job.key)
                return
        try:
            script = bundle_dir / SCRIPT_FILE
            bundle.write_atomic(script, render_script(self.config, job).encode())  # 0600: sbatch reads it
            name = job_name(self.config, job)
            job_id = self._sbatch(["sbatch", "--parsable", f"--chdir={bundle_dir}",
                                   f"--output={_slurm_path(bundle_dir / bundle.STDOUT_FILE)}",
                                   f"--error={_slurm_path(bundle_dir / bundle.STDERR_FILE)}",
                                   f"--job-name={name}", f"--export={self.config.export}", str(script)], name)
        except VqpuError as exc:
            log.warning("sbatch for %s failed: %s", job.task_id, exc)
            self.reporter.failed(job, "scheduler_failed", _one_line(f"could not submit the Slurm job: {exc.message}"))
            return
        except OSError as exc:
            log.warning("staging the Slurm script for %s failed: %s", job.task_id, exc)
            self.reporter.failed(job, "scheduler_failed", _one_line(f"could not write the Slurm job script: {exc}"))
            return
        job.handle["slurm_job_id"] = job_id
        try:
            bundle.write_atomic(bundle_dir / JOB_ID_FILE, f"{job_id}\n".encode())
        except OSError as exc:  # re-attach will not work, the job itself does
            log.warning("could not record Slurm job id %s in %s: %s", job_id, bundle_dir, exc)
        with self._lock:
            cancelled = job.key in self._cancelled_keys
        if cancelled:
            self._scancel(job_id)
            with self._lock:
                self._cancelled_keys.discard(job.key)
            return
        log.info("%s attempt %d is Slurm job %s", job.task_id, job.attempt, job_id)
        # Report before tracking, so that "running" can never overtake "scheduled".
        self.reporter.scheduled(job, {"executor": self.name, "job_id": job_id, "reason": "submitted"})
        with self._lock:
            self._tracked[job_id] = _Tracked(job, job_id, cancelled=job.key in self._cancelled_keys)
        self._wake.set()

    def cancel(self, job: Job) -> None:
        with self._lock:
            self._cancelled_keys.add(job.key)
            job_id = job.handle.get("slurm_job_id")
            if job_id is None:
                job_id = next((i for i, t in self._tracked.items() if t.job.key == job.key), None)
            if job_id is not None and job_id in self._tracked:
                self._tracked[job_id].cancelled = True
        if job_id is not None:
            self._scancel(str(job_id))

    def reattach(self, job: Job) -> bool:
        bundle_dir = Path(job.bundle_dir)
        try:
            job_id = (bundle_dir / JOB_ID_FILE).read_text().strip()
        except OSError:
            return False
        if not re.fullmatch(r"\d+", job_id):
            return False
        try:
            info = self._squeue([job_id]).get(job_id) or self._lookup(job_id)
        except SchedulerError as exc:
            # Slurm is unreachable right now: track the job anyway; the poller finds
            # out what became of it (or declares it lost) once Slurm answers.
            log.warning("re-attaching Slurm job %s without confirmation: %s", job_id, exc)
            info = JobInfo("UNKNOWN")
        if info is None and bundle.read_result(bundle_dir) is None:
            log.info("Slurm job %s of %s is gone and left no result: not re-attached", job_id, job.task_id)
            return False
        job.handle["slurm_job_id"] = job_id
        with self._lock:
            self._tracked[job_id] = _Tracked(job, job_id)
        log.info("re-attached %s attempt %d to Slurm job %s", job.task_id, job.attempt, job_id)
        self._wake.set()
        return True

    def shutdown(self, wait: bool = True) -> None:
        """Stop the poller. Slurm jobs keep running; a new agent can re-attach to them."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and wait:
            self._thread.join(timeout=self.config.command_timeout_s + 5)
        self._thread = None

    def tracked(self) -> list[str]:
        """The Slurm job ids being followed now."""
        with self._lock:
            return list(self._tracked)

    # ---------------------------------------------------------- commands

    def _slurm(self, argv: Sequence[str], tries: int | None = None) -> str:
        """Run a Slurm command; retry transient failures with exponential backoff.

        Returns stdout; raises SchedulerError with the first line of stderr
        (``transient`` set when the tries ran out on transient failures)."""
        cfg = self.config
        tries = tries or cfg.command_tries
        name = argv[0]
        cmd = [os.path.join(cfg.bin_dir, name) if cfg.bin_dir else name, *argv[1:]]
        delay = cfg.backoff_s
        last = ""
        for attempt in range(1, tries + 1):
            self.calls[name] += 1
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=cfg.command_timeout_s,
                                      stdin=subprocess.DEVNULL, env=_command_env(), umask=private.UMASK)
            except FileNotFoundError:
                raise SchedulerError(f"{name} not found", hint="install the Slurm client tools or set "
                                     "SlurmConfig.bin_dir") from None
            except subprocess.TimeoutExpired:
                last = f"{name} timed out after {cfg.command_timeout_s:g} s"
            else:
                if proc.returncode == 0:
                    return proc.stdout
                err = (proc.stderr or proc.stdout or "").strip()
                first = err.splitlines()[0] if err else f"{name} exited with {proc.returncode}"
                if not any(m in err.lower() for m in TRANSIENT_MARKERS):
                    raise SchedulerError(_one_line(first, 300), hint=f"{name} exit status {proc.returncode}")
                last = _one_line(first, 300)
            if attempt == tries:
                break
            log.info("%s: transient failure (%s); retry %d/%d in %.1f s", name, last, attempt, tries - 1, delay)
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, 8.0)
        err = SchedulerError(last or f"{name} failed", hint=f"Slurm did not answer after {attempt} tries; "
                             "is slurmctld up?")
        err.transient = True
        raise err

    def _sbatch(self, argv: Sequence[str], name: str) -> str:
        """Submit once, even across retries: a submission that timed out may still
        have gone through, so before trying again look for a job of this
        (attempt-unique) name and adopt it."""
        cfg = self.config
        delay = cfg.backoff_s
        for attempt in range(1, cfg.command_tries + 1):
            try:
                return parse_job_id(self._slurm(argv, tries=1))
            except SchedulerError as exc:
                if not exc.transient or attempt == cfg.command_tries:
                    raise
                log.info("sbatch: transient failure (%s); checking before retry %d/%d in %.1f s", exc.message,
                         attempt, cfg.command_tries - 1, delay)
                last = exc
            if self._stop.wait(delay):
                raise last
            delay = min(delay * 2, 8.0)
            try:
                ids = self._slurm(["squeue", "-h", "-t", "all", "-n", name, "-o", "%i"], tries=1).split()
            except SchedulerError:
                continue
            if ids:
                job_id = max(ids, key=lambda i: int(i) if i.isdigit() else -1)
                log.warning("sbatch reported a failure but job %s (%s) exists: adopting it", job_id, name)
                return job_id
        raise AssertionError("unreachable")

    def _scancel(self, job_id: str) -> None:
        try:
            self._slurm(["scancel", job_id])
        except SchedulerError as exc:
            if any(m in exc.message.lower() for m in _GONE_MARKERS):
                return
            log.warning("scancel %s failed: %s", job_id, exc)

    def _squeue(self, ids: Sequence[str]) -> dict[str, JobInfo]:
        try:
            out = self._slurm(["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%T|%r|%N"])
        except SchedulerError as exc:
            if "invalid job id" in exc.message.lower():  # a single id squeue no longer knows
                return {}
            raise
        found: dict[str, JobInfo] = {}
        for line in out.splitlines():
            parts = line.strip().split("|", 3)
            if len(parts) == 4:
                found[parts[0]] = JobInfo(state=parts[1], reason=parts[2], node=parts[3])
        return found

    def _lookup(self, job_id: str) -> JobInfo | None:
        """A job squeue does not list: scontrol (kept MinJobAge), then sacct. None: Slurm knows nothing of it."""
        try:
            out = self._slurm(["scontrol", "-o", "show", "job", job_id])
            fields = dict(re.findall(r"(?:^|\s)(JobState|Reason|NodeList|ExitCode|TimeLimit)=(\S*)", out))
            if "JobState" in fields:
                node = fields.get("NodeList", "")
                return JobInfo(fields["JobState"], fields.get("Reason", ""), "" if node == "(null)" else node,
                               fields.get("ExitCode", ""), fields.get("TimeLimit", ""))
        except SchedulerError as exc:
            if "invalid job id" not in exc.message.lower():
                raise
        if self._sacct_ok is False:
            return None
        try:
            out = self._slurm(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State,ExitCode,NodeList,Reason"])
        except SchedulerError as exc:
            if "accounting storage is disabled" in exc.message.lower() or "not found" in exc.message.lower():
                self._sacct_ok = False
            else:
                log.info("sacct %s: %s", job_id, exc)
            return None
        self._sacct_ok = True
        for line in out.splitlines():
            parts = line.strip().split("|")
            if len(parts) >= 2 and parts[0]:
                node = parts[2] if len(parts) > 2 else ""
                return JobInfo(parts[0], parts[3] if len(parts) > 3 else "",
                               "" if node in ("None assigned", "(null)") else node, parts[1])
        return None

    # ------------------------------------------------------------- poller

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.config.poll_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.poll_once()
            except SchedulerError as exc:  # Slurm is away or busy: say so, without a traceback
                log.warning("Slurm poll failed (%s); retrying in %.1f s", exc, self.config.poll_interval_s)
            except Exception:  # the poller must survive anything
                log.exception("Slurm poll failed; retrying in %.1f s", self.config.poll_interval_s)

    def poll_once(self) -> None:
        """One round: one squeue for all tracked jobs, lookups for the ones it no longer lists."""
        with self._lock:
            items = dict(self._tracked)
        if not items:
            return
        listed = self._squeue(list(items))
        for job_id, t in items.items():
            try:
                info = listed.get(job_id)
                if info is None:
                    info = self._lookup(job_id)
                self._advance(t, info)
            except Exception:
                log.exception("Slurm job %s (%s): poll failed", job_id, t.job.task_id)

    def _drop(self, t: _Tracked) -> None:
        with self._lock:
            self._tracked.pop(t.job_id, None)
            self._cancelled_keys.discard(t.job.key)

    def _advance(self, t: _Tracked, info: JobInfo | None) -> None:
        job = t.job
        if info is None:
            if bundle.read_result(Path(job.bundle_dir)) is not None:
                info = JobInfo("COMPLETED")  # Slurm forgot it (MinJobAge), but it left its result
            else:
                t.misses += 1
                if t.misses >= self.config.lost_after_polls:
                    self._drop(t)
                    if not t.cancelled:
                        self.reporter.failed(job, "job_lost", _one_line(
                            f"Slurm no longer knows job {t.job_id} and it left no result"
                            + (f"; stderr: {tail}" if (tail := _stderr_tail(Path(job.bundle_dir))) else "")))
                return
        t.misses = 0
        kind, reason = map_state(info.state)
        if kind == "unknown":
            if not t.unknown_logged and info.state != "UNKNOWN":
                log.warning("Slurm job %s is in an unexpected state %r; still watching", t.job_id, info.state)
                t.unknown_logged = True
            return
        if kind == "pending":
            why = info.reason
            if why and why != "None" and why != t.reason and not t.cancelled:
                t.reason = why
                self.reporter.scheduled(job, {"executor": self.name, "job_id": t.job_id, "reason": why})
            return
        if kind == "running":
            if not t.running_reported and not t.cancelled:
                t.running_reported = True
                self.reporter.running(job, {"executor": self.name, "job_id": t.job_id, "node": info.node})
            return
        # A final state.
        self._drop(t)
        if t.cancelled:
            log.info("Slurm job %s (%s) ended %s after our cancel", t.job_id, job.task_id, info.state)
            return
        self._report_final(t, info, kind, reason)

    def _report_final(self, t: _Tracked, info: JobInfo, kind: str, reason: str | None) -> None:
        job = t.job
        bundle_dir = Path(job.bundle_dir)
        result = bundle.read_result(bundle_dir)
        started = kind != "cancelled" or bool(info.node) or result is not None
        if started and not t.running_reported:  # it started and ended between two polls
            t.running_reported = True
            self.reporter.running(job, {"executor": self.name, "job_id": t.job_id, "node": info.node})
        if result is not None and (not isinstance(result, dict) or result.get("ok")):
            report_result(self.reporter, job, result)  # checked against the result schema there
            return
        tail = _stderr_tail(bundle_dir)
        err = f"; stderr: {tail}" if tail else ""
        if kind == "completed" or (result is not None and reason == "job_failed"):
            why = result.get("reason") if result else None
            msg = (result.get("error") if result else None) or "the runner ended without writing a result"
            self.reporter.failed(job, why or "runner_error", _one_line(f"{msg}{err}"))
            return
        if not info.exit_code or not info.time_limit:
            try:  # squeue shows neither exit code nor limit: ask scontrol once
                more = self._lookup(t.job_id)
                if more is not None:
                    info.exit_code = info.exit_code or more.exit_code
                    info.time_limit = info.time_limit or more.time_limit
                    info.node = info.node or more.node
            except SchedulerError:
                pass
        jid = t.job_id
        code = info.exit_code.split(":")[0] if info.exit_code else "?"
        messages = {
            "job_failed": f"Slurm job {jid} failed with exit code {code}",
            "timeout": f"Slurm job {jid} ran over its time limit ({info.time_limit or self.config.time_limit or '?'}) "
                       "and was killed",
            "out_of_memory": f"Slurm job {jid} ran out of memory"
                             + (f" (--mem={self.config.mem})" if self.config.mem else ""),
            "node_fail": f"the node {info.node or '?'} failed while running Slurm job {jid}",
            "preempted": f"Slurm job {jid} was preempted",
            "boot_fail": f"the node for Slurm job {jid} failed to boot",
            "deadline": f"Slurm job {jid} missed its deadline",
            "revoked": f"Slurm job {jid} was revoked (it runs on another cluster of the federation)",
            "scheduler_cancelled": f"Slurm job {jid} was cancelled outside jupyter-vqpu (scancel or an administrator)",
        }
        assert reason is not None
        self.reporter.failed(job, reason, _one_line(messages.get(reason, f"Slurm job {jid} ended {info.state}") + err))
