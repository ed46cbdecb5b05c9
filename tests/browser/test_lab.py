"""Real JupyterLab in a real (headless Debian) Chromium: the vQPU panel and the %%vqpu widget.

One ``jupyter lab`` with the ``jupyter_vqpu_server`` extension, the built ``jupyter-vqpu`` lab
extension and an agent (LocalExecutor running the real runner) serve the whole module;
see conftest.py. Screenshots go to ``.ci/artifacts/`` (git-ignored).
"""

from __future__ import annotations

import json
import re

import nbformat
import pytest

from tests.browser.helpers import lab_command, open_vqpu_panel, screenshot, wait_for_notebook_kernel
from tests.conftest import BELL_QASM2

pytestmark = pytest.mark.browser

# The first Fez task binds a 156-qubit snapshot and (maybe) imports Qiskit in the worker.
FEZ_TIMEOUT_MS = 120_000

BELL_CELL = """%%vqpu fez shots=1024
from qiskit import QuantumCircuit
qc = QuantumCircuit(2)
qc.h(0)
qc.cx(0, 1)
qc.measure_all()
"""

ENV_CELL = "import os\nprint('redis-in-env:', 'VQPU_REDIS_URL' in os.environ, '| api-in-env:', 'VQPU_API_URL' in os.environ)"


def _expect():
    from playwright.sync_api import expect

    return expect


def test_panel_lists_devices_and_follows_a_task(lab_page, vqpu_lab):
    expect = _expect()
    page = lab_page
    panel = open_vqpu_panel(page)

    fez = panel.locator('.jp-vqpu-device[data-device="fez"]')
    expect(fez).to_be_visible()
    # the agent of this module serves fez: its heartbeat makes the device online
    expect(fez.locator(".jp-vqpu-device-status")).to_have_attribute("data-status", "online")
    expect(fez.locator(".jp-vqpu-device-status-text")).to_have_text("online")
    expect(fez).to_contain_text("156 qubits")
    expect(panel.locator('.jp-vqpu-device[data-device="ideal"]')).to_be_visible()

    # Submit as the same Jupyter user the page is: the token, plus the login cookie the
    # page got (page.request shares the browser context's cookies).
    reply = page.request.post(
        f"{vqpu_lab.api}tasks",
        headers={"Authorization": f"token {vqpu_lab.token}"},
        data=json.dumps({"device": "ideal", "circuit": BELL_QASM2, "shots": 256, "seed": 11}),
    )
    assert reply.status == 201, reply.text()
    task_id = reply.json()["task_id"]

    row = panel.locator(f'.jp-vqpu-task[data-task-id="{task_id}"]')
    expect(row).to_be_visible(timeout=15_000)
    expect(row.locator(".jp-vqpu-task-device")).to_have_text("ideal")
    state = row.locator(".jp-vqpu-state")
    expect(state).to_have_attribute("data-state", "completed", timeout=60_000)
    expect(state).to_have_text("completed")
    expect(row).to_contain_text("256 shots")
    # a Bell pair on a noise-free device: only 00 and 11
    expect(row.locator(".jp-vqpu-state-detail")).to_have_text(re.compile(r"^most frequent: (00|11) \(\d+\.\d%\)$"))
    expect(row.locator(".jp-vqpu-cancel")).to_have_count(0)

    assert vqpu_lab.cp.task(task_id)["state"] == "completed"
    counts = vqpu_lab.cp.result(task_id)["counts"]
    assert set(counts) <= {"00", "11"} and sum(counts.values()) == 256

    screenshot(page, "panel.png")


def _write_notebook(lab, name: str, cells: list[str]) -> str:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, str(lab.root / name))
    return name


def _wait_for_widget(expect, badge, lab, task_id: str) -> None:
    """Wait (up to FEZ_TIMEOUT_MS) for the completed badge; fail early, and say why, when the
    control plane has long finished the task but the widget does not follow."""
    step_ms, waited, final_seen_at = 5_000, 0, None
    while True:
        try:
            expect(badge).to_be_visible(timeout=step_ms)
            return
        except AssertionError:
            waited += step_ms
            state = lab.cp.task(task_id).get("state")
            if state in ("completed", "failed", "cancelled") and final_seen_at is None:
                final_seen_at = waited
            stuck = final_seen_at is not None and waited - final_seen_at >= 15_000
            if stuck or waited >= FEZ_TIMEOUT_MS:
                refused = [ln for ln in lab.log_tail(200_000).splitlines() if "vqpu/api" in ln and " 403 " in ln]
                raise AssertionError(
                    f"the widget never showed 'completed' for {task_id} after {waited / 1000:.0f} s; "
                    f"the control plane says {state!r} (owner {lab.cp.owner_of(task_id)!r}); "
                    f"{len(refused)} API request(s) refused with 403, e.g. {refused[-1:]}"
                ) from None


