"""Reusable pieces for the browser tests (no tests in here).

Typical use in a test module::

    from tests.browser.helpers import (
        install_labextension, launch_chromium, open_lab, start_jupyter_lab, stop_process,
    )

    data_dir = tmp_path / "data"
    install_labextension(data_dir)
    url, token, proc = start_jupyter_lab(tmp_path, env={"JUPYTER_DATA_DIR": str(data_dir)})
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_page()
            open_lab(page, url, token)
            ...
            browser.close()
    finally:
        stop_process(proc)

Everything runs on loopback; nothing here downloads anything (the browser is the Debian
``/usr/bin/chromium``, never a Playwright-managed one).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

#: The repository root (tests/browser/helpers.py -> ../..).
REPO_ROOT = Path(__file__).resolve().parents[2]

#: Where ``jlpm build:prod`` in ``labextension/`` writes the prebuilt extension.
BUILT_LABEXTENSION = REPO_ROOT / "jupyter_vqpu" / "labextension"

#: The labextension's package name (the directory name under ``labextensions/``).
LABEXTENSION_NAME = "jupyter-vqpu"

#: Screenshots and other evidence of browser runs (git-ignored).
ARTIFACTS_DIR = Path(os.environ.get("VQPU_ARTIFACTS", REPO_ROOT / ".ci" / "artifacts"))

#: Debian's chromium; Playwright must not download its own.
CHROMIUM_PATH = os.environ.get("VQPU_CHROMIUM", "/usr/bin/chromium")

#: Flags that make headless chromium work as root in a container without a GPU or network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
]

#: JupyterLab user-settings that keep the UI quiet and offline: no news / update toast.
QUIET_LAB_SETTINGS: dict[str, dict[str, Any]] = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def install_labextension(
    data_dir: str | os.PathLike[str],
    source: str | os.PathLike[str] = BUILT_LABEXTENSION,
    *,
    symlink: bool = True,
) -> Path:
    """Make the prebuilt extension visible to a ``jupyter lab`` run with ``JUPYTER_DATA_DIR=data_dir``.

    Links (or copies, with ``symlink=False``) ``source`` -- by default the build output
    ``jupyter_vqpu/labextension`` -- to ``data_dir/labextensions/jupyter-vqpu``, which is
    what ``jupyter labextension develop`` would do. Raises FileNotFoundError with the build
    command when the extension has not been built. Returns the installed path.
    """
    source = Path(source).resolve()
    if not (source / "package.json").is_file():
        raise FileNotFoundError(
            f"{source}/package.json is missing: build the extension first "
            "(cd labextension && jlpm install && jlpm build:prod)"
        )
    target = Path(data_dir) / "labextensions" / LABEXTENSION_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        shutil.rmtree(target)
    if symlink:
        target.symlink_to(source, target_is_directory=True)
    else:
        shutil.copytree(source, target)
    return target


def write_lab_settings(
    settings_dir: str | os.PathLike[str],
    settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Write JupyterLab user settings (``{relative file: json}``) under ``settings_dir``.

    ``settings`` defaults to QUIET_LAB_SETTINGS; keys are paths like
    ``"@jupyterlab/apputils-extension/notification.jupyterlab-settings"``.
    Pass the directory as ``--LabApp.user_settings_dir``. Returns the directory.
    """
    settings_dir = Path(settings_dir)
    for rel, value in (QUIET_LAB_SETTINGS if settings is None else settings).items():
        path = settings_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value, indent=2))
    return settings_dir


