"""Hostile and malformed circuit programs, from a seeded generator (the fuzz tests and the HTTP test share it).

Each family is one way a text has hurt (or could hurt) a parser: deep
nesting, runs of operators, huge or expression-sized registers, unterminated
constructs, binary and non-UTF-8 content, giant literals, includes, and
random mutations / token soups built from valid programs (these mostly reach
the parser, which is the point: they exercise the sandbox, not only the screen).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

H3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[3] q;\nbit[3] c;\n'
H2 = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\ncreg c[3];\n'
GHZ3 = H3 + "h q[0];\ncx q[0], q[1];\ncx q[1], q[2];\nc = measure q;\n"
GHZ2 = H2 + "h q[0];\ncx q[0],q[1];\ncx q[1],q[2];\nmeasure q -> c;\n"
VALID = [
    GHZ3, GHZ2,
    H3 + "gate g a, b { cx a, b; h a; }\ng q[0], q[1];\nif (c[0]) { x q[1]; }\nfor int i in [0:2] { h q[0]; }\n"
    "c = measure q;\n",
    H3 + "rz(pi/2) q[0];\nctrl @ x q[0], q[1];\nbarrier q;\nc[0] = measure q[0];\n",
    H2 + "gate g(t) a { rz(t) a; }\ng(0.5) q[0];\nu3(0.1,0.2,0.3) q[1];\nmeasure q[0] -> c[0];\n",
]

#: The red team's findings (issue 10), verbatim in spirit.
RED_TEAM = {
    "nested_parens": H3 + "rz(" + "(" * 9000 + "1" + ")" * 9000 + ") q[0];\n",
    "unary_minus": H3 + "rz(" + "-" * 20000 + "1) q[0];\n",
    "bit_bracket": H3 + "bit[" * 2500,
    "register_expression": "OPENQASM 3.0;\nqubit[5000*1000] q;\n",
    "register_expression_abort": "OPENQASM 3.0;\nqubit[1000000*1000] q;\n",
    "unterminated_comment": H3 + "/*" * 25000,
}

_OPENERS = "([{"
_CLOSERS = {"(": ")", "[": "]", "{": "}"}
_TOKENS = ["qubit", "bit", "qreg", "creg", "gate", "measure", "reset", "barrier", "if", "else", "for", "while",
           "in", "include", "OPENQASM", "3.0", "2.0", "const", "uint", "int", "float", "angle", "def", "return",
           "ctrl", "inv", "pow", "@", "h", "x", "cx", "rz", "q", "c", "a", "pi", "0", "1", "2", "99999", "0.5",
           "[", "]", "(", ")", "{", "}", ";", ",", ":", "=", "==", "->", "+", "-", "*", "/", "**", "$0", "$7",
           '"stdgates.inc"', '"qelib1.inc"', "//", "/*", "*/", "\n", " ", "\t", "'", '"', "#", "&&", "~", "!"]


def _nesting(r: random.Random) -> str:
    depth = r.choice([33, 40, 100, 1000, r.randint(33, 20000)])
    kinds = [r.choice(_OPENERS) for _ in range(r.randint(1, 3))]
    opens = "".join(kinds[i % len(kinds)] for i in range(depth))
    closes = "".join(_CLOSERS[c] for c in reversed(opens)) if r.random() < 0.5 else ""
    where = r.choice(["rz({}1{}) q[0];", "h q[{}0{}];", "if (c[0]) {}x q[0];{}", "bit[{}2{}] b;", "{}{}"])
    return r.choice([H3, H2, ""]) + where.format(opens, closes) + "\n"


def _operators(r: random.Random) -> str:
    n = r.choice([17, 50, 5000, r.randint(17, 30000)])
    op = r.choice(["-", "+", "~", "!", "- ", "-(", "2**", "1-", "1+", "2*-", "a&&", "x=="])
    return r.choice([H3, H2]) + f"rz({op * n}1) q[0];\n"


def _registers(r: random.Random) -> str:
    size = r.choice([
        str(r.randint(10_001, 10**9)), "9" * r.randint(20, 300), f"{r.randint(1000, 99999)}*{r.randint(1000, 99999)}",
        "2**62", "1<<60", "(1+1)**64", "n", "n*n", "sizeof(q)", "-5", "1/0", "0x" + "f" * 30, "1e9", "[1]",
        f"{'(' * 20}1000000{')' * 20}",
    ])
    form = r.choice(["qubit[{}] q;", "bit[{}] c;", "qreg q[{}];", "creg c[{}];", "h ${};",
                     "const uint n = {0};\nqubit[n*n] q;", "array[int[8], {}] a;", "int[{}] w;"])
    return r.choice(["OPENQASM 3.0;\n", "OPENQASM 2.0;\n", ""]) + form.format(size) + "\n"


def _unterminated(r: random.Random) -> str:
    tail = r.choice(["/*" + "x" * r.randint(0, 50000), "/*" * r.randint(1, 25000), 'include "stdgates.inc',
                     "gate g a {" * r.randint(1, 5000), "if (c[0] {" * r.randint(1, 3000), "qubit[" * r.randint(1, 3000),
                     "h q[0]" * r.randint(1, 3000), "for int i in [0:" * r.randint(1, 2000), '"' * r.randint(1, 5000),
                     "rz(0.5" + ", 0.5" * r.randint(1, 5000)])
    return r.choice([H3, H2, ""]) + tail


def _binary(r: random.Random) -> str:
    n = r.randint(1, 4000)
    kind = r.random()
    if kind < 0.4:
        return bytes(r.randrange(256) for _ in range(n)).decode("latin-1")
    if kind < 0.6:
        return GHZ3[: r.randint(0, len(GHZ3))] + "\x00" + GHZ3
    if kind < 0.8:
        return GHZ3 + "".join(chr(r.randint(0xD800, 0xDFFF)) for _ in range(r.randint(1, 10)))
    return "".join(chr(r.randint(1, 0x10FFFF)) for _ in range(n)).encode("utf-8", "replace").decode("utf-8", "replace")


def _literals(r: random.Random) -> str:
    n = r.choice([257, 5000, r.randint(257, 200_000)])
    lit = r.choice(["9" * n, "1." + "5" * n, "x" * n, "_" * n, "0" * n, "1e" + "9" * n, "π" * n])
    return H3 + r.choice([f"rz({lit}) q[0];\n", f"h {lit};\n", f"qubit[2] {lit};\n", f"h ${lit};\n"])


def _includes(r: random.Random) -> str:
    name = r.choice(['"stdgates.inc"', '"/etc/passwd"', '"../../x.inc"', "'qelib1.inc'", '"' + "a" * 5000 + '"',
                     "stdgates.inc", '"stdgates.inc" "x"', '"\\x00"', '""'])
    times = min(r.choice([1, 2, 1000, 20000]), 2_000_000 // len(name))  # up to 2 MB: over the byte bound too
    return "OPENQASM 3.0;\n" + f"include {name};\n" * times + "qubit q;\n"


def _mutation(r: random.Random) -> str:
    text = list(r.choice(VALID))
    for _ in range(r.randint(1, 8)):
        i = r.randrange(len(text) + 1)
        op = r.random()
        if op < 0.3 and text:
            del text[r.randrange(len(text))]
        elif op < 0.6:
            text.insert(i, r.choice("()[]{};,=-+*/\"'@$#!~<>.0123456789qch \n"))
        elif op < 0.8 and text:
            j = r.randrange(len(text))
            text[j:j] = text[j:j + r.randint(1, 40)] * r.randint(2, 50)
        else:
            text.insert(i, r.choice(_TOKENS))
    return "".join(text)


def _soup(r: random.Random) -> str:
    return r.choice(["OPENQASM 3.0;\n", "OPENQASM 2.0;\n", ""]) + " ".join(
        r.choice(_TOKENS) for _ in range(r.randint(1, 300)))


FAMILIES: dict[str, Callable[[random.Random], str]] = {
    "nesting": _nesting, "operators": _operators, "registers": _registers, "unterminated": _unterminated,
    "binary": _binary, "literals": _literals, "includes": _includes, "mutation": _mutation, "soup": _soup,
}
#: How often each family is drawn; mutations and soups reach the parser (milliseconds each), the rest mostly not.
WEIGHTS = {"nesting": 12, "operators": 12, "registers": 12, "unterminated": 12, "binary": 10, "literals": 10,
           "includes": 8, "mutation": 14, "soup": 10}


def programs(n: int, seed: int = 10) -> Iterator[tuple[str, str]]:
    """``n`` (family, text) pairs, the red team's first, the same for the same seed."""
    r = random.Random(seed)
    names, weights = list(WEIGHTS), list(WEIGHTS.values())
    count = 0
    for name, text in RED_TEAM.items():
        if count >= n:
            return
        count += 1
        yield f"red_team:{name}", text
    while count < n:
        family = r.choices(names, weights)[0]
        count += 1
        yield family, FAMILIES[family](r)
