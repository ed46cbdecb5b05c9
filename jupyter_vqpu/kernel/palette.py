"""The task-state colours, read from the one palette the lab panel uses too.

``state_palette.css`` (beside this module) defines a background and a text
colour per state, for JupyterLab's light and dark themes, as CSS variables; the
lab extension imports that file. The notebook widget styles its badge with the
same variables, so in JupyterLab a badge looks like the panel's and follows the
theme, and falls back to the light colours read here where the variables are
not defined (a frontend without the lab extension). No second copy of a colour
exists, so the panel and the widget cannot drift apart.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

#: The palette (package data: the wheel ships it beside this module).
PALETTE_FILE = Path(__file__).with_name("state_palette.css")
#: Where the dark theme's block starts in PALETTE_FILE.
DARK_SELECTOR = "body[data-jp-theme-light='false']"
_DECLARATION = re.compile(r"--jp-vqpu-state-([a-z]+)-(bg|fg):\s*(#[0-9a-fA-F]{6})\s*;")
#: What a state the palette does not know is shown in (a newer server's state).
UNKNOWN = {"bg": "#ebebeb", "fg": "#474747"}


@functools.cache
def palette() -> dict[str, dict[str, dict[str, str]]]:
    """``{"light"|"dark": {state: {"bg": "#rrggbb", "fg": "#rrggbb"}}}`` from PALETTE_FILE."""
    light, _, dark = PALETTE_FILE.read_text(encoding="utf-8").partition(DARK_SELECTOR + " {")
    out: dict[str, dict[str, dict[str, str]]] = {}
    for theme, block in (("light", light), ("dark", dark)):
        states: dict[str, dict[str, str]] = {}
        for state, part, colour in _DECLARATION.findall(block):
            states.setdefault(state, {})[part] = colour.lower()
        out[theme] = states
    return out


def badge_style(state: str) -> str:
    """Inline CSS for a state badge: the palette's variables, the light colours as fallback."""
    colours = palette()["light"].get(state)
    if colours is None:
        return f"background:{UNKNOWN['bg']};color:{UNKNOWN['fg']}"
    return (f"background:var(--jp-vqpu-state-{state}-bg,{colours['bg']});"
            f"color:var(--jp-vqpu-state-{state}-fg,{colours['fg']})")


def _luminance(colour: str) -> float:
    channels = [int(colour.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two ``#rrggbb`` colours (1 to 21; text needs 4.5 for AA)."""
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)
