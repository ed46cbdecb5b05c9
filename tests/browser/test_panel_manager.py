"""The vQPU panel as a job manager, in a real JupyterLab in a real Chromium.

Open a task (its detail view: histogram, times, history, both circuits, Copy id) and check it
fits the sidebar; filter, search and page the list; measure the state badges' contrast on
screenshots in the light and the dark theme. The lab loads the extension from its build output
(``jupyter_vqpu/labextension``), which the first test proves. Screenshots: ``.ci/artifacts/``.
"""

from __future__ import annotations

import io
import json
import re
import urllib.request

import pytest

from jupyter_vqpu.core.lifecycle import TaskState
from jupyter_vqpu.kernel.palette import palette
from tests.browser.helpers import (
    ARTIFACTS_DIR,
    BUILT_LABEXTENSION,
    badge_colours,
    colour_distance,
    hex_colour,
    lab_command,
    open_vqpu_panel,
    screenshot,
)
from tests.conftest import BELL_QASM2

pytestmark = pytest.mark.browser

#: Device pixels per CSS pixel of hidpi_lab_page.
DPR = 2
#: A device no agent of this module serves: its tasks stay queued.
IDLE_DEVICE = "kingston"


def _expect():
    from playwright.sync_api import expect

    return expect


def _submit(page, lab, **payload) -> str:
    """Submit as the page's Jupyter user (the token, plus the context's login cookie)."""
    body = {"device": "ideal", "circuit": BELL_QASM2, "shots": 64, **payload}
    reply = page.request.post(f"{lab.api}tasks", headers={"Authorization": f"token {lab.token}"},
                              data=json.dumps(body))
    assert reply.status == 201, reply.text()
    return reply.json()["task_id"]


def _image(png: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(png)).convert("RGB")


def _css_colour(locator, prop: str) -> str:
    value = locator.evaluate(f"n => getComputedStyle(n).{prop}")
    return hex_colour(int(x) for x in re.findall(r"\d+", value)[:3])


def test_lab_loads_the_built_extension(vqpu_lab):
    """The bundle the lab serves is the one `jlpm build` wrote last, not a copy an install left behind."""
    with urllib.request.urlopen(f"{vqpu_lab.url}lab?token={vqpu_lab.token}", timeout=60) as r:  # noqa: S310
        html = r.read().decode()
    config = json.loads(re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                                  html, re.S).group(1))
    ours = [e for e in config["federated_extensions"] if e["name"] == "jupyter-vqpu"]
    built = json.loads((BUILT_LABEXTENSION / "package.json").read_text())["jupyterlab"]["_build"]["load"]
    assert [e["load"] for e in ours] == [built], (ours, built)
    url = f"{vqpu_lab.url}lab/extensions/jupyter-vqpu/{built}"
    with urllib.request.urlopen(url, timeout=60) as r:  # noqa: S310
        assert r.status == 200 and (BUILT_LABEXTENSION / built).read_bytes() == r.read()


