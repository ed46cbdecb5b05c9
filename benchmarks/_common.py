"""Shared helpers of the benchmarks: a private redis-server, an in-process agent,
percentiles, tables, plots and the common command-line conventions.

Every benchmark is runnable alone (``python benchmarks/X.py``), starts its own
redis-server on a free loopback port, prints a table, writes a PNG plot
(``--plot PATH``), accepts ``--quick`` and ``--smoke`` (smaller runs) and
``--json`` (the last printed line is then one JSON object of headline figures).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# the working tree's three packages, ahead of an installed copy (as pytest's pythonpath does)
for _path in (REPO / "server_ext", REPO / "agent", REPO):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from tests.support import RedisServer  # noqa: E402  (the tests' real redis-server launcher)

BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'
GHZ3 = ('OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\ncreg c[3];\nh q[0];\ncx q[0],q[1];\ncx q[1],q[2];\n'
        'measure q -> c;\n')


def parser(doc: str, name: str) -> argparse.ArgumentParser:
    """The common flags: --quick, --smoke, --json, --plot."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a small run (well under a minute)")
    p.add_argument("--smoke", action="store_true", help="a tiny run for the smoke test (figures meaningless)")
    p.add_argument("--json", action="store_true", help="end with one JSON line of the headline figures")
    p.add_argument("--plot", default=str(REPO / "docs" / "img" / f"{name}.png"), help="where to write the PNG plot")
    return p


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


class Bench:
    """A private redis-server (and its temporary directory) for one benchmark run."""

    def __init__(self, prefix: str) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"vqpu-{prefix}-"))
        self.redis = RedisServer(self.tmp / "redis")
        self.agents: list[InProcessAgent] = []

    def __enter__(self) -> Bench:
        # SIGTERM (a timeout, a test runner) unwinds through __exit__: no redis-server or worker left behind.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _terminate)
        self.redis.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        for a in self.agents:
            try:
                a.stop()
            except Exception as e:  # noqa: BLE001  (never mask the benchmark's own error)
                print(f"warning: agent stop: {e}", file=sys.stderr)
        self.redis.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def url(self) -> str:
        return self.redis.url

    def control(self, seed: Iterable[str] = ()):
        """A ControlPlane on this Redis, with the given built-in devices seeded."""
        from jupyter_vqpu.core.connection import connect
        from jupyter_vqpu.core.control import ControlPlane

        cp = ControlPlane(connect(self.url))
        devices = list(seed)
        if devices:
            cp.seed(devices)
        return cp

    def agent(self, devices: Sequence[str], *, slots: int = 1, warm: bool = True, **cfg: Any) -> InProcessAgent:
        a = InProcessAgent(self.url, devices, self.tmp / f"work{len(self.agents)}", slots=slots, warm=warm, **cfg)
        self.agents.append(a)
        return a


class InProcessAgent:
    """A real Agent with the local executor (warm workers), serving from a background thread.

    The agent's main loop, keep-alive thread and executor threads run in this
    process; the simulation runs in the executor's worker process(es), exactly as
    under ``vqpu agent --executor local``."""

    def __init__(self, url: str, devices: Sequence[str], work_root: Path, *, slots: int = 1, warm: bool = True,
                 **cfg: Any) -> None:
        from jupyter_vqpu.core.connection import connect
        from jupyter_vqpu.core.control import ControlPlane
        from jupyter_vqpu_agent.agent import Agent, AgentConfig
        from jupyter_vqpu_agent.executors.local import LocalExecutor

        cfg.setdefault("capacity", slots)
        self.executor = LocalExecutor(slots=slots, warm=warm, log_dir=work_root)
        self.executor.warm_up()  # Qiskit/Aer imported before the first task, as a long-running agent would be
        self.agent = Agent(ControlPlane(connect(url)), self.executor,
                           AgentConfig(devices=list(devices), work_root=work_root, **cfg))
        self.thread = threading.Thread(target=self.agent.run, name="bench-agent", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.agent.stop()
        self.thread.join(60)


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) with linear interpolation; nan for no values."""
    if not values:
        return math.nan
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def pcts(values: Sequence[float], ps: Sequence[float] = (50, 95, 99)) -> dict[str, float]:
    return {f"p{int(p)}": percentile(values, p) for p in ps}


def load() -> str:
    """The 1/5/15-minute load averages, for the record next to every measurement."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cpus)"


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]]) -> str:
    """A fixed-width text table: columns are (key, header, format spec)."""
    cells = [[h for _, h, _ in columns]]
    for r in rows:
        cells.append([format(r[k], f) if isinstance(r.get(k), (int, float)) else str(r.get(k, "")) for k, _, f in columns])
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    lines = ["  ".join(c[i].rjust(widths[i]) if i else c[i].ljust(widths[i]) for i in range(len(columns)))
             for c in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


def emit_json(summary: dict[str, Any]) -> None:
    """The last line: one JSON object (NaN becomes null)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    sys.stdout.flush()
    print(json.dumps(clean(summary), sort_keys=True), flush=True)


def now() -> float:
    """Wall-clock seconds, comparable with Redis TIME on the same host (the history timestamps)."""
    return time.time()
