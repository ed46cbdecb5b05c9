"""``%%vqpu`` and ``%vqpu``: run a cell's circuit on a virtual QPU from a notebook.

    %%vqpu fez shots=4096 seed=7 -o job
    qc = QuantumCircuit(3) ...

The cell body is Python that builds a ``QuantumCircuit`` (the variable ``qc``,
or the cell's last expression) or OpenQASM 2/3 text. Misuse is a one-line
``UsageError``; so is any error the service answers with.
"""

from __future__ import annotations

import ast
import functools
import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import HTML, display

from jupyter_vqpu.core.errors import VqpuError
from jupyter_vqpu.kernel.transport import resolve_client

INT_OPTIONS = ("shots", "seed", "optimization_level")
TEXT_OPTIONS = ("name", "snapshot", "idempotency_key")
USAGE = ("usage: %%vqpu DEVICE [shots=N] [seed=N] [optimization_level=N] [name=TEXT] [snapshot=ID] "
         "[--wait|--no-wait] [--ideal] [-o VAR]; or %vqpu devices | tasks | status ID | cancel ID")


def parse_cell_line(line: str) -> dict[str, Any]:
    """``DEVICE [k=v ...] [--wait|--no-wait] [--ideal] [-o VAR]`` -> options. Raises UsageError."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"cannot read the magic's arguments ({exc}); {USAGE}") from None
    if not words or "=" in words[0] or words[0].startswith("-"):
        raise UsageError(f"name a device first, e.g. %%vqpu fez shots=4096; {USAGE}")
    opts: dict[str, Any] = {"device": words[0], "wait": False, "ideal": False, "var": "_vqpu"}
    it = iter(words[1:])
    for w in it:
        if w == "--wait":
            opts["wait"] = True
        elif w == "--no-wait":
            opts["wait"] = False
        elif w == "--ideal":
            opts["ideal"] = True
        elif w in ("-o", "--out"):
            var = next(it, None)
            if not var or not var.isidentifier():
                raise UsageError(f"-o needs a variable name, e.g. -o job; {USAGE}")
            opts["var"] = var
        elif "=" in w:
            key, _, value = w.partition("=")
            key = key.replace("-", "_")
            if key in INT_OPTIONS:
                try:
                    opts[key] = int(value)
                except ValueError:
                    raise UsageError(f"{key} must be a whole number, got {value!r}") from None
            elif key in TEXT_OPTIONS:
                opts[key] = value
            else:
                raise UsageError(f"unknown option {key!r}; {USAGE}")
        else:
            raise UsageError(f"unexpected argument {w!r}; {USAGE}")
    return opts


def looks_like_qasm(text: str) -> bool:
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("//"):
            continue
        return line.upper().startswith("OPENQASM")
    return False


def circuit_from_cell(cell: str, user_ns: dict[str, Any]) -> Any:
    """Run the cell's Python in the user's namespace; the circuit is ``qc`` or the last expression."""
    if looks_like_qasm(cell):
        return cell
    from qiskit import QuantumCircuit

    try:
        tree = ast.parse(cell)
    except SyntaxError as exc:
        raise UsageError(f"the cell is neither OpenQASM nor valid Python: line {exc.lineno}: {exc.msg}") from None
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, "<vqpu cell>", "exec"), user_ns)  # the user's own code, in the user's own kernel
    value = eval(compile(last, "<vqpu cell>", "eval"), user_ns) if last is not None else None
    if isinstance(value, QuantumCircuit):
        return value
    if isinstance(user_ns.get("qc"), QuantumCircuit):
        return user_ns["qc"]
    raise UsageError("the cell built no QuantumCircuit: assign it to `qc` or end the cell with it")


def _friendly(fn):
    """Errors from the service become one line, not a traceback from deep in the stack."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except VqpuError as exc:
            raise UsageError(str(exc)) from None

    return wrapper


@magics_class
class VqpuMagics(Magics):
    _client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = resolve_client()
        return self._client

    @line_cell_magic
    @_friendly
    def vqpu(self, line: str, cell: str | None = None) -> Any:
        if cell is None:
            return self._line(line)
        return self._cell(line, cell)

    def _cell(self, line: str, cell: str) -> None:
        from jupyter_vqpu.kernel.widget import TaskWidget

        opts = parse_cell_line(line)
        circuit = circuit_from_cell(cell, self.shell.user_ns)
        submit = {k: opts[k] for k in INT_OPTIONS + TEXT_OPTIONS if k in opts}
        task = self.client.submit(circuit, device=opts["device"], **submit)
        ideal = None
        if opts["ideal"]:
            ideal = self.client.submit(circuit, device="ideal", shots=submit.get("shots", 1024),
                                       seed=submit.get("seed"))
        widget = TaskWidget(task, ideal_task=ideal)
        task.widget = widget
        self.shell.user_ns[opts["var"]] = task
        display(widget)
        if opts["wait"]:
            task.result()
        else:
            widget.follow()

    def _line(self, line: str) -> Any:
        from jupyter_vqpu.kernel.widget import TaskWidget, describe

        words = line.split()
        if not words:
            raise UsageError(USAGE)
        cmd, rest = words[0], words[1:]
        if cmd == "devices":
            rows = "".join(
                f"<tr><td><b>{d['name']}</b></td><td>{d['status']}</td><td>{d['num_qubits']}</td>"
                f"<td>{d['queue_depth']}</td><td><code>{(d.get('snapshot_id') or '')[:12]}</code></td></tr>"
                for d in self.client.devices()
            )
            display(HTML("<table><tr><th>device</th><th>status</th><th>qubits</th><th>queued</th>"
                         f"<th>snapshot</th></tr>{rows}</table>"))
            return None
        if cmd == "tasks":
            views = self.client.list()
            if not views:
                print("no tasks yet")
            for v in views:
                if v["state"] in ("completed", "failed", "cancelled"):
                    print(f"{v['task_id']}  {v['state']:<10} {describe(v)}")
                else:  # re-attach a live widget to work submitted before a kernel restart
                    w = TaskWidget(self.client.task(v["task_id"]))
                    display(w)
                    w.follow()
            return None
        if cmd in ("status", "cancel") and len(rest) == 1:
            task = self.client.task(rest[0])
            if cmd == "cancel":
                task.cancel()
            w = TaskWidget(task)
            display(w)
            w.follow()
            return task
        raise UsageError(USAGE)


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magics(VqpuMagics)
