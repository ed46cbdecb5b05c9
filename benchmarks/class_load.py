"""Benchmark: a class of students submitting at once through the hub gateway's HTTP API.

N students (300) x K tasks (10) each, submitted concurrently over HTTP to a real
``vqpu gateway`` process (with a real Redis), with the per-user caps of
``docs/hub/vqpu_gateway_config.py`` on (physics101: 5 queued per device, 30
submissions a minute). No agent runs, so every student's queue fills: each gets
exactly 5 tasks accepted and the rest rejected by the queue cap, a known answer.

Hub authentication is FAKED in-process: a small tornado app plays the hub's
REST API (``/hub/api/user`` answering each student's token with their model,
groups and scopes; ``/hub/api/groups/...``). The gateway's own code path is the
real one (JupyterHub's HubOAuth asking that API, then caching per token, as
against a real hub); a real hub adds its own per-token lookup the first time.

Then it checks that nothing leaks across users: every student's task list holds
only their own tasks, every student is refused (403) another's task, and a
long-poll shows only the caller's events.

    python benchmarks/class_load.py [--students 300] [--tasks 10] [--threads 48] [--quick] [--smoke] [--json]
"""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

GATEWAY_CONFIG = C.REPO / "docs" / "hub" / "vqpu_gateway_config.py"
COURSE = "physics101"


class FakeHub:
    """The hub's REST API as the gateway uses it, for known tokens (a thread with its own event loop)."""

    def __init__(self, users: dict[str, str], service_token: str) -> None:
        self.users = users  # token -> name
        self.service_token = service_token
        self.port = _free_port()
        self.calls = 0
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)

    def _run(self) -> None:
        import asyncio

        from tornado import web

        hub = self

        class User(web.RequestHandler):
            def get(self) -> None:
                hub.calls += 1
                token = self.request.headers.get("Authorization", "").partition(" ")[2]
                name = hub.users.get(token)
                if name is None:
                    raise web.HTTPError(403)
                self.finish({"kind": "user", "name": name, "admin": False, "groups": [COURSE],
                             "scopes": ["custom:vqpu:submit", "access:services!service=vqpu",
                                        f"read:users:name!user={name}"], "session_id": None, "token_id": "t"})

        class Group(web.RequestHandler):
            def get(self, name: str) -> None:
                if self.request.headers.get("Authorization") != f"token {hub.service_token}":
                    raise web.HTTPError(403)
                self.finish({"name": name, "users": sorted(hub.users.values())})

        async def main() -> None:
            web.Application([(r"/hub/api/user", User), (r"/hub/api/groups/([^/]+)", Group)]).listen(
                self.port, "127.0.0.1")
            self._ready.set()
            await asyncio.Event().wait()

        asyncio.run(main())


def _free_port() -> int:
    from tests.support import free_port

    return free_port()


