"""The live task widget a notebook shows under ``%%vqpu``.

All updates happen on the kernel's own thread: either from a coroutine on the
kernel's event loop (the blocking HTTP calls run in a worker thread and only
their results come back), or from the waiting loop of ``Task.result()``.
ipykernel 7 breaks widget updates sent from foreign threads, so none are.
"""

from __future__ import annotations

import asyncio
import html
import time
from typing import Any

import ipywidgets as widgets
import traitlets

from jupyter_vqpu.kernel.palette import badge_style

STEPS = {"queued": 0.1, "claimed": 0.3, "scheduled": 0.5, "running": 0.75,
         "completed": 1.0, "failed": 1.0, "cancelled": 1.0}
STYLES = {"completed": "success", "failed": "danger", "cancelled": "warning"}
FINAL = ("completed", "failed", "cancelled")


def _elapsed(view: dict[str, Any], key: str) -> str:
    start = view.get(key)
    end = view.get("finished_at") or time.time()
    return f"{end - start:.1f} s" if start else ""


def describe(view: dict[str, Any]) -> str:
    """One line on where the task is, the way the widget and `%vqpu tasks` say it."""
    state = view.get("state", "")
    if state == "queued":
        pos = view.get("queue_position")
        line = f"#{pos} in the queue" if pos else "queued"
        return line + (f" ({view['notice']})" if view.get("notice") else "")
    if state == "claimed":
        return f"claimed by {view.get('agent') or 'an agent'}, snapshot {(view.get('snapshot_id') or '')[:12]}"
    if state == "scheduled":
        reason = f" ({view['job_reason']})" if view.get("job_reason") else ""
        return f"scheduled as job {view.get('job_id') or '?'}{reason}"
    if state == "running":
        return f"running for {_elapsed(view, 'started_at')}"
    if state == "completed":
        return f"completed in {_elapsed(view, 'created_at')} on snapshot {(view.get('snapshot_id') or '')[:12]}"
    if state == "failed":
        return f"failed ({view.get('reason')}): {view.get('error')}"
    if state == "cancelled":
        return "cancelled"
    return state


def histogram_html(counts: dict[str, int], ideal: dict[str, int] | None = None, top: int = 16) -> str:
    """Counts as horizontal bars (device, and ideal beside it when given), themed by JupyterLab's variables."""
    total = sum(counts.values()) or 1
    itotal = sum(ideal.values()) if ideal else 1
    keys = sorted(set(counts) | set(ideal or {}), key=lambda k: (-counts.get(k, 0), k))[:top]
    peak = max([counts.get(k, 0) / total for k in keys] + [ideal.get(k, 0) / itotal for k in keys] if ideal else
               [counts.get(k, 0) / total for k in keys]) or 1
    rows = []
    for k in keys:
        p = counts.get(k, 0) / total
        bar = (f'<div title="device {p:.2%}" style="height:8px;width:{100 * p / peak:.1f}%;'
               f'background:var(--jp-brand-color1,#1976d2)"></div>')
        if ideal is not None:
            q = ideal.get(k, 0) / itotal
            bar += (f'<div title="ideal {q:.2%}" style="height:4px;margin-top:1px;width:{100 * q / peak:.1f}%;'
                    f'background:var(--jp-layout-color4,#9e9e9e)"></div>')
        rows.append(
            f'<tr><td style="font-family:var(--jp-code-font-family,monospace);padding-right:8px">{html.escape(k)}</td>'
            f'<td style="text-align:right;padding-right:8px">{counts.get(k, 0)}</td>'
            f'<td style="width:60%">{bar}</td></tr>'
        )
    legend = ('<div style="font-size:smaller;opacity:.8">blue: device'
              + (", grey: ideal" if ideal is not None else "") + "</div>")
    more = len(set(counts) | set(ideal or {})) - len(keys)
    tail = f'<div style="font-size:smaller;opacity:.8">{more} more outcomes</div>' if more > 0 else ""
    return f'<table class="jp-vqpu-histogram" style="width:100%">{"".join(rows)}</table>{tail}{legend}'


