"""The panel's task-state vocabulary (labextension/src/states.ts) is the Python one.

The TypeScript side names the states once, in states.ts; this test reads that file and
checks its names, values, order and FINAL / HELD sets against
jupyter_vqpu.core.lifecycle, so a state added or renamed on one side fails here
instead of silently showing a wrong badge or a Cancel button on a finished task.
The parsing is strict on purpose: if states.ts changes shape, this fails loudly
rather than checking nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jupyter_vqpu.core.lifecycle import FINAL_STATES, HELD_STATES, TaskState

SRC = Path(__file__).resolve().parents[2] / "labextension" / "src"
STATES_TS = SRC / "states.ts"


def _block(text: str, opening: str, closing: str) -> list[str]:
    """The non-blank lines strictly between the line ``opening`` and the next line ``closing``."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == opening]
    assert len(starts) == 1, f"states.ts: expected exactly one line {opening!r}, found {len(starts)}"
    start = starts[0]
    try:
        end = next(i for i in range(start + 1, len(lines)) if lines[i].strip() == closing)
    except StopIteration:
        pytest.fail(f"states.ts: {opening!r} is not closed by a line {closing!r}")
    body = [line.strip() for line in lines[start + 1:end] if line.strip()]
    assert body, f"states.ts: {opening!r} is empty"
    return body


def _entries(body: list[str], pattern: str, what: str) -> list[tuple[str, ...]]:
    """Every line must match ``pattern`` (a trailing comma on all but the last is allowed)."""
    out = []
    for line in body:
        m = re.fullmatch(pattern + r",?", line)
        assert m, f"states.ts: unexpected line in {what}: {line!r}"
        out.append(m.groups())
    return out


def ts_states(text: str | None = None) -> list[tuple[str, str]]:
    """(NAME, value) pairs of ``export const TaskState = {...} as const;`` in file order."""
    body = _block(STATES_TS.read_text() if text is None else text, "export const TaskState = {", "} as const;")
    return _entries(body, r"([A-Z][A-Z_]*): '([a-z_]+)'", "TaskState")


def ts_set(name: str) -> list[str]:
    """The TaskState names listed in ``export const NAME: ReadonlySet<string> = new Set<TaskState>([...]);``."""
    opening = f"export const {name}: ReadonlySet<string> = new Set<TaskState>(["
    body = _block(STATES_TS.read_text(), opening, "]);")
    return [g[0] for g in _entries(body, r"TaskState\.([A-Z][A-Z_]*)", name)]


def test_the_ts_states_are_the_python_enum_names_values_and_order():
    assert ts_states() == [(s.name, s.value) for s in TaskState]


@pytest.mark.parametrize(("ts_name", "python_set"), [("FINAL_STATES", FINAL_STATES), ("HELD_STATES", HELD_STATES)])
def test_the_ts_final_and_held_sets_are_the_python_ones(ts_name, python_set):
    names = ts_set(ts_name)
    assert len(names) == len(set(names)), f"{ts_name} lists a state twice: {names}"
    assert {TaskState[n].value for n in names} == {s.value for s in python_set}


def test_the_sets_are_what_the_lifecycle_says_today():
    # What the panel relies on: only final tasks lose their Cancel button.
    assert {TaskState[n].value for n in ts_set("FINAL_STATES")} == {"completed", "failed", "cancelled"}
    assert {TaskState[n].value for n in ts_set("HELD_STATES")} == {"claimed", "scheduled", "running"}


def test_no_other_ts_module_spells_a_state_as_a_bare_string():
    # One vocabulary: every other module says TaskState.X / FINAL_STATES, never 'failed'.
    states = "|".join(s.value for s in TaskState)
    literal = re.compile(r"""(['"`])(""" + states + r""")\1""")
    offenders = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(SRC.glob("*.ts"))
        if path != STATES_TS
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert not offenders, "use the names in states.ts instead of:\n" + "\n".join(offenders)


@pytest.mark.parametrize(("old", "new", "message"), [
    ("  QUEUED: 'queued',", '  QUEUED: "queued", // first', "unexpected line in TaskState"),
    ("export const TaskState = {", "export const TaskState = Object.freeze({", "exactly one line"),
    ("} as const;", "};", "is not closed"),
])
def test_the_parser_rejects_a_changed_shape(old, new, message):
    # The strictness is the point: a reshaped file must fail, not pass with nothing checked.
    text = STATES_TS.read_text()
    assert old in text
    with pytest.raises((AssertionError, pytest.fail.Exception), match=message):
        ts_states(text.replace(old, new))


# ------------------------------------------------------------------ the Lua side

