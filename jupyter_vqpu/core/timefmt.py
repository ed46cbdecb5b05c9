"""Durations and ages the way a person reads them: ``8.2 s``, ``2 min 5 s``, ``11 min ago``.

Shared by the CLI and the notebook widget (twenty lines do not justify a dependency).
"""

from __future__ import annotations

import time


def human_duration(seconds: float) -> str:
    """``8.2 s``, ``42 s``, ``2 min 5 s``, ``1 h 4 min``, ``3 d 2 h``."""
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec} s" if sec else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def human_age(seconds: float | None) -> str:
    """How long ago: ``just now``, ``42 s ago``, ``11 min ago``, ``3 h ago``, ``2 d ago``; ``-`` for None."""
    if seconds is None:
        return "-"
    if seconds < 5:
        return "just now"
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min ago"
    if seconds < 48 * 3600:
        return f"{seconds // 3600:.0f} h ago"
    return f"{seconds // 86400:.0f} d ago"


def age_of(ts: float | None, now: float | None = None) -> str:
    """``human_age`` of an epoch timestamp."""
    return "-" if not ts else human_age((now if now is not None else time.time()) - ts)
