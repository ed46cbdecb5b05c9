"""The Slurm executor without Slurm: script rendering, config validation, the
state table, the command helper's retries, and the poller's state machine
against a scripted fake of the Slurm commands."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_vqpu_agent import bundle
from jupyter_vqpu_agent.executors import slurm_commands, slurm_render
from jupyter_vqpu_agent.executors.base import Job
from jupyter_vqpu_agent.executors.slurm import SlurmExecutor
from jupyter_vqpu_agent.executors.slurm_commands import JobInfo, SchedulerError, SlurmCommands, map_state, parse_job_id
from jupyter_vqpu_agent.executors.slurm_config import SlurmConfig, SlurmConfigError
from jupyter_vqpu_agent.executors.slurm_render import format_time_limit, render_script, sbatch_lines

HOSTILE = [
    "a'b",
    'say "hi"',
    "$(touch {marker})",
    "`touch {marker}`",
    "x'; touch {marker}; echo '",
    "${{IFS}}$(touch${{IFS}}{marker})",
    "name\nwith\nnewlines $(touch {marker})",
    "\\'$(touch {marker})\\'",
    "-rf --wrap=evil",
    "ünïcødé ✓ $HOME",
]


def _job(tmp_path: Path, name: str = "", task_id: str = "fez.0123456789ABCDEF", timeout_s: float = 600) -> Job:
    d = tmp_path / "bundle"
    d.mkdir(exist_ok=True)
    return Job(task_id=task_id, attempt=1, bundle_dir=d, timeout_s=timeout_s, name=name)


def _line(script: str, prefix: str) -> str:
    (line,) = [s for s in script.splitlines() if s.startswith(prefix)]
    return line


# ------------------------------------------------------------------ rendering


@pytest.mark.parametrize("raw", HOSTILE)
def test_hostile_names_stay_inert(tmp_path, raw):
    marker = tmp_path / "pwned"
    name = raw.format(marker=marker)
    job = _job(tmp_path, name=name)
    script = render_script(SlurmConfig(), job)

    # The #SBATCH job name is sanitised to a safe alphabet.
    jn = _line(script, "#SBATCH --job-name=").split("=", 1)[1]
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", jn), jn
    assert "$(" not in jn and "`" not in jn

    # The exported task name parses, and evaluating it yields the text, not its effects.
    line = _line(script, "export VQPU_TASK_NAME=")
    assert subprocess.run(["bash", "-n"], input=line, text=True).returncode == 0
    out = subprocess.run(["bash", "-c", line + '\nprintf %s "$VQPU_TASK_NAME"'], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == re.sub(r"[\x00-\x1f\x7f]", " ", name)
    assert not marker.exists()


def test_whole_rendered_script_runs_inert(tmp_path):
    """Run the complete script under bash (python replaced by echo): hostile task
    fields and a hostile bundle path come out as plain arguments."""
    marker = tmp_path / "pwned"
    evil_dir = tmp_path / "b $(touch pwned) `touch pwned` 'q' \"x\" ;touch pwned"
    evil_dir.mkdir()
    job = Job(task_id=f"t$(touch {marker})", attempt=1, bundle_dir=evil_dir, timeout_s=60,
              name=f"n'; touch {marker}; '")
    script = render_script(SlurmConfig(python="/bin/echo", pythonpath=""), job)
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=tmp_path,
                         env={"PATH": "/usr/bin:/bin", "VQPU_REDIS_URL": "redis://secret", "http_proxy": "http://p"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"-m jupyter_vqpu_agent.runner {evil_dir.resolve()}"
    assert not marker.exists() and not (evil_dir / "pwned").exists()


def test_job_environment_is_scrubbed(tmp_path):
    job = _job(tmp_path, name="n")
    script = render_script(SlurmConfig(python="/usr/bin/env", runner_module="x", pythonpath="/opt/vqpu",
                                       env={"OMP_NUM_THREADS": "4", "WEIRD": "a b $(c)"}), job)
    # exec /usr/bin/env -m x BUNDLE fails; instead cut the script before its exec line.
    body = script.rsplit("exec ", 1)[0] + "env\n"
    out = subprocess.run(["bash", "-c", body], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "VQPU_REDIS_URL": "redis://secret", "REDIS_PASSWORD": "pw",
                              "https_proxy": "http://p", "HTTP_PROXY": "http://p", "PYTHONPATH": "/old"})
    env = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    assert out.returncode == 0, out.stderr
    for gone in ("VQPU_REDIS_URL", "REDIS_PASSWORD", "https_proxy", "HTTP_PROXY"):
        assert gone not in env
    assert env["OMP_NUM_THREADS"] == "4" and env["WEIRD"] == "a b $(c)"
    assert env["PYTHONPATH"] == "/opt/vqpu:/old"
    assert env["VQPU_TASK_ID"] == job.task_id and env["PYTHONUNBUFFERED"] == "1"


def test_script_shape(tmp_path):
    script = render_script(SlurmConfig(setup=["module load cuda"], python="python"), _job(tmp_path))
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    first_cmd = next(i for i, s in enumerate(lines) if s and not s.startswith("#"))
    assert all(i < first_cmd for i, s in enumerate(lines) if s.startswith("#SBATCH"))  # sbatch stops at a command
    assert "set -euo pipefail" in lines
    assert lines.index("set -euo pipefail") < lines.index("module load cuda")
    assert lines[-1] == f"exec python -m jupyter_vqpu_agent.runner {Path(tmp_path / 'bundle').resolve()}"
    assert not re.search(r"\$\{vqpu_[a-z_]+\}", script)


def test_default_pythonpath_points_at_the_checkout(tmp_path):
    script = render_script(SlurmConfig(), _job(tmp_path))
    repo = Path(slurm_render.__file__).resolve().parents[3]
    assert (repo / "agent" / "jupyter_vqpu_agent" / "__init__.py").exists()
    want = f"{repo}:{repo / 'agent'}"
    assert f"export PYTHONPATH={want}" in script or f"export PYTHONPATH='{want}'" in script
    assert "PYTHONPATH" not in render_script(SlurmConfig(pythonpath=""), _job(tmp_path)).split("set -u\n")[-1]


def test_knobs_make_sbatch_lines(tmp_path):
    cfg = SlurmConfig(partition="gpu", account="proj-42", qos="normal", time_limit="00:10:00", mem="8G",
                      cpus_per_task=4, gres="gpu:a100:1",
                      extra_sbatch=["--constraint=a100", "#SBATCH --exclusive", "  --comment=vqpu run  "])
    lines = sbatch_lines(cfg, _job(tmp_path, name="bell"))
    assert lines == [
        "#SBATCH --job-name=vqpu-bell-fez.0123456789ABCDEF-a1",
        "#SBATCH --time=00:10:00",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks=1",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=proj-42",
        "#SBATCH --qos=normal",
        "#SBATCH --mem=8G",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --gres=gpu:a100:1",
        "#SBATCH --no-requeue",
        "#SBATCH --constraint=a100",
        "#SBATCH --exclusive",
        "#SBATCH --comment=vqpu run",
    ]


def test_defaults_and_time_from_job_timeout(tmp_path):
    lines = sbatch_lines(SlurmConfig(requeue=True), _job(tmp_path, timeout_s=61))
    assert "#SBATCH --time=00:02:00" in lines and "#SBATCH --requeue" in lines
    assert not any(s.startswith(("#SBATCH --partition", "#SBATCH --gres", "#SBATCH --mem")) for s in lines)
    assert format_time_limit(1) == "00:01:00"
    assert format_time_limit(600) == "00:10:00"
    assert format_time_limit(36 * 3600) == "1-12:00:00"


@pytest.mark.parametrize("extra", [
    "-p gpu",                        # short options are not accepted
    "constraint=a100",               # must start with --
    "#SBATCH -N 2",
    "--constraint=a100\n#SBATCH --wrap=evil",
    "--constraint=a100\nrm -rf /",
    "--output=/tmp/x",               # the executor owns these
    "--wrap=hostname",
    "--job-name=other",
    "--array=1-10",
    "--time=1",                      # use the knob
    "--bad option",
])
def test_invalid_extra_lines_are_rejected(extra):
    with pytest.raises(SlurmConfigError):
        SlurmConfig(extra_sbatch=[extra])


@pytest.mark.parametrize("kw", [
    {"partition": "gpu; rm"}, {"partition": "a b"}, {"account": "$(id)"}, {"qos": "x\n"},
    {"time_limit": "10 minutes"}, {"time_limit": "00:10:00;x"}, {"mem": "4 GB"}, {"mem": "-1"},
    {"cpus_per_task": 0}, {"gres": "gpu:1 --wrap=x"}, {"env": {"A-B": "x"}}, {"setup": ["ok", "two\nlines"]},
    {"runner_module": "jupyter_vqpu_agent.runner; rm"}, {"job_name_prefix": "a b"}, {"poll_interval_s": 0},
    {"export": "ALL; rm"}, {"python": ""},
])
def test_invalid_knobs_are_rejected(kw):
    with pytest.raises(SlurmConfigError):
        SlurmConfig(**kw)


def test_custom_template_placeholders(tmp_path):
    good = tmp_path / "good.tmpl"
    good.write_text("#!/bin/bash\n${vqpu_sbatch}\necho $HOME ${USER:-x} $$ ${VQPU_TASK_ID}\n"
                    "exec ${vqpu_python} -m ${vqpu_runner} ${vqpu_bundle}\n")
    out = render_script(SlurmConfig(template=good, python="py"), _job(tmp_path))
    assert "echo $HOME ${USER:-x} $$ ${VQPU_TASK_ID}" in out  # bash's $ are left alone
    assert "exec py -m jupyter_vqpu_agent.runner" in out
    bad = tmp_path / "bad.tmpl"
    bad.write_text("#!/bin/bash\nexec ${vqpu_pyhton}\n")
    with pytest.raises(SlurmConfigError, match="vqpu_pyhton"):
        render_script(SlurmConfig(template=bad), _job(tmp_path))


def test_packaged_template_is_found():
    text = slurm_render.template_text(SlurmConfig())
    assert "${vqpu_sbatch}" in text and "set -euo pipefail" in text


def test_parse_job_id():
    assert parse_job_id("123\n") == "123"
    assert parse_job_id("4567;cluster-a\n") == "4567"
    with pytest.raises(SchedulerError):
        parse_job_id("Submitted batch job\n")
    with pytest.raises(SchedulerError):
        parse_job_id("")


# -------------------------------------------------------------------- states

@pytest.mark.parametrize("state,expected", [
    ("PENDING", ("pending", None)), ("PD", ("pending", None)), ("REQUEUED", ("pending", None)),
    ("REQUEUE_HOLD", ("pending", None)),
    ("CONFIGURING", ("running", None)), ("RUNNING", ("running", None)), ("R", ("running", None)),
    ("COMPLETING", ("running", None)), ("SUSPENDED", ("running", None)),
    ("COMPLETED", ("completed", None)), ("CD", ("completed", None)),
    ("FAILED", ("failed", "job_failed")), ("TIMEOUT", ("failed", "timeout")), ("TO", ("failed", "timeout")),
    ("OUT_OF_MEMORY", ("failed", "out_of_memory")), ("OOM", ("failed", "out_of_memory")),
    ("NODE_FAIL", ("failed", "node_fail")), ("PREEMPTED", ("failed", "preempted")),
    ("BOOT_FAIL", ("failed", "boot_fail")), ("DEADLINE", ("failed", "deadline")),
    ("CANCELLED", ("cancelled", "scheduler_cancelled")), ("CANCELLED by 0", ("cancelled", "scheduler_cancelled")),
    ("cancelled+", ("cancelled", "scheduler_cancelled")), (" TIMEOUT ", ("failed", "timeout")),
    ("WHATEVER", ("unknown", None)), ("", ("unknown", None)),
])
def test_map_state(state, expected):
    assert map_state(state) == expected


# ---------------------------------------------------- the command helper


class _Proc:
    def __init__(self, rc: int, out: str = "", err: str = "") -> None:
        self.returncode, self.stdout, self.stderr = rc, out, err


def _fake_run(monkeypatch, answers):
    calls = []

    def run(cmd, **kw):
        calls.append(cmd)
        a = answers.pop(0)
        if isinstance(a, BaseException):
            raise a
        return a

    monkeypatch.setattr(slurm_commands.subprocess, "run", run)
    return calls


def test_transient_errors_are_retried(monkeypatch):
    calls = _fake_run(monkeypatch, [
        _Proc(1, err="squeue: error: Socket timed out on send/recv operation"),
        subprocess.TimeoutExpired("squeue", 1),
        _Proc(1, err="slurm_load_jobs error: Unable to contact slurm controller (connect failure)"),
        _Proc(0, out="1|RUNNING|None|n1\n"),
    ])
    ex = SlurmCommands(SlurmConfig(backoff_s=0.001))
    assert ex.run(["squeue", "-h"]) == "1|RUNNING|None|n1\n"
    assert len(calls) == 4 and ex.calls["squeue"] == 4


def test_retries_are_bounded(monkeypatch):
    calls = _fake_run(monkeypatch, [_Proc(1, err="sbatch: error: Resource temporarily unavailable")] * 10)
    ex = SlurmCommands(SlurmConfig(backoff_s=0.001, command_tries=5))
    with pytest.raises(SchedulerError, match="Resource temporarily unavailable"):
        ex.run(["sbatch", "x"])
    assert len(calls) == 5


def test_non_transient_errors_raise_at_once(monkeypatch):
    calls = _fake_run(monkeypatch, [
        _Proc(1, err="sbatch: error: Batch job submission failed: Invalid partition name specified\nmore\n")])
    with pytest.raises(SchedulerError) as info:
        SlurmCommands(SlurmConfig(backoff_s=0.001)).run(["sbatch", "x"])
    assert info.value.message == "sbatch: error: Batch job submission failed: Invalid partition name specified"
    assert len(calls) == 1


def test_sbatch_that_timed_out_but_went_through_is_adopted(monkeypatch, tmp_path):
    calls = _fake_run(monkeypatch, [
        subprocess.TimeoutExpired("sbatch", 30),      # the controller was slow: did it submit?
        _Proc(0, out="4242\n"),                       # squeue -n NAME: yes
    ])
    ex = SlurmExecutor(backoff_s=0.001)
    ex.reporter = Recorder()
    job = _job(tmp_path, name="slow")
    ex.submit(job)
    assert [c[0] for c in calls] == ["sbatch", "squeue"]
    assert calls[1][calls[1].index("-n") + 1] == "vqpu-slow-fez.0123456789ABCDEF-a1"
    assert job.handle["slurm_job_id"] == "4242" and ex.reporter.events == [("scheduled", "submitted")]


def test_sbatch_retried_when_nothing_went_through(monkeypatch, tmp_path):
    calls = _fake_run(monkeypatch, [
        _Proc(1, err="sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"),
        _Proc(0, out=""),                              # no such job: submit again
        _Proc(0, out="77;ci\n"),
    ])
    ex = SlurmExecutor(backoff_s=0.001)
    ex.reporter = Recorder()
    job = _job(tmp_path)
    ex.submit(job)
    assert [c[0] for c in calls] == ["sbatch", "squeue", "sbatch"]
    assert job.handle["slurm_job_id"] == "77"


def test_missing_binary(monkeypatch):
    _fake_run(monkeypatch, [FileNotFoundError("sbatch")])
    with pytest.raises(SchedulerError, match="sbatch not found"):
        SlurmCommands(SlurmConfig()).run(["sbatch", "x"])


def test_commands_do_not_see_control_plane_secrets(monkeypatch):
    seen = {}

    def run(cmd, **kw):
        seen.update(kw["env"])
        return _Proc(0, out="7\n")

    monkeypatch.setattr(slurm_commands.subprocess, "run", run)
    monkeypatch.setenv("VQPU_REDIS_URL", "redis://:pw@host")
    monkeypatch.setenv("https_proxy", "http://proxy")
    monkeypatch.setenv("KEEP_ME", "1")
    SlurmCommands(SlurmConfig()).run(["sbatch", "x"])
    assert "VQPU_REDIS_URL" not in seen and "https_proxy" not in seen and seen["KEEP_ME"] == "1"


# ---------------------------------------------- the poller's state machine


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def scheduled(self, job, detail):
        self.events.append(("scheduled", detail.get("reason")))

    def running(self, job, detail):
        self.events.append(("running", detail.get("node")))

    def finished(self, job, result):
        self.events.append(("finished", result.get("ok")))

    def failed(self, job, reason, message):
        self.events.append(("failed", reason, message))


class ScriptedCommands(SlurmCommands):
    """SlurmCommands whose commands are answered by a function instead of Slurm (retries,
    parsing and adoption above ``run`` stay the real ones)."""

    def __init__(self, config: SlurmConfig, answer) -> None:
        super().__init__(config)
        self.answer = answer

    def run(self, argv, tries=None):
        self.calls[argv[0]] += 1
        return self.answer(argv)


class FakeSlurm(SlurmExecutor):
    """SlurmExecutor with its Slurm commands answered from a dict."""

    def __init__(self, **kw) -> None:
        config = SlurmConfig(backoff_s=0.001, **kw)
        super().__init__(config, commands=ScriptedCommands(config, self._answer))
        self.jobs: dict[str, dict] = {}
        self.in_squeue: set[str] = set()
        self.next_id = 100
        self.broken = 0

    def _answer(self, argv):
        cmd = argv[0]
        if self.broken:
            self.broken -= 1
            raise RuntimeError("the poller must survive this")
        if cmd == "sbatch":
            self.next_id += 1
            jid = str(self.next_id)
            self.jobs[jid] = {"state": "PENDING", "reason": "None", "node": "", "exit": "0:0"}
            self.in_squeue.add(jid)
            return f"{jid};ci\n"
        if cmd == "squeue":
            ids = argv[argv.index("-j") + 1].split(",")
            return "".join(f"{i}|{self.jobs[i]['state']}|{self.jobs[i]['reason']}|{self.jobs[i]['node']}\n"
                           for i in ids if i in self.in_squeue)
        if cmd == "scontrol":
            j = self.jobs.get(argv[-1])
            if j is None:
                raise SchedulerError("slurm_load_jobs error: Invalid job id specified")
            return (f"JobId={argv[-1]} JobName=x JobState={j['state']} Reason={j['reason']} ExitCode={j['exit']} "
                    f"TimeLimit=00:01:00 NodeList={j['node'] or '(null)'} Command=/x y\n")
        if cmd == "sacct":
            raise SchedulerError("Slurm accounting storage is disabled")
        if cmd == "scancel":
            j = self.jobs.get(argv[-1])
            if j is None:
                raise SchedulerError("scancel: error: Kill job error on job id 9: Invalid job id specified")
            j["state"] = "CANCELLED"
            return ""
        raise AssertionError(argv)

    def set(self, jid, **kw):
        self.jobs[jid].update(kw)


@pytest.fixture
def fake(tmp_path):
    ex = FakeSlurm()
    ex.reporter = Recorder()
    return ex


#: A result that follows the runner's result schema (jupyter_vqpu/core/result.py) for _submit's 10 shots.
OK_RESULT = {"ok": True, "snapshot_id": "0" * 64, "shots": 10, "counts": {"00": 6, "11": 4}}


def _submit(ex, tmp_path, name="t", **opts) -> Job:
    d = tmp_path / name
    bundle.stage(d, bundle.TaskSpec(task_id=f"fez.{name}", device="fez", attempt=1, snapshot_id="s", shots=10,
                                    circuit_format="qasm3", options=opts), b"{}", "x")
    job = Job(task_id=f"fez.{name}", attempt=1, bundle_dir=d, timeout_s=60, name=name)
    ex.submit(job)
    return job


def test_lifecycle_to_finished(fake, tmp_path):
    job = _submit(fake, tmp_path)
    jid = job.handle["slurm_job_id"]
    assert jid == "101" and (tmp_path / "t" / "slurm_job_id").read_text().strip() == "101"
    assert (tmp_path / "t" / "job.sbatch").exists()
    fake.poll_once()                              # PENDING, reason None: nothing new
    fake.set(jid, reason="Priority")
    fake.poll_once()
    fake.poll_once()                              # same reason: reported once
    fake.set(jid, reason="Resources")
    fake.poll_once()
    fake.set(jid, state="RUNNING", reason="None", node="n7")
    fake.poll_once()
    fake.poll_once()
    bundle.write_result(job.bundle_dir, OK_RESULT)
    fake.set(jid, state="COMPLETED")
    fake.poll_once()
    assert fake.reporter.events == [("scheduled", "submitted"), ("scheduled", "Priority"),
                                    ("scheduled", "Resources"), ("running", "n7"), ("finished", True)]
    assert fake.tracked() == []


def test_fast_job_still_reports_running_first(fake, tmp_path):
    job = _submit(fake, tmp_path)
    bundle.write_result(job.bundle_dir, OK_RESULT)
    fake.set(job.handle["slurm_job_id"], state="COMPLETED", node="n1")
    fake.poll_once()
    assert fake.reporter.events == [("scheduled", "submitted"), ("running", "n1"), ("finished", True)]


@pytest.mark.parametrize("state,reason,text", [
    ("TIMEOUT", "timeout", "time limit (00:01:00)"),
    ("OUT_OF_MEMORY", "out_of_memory", "out of memory"),
    ("NODE_FAIL", "node_fail", "node n1 failed"),
    ("PREEMPTED", "preempted", "preempted"),
    ("BOOT_FAIL", "boot_fail", "boot"),
    ("DEADLINE", "deadline", "deadline"),
    ("FAILED", "job_failed", "exit code 3"),
])
def test_failure_states(fake, tmp_path, state, reason, text):
    job = _submit(fake, tmp_path)
    (job.bundle_dir / bundle.STDERR_FILE).write_text("line one\nTraceback\nValueError: bad thing\n")
    fake.set(job.handle["slurm_job_id"], state=state, node="n1", exit="3:0")
    fake.poll_once()
    kind, got_reason, msg = fake.reporter.events[-1]
    assert kind == "failed" and got_reason == reason
    assert text in msg and "ValueError: bad thing" in msg and "\n" not in msg


def test_completed_without_result_is_a_runner_error(fake, tmp_path):
    job = _submit(fake, tmp_path)
    (job.bundle_dir / bundle.STDERR_FILE).write_text("ImportError: no module named qiskit\n")
    fake.set(job.handle["slurm_job_id"], state="COMPLETED", node="n1")
    fake.poll_once()
    assert fake.reporter.events[-1] == ("failed", "runner_error", "the runner ended without writing a result; "
                                        "stderr: ImportError: no module named qiskit")


def test_failed_result_keeps_its_reason(fake, tmp_path):
    job = _submit(fake, tmp_path)
    bundle.write_result(job.bundle_dir, {"ok": False, "reason": "invalid_circuit", "error": "qubit 200 > 156"})
    fake.set(job.handle["slurm_job_id"], state="COMPLETED", node="n1")
    fake.poll_once()
    assert fake.reporter.events[-1] == ("failed", "invalid_circuit", "qubit 200 > 156")


def test_scheduler_cancel_vs_our_cancel(fake, tmp_path):
    a = _submit(fake, tmp_path, "a")
    b = _submit(fake, tmp_path, "b")
    fake.set(a.handle["slurm_job_id"], state="CANCELLED")  # an administrator's scancel
    fake.cancel(b)                                          # ours
    assert fake.jobs[b.handle["slurm_job_id"]]["state"] == "CANCELLED"
    fake.poll_once()
    assert fake.reporter.events[-1][:2] == ("failed", "scheduler_cancelled")
    assert [e for e in fake.reporter.events if e[0] == "failed"] == [fake.reporter.events[-1]]
    assert fake.tracked() == []
    fake.cancel(b)  # idempotent, also once Slurm has forgotten it
    del fake.jobs[b.handle["slurm_job_id"]]
    fake.cancel(b)


def test_cancel_before_submit_never_submits(fake, tmp_path):
    d = tmp_path / "c"
    job = Job(task_id="fez.c", attempt=1, bundle_dir=d, timeout_s=60)
    fake.cancel(job)
    fake.submit(job)
    assert fake.calls["sbatch"] == 0 and fake.reporter.events == []


def test_forgotten_job_is_lost_after_some_polls(fake, tmp_path):
    job = _submit(fake, tmp_path)
    jid = job.handle["slurm_job_id"]
    fake.in_squeue.discard(jid)
    del fake.jobs[jid]
    fake.poll_once()
    fake.poll_once()
    assert fake.reporter.events[-1][0] == "scheduled"
    fake.poll_once()
    assert fake.reporter.events[-1][:2] == ("failed", "job_lost")


def test_reattach(fake, tmp_path):
    job = _submit(fake, tmp_path)
    jid = job.handle["slurm_job_id"]
    fake.set(jid, state="RUNNING", node="n2")
    other = FakeSlurm()
    other.jobs, other.in_squeue = fake.jobs, fake.in_squeue
    other.reporter = Recorder()
    again = Job(task_id=job.task_id, attempt=1, bundle_dir=job.bundle_dir, timeout_s=60)
    assert other.reattach(again) and again.handle["slurm_job_id"] == jid
    other.poll_once()
    bundle.write_result(job.bundle_dir, OK_RESULT)
    fake.set(jid, state="COMPLETED")
    other.poll_once()
    assert other.reporter.events == [("running", "n2"), ("finished", True)]
    assert other.calls["sbatch"] == 0


def test_reattach_to_a_forgotten_job(fake, tmp_path):
    job = _submit(fake, tmp_path)
    jid = job.handle["slurm_job_id"]
    fake.in_squeue.discard(jid)
    del fake.jobs[jid]
    again = Job(task_id=job.task_id, attempt=1, bundle_dir=job.bundle_dir, timeout_s=60)
    assert not fake.reattach(again)                      # gone, no result
    bundle.write_result(job.bundle_dir, OK_RESULT)
    assert fake.reattach(again)                          # gone, but it left its result
    fake.poll_once()
    assert fake.reporter.events[-1] == ("finished", True)
    assert not fake.reattach(Job(task_id="x", attempt=1, bundle_dir=tmp_path / "nothing", timeout_s=1))


def test_sbatch_failure_is_reported(fake, tmp_path, monkeypatch):
    def refuse(argv):
        raise SchedulerError("sbatch: error: Batch job submission failed: Invalid account")

    monkeypatch.setattr(fake.commands, "answer", refuse)
    _submit(fake, tmp_path)
    assert fake.reporter.events == [("failed", "scheduler_failed", "could not submit the Slurm job: "
                                     "sbatch: error: Batch job submission failed: Invalid account")]


def test_poller_thread_survives_errors(tmp_path):
    import threading

    ex = FakeSlurm(poll_interval_s=0.01)
    done = threading.Event()

    class R(Recorder):
        def finished(self, job, result):
            super().finished(job, result)
            done.set()

    ex.start(R())
    try:
        job = _submit(ex, tmp_path)
        ex.broken = 3  # three polls blow up
        bundle.write_result(job.bundle_dir, OK_RESULT)
        ex.set(job.handle["slurm_job_id"], state="COMPLETED", node="n1")
        assert done.wait(10)
    finally:
        ex.shutdown()
    assert ex._thread is None


def test_shutdown_is_prompt():
    import time

    ex = SlurmExecutor(poll_interval_s=3600)
    ex.start(Recorder())
    t0 = time.monotonic()
    ex.shutdown()
    assert time.monotonic() - t0 < 1


def test_info_dataclass_defaults():
    assert JobInfo("RUNNING").exit_code == ""


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_template_file_is_valid_bash():
    text = (Path(slurm_render.__file__).resolve().parents[3] / "slurm" / "task.sbatch.tmpl").read_text()
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0


def test_config_from_files(tmp_path):
    toml = tmp_path / "slurm.toml"
    toml.write_text('[slurm]\npartition = "gpu"\ngres = "gpu:1"\ntime_limit = "00:15:00"\npython = "python"\n'
                    'setup = ["module load cuda", "source /opt/venv/bin/activate"]\n'
                    'env = { OMP_NUM_THREADS = "8" }\nextra_sbatch = ["--constraint=a100"]\n')
    if sys.version_info >= (3, 11):
        cfg = SlurmConfig.load(toml)
        assert cfg.gres == "gpu:1" and cfg.setup[0] == "module load cuda" and cfg.env == {"OMP_NUM_THREADS": "8"}
    js = tmp_path / "slurm.json"
    js.write_text('{"partition": "debug", "mem": "2G"}')
    assert SlurmConfig.load(js).mem == "2G"
    with pytest.raises(SlurmConfigError, match="unknown Slurm setting"):
        SlurmConfig.from_mapping({"partiton": "gpu"})
    with pytest.raises(SlurmConfigError):
        SlurmConfig.from_mapping({"extra_sbatch": ["--output=/etc/passwd"]})
