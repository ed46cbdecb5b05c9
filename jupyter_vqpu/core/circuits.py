"""The circuit wire formats (OpenQASM 2/3 text, base64 QPY) and the bounds on what we accept.

Circuits cross the system as text only, never pickles, because the control
plane and the job must be able to read whatever a user sends without running
it. OpenQASM is what people write; QPY (``qiskit.qpy``, base64) is what the
Qiskit backend sends, because it carries every circuit Aer runs exactly
(switch, classical expressions, unitary matrices, ...). Only QPY versions that
Qiskit reads in Rust are accepted (no sympy text, no symengine blobs), and
``screen_qpy`` checks the header's declared sizes before the reader runs; like
OpenQASM, services read it only in the sandboxed parser processes. Text still needs care: a parser happily allocates five million
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

Hostile text: both native importers (OpenQASM 2 and 3) recurse on nesting and
overflow their stack on a few thousand brackets or unary signs, and allocate
whatever a register-size expression asks for. ``screen`` refuses all that on the
raw text, in linear time (no regex here can backtrack super-linearly), before a
parser sees it; the server side additionally parses only in sandboxed processes
(``jupyter_vqpu.core.parsing``), so what ``screen`` misses still cannot take a
service down.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import io
import itertools
import os
import re
import runpy
import struct
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_vqpu.core.errors import CircuitError, LimitExceeded

if TYPE_CHECKING:  # pragma: no cover
    from qiskit.circuit import QuantumCircuit

FORMATS = ("qasm2", "qasm3", "qpy")
STANDARD_INCLUDE = {"qasm2": "qelib1.inc", "qasm3": "stdgates.inc"}
EXTENSIONS = {".qasm": None, ".qasm2": "qasm2", ".qasm3": "qasm3", ".py": "python", ".qpy": "qpy"}

DEFAULT_MAX_BYTES = 1_000_000
# Applied when the caller names no qubit bound: no device we simulate comes close.
HARD_MAX_QUBITS = 10_000
HARD_MAX_CLBITS = 100_000

#: Bounds ``screen`` applies to the raw text. Real programs stay far below them
#: (Qiskit's exporter nests brackets 3-4 deep); the native importers crash at a few thousand.
MAX_NESTING = 32
MAX_UNARY_RUN = 16  # "- - - x": operators in a row, each one recursion level of a parser
MAX_TOKEN_CHARS = 256  # one identifier or number literal
# Text between two of ; { }. The ANTLR importer's error recovery is quadratic in a broken statement's
# length (2,000 characters: 0.3 s, 4,000: 1 s, 17,000: 15 s); a barrier over 300 qubits fits.
MAX_STATEMENT_CHARS = 2_500
MAX_OPERATORS = 100  # in one statement: the ANTLR importer recurses per operator (and is quadratic in "1-1-1...")
MAX_SIZE_EXPRESSION_CHARS = 200
_MAX_CONSTANT = 10**12

_HEADER = re.compile(r"^\s*OPENQASM\s+([0-9]+)(?:\.([0-9]+))?\s*;")
_COMMENT_START = re.compile(r"//|/\*")
_LINE_COMMENT_START = re.compile(r"//")
_INCLUDE_WORD = re.compile(r"\binclude\b")
_INCLUDE_STMT = re.compile(r"""\binclude\s*(["'])([^"'\n]*)\1\s*;""")
_HARDWARE_QUBIT = re.compile(r"\$\s*([0-9]+)")
# qreg q[5]; creg c[5]; qubit[5] q; bit[5] c; qubit q; bit c; (a size may be an expression)
_OLD_DECL = re.compile(r"\b(qreg|creg)\s+([A-Za-z_][A-Za-z0-9_]*)\s*(?:\[([^\];{}]*)\])?\s*;")
_NEW_DECL = re.compile(r"\b(qubit|bit)\s*(?:\[([^\];{}]*)\])?\s+([A-Za-z_][A-Za-z0-9_]*)\s*[;=]")
_CONST_DECL = re.compile(r"\bconst\s+u?int\s*(?:\[[^\];{}]*\])?\s+([A-Za-z_][A-Za-z0-9_]*)\s*=\s*([^;{}]*);")
_LOOKS_QASM = re.compile(r"\b(qubit|qreg|bit|creg|gate|measure|include)\b")
# Linear by construction: each starts only where a run starts (look-behind), or is a literal.
_BINARY = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_LONG_TOKEN = re.compile(rf"(?<![\w.])[\w.]{{{MAX_TOKEN_CHARS + 1}}}")
_LONG_STATEMENT = re.compile(rf"(?<![^;{{}}])[^;{{}}]{{{MAX_STATEMENT_CHARS + 1}}}")
_UNARY_RUN = re.compile(rf"(?<![-+~!])(?:[-+~!]\s*){{{MAX_UNARY_RUN + 1}}}")
# From the start of a statement only, possessive: one pass over each statement.
_MANY_OPERATORS = re.compile(rf"(?<![^;{{}}])(?:[^;{{}}\-+*/%^&|<>=!~]*+[\-+*/%^&|<>=!~]){{{MAX_OPERATORS + 1}}}")
_NOT_BRACKET = re.compile(r"[^()\[\]{}]+")
_BRACKET = re.compile(r"[()\[\]{}]")
_DEPTH = {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}
# Anything beyond a straight-line program goes to the full importer.
_NOT_STRAIGHT = re.compile(
    r"\b(const|if|else|for|while|switch|case|default|def|defcal|defcalgrammar|cal|extern|box|let|input|output|"
    r"duration|stretch|return|break|continue|end|pragma|gate|opaque|qreg|creg|ctrl|negctrl|inv|pow|durationof|"
    r"array|angle|float|int|uint|bool|complex|sizeof)\b|[$'@#]"
)


# --------------------------------------------------------------- formats


def detect_format(text: str) -> str:
    """Which format a text is: "qasm2" or "qasm3" from its header, else from how it looks;
    "qpy" for base64 QPY (it starts with the base64 of QPY's magic ``QISKIT``).

    OpenQASM 3 makes the version header optional, so a headerless program that
    declares qubits or gates is taken as OpenQASM 3."""
    if not isinstance(text, str):
        raise CircuitError(f"a circuit must be text, got {type(text).__name__}", "send OpenQASM 2 or 3 source")
    if text.startswith(QPY_BASE64_PREFIX):
        return "qpy"
    body = strip_comments(text, block=True, strict=False)
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
    m = _HEADER.match(strip_comments(text, block=True, strict=False))
    return None if m is None else {"2": "qasm2", "3": "qasm3"}.get(m.group(1), "unknown")


def _check_header_agrees(text: str, fmt: str, said_by: str) -> None:
    header = _header_format(text)
    if header is not None and header != fmt:
        raise CircuitError(f"{said_by} says {fmt} but the program's OPENQASM header says {header}",
                           "make the two agree (or leave the format out to use the header)")


# --------------------------------------------------------------- parsing


def screen(
    text: str,
    fmt: str | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_qubits: int | None = None,
    max_ops: int = 200_000,
) -> tuple[str, str]:
    """The cheap bounds, on the raw text, before any parser: returns (format, text without comments).

    Every check is linear in the text and refuses with one line and a hint:
    size, binary or non-UTF-8 content, unterminated comments, includes, nesting
    depth, runs of unary operators, giant tokens and statements, register sizes
    (literal or constant expressions, evaluated here without ``eval``) and the
    expanded operation count. What passes is safe to hand to a parser as far
    as the text can tell; the server side still parses in a sandbox."""
    if not isinstance(text, str):
        raise CircuitError(f"a circuit must be text, got {type(text).__name__}", "send OpenQASM 2 or 3 source")
    if len(text) > max_bytes:  # a character is at least one byte: no need to encode a giant text to refuse it
        raise LimitExceeded(f"the circuit is at least {len(text)} bytes, over the limit of max_bytes={max_bytes}",
                            "send a smaller circuit")
    if fmt == "qpy" or (fmt is None and text.startswith(QPY_BASE64_PREFIX)):
        screen_qpy(text, max_bytes=max_bytes, max_qubits=max_qubits, max_ops=max_ops)
        return "qpy", ""
    bad = _SURROGATE.search(text)
    if bad:
        raise CircuitError(f"the circuit is not valid UTF-8 text (a lone surrogate at {_position(text, bad.start())})",
                           "send the program as plain UTF-8 text")
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise LimitExceeded(f"the circuit is {size} bytes, over the limit of max_bytes={max_bytes}",
                            "send a smaller circuit")
    bad = _BINARY.search(text)
    if bad:
        raise CircuitError(f"the circuit contains binary data (byte 0x{ord(bad.group()):02x} at "
                           f"{_position(text, bad.start())})", "send OpenQASM source text, not a binary file")
    if not text.strip():
        raise CircuitError("the circuit is empty", "send OpenQASM 2 or 3 source")
    if fmt is None:
        fmt = detect_format(text)
    elif fmt not in FORMATS:
        raise CircuitError(f"unknown circuit format {fmt!r}", "the formats are qasm2, qasm3 and qpy")
    else:
        _check_header_agrees(text, fmt, "the format")
    # What the parser will treat as comments, and nothing more (OpenQASM 2 has no block comments),
    # so that nothing hidden in a "comment" here can reach the parser as code.
    body = strip_comments(text, block=fmt == "qasm3", strict=True)
    _check_includes(body, fmt)
    _check_shape(body)
    qubit_limit = max_qubits if max_qubits is not None else HARD_MAX_QUBITS
    _check_declarations(body, qubit_limit, max_qubits is not None)
    if fmt == "qasm3" and estimate_expanded_ops(body, max_ops) > max_ops:
        # The OpenQASM 3 importer builds every gate definition eagerly: its time
        # grows with the expanded size, so refuse before it starts.
        raise LimitExceeded(
            f"the circuit has more than max_ops={max_ops} operations (user gate definitions expanded)",
            "send a shorter circuit or flatter gate definitions",
        )
    return fmt, body


def parse_circuit(
    text: str,
    fmt: str | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_qubits: int | None = None,
    max_ops: int = 200_000,
) -> QuantumCircuit:
    """Parse OpenQASM 2/3 text into a QuantumCircuit under size bounds.

    ``screen`` comes first, so a hostile text costs no more than reading it;
    parse failures become a CircuitError with one line naming line and column.
    In-process: for the hermetic job and the user's own kernel; services go
    through ``jupyter_vqpu.core.parsing`` instead."""
    fmt, body = screen(text, fmt, max_bytes=max_bytes, max_qubits=max_qubits, max_ops=max_ops)
    qubit_limit = max_qubits if max_qubits is not None else HARD_MAX_QUBITS
    if fmt == "qpy":
        qc = _load_qpy(text)
    else:
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


def _position(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    return f"line {line}, column {index - (text.rfind(chr(10), 0, index) + 1) + 1}"


def strip_comments(text: str, *, block: bool, strict: bool) -> str:
    """``text`` with ``//`` (and, if ``block``, ``/* */``) comments blanked, line numbers kept.

    A hand-written scan rather than one regex: a lazy ``/\\*.*?\\*/`` retries
    from every ``/*`` and is quadratic on an unterminated one. ``strict``: an
    unterminated block comment is an error (else it runs to the end)."""
    start = _COMMENT_START if block else _LINE_COMMENT_START
    parts: list[str] = []
    pos = 0
    while True:
        m = start.search(text, pos)
        if m is None:
            parts.append(text[pos:])
            return "".join(parts)
        parts.append(text[pos:m.start()])
        if m.group() == "//":
            end = text.find("\n", m.end())
            parts.append(" ")
            if end < 0:
                return "".join(parts)
            pos = end
            continue
        end = text.find("*/", m.end())
        if end < 0:
            if strict:
                raise CircuitError(f"unterminated /* comment starting at {_position(text, m.start())}",
                                   "close the comment with */")
            return "".join(parts)
        parts.append("\n" * text.count("\n", m.start(), end) or " ")
        pos = end + 2


def _check_shape(body: str) -> None:
    """Bounds on how deep and how long, which is what makes recursive-descent parsers overflow their stack."""
    m = _UNARY_RUN.search(body)
    if m:
        raise LimitExceeded(f"more than {MAX_UNARY_RUN} operators in a row at {_position(body, m.start())}",
                            "simplify the expression")
    m = _MANY_OPERATORS.search(body)
    if m:
        raise LimitExceeded(f"the statement at {_position(body, m.start())} has more than {MAX_OPERATORS} operators",
                            "split the expression or compute it in Python and send the value")
    brackets = _NOT_BRACKET.sub("", body) or "()"
    depths = list(itertools.accumulate(map(_DEPTH.__getitem__, brackets)))
    if min(depths) < 0:
        # An unmatched closer: count depth from zero again after it (the parser fails there anyway).
        depths = list(itertools.accumulate(map(_DEPTH.__getitem__, brackets), lambda a, d: max(0, a + d)))
    deepest = max(depths)
    if deepest > MAX_NESTING:
        index = next(i for i, d in enumerate(depths) if d > MAX_NESTING)
        where = next(itertools.islice(_BRACKET.finditer(body), index, None)).start()
        raise LimitExceeded(f"brackets nest more than {MAX_NESTING} deep (at {_position(body, where)})",
                            "flatten the expression or the blocks")
    # Last: the most specific reasons above name the usual ways a statement gets this long.
    m = _LONG_TOKEN.search(body)
    if m:
        raise LimitExceeded(f"a name or number at {_position(body, m.start())} is over {MAX_TOKEN_CHARS} characters",
                            "use shorter names and numbers")
    m = _LONG_STATEMENT.search(body)
    if m:
        raise LimitExceeded(f"the statement at {_position(body, m.start())} is over {MAX_STATEMENT_CHARS} characters",
                            "split it into shorter statements (every statement ends with ;)")


def _check_includes(body: str, fmt: str) -> None:
    allowed = STANDARD_INCLUDE[fmt]
    seen = 0
    for m in _INCLUDE_WORD.finditer(body):
        stmt = _INCLUDE_STMT.match(body, m.start())
        name = stmt.group(2) if stmt else None
        if name != allowed:
            shown = f'"{name[:100]}"' if name is not None else "a non-literal file"
            raise CircuitError(
                f"include of {shown} is not allowed",
                f'only the standard include "{allowed}" is; inline your gate definitions in the program',
            )
        seen += 1
        if seen > 1:  # each copy is parsed again: thousands of them are a cheap way to burn a parser's time
            raise CircuitError(f'"{allowed}" is included more than once (again at {_position(body, m.start())})',
                               "include it once, at the top")


def _check_declarations(body: str, qubit_limit: int, from_device: bool) -> None:
    """Refuse register sizes over the bounds before a parser allocates them.

    A size may be a constant expression (``qubit[2*n] q;``): it is evaluated
    here, from integer literals and ``const`` integers, because a parser would
    otherwise allocate whatever it comes to; a size this cannot evaluate is refused."""
    what = f"max_qubits={qubit_limit}" if from_device else f"{qubit_limit} qubits"
    consts: dict[str, int] = {}
    for m in _CONST_DECL.finditer(body):
        with contextlib.suppress(_NotConstant):
            consts[m.group(1)] = _constant(m.group(2), consts)
    qubits = clbits = 0
    for m in itertools.chain(_OLD_DECL.finditer(body), _NEW_DECL.finditer(body)):
        kind, size = m.group(1), m.group(3 if m.group(1) in ("qreg", "creg") else 2)
        name = m.group(2 if kind in ("qreg", "creg") else 3)
        n = _register_size(size, consts, kind, name, body, m.start())
        if kind in ("qreg", "qubit"):
            qubits += n
        else:
            clbits += n
        if qubits > qubit_limit or clbits > HARD_MAX_CLBITS:
            break
    for m in _HARDWARE_QUBIT.finditer(body):
        qubits = max(qubits, int(m.group(1)) + 1)
    if qubits > qubit_limit:
        raise LimitExceeded(f"the circuit declares {qubits} qubits, over the limit of {what}",
                            "use fewer qubits" + (" or a larger device" if from_device else ""))
    if clbits > HARD_MAX_CLBITS:
        raise LimitExceeded(f"the circuit declares {clbits} classical bits, over the limit of {HARD_MAX_CLBITS}",
                            "use fewer classical bits")


class _NotConstant(Exception):
    """A size expression this module does not evaluate."""


def _register_size(size: str | None, consts: dict[str, int], kind: str, name: str, body: str, at: int) -> int:
    if size is None:
        return 1
    size = size.strip()
    if size.isdigit():
        return int(size)
    try:
        n = _constant(size, consts)
    except _NotConstant:
        raise CircuitError(f"the size of {kind} {name} ({size[:60]!r}, at {_position(body, at)}) is not a constant "
                           "this service can evaluate", "write the size as a number, or as arithmetic on numbers "
                           "and const integers") from None
    if n < 0:
        raise CircuitError(f"the size of {kind} {name} is negative ({n})", "sizes are whole numbers")
    return n


_ARITHMETIC = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
               ast.Div: lambda a, b: a // b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
               ast.Pow: pow, ast.LShift: lambda a, b: a << b, ast.RShift: lambda a, b: a >> b}


def _constant(expr: str, consts: dict[str, int]) -> int:
    """An integer constant expression's value: literals, const names, + - * / % ** << >>, bounded.

    ``ast.parse`` only reads the (short, shallow) expression; nothing is
    evaluated but integer arithmetic on bounded values."""
    expr = expr.strip()
    if len(expr) > MAX_SIZE_EXPRESSION_CHARS:
        raise _NotConstant
    try:
        tree = ast.parse(expr, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise _NotConstant from None

    def value(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            out = node.value
        elif isinstance(node, ast.Name) and node.id in consts:
            out = consts[node.id]
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            out = -value(node.operand) if isinstance(node.op, ast.USub) else value(node.operand)
        elif isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            a, b = value(node.left), value(node.right)
            if isinstance(node.op, (ast.Pow, ast.LShift)) and not (0 <= b <= 64 and abs(a) <= _MAX_CONSTANT):
                raise _NotConstant
            if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and b == 0:
                raise _NotConstant
            if isinstance(node.op, ast.RShift) and b < 0:
                raise _NotConstant
            out = _ARITHMETIC[type(node.op)](a, b)
        else:
            raise _NotConstant
        if abs(out) > _MAX_CONSTANT:
            return _MAX_CONSTANT  # bigger than any bound: refused as too many, without computing further
        return out

    return value(tree)


_GATE_HEAD = re.compile(r"\bgate\s+([A-Za-z_][A-Za-z0-9_]*)")
_HEAD_END = re.compile(r"[{;]")
_BRACE = re.compile(r"[{}]")
_MODIFIERS = re.compile(r"^(?:(?:ctrl|negctrl|inv|pow)\s*(?:\([^)]*\))?\s*@\s*)*")
_CALLEE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _NextMatch:
    """The first match of a pattern at or after a position, for positions that only grow.

    Remembers the last match, so many queries that land before the same match
    cost one scan: what keeps ``_gate_definitions`` linear where the regex
    ``gate name [^{;]* {`` rescans to the end for every "gate" without a body."""

    def __init__(self, pattern: re.Pattern, text: str) -> None:
        self.pattern, self.text = pattern, text
        self.last: re.Match | None = None
        self.exhausted_from: int | None = None

    def at(self, pos: int) -> re.Match | None:
        if self.exhausted_from is not None and pos >= self.exhausted_from:
            return None
        if self.last is not None and self.last.start() >= pos:
            return self.last
        self.last = self.pattern.search(self.text, pos)
        if self.last is None:
            self.exhausted_from = pos
        return self.last


def _gate_definitions(body: str) -> Iterator[tuple[str, str, int, int]]:
    """(name, statements, start, end) of every ``gate name ... { statements }`` with a flat body."""
    head_end, brace = _NextMatch(_HEAD_END, body), _NextMatch(_BRACE, body)
    done = 0
    for m in _GATE_HEAD.finditer(body):
        if m.start() < done:
            continue
        e = head_end.at(m.end())
        if e is None or e.group() == ";":
            continue
        close = brace.at(e.end())
        if close is None or close.group() == "{":
            continue
        done = close.end()
        yield m.group(1), body[e.end():close.start()], m.start(), close.end()


def estimate_expanded_ops(body: str, limit: int) -> int:
    """A textual upper estimate of operations with user gate definitions expanded (comments already removed).

    Cheap enough to run before parsing (linear in the text); exact counting happens afterwards."""
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

    rest, pos = [], 0
    for name, statements, start, end in _gate_definitions(body):
        sizes[name] = cost(statements)
        rest.append(body[pos:start])
        pos = end
    if not sizes:
        return 0
    rest.append(body[pos:])
    return cost(";".join(rest))


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
        detail = str(exc).strip() or _antlr_position(exc) or stderr.getvalue().strip() or type(exc).__name__
        raise CircuitError(f"OpenQASM 3 parse error: {_where(detail)}",
                           'check the program near that line; standard gates come from include "stdgates.inc"') from None


def _antlr_position(exc: BaseException) -> str:
    """"line L, column C: unexpected 'tok'" from a bailing ANTLR parser's exception chain.

    openqasm3's strict parser raises a bare QASM3ParsingError whose cause holds the
    RecognitionException, and only that knows where the parser stopped."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 8:
        for candidate in (cur, *(a for a in getattr(cur, "args", ()) if isinstance(a, BaseException))):
            token = getattr(candidate, "offendingToken", None)
            if token is not None and getattr(token, "line", None) is not None:
                text = str(getattr(token, "text", "") or "")[:40]
                return f"line {token.line}, column {token.column + 1}: unexpected {text!r}"
        cur, seen = cur.__cause__ or cur.__context__, seen + 1
    return ""


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


# ------------------------------------------------------------------ QPY

#: QPY (base64 text on the wire) carries what OpenQASM cannot: switch, classical expressions,
#: initialize inside a gate body, unitary matrices, array parameters, exactly as built.
#: Accepted versions start at 13, the first that Qiskit reads with its Rust reader: parameter
#: expressions are then a list of operations, never sympy text (which older versions hand
#: to a sympy parser) nor a symengine binary blob (native code from a third library).
QPY_MIN_VERSION = 13
QPY_BASE64_PREFIX = "UUlTS0lU"  # base64 of b"QISKIT", QPY's magic
_QPY_HEADER = struct.Struct("!6sBBBBQc")  # magic, version, qiskit major/minor/patch, programs, encoding
_QPY_CIRCUIT_HEADER = struct.Struct("!H1cHIIQIQI")  # name, phase type/size, qubits, clbits, metadata,
#                                                     registers, instructions, vars (QPY >= 12)
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_QPY_HINT = "send the circuit from Qiskit >= 1.3 (qiskit.qpy.dump), or as OpenQASM 3"


def _qpy_version_max() -> int:
    from qiskit.qpy import QPY_VERSION

    return int(QPY_VERSION)


def screen_qpy(text: str, *, max_bytes: int = DEFAULT_MAX_BYTES, max_qubits: int | None = None,
               max_ops: int = 200_000) -> bytes:
    """The cheap bounds on a base64 QPY payload, before Qiskit's reader sees it; returns the bytes.

    Constant or linear time: the base64 alphabet (one regex without backtracking), the
    magic, the version (``QPY_MIN_VERSION`` .. this Qiskit's), no symengine encoding,
    exactly one program of type circuit, and the circuit header's declared qubits, clbits,
    instructions and metadata size against the bounds, so a header that asks for ten
    million qubits is refused before anything is allocated."""
    if len(text) > max_bytes:
        raise LimitExceeded(f"the circuit is {len(text)} bytes, over the limit of max_bytes={max_bytes}",
                            "send a smaller circuit")
    if not _BASE64.fullmatch(text) or len(text) % 4:
        raise CircuitError("a qpy circuit must be base64 text (A-Z a-z 0-9 + /, = padding)", _QPY_HINT)
    data = base64.b64decode(text, validate=True)
    if len(data) < _QPY_HEADER.size + 1 or data[:6] != b"QISKIT":
        raise CircuitError("the qpy payload does not start with a QPY header", _QPY_HINT)
    _, version, _, _, _, programs, encoding = _QPY_HEADER.unpack_from(data)
    newest = _qpy_version_max()
    if version < QPY_MIN_VERSION:
        raise CircuitError(f"QPY version {version} is older than the oldest accepted ({QPY_MIN_VERSION}): "
                           "its parameter expressions would need sympy or symengine to read", _QPY_HINT)
    if version > newest:
        raise CircuitError(f"QPY version {version} is newer than this service reads ({newest})",
                           f"dump it with qiskit.qpy.dump(qc, f, version={newest}), or send OpenQASM 3")
    if encoding != b"p":
        raise CircuitError("the qpy payload uses symengine encoding, which is not accepted", _QPY_HINT)
    if programs != 1:
        raise CircuitError(f"the qpy payload holds {programs} programs; send one circuit per entry",
                           "dump each circuit on its own (qpy.dump(qc, f))")
    at = _QPY_HEADER.size
    if data[at:at + 1] != b"q":
        raise CircuitError("the qpy payload is not a circuit", _QPY_HINT)
    at += 1
    if version >= 16:  # a table of program offsets follows the type key
        if len(data) < at + 8:
            raise CircuitError("the qpy payload is truncated", _QPY_HINT)
        (at,) = struct.unpack_from("!Q", data, at)
    if at + _QPY_CIRCUIT_HEADER.size > len(data):
        raise CircuitError("the qpy payload is truncated", _QPY_HINT)
    (_, _, _, qubits, clbits, metadata, registers, instructions,
     variables) = _QPY_CIRCUIT_HEADER.unpack_from(data, at)
    qubit_limit = max_qubits if max_qubits is not None else HARD_MAX_QUBITS
    if qubits > qubit_limit:
        raise LimitExceeded(f"the circuit declares {qubits} qubits, over the limit of max_qubits={qubit_limit}",
                            "use fewer qubits" + (" or a larger device" if max_qubits is not None else ""))
    if clbits > HARD_MAX_CLBITS:
        raise LimitExceeded(f"the circuit declares {clbits} classical bits, over the limit of {HARD_MAX_CLBITS}",
                            "use fewer classical bits")
    if instructions > max_ops:
        raise LimitExceeded(f"the circuit has {instructions} instructions, over the limit of max_ops={max_ops}",
                            "send a shorter circuit")
    if metadata > len(data) or registers > qubits + clbits or variables > max_ops:
        raise CircuitError("the qpy circuit header declares more than the payload holds", _QPY_HINT)
    return data


def _load_qpy(text: str) -> QuantumCircuit:
    """Read a screened base64 QPY payload: Qiskit's Rust reader, no sympy, no symengine, no pickle
    (numpy arrays inside are read with ``allow_pickle=False``, numpy's default)."""
    from qiskit import qpy
    from qiskit.circuit import QuantumCircuit

    data = base64.b64decode(text, validate=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            programs = qpy.load(io.BytesIO(data))
    except (MemoryError, RecursionError):
        raise
    except Exception as exc:  # the reader's errors: QpyError, ValueError, struct.error, ...
        raise CircuitError(f"the qpy payload could not be read: {_first_line(str(exc)) or type(exc).__name__}"[:300],
                           _QPY_HINT) from None
    if len(programs) != 1 or not isinstance(programs[0], QuantumCircuit):
        raise CircuitError("the qpy payload is not one circuit", _QPY_HINT)
    return programs[0]


def circuit_to_qpy(qc: QuantumCircuit) -> str:
    """A circuit as base64 QPY text (the exact circuit: what Aer would run, nothing re-expressed)."""
    from qiskit import qpy

    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qpy.dump(qc, buf)
    except Exception as exc:
        raise CircuitError(f"the circuit cannot be written as QPY: {_first_line(str(exc))[:200]}",
                           "decompose or remove that instruction (e.g. qc.decompose()) and try again") from None
    return base64.b64encode(buf.getvalue()).decode("ascii")


# ---------------------------------------------------------------- output


#: Instructions OpenQASM 3 export re-expresses (a decomposition) or cannot bring back: sent as QPY.
QPY_ONLY_INSTRUCTIONS = frozenset({"unitary", "initialize", "state_preparation", "isometry", "switch_case",
                                   "store", "hamiltonian", "diagonal", "uc", "ucrx", "ucry", "ucrz"})
#: Instructions looked at (gate bodies included) before a circuit is sent as QPY without looking further.
OPENQASM_CHECK_BUDGET = 20_000


def openqasm_would_change(qc: QuantumCircuit) -> str | None:
    """Why OpenQASM 3 would not carry ``qc`` exactly (None when it would).

    The exporter writes a ``unitary`` as its decomposition and fails on array parameters (a
    controlled unitary, MQT's ``ae``); switch statements, classical expressions and variables
    do not come back through the importer. Such a circuit travels as QPY, which is what Aer would
    have run, bit for bit. Gate bodies are looked into, within a budget (past it: QPY too)."""
    import numpy as np
    from qiskit.circuit.classical import expr

    if qc.num_vars or qc.num_input_vars or qc.num_captured_vars:
        return "classical variables"
    stack, seen = [qc], 0
    while stack:
        for inst in stack.pop().data:
            seen += 1
            if seen > OPENQASM_CHECK_BUDGET:
                return f"over {OPENQASM_CHECK_BUDGET} instructions with gate bodies"
            op = inst.operation
            if op.name in QPY_ONLY_INSTRUCTIONS:
                return op.name
            if any(isinstance(p, np.ndarray) for p in op.params):
                return f"{op.name} has an array parameter"
            if isinstance(getattr(op, "condition", None), expr.Expr) or isinstance(getattr(op, "target", None), expr.Expr):
                return f"{op.name} on a classical expression"
            blocks = getattr(op, "blocks", ())
            if blocks:
                stack.extend(blocks)
            elif getattr(op, "_standard_gate", None) is None and op.name not in ("measure", "reset", "barrier", "delay"):
                try:
                    definition = op.definition
                except Exception:  # a library gate that cannot build its body: the exporter could not either
                    return f"{op.name} has no body OpenQASM can write"
                if definition is not None:
                    stack.append(definition)
    return None


def circuit_to_wire(qc: QuantumCircuit, prefer: str = "qasm3") -> tuple[str, str]:
    """The text to send for a circuit: OpenQASM 3, which people can read in the panel, where it carries
    the circuit exactly; QPY (base64) where it would not (``openqasm_would_change``) or with
    ``prefer="qpy"``: the exact circuit, what the Qiskit backend always sends. OpenQASM 2 is the last
    resort for a circuit neither can write."""
    from qiskit import qasm2, qasm3

    if prefer == "qpy" or openqasm_would_change(qc) is not None:
        return "qpy", circuit_to_qpy(qc)
    try:
        return "qasm3", qasm3.dumps(qc)
    except Exception as exc3:  # the exporter raises QASM3ExporterError and friends
        try:
            return "qasm2", qasm2.dumps(qc)
        except Exception:
            construct = _first_line(str(exc3)) or type(exc3).__name__
            raise CircuitError(f"the circuit cannot be written as OpenQASM: {construct[:200]}",
                               "decompose or remove that instruction (e.g. qc.decompose()) and try again") from None


def to_wire(circuit: Any, circuit_format: str | None = None) -> tuple[str | None, str]:
    """(format, text) of what a client submits: text as it is (its format None: detected), a
    QuantumCircuit as OpenQASM, or as QPY when ``circuit_format`` is "qpy"."""
    if isinstance(circuit, str):
        return circuit_format, circuit
    return circuit_to_wire(circuit, prefer="qpy" if circuit_format == "qpy" else "qasm3")


def batch_to_wire(circuits: Any, circuit_format: str | None = None) -> list[dict[str, Any]]:
    """The ``circuits`` of a submission of several (texts or QuantumCircuits), each as {circuit, circuit_format}."""
    out = []
    for circuit in circuits:
        fmt, text = to_wire(circuit, circuit_format)
        out.append({"circuit": text, **({"circuit_format": fmt} if fmt else {})})
    return out


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
    elif kind == "qpy":
        if size > max_bytes * 3 // 4:
            raise LimitExceeded(f"{p.name} is {size} bytes, over the limit of max_bytes={max_bytes} as base64",
                                "send a smaller circuit")
        fmt, text = "qpy", base64.b64encode(p.read_bytes()).decode("ascii")
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