def test_kernel_token_requests_act_as_one_user(vqpu_lab):
    """What a kernel does (VQPU_API_URL + VQPU_API_TOKEN, no cookies): submit, then read its task back.

    Every such request must be the same Jupyter user, or the widget cannot follow its own task."""
    from jupyter_vqpu.kernel.http import ApiClient

    client = ApiClient(vqpu_lab.api, vqpu_lab.token)
    task = client.submit(BELL_QASM2, device="ideal", shots=16)
    assert client.task(task.id).id == task.id  # a 403 "belongs to another user" fails here
    assert task.id in {v["task_id"] for v in client.list()}


def test_notebook_cell_renders_widget_to_completed(lab_page, vqpu_lab):
    expect = _expect()
    page = lab_page
    name = _write_notebook(vqpu_lab, "bell.ipynb", ["%load_ext jupyter_vqpu", ENV_CELL, BELL_CELL])

    lab_command(page, "docmanager:open", {"path": name})
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    expect(notebook.locator(".jp-Cell")).to_have_count(3, timeout=30_000)
    # the notebook's own kernel is up before running: run before it, Lab starts a second one and
    # drops the queued cells (the toolbar's "idle" shows before there is any kernel)
    wait_for_notebook_kernel(page, name)

    lab_command(page, "notebook:run-all-cells", wait=False)

    # the kernel got the API, not Redis
    env_out = notebook.locator(".jp-Cell").nth(1).locator(".jp-OutputArea-output")
    expect(env_out).to_contain_text("redis-in-env: False | api-in-env: True", timeout=60_000)

    widget = notebook.locator(".jp-Cell").nth(2).locator(".jp-vqpu-widget")
    expect(widget).to_be_visible(timeout=60_000)
    task_id = widget.locator("code").first.inner_text().strip()
    badge = widget.locator('span.jp-vqpu-widget-state[data-state="completed"]')
    _wait_for_widget(expect, badge, vqpu_lab, task_id)
    expect(badge).to_have_text("completed")
    expect(widget).to_contain_text("on fez")
    expect(widget).to_contain_text("1024 shots")
    histogram = widget.locator("table.jp-vqpu-histogram")
    expect(histogram).to_be_visible(timeout=30_000)
    # Fez is noisy, but a Bell pair still puts most of its counts on 00 and 11
    rows = histogram.locator("tr")
    assert rows.count() >= 2
    top = sorted(rows.nth(i).locator("td").first.inner_text().strip() for i in range(2))
    assert top == ["00", "11"], top
    total = sum(int(rows.nth(i).locator("td").nth(1).inner_text()) for i in range(rows.count()))
    assert total == 1024  # 2 qubits: every outcome is in the (top-16) table

    # the error area stays empty (no UsageError from the magic)
    expect(notebook.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")).to_have_count(0)

    widget.scroll_into_view_if_needed()
    screenshot(page, "widget.png")

    # the task is the kernel's: it is on the control plane, completed, on fez
    view = vqpu_lab.cp.task(task_id)
    assert view["state"] == "completed" and view["device"] == "fez"
    assert sum(vqpu_lab.cp.result(task_id)["counts"].values()) == 1024


def test_dark_theme_renders_the_panel(lab_page, vqpu_lab):
    expect = _expect()
    page = lab_page
    try:
        lab_command(page, "apputils:change-theme", {"theme": "JupyterLab Dark"})
        expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false", timeout=30_000)
        panel = open_vqpu_panel(page)
        fez = panel.locator('.jp-vqpu-device[data-device="fez"]')
        expect(fez.locator(".jp-vqpu-device-status")).to_have_attribute("data-status", "online")
        # the panel follows the theme: its background is dark
        bg = panel.evaluate("n => getComputedStyle(n).backgroundColor")
        rgb = [int(x) for x in re.findall(r"\d+", bg)[:3]]
        assert len(rgb) == 3 and sum(rgb) / 3 < 100, bg
        colour = fez.locator(".jp-vqpu-device-name").evaluate("n => getComputedStyle(n).color")
        rgb = [int(x) for x in re.findall(r"\d+", colour)[:3]]
        assert sum(rgb) / 3 > 150, colour  # light text on it
        screenshot(page, "panel-dark.png")
    finally:
        lab_command(page, "apputils:change-theme", {"theme": "JupyterLab Light"})


def test_a_command_that_never_settles_fails_instead_of_hanging(lab_page):
    """The helper every test drives Lab with is bounded: a hung command is a failure with its name."""
    lab_page.evaluate("""() => window.jupyterapp.commands.addCommand('vqpu-test:never',
        {label: 'never', execute: () => new Promise(() => {})})""")
    with pytest.raises(TimeoutError, match="vqpu-test:never"):
        lab_command(lab_page, "vqpu-test:never", timeout=1)
    lab_command(lab_page, "vqpu-test:never", wait=False)  # started, not awaited: returns at once
