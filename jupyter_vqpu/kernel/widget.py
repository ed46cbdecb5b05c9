"""The live task widget a notebook shows under ``%%vqpu``.

All updates happen on the kernel's own thread: either from a coroutine on the
kernel's event loop (the blocking HTTP calls run in a worker thread and only
their results come back), or from the waiting loop of ``Task.result()``.
ipykernel 7 breaks widget updates sent from foreign threads, so none are.

What it says is true: the clock ticks once a second while the task waits or
runs (the follower wakes on its own, not only on events); the bar is
indeterminate, because a simulation reports no progress; before submission the
magic shows what the run will cost (``estimate_html``); once completed it says
which physical qubits ran the circuit and how good they are, from the snapshot
the task was bound to.
"""

from __future__ import annotations

import asyncio
import html
import time
from typing import Any

import ipywidgets as widgets
import traitlets
from IPython.display import HTML, display

from jupyter_vqpu.core.cost import Estimate, estimate
from jupyter_vqpu.core.lifecycle import FINAL_STATES, TaskState
from jupyter_vqpu.core.timefmt import human_duration
from jupyter_vqpu.kernel.palette import badge_style

#: Seconds between clock ticks while a task is live.
TICK_S = 1.0
#: Physical qubits described one by one under a completed task (the rest are summarised).
SHOW_QUBITS = 8
FINAL = FINAL_STATES


def _elapsed(view: dict[str, Any], key: str, now: float | None = None) -> str:
    """Time since ``key`` (a server timestamp) until the end, or until now for a live task.

    The kernel's clock stands in for the server's while the task is live; on one
    machine (the embedded default) they are the same clock, elsewhere NTP keeps them close."""
    start = view.get(key)
    end = view.get("finished_at") or (now if now is not None else time.time())
    return human_duration(end - start) if start else ""


def describe(view: dict[str, Any]) -> str:
    """One line on where the task is, the way the widget and `%vqpu tasks` say it."""
    state = view.get("state", "")
    if state == TaskState.QUEUED:
        pos = view.get("queue_position")
        line = f"#{pos} in the queue" if pos else "queued"
        line += f", waiting {_elapsed(view, 'created_at')}" if view.get("created_at") else ""
        return line + (f" ({view['notice']})" if view.get("notice") else "")
    if state == TaskState.CLAIMED:
        return (f"claimed by {view.get('agent') or 'an agent'}, snapshot {(view.get('snapshot_id') or '')[:12]}, "
                f"preparing for {_elapsed(view, 'claimed_at')}")
    if state == TaskState.SCHEDULED:
        reason = f" ({view['job_reason']})" if view.get("job_reason") else ""
        return f"scheduled as job {view.get('job_id') or '?'}{reason} for {_elapsed(view, 'scheduled_at')}"
    if state == TaskState.RUNNING:
        return f"running for {_elapsed(view, 'started_at')}"
    if state == TaskState.COMPLETED:
        return f"completed in {_elapsed(view, 'created_at')} on snapshot {(view.get('snapshot_id') or '')[:12]}"
    if state == TaskState.FAILED:
        return f"failed ({view.get('reason')}): {view.get('error')}"
    if state == TaskState.CANCELLED:
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
        share = f"{p:.1%}"
        if ideal is not None:
            q = ideal.get(k, 0) / itotal
            bar += (f'<div title="ideal {q:.2%}" style="height:4px;margin-top:1px;width:{100 * q / peak:.1f}%;'
                    f'background:var(--jp-layout-color4,#9e9e9e)"></div>')
            share += f' <span style="opacity:.7">(ideal {q:.1%})</span>'
        rows.append(
            f'<tr><td style="font-family:var(--jp-code-font-family,monospace);padding-right:8px">{html.escape(k)}</td>'
            f'<td style="text-align:right;padding-right:8px">{counts.get(k, 0)}</td>'
            f'<td class="jp-vqpu-histogram-share" style="text-align:right;padding-right:8px;white-space:nowrap">'
            f'{share}</td>'
            f'<td style="width:55%">{bar}</td></tr>'
        )
    legend = ('<div style="font-size:smaller;opacity:.8">outcome (bits: highest qubit first), count, share of '
              f'{sum(counts.values())} shots; blue bar: device'
              + (", grey bar: the noise-free ideal device" if ideal is not None else "") + "</div>")
    more = len(set(counts) | set(ideal or {})) - len(keys)
    tail = f'<div style="font-size:smaller;opacity:.8">{more} more outcomes</div>' if more > 0 else ""
    return f'<table class="jp-vqpu-histogram" style="width:100%">{"".join(rows)}</table>{tail}{legend}'


