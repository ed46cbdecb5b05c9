"""The circuit wire format (OpenQASM 2/3 text) and the bounds on what we accept.

Circuits cross the system as text only: never QPY, never pickles, because the
control plane and the job must be able to read whatever a user sends without
running it. Text still needs care: a parser happily allocates five million
qubits for ``h $5000000;`` or reads any file an ``include`` names, so the cheap
checks (size, includes, declared register sizes) run on the raw text before any
parser sees it, and the expensive one (operations, with user gate definitions
expanded) right after.

OpenQASM 3 parsing: Qiskit's native (Rust) importer ``qasm3.loads_experimental``
is 30-50x faster than the ANTLR-based ``qasm3.loads`` on straight-line programs
(2,978 operations: 19 ms vs 629 ms), but handles a subset of the language,
panics on some inputs and prints its diagnostics straight to the process's file
descriptors. We therefore use it only for programs that look straight-line (no
control flow, user gate definitions, hardware qubits, ...), silence its output
where that is safe, and fall back to ``qasm3.loads`` whenever it declines; parse
errors are always reported in ``qasm3.loads``'s words, which name line and column.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import runpy
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_vqpu.core.errors import CircuitError, LimitExceeded

if TYPE_CHECKING:  # pragma: no cover
    from qiskit.circuit import QuantumCircuit

FORMATS = ("qasm2", "qasm3")
STANDARD_INCLUDE = {"qasm2": "qelib1.inc", "qasm3": "stdgates.inc"}
EXTENSIONS = {".qasm": None, ".qasm2": "qasm2", ".qasm3": "qasm3", ".py": "python"}

DEFAULT_MAX_BYTES = 1_000_000
# Applied when the caller names no qubit bound: no device we simulate comes close.
HARD_MAX_QUBITS = 10_000
HARD_MAX_CLBITS = 100_000

_HEADER = re.compile(r"^\s*OPENQASM\s+([0-9]+)(?:\.([0-9]+))?\s*;")
_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_LINE_COMMENTS = re.compile(r"//[^\n]*")
_INCLUDE_WORD = re.compile(r"\binclude\b")
_INCLUDE_STMT = re.compile(r"""\binclude\s*(["'])([^"'\n]*)\1\s*;""")
_HARDWARE_QUBIT = re.compile(r"\$\s*([0-9]+)")
# qreg q[5]; creg c[5]; qubit[5] q; bit[5] c; qubit q; bit c;
_OLD_DECL = re.compile(r"\b(qreg|creg)\s+[A-Za-z_][A-Za-z0-9_]*\s*(?:\[\s*([0-9]+)\s*\])?\s*;")
_NEW_DECL = re.compile(r"\b(qubit|bit)\s*(?:\[\s*([^\]]*)\])?\s+[A-Za-z_][A-Za-z0-9_]*\s*[;=]")
_LOOKS_QASM = re.compile(r"\b(qubit|qreg|bit|creg|gate|measure|include)\b")
# Anything beyond a straight-line program goes to the full importer.
_NOT_STRAIGHT = re.compile(
    r"\b(const|if|else|for|while|switch|case|default|def|defcal|defcalgrammar|cal|extern|box|let|input|output|"
    r"duration|stretch|return|break|continue|end|pragma|gate|opaque|qreg|creg|ctrl|negctrl|inv|pow|durationof|"
    r"array|angle|float|int|uint|bool|complex|sizeof)\b|[$'@#]"
)


# --------------------------------------------------------------- formats


def detect_format(text: str) -> str:
    """Which OpenQASM a text is: "qasm2" or "qasm3", from its header, else from how it looks.

    OpenQASM 3 makes the version header optional, so a headerless program that
    declares qubits or gates is taken as OpenQASM 3."""
    if not isinstance(text, str):
        raise CircuitError(f"a circuit must be text, got {type(text).__name__}", "send OpenQASM 2 or 3 source")
    body = _COMMENTS.sub(" ", text)
    m = _HEADER.match(body)
    if m:
        major = m.group(1)
        if major == "2":
            return "qasm2"
        if major == "3":
            return "qasm3"
        raise CircuitError(f"unsupported OpenQASM version {m.group(1)}.{m.group(2) or 0}",
                           "send OpenQASM 2.0 or 3.0")
    if re.search(r"\bOPENQASM\b", body):
        raise CircuitError("the OPENQASM header is not the first statement or is malformed",
                           'start the program with "OPENQASM 3.0;" or "OPENQASM 2.0;"')
    if _LOOKS_QASM.search(body):
        return "qasm3"
    raise CircuitError("the text does not look like an OpenQASM program",
                       'start it with "OPENQASM 3.0;" and declare qubits, e.g. "qubit[2] q;"')


def _header_format(text: str) -> str | None:
    m = _HEADER.match(_COMMENTS.sub(" ", text))
    return None if m is None else {"2": "qasm2", "3": "qasm3"}.get(m.group(1), "unknown")


def _check_header_agrees(text: str, fmt: str, said_by: str) -> None:
    header = _header_format(text)
    if header is not None and header != fmt:
        raise CircuitError(f"{said_by} says {fmt} but the program's OPENQASM header says {header}",
                           "make the two agree (or leave the format out to use the header)")


# --------------------------------------------------------------- parsing


def parse_circuit(
    text: str,
    fmt: str | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_qubits: int | None = None,
    max_ops: int = 200_000,
) -> QuantumCircuit:
    """Parse OpenQASM 2/3 text into a QuantumCircuit under size bounds.

    Bounds come first and are cheap (bytes, includes, declared registers), so a
    hostile text costs no more than reading it; parse failures become a
    CircuitError with one line naming line and column."""
    if not isinstance(text, str):
        raise CircuitError(f"a circuit must be text, got {type(text).__name__}", "send OpenQASM 2 or 3 source")
    size = len(text.encode("utf-8", errors="replace"))
    if size > max_bytes:
        raise LimitExceeded(f"the circuit is {size} bytes, over the limit of max_bytes={max_bytes}",
                            "send a smaller circuit")
    if not text.strip():
        raise CircuitError("the circuit is empty", "send OpenQASM 2 or 3 source")
    if fmt is None:
        fmt = detect_format(text)
    elif fmt not in FORMATS:
        raise CircuitError(f"unknown circuit format {fmt!r}", "the formats are qasm2 and qasm3")
    else:
        _check_header_agrees(text, fmt, "the format")
    # What the parser will treat as comments, and nothing more (OpenQASM 2 has no block comments),
    # so that nothing hidden in a "comment" here can reach the parser as code.
    comments = _COMMENTS if fmt == "qasm3" else _LINE_COMMENTS
    body = comments.sub(lambda m: "\n" * m.group(0).count("\n") or " ", text)
    _check_includes(body, fmt)
    qubit_limit = max_qubits if max_qubits is not None else HARD_MAX_QUBITS
    _check_declarations(body, qubit_limit, max_qubits is not None)

    if fmt == "qasm3" and estimate_expanded_ops(body, max_ops) > max_ops:
        # The OpenQASM 3 importer builds every gate definition eagerly: its time
        # grows with the expanded size, so refuse before it starts.
        raise LimitExceeded(
            f"the circuit has more than max_ops={max_ops} operations (user gate definitions expanded)",
            "send a shorter circuit or flatter gate definitions",
        )
    qc = _parse_qasm2(text) if fmt == "qasm2" else _parse_qasm3(text, body)

    if qc.num_qubits > qubit_limit:
        raise LimitExceeded(
            f"the circuit has {qc.num_qubits} qubits, over the limit of max_qubits={qubit_limit}",
            "use fewer qubits" + (" or a larger device" if max_qubits is not None else ""),
        )
    if qc.num_clbits > HARD_MAX_CLBITS:
        raise LimitExceeded(f"the circuit has {qc.num_clbits} classical bits, over the limit of {HARD_MAX_CLBITS}",
                            "use fewer classical bits")
    ops = count_operations(qc, max_ops)
    if ops > max_ops:
        raise LimitExceeded(
            f"the circuit has more than max_ops={max_ops} operations (user gate definitions expanded)",
            "send a shorter circuit",
        )
    return qc


def _check_includes(body: str, fmt: str) -> None:
    allowed = STANDARD_INCLUDE[fmt]
    for m in _INCLUDE_WORD.finditer(body):
        stmt = _INCLUDE_STMT.match(body, m.start())
        name = stmt.group(2) if stmt else None
        if name != allowed:
            shown = f'"{name}"' if name is not None else "a non-literal file"
            raise CircuitError(
                f"include of {shown} is not allowed",
                f'only the standard include "{allowed}" is; inline your gate definitions in the program',
            )


def _check_declarations(body: str, qubit_limit: int, from_device: bool) -> None:
    """Refuse register sizes over the bounds before a parser allocates them."""
    what = f"max_qubits={qubit_limit}" if from_device else f"{qubit_limit} qubits"
    qubits = clbits = 0
    for m in _OLD_DECL.finditer(body):
        n = int(m.group(2)) if m.group(2) else 1
        if m.group(1) == "qreg":
            qubits += n
        else:
            clbits += n
    for m in _NEW_DECL.finditer(body):
        size = (m.group(2) or "1").strip()
        if not size.isdigit():
            continue  # a constant expression: the parser resolves it and the post-parse check applies
        if m.group(1) == "qubit":
            qubits += int(size)
        else:
            clbits += int(size)
    for m in _HARDWARE_QUBIT.finditer(body):
        qubits = max(qubits, int(m.group(1)) + 1)
    if qubits > qubit_limit:
        raise LimitExceeded(f"the circuit declares {qubits} qubits, over the limit of {what}",
                            "use fewer qubits" + (" or a larger device" if from_device else ""))
    if clbits > HARD_MAX_CLBITS:
        raise LimitExceeded(f"the circuit declares {clbits} classical bits, over the limit of {HARD_MAX_CLBITS}",
                            "use fewer classical bits")


_GATE_DEF = re.compile(r"\bgate\s+([A-Za-z_][A-Za-z0-9_]*)[^{;]*\{([^{}]*)\}")
_MODIFIERS = re.compile(r"^(?:(?:ctrl|negctrl|inv|pow)\s*(?:\([^)]*\))?\s*@\s*)*")
_CALLEE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def estimate_expanded_ops(body: str, limit: int) -> int:
    """A textual upper estimate of operations with user gate definitions expanded (comments already removed).

    Cheap enough to run before parsing; exact counting happens afterwards."""
    sizes: dict[str, int] = {}

    def cost(statements: str) -> int:
        total = 0
        for stmt in statements.split(";"):
            stmt = _MODIFIERS.sub("", stmt.strip())
            m = _CALLEE.match(stmt)
            if m:
                total += sizes.get(m.group(0), 1)
                if total > limit:
                    return total
        return total

    for m in _GATE_DEF.finditer(body):
        sizes[m.group(1)] = cost(m.group(2))
    if not sizes:
        return 0
    return cost(_GATE_DEF.sub(";", body))


def _parse_qasm2(text: str) -> QuantumCircuit:
    from qiskit import qasm2

    try:
        return qasm2.loads(text, include_path=(), custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
    except qasm2.QASM2ParseError as exc:
        raise CircuitError(f"OpenQASM 2 parse error: {_where(str(exc))}",
                           'check the program near that line; standard gates come from include "qelib1.inc"') from None


def _parse_qasm3(text: str, body: str) -> QuantumCircuit:
    from qiskit import qasm3

    if not _NOT_STRAIGHT.search(body):
        qc = _try_native_qasm3(text)
        if qc is not None:
            return qc
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):  # ANTLR reports syntax errors on sys.stderr
            return qasm3.loads(text)
    except Exception as exc:  # the importer raises several unrelated types
        detail = str(exc).strip() or stderr.getvalue().strip() or type(exc).__name__
        raise CircuitError(f"OpenQASM 3 parse error: {_where(detail)}",
                           'check the program near that line; standard gates come from include "stdgates.inc"') from None


def _try_native_qasm3(text: str) -> QuantumCircuit | None:
    """The Rust importer's circuit, or None whenever it declines (the full importer then decides)."""
    from qiskit import qasm3

    try:
        with _quiet_fds(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its ExperimentalWarning
            return qasm3.loads_experimental(text)
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException:  # QASM3ImporterError, and pyo3's PanicException (a BaseException)
        return None


@contextlib.contextmanager
def _quiet_fds() -> Iterator[None]:
    """Send fd 1 and 2 to /dev/null while the native importer runs, if no other thread can be writing.

    Redirecting a process-wide fd under a running server thread would swallow
    its output, so in a multi-threaded process the importer's diagnostics are
    left alone (they go to the process's own log)."""
    if threading.active_count() > 1:
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


_LINE_COL = re.compile(r"^(?:<input>:|line\s+)?(\d+)[,:](\d+):?\s*(.*)$", re.S)


def _first_line(message: str) -> str:
    first = next((ln.strip() for ln in message.splitlines() if ln.strip()), message.strip())
    if len(first) >= 2 and first[0] == first[-1] and first[0] in "'\"":
        first = first[1:-1]  # a repr()-quoted message
    return first


def _where(message: str) -> str:
    """One readable line from a parser message, with "line L, column C" where it names them."""
    first = _first_line(message)
    m = _LINE_COL.match(first)
    if m:
        first = f"line {m.group(1)}, column {m.group(2)}: {m.group(3).strip()}"
    return first[:300]


def count_operations(qc: QuantumCircuit, limit: int) -> int:
    """Operations the simulator will execute, with user gate definitions expanded; stops once over ``limit``.

    A few nested user gates can multiply into billions of operations, so the
    size of each definition is computed once (by name and arity) and multiplied,
    never unrolled."""
    from qiskit.circuit import ControlFlowOp, ForLoopOp
    from qiskit.circuit.library import get_standard_gate_name_mapping

    standard = set(get_standard_gate_name_mapping()) | {"barrier", "measure", "reset", "delay", "store"}
    sizes: dict[tuple[str, int, int], int] = {}

    def size_of(op: Any, depth: int) -> int:
        if depth > 64:
            return limit + 1  # absurdly deep nesting
        if isinstance(op, ControlFlowOp):
            inner = sum(circuit_size(b, depth + 1) for b in op.blocks)
            if isinstance(op, ForLoopOp):
                try:
                    inner *= max(1, len(op.params[0]))
                except TypeError:
                    pass
            return 1 + inner
        if op.name in standard:
            return 1
        key = (op.name, op.num_qubits, op.num_clbits)
        if key not in sizes:
            sizes[key] = limit + 1  # guards recursion through the same name
            definition = getattr(op, "definition", None)
            sizes[key] = 1 if definition is None else max(1, circuit_size(definition, depth + 1))
        return sizes[key]

    def circuit_size(circuit: Any, depth: int) -> int:
        total = 0
        for inst in circuit.data:
            total += size_of(inst.operation, depth)
            if total > limit:
                return total
        return total

    return circuit_size(qc, 0)


# ---------------------------------------------------------------- output


def circuit_to_wire(qc: QuantumCircuit) -> tuple[str, str]:
    """The text to send for a circuit: ("qasm3", text), or ("qasm2", text) where OpenQASM 3 cannot say it."""
    from qiskit import qasm2, qasm3

    try:
        return "qasm3", qasm3.dumps(qc)
    except Exception as exc3:  # the exporter raises QASM3ExporterError and friends
        try:
            return "qasm2", qasm2.dumps(qc)
        except Exception:
            construct = _first_line(str(exc3)) or type(exc3).__name__
            raise CircuitError(f"the circuit cannot be written as OpenQASM: {construct[:200]}",
                               "decompose or remove that instruction (e.g. qc.decompose()) and try again") from None


# ----------------------------------------------------------------- files


def load_python_circuit_file(path: str | Path) -> QuantumCircuit:
    """Run a user's own .py file (client side, in their process) and return its global ``qc``."""
    from qiskit.circuit import QuantumCircuit

    p = Path(path)
    if not p.is_file():
        raise CircuitError(f"circuit file {p} does not exist", "check the path")
    try:
        scope = runpy.run_path(str(p), run_name="__vqpu__")
    except SystemExit as exc:
        raise CircuitError(f"{p.name} exited (status {exc.code}) before defining qc",
                           "the file should build a QuantumCircuit named qc") from None
    except Exception as exc:
        raise CircuitError(f"{p.name} failed: {type(exc).__name__}: {exc}", "fix the error in your file") from None
    qc = scope.get("qc")
    if qc is None:
        raise CircuitError(f"{p.name} defines no variable qc", "assign your QuantumCircuit to a global named qc")
    if not isinstance(qc, QuantumCircuit):
        raise CircuitError(f"{p.name}: qc is a {type(qc).__name__}, not a QuantumCircuit",
                           "assign your QuantumCircuit to a global named qc")
    return qc


def read_circuit_file(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[str, str]:
    """(format, text) of a circuit file: .qasm/.qasm2/.qasm3 read as text, .py run for its ``qc``."""
    p = Path(path)
    kind = EXTENSIONS.get(p.suffix.lower(), "unknown")
    if kind == "unknown":
        raise CircuitError(f"unknown circuit file type {p.suffix or '(none)'!r} for {p.name}",
                           "use .qasm, .qasm2, .qasm3 (OpenQASM) or .py (a file that defines qc)")
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise CircuitError(f"circuit file {p} does not exist", "check the path") from None
    except OSError as exc:
        raise CircuitError(f"cannot read circuit file {p}: {exc.strerror or exc}", "check the path") from None
    if not p.is_file():
        raise CircuitError(f"{p} is not a file", "pass an OpenQASM or Python file")
    if kind == "python":
        fmt, text = circuit_to_wire(load_python_circuit_file(p))
    else:
        if size > max_bytes:
            raise LimitExceeded(f"{p.name} is {size} bytes, over the limit of max_bytes={max_bytes}",
                                "send a smaller circuit")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise CircuitError(f"{p.name} is not UTF-8 text", "OpenQASM files are text") from None
        if kind is None:
            fmt = detect_format(text)
        else:
            fmt = kind
            _check_header_agrees(text, fmt, f"the extension of {p.name}")
    size = len(text.encode())
    if size > max_bytes:
        raise LimitExceeded(f"the circuit from {p.name} is {size} bytes, over the limit of max_bytes={max_bytes}",
                            "send a smaller circuit")
    return fmt, text
