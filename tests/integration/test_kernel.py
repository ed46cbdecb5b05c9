"""The magic, the widget and the notebooks in real kernels (nbclient), against a real control plane."""

from __future__ import annotations

import ast
import json

import nbformat
import pytest
from nbclient import NotebookClient

from jupyter_vqpu.core.lifecycle import ORDER
from tests.conftest import REPO
from tests.kernel_support import code, run_notebook, serve, stepping, text_of

pytestmark = pytest.mark.redis


@pytest.mark.parametrize("name", ["quickstart", "calibration_drift", "qiskit_backend"])
def test_notebook_runs_top_to_bottom(kernel_env, name):
    before = json.loads(kernel_env.snapshot_bytes("fez"))
    nb = run_notebook(nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4))
    text = text_of(nb)
    # No notebook leaves a device changed: the drift notebook rolls Fez back (as a new version).
    after = json.loads(kernel_env.snapshot_bytes("fez"))
    bookkeeping = ("version", "created_at", "source")
    assert {k: v for k, v in after.items() if k not in bookkeeping} == \
        {k: v for k, v in before.items() if k not in bookkeeping}
    assert "Error" not in text and "Traceback" not in text
    if name == "quickstart":
        assert "top outcomes: [('" in text and "share of outcomes an ideal GHZ never gives" in text
        widgets = [o for c in nb.cells for o in c.get("outputs", [])
                   if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
        assert widgets, "the %%vqpu cell should display a widget"
    if name == "calibration_drift":
        assert "total-variation distance between the two" in text
        assert after["version"] == 3 and "fez is back on the calibration of v1, as version 3" in text
    if name == "qiskit_backend":
        assert "sampler: [('" in text and "total 1024" in text


def test_the_cell_returns_while_its_task_waits_and_the_widget_follows_it_live(kernel_setup, redis_url, tmp_path):
    cp = kernel_setup
    nb = code(
        "%load_ext jupyter_vqpu",
        "%%vqpu ideal shots=100 -o t\nOPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[1];\ncreg c[1];\nh q[0];\nmeasure q -> c;",
        "print('STATE', t.id, t.widget.state)",
        "import asyncio, time\n"
        "deadline = time.monotonic() + 120\n"
        "while t.widget.state != 'completed' and time.monotonic() < deadline:\n"
        "    await asyncio.sleep(0.05)\n"
        "print('SEEN', t.widget.states_seen)\n"
        "print('COUNTS', t.counts)",
    )
    with stepping(nb) as run:
        run(0)
        run(1)  # no agent serves yet: a blocking %%vqpu would never return from this cell
        task_id, state = run(2).split()[1:3]
        assert state == "queued" and cp.task(task_id)["state"] == "queued"
        running = serve(redis_url, tmp_path)  # now the task can run, while the kernel is free
        try:
            text = run(3)
        finally:
            running.stop()
    seen = ast.literal_eval(text.split("SEEN ", 1)[1].splitlines()[0])  # our own printed list
    assert seen[0] == "queued" and seen[-1] == "completed" and len(seen) >= 3, seen
    assert [ORDER.index(s) for s in seen] == sorted(ORDER.index(s) for s in seen)
    assert "COUNTS {'" in text


def test_blocking_wait_updates_the_widget_too(kernel_env):
    nb = run_notebook(code(
        "%load_ext jupyter_vqpu",
        "%%vqpu fez shots=200 seed=1 --wait -o t\nfrom qiskit import QuantumCircuit\n"
        "qc = QuantumCircuit(2)\nqc.h(0)\nqc.cx(0, 1)\nqc.measure_all()",
        "print('SEEN', t.widget.states_seen, sum(t.counts.values()))",
    ))
    text = text_of(nb)
    seen_line = text.split("SEEN ", 1)[1].splitlines()[0]
    assert seen_line.startswith("['queued'") and "'completed'] 200" in seen_line


def test_magic_errors_are_one_line(kernel_env):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in (
        "%load_ext jupyter_vqpu",
        "%%vqpu\nqc = 1",
        "%%vqpu fez shots=abc\nqc = 1",
        "%%vqpu nosuch shots=10\nOPENQASM 2.0;\nqreg q[1];",
        "%%vqpu fez bogus=1\nqc = 1",
        "%%vqpu fez shots=10\nx = 1",
    )]
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True).execute()
    # IPython shows a UsageError as one "UsageError: ..." line on stderr, never a traceback.
    messages = []
    for cell in nb.cells[1:]:
        text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.outputs
        assert text.startswith("UsageError: ") and len(text.strip().splitlines()) == 1, text
        messages.append(text)
    assert "name a device first" in messages[0]
    assert "shots must be a whole number" in messages[1]
    assert "unknown device 'nosuch'" in messages[2]
    assert "unknown option 'bogus'" in messages[3]
    assert "built no QuantumCircuit" in messages[4]


def test_line_magics_list_devices_and_reattach_to_tasks(kernel_setup, redis_url, tmp_path):
    cp = kernel_setup
    from jupyter_vqpu.core.client import Client

    # submitted "before the kernel restart", and still queued (no agent serves yet)
    earlier = Client(control=cp).submit(
        'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\ncreg c[1];\nx q[0];\nmeasure q -> c;', device="ideal",
        shots=50)
    nb = code(
        "%load_ext jupyter_vqpu",
        "%vqpu devices",
        "%vqpu tasks",
        f"t = %vqpu status {earlier.id}\nprint('STATUS', t.id, t.result(timeout=120)['counts'])",
    )
    with stepping(nb) as run:
        run(0)
        run(1)
        listed = run(2)
        assert cp.task(earlier.id)["state"] == "queued"
        running = serve(redis_url, tmp_path)
        try:
            status = run(3)
        finally:
            running.stop()
    devices_html = "".join(str(o.get("data", {}).get("text/html", "")) for o in nb.cells[1].outputs)
    assert "<b>fez</b>" in devices_html and "<b>ideal</b>" in devices_html
    # the live task is re-attached as a widget (whose state names it), not printed as a line
    views = [o for o in nb.cells[2].outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) == 1 and earlier.id not in listed, nb.cells[2].outputs
    model_id = views[0]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
    widget_states = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert model_id in widget_states and earlier.id in json.dumps(widget_states), "the widget is not this task's"
    assert f"STATUS {earlier.id} {{'1': 50}}" in status
