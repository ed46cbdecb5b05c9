"""The Slurm commands: ``sbatch``, ``squeue``, ``scontrol``, ``sacct``, ``scancel``, and their output.

Both Slurm executors (per-task jobs and pilots) talk to Slurm only through
:class:`SlurmCommands`: every call has a subprocess timeout, transient
controller failures (busy, restarting, unreachable) are retried with
exponential backoff, everything else is a :class:`SchedulerError` with the
command's first line of stderr. The commands run with the agent's environment
minus the control plane's and the proxies' variables (:func:`command_env`).

:func:`map_state` turns a Slurm job state into what the executors report.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jupyter_vqpu.core.errors import VqpuError
from jupyter_vqpu_agent import private
from jupyter_vqpu_agent.executors.base import one_line
from jupyter_vqpu_agent.executors.slurm_config import SlurmConfig

log = logging.getLogger("vqpu.executor.slurm")


class SchedulerError(VqpuError):
    """A Slurm command failed (after retries, where the failure was transient)."""

    code = "scheduler_error"
    http_status = 503
    transient = False  # True: Slurm did not answer (busy, restarting); the same call may work later




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
GONE_MARKERS = ("invalid job id", "already completing or completed", "job has already finished")


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



def slurm_path(path: Path) -> str:
    """A path for --output/--error: '%' is a Slurm filename pattern, so double it."""
    return str(path).replace("%", "%%")


def command_env() -> dict[str, str]:
    """The environment Slurm commands get (and, with export=ALL, the job): ours minus control-plane and proxy variables."""
    drop_prefix = ("VQPU_REDIS", "REDIS_")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(drop_prefix) and k.lower() not in
           ("http_proxy", "https_proxy", "ftp_proxy", "all_proxy", "no_proxy")}
    # The umask slurmstepd creates the job's --output/--error files with (sbatch sends its own, or this):
    # the bundle's logs are as private as the bundle.
    env["SLURM_UMASK"] = f"{private.UMASK:04o}"
    return env


class SlurmCommands:
    """Slurm's client commands for one executor: retries, timeouts, parsing.

    ``calls`` counts invocations by command (tests and benchmarks read it);
    setting ``stop`` ends any backoff wait at once (the executor is shutting down)."""

    def __init__(self, config: SlurmConfig) -> None:
        self.config = config
        self.stop = threading.Event()
        self.calls: collections.Counter[str] = collections.Counter()
        self._sacct_ok: bool | None = None  # None: not known yet whether accounting is on

    def run(self, argv: Sequence[str], tries: int | None = None) -> str:
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
                                      stdin=subprocess.DEVNULL, env=command_env(), umask=private.UMASK)
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
                    raise SchedulerError(one_line(first, 300), hint=f"{name} exit status {proc.returncode}")
                last = one_line(first, 300)
            if attempt == tries:
                break
            log.info("%s: transient failure (%s); retry %d/%d in %.1f s", name, last, attempt, tries - 1, delay)
            if self.stop.wait(delay):
                break
            delay = min(delay * 2, 8.0)
        err = SchedulerError(last or f"{name} failed", hint=f"Slurm did not answer after {attempt} tries; "
                             "is slurmctld up?")
        err.transient = True
        raise err

    def submit(self, script: Path, *, chdir: Path, stdout: Path, stderr: Path, name: str) -> str:
        """``sbatch --parsable`` a rendered batch script (see :meth:`sbatch`); returns the job id.

        The job runs in ``chdir`` under ``name`` (which must be unique per attempt), with the
        configured ``--export``, writing ``stdout``/``stderr`` there."""
        return self.sbatch(["sbatch", "--parsable", f"--chdir={chdir}", f"--output={slurm_path(stdout)}",
                            f"--error={slurm_path(stderr)}", f"--job-name={name}", f"--export={self.config.export}",
                            str(script)], name)

    def sbatch(self, argv: Sequence[str], name: str) -> str:
        """Submit once, even across retries: a submission that timed out may still
        have gone through, so before trying again look for a job of this
        (attempt-unique) name and adopt it."""
        cfg = self.config
        delay = cfg.backoff_s
        for attempt in range(1, cfg.command_tries + 1):
            try:
                return parse_job_id(self.run(argv, tries=1))
            except SchedulerError as exc:
                if not exc.transient or attempt == cfg.command_tries:
                    raise
                log.info("sbatch: transient failure (%s); checking before retry %d/%d in %.1f s", exc.message,
                         attempt, cfg.command_tries - 1, delay)
                last = exc
            if self.stop.wait(delay):
                raise last
            delay = min(delay * 2, 8.0)
            try:
                ids = self.run(["squeue", "-h", "-t", "all", "-n", name, "-o", "%i"], tries=1).split()
            except SchedulerError:
                continue
            if ids:
                job_id = max(ids, key=lambda i: int(i) if i.isdigit() else -1)
                log.warning("sbatch reported a failure but job %s (%s) exists: adopting it", job_id, name)
                return job_id
        raise AssertionError("unreachable")

    def scancel(self, job_id: str) -> None:
        """Cancel a job; idempotent (a job Slurm no longer knows, or that already ended, is fine) and
        never raises: a failure is logged, and the poller sees what became of the job."""
        try:
            self.run(["scancel", job_id])
        except SchedulerError as exc:
            if any(m in exc.message.lower() for m in GONE_MARKERS):
                return
            log.warning("scancel %s failed: %s", job_id, exc)

    def squeue(self, ids: Sequence[str]) -> dict[str, JobInfo]:
        """What ONE ``squeue`` says of these jobs, by id; a job it no longer lists is absent
        (ask :meth:`lookup`)."""
        try:
            out = self.run(["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%T|%r|%N"])
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

    def lookup(self, job_id: str) -> JobInfo | None:
        """A job squeue does not list: scontrol (kept MinJobAge), then sacct. None: Slurm knows nothing of it."""
        try:
            out = self.run(["scontrol", "-o", "show", "job", job_id])
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
            out = self.run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State,ExitCode,NodeList,Reason"])
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
