"""The package boundaries, checked on the import graph (import-linter; contracts in pyproject.toml).

The contracts say: the contract (``jupyter_vqpu.core``) imports no Jupyter,
IPython, ipywidgets, agent or server code; the server extension and the agent
never import each other; the job side (runner, worker, pilot spool) imports
neither redis nor Jupyter; the kernel's HTTP transport imports no redis. A
lazy import inside a function counts as much as one at the top of a module.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import tomllib

from tests.conftest import REPO


def test_every_import_contract_is_kept():
    exe = shutil.which("lint-imports") or f"{sys.executable} -m importlinter.cli"
    proc = subprocess.run(exe.split() + ["--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert len(contracts) >= 4 and f"Contracts: {len(contracts)} kept, 0 broken." in proc.stdout, proc.stdout[-2000:]


def test_the_contracts_catch_a_forbidden_import(tmp_path):
    """The checker itself bites: a core module that imports the agent breaks the first contract."""


    tree = tmp_path / "tree"
    for part in ("jupyter_vqpu", "agent", "server_ext"):
        shutil.copytree(REPO / part, tree / part, ignore=shutil.ignore_patterns("labextension", "node_modules", "__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tree / "pyproject.toml")
    (tree / "jupyter_vqpu" / "core" / "snapshot.py").write_text(
        (REPO / "jupyter_vqpu" / "core" / "snapshot.py").read_text() + "\nimport jupyter_vqpu_agent.agent  # noqa\n")
    env_path = f"{tree}:{tree / 'agent'}:{tree / 'server_ext'}"
    exe = shutil.which("lint-imports") or f"{sys.executable} -m importlinter.cli"
    proc = subprocess.run(exe.split() + ["--no-cache"], cwd=tree, capture_output=True, text=True, timeout=600,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": env_path, "HOME": str(tmp_path)})
    assert proc.returncode != 0 and "jupyter_vqpu.core.snapshot -> jupyter_vqpu_agent" in proc.stdout, proc.stdout[-3000:]
