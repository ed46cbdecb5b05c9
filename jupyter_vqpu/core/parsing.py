"""Parse untrusted circuit text in a small pool of sandboxed processes.

Qiskit's importers are native code (Rust) or deeply recursive Python: a text
that gets past ``circuits.screen`` can still overflow a stack (SIGSEGV), abort
on a failed allocation, or run for a long time. In a Jupyter server or the hub
gateway that would take the whole service down for everyone. So services never
parse in their own process: they send the text to a warm worker process that
runs ``circuits.parse_circuit`` under an address-space and a CPU rlimit, with
its stdout/stderr on /dev/null (the importers' diagnostics can be megabytes),
and returns only plain JSON facts: format, qubits, active qubits, operations,
or the user's error. A worker that crashes, times out or hits a limit is killed
and replaced, and the user gets a 4xx that says so; a worker is also recycled
after ``max_requests`` parses, so fragmentation cannot accumulate.

The protocol is one JSON line each way over the worker's stdin/stdout; nothing
is unpickled on either side. The pool is thread-safe: the service calls it from
its worker threads, and each call checks out one idle worker.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import resource
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from jupyter_vqpu.core import circuits
from jupyter_vqpu.core.errors import CircuitError, ControlPlaneUnavailable, LimitExceeded, VqpuError

log = logging.getLogger("vqpu.parsing")

DEFAULT_POOL_SIZE = 2
# Under the limit a worker starts in ~300 MB of address space and parses a 790 KB, 50,000-operation
# circuit in ~450 MB (290 MB resident); without one, idle thread arenas alone map 1.2 GB.
DEFAULT_MEMORY_MB = 1024
DEFAULT_TIMEOUT_S = 20.0
DEFAULT_MAX_REQUESTS = 500
#: How long a fresh worker may take to import qiskit (a loaded 2-core box: seconds).
START_TIMEOUT_S = 120.0
_MAX_REPLY_BYTES = 1 << 20
_WARM_QASM3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[1] q;\nbit[1] c;\nh q[0];\nc = measure q;\n'
_WARM_QASM2 = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\ncreg c[1];\nh q[0];\nmeasure q -> c;\n'
_UNSAFE_HINT = "simplify the circuit (fewer, flatter expressions and registers); tell the operator if a valid circuit does this"


@dataclass(frozen=True)
class CircuitFacts:
    """What the control plane needs to know about a parsed circuit, and nothing else."""

    format: str
    num_qubits: int
    num_clbits: int
    active_qubits: int
    ops: int


def facts_of(text: str, fmt: str | None, *, max_bytes: int, max_ops: int) -> CircuitFacts:
    """Parse in this process and summarise: what a worker runs (and what the hermetic job may run)."""
    fmt = fmt or circuits.detect_format(text)
    qc = circuits.parse_circuit(text, fmt, max_bytes=max_bytes, max_ops=max_ops)
    # A circuit already laid out on a 156-qubit device declares them all but
    # uses a few: the simulation cost follows the qubits that are touched.
    active = len({q for inst in qc.data for q in inst.qubits})
    return CircuitFacts(fmt, qc.num_qubits, qc.num_clbits, active, circuits.count_operations(qc, max_ops))


class _Worker:
    """One parser process: started at once, ready once it has said so (qiskit loaded)."""

    def __init__(self, memory_mb: int, cpu_s: float) -> None:
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", RAYON_NUM_THREADS="1", OMP_NUM_THREADS="1",
                   MALLOC_ARENA_MAX="2")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_vqpu.core.parsing", str(memory_mb), str(cpu_s)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True, env=env,
            start_new_session=True,  # a Ctrl-C at the server's terminal is for the server, which stops us
        )
        self.ready = False
        self.served = 0
        self._buf = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read_line(self, deadline: float) -> bytes | None:
        """One reply line, or None on EOF; TimeoutError past ``deadline`` (monotonic)."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buf += chunk
            if len(self._buf) > _MAX_REPLY_BYTES:
                return None
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def poll_ready(self) -> bool:
        """Whether it has loaded qiskit, without waiting (reads its ready line if that has arrived)."""
        if not self.ready and b"\n" not in self._buf:
            readable, _, _ = select.select([self.proc.stdout.fileno()], [], [], 0)
            if readable:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                self._buf += chunk if chunk else b"\n"  # EOF: let the ready check see the failure
        return self.ready or b"\n" in self._buf

    def send(self, line: bytes) -> None:
        self.proc.stdin.write(line)
        self.proc.stdin.flush()

    def kill(self) -> int | None:
        """Stop the process and reap it; its exit status."""
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process SIGKILL cannot stop
            return None
        finally:
            for stream in (self.proc.stdin, self.proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass


def _describe_exit(status: int | None, memory_mb: int) -> str:
    if status is not None and status < 0:
        sig = -status
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        if sig == signal.SIGXCPU:
            return "it used more than its CPU time limit"
        if sig in (signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS):
            return (f"the parser crashed ({name}), e.g. out of stack or over the "
                    f"{memory_mb} MB memory limit")
        return f"the parser was stopped ({name})"
    return f"the parser exited (status {status})"


class _IdleWorkers(queue.LifoQueue):
    """Idle workers, warmest first; a fresh one (still importing qiskit) only when no loaded one is idle.

    So the replacement started after a crash or a recycle costs the next user
    nothing while another worker is ready."""

    def _get(self) -> _Worker:
        for i in range(len(self.queue) - 1, -1, -1):
            if self.queue[i].poll_ready():
                return self.queue.pop(i)
        return self.queue.pop()


class ParserPool:
    """Warm, sandboxed parser processes; ``parse`` is the one entry point, safe from any thread."""

    def __init__(self, size: int = DEFAULT_POOL_SIZE, *, memory_mb: int = DEFAULT_MEMORY_MB,
                 timeout_s: float = DEFAULT_TIMEOUT_S, max_requests: int = DEFAULT_MAX_REQUESTS,
                 start_timeout_s: float = START_TIMEOUT_S) -> None:
        if size < 1:
            raise ValueError("a parser pool needs at least one process")
        self.size, self.memory_mb, self.timeout_s = size, memory_mb, timeout_s
        self.max_requests, self.start_timeout_s = max_requests, start_timeout_s
        self._idle = _IdleWorkers()
        self._lock = threading.Lock()
        self._live = 0
        self._closed = False
        self._busy: dict[int, _Worker] = {}
        self.stats = {"requests": 0, "refused_by_screen": 0, "parsed": 0, "user_errors": 0, "crashes": 0,
                      "timeouts": 0, "recycled": 0, "started": 0}

    # ------------------------------------------------------------ workers

    def _spawn(self) -> _Worker:
        worker = _Worker(self.memory_mb, self.timeout_s)
        with self._lock:
            self.stats["started"] += 1
        return worker

    def start(self) -> None:
        """Start every worker now without waiting for them, so the first submission finds qiskit loaded."""
        with self._lock:
            missing = self.size - self._live
            self._live += max(0, missing)
        for _ in range(max(0, missing)):
            self._idle.put(self._spawn())

    def warm_up(self) -> None:
        """Start every worker and wait until each has loaded qiskit."""
        self.start()
        workers = [self._checkout() for _ in range(self.size)]
        try:
            for w in workers:
                self._await_ready(w)
        finally:
            for w in workers:
                self._checkin(w)

    def busy_pids(self) -> list[int]:
        """Workers parsing right now (for tests and the operator's eyes)."""
        with self._lock:
            return list(self._busy)

    def pids(self) -> list[int]:
        with self._lock:
            busy = list(self._busy)
        return busy + [w.pid for w in list(self._idle.queue)]

    def _checkout(self) -> _Worker:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            grow = self._live < self.size
            if grow:
                self._live += 1
        if grow:
            return self._spawn()
        try:
            return self._idle.get(timeout=self.timeout_s + self.start_timeout_s)
        except queue.Empty:
            raise ControlPlaneUnavailable("every circuit parser is busy", "try again in a moment") from None

    def _checkin(self, worker: _Worker) -> None:
        if self._closed:
            worker.kill()
            with self._lock:
                self._live -= 1
            return
        self._idle.put(worker)

    def _replace(self, worker: _Worker) -> None:
        """Kill a worker and put a fresh one (starting, not yet ready) in its place."""
        worker.kill()
        with self._lock:
            self._live -= 1
            if self._closed:
                return
            self._live += 1
        self._idle.put(self._spawn())

    def _await_ready(self, worker: _Worker) -> None:
        if worker.ready:
            return
        try:
            line = worker.read_line(time.monotonic() + self.start_timeout_s)
        except TimeoutError:
            line = None
        if line != b'{"ready": true}':
            status = worker.kill()
            with self._lock:
                self._live -= 1
            raise ControlPlaneUnavailable(
                f"the circuit parser could not start ({_describe_exit(status, self.memory_mb)})",
                "tell the operator (the parser's memory limit may be too low for qiskit)",
            )
        worker.ready = True

    # ------------------------------------------------------------ parsing

    def parse(self, text: str, fmt: str | None = None, *, max_bytes: int = circuits.DEFAULT_MAX_BYTES,
              max_ops: int = 200_000) -> CircuitFacts:
        """The facts of a circuit, parsed in a sandboxed worker; a VqpuError (4xx) for anything it refuses.

        ``circuits.screen`` runs here first: most hostile text never costs a round trip."""
        with self._lock:
            self.stats["requests"] += 1
        try:
            fmt, _ = circuits.screen(text, fmt, max_bytes=max_bytes, max_ops=max_ops)
        except VqpuError:
            with self._lock:
                self.stats["refused_by_screen"] += 1
            raise
        request = json.dumps({"text": text, "format": fmt, "max_bytes": max_bytes, "max_ops": max_ops}).encode()
        for attempt in (1, 2):
            worker = self._checkout()
            self._await_ready(worker)
            try:
                worker.send(request + b"\n")
            except (BrokenPipeError, OSError):
                # It died while idle (killed from outside, or the machine ran short): not this circuit's doing.
                self._replace(worker)
                if attempt == 2:
                    raise ControlPlaneUnavailable("the circuit parser keeps failing", "tell the operator") from None
                continue
            return self._answer(worker)
        raise AssertionError("unreachable")  # pragma: no cover

    def _answer(self, worker: _Worker) -> CircuitFacts:
        with self._lock:
            self._busy[worker.pid] = worker
        try:
            try:
                line = worker.read_line(time.monotonic() + self.timeout_s)
            except TimeoutError:
                with self._lock:
                    self.stats["timeouts"] += 1
                log.warning("vqpu: a circuit parse ran past %.0f s; its worker %d is replaced", self.timeout_s,
                            worker.pid)
                self._replace(worker)
                raise CircuitError(f"the circuit could not be parsed safely: parsing took longer than "
                                   f"{self.timeout_s:g} s", _UNSAFE_HINT) from None
        finally:
            with self._lock:
                self._busy.pop(worker.pid, None)
        reply = _decode(line)
        if reply is None:
            status = worker.kill()
            with self._lock:
                self.stats["crashes"] += 1
            why = _describe_exit(status, self.memory_mb)
            log.warning("vqpu: a circuit parser died (%s); its worker %d is replaced", why, worker.pid)
            self._replace(worker)
            raise CircuitError(f"the circuit could not be parsed safely: {why}", _UNSAFE_HINT)
        worker.served += 1
        if reply.get("recycle") or worker.served >= self.max_requests:
            with self._lock:
                self.stats["recycled"] += 1
            self._replace(worker)
        else:
            self._checkin(worker)
        if reply.get("ok"):
            with self._lock:
                self.stats["parsed"] += 1
            return CircuitFacts(**reply["facts"])
        with self._lock:
            self.stats["user_errors"] += 1
        err = reply.get("error") or {}
        cls = LimitExceeded if err.get("code") == LimitExceeded.code else CircuitError
        raise cls(str(err.get("message", "the circuit could not be parsed"))[:500], str(err.get("hint", ""))[:300])

    def close(self) -> None:
        """Stop every idle worker; busy ones stop when their parse returns."""
        self._closed = True
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                return
            worker.kill()
            with self._lock:
                self._live -= 1


def _decode(line: bytes | None) -> dict[str, Any] | None:
    if line is None:
        return None
    try:
        reply = json.loads(line)
    except ValueError:
        return None
    return reply if isinstance(reply, dict) else None


_default: ParserPool | None = None
_default_lock = threading.Lock()


def default_pool() -> ParserPool:
    """The process's shared pool (one worker), for control planes not given one: the CLI's direct mode, scripts."""
    global _default
    with _default_lock:
        if _default is None:
            import atexit

            _default = ParserPool(size=1)
            atexit.register(_default.close)
        return _default


# --------------------------------------------------------------- the worker


def _limit_self(memory_mb: int) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _cpu_budget(cpu_s: float) -> None:
    """This request may use ``cpu_s`` more seconds of CPU (the soft limit is cumulative; SIGXCPU past it)."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = used.ru_utime + used.ru_stime
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = int(spent + cpu_s) + 1
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _serve(memory_mb: int, cpu_s: float) -> None:
    """The worker's loop: one JSON request line in, one JSON reply line out, until stdin closes."""
    out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # the native importers print diagnostics straight to fds 1 and 2
    os.dup2(devnull, 2)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    _limit_self(memory_mb)
    _cpu_budget(max(cpu_s, 60.0))  # the import on a loaded machine
    facts_of(_WARM_QASM3, "qasm3", max_bytes=10_000, max_ops=100)
    facts_of(_WARM_QASM2, "qasm2", max_bytes=10_000, max_ops=100)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # no files written from here on
    out.write(b'{"ready": true}\n')
    out.flush()
    for line in sys.stdin.buffer:
        try:
            req = json.loads(line)
            _cpu_budget(cpu_s)
            reply: dict[str, Any] = {"ok": True, "facts": asdict(facts_of(
                req["text"], req.get("format"), max_bytes=int(req["max_bytes"]), max_ops=int(req["max_ops"])))}
        except VqpuError as exc:
            reply = {"ok": False, "error": {"code": exc.code, "message": exc.message[:500], "hint": exc.hint[:300]}}
        except MemoryError:
            reply = {"ok": False, "recycle": True, "error": {
                "code": LimitExceeded.code, "hint": "use fewer qubits, registers or operations",
                "message": f"the circuit could not be parsed safely: it needs more than {memory_mb} MB"}}
        except RecursionError:
            reply = {"ok": False, "error": {"code": CircuitError.code, "hint": _UNSAFE_HINT,
                                            "message": "the circuit could not be parsed safely: it nests too deeply"}}
        except Exception as exc:  # a parser bug: the user's circuit is refused, the worker starts afresh
            reply = {"ok": False, "recycle": True, "error": {
                "code": CircuitError.code, "hint": _UNSAFE_HINT,
                "message": f"the circuit could not be parsed ({type(exc).__name__})"}}
        out.write(json.dumps(reply).encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    _serve(int(sys.argv[1]), float(sys.argv[2]))
