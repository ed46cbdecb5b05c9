"""The one task-state palette (jupyter_vqpu/kernel/state_palette.css): complete, readable, and what
the notebook widget's badge and the lab panel both use. The browser tests measure the same contrast
on screenshots of the panel in both themes."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from jupyter_vqpu.core.lifecycle import TaskState
from jupyter_vqpu.kernel import palette as P

REPO = Path(__file__).resolve().parents[2]
STATES = [s.value for s in TaskState]


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_state_has_a_background_and_text_colour_passing_wcag_aa(theme):
    colours = P.palette()[theme]
    assert set(colours) == set(STATES), f"{theme}: states without colours: {set(STATES) ^ set(colours)}"
    for state, pair in colours.items():
        ratio = P.contrast_ratio(pair["bg"], pair["fg"])
        assert ratio >= 4.5, f"{theme} {state}: {pair['fg']} on {pair['bg']} is {ratio:.2f}:1, under AA's 4.5:1"


def test_the_contrast_ratio_is_wcags():
    assert P.contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert P.contrast_ratio("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)  # the classic near miss
    # the old cancelled badge: --jp-ui-font-color2 on a light grey
    assert P.contrast_ratio("#ffffff", "#eeeeee") < 4.5


def test_the_lab_extension_imports_the_palette_and_writes_no_state_colour_of_its_own():
    style = REPO / "labextension" / "style"
    imports = (style / "index.js").read_text() + (style / "index.css").read_text()
    assert imports.count("jupyter_vqpu/kernel/state_palette.css") == 2
    css = (style / "base.css").read_text()
    badge_rules = re.findall(r"\.jp-vqpu-state\[data-state=[^{]+\{[^}]*\}", css)
    assert badge_rules, "the panel styles no state badge"
    for rule in badge_rules:
        assert "#" not in rule and "--jp-vqpu-state-" in rule, rule


def test_the_widget_badge_uses_the_palette_with_the_light_colours_as_fallback():
    from jupyter_vqpu.kernel.widget import TaskWidget

    task = SimpleNamespace(id="fez.x", listeners=[], view={"task_id": "fez.x", "state": "queued", "device": "fez"})
    w = TaskWidget(task)
    for state in STATES:
        w.update({"task_id": "fez.x", "state": state, "device": "fez", "shots": 10})
        light = P.palette()["light"][state]
        assert f"var(--jp-vqpu-state-{state}-bg,{light['bg']})" in w.badge.value
        assert f"var(--jp-vqpu-state-{state}-fg,{light['fg']})" in w.badge.value
        assert "inverse-font-color" not in w.badge.value
