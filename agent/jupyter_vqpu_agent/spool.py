"""The pilot: one long-running Slurm allocation that runs many tasks.

    python -m jupyter_vqpu_agent.spool SPOOL_DIR [--slots N] [--time-limit-s S] [--idle-timeout-s S] ...

It runs INSIDE the allocation (``slurm/pilot.sbatch.tmpl``) and talks to the
agent ONLY through the shared file system; it opens no socket and imports
neither Redis nor Jupyter. The spool directory belongs to this one allocation:

    inbox/NAME      dropped by the executor (atomic rename): line 1 the bundle
                    directory, line 2 ``timeout_s=S``
    running/NAME    claimed: the pilot renamed it here from inbox/ (atomic, so a
                    marker is claimed at most once, and a marker the executor has
                    taken back is simply gone)
    done/NAME       finished: JSON {"status": ok|failed|timeout|crashed|cancelled,
                    "message": ...}; the task's outcome itself is the bundle's
                    result.json, written by the runner
    cancel/NAME     the executor asks for a running task to be stopped
    draining        the executor asks the pilot to take no more work and exit when idle
    pilot.alive     heartbeat: its mtime is touched every second by a thread of its own
    state.json      {"state": starting|ready|draining|closed|exited, "reason", "pid",
                    "host", "job_id", "started", "deadline", "slots", "tasks"}

Each task is still hermetic: it runs in a child process from its own bundle
and snapshot. The children stay warm between tasks (``python -m jupyter_vqpu_agent.worker``
for the real runner: Qiskit imported once, per-snapshot caches kept), so a
task pays neither Python start-up nor a queue wait. A task over its time limit,
or a cancelled one, has its child killed; a fresh warm child replaces it.

The pilot stops claiming work when it is told to drain, when its allocation
has less than ``--stop-claiming-s`` left, or after ``--idle-timeout-s`` with
nothing to do (then it writes state "closed" and exits, releasing the nodes).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from jupyter_vqpu_agent import private, worker_protocol
from jupyter_vqpu_agent.worker_protocol import RunBundle

INBOX, RUNNING, DONE, CANCEL = "inbox", "running", "done", "cancel"
DRAINING_FILE = "draining"
ALIVE_FILE = "pilot.alive"
STATE_FILE = "state.json"
JOB_ID_FILE = "slurm_job_id"
DIRS = (INBOX, RUNNING, DONE, CANCEL)


def marker_text(bundle_dir: Path | str, timeout_s: float) -> str:
    return f"{bundle_dir}\ntimeout_s={float(timeout_s):g}\n"


def parse_marker(text: str) -> tuple[str, float | None]:
    lines = text.splitlines()
    path = lines[0].strip() if lines else ""
    timeout = None
    for line in lines[1:]:
        if line.startswith("timeout_s="):
            try:
                timeout = float(line.split("=", 1)[1])
            except ValueError:
                pass
    return path, timeout


def list_markers(directory: Path) -> list[str]:
    """Marker names in a spool directory (hidden temporaries left out), oldest name first."""
    try:
        with os.scandir(directory) as it:
            return sorted(e.name for e in it if not e.name.startswith("."))
    except FileNotFoundError:
        return []


class DirWatch:
    """Wake-ups when files appear in some directories, through Linux inotify (ctypes).

    Only an accelerator: inotify reports changes made through THIS machine's
    kernel, so on NFS/Lustre/GPFS a file written by another host raises no
    event. Callers therefore still poll; the watch just ends the wait early when
    both sides share a machine (or a file system that reports remote changes).
    Where inotify is missing (not Linux, no libc symbol) it does nothing."""

    _MASK = 0x00000080 | 0x00000100 | 0x00000008  # IN_MOVED_TO | IN_CREATE | IN_CLOSE_WRITE

    def __init__(self, enabled: bool = True) -> None:
        self.fd = -1
        self._libc = None
        if not enabled or not sys.platform.startswith("linux"):
            return
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        except (OSError, AttributeError):
            return
        if fd >= 0:
            self.fd, self._libc = fd, libc

    def add(self, directory: Path) -> None:
        if self._libc is not None:
            self._libc.inotify_add_watch(self.fd, os.fsencode(str(directory)), self._MASK)

    def drain(self) -> None:
        if self.fd < 0:
            return
        try:
            while os.read(self.fd, 65536):
                pass
        except (BlockingIOError, OSError):
            pass

    def wait(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, less when a watched directory changes."""
        if self.fd < 0:
            time.sleep(timeout)
            return
        import select

        if select.select([self.fd], [], [], timeout)[0]:
            self.drain()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# ------------------------------------------------------------- the child


