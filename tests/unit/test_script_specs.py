"""Each Lua script's KEYS/ARGV header is its Spec in jupyter_vqpu/core/specs.py, slot for slot.

A script reads its keys and arguments by position; the Python side builds them
by name from the Spec. This test parses every ``lua/*.lua`` header
(``-- KEYS[n] = name``, ``-- ARGV[n] = name``, ``KEYS[a+bi]`` for a repeated
group) and checks names and order against the Spec, so a slot added, dropped
or swapped on one side fails here. The parser is strict: a header line that
names a slot in another shape fails rather than being skipped.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from jupyter_vqpu.core import scripts
from jupyter_vqpu.core.keys import Keys
from jupyter_vqpu.core.specs import SPECS, Spec

LUA = Path(str(resources.files("jupyter_vqpu.core") / "lua"))
ROOT = Path(__file__).resolve().parents[2]
SLOT = re.compile(r"^-- (KEYS|ARGV)\[(\d+)(?:\+(\d*)i)?\] = ([a-z_]+)(?:\s+(.*))?$")


def header(text: str) -> dict[str, list[tuple[int, int, str, str]]]:
    """{'KEYS': [(base, step, name, description)], 'ARGV': [...]} of the leading comment block,
    in file order; step 0 = a fixed slot."""
    out: dict[str, list[tuple[int, int, str, str]]] = {"KEYS": [], "ARGV": []}
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        if re.search(r"\b(KEYS|ARGV)\[", line) and not line.startswith("-- returns"):
            m = SLOT.match(line)
            assert m, f"a header line names a slot in an unexpected shape: {line!r}"
            kind, base, step, name, desc = m.groups()
            out[kind].append((int(base), 0 if step is None else int(step or 1), name, desc or ""))
    return out


def check(spec: Spec, text: str) -> None:
    h = header(text)
    for kind, fixed, each in (("KEYS", spec.keys, spec.each_keys), ("ARGV", spec.args, spec.each_args)):
        slots = h[kind]
        assert [s[2] for s in slots if s[1] == 0] == list(fixed), f"{spec.name}: fixed {kind} names/order"
        assert [s[0] for s in slots if s[1] == 0] == list(range(1, len(fixed) + 1)), f"{spec.name}: {kind} numbering"
        rep = [s for s in slots if s[1] != 0]
        assert [s[2] for s in rep] == list(each), f"{spec.name}: repeated {kind} names/order"
        for j, (base, step, _, _) in enumerate(rep):
            # item i (1-based) of a group of `step` slots: KEYS[len(fixed) + step*(i-1) + j + 1]
            assert (base, step) == (len(fixed) + j + 1 - len(each), len(each)), f"{spec.name}: {kind}[{base}+{step}i]"
        if kind == "KEYS":
            optional = {s[2] for s in slots if s[3].startswith("(optional")}
            assert optional == set(spec.optional), f"{spec.name}: optional keys say '(optional' in the header"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_each_script_header_is_its_spec(name):
    check(SPECS[name], (LUA / f"{name}.lua").read_text())


def test_every_script_file_has_a_spec_and_every_spec_a_file():
    files = {p.stem for p in LUA.glob("*.lua")} - {"prelude"}
    assert files == set(SPECS) == set(scripts.NAMES)


@pytest.mark.parametrize(("old", "new", "message"), [
    ("-- ARGV[2] = agent ", "-- ARGV[3] = agent ", "numbering"),  # a renumbered slot
    ("-- KEYS[4] = leases ", "-- KEYS[4] = result ", "fixed KEYS names"),  # a swapped name
    ("-- ARGV[3] = token ", "-- ARGV[3] token ", "unexpected shape"),  # the old free-text shape
])
def test_the_checker_rejects_a_changed_header(old, new, message):
    text = (LUA / "finish.lua").read_text()
    assert old in text
    with pytest.raises(AssertionError, match=message):
        check(SPECS["finish"], text.replace(old, new, 1))


def test_the_checker_rejects_a_moved_repeated_group():
    text = (LUA / "claim.lua").read_text()
    assert "-- KEYS[4+2i] = task" in text
    with pytest.raises(AssertionError, match=r"KEYS\[5\+2i\]|repeated"):
        check(SPECS["claim"], text.replace("-- KEYS[4+2i] = task", "-- KEYS[5+2i] = task"))


def test_build_names_every_slot_and_leaves_absent_optional_keys_out():
    k = Keys("fez")
    common = dict(task_id="fez.0123456789abcdef", owner="ada", fields="{}", idempotency_ttl_s=0,
                  pinned_snapshot="", events_maxlen=10, max_queued=0)
    keys, args = SPECS["submit"].build(k, **common)
    assert len(keys) == 8 and k.device not in keys[4:] and args == ["fez.0123456789abcdef", "ada", "{}", 0, "", 10, 0]
    # no dummy key: each optional key is there only when used, in its order
    keys, _ = SPECS["submit"].build(k, **common, snapshot_id="ab" * 32)
    assert keys[8:] == [k.snapshot("ab" * 32)]
    keys, _ = SPECS["submit"].build(k, **common, idempotency_key="x", snapshot_id="ab" * 32)
    assert keys[8:] == [k.idempotency("ada", "x"), k.snapshot("ab" * 32)]
    keys, args = SPECS["claim"].build(k, agent="a", lease_ms=1, group="g", entry_id="", events_maxlen=1,
                                      consume_on_skip=1, nonce="00ff00ff", each=[{"task_id": "t1"}, {"task_id": "t2"}])
    assert keys[5:] == [k.task("t1"), k.history("t1"), k.task("t2"), k.history("t2")] and args[7:] == ["t1", "t2"]


@pytest.mark.parametrize(("named", "message"), [
    ({"task_id": "t", "agent": "a", "token": "1-ab", "state": "", "detail": "{}", "lease_ms": 1}, "missing"),
    ({"task_id": "t", "agent": "a", "token": "1-ab", "state": "", "detail": "{}", "lease_ms": 1,
      "events_maxlen": 1, "attempt": 1}, "unknown"),
])
def test_build_refuses_a_call_that_drifted_from_the_script(named, message):
    with pytest.raises(TypeError, match=message):
        SPECS["progress"].build(Keys("fez"), **named)


def test_no_call_site_assembles_script_keys_itself():
    # Every script call goes through Scripts.call / Spec.build: no inline KEYS lists anywhere.
    inline = re.compile(r"scripts\.\w+\(\s*keys=\[")
    offenders = [
        f"{p.relative_to(ROOT)}:{n}"
        for top in ("jupyter_vqpu", "agent", "server_ext", "benchmarks")
        for p in sorted((ROOT / top).rglob("*.py"))
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if inline.search(line)
    ]
    assert not offenders, "build KEYS with the script's Spec (scripts.call):\n" + "\n".join(offenders)