def estimate_for(circuit: Any, device: str, shots: int) -> Estimate | None:
    """What simulating ``circuit`` will cost (None when it cannot be told here, e.g. unparsable text).

    OpenQASM text is parsed in this kernel only to count; the service parses it again, bounded."""
    qc = circuit
    if isinstance(circuit, str):
        if len(circuit) > 1_000_000:
            return None
        try:
            from jupyter_vqpu.core.circuits import detect_format, parse_circuit

            qc = parse_circuit(circuit, detect_format(circuit))
        except Exception:  # the service says what is wrong with it, in one line
            return None
    try:
        active = len({q for inst in qc.data for q in inst.qubits})
        ops = sum(1 for inst in qc.data if inst.operation.name not in ("barrier", "measure"))
    except AttributeError:
        return None
    return estimate(active, ops, shots, noisy=device != "ideal")


def estimate_html(circuit: Any, device: str, shots: int) -> str:
    """The widget's estimate line; a warning past the thresholds of core/cost.py is also shown at once."""
    est = estimate_for(circuit, device, shots)
    if est is None:
        return ""
    if est.warning:
        display(HTML(f'<div class="jp-vqpu-estimate-warning" style="color:var(--jp-warn-color0,#e65100)">'
                     f"&#9888; large simulation: {html.escape(est.describe())}</div>"))
    return f'<span class="jp-vqpu-widget-estimate">estimate: {html.escape(est.describe())}</span>'


def qubits_text(record: dict[str, Any], snapshot: dict[str, Any] | None) -> str:
    """Which physical qubits ran the circuit and how good they are, in plain words, from the snapshot."""
    layout = record.get("layout") or []
    if not layout:
        return ""
    device = record.get("device") or "the device"
    pairs = ", ".join(f"q{i}&rarr;{p}" for i, p in enumerate(layout[:SHOW_QUBITS]))
    more = f" and {len(layout) - SHOW_QUBITS} more" if len(layout) > SHOW_QUBITS else ""
    text = f"ran on physical qubits of {html.escape(device)}: {pairs}{more}"
    qubits = (snapshot or {}).get("qubits") or []
    if not qubits or not (snapshot or {}).get("noise", True):
        return text + (" (noise-free)" if snapshot and not snapshot.get("noise", True) else "")
    used = [p for p in layout if 0 <= p < len(qubits)]
    parts = []
    for p in used[:SHOW_QUBITS]:
        q = qubits[p]
        bits = []
        if q.get("readout_error") is not None:
            bits.append(f"readout error {q['readout_error']:.1%}")
        if q.get("t1"):
            bits.append(f"T1 {q['t1'] * 1e6:.0f} &micro;s")
        if q.get("t2"):
            bits.append(f"T2 {q['t2'] * 1e6:.0f} &micro;s")
        parts.append(f"qubit {p}: " + ", ".join(bits))
    physical = set(record.get("physical_qubits") or used)
    worst = max((g for g in (snapshot or {}).get("gates") or []
                 if len(g.get("qubits") or []) == 2 and set(g["qubits"]) <= physical and g.get("error") is not None),
                key=lambda g: g["error"], default=None)
    if worst is not None:
        parts.append(f"worst two-qubit gate among them: {html.escape(str(worst['gate']))}"
                     f"({worst['qubits'][0]},{worst['qubits'][1]}) error {worst['error']:.2%}")
    return text + "<br>" + "; ".join(parts)