def start_gateway(bench: C.Bench, hub: FakeHub, service_token: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VQPU_", "JUPYTERHUB_"))}
    env.update(
        PYTHONPATH=str(C.REPO), VQPU_REDIS_URL=bench.url,
        JUPYTERHUB_API_TOKEN=service_token, JUPYTERHUB_API_URL=f"http://127.0.0.1:{hub.port}/hub/api",
        JUPYTERHUB_BASE_URL="/", JUPYTERHUB_CLIENT_ID="service-vqpu", JUPYTERHUB_SERVICE_NAME="vqpu",
        JUPYTERHUB_SERVICE_PREFIX="/services/vqpu/", JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{port}",
        JUPYTERHUB_OAUTH_CALLBACK_URL="/services/vqpu/oauth_callback",
        JUPYTERHUB_OAUTH_ACCESS_SCOPES=json.dumps(["access:services!service=vqpu"]),
        JUPYTERHUB_OAUTH_SCOPES=json.dumps(["access:services!service=vqpu"]),
    )
    log = open(bench.tmp / "gateway.log", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen([sys.executable, "-m", "jupyter_vqpu.cli", "gateway", "--config", str(GATEWAY_CONFIG),
                             "--VqpuGateway.worker_threads=32"], env=env, stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}/services/vqpu/api/"
    from jupyter_vqpu.core.errors import ControlPlaneUnavailable
    from jupyter_vqpu.kernel.http import ApiError, HttpTransport

    deadline = time.monotonic() + 30
    while True:
        try:
            HttpTransport(api).request("GET", "devices")
        except ApiError:
            return proc, api  # 401: it answers
        except ControlPlaneUnavailable:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start: "
                                   + (bench.tmp / "gateway.log").read_text()[-2000:]) from None
            time.sleep(0.05)


def main() -> None:
    p = C.parser(__doc__, "class_load")
    p.add_argument("--students", type=int, default=300)
    p.add_argument("--tasks", type=int, default=10)
    p.add_argument("--threads", type=int, default=48)
    args = p.parse_args()
    if args.smoke:
        args.students, args.tasks, args.threads = 12, 8, 8
    elif args.quick:
        args.students, args.tasks = 60, 10

    from jupyter_vqpu.kernel.http import ApiError, HttpTransport

    tokens = {f"s{i:03d}": secrets.token_hex(8) for i in range(args.students)}
    by_token = {t: n for n, t in tokens.items()}
    service_token = secrets.token_hex(16)
    with C.Bench("class-load") as bench:
        bench.control(seed=["fez", "ideal"])
        hub = FakeHub(by_token, service_token)
        gateway, api = start_gateway(bench, hub, service_token)
        try:
            latencies: list[float] = []
            outcomes: dict[str, int] = {}
            accepted: dict[str, list[str]] = {n: [] for n in tokens}
            lock = threading.Lock()

            def student(name: str) -> None:
                t = HttpTransport(api, tokens[name], timeout=60)
                for k in range(args.tasks):
                    body = {"device": "fez", "circuit": C.BELL, "shots": 100, "seed": k}
                    t0 = time.perf_counter()
                    try:
                        view = t.request("POST", "tasks", body)
                        kind = "accepted"
                    except ApiError as exc:
                        view, kind = None, exc.code
                    dt = time.perf_counter() - t0
                    with lock:
                        latencies.append(dt)
                        outcomes[kind] = outcomes.get(kind, 0) + 1
                        if view:
                            accepted[name].append(view["task_id"])
                            assert view["owner"] == name

            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.threads) as pool:
                list(pool.map(student, list(tokens)))
            wall = time.perf_counter() - t0

            # no cross-user leakage
            leaks = 0
            names = list(tokens)
            rng = random.Random(1)

            def check(name: str) -> int:
                t = HttpTransport(api, tokens[name], timeout=60)
                bad = 0
                listed = t.request("GET", "tasks")
                bad += sum(1 for v in listed if v["owner"] != name)
                bad += len({v["task_id"] for v in listed} ^ set(accepted[name]))
                other = rng.choice([n for n in names if n != name and accepted[n]] or [name])
                if other != name:
                    try:
                        t.request("GET", f"tasks/{accepted[other][0]}")
                        bad += 1
                    except ApiError as exc:
                        bad += exc.http_status != 403
                events = t.request("GET", "events/poll?cursor=&timeout=0")
                bad += sum(1 for e in events["events"] if e.get("task") and e["task"] not in accepted[name])
                return bad

            with ThreadPoolExecutor(args.threads) as pool:
                leaks = sum(pool.map(check, names))
        finally:
            gateway.terminate()
            gateway.wait(30)

    pc = C.pcts([x * 1000 for x in latencies], (50, 99))
    per_student_cap = 5  # physics101's max_queued_per_owner in docs/hub/vqpu_gateway_config.py
    expected_accepted = args.students * min(args.tasks, per_student_cap)
    print(f"class load: {args.students} students x {args.tasks} tasks over {args.threads} connections "
          f"in {wall:.2f} s ({len(latencies) / wall:.0f} submissions/s)")
    print(f"submit latency p50 {pc['p50']:.1f} ms, p99 {pc['p99']:.1f} ms")
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    print(f"accepted {outcomes.get('accepted', 0)} (expected {expected_accepted}: {per_student_cap} queued per "
          f"student), rejected by quota {outcomes.get('limit_exceeded', 0)}")
    print(f"cross-user leaks found: {leaks}; fake-hub lookups: {hub.calls} (one per token, then cached)")
    ok = leaks == 0 and outcomes.get("accepted", 0) == expected_accepted
    plt = C.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist([x * 1000 for x in latencies], bins=50, color="#4c72b0")
    ax.axvline(pc["p50"], color="k", linestyle="--", label=f"p50 {pc['p50']:.1f} ms")
    ax.axvline(pc["p99"], color="r", linestyle="--", label=f"p99 {pc['p99']:.1f} ms")
    ax.set_xlabel("submit latency through the gateway (ms)")
    ax.set_ylabel("submissions")
    ax.set_title(f"{args.students} students x {args.tasks} tasks, per-user caps on")
    ax.legend()
    C.save(fig, args.plot)
    if args.json:
        C.emit_json({"students": args.students, "tasks_per_student": args.tasks, "submit_p50_ms": pc["p50"],
                     "submit_p99_ms": pc["p99"], "submissions_per_s": len(latencies) / wall,
                     "accepted": outcomes.get("accepted", 0), "rejected_by_quota": outcomes.get("limit_exceeded", 0),
                     "other_errors": sum(v for k, v in outcomes.items() if k not in ("accepted", "limit_exceeded")),
                     "leaks": leaks, "ok": ok})
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
