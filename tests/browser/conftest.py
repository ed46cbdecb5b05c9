"""Fixtures for the real-browser tests: one JupyterLab + agent per module, Debian's chromium.

The module-scoped ``vqpu_lab`` fixture flushes the session's real redis-server, seeds
the devices ``fez`` and ``ideal``, runs an agent (LocalExecutor, the real runner in a
warm worker) in a background thread of the test process, and starts ``jupyter lab`` with
the ``jupyter_vqpu_server`` server extension pointed at that redis and the built ``jupyter-vqpu``
lab extension linked in from its build output (``jupyter_vqpu/labextension``: what
``jlpm build`` and ``pip install .`` write), never an older copy an install left under
``share/jupyter/labextensions``. Kernels of that server get the API URL and token from the server
extension, never VQPU_REDIS_URL.

Missing chromium / playwright / built extension skip locally and fail under ``CI``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.browser.helpers import (
    ARTIFACTS_DIR,
    BUILT_LABEXTENSION,
    CHROMIUM_PATH,
    REPO_ROOT,
    install_labextension,
    launch_chromium,
    open_lab,
    screenshot,
    start_jupyter_lab,
    stop_process,
)
from tests.conftest import need_binary

#: The devices the tests use.
DEVICES = ("fez", "ideal")


def _missing(msg: str) -> None:
    """Skip locally, fail in CI (where .ci/install must have provided it)."""
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of Debian's chromium (never a Playwright-downloaded browser)."""
    if os.path.isabs(CHROMIUM_PATH):
        if not (os.path.isfile(CHROMIUM_PATH) and os.access(CHROMIUM_PATH, os.X_OK)):
            _missing(f"{CHROMIUM_PATH} is not installed (the browser tests drive it); .ci/run installs it")
        return CHROMIUM_PATH
    return need_binary(CHROMIUM_PATH, "the browser tests drive it")


@pytest.fixture(scope="module")
def playwright_api(chromium):
    """A running sync Playwright (the python package; no browser download).

    Module-scoped, and the thread's event loop is reset afterwards: sync Playwright
    keeps its loop "running" in a greenlet while active, which would break every
    later test that asks asyncio for the current loop (pytest-jupyter's fixtures)."""
    import asyncio

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("python playwright is not installed (pip install playwright; no browser download needed)")
    with sync_playwright() as pw:
        yield pw
    asyncio.set_event_loop(asyncio.new_event_loop())


@pytest.fixture(scope="module")
def browser(playwright_api):
    b = launch_chromium(playwright_api)
    yield b
    b.close()


@dataclass
class Lab:
    url: str  # http://127.0.0.1:PORT/
    token: str
    proc: Any
    root: Path  # the notebook root directory
    redis_url: str
    cp: Any  # a ControlPlane on the same redis
    log_path: Path

    @property
    def api(self) -> str:
        return f"{self.url}vqpu/api/"

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


