"""The notebook side of a newcomer's first hour (issue 13), in real kernels (nbclient) against a real
control plane: a cell runs only its own circuit, the user's own errors read as their own, Ctrl-C
while waiting says the task goes on, and the widget tells the truth (a clock that moves, no fake
progress, a cost estimate before a big run, the qubits it ran on)."""

from __future__ import annotations

import ast
import asyncio
import re
import threading
import time

import pytest
from nbclient import NotebookClient

from tests.conftest import REPO
from tests.kernel_support import code, run_notebook, stepping

# kernel_setup / kernel_env (tests/kernel_support.py, via tests/integration/conftest.py): VQPU_REDIS_URL in the
# kernels' environment; kernel_env adds an agent.

pytestmark = pytest.mark.redis

BELL = ('OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\n'
        'measure q -> c;')
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def streams(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def errors(cell) -> list:
    return [o for o in cell.outputs if o.output_type == "error"]


def test_a_cell_runs_only_the_circuit_it_builds(kernel_setup):
    cp = kernel_setup
    nb = code(
        "%load_ext jupyter_vqpu",
        "from qiskit import QuantumCircuit\nqc = QuantumCircuit(1)\nqc.x(0)\nqc.measure_all()",
        "%%vqpu ideal shots=10\nx = 1",
        "%%vqpu ideal shots=10\na = QuantumCircuit(1)\nb = QuantumCircuit(2)",
        "%%vqpu ideal shots=10 -o t\nbell = QuantumCircuit(2)\nbell.h(0)\nbell.cx(0, 1)\nbell.measure_all()",
        "%%vqpu ideal shots=10 -o t2\nqc = QuantumCircuit(3)\nqc.measure_all()\nother = QuantumCircuit(1)",
        "%%vqpu ideal shots=10 circuit=other -o t3\nqc = QuantumCircuit(3)\nother = QuantumCircuit(4)\n"
        "other.measure_all()",
        "print('IDS', t.id, t2.id, t3.id)",
    )
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True).execute()
    stale, several = streams(nb.cells[2]), streams(nb.cells[3])
    assert stale.startswith("UsageError: ") and "left from an earlier cell and was not run" in stale, stale
    assert several.startswith("UsageError: ") and "built 2 circuits (a, b)" in several, several
    assert "ran `qc`; the cell also built other" in streams(nb.cells[5])
    ids = streams(nb.cells[7]).split("IDS ", 1)[1].split()
    widths = []
    for tid in ids:
        from qiskit import qasm3

        fmt, text = cp.circuit(tid)
        assert fmt == "qasm3"
        widths.append(qasm3.loads(text).num_qubits)
    assert widths == [2, 3, 4]  # bell; qc of that cell; the one named by circuit=
    assert not errors(nb.cells[2]) and not errors(nb.cells[3])
    assert len([k for k in cp.tasks(cp.owner_of(ids[0]))]) == 3  # nothing else was submitted


def test_an_error_in_the_cells_own_code_shows_the_users_traceback(kernel_setup):
    nb = code(
        "%load_ext jupyter_vqpu",
        "%%vqpu ideal shots=10\nfrom qiskit import QuantumCircuit\nqc = QuantumCircuit(1)\ny = 1 / 0",
    )
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True).execute()
    (err,) = errors(nb.cells[1])
    assert err["ename"] == "ZeroDivisionError"
    tb = ANSI.sub("", "\n".join(err["traceback"]))
    assert "y = 1 / 0" in tb and "line 4" in tb, tb  # the cell's own line numbers, magic line included
    for internal in ("magic.py", "circuit_from_cell", "run_cell_magic", "interactiveshell.py"):
        assert internal not in tb, tb


def test_interrupting_a_wait_says_the_task_still_runs_and_how_to_cancel(kernel_setup, tmp_path):
    cp = kernel_setup
    marker = tmp_path / "waiting"
    nb = code(
        "%load_ext jupyter_vqpu",
        f"%%vqpu ideal shots=10 -o t\n{BELL}",
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text(t.id)\nt.result()",
    )
    client = NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(REPO)}})

    def interrupt_once_waiting() -> None:
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # polling for the kernel to reach the wait, with a deadline
        asyncio.run(client.km.interrupt_kernel())  # what the notebook's stop button does (SIGINT)

    with client.setup_kernel():
        client.execute_cell(nb.cells[0], 0)
        client.execute_cell(nb.cells[1], 1)
        stopper = threading.Thread(target=interrupt_once_waiting)
        stopper.start()
        client.execute_cell(nb.cells[2], 2)
        stopper.join(130)
    task_id = marker.read_text()
    (err,) = errors(nb.cells[2])
    assert err["ename"] == "WaitInterrupted", err
    tb = ANSI.sub("", "\n".join(err["traceback"]))
    assert len(tb.strip().splitlines()) == 1, tb
    assert f"task {task_id} is still queued" in tb and f"vqpu cancel {task_id}" in tb, tb
    assert "urllib" not in tb and "redis" not in tb.lower().replace("vqpu", "")
    assert cp.task(task_id)["state"] == "queued"  # the wait stopped, not the task


