"""``%%vqpu`` and ``%vqpu``: run a cell's circuit on a virtual QPU from a notebook.

    %%vqpu fez shots=4096 seed=7 -o job
    qc = QuantumCircuit(3) ...

The cell body is Python that builds a ``QuantumCircuit`` (bound to a name in
THAT cell, or its last expression: never a circuit left from an earlier cell)
or OpenQASM 2/3 text. Misuse is a one-line ``UsageError``; so is any error the
service answers with; an error in the cell's own code shows the user's own
traceback, not the magic's.
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
from jupyter_vqpu.core.keys import device_name
from jupyter_vqpu.core.lifecycle import FINAL_STATES
from jupyter_vqpu.core.task import WaitInterrupted
from jupyter_vqpu.kernel.transport import resolve_client

INT_OPTIONS = ("shots", "seed", "optimization_level")
TEXT_OPTIONS = ("name", "snapshot", "idempotency_key", "circuit")
USAGE = ("usage: %%vqpu DEVICE [shots=N] [seed=N] [optimization_level=N] [name=TEXT] [snapshot=ID|vN] "
         "[tags=a,b] [circuit=NAME] [--wait|--no-wait] [--ideal] [-o VAR]; "
         "or %vqpu devices | tasks | status ID | cancel ID")


def parse_cell_line(line: str) -> dict[str, Any]:
    """``DEVICE [k=v ...] [--wait|--no-wait] [--ideal] [-o VAR]`` -> options. Raises UsageError."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"cannot read the magic's arguments ({exc}); {USAGE}") from None
    if not words or "=" in words[0] or words[0].startswith("-"):
        raise UsageError(f"name a device first, e.g. %%vqpu fez shots=4096; {USAGE}")
    try:
        device = device_name(words[0])
    except VqpuError as exc:
        raise UsageError(f"{exc}; {USAGE}") from None
    opts: dict[str, Any] = {"device": device, "wait": False, "ideal": False, "var": "_vqpu"}
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
            elif key == "tags":
                opts["tags"] = [t.strip() for t in value.split(",") if t.strip()]
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


class CellCodeError(Exception):
    """The user's own cell code raised: shown as THEIR traceback (frames of their cell onwards),
    not the magic's and IPython's frames above it (see ``show_cell_error``)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def bound_names(tree: ast.Module) -> list[str]:
    """Names the cell's own code binds at module level (assignments, for/with targets, walrus, imports),
    in order of first binding; function and class bodies bind their own locals, so they are skipped."""
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            if not isinstance(node, ast.Lambda) and node.name not in names:
                names.append(node.name)
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id not in names:
            names.append(node.id)
        elif isinstance(node, ast.alias):
            bound = node.asname or node.name.split(".")[0]
            if bound not in names:
                names.append(bound)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def circuit_from_cell(cell: str, user_ns: dict[str, Any], *, choose: str | None = None,
                      filename: str = "<vqpu cell>", first_line: int = 1) -> Any:
    """Run the cell's Python in the user's namespace and return the circuit THIS cell made.

    That is the cell's last expression when it is a QuantumCircuit, else the one
    QuantumCircuit among the names the cell binds (``qc``, if it binds several, or the
    one named by ``choose``). A circuit left in the namespace by an earlier cell is
    never taken: a cell over ``x = 1`` refuses rather than rerunning yesterday's ``qc``.
    Returns (circuit, note): the note says which of several circuits was used."""
    if looks_like_qasm(cell):
        return cell, ""
    from qiskit import QuantumCircuit

    try:
        tree = ast.parse(cell, filename)
    except SyntaxError as exc:
        line = (exc.lineno or 1) + first_line - 1
        raise UsageError(f"the cell is neither OpenQASM nor valid Python: line {line}: {exc.msg}") from None
    ast.increment_lineno(tree, first_line - 1)  # line numbers of the notebook cell, magic line included
    bound = bound_names(tree)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    try:
        exec(compile(tree, filename, "exec"), user_ns)  # the user's own code, in the user's own kernel
        value = eval(compile(last, filename, "eval"), user_ns) if last is not None else None
    except Exception as exc:
        raise CellCodeError(exc) from exc
    if choose is not None:
        if not isinstance(user_ns.get(choose), QuantumCircuit):
            raise UsageError(f"circuit={choose}: the cell left no QuantumCircuit named {choose!r}")
        return user_ns[choose], ""
    if isinstance(value, QuantumCircuit):
        return value, ""
    made = [n for n in bound if isinstance(user_ns.get(n), QuantumCircuit)]
    if len(made) == 1:
        return user_ns[made[0]], ""
    if len(made) > 1:
        if "qc" in made:
            others = ", ".join(n for n in made if n != "qc")
            return user_ns["qc"], f"ran `qc`; the cell also built {others} (pick one with circuit=NAME)"
        raise UsageError(f"the cell built {len(made)} circuits ({', '.join(made)}): end the cell with the one to "
                         "run, or name it, e.g. %%vqpu fez circuit=" + made[0])
    if isinstance(user_ns.get("qc"), QuantumCircuit):
        raise UsageError("the cell built no QuantumCircuit; `qc` is left from an earlier cell and was not run: "
                         "build or assign the circuit in this cell (e.g. qc = qc), or end the cell with it")
    raise UsageError("the cell built no QuantumCircuit: assign it to `qc` or end the cell with it")


def _user_traceback(error: BaseException, filename: str) -> Any:
    """The traceback from the first frame of the user's cell onwards (None when it has none)."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != filename:
        tb = tb.tb_next
    return tb