METHOD_WORDS = {"automatic": "Aer's automatic choice of method", "statevector": "a state vector",
                "density_matrix": "a density matrix", "matrix_product_state": "a matrix-product state",
                "stabilizer": "the stabilizer method", "extended_stabilizer": "the extended stabilizer method"}


def simulated_text(sim: dict[str, Any], timings: dict[str, Any]) -> str:
    """One plain sentence on how the counts were computed (the phase breakdown is under "time breakdown")."""
    where = {"CPU": "the CPU", "GPU": "a GPU"}.get(str(sim.get("device", "")), str(sim.get("device") or "Aer"))
    method = str(sim.get("method", ""))
    how = METHOD_WORDS.get(method, method.replace("_", " ") or "Aer")
    total = timings.get("total")
    took = f" in {total:.2f} s" if isinstance(total, (int, float)) else ""
    return f"simulated on {where} with {how}{took}"


class TaskWidget(widgets.VBox):
    """Follows one task: state badge, progress, details, Cancel, then the histogram."""

    state = traitlets.Unicode("").tag(sync=True)
    task_id = traitlets.Unicode("").tag(sync=True)

    def __init__(self, task: Any, *, ideal_task: Any = None, estimate: str = "",
                 snapshot_of: Any = None) -> None:
        """``snapshot_of(device, snapshot_id)`` (a client's ``snapshot``) describes the chosen qubits."""
        self.task = task
        self.ideal_task = ideal_task
        self.estimate = estimate
        self.snapshot_of = snapshot_of
        self.badge = widgets.HTML()
        # A native <progress> without a value is indeterminate: nothing here reports real progress.
        self.progress = widgets.HTML(layout=widgets.Layout(width="100%"))
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
        self.progress.value = ("" if state in FINAL else
                               '<progress class="jp-vqpu-widget-progress" style="width:100%" '
                               f'title="{html.escape(state)}: no progress is reported while it runs"></progress>')
        estimate = f"<br>{self.estimate}" if self.estimate and state not in FINAL else ""
        self.detail.value = f'<span class="jp-vqpu-widget-detail">{html.escape(describe(view))}</span>{estimate}'
        self.cancel_button.disabled = state in FINAL
        self.cancel_button.layout.display = "none" if state in FINAL else ""
        if state == TaskState.COMPLETED and not self._shown_result:
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
        snapshot = None
        if self.snapshot_of is not None and record.get("snapshot_id"):
            try:
                snapshot = self.snapshot_of(record.get("device"), record["snapshot_id"])
            except Exception:  # without the snapshot the qubits are still named, only not described
                snapshot = None
        qubits = qubits_text(record, snapshot)
        self.output.value = (
            histogram_html(record.get("counts") or {}, ideal)
            + (f'<div class="jp-vqpu-widget-qubits" style="font-size:smaller">{qubits}</div>' if qubits else "")
            + f'<div style="font-size:smaller;opacity:.8">{html.escape(simulated_text(sim, timings))}</div>'
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
            # The blocking long-poll runs in a worker thread; the update runs here, on the kernel's thread,
            # and so does the clock: while the poll waits, the view is shown again every TICK_S.
            pending = loop.run_in_executor(None, next, watch, done)
            try:
                while True:
                    try:
                        view = await asyncio.wait_for(asyncio.shield(pending), TICK_S)
                        break
                    except asyncio.TimeoutError:
                        self.update(self.task.view)
            except Exception as exc:  # say why the widget stopped moving instead of freezing silently
                self.detail.value = (f'<span class="jp-vqpu-widget-detail">lost track of the task: '
                                     f'{html.escape(str(exc))}; re-attach with <code>%vqpu status '
                                     f'{html.escape(self.task.id)}</code></span>')
                return
            if view is done:
                return
            self.task.view = view
            self.update(view)
