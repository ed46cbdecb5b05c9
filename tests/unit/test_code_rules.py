"""House rules checked on the source itself (ast, no imports of the code under test).

* No test module imports another test module: shared helpers live in support
  modules (tests/agents.py, tests/slurm_support.py, ...), so that running one
  test file never collects, or silently depends on, another one's tests.
* Every log line of the agent package about a task carries the structured task
  fields (``extra=task_fields(...)``), as the JSON log format promises: a query
  for ``task_id="..."`` must find every line about that task.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
AGENT = ROOT / "agent" / "jupyter_vqpu_agent"

LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical"}
LOGGER_NAMES = {"log", "logger"}
# A function with one of these names bound (parameter or local) is handling a task ...
TASK_NAMES = {"job", "task_id", "claim"}
# ... and so is a log call that names one of these (or any ``.task_id``) among its arguments.
TASK_ARGS = TASK_NAMES | {"tid"}


def _is_test_module(module: str) -> bool:
    return module.split(".")[-1].startswith("test_")


def imports_between_test_modules(module_text: str | None = None) -> list[str]:
    """Every ``from tests.x.test_y import ...``/``import tests.x.test_y`` (or a relative one) in a test module."""
    found = []
    files = sorted(TESTS.rglob("test_*.py")) if module_text is None else [None]
    for path in files:
        text = module_text if path is None else path.read_text()
        for node in ast.walk(ast.parse(text)):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level or base.startswith("tests"):
                    names.append(base)
                    names += [f"{base}.{a.name}" for a in node.names]  # from tests.integration import test_kernel
            elif isinstance(node, ast.Import):
                names += [a.name for a in node.names if a.name.startswith("tests")]
            if any(_is_test_module(n) for n in names if n):
                found.append(f"{path.relative_to(ROOT) if path else '<text>'}:{node.lineno}")
    return found


def test_no_test_module_imports_another_test_module():
    found = imports_between_test_modules()
    assert found == [], "move the shared helpers into a support module (tests/agents.py, ...): " + ", ".join(found)


def test_the_import_check_sees_every_form():
    for text in ("from tests.integration.test_agent import Running\n",
                 "from tests.integration import test_kernel\n",
                 "import tests.integration.test_cli\n",
                 "from .test_agent import wait_for\n"):
        assert imports_between_test_modules(text) == ["<text>:1"], text
    assert imports_between_test_modules("from tests.agents import Running\nfrom tests import support\n") == []


def _is_log_call(call: ast.Call) -> bool:
    funcs = [call.func.body, call.func.orelse] if isinstance(call.func, ast.IfExp) else [call.func]
    for f in funcs:
        if isinstance(f, ast.Attribute) and f.attr in LOG_METHODS:
            owner = f.value
            if isinstance(owner, ast.Attribute):  # self.log
                owner = ast.Name(owner.attr)
            if isinstance(owner, ast.Name) and owner.id in LOGGER_NAMES:
                return True
    return False


def _bound_names(func: ast.AST) -> set[str]:
    names = set()
    args = func.args  # type: ignore[attr-defined]
    for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
        names.add(a.arg)
    for node in ast.walk(func):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def _mentions_task(call: ast.Call) -> bool:
    return any((isinstance(n, ast.Attribute) and n.attr == "task_id") or (isinstance(n, ast.Name) and n.id in TASK_ARGS)
               for a in call.args for n in ast.walk(a))


def _has_task_fields(call: ast.Call) -> bool:
    for kw in call.keywords:
        if kw.arg == "extra":
            return any(isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", "")) == "task_fields"
                       for n in ast.walk(kw.value))
    return False


def log_calls_without_task_fields(text: str, where: str = "<text>") -> list[str]:
    """Log calls about a task (a job, claim or task id bound in the function, or a task id
    among the arguments) that pass no ``extra=`` built with task_fields()."""
    missing = []

    def visit(node: ast.AST, scope: set[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, scope | _bound_names(child))
                continue
            if isinstance(child, ast.Call) and _is_log_call(child):
                if (scope & TASK_NAMES or _mentions_task(child)) and not _has_task_fields(child):
                    missing.append(f"{where}:{child.lineno}")
            visit(child, scope)

    visit(ast.parse(text), set())
    return missing


def test_every_agent_log_line_about_a_task_carries_task_fields():
    missing = []
    for path in sorted(AGENT.rglob("*.py")):
        missing += log_calls_without_task_fields(path.read_text(), str(path.relative_to(ROOT)))
    assert missing == [], "pass extra=task_fields(task_id, attempt) on: " + ", ".join(missing)


def test_the_log_check_tells_a_bare_line_from_a_structured_one():
    bare = ("def submit(self, job):\n"
            "    log.info('%s submitted', job.task_id)\n")
    structured = ("def submit(self, job):\n"
                  "    log.info('%s submitted', job.task_id, extra=task_fields(job.task_id, job.attempt))\n")
    mentioned = ("def poll(self, items):\n"
                 "    for t in items:\n"
                 "        (log.info if t else log.warning)('%s', t.job.task_id)\n")
    unrelated = ("def poll(self, ids):\n"
                 "    for tid in ids:\n"
                 "        pass\n"
                 "    log.warning('Slurm poll of %d jobs failed', len(ids))\n")
    local_id = ("def reap(self, ids):\n"
                "    for tid in ids:\n"
                "        log.warning('reaper: %s requeued', tid)\n")
    assert log_calls_without_task_fields(bare) == ["<text>:2"]
    assert log_calls_without_task_fields(structured) == []
    assert log_calls_without_task_fields(mentioned) == ["<text>:3"]
    assert log_calls_without_task_fields(unrelated) == []
    assert log_calls_without_task_fields(local_id) == ["<text>:3"]


def private_imports(text: str, where: str = "<text>") -> list[str]:
    """``from jupyter_vqpu_agent.X import _name``: one module of the agent reaching into another's privates."""
    return [f"{where}:{node.lineno} {a.name}" for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jupyter_vqpu_agent")
            for a in node.names if a.name.startswith("_")]


def test_agent_modules_use_each_others_public_names_only():
    found = []
    for path in sorted(AGENT.rglob("*.py")):
        found += private_imports(path.read_text(), str(path.relative_to(ROOT)))
    assert found == [], "make the name public (or move it) instead: " + ", ".join(found)
    assert private_imports("from jupyter_vqpu_agent.executors.slurm import _one_line, map_state\n") == [
        "<text>:1 _one_line"]