def wait_for_http(
    url: str,
    *,
    timeout: float = 60.0,
    proc: subprocess.Popen | None = None,
    interval: float = 0.2,
) -> None:
    """Poll ``url`` until it answers HTTP 200, with a deadline.

    Raises RuntimeError if ``proc`` exits first, TimeoutError after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (loopback)
                if resp.status == 200:
                    return
                last = resp.status
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s (last: {last!r})")


def start_jupyter_lab(
    workdir: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    config: Mapping[str, Any] | None = None,
    extra_args: Iterable[str] = (),
    lab_settings: Mapping[str, Mapping[str, Any]] | None = None,
    token: str | None = None,
    port: int | None = None,
    root_dir: str | os.PathLike[str] | None = None,
    timeout: float = 60.0,
    unset_env: Iterable[str] = (),
) -> tuple[str, str, subprocess.Popen]:
    """Start ``jupyter lab`` on a free loopback port and wait until it answers.

    - ``workdir``: a scratch directory (e.g. pytest's ``tmp_path``); holds the server log
      (``jupyter-lab.log``), a private config dir, user settings and workspaces, and is the
      notebook root unless ``root_dir`` is given.
    - ``env``: extra environment (e.g. ``JUPYTER_DATA_DIR`` pointing at a dir prepared with
      install_labextension, ``PYTHONPATH`` for a mock server extension).
    - ``config``: server config as a JSON-able dict, written to
      ``<workdir>/config/jupyter_server_config.json`` (that dir becomes
      ``JUPYTER_CONFIG_DIR``), e.g. ``{"ServerApp": {"jpserver_extensions": {"x": True}}}``.
    - ``lab_settings``: JupyterLab user settings (default: QUIET_LAB_SETTINGS, i.e. no news).
    - ``extra_args``: further command-line flags.
    - ``unset_env``: variables removed from the server's (and so its kernels') environment,
      e.g. ``VQPU_REDIS_URL``.

    Returns ``(url, token, proc)``: ``url`` is the server base URL with a trailing slash
    (``http://127.0.0.1:PORT/``). Stop it with stop_process(proc). On failure the log tail
    is put into the exception message.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    token = token or secrets.token_hex(16)
    port = port or free_port()
    root = Path(root_dir) if root_dir is not None else workdir / "root"
    root.mkdir(parents=True, exist_ok=True)
    config_dir = workdir / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    if config:
        (config_dir / "jupyter_server_config.json").write_text(json.dumps(config, indent=2))
    settings_dir = write_lab_settings(workdir / "lab-user-settings", lab_settings)
    workspaces_dir = workdir / "lab-workspaces"
    workspaces_dir.mkdir(parents=True, exist_ok=True)

    full_env = dict(os.environ)
    full_env.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    full_env["JUPYTER_CONFIG_DIR"] = str(config_dir)
    full_env.update(env or {})
    for name in unset_env:
        full_env.pop(name, None)
    # the kernel / server must not pick up a browser from the environment
    full_env["BROWSER"] = "true"

    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={settings_dir}",
        f"--LabApp.workspaces_dir={workspaces_dir}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        *extra_args,
    ]
    log_path = workdir / "jupyter-lab.log"
    log = open(log_path, "ab")  # noqa: SIM115 (kept open for the process' lifetime)
    proc = subprocess.Popen(  # noqa: S603
        cmd,
        cwd=str(workdir),
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()  # the child holds its own copy
    proc.log_path = log_path  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_http(f"{url}api/status?token={token}", timeout=timeout, proc=proc)
    except Exception as exc:
        stop_process(proc)
        tail = log_path.read_text(errors="replace")[-4000:] if log_path.exists() else ""
        raise RuntimeError(f"jupyter lab did not start: {exc}\n--- {log_path} ---\n{tail}") from exc
    return url, token, proc


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> int | None:
    """Stop a process started by start_jupyter_lab (by its pid): SIGTERM, then SIGKILL.

    Jupyter asks for confirmation on the first SIGINT, so SIGTERM is used. Kernels the
    server started are its children in the same session and exit with it. Returns the
    exit code (None if it could not be reaped).
    """
    if proc.poll() is not None:
        return proc.returncode
    try:
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
    except ProcessLookupError:
        return proc.poll()


def launch_chromium(playwright: Any, *, headless: bool = True, **kwargs: Any) -> Any:
    """Launch Debian's chromium through a Playwright instance (``sync_playwright()``'s value).

    Uses CHROMIUM_PATH and CHROMIUM_ARGS (extra ``args=[...]`` are appended); never
    downloads a browser. Returns the Playwright ``Browser``; close it when done.
    """
    args = [*CHROMIUM_ARGS, *kwargs.pop("args", [])]
    return playwright.chromium.launch(
        executable_path=CHROMIUM_PATH,
        headless=headless,
        args=args,
        **kwargs,
    )


def open_lab(page: Any, url: str, token: str, *, timeout: float = 60.0, path: str = "lab") -> None:
    """Open JupyterLab (``{url}{path}?token=...``) in ``page`` and wait until the shell is up.

    Waits for ``#jp-main-dock-panel`` (and for the splash screen to go). The token in the URL
    makes jupyter_server set its login cookie, so later API calls and WebSockets from the
    page authenticate without it.
    """
    page.goto(f"{url}{path}?token={token}", timeout=timeout * 1000)
    page.wait_for_selector("#jp-main-dock-panel", state="attached", timeout=timeout * 1000)
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=timeout * 1000)


def open_vqpu_panel(page: Any, *, timeout: float = 30.0) -> Any:
    """Bring the vQPU sidebar panel to the front and return its locator (``#jp-vqpu-panel``).

    Clicks the panel's tab in the left sidebar unless the panel is already visible.
    """
    panel = page.locator("#jp-vqpu-panel")
    panel.wait_for(state="attached", timeout=timeout * 1000)
    if not panel.is_visible():
        page.locator('.jp-SideBar.jp-mod-left [data-id="jp-vqpu-panel"]').click()
        panel.wait_for(state="visible", timeout=timeout * 1000)
    return panel