class TaskWidget(widgets.VBox):
    """Follows one task: state badge, progress, details, Cancel, then the histogram."""

    state = traitlets.Unicode("").tag(sync=True)
    task_id = traitlets.Unicode("").tag(sync=True)

    def __init__(self, task: Any, *, ideal_task: Any = None) -> None:
        self.task = task
        self.ideal_task = ideal_task
        self.badge = widgets.HTML()
        self.progress = widgets.FloatProgress(min=0.0, max=1.0, layout=widgets.Layout(width="100%"))
        self.detail = widgets.HTML()
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", button_style="warning",
                                            layout=widgets.Layout(width="auto"))
        self.cancel_button.on_click(self._on_cancel)
        self.output = widgets.HTML()
        super().__init__([widgets.HBox([self.badge, self.cancel_button]), self.progress, self.detail, self.output])
        self.add_class("jp-vqpu-widget")
        self.task_id = task.id
        self._shown_result = False
        self.states_seen: list[str] = []
        self._follower: asyncio.Future | None = None
        task.listeners.append(self.update)
        self.update(task.view)

    def update(self, view: dict[str, Any]) -> None:
        state = view.get("state", "")
        self.state = state
        if not self.states_seen or self.states_seen[-1] != state:
            self.states_seen.append(state)
        self.badge.value = (
            f'<span class="jp-vqpu-widget-state" data-state="{html.escape(state)}" '
            f'style="{badge_style(state)};border-radius:3px;'  # the panel's palette (palette.py)
            f'padding:1px 6px;font-weight:bold">{html.escape(state)}</span> '
            f'<code>{html.escape(view.get("task_id", ""))}</code> on <b>{html.escape(view.get("device") or "")}</b>'
            f' &middot; {view.get("shots") or ""} shots'
        )
        self.progress.value = STEPS.get(state, 0.0)
        self.progress.bar_style = STYLES.get(state, "info")
        self.detail.value = f'<span class="jp-vqpu-widget-detail">{html.escape(describe(view))}</span>'
        self.cancel_button.disabled = state in FINAL
        self.cancel_button.layout.display = "none" if state in FINAL else ""
        if state == "completed" and not self._shown_result:
            self._show_result()

    def _show_result(self) -> None:
        self._shown_result = True
        try:
            record = self.task.result(timeout=0)
        except Exception as exc:  # the view said completed; a failure to fetch is shown, not raised
            self.output.value = f"<i>could not fetch the counts: {html.escape(str(exc))}</i>"
            return
        ideal = None
        if self.ideal_task is not None:
            try:
                ideal = self.ideal_task.result(timeout=120)["counts"]
            except Exception:
                ideal = None
        timings = record.get("timings") or {}
        t = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in timings.items() if isinstance(v, (int, float)))
        phases = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in (record.get("phases") or {}).items())
        self.detail.value += (f'<details class="jp-vqpu-widget-phases"><summary>time breakdown</summary>'
                              f'service: {html.escape(phases)}<br>runner: {html.escape(t)}</details>')
        sim = record.get("simulator") or {}
        self.output.value = (
            histogram_html(record.get("counts") or {}, ideal)
            + f'<div style="font-size:smaller;opacity:.8">layout {record.get("layout")} &middot; '
            f'{html.escape(str(sim.get("device", "")))} {html.escape(str(sim.get("method", "")))} &middot; {t}</div>'
        )

    def _on_cancel(self, _button: Any) -> None:
        try:
            self.update(self.task.cancel())
        except Exception as exc:
            self.detail.value = f"<i>cancel failed: {html.escape(str(exc))}</i>"

    def follow(self) -> None:
        """Keep the widget live without blocking the kernel: a coroutine on the kernel's loop."""
        try:
            loop = asyncio.get_event_loop()
        except RuntimeError:
            return
        if self.task.state in FINAL:
            return
        self._follower = asyncio.ensure_future(self._follow(), loop=loop)

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        watch = self.task._t.watch(self.task.id, None)
        done = object()
        while True:
            # The blocking long-poll runs in a worker thread; the update runs here, on the kernel's thread.
            try:
                view = await loop.run_in_executor(None, next, watch, done)
            except Exception as exc:  # say why the widget stopped moving instead of freezing silently
                self.detail.value = (f'<span class="jp-vqpu-widget-detail">lost track of the task: '
                                     f'{html.escape(str(exc))}; re-attach with <code>%vqpu status '
                                     f'{html.escape(self.task.id)}</code></span>')
                return
            if view is done:
                return
            self.task.view = view
            self.update(view)