@pytest.fixture(scope="module")
def vqpu_lab(redis_server, tmp_path_factory):
    """JupyterLab with the vQPU server extension and panel, plus a serving agent, for one module."""
    import redis

    from jupyter_vqpu.core.connection import connect
    from jupyter_vqpu.core.control import ControlPlane
    from jupyter_vqpu_agent.executors.local import LocalExecutor
    from tests.agents import Running

    if not (BUILT_LABEXTENSION / "package.json").is_file():
        _missing(
            f"the lab extension is not built ({BUILT_LABEXTENSION} is missing): "
            "cd labextension && jlpm install && jlpm build"
        )

    tmp = tmp_path_factory.mktemp("lab")
    redis_url = redis_server.url
    redis.Redis.from_url(redis_url).flushall()
    cp = ControlPlane(connect(redis_url))
    cp.seed(list(DEVICES))

    env = {
        # kernels import jupyter_vqpu from this checkout
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        # nothing may fall back on (or start) the user's embedded default
        "VQPU_HOME": str(tmp / "vqpu-home"),
    }
    # Always the build output (jupyter_vqpu/labextension, what `jlpm build` writes), never the copy
    # that `pip install` made under sys.prefix/share once: linked into a data dir of the lab's own,
    # which comes first on the labextensions path, so it wins (test_lab_loads_the_built_extension).
    data_dir = tmp / "data"
    install_labextension(data_dir)
    env["JUPYTER_DATA_DIR"] = str(data_dir)

    executor = LocalExecutor(slots=1, log_dir=tmp / "jobs")
    executor.warm_up()  # the worker imports Qiskit while the lab starts
    agent = Running(redis_url, executor, tmp / "agent", devices=DEVICES, agent_id="browser-agent")
    proc = None
    try:
        url, token, proc = start_jupyter_lab(
            tmp,
            env=env,
            # kernels must get the API (URL + token from the server extension), not Redis
            unset_env=("VQPU_REDIS_URL", "VQPU_API_URL", "VQPU_API_TOKEN", "JUPYTERHUB_API_TOKEN"),
            config={
                "ServerApp": {"jpserver_extensions": {"jupyter_vqpu_server": True}},
                "VqpuApp": {"devices_interval": 2},
            },
            extra_args=[
                f"--VqpuApp.redis_url={redis_url}",
                "--LabApp.expose_app_in_browser=True",
                "--LabApp.news_url=",
            ],
            timeout=90,
        )
        lab = Lab(url, token, proc, tmp / "root", redis_url, cp, proc.log_path)
        yield lab
    finally:
        if proc is not None:
            stop_process(proc)
        agent.stop()  # drains and shuts the executor (and its warm worker) down
        if os.environ.get("VQPU_KEEP_LAB_LOG"):  # keep the server log beside the screenshots
            ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
            shutil.copy(tmp / "jupyter-lab.log", ARTIFACTS_DIR / "jupyter-lab.log")


@contextlib.contextmanager
def _page_in_lab(browser, lab: Lab, request, **context_options):
    """A fresh browser context (a new login cookie, i.e. a new anonymous Jupyter user) with Lab open;
    on failure a screenshot, the console and the server log tail."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, **context_options)
    context.set_default_timeout(30_000)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    page.console_messages = console  # type: ignore[attr-defined]
    # a workspace of its own: nothing a previous test left open is restored
    workspace = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)  # parametrized names have [ ] and spaces
    open_lab(page, lab.url, lab.token, path=f"lab/workspaces/{workspace}")
    yield page
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        try:
            screenshot(page, f"failed-{request.node.name}.png")
        except Exception:  # noqa: BLE001 (best effort evidence)
            pass
        print(f"--- browser console ({request.node.name}) ---")
        print("\n".join(console[-60:]))
        print(f"--- jupyter lab log tail ---\n{lab.log_tail()}")
    context.close()


@pytest.fixture
def lab_page(browser, vqpu_lab, request):
    """Lab open in a fresh browser context."""
    with _page_in_lab(browser, vqpu_lab, request) as page:
        yield page


@pytest.fixture
def hidpi_lab_page(browser, vqpu_lab, request):
    """Lab at two device pixels per CSS pixel (glyph stems are solid colour: pixel checks can read
    the text colour), allowed to use the clipboard (the Copy button)."""
    with _page_in_lab(browser, vqpu_lab, request, device_scale_factor=2,
                      permissions=["clipboard-read", "clipboard-write"]) as page:
        yield page


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so fixtures can act on a failed test."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def jp_asyncio_loop():
    """pytest-jupyter's autouse loop fixture, kept away from Playwright's.

    The stock one takes the thread's current loop, which here is sync Playwright's
    (busy in a greenlet), and closes it at teardown. These tests start no in-process
    Jupyter server, so a private loop that is never made current will do."""
    import asyncio

    loop = asyncio.new_event_loop()
    yield loop
    loop.close()