def test_a_task_opens_in_a_detail_view_that_fits_the_sidebar(hidpi_lab_page, vqpu_lab):
    expect = _expect()
    page = hidpi_lab_page
    panel = open_vqpu_panel(page)
    task_id = _submit(page, vqpu_lab, shots=400, seed=3, name="Bell pair", tags=["week3", "bell"])
    row = panel.locator(f'.jp-vqpu-task[data-task-id="{task_id}"]')
    expect(row.locator(".jp-vqpu-state")).to_have_attribute("data-state", "completed", timeout=90_000)
    expect(row.locator(".jp-vqpu-task-name")).to_have_text("Bell pair")
    expect(row.locator(".jp-vqpu-tag")).to_have_text(["week3", "bell"])
    expect(row.locator(".jp-vqpu-state-detail")).to_have_text(re.compile(r"^most frequent: (00|11) \(\d+\.\d%\)$"))

    row.locator(".jp-vqpu-task-device").click()
    detail = panel.locator(f'.jp-vqpu-detail[data-task-id="{task_id}"]')
    expect(detail).to_be_visible()
    expect(panel.locator(".jp-vqpu-tasks")).to_be_hidden()
    expect(detail.locator(".jp-vqpu-detail-name")).to_have_text("Bell pair")
    expect(detail.locator(".jp-vqpu-detail-id")).to_have_text(task_id)

    # the histogram: what the control plane stored, with labels and percentages
    stored = vqpu_lab.cp.result(task_id)
    bars = detail.locator(".jp-vqpu-histogram-row")
    expect(bars).to_have_count(len(stored["counts"]))
    outcomes = bars.evaluate_all("rows => rows.map(r => r.dataset.outcome)")
    counts = [int(c) for c in bars.locator(".jp-vqpu-count").all_inner_texts()]
    shares = bars.locator(".jp-vqpu-share").all_inner_texts()
    assert dict(zip(outcomes, counts)) == stored["counts"] and set(outcomes) == {"00", "11"}
    assert counts == sorted(counts, reverse=True)
    assert all(s.endswith("%") and abs(float(s[:-1]) - c / 4) <= 0.05 + 1e-9 for s, c in zip(shares, counts)), shares

    # when, and the history as the control plane recorded it
    expect(detail.locator(".jp-vqpu-times dt").first).to_have_text("Submitted")
    expect(detail.locator(".jp-vqpu-times dt").last).to_have_text("Finished")
    events = detail.locator(".jp-vqpu-history li").evaluate_all("items => items.map(i => i.dataset.event)")
    assert events == [h["event"] for h in vqpu_lab.cp.history(task_id)]
    assert events[0] == "queued" and events[-1] == "completed"

    # both circuits: as submitted, and as transpiled by the runner
    circuit = detail.locator(".jp-vqpu-circuit")
    circuit.locator("summary").click()
    assert circuit.locator("pre").inner_text().strip() == BELL_QASM2.strip()
    transpiled = detail.locator(".jp-vqpu-transpiled")
    transpiled.locator("summary").click()
    text = transpiled.locator("pre").inner_text()
    assert text.startswith("OPENQASM 3.0;") and text.strip() == stored["transpiled_qasm"].strip()

    # Copy puts the whole id on the clipboard
    copy = detail.locator(".jp-vqpu-copy-id")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == task_id

    # it fits the sidebar: nothing sticks out, nothing scrolls sideways
    fit = panel.evaluate("""p => {
        const right = Math.max(...Array.from(p.querySelectorAll('.jp-vqpu-detail *'))
            .filter(e => e.getClientRects().length && !e.closest('pre'))
            .map(e => e.getBoundingClientRect().right));
        return {scroll: p.scrollWidth, client: p.clientWidth, right, edge: p.getBoundingClientRect().right};
    }""")
    assert fit["scroll"] <= fit["client"] and fit["right"] <= fit["edge"] + 0.5, fit

    # ... and on the screenshot: each outcome's bar is drawn, as long as its share says
    detail.locator(".jp-vqpu-histogram").scroll_into_view_if_needed()
    png = panel.screenshot()
    (ARTIFACTS_DIR / "panel-detail.png").write_bytes(png)
    image = _image(png)
    assert image.size[0] == round(panel.bounding_box()["width"] * DPR)
    bar_colour = _css_colour(bars.first.locator(".jp-vqpu-bar"), "backgroundColor")
    origin = panel.bounding_box()
    lengths = []
    for i in range(bars.count()):
        box = bars.nth(i).locator(".jp-vqpu-bar-cell").bounding_box()
        y = round((box["y"] - origin["y"] + box["height"] / 2) * DPR)
        x0, x1 = round((box["x"] - origin["x"]) * DPR), round((box["x"] - origin["x"] + box["width"]) * DPR)
        lengths.append(sum(colour_distance(hex_colour(image.getpixel((x, y))), bar_colour) <= 8 for x in range(x0, x1)))
    assert lengths[0] > 0 and all(n > 0 for n in lengths), lengths
    assert lengths[1] / lengths[0] == pytest.approx(counts[1] / counts[0], abs=0.05), (lengths, counts)

    detail.locator(".jp-vqpu-detail-back").click()
    expect(detail).to_have_count(0)
    expect(row).to_be_visible()
    expect(row).to_be_focused()


