"""Kernels for tests: the environment a kernel inherits, an agent to serve it, notebooks run cell by cell."""

from __future__ import annotations

import contextlib

import nbformat
import pytest
from nbclient import NotebookClient

from tests.agents import Running
from tests.conftest import REPO


@pytest.fixture
def kernel_setup(seeded, redis_url, monkeypatch):
    """Kernels inherit VQPU_REDIS_URL (the operator transport outside a Jupyter server); no agent yet."""
    monkeypatch.setenv("VQPU_REDIS_URL", redis_url)
    monkeypatch.delenv("VQPU_API_URL", raising=False)
    return seeded


def serve(redis_url: str, tmp_path) -> Running:
    """An agent that serves fez and ideal from now on."""
    from jupyter_vqpu_agent.executors.local import LocalExecutor

    return Running(redis_url, LocalExecutor(slots=1, log_dir=tmp_path), tmp_path / "work",
                   devices=("fez", "ideal"), capacity=1)


@pytest.fixture
def kernel_env(kernel_setup, redis_url, tmp_path):
    """kernel_setup, with an agent serving from the start."""
    running = serve(redis_url, tmp_path)
    yield kernel_setup
    running.stop()


@contextlib.contextmanager
def stepping(nb: nbformat.NotebookNode, timeout: int = 120):
    """One kernel for ``nb``; yields ``run(i)``, which executes cell i and returns its printed text,
    so the test can act (start an agent, read Redis) between cells."""
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(REPO)}})
    with client.setup_kernel():
        def run(i: int) -> str:
            client.execute_cell(nb.cells[i], i)
            return "".join(o.get("text", "") for o in nb.cells[i].outputs if o.get("output_type") == "stream")

        yield run
        client.set_widgets_metadata()


def run_notebook(nb: nbformat.NotebookNode, timeout: int = 300) -> nbformat.NotebookNode:
    """Execute every cell of ``nb`` in a fresh python3 kernel started in the checkout."""
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    return nb


def text_of(nb: nbformat.NotebookNode) -> str:
    """All the text a notebook printed or displayed, cell after cell."""
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", ""))
            out.append(str(o.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


def code(*sources: str) -> nbformat.NotebookNode:
    """A notebook of one code cell per source."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    return nb
