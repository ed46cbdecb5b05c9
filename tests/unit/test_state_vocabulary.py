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