def test_the_list_filters_searches_and_pages(lab_page, vqpu_lab):
    expect = _expect()
    page = lab_page
    vqpu_lab.cp.seed([IDLE_DEVICE])
    panel = open_vqpu_panel(page)
    expect(panel.locator(f'.jp-vqpu-device[data-device="{IDLE_DEVICE}"]')).to_be_visible(timeout=30_000)
    ids = [_submit(page, vqpu_lab, device=IDLE_DEVICE, name=f"batch-{i}", tags=["sweep"] if i % 2 == 0 else [])
           for i in range(23)]
    total = len(vqpu_lab.cp.tasks(vqpu_lab.cp.owner_of(ids[0])))
    assert total >= 23
    label = panel.locator(".jp-vqpu-page-label")
    expect(label).to_have_text(f"1–20 of {total}", timeout=30_000)
    rows = panel.locator(".jp-vqpu-task")
    expect(rows).to_have_count(20)
    # newest first: the last one submitted heads the first page
    expect(rows.first).to_have_attribute("data-task-id", ids[-1])

    panel.locator(".jp-vqpu-page-next").click()
    expect(label).to_have_text(f"21–{total} of {total}" if total > 21 else f"21 of {total}")
    expect(rows).to_have_count(total - 20)
    expect(panel.locator(".jp-vqpu-page-next")).to_be_disabled()
    panel.locator(".jp-vqpu-page-prev").click()
    expect(rows).to_have_count(20)

    search = panel.locator(".jp-vqpu-search")
    search.fill("batch-7")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-task-id", ids[7])
    search.fill(ids[3][-8:].upper())  # the id, case-insensitively
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-task-id", ids[3])
    search.fill("sweep")  # a tag
    expect(rows).to_have_count(12)
    search.fill("")

    expect(panel.locator(f'.jp-vqpu-filter-device option[value="{IDLE_DEVICE}"]')).to_have_count(1)
    panel.locator(".jp-vqpu-filter-device").select_option(IDLE_DEVICE)
    panel.locator(".jp-vqpu-filter-state").select_option(TaskState.QUEUED.value)
    expect(label).to_have_text(f"1–20 of 23 (filtered from {total})" if total > 23 else "1–20 of 23")
    expect(rows).to_have_count(20)
    assert set(rows.locator(".jp-vqpu-task-device").all_inner_texts()) == {IDLE_DEVICE}
    panel.locator(".jp-vqpu-filter-state").select_option(TaskState.COMPLETED.value)
    expect(rows).to_have_count(0)
    empty = panel.locator(".jp-vqpu-tasks .jp-vqpu-empty")
    expect(empty).to_be_visible()
    expect(empty).to_have_text("No task matches the filter.")
    screenshot(page, "panel-filtered.png", locator=panel)


@pytest.mark.parametrize("theme", ["JupyterLab Light", "JupyterLab Dark"], ids=["light", "dark"])
def test_state_badges_read_at_wcag_aa(hidpi_lab_page, vqpu_lab, theme):
    """Every state's badge, as the panel draws it, measured on a screenshot: its background is the
    palette's, and its text contrasts with it at 4.5:1 or more (WCAG AA)."""
    page = hidpi_lab_page
    dark = theme.endswith("Dark")
    try:
        _measure_badges(page, theme, dark)
    finally:
        lab_command(page, "apputils:change-theme", {"theme": "JupyterLab Light"})


def _measure_badges(page, theme: str, dark: bool) -> None:
    expect = _expect()
    lab_command(page, "apputils:change-theme", {"theme": theme})
    expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false" if dark else "true",
                                                   timeout=30_000)
    panel = open_vqpu_panel(page)
    # A badge of each state, made by the panel's own renderer's markup inside the panel, so the real
    # stylesheet colours it (claimed/scheduled/running pass too fast to catch on a real task).
    page.evaluate("""states => {
        const box = document.createElement('div');
        box.id = 'vqpu-badge-sample';
        box.style.padding = '8px 12px';
        for (const s of states) {
            const b = document.createElement('span');
            b.className = 'jp-vqpu-state';
            b.dataset.state = s;
            b.textContent = s;
            b.style.margin = '2px';
            box.appendChild(b);
        }
        document.querySelector('#jp-vqpu-panel .jp-vqpu-tasks').prepend(box);
    }""", [s.value for s in TaskState])
    sample = panel.locator("#vqpu-badge-sample")
    expect(sample.locator(".jp-vqpu-state")).to_have_count(len(TaskState))
    expected = palette()["dark" if dark else "light"]
    report = {}
    for state in TaskState:
        badge = sample.locator(f'.jp-vqpu-state[data-state="{state.value}"]')
        background, text, ratio = badge_colours(badge.screenshot(), inset_x=8 * DPR, inset_y=2 * DPR)
        report[state.value] = (background, text, round(ratio, 2))
        assert colour_distance(background, expected[state.value]["bg"]) <= 2, (state, report[state.value])
        assert colour_distance(text, expected[state.value]["fg"]) <= 48, (state, report[state.value])
        assert ratio >= 4.5, f"{theme}: the {state.value} badge is {ratio:.2f}:1 ({text} on {background})"
    screenshot(page, f"badges-{'dark' if dark else 'light'}.png", locator=sample)
    (ARTIFACTS_DIR / f"badges-{'dark' if dark else 'light'}.json").write_text(json.dumps(report, indent=1))