LUA = Path(__file__).resolve().parents[2] / "jupyter_vqpu" / "core" / "lua"
PRELUDE = LUA / "prelude.lua"


def _lua_block(text: str, opening: str) -> list[str]:
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == opening]
    assert len(starts) == 1, f"prelude.lua: expected exactly one line {opening!r}, found {len(starts)}"
    try:
        end = next(i for i in range(starts[0] + 1, len(lines)) if lines[i].strip() == "}")
    except StopIteration:
        pytest.fail(f"prelude.lua: {opening!r} is not closed by a line '}}'")
    body = [line.strip() for line in lines[starts[0] + 1:end] if line.strip()]
    assert body, f"prelude.lua: {opening!r} is empty"
    return body


def lua_states(text: str | None = None) -> list[tuple[str, str]]:
    """(NAME, value) pairs of prelude.lua's ``local STATE = {...}`` in file order."""
    body = _lua_block(PRELUDE.read_text() if text is None else text, "local STATE = {")
    out = []
    for line in body:
        m = re.fullmatch(r"([A-Z][A-Z_]*) = '([a-z_]+)',", line)
        assert m, f"prelude.lua: unexpected line in STATE: {line!r}"
        out.append(m.groups())
    return out


def lua_set(name: str, text: str | None = None) -> list[str]:
    """The STATE names of prelude.lua's ``local NAME = {[STATE.X] = true, ...}``."""
    out = []
    for line in _lua_block(PRELUDE.read_text() if text is None else text, f"local {name} = {{"):
        m = re.fullmatch(r"\[STATE\.([A-Z][A-Z_]*)\] = true,", line)
        assert m, f"prelude.lua: unexpected line in {name}: {line!r}"
        out.append(m.group(1))
    return out


def test_the_lua_states_are_the_python_enum_names_values_and_order():
    assert lua_states() == [(s.name, s.value) for s in TaskState]


@pytest.mark.parametrize(("lua_name", "python_set"), [("FINAL", FINAL_STATES), ("HELD", HELD_STATES)])
def test_the_lua_final_and_held_sets_are_the_python_ones(lua_name, python_set):
    names = lua_set(lua_name)
    assert len(names) == len(set(names)), f"{lua_name} lists a state twice: {names}"
    assert {TaskState[n] for n in names} == set(python_set)


def _lua_code(line: str) -> str:
    return line.split("--", 1)[0]  # no script puts '--' inside a string


def test_no_lua_script_spells_a_state_as_a_bare_string():
    # One vocabulary: scripts say STATE.QUEUED; only prelude.lua's STATE table holds the strings.
    states = "|".join(s.value for s in TaskState)
    literal = re.compile(r"""(['"])(""" + states + r""")\1""")
    table = {f"{name} = '{value}'," for name, value in lua_states()}
    offenders = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(LUA.glob("*.lua"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(_lua_code(line)) and not (path == PRELUDE and line.strip() in table)
    ]
    assert not offenders, "use STATE.X (prelude.lua) instead of:\n" + "\n".join(offenders)


@pytest.mark.parametrize(("old", "new", "message"), [
    ("  QUEUED = 'queued',", '  QUEUED = "queued",', "unexpected line in STATE"),
    ("local STATE = {", "STATE = {", "exactly one line"),
    ("  [STATE.CANCELLED] = true,\n}", "  [STATE.CANCELLED] = true }", "unexpected line in FINAL|not closed"),
])
def test_the_lua_parser_rejects_a_changed_shape(old, new, message):
    text = PRELUDE.read_text()
    assert old in text
    with pytest.raises((AssertionError, pytest.fail.Exception), match=message):
        changed = text.replace(old, new, 1)
        lua_states(changed)
        lua_set("FINAL", changed)


# ------------------------------------------------------------- the Python side

PY_ROOTS = [Path(__file__).resolve().parents[2] / d for d in ("jupyter_vqpu", "agent", "server_ext", "benchmarks")]


def test_no_python_module_redeclares_a_set_of_states():
    # FINAL / HELD / cancellable live in lifecycle.py: a literal collection of two or more state
    # strings anywhere else is a second copy that drifts (the widget's and the magic's did).
    s = "|".join(v.value for v in TaskState)
    collection = re.compile(r"""[\[({]\s*(['"])(""" + s + r""")\1\s*,\s*(['"])(""" + s + r""")\3""")
    offenders = [
        f"{p.name}:{n}: {line.strip()}"
        for root in PY_ROOTS
        for p in sorted(root.rglob("*.py"))
        if p.name != "lifecycle.py"
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if collection.search(line)
    ]
    assert not offenders, "use FINAL_STATES / HELD_STATES / CANCELLABLE_STATES instead of:\n" + "\n".join(offenders)
