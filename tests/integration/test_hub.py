"""The control plane as a JupyterHub service, against a real hub, real servers, kernels, Redis and an agent.

One hub for the module (about 5 s to start): configurable-http-proxy from npm
(``.ci/install`` puts it in ``.ci/node``), SimpleLocalProcessSpawner,
DummyAuthenticator, and the documented ``docs/hub/jupyterhub_config.py``.
Users: ada and bob (students of physics101), prof (its instructor), admin
(vQPU admin), eve (a hub user with no vQPU role). The Redis has a password; an
agent serves ``ideal`` (``fez`` is left unserved so that its queue holds).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from tornado import web

from tests.conftest import BELL_QASM2, GHZ3, REPO, need_binary
from tests.integration.hub_support import CHP_BIN, Hub
from tests.support import RedisServer

pytestmark = [pytest.mark.hub, pytest.mark.redis, pytest.mark.slow]

REDIS_PASSWORD = "vqpu-test-redis-password-7c1e"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    from jupyter_vqpu.core.connection import connect
    from jupyter_vqpu.core.control import ControlPlane
    from jupyter_vqpu_agent.executors.local import LocalExecutor
    from tests.agents import Running

    need_binary("redis-server", "the control plane's store")
    os.environ["PATH"] = f"{CHP_BIN}:{os.environ.get('PATH', '')}"
    need_binary("configurable-http-proxy", "JupyterHub's proxy; .ci/install runs npm install into .ci/node")
    need_binary("node", "configurable-http-proxy runs on node")
    tmp = tmp_path_factory.mktemp("hub")
    redis = RedisServer(tmp / "redis", password=REDIS_PASSWORD).start()
    cp = ControlPlane(connect(redis.url))
    cp.seed(["fez", "ideal"])
    agent = Running(redis.url, LocalExecutor(slots=2, log_dir=tmp), tmp / "work", devices=("ideal",), capacity=2)
    h = Hub(tmp / "state", redis.url)
    try:
        h.start()
        h.cp = cp  # type: ignore[attr-defined]
        yield h
    finally:
        h.stop()
        agent.stop()
        redis.stop()


def submit(hub: Hub, user: str, **body) -> dict:
    payload = {"device": "ideal", "circuit": GHZ3, "shots": 10, **body}
    r = hub.api(user, "POST", "tasks", json=payload)
    assert r.status_code == 201, (r.status_code, r.text)
    return r.json()


def wait_state(hub: Hub, user: str, task_id: str, states: tuple[str, ...], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        view = hub.api(user, "GET", f"tasks/{task_id}").json()
        if view["state"] in states:
            return view
        assert time.monotonic() < deadline, f"{task_id} stuck in {view['state']}"
        time.sleep(0.1)


# ------------------------------------------------------------ students' own kernels


def test_each_student_submits_through_their_own_kernel_without_redis_credentials(hub):
    for user in ("ada", "bob"):
        hub.start_server(user)
    for user in ("ada", "bob"):
        out = hub.run_in_kernel(user, [
            # the kernel's and its server's (the parent process) environment
            "import os, json\n"
            "mine = json.dumps(dict(os.environ))\n"
            "server = open(f'/proc/{os.getppid()}/environ', 'rb').read().decode(errors='replace')\n"
            f"print('LEAK', any({REDIS_PASSWORD!r} in t or 'redis://' in t for t in (mine, server)),"
            " sorted(k for k in os.environ if 'REDIS' in k), 'VQPU_API_URL' in os.environ)",
            "%load_ext jupyter_vqpu",
            "%%vqpu ideal shots=200 seed=5 --wait -o t\n" + BELL_QASM2,
            "print('RESULT', t.view['owner'], sorted(t.counts.items()))",
        ])
        assert out[0].strip() == "LEAK False [] True", out
        assert "Error" not in "".join(out[1:3]), out
        line = next(x for x in out[3].splitlines() if x.startswith("RESULT"))
        owner, counts = line.split(" ", 2)[1:]
        counts = dict(eval(counts))  # our own printed list of pairs
        assert owner == user and sum(counts.values()) == 200 and set(counts) <= {"00", "11"}, line


def test_students_terminal_cli_speaks_http_with_the_hub_token(hub, tmp_path):
    circuit = tmp_path / "bell.qasm"
    circuit.write_text(BELL_QASM2)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VQPU_", "JUPYTERHUB_"))}
    env.update(VQPU_API_URL=f"{hub.gateway_url}/services/vqpu/api/", JUPYTERHUB_API_TOKEN=hub.tokens["bob"],
               PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-m", "jupyter_vqpu.cli", "run", str(circuit), "--device", "ideal",
                          "--shots", "64", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert record["owner"] == "bob" and sum(record["counts"].values()) == 64
    listed = subprocess.run([sys.executable, "-m", "jupyter_vqpu.cli", "tasks", "--json"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    tasks = json.loads(listed.stdout)
    assert record["task_id"] in {t["task_id"] for t in tasks} and {t["owner"] for t in tasks} == {"bob"}
    # an operator command that needs rights bob lacks: one readable line, exit 1
    drain = subprocess.run([sys.executable, "-m", "jupyter_vqpu.cli", "device", "drain", "ideal"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert drain.returncode == 1 and drain.stderr.startswith("vqpu: error: bob may not drain"), drain.stderr


def test_the_lab_panel_path_on_the_users_server_is_forwarded_to_the_gateway(hub):
    hub.start_server("ada")
    base = f"{hub.url}/user/ada/vqpu/api/"
    r = hub.api("ada", "POST", "tasks", base=base, json={"device": "ideal", "circuit": GHZ3, "shots": 5})
    assert r.status_code == 201, r.text
    assert r.json()["owner"] == "ada" and r.headers["Location"].startswith("/user/ada/vqpu/api/tasks/")
    listed = hub.api("ada", "GET", "tasks", base=base).json()
    assert r.json()["task_id"] in {t["task_id"] for t in listed} and {t["owner"] for t in listed} == {"ada"}
    bad = hub.api("ada", "POST", "tasks", base=base, json={"device": "ideal", "circuit": GHZ3, "owner": "bob"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"

    async def first_message() -> dict:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        ws = await websocket_connect(HTTPRequest(f"ws://127.0.0.1:{hub.proxy_port}/user/ada/vqpu/api/events",
                                                 headers={"Authorization": f"token {hub.tokens['ada']}"}))
        try:
            return json.loads(await asyncio.wait_for(ws.read_message(), 20))
        finally:
            ws.close()

    msg = asyncio.run(first_message())
    assert msg["type"] == "devices" and {d["name"] for d in msg["devices"]} == {"fez", "ideal"}


# ------------------------------------------------------------ isolation


def test_users_cannot_touch_each_others_tasks_but_the_instructor_can(hub):
    tid = submit(hub, "ada", device="fez")["task_id"]  # fez: unserved, so it stays queued
    for method in ("GET", "DELETE"):
        r = hub.api("bob", method, f"tasks/{tid}")
        assert r.status_code == 403 and "another user" in r.json()["message"], r.text
    assert hub.api("bob", "GET", "tasks", params={"owner": "ada"}).status_code == 403
    assert hub.api("bob", "GET", "tasks", params={"group": "physics101"}).status_code == 403
    assert tid not in {t["task_id"] for t in hub.api("bob", "GET", "tasks").json()}
    assert hub.api("ada", "GET", f"tasks/{tid}").json()["state"] == "queued"

    course = hub.api("prof", "GET", "tasks", params={"group": "physics101"}).json()
    assert tid in {t["task_id"] for t in course} and {t["owner"] for t in course} <= {"ada", "bob"}
    assert hub.api("prof", "GET", f"tasks/{tid}").json()["owner"] == "ada"
    cancelled = hub.api("prof", "DELETE", f"tasks/{tid}").json()
    assert cancelled["state"] == "cancelled" and cancelled["cancel"]["cancelled"] is True
    by = [e.get("by") for e in hub.api("ada", "GET", f"tasks/{tid}").json()["history"] if e["event"] == "cancelled"]
    assert by == ["prof"]
    # the instructor oversees the course, not the admin (who is in no course group)
    admin_task = submit(hub, "admin")["task_id"]
    assert hub.api("prof", "GET", f"tasks/{admin_task}").status_code == 403


def test_quotas_follow_the_callers_hub_groups(hub):
    # physics101 (docs/hub/vqpu_gateway_config.py): 20000 shots, 5 queued per device
    r = hub.api("ada", "POST", "tasks", json={"device": "ideal", "circuit": GHZ3, "shots": 20_001})
    assert r.status_code == 400 and r.json()["error"] == "limit_exceeded" and "20000" in r.json()["message"]
    # admin is in no listed group: the defaults (4096 shots)
    r = hub.api("admin", "POST", "tasks", json={"device": "ideal", "circuit": GHZ3, "shots": 5000})
    assert r.status_code == 400 and "4096" in r.json()["message"], r.text
    for t in hub.api("ada", "GET", "tasks").json():  # a clean queue on fez for ada
        if t["state"] == "queued":
            hub.api("ada", "DELETE", f"tasks/{t['task_id']}")
    for _ in range(5):
        submit(hub, "ada", device="fez")
    r = hub.api("ada", "POST", "tasks", json={"device": "fez", "circuit": GHZ3, "shots": 10})
    assert r.status_code == 400 and r.json()["error"] == "limit_exceeded", r.text
    assert "5 tasks queued on fez" in r.json()["message"] and r.json()["hint"]
    assert hub.api("bob", "POST", "tasks", json={"device": "fez", "circuit": GHZ3, "shots": 10}).status_code == 201
    # the operator sees the course's queue by group (the gateway learns callers' hub groups)
    metrics = hub.api("admin", "GET", "metrics", base=f"{hub.url}/services/vqpu/")
    assert metrics.status_code == 200, metrics.text
    assert 'vqpu_queue_depth_by_group{device="fez",group="physics101"} 6.0' in metrics.text, metrics.text[-2000:]
    for t in hub.api("ada", "GET", "tasks").json() + hub.api("bob", "GET", "tasks").json():
        if t["state"] == "queued":
            assert hub.api(t["owner"], "DELETE", f"tasks/{t['task_id']}").status_code == 200


# ------------------------------------------------------------ authorization matrix

USERS = ("owner", "other", "instructor", "admin")
AS_USER = {"owner": "ada", "other": "bob", "instructor": "prof", "admin": "admin", "outsider": "eve",
           "cookie_xsrf": "ada", "cookie_no_xsrf": "ada"}
SUBJECTS = (*USERS, "outsider", "agent", "no_token", "cookie_no_xsrf", "cookie_xsrf")


def row(owner, other, instructor, admin, outsider, agent, no_token, cookie_no_xsrf, cookie_xsrf) -> dict:
    return dict(zip(SUBJECTS, (owner, other, instructor, admin, outsider, agent, no_token, cookie_no_xsrf,
                               cookie_xsrf)))


def everyone_in(status: int, *, outsider: int = 403, cookie_xsrf: int | None = None) -> dict:
    return row(status, status, status, status, outsider, 401, 401, 401, status if cookie_xsrf is None else cookie_xsrf)


def admin_only(ok: int) -> dict:
    return row(403, 403, 403, ok, 403, 401, 401, 401, 403)


def task_row(ok: int) -> dict:
    return row(ok, 403, ok, ok, 403, 401, 401, 401, ok)


# (route pattern relative to /services/vqpu/, method) -> expected status per subject.
# "agent" holds only Redis credentials (it presents the Redis password as a token);
# "cookie_no_xsrf" is ada's OAuth cookie sent as a cross-site page would (fetch mode cors, foreign Origin, no token).
MATRIX: dict[tuple[str, str], dict[str, int]] = {
    ("oauth_callback", "GET"): {s: 400 for s in SUBJECTS},  # no OAuth code: refused before any identity matters
    ("?", "GET"): row(200, 200, 200, 200, 403, 302, 302, 302, 200),  # the home page: a login redirect without one
    ("api/devices", "GET"): everyone_in(200),
    ("api/health", "GET"): everyone_in(200),
    ("api/devices/(?P<device>[^/]+)/snapshot", "GET"): everyone_in(200),
    ("api/devices/(?P<device>[^/]+)/snapshot/(?P<snapshot_id>[^/]+)", "GET"): everyone_in(200),
    ("api/devices/(?P<device>[^/]+)/snapshots", "POST"): admin_only(201),
    ("api/devices/(?P<device>[^/]+)/(?P<action>drain|resume)", "POST"): admin_only(200),
    ("api/tasks", "GET"): everyone_in(200),
    ("api/tasks", "POST"): everyone_in(201),
    ("api/tasks/(?P<task_id>[^/]+)", "GET"): task_row(200),
    ("api/tasks/(?P<task_id>[^/]+)", "DELETE"): task_row(200),
    ("api/tasks/(?P<task_id>[^/]+)/circuit", "GET"): task_row(200),
    ("api/events", "GET"): row(101, 101, 101, 101, 403, 401, 401, 403, 101),  # a foreign Origin: refused
    ("api/events/poll", "GET"): everyone_in(200),
    ("metrics", "GET"): row(403, 403, 403, 200, 403, 401, 401, 401, 403),
}


def _methods(handler: type) -> set[str]:
    out = set()
    for m in ("get", "post", "put", "patch", "delete"):
        impl = getattr(handler, m, None)
        if impl is not None and impl is not getattr(web.RequestHandler, m):
            out.add(m.upper())
    return out


def test_the_matrix_covers_every_route_the_gateway_serves():
    from jupyter_vqpu_server.gateway import gateway_routes

    served = {(pattern.removeprefix("/services/vqpu/"), method)
              for pattern, handler in gateway_routes("/services/vqpu/") for method in _methods(handler)}
    missing = served - set(MATRIX)
    assert not missing, f"routes without a row in the authorization matrix: {sorted(missing)}"
    assert not set(MATRIX) - served, f"matrix rows for routes that no longer exist: {sorted(set(MATRIX) - served)}"
    assert all(set(expected) == set(SUBJECTS) for expected in MATRIX.values())


def _fill(pattern: str, values: dict[str, str]) -> str:
    import re

    return re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: values[m.group(1)], pattern).replace("?", "")


def test_authorization_matrix(hub):
    import re

    from qiskit_ibm_runtime.fake_provider import FakeFez

    props_path = Path(FakeFez().props_filename) if hasattr(FakeFez(), "props_filename") else None
    if props_path is None or not props_path.exists():
        import qiskit_ibm_runtime.fake_provider as fp

        props_path = Path(fp.__file__).parent / "backends" / "fez" / "props_fez.json"
    props = json.loads(props_path.read_text())
    sessions = {"cookie_xsrf": hub.browser("ada")}
    sessions["cookie_no_xsrf"] = sessions["cookie_xsrf"]
    xsrf = sessions["cookie_xsrf"].vqpu_home["xsrf_token"]
    assert sessions["cookie_xsrf"].vqpu_home["name"] == "ada"
    task = submit(hub, "ada", device="fez")["task_id"]
    sid = hub.api("ada", "GET", "devices").json()[0]["snapshot_id"]
    failures = []

    def request(subject: str, method: str, path: str, body: dict | None) -> int:
        url = f"{hub.url}/services/vqpu/{path}"
        headers: dict[str, str] = {}
        session = sessions.get(subject)
        if subject in AS_USER and session is None:
            headers["Authorization"] = f"token {hub.tokens[AS_USER[subject]]}"
        elif subject == "agent":
            headers["Authorization"] = f"token {REDIS_PASSWORD}"
        if subject == "cookie_no_xsrf":
            headers.update({"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"})
        elif subject == "cookie_xsrf":
            headers.update({"X-XSRFToken": xsrf, "Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin"})
        if path == "api/events":
            return _ws_status(hub, path, headers, session)
        caller = session or requests
        r = caller.request(method, url, headers=headers, json=body, timeout=60, allow_redirects=False)
        return r.status_code

    for (pattern, method), expected in MATRIX.items():
        paths = [_fill(pattern, {"device": "fez", "snapshot_id": sid, "task_id": task, "action": a})
                 for a in (("drain", "resume") if "action" in pattern else ("drain",))]
        body = None
        if method == "POST":
            body = {"properties": props} if pattern.endswith("snapshots") else \
                {"device": "ideal", "circuit": GHZ3, "shots": 5} if pattern == "api/tasks" else {}
        for path in paths:
            if path.startswith("api/events/poll"):
                path += "?timeout=0"
            for subject in SUBJECTS:
                got = request(subject, method, path, body)
                if got != expected[subject]:
                    failures.append(f"{method} {path} as {subject}: {got}, expected {expected[subject]}")
    hub.api("admin", "POST", "devices/fez/resume", json={})
    assert not failures, "\n".join(failures) + "\n" + hub.log_tail(30)
    assert re.fullmatch(r"[0-9a-f]{64}", sid)
    # the admin's publication is the device's new snapshot; the drain was undone by the resume rows
    fez = next(d for d in hub.api("admin", "GET", "devices").json() if d["name"] == "fez")
    assert fez["snapshot_id"] != sid and fez["status"] != "draining"


def _ws_status(hub: Hub, path: str, headers: dict, session: requests.Session | None) -> int:
    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect

    headers = {k: v for k, v in headers.items() if not k.startswith(("Sec-Fetch", "X-XSRF"))}
    if session is not None:
        headers["Cookie"] = "; ".join(f"{c.name}={c.value}" for c in session.cookies)

    async def attempt() -> int:
        try:
            ws = await websocket_connect(HTTPRequest(f"ws://127.0.0.1:{hub.proxy_port}/services/vqpu/{path}",
                                                     headers=headers, request_timeout=30))
        except HTTPClientError as exc:
            return exc.code
        try:
            msg = json.loads(await asyncio.wait_for(ws.read_message(), 20))
            assert msg["type"] == "devices"
        finally:
            ws.close()
        return 101

    return asyncio.run(attempt())


def test_docs_quote_the_configuration_the_hub_test_runs():
    """docs/hub.md shows docs/hub/jupyterhub_config.py verbatim, so the documented config is the tested one."""
    doc = (REPO / "docs" / "hub.md").read_text()
    config = (REPO / "docs" / "hub" / "jupyterhub_config.py").read_text()
    assert config.strip() in doc