def show_error(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None) -> list[str]:
    """IPython's handler for our errors (``set_custom_exc``): one line for a VqpuError (Ctrl-C while
    waiting included), the user's own traceback for an error in their cell code."""
    if isinstance(value, CellCodeError):
        error = value.error
        filename = getattr(value, "filename", "")
        tb = _user_traceback(error, filename) or error.__traceback__
        # tb_offset 0: IPython's default skips the first frame (its own run_code), here the user's.
        stb = shell.InteractiveTB.structured_traceback(type(error), error, tb, tb_offset=0)
        shell._showtraceback(type(error), error, stb)
        return stb
    stb = [f"{etype.__name__}: {value}"]
    shell._showtraceback(etype, value, stb)
    return stb


def _friendly(fn):
    """Errors from the service become one line, not a traceback from deep in the stack."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except WaitInterrupted:
            raise
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

    def _run_cell_code(self, line: str, cell: str, choose: str | None) -> tuple[Any, str]:
        """The cell's circuit; the body is compiled under a name IPython's tracebacks know, with the
        notebook cell's own line numbers (the magic's line is line 1)."""
        shell = self.shell
        source = cell
        try:
            source = shell.input_transformer_manager.transform_cell(cell)  # %magics and !shell inside the body
        except Exception:  # a body IPython cannot transform is left to the parser, which says why
            pass
        filename = shell.compile.cache(f"%%vqpu {line}\n{source}", shell.execution_count)
        try:
            return circuit_from_cell(source, shell.user_ns, choose=choose, filename=filename, first_line=2)
        except CellCodeError as exc:
            exc.filename = filename  # type: ignore[attr-defined]
            raise

    def _cell(self, line: str, cell: str) -> None:
        from jupyter_vqpu.kernel.widget import TaskWidget, estimate_html

        opts = parse_cell_line(line)
        circuit, note = self._run_cell_code(line, cell, opts.get("circuit"))
        if note:
            print(note)
        submit = {k: opts[k] for k in INT_OPTIONS + TEXT_OPTIONS if k in opts and k != "circuit"}
        if opts.get("tags"):
            submit["tags"] = opts["tags"]
        warning = estimate_html(circuit, opts["device"], submit.get("shots", 1024))
        task = self.client.submit(circuit, device=opts["device"], **submit)
        ideal = None
        if opts["ideal"]:
            ideal = self.client.submit(circuit, device="ideal", shots=submit.get("shots", 1024),
                                       seed=submit.get("seed"))
        widget = TaskWidget(task, ideal_task=ideal, estimate=warning, snapshot_of=self.client.snapshot)
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
                if v["state"] in FINAL_STATES:
                    print(f"{v['task_id']}  {v['state']:<10} {describe(v)}")
                else:  # re-attach a live widget to work submitted before a kernel restart
                    w = TaskWidget(self.client.task(v["task_id"]), snapshot_of=self.client.snapshot)
                    display(w)
                    w.follow()
            return None
        if cmd in ("status", "cancel") and len(rest) == 1:
            task = self.client.task(rest[0])
            if cmd == "cancel":
                task.cancel()
            w = TaskWidget(task, snapshot_of=self.client.snapshot)
            display(w)
            w.follow()
            return task
        raise UsageError(USAGE)


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magics(VqpuMagics)
    # Our errors anywhere in the notebook (job.result(), Ctrl-C while waiting, a cell's own code) are
    # one line, or the user's own traceback; IPython's own handling stays for everything else.
    ipython.set_custom_exc((VqpuError, CellCodeError), show_error)
