"""The shipped operations files are valid: the agent's systemd unit passes systemd-analyze and its flags parse."""

from __future__ import annotations

import re
import shlex
import subprocess

from jupyter_vqpu import cli
from tests.conftest import REPO, need_binary

UNIT = REPO / "slurm" / "vqpu-agent.service"


def _exec_start(text: str) -> list[str]:
    line = re.search(r"^ExecStart=(.*?)(?<!\\)$", text, re.M | re.S).group(1)
    return shlex.split(line.replace("\\\n", " "))


def test_the_agent_unit_verifies(tmp_path):
    analyze = need_binary("systemd-analyze", "checks the shipped unit file")
    text = UNIT.read_text()
    # the unit's ExecStart names where a site installs vqpu; point it at a binary that exists here
    unit = tmp_path / "vqpu-agent.service"
    unit.write_text(text.replace("/opt/vqpu/venv/bin/vqpu", "/bin/true"))
    out = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (out.stdout + out.stderr).splitlines() if "vqpu-agent.service" in line]
    assert out.returncode == 0 and not problems, out.stdout + out.stderr


def test_the_agent_units_flags_are_the_clis():
    argv = _exec_start(UNIT.read_text())
    assert argv[0].endswith("/vqpu") and argv[1] == "agent"
    env = {"${VQPU_DEVICES}": "fez,torino", "${VQPU_WORK_ROOT}": "/scratch/vqpu"}
    args = cli.build_parser().parse_args([env.get(a, a) for a in argv[1:]])
    assert (args.executor, args.devices, args.log_format) == ("slurm", "fez,torino", "json")
