"""After `pip install .` Jupyter sees both extensions without any manual step."""

from __future__ import annotations

import re
import subprocess
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "jupyter", *args], capture_output=True, text=True, timeout=120,
                         cwd="/")
    return ANSI.sub("", out.stdout + out.stderr)


def test_server_extension_is_enabled():
    text = run("server", "extension", "list")
    assert re.search(r"jupyter_vqpu_server\s+enabled", text), text
    assert re.search(r"jupyter_vqpu_server\s+OK", text), text


def test_lab_extension_is_installed_and_enabled():
    text = run("labextension", "list")
    assert re.search(r"jupyter-vqpu v[0-9.]+\s+enabled\s+OK", text), text