def _child(runner_module: str) -> int:
    """``python -m jupyter_vqpu_agent.spool --child MODULE``: the warm-worker protocol
    (:mod:`jupyter_vqpu_agent.worker_protocol`) for a runner module other than
    jupyter_vqpu_agent.runner (tests use a stand-in). Calls MODULE.run_bundle(path) or MODULE.main([path])."""

    def load() -> RunBundle:
        mod = importlib.import_module(runner_module)
        if hasattr(mod, "run_bundle"):
            return lambda path: bool(mod.run_bundle(path).get("ok"))
        return lambda path: mod.main([str(path)]) == 0

    return worker_protocol.serve(load, "vqpu pilot child")


# ------------------------------------------------------------- the pilot


class _Slot:
    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: subprocess.Popen | None = None
        self.buf = bytearray()
        self.ready = False
        self.task: str | None = None  # marker name
        self.deadline = 0.0
        self.timeout_s: float | None = None


class Pilot:
    def __init__(self, args: argparse.Namespace) -> None:
        self.spool = Path(args.spool).resolve()
        self.args = args
        self.slots = [_Slot(i) for i in range(max(1, args.slots))]
        self.started = time.time()
        self.deadline = self.started + args.time_limit_s if args.time_limit_s else None
        self.last_activity = time.monotonic()
        self.tasks = 0
        self.state = "starting"
        self.reason = ""
        self.stop = threading.Event()
        self.sel = selectors.DefaultSelector()
        if args.runner_module == "jupyter_vqpu_agent.runner":
            self.child_cmd = [sys.executable, "-m", "jupyter_vqpu_agent.worker"]
        else:
            self.child_cmd = [sys.executable, "-m", "jupyter_vqpu_agent.spool", "--child", args.runner_module]

    # ---- files

    def write_state(self, state: str, reason: str = "") -> None:
        self.state, self.reason = state, reason
        doc = {"state": state, "reason": reason, "pid": os.getpid(), "host": os.environ.get("SLURMD_NODENAME") or socket.gethostname(),
               "job_id": os.environ.get("SLURM_JOB_ID", ""), "started": self.started, "deadline": self.deadline,
               "slots": len(self.slots), "tasks": self.tasks, "updated": time.time()}
        try:
            private.write_atomic(self.spool / STATE_FILE, json.dumps(doc, sort_keys=True).encode(), durable=False)
        except OSError as exc:
            print(f"vqpu pilot: cannot write its state: {exc}", file=sys.stderr, flush=True)

    def _heartbeat(self) -> None:
        alive = self.spool / ALIVE_FILE
        while not self.stop.is_set():
            try:
                alive.touch(mode=private.FILE_MODE)
            except OSError as exc:
                print(f"vqpu pilot: heartbeat failed: {exc}", file=sys.stderr, flush=True)
            self.stop.wait(self.args.heartbeat_s)

    # ---- children

    def _spawn(self, slot: _Slot) -> None:
        log = private.open_private(self.spool / f"child-{slot.index}.log", append=True)
        with log:
            slot.proc = subprocess.Popen(self.child_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                         bufsize=0, start_new_session=True, umask=private.UMASK)
        slot.buf = bytearray()
        slot.ready = False
        self.sel.register(slot.proc.stdout, selectors.EVENT_READ, slot)

    def _kill(self, slot: _Slot) -> int | None:
        proc = slot.proc
        if proc is None:
            return None
        try:
            self.sel.unregister(proc.stdout)
        except (KeyError, ValueError):
            pass
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the child and anything it started
            except (ProcessLookupError, PermissionError):
                proc.kill()
        proc.wait()
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        slot.proc = None
        slot.ready = False
        return proc.returncode

    def _log_tail(self, slot: _Slot) -> str:
        try:
            with open(self.spool / f"child-{slot.index}.log", "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 600))
                lines = [s for s in fh.read().decode(errors="replace").splitlines() if s.strip()]
            return lines[-1].strip() if lines else ""
        except OSError:
            return ""

    # ---- tasks

    def _finish(self, slot: _Slot, status: str, message: str = "") -> None:
        name = slot.task
        assert name is not None
        slot.task = None
        self.tasks += 1
        self.last_activity = time.monotonic()
        try:
            private.write_atomic(self.spool / DONE / name, json.dumps({"status": status, "message": message}).encode(),
                                 durable=False)
        except OSError as exc:
            print(f"vqpu pilot: cannot record {name} as done: {exc}", file=sys.stderr, flush=True)
        for d in (RUNNING, CANCEL):
            try:
                (self.spool / d / name).unlink()
            except FileNotFoundError:
                pass

    def _claim(self, slot: _Slot) -> bool:
        for name in list_markers(self.spool / INBOX):
            try:
                os.rename(self.spool / INBOX / name, self.spool / RUNNING / name)
            except FileNotFoundError:
                continue  # taken back by the executor (cancelled or moved to another pilot)
            self.last_activity = time.monotonic()
            try:
                path, timeout = parse_marker((self.spool / RUNNING / name).read_text())
            except OSError as exc:
                slot.task = name
                self._finish(slot, "failed", f"unreadable marker: {exc}")
                return True
            slot.task = name
            slot.timeout_s = timeout
            slot.deadline = time.monotonic() + timeout if timeout else float("inf")
            assert slot.proc is not None and slot.proc.stdin is not None
            try:
                slot.proc.stdin.write(f"{path}\n".encode())
            except OSError:
                pass  # the child died: its EOF is seen by the loop
            return True
        return False

    def _accepting(self) -> bool:
        if self.state in ("draining", "closed"):
            return False
        if (self.spool / DRAINING_FILE).exists():
            self.write_state("draining", "asked to drain")
            return False
        if self.deadline is not None and time.time() > self.deadline - self.args.stop_claiming_s:
            self.write_state("draining", "allocation ending")
            return False
        return True

    def _on_line(self, slot: _Slot, line: dict) -> None:
        if line.get("ready"):
            slot.ready = True
        elif "bundle" in line and slot.task is not None:
            self._finish(slot, "ok" if line.get("ok") else "failed")

    def _read(self, slot: _Slot) -> None:
        assert slot.proc is not None and slot.proc.stdout is not None
        try:
            chunk = os.read(slot.proc.stdout.fileno(), 65536)
        except OSError:
            chunk = b""
        if not chunk:  # the child died
            task = slot.task
            code = self._kill(slot)
            if task is not None and code == -signal.SIGTERM:
                # Slurm signals every process of an ending allocation (scancel, time limit): the
                # pilot's own SIGTERM follows. Leave the task in running/: the executor reports it
                # lost, not failed, because it was not the task's fault.
                self.stop.wait(2.0)
                if self.stop.is_set():
                    slot.task = None
                    return
            if task is not None:
                tail = self._log_tail(slot)
                self._finish(slot, "crashed", f"the runner process died (exit {code})" + (f": {tail}" if tail else ""))
            elif not self.stop.is_set():
                print(f"vqpu pilot: child {slot.index} died while idle (exit {code})", file=sys.stderr, flush=True)
            return
        slot.buf += chunk
        while (message := worker_protocol.next_message(slot.buf)) is not None:
            self._on_line(slot, message)

    def _check_running(self) -> None:
        now = time.monotonic()
        cancels = set(list_markers(self.spool / CANCEL))
        for slot in self.slots:
            if slot.task is None:
                continue
            if slot.task in cancels:
                self._kill(slot)
                self._finish(slot, "cancelled", "cancelled")
            elif now > slot.deadline:
                self._kill(slot)
                self._finish(slot, "timeout", f"the job ran over its time limit of {slot.timeout_s:g} s and was killed")
        for name in cancels:  # stale cancel markers for tasks no longer here
            if all(s.task != name for s in self.slots) and not (self.spool / RUNNING / name).exists():
                try:
                    (self.spool / CANCEL / name).unlink()
                except FileNotFoundError:
                    pass

    # ---- main loop

    def run(self) -> int:
        for d in DIRS:
            private.make_dirs(self.spool / d)
        self.write_state("starting")
        hb = threading.Thread(target=self._heartbeat, name="pilot-heartbeat", daemon=True)
        hb.start()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        watch = DirWatch(not self.args.no_inotify)
        for d in (self.spool, self.spool / INBOX, self.spool / CANCEL):
            watch.add(d)
        if watch.fd >= 0:
            self.sel.register(watch.fd, selectors.EVENT_READ, None)
        for slot in self.slots:
            self._spawn(slot)
        poll = self.args.poll_s
        try:
            while not self.stop.is_set():
                for key, _ in self.sel.select(timeout=poll):
                    if key.data is None:
                        watch.drain()
                    else:
                        self._read(key.data)
                for slot in self.slots:
                    if slot.proc is None and not self.stop.is_set() and self.state != "closed":
                        self._spawn(slot)
                if self.state == "starting" and all(s.ready for s in self.slots):
                    self.write_state("ready")
                    self.last_activity = time.monotonic()
                self._check_running()
                busy = any(s.task is not None for s in self.slots)
                if self.state in ("ready",) and self._accepting():
                    for slot in self.slots:
                        if slot.ready and slot.task is None and not self._claim(slot):
                            break
                    busy = any(s.task is not None for s in self.slots)
                    idle_for = time.monotonic() - self.last_activity
                    if not busy and self.args.idle_timeout_s and idle_for > self.args.idle_timeout_s:
                        self.write_state("closed", f"idle for {idle_for:.0f} s")
                        break
                elif self.state == "draining" and not busy:
                    self.write_state("closed", self.reason or "drained")
                    break
                elif self.state == "starting":
                    self._accepting()  # notice a drain request while warming up
                    if self.state == "draining":
                        self.write_state("closed", self.reason)
                        break
        finally:
            self.stop.set()
            for slot in self.slots:
                self._kill(slot)
            if self.state != "closed":
                self.write_state("exited", self.reason or "stopped")
        return 0

    def _on_signal(self, signum, frame) -> None:
        self.reason = f"signal {signal.Signals(signum).name}"
        self.stop.set()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    os.umask(private.UMASK)  # a job process: whatever it or its children write is private
    if argv[:1] == ["--child"]:
        if len(argv) != 2:
            print("usage: python -m jupyter_vqpu_agent.spool --child RUNNER_MODULE", file=sys.stderr)
            return 2
        return _child(argv[1])
    p = argparse.ArgumentParser(prog="python -m jupyter_vqpu_agent.spool", description=__doc__.split("\n\n")[0])
    p.add_argument("spool", help="this allocation's spool directory")
    p.add_argument("--slots", type=int, default=1, help="tasks run at once (one warm child each)")
    p.add_argument("--runner-module", default="jupyter_vqpu_agent.runner")
    p.add_argument("--time-limit-s", type=float, default=0.0, help="the allocation's time limit (0: none)")
    p.add_argument("--stop-claiming-s", type=float, default=0.0,
                   help="take no new task when the allocation has less than this left")
    p.add_argument("--idle-timeout-s", type=float, default=0.0, help="exit after this long with no task (0: never)")
    p.add_argument("--poll-s", type=float, default=0.02, help="spool poll interval")
    p.add_argument("--heartbeat-s", type=float, default=1.0, help="pilot.alive touch interval")
    p.add_argument("--no-inotify", action="store_true", help="poll only (no inotify wake-ups)")
    args = p.parse_args(argv)
    return Pilot(args).run()


if __name__ == "__main__":
    sys.exit(main())