def test_the_widget_clock_moves_without_events_and_the_bar_claims_no_progress(kernel_setup):
    nb = code(
        "%load_ext jupyter_vqpu",
        f"%%vqpu ideal shots=10 -o t\n{BELL}",
        "import asyncio, time\n"
        "seen = [t.widget.detail.value]\n"
        "deadline = time.monotonic() + 60\n"
        "while len(set(seen)) < 3 and time.monotonic() < deadline:\n"
        "    await asyncio.sleep(0.1)\n"
        "    seen.append(t.widget.detail.value)\n"
        "print('DETAILS', sorted(set(seen)))\n"
        "print('BAR', t.widget.progress.value)\n"
        "print('STATE', t.widget.state)",
    )
    with stepping(nb) as run:
        run(0)
        run(1)
        text = run(2)
    details = ast.literal_eval(text.split("DETAILS ", 1)[1].splitlines()[0])
    assert len(details) >= 3 and all("waiting" in d for d in details), details  # no task event arrived
    assert "STATE queued" in text
    bar = text.split("BAR ", 1)[1].splitlines()[0]
    assert "<progress" in bar and "value=" not in bar, bar  # indeterminate: nothing reports progress


def test_a_big_circuit_is_estimated_and_warned_about_before_it_runs(kernel_setup):
    cp = kernel_setup
    nb = code(
        "%load_ext jupyter_vqpu",
        "%%vqpu fez shots=100 -o big\nfrom qiskit import QuantumCircuit\nqc = QuantumCircuit(26)\n"
        "qc.h(range(26))\nqc.measure_all()",
        "print('DETAIL', big.widget.detail.value)\nprint('ID', big.id)\nbig.cancel()",
        f"%%vqpu fez shots=100 -o small\n{BELL}",
        "print('SMALL', small.widget.detail.value)\nsmall.cancel()",
    )
    with stepping(nb) as run:
        run(0)
        run(1)
        detail = run(2)
        run(3)
        small = run(4)
    shown = [str(o.get("data", {}).get("text/html", "")) for o in nb.cells[1].outputs]
    warning = [h for h in shown if "jp-vqpu-estimate-warning" in h]
    assert len(warning) == 1 and "26 active qubits, statevector, 1.0 GiB per state" in warning[0], shown
    assert "estimate: 26 active qubits" in detail
    assert "estimate: 2 active qubits" in small and "warning" not in small.lower()
    assert not [h for h in (str(o.get("data", {}).get("text/html", "")) for o in nb.cells[3].outputs)
                if "jp-vqpu-estimate-warning" in h]
    big_id = detail.split("ID ", 1)[1].split()[0]
    assert cp.task(big_id)["state"] == "cancelled"


def test_a_completed_task_names_its_qubits_and_the_job_surface(kernel_env):
    nb = run_notebook(code(
        "%load_ext jupyter_vqpu",
        "%%vqpu Fez shots=200 seed=1 --wait tags=bell,demo -o t\nfrom qiskit import QuantumCircuit\n"
        "qc = QuantumCircuit(2)\nqc.h(0)\nqc.cx(0, 1)\nqc.measure_all()",
        "print('OUT', t.widget.output.value)\n"
        "print('JOB', t.job_id() == t.id, t.status().name, t.done(), t.tags, t.usage()['shots'])",
    ))
    text = "".join(streams(c) for c in nb.cells)
    out = text.split("OUT ", 1)[1].split("\nJOB ", 1)[0]
    assert "ran on physical qubits of fez: q0&rarr;" in out and "readout error" in out and "T1 " in out, out
    assert "jp-vqpu-histogram-share" in out and "share of 200 shots" in out
    assert re.search(r'jp-vqpu-histogram-share"[^>]*>\d+\.\d%', out), out
    assert "JOB True COMPLETED True ['bell', 'demo'] 200" in text, text