def labextension_listed(name: str = LABEXTENSION_NAME, env: Mapping[str, str] | None = None) -> bool:
    """Whether ``jupyter labextension list`` (run with this Python) shows ``name``.

    True for a pip-installed package (the extension lands in
    ``sys.prefix/share/jupyter/labextensions``); usually False in a source checkout, where
    install_labextension is the way to make it visible.
    """
    out = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "jupyter", "labextension", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )
    text = out.stdout + out.stderr
    return any(line.split()[:1] == [name] for line in text.splitlines())


def lab_command(
    page: Any, command: str, args: Mapping[str, Any] | None = None, *, wait: bool = True, timeout: float = 60.0,
) -> None:
    """Run a JupyterLab command in ``page`` (needs ``--LabApp.expose_app_in_browser=True``).

    ``page.evaluate`` has no timeout of its own and would serialise whatever the command returns (a
    whole widget tree for ``docmanager:open``), so the page hands back nothing and races the command
    against ``timeout``: a command that never settles fails the test instead of hanging the run.
    ``wait=False`` starts the command and returns at once, for commands whose promise lasts as long
    as their work (``notebook:run-all-cells`` settles only when every cell has run)."""
    outcome = page.evaluate(
        """([id, args, wait, ms]) => {
            const run = Promise.resolve(window.jupyterapp.commands.execute(id, args)).then(() => "done");
            if (!wait) { run.catch(e => console.error(`${id}: ${e}`)); return "started"; }
            const late = new Promise(ok => setTimeout(() => ok("timeout"), ms));
            return Promise.race([run, late]);
        }""",
        [command, dict(args or {}), wait, int(timeout * 1000)],
    )
    if outcome == "timeout":
        raise TimeoutError(f"JupyterLab command {command!r} did not finish within {timeout:.0f} s")


def wait_for_notebook_kernel(page: Any, path: str, *, timeout: float = 120.0) -> None:
    """Wait until the notebook open at ``path`` has its own kernel, connected and idle.

    Lab's toolbar indicator reads "idle" before the session has a kernel at all, and a cell run
    while the session has none makes Lab start a second kernel and shut the first down as it boots
    (``hasNoKernel`` -> ``startKernel`` -> PATCH of the session): the cells queued meanwhile are
    cleared and never run. So this polls the notebook's session context itself."""
    page.wait_for_function(
        """(path) => {
            const app = window.jupyterapp;
            const panel = Array.from(app.shell.widgets("main")).find(w => w.context && w.context.path === path);
            const context = panel && panel.sessionContext;
            const kernel = context && context.session && context.session.kernel;
            return !!kernel && context.isReady && !context.hasNoKernel
                && kernel.connectionStatus === "connected" && kernel.status === "idle";
        }""",
        arg=path,
        timeout=timeout * 1000,
        polling=250,
    )


def screenshot(page: Any, name: str, *, locator: Any = None, full_page: bool = False) -> Path:
    """Save a PNG of ``page`` (or of ``locator``) as ARTIFACTS_DIR/name; returns the path."""
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS_DIR / name
    if locator is not None:
        locator.screenshot(path=str(path))
    else:
        page.screenshot(path=str(path), full_page=full_page)
    return path


def hex_colour(rgb: Iterable[int]) -> str:
    """``(r, g, b)`` as ``#rrggbb``."""
    r, g, b = list(rgb)[:3]
    return f"#{r:02x}{g:02x}{b:02x}"


def badge_colours(png: bytes, inset_x: int, inset_y: int) -> tuple[str, str, float]:
    """The background and text colours of a badge, read from a screenshot of it, and their contrast.

    The background is the commonest colour inside the badge (``inset_*`` pixels in from each edge
    leave out its border and rounded corners); the text colour is the pixel farthest from it in
    contrast (at 2x device pixels, glyph stems are solid text colour, not only anti-aliased edges).
    Returns ``(background, text, WCAG contrast ratio)``."""
    import io
    from collections import Counter

    from PIL import Image

    from jupyter_vqpu.kernel.palette import contrast_ratio

    image = Image.open(io.BytesIO(png)).convert("RGB")
    w, h = image.size
    inner = image.crop((inset_x, inset_y, max(inset_x + 1, w - inset_x), max(inset_y + 1, h - inset_y)))
    pixels = list(inner.getdata())
    background = hex_colour(Counter(pixels).most_common(1)[0][0])
    text = max({hex_colour(p) for p in pixels}, key=lambda c: contrast_ratio(c, background))
    return background, text, contrast_ratio(background, text)


def colour_distance(a: str, b: str) -> int:
    """The largest per-channel difference of two ``#rrggbb`` colours."""
    return max(abs(int(a[i:i + 2], 16) - int(b[i:i + 2], 16)) for i in (1, 3, 5))
