"""The ``vqpu`` command line.

Every subcommand that needs the control plane finds it by one rule
(``jupyter_vqpu.kernel.transport``): ``--redis-url``, ``--api-url``, then
``VQPU_REDIS_URL``, then ``VQPU_API_URL``, else the embedded default (started
when needed). A student's terminal on a JupyterHub has no Redis credentials:
there the user's commands (run, wait, tasks, status, cancel, devices, and
device drain/resume/update for vQPU admins) speak the hub gateway's HTTP API
with the user's own hub token (``JUPYTERHUB_API_TOKEN``). Operator commands
(agent, recover, acl, device seed, metrics) always talk to Redis.
Errors are one line plus what to do, with a non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from jupyter_vqpu.core.errors import VqpuError
from jupyter_vqpu.core.lifecycle import TaskState
from jupyter_vqpu.core.timefmt import age_of, human_age

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a tool killed by the signal reports


def _cp(args: argparse.Namespace):
    from jupyter_vqpu.core.connection import connect
    from jupyter_vqpu.core.control import ControlPlane

    return ControlPlane(connect(args.redis_url))


def _api(args: argparse.Namespace):
    """The HTTP API client when this command should use one (the rule of
    ``jupyter_vqpu.kernel.transport``), else None."""
    from jupyter_vqpu.kernel.transport import api_client

    return api_client(getattr(args, "redis_url", None), getattr(args, "api_url", None))


def _client(args: argparse.Namespace):
    from jupyter_vqpu.kernel.transport import resolve_client

    return resolve_client(getattr(args, "redis_url", None), getattr(args, "api_url", None))


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=None, sort_keys=True, default=str))


def _when(ts: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else "-"


def _device_arg(text: str) -> str:
    """A device name as typed (``Fez``) -> the registered form (``fez``); argparse's ``type=``."""
    from jupyter_vqpu.core.keys import device_name

    try:
        return device_name(text)
    except VqpuError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _task_ref(args: argparse.Namespace, client=None) -> str:
    """The whole id of the task ``args.task_id`` names (a unique prefix of one of yours is enough)."""
    client = client or _client(args)
    return client.task(args.task_id).id


def _histogram(counts: dict[str, int], shots: int, top: int = 16) -> list[str]:
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    width = max(len(k) for k in counts) if counts else 1
    peak = items[0][1] if items else 1
    lines = [f"  {k:>{width}}  {v:>7}  {v / shots:6.2%}  {'#' * max(1, round(30 * v / peak))}" for k, v in items[:top]]
    if len(items) > top:
        rest = sum(v for _, v in items[top:])
        lines.append(f"  {'...':>{width}}  {rest:>7}  {rest / shots:6.2%}  ({len(items) - top} more outcomes)")
    return lines


def _record_json(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("task_id", "state", "device", "snapshot_id", "shots", "seed", "counts", "layout", "final_layout",
            "physical_qubits", "qubit_errors", "estimated_fidelity", "num_circuits", "experiments", "attempts",
            "timings", "phases", "simulator", "owner", "name", "reason", "error", "job_id", "created_at", "finished_at")
    return {k: record.get(k) for k in keys}


def _show_record(record: dict[str, Any]) -> None:
    sid = (record.get("snapshot_id") or "")[:12] or "-"
    line = f"task {record['task_id']} {record['state']} on {record['device']} (snapshot {sid}, attempt {record['attempts']})"
    if record.get("created_at") and record.get("finished_at"):
        line += f" in {record['finished_at'] - record['created_at']:.2f} s"
    print(line)
    if record.get("state") == TaskState.FAILED:
        print(f"  error ({record.get('reason')}): {record.get('error')}")
    if record.get("counts"):
        print(f"counts ({record['shots']} shots):")
        print("\n".join(_histogram(record["counts"], record["shots"])))
        print(f"layout (physical qubit of each circuit qubit): {record.get('layout')}")
        t = record.get("timings") or {}
        sim = record.get("simulator") or {}
        print(f"simulated on {sim.get('device', '?')} ({sim.get('method', '?')}); "
              + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in t.items() if isinstance(v, (int, float))))


# ------------------------------------------------------------- commands


def cmd_up(args: argparse.Namespace) -> int:
    from jupyter_vqpu.core import embedded
    from jupyter_vqpu.core.connection import redact

    url = embedded.ensure_running()
    st = embedded.status()
    print(f"vqpu control plane at {redact(url)} (redis pid {st['redis_pid']}, agent pid {st['agent_pid']})")
    print(f"state in {st['home']}; the CLI and Client find it by themselves.")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from jupyter_vqpu.core import embedded

    stopped = embedded.down()
    print("stopped " + ", ".join(stopped) if stopped else "nothing was running")
    return 0


def _read_input(path: str) -> tuple[str, str]:
    from jupyter_vqpu.core.circuits import read_circuit_file

    return read_circuit_file(path)


def cmd_run(args: argparse.Namespace) -> int:
    fmt, text = _read_input(args.file)
    client = _client(args)
    task = client.submit(text, device=args.device, shots=args.shots, seed=args.seed, snapshot=args.snapshot,
                         optimization_level=args.optimization_level, name=args.name, circuit_format=fmt,
                         idempotency_key=args.idempotency_key)
    if args.no_wait:
        if args.json:
            _print_json(_record_json(task.view))
        else:
            print(task.id)
        return 0
    return _finish_wait(client, task.id, args)


def _finish_wait(client, task_id: str, args: argparse.Namespace) -> int:
    from jupyter_vqpu.core.task import merge_result

    view = client.wait(task_id, args.timeout)
    record = merge_result(view, client.fetch_result(task_id) if view["state"] == TaskState.COMPLETED else None)
    if args.json:
        _print_json(_record_json(record))
    else:
        _show_record(record)
    return 0 if record["state"] == TaskState.COMPLETED else EXIT_ERROR


def cmd_wait(args: argparse.Namespace) -> int:
    client = _client(args)
    return _finish_wait(client, _task_ref(args, client), args)


def cmd_devices(args: argparse.Namespace) -> int:
    devices = _client(args).devices()
    if args.json:
        _print_json(devices)
        return 0
    print(f"{'device':<12}{'status':<10}{'qubits':>7}{'queued':>8}{'held':>6}  {'snapshot':<14}{'version':>8}  age")
    for d in devices:
        age_s = human_age(d["snapshot_age_s"])
        print(f"{d['name']:<12}{d['status']:<10}{d['num_qubits']:>7}{d['queue_depth']:>8}{d['held']:>6}  "
              f"{(d['snapshot_id'] or '-')[:12]:<14}{d['snapshot_version']:>8}  {age_s}")
        for agent, why in sorted((d.get("unhealthy_agents") or {}).items()):
            print(f"  agent {agent} unhealthy: {why}")
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    tasks = _client(args).list(limit=args.limit)
    if args.json:
        _print_json(tasks)
        return 0
    if not tasks:
        print("no tasks yet; submit one with `vqpu run FILE --device fez`")
        return 0
    now = time.time()
    width = max(len("task"), *(len(t["task_id"]) for t in tasks))
    names = [((t.get("name") or "") + "".join(f" #{tag}" for tag in t.get("tags") or [])).strip() or "-"
             for t in tasks]
    nwidth = min(30, max(len("name"), *(len(n) for n in names)))
    print(f"{'task':<{width}}  {'name':<{nwidth}}  {'state':<10}{'shots':>8}  {'submitted':<13}  note")
    for t, name in zip(tasks, names):
        note = f"#{t['queue_position']} in queue" if t["queue_position"] else (t.get("reason") or "")
        if len(name) > nwidth:
            name = name[: nwidth - 1] + "~"
        print(f"{t['task_id']:<{width}}  {name:<{nwidth}}  {t['state']:<10}{t['shots'] or 0:>8}  "
              f"{age_of(t['created_at'], now):<13}  {note}".rstrip())
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    api = _api(args)
    if api is not None:  # the API's task view already holds the history and, once completed, the result
        view = api.transport.status(args.task_id)
        result = view
    else:
        import getpass

        cp = _cp(args)
        task_id = cp.resolve_task(args.task_id, getpass.getuser())
        view = cp.task(task_id)
        view["history"] = cp.history(task_id)
        result = cp.result(task_id) if view["state"] == TaskState.COMPLETED else None
    if args.json:
        _print_json(view)
        return 0
    _show_record({**view, **({} if view["state"] != TaskState.COMPLETED else _only_counts(result))})
    print("history:")
    for e in view["history"]:
        who = f" agent={e['agent']}" if e.get("agent") else ""
        tok = f" token={e['token']}" if e.get("token") is not None else ""
        extra = " ".join(f"{k}={e[k]}" for k in ("snapshot", "job_id", "reason", "error", "by") if e.get(k))
        print(f"  {_when(e['ts'] / 1000)}.{e['ts'] % 1000:03d}  {e['event']:<10}{who}{tok} {extra}".rstrip())
    return 0


def _only_counts(result: dict | None) -> dict:
    return {k: result[k] for k in ("counts", "layout", "timings", "simulator") if k in result} if result else {}


def cmd_cancel(args: argparse.Namespace) -> int:
    view = _client(args).cancel(args.task_id)
    c = view["cancel"]
    if c["cancelled"]:
        print(f"cancelled {view['task_id']} (it was {c['previous']})")
        return 0
    print(f"{view['task_id']} had already ended ({view['state']}); nothing to cancel")
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    import getpass

    cp = _cp(args)
    devices = [args.device] if args.device else cp.device_names()
    rows = []
    for d in devices:
        if args.dry_run:
            rows += [(tid, "would recover", cp.task(tid)["attempts"]) for tid in cp.expired(d)]
        else:
            rows += [r for r in cp.recover(d, max_attempts=args.max_attempts, by=f"recover:{getpass.getuser()}")
                     if r[1] in ("requeued", "failed")]
    if args.json:
        _print_json([{"task_id": t, "action": a, "attempt": n} for t, a, n in rows])
    else:
        for t, a, n in rows:
            print(f"{t}: {a} (attempt {n})")
        print(f"{len(rows)} task(s) with an expired lease" + (" (dry run: nothing changed)" if args.dry_run else ""))
    return 0


def _device_over_api(api, args: argparse.Namespace) -> int:
    """drain / resume / update as a vQPU admin on a hub (custom:vqpu:admin)."""
    from jupyter_vqpu.core.snapshot import read_calibration_files

    name = args.name
    if args.device_cmd == "update":
        conf, props = read_calibration_files(args.calibration)
        reply = api.transport.request("POST", f"devices/{name}/snapshots",
                                      {"properties": props, "configuration": conf})
        print(f"published snapshot {reply['snapshot_id'][:12]} (version {reply['version']}) for {name}; "
              "earlier snapshots stay readable")
    elif args.device_cmd in ("drain", "resume"):
        api.transport.request("POST", f"devices/{name}/{args.device_cmd}", {})
        print(f"{name}: {'draining (no new tasks)' if args.device_cmd == 'drain' else 'taking tasks'}")
    else:
        raise VqpuError(f"`vqpu device {args.device_cmd}` needs the control plane's Redis",
                        "run it where Redis is reachable (--redis-url), e.g. on the hub's host")
    return 0


def cmd_device(args: argparse.Namespace) -> int:
    api = _api(args)
    if api is not None:
        return _device_over_api(api, args)
    cp = _cp(args)
    if args.device_cmd == "update":
        sid, version = cp.update_calibration(args.name, args.calibration)
        print(f"published snapshot {sid[:12]} (version {version}) for {args.name}; earlier snapshots stay readable")
    elif args.device_cmd == "snapshots":
        history = cp.snapshot_history(args.name)
        if getattr(args, "json", False):
            _print_json(history)
            return 0
        print(f"  {'version':<8} {'snapshot':<64}  {'created (UTC)':<20}  source")
        for h in history:
            mark = "*" if h["current"] else " "
            created = (h["created_at"] or "-").replace("T", " ").removesuffix("Z")
            print(f"{mark} v{h['version']:<7} {h['snapshot_id']}  {created:<20}  {(h['source'] or '')[:60]}")
        print("* current: new tasks bind it at claim time; pin another with --snapshot vN")
    elif args.device_cmd == "rollback":
        sid, version, restored = cp.rollback(args.name, args.to)
        print(f"{args.name}: published v{version} ({sid[:12]}) with the content of v{restored}; "
              "the history keeps every version")
    elif args.device_cmd == "show":
        sys.stdout.write(cp.snapshot_bytes(args.name, args.snapshot).decode() + "\n")
    elif args.device_cmd in ("drain", "resume"):
        cp.set_admin_state(args.name, "draining" if args.device_cmd == "drain" else "active")
        print(f"{args.name}: {'draining (no new tasks)' if args.device_cmd == 'drain' else 'taking tasks'}")
    elif args.device_cmd == "seed":
        added = cp.seed(args.names)
        print("seeded " + (", ".join(added) if added else "nothing (all present)"))
    return 0


def cmd_acl(args: argparse.Namespace) -> int:
    from jupyter_vqpu.core.acl import acl_file

    def secret(path: str) -> str:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise VqpuError(f"cannot read {path}: {exc.strerror}", "give a file that holds the password") from None

    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    admin = secret(args.admin_password_file) if args.admin_password_file else None
    sys.stdout.write(acl_file(secret(args.agent_password_file), secret(args.gateway_password_file), devices, admin))
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    from jupyter_vqpu.core import logs
    from jupyter_vqpu_agent.agent import Agent, AgentConfig
    from jupyter_vqpu_agent.executors import make_executor

    logs.configure(args.log_format)
    cp = _cp(args)
    from jupyter_vqpu.core.connection import durability_setting

    override = durability_setting(args.wait_replicas, cp.durability.timeout_ms, cp.durability.aof)
    if override is not None:
        cp.durability = override
    devices = cp.device_names() if args.devices in ("all", "") else [d.strip() for d in args.devices.split(",")]
    if not devices:
        raise VqpuError("no devices to serve", "seed them with `vqpu device seed fez` or `vqpu up`")
    for d in devices:
        cp._require_device(d)
    work_root = Path(args.work_root) if args.work_root else None
    if work_root is None:
        from jupyter_vqpu.core import embedded

        work_root = embedded.home() / "work"
    executor = make_executor(args.executor, args, work_root)
    cfg = AgentConfig(devices=devices, work_root=work_root, agent_id=args.agent_id or "", lease_s=args.lease,
                      renew_s=args.renew, max_attempts=args.max_attempts, capacity=args.capacity,
                      task_timeout_s=args.task_timeout, reap_every_s=args.reap_every,
                      bundle_retention_s=args.bundle_retention, max_handbacks=args.max_handbacks)
    agent = Agent(cp, executor, cfg)
    signal.signal(signal.SIGTERM, lambda *_: agent.stop())
    signal.signal(signal.SIGINT, lambda *_: agent.stop())
    agent.run()
    return 0


def cmd_gateway(args: argparse.Namespace) -> int:
    from jupyter_vqpu_server.gateway import main as gateway_main

    argv = list(args.gateway_args)
    if args.config:
        argv += ["--config", args.config]
    if args.redis_url:
        argv += ["--redis-url", args.redis_url]
    return gateway_main(argv, log_format=args.log_format)


def cmd_metrics(args: argparse.Namespace) -> int:
    from jupyter_vqpu_server.collector import VqpuCollector, render

    devices = None if args.devices in ("all", "") else [d.strip() for d in args.devices.split(",") if d.strip()]
    body, _ = render(VqpuCollector(_cp(args).redis, devices=devices))
    sys.stdout.write(body.decode())
    return 0


# --------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """argparse, whose usage errors are JSON on stdout too when the command line asks for --json
    (a script parsing ``vqpu ... --json`` gets JSON for every failure, usage included)."""

    json_requested = False  # set by main() from the command line it parses

    def error(self, message: str):  # type: ignore[override]
        if self.json_requested:
            _print_json({"error": "usage", "message": message, "hint": f"see `{self.prog} --help`"})
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--redis-url", help="control plane Redis URL (default: $VQPU_REDIS_URL, else the embedded default)")
    common.add_argument("--api-url", help="a vQPU HTTP API to use instead of Redis, e.g. a hub's "
                        "http://HUB/services/vqpu/api/ (token: $VQPU_API_TOKEN or $JUPYTERHUB_API_TOKEN; "
                        "default on a hub: $VQPU_API_URL)")

    p = _Parser(prog="vqpu", description="A device-faithful virtual QPU on a batch cluster.")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    s = sub.add_parser("up", parents=[common], help="start the embedded default (local Redis + agent)")
    s.set_defaults(fn=cmd_up)
    s = sub.add_parser("down", parents=[common], help="stop the embedded default")
    s.set_defaults(fn=cmd_down)

    s = sub.add_parser("run", parents=[common], help="run a circuit file (OpenQASM 2/3, or .py defining qc)")
    s.add_argument("file")
    s.add_argument("--device", default="fez", type=_device_arg)
    s.add_argument("--shots", type=int, default=1024)
    s.add_argument("--seed", type=int)
    s.add_argument("--snapshot", help="pin a snapshot (reproduce an old run): its id or a unique prefix of 8+ hex "
                   "digits, a version v3, or fez@v3")
    s.add_argument("--optimization-level", type=int, default=2, choices=[0, 1, 2, 3],
                   help="Qiskit's transpiler level (2, its default preset: noise-aware layout)")
    s.add_argument("--name")
    s.add_argument("--idempotency-key")
    s.add_argument("--no-wait", action="store_true", help="print the task id and return")
    s.add_argument("--timeout", type=float, help="seconds to wait for the result")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser("wait", parents=[common], help="wait for a task and print its result")
    s.add_argument("task_id")
    s.add_argument("--timeout", type=float)
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_wait)

    s = sub.add_parser("devices", parents=[common], help="list devices")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_devices)

    s = sub.add_parser("tasks", parents=[common], help="list your tasks")
    s.add_argument("--limit", type=int, default=50)
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_tasks)

    s = sub.add_parser("status", parents=[common], help="a task's state and history")
    s.add_argument("task_id")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_status)

    s = sub.add_parser("cancel", parents=[common], help="cancel a task")
    s.add_argument("task_id")
    s.set_defaults(fn=cmd_cancel)

    s = sub.add_parser("recover", parents=[common], help="requeue (or fail) tasks whose lease expired")
    s.add_argument("--device")
    s.add_argument("--max-attempts", type=int, default=3)
    s.add_argument("--dry-run", action="store_true")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_recover)

    s = sub.add_parser("device", parents=[common], help="device snapshots and state")
    dsub = s.add_subparsers(dest="device_cmd", required=True, metavar="ACTION")
    d = dsub.add_parser("update", parents=[common], help="publish a new snapshot from IBM calibration JSON")
    d.add_argument("name", type=_device_arg)
    d.add_argument("--calibration", action="append", required=True, metavar="FILE",
                   help="props JSON (and optionally conf JSON: give --calibration twice)")
    d = dsub.add_parser("snapshots", parents=[common], help="list a device's snapshots (* marks the current one)")
    d.add_argument("name", type=_device_arg)
    d.add_argument("--json", action="store_true")
    d = dsub.add_parser("rollback", parents=[common],
                        help="publish an earlier snapshot's content as a new version (undo a calibration change)")
    d.add_argument("name", type=_device_arg)
    d.add_argument("--to", metavar="REF", help="the snapshot to restore: v3, an id or a prefix of 8+ hex digits "
                   "(default: the version before the current one)")
    d = dsub.add_parser("show", parents=[common], help="print a snapshot's canonical JSON")
    d.add_argument("name", type=_device_arg)
    d.add_argument("snapshot", nargs="?", help="an id, a unique prefix of 8+ hex digits, or v3 (default: current)")
    for action in ("drain", "resume"):
        d = dsub.add_parser(action, parents=[common], help=f"{action} a device")
        d.add_argument("name", type=_device_arg)
    d = dsub.add_parser("seed", parents=[common], help="register built-in devices")
    d.add_argument("names", nargs="+", type=_device_arg)
    s.set_defaults(fn=cmd_device)

    s = sub.add_parser("acl", help="print a Redis ACL file: a least-privilege agent user, the gateway, no default user")
    s.add_argument("--devices", required=True, help="comma-separated devices the agent serves")
    s.add_argument("--agent-password-file", required=True)
    s.add_argument("--gateway-password-file", required=True)
    s.add_argument("--admin-password-file", help="add a vqpu-admin user that alone may load the scripts (give the "
                   "service its URL as script_loader_url); the gateway user then may not SCRIPT LOAD")
    s.set_defaults(fn=cmd_acl)

    s = sub.add_parser("agent", parents=[common], help="run an HPC-side agent")
    s.add_argument("--devices", default="all", help="comma-separated device names, or all")
    s.add_argument("--executor", default="local", choices=["local", "slurm", "slurm-pilot"])
    s.add_argument("--agent-id")
    s.add_argument("--work-root", help="bundle directory root (must be visible to compute nodes for slurm)")
    s.add_argument("--capacity", type=int, default=2, help="tasks held at once, across all served devices")
    s.add_argument("--wait-replicas", type=int, default=-1, metavar="N",
                   help="claims and results count as acknowledged only once on N replicas (WAIT); "
                        "-1: the Redis URL's ?wait_replicas= (0 without it)")
    s.add_argument("--lease", type=float, default=30.0, help="lease seconds")
    s.add_argument("--renew", type=float, default=10.0, help="lease renewal interval seconds")
    s.add_argument("--max-attempts", type=int, default=3)
    s.add_argument("--task-timeout", type=float, default=600.0)
    s.add_argument("--reap-every", type=float, default=5.0, help="seconds between reaper passes")
    s.add_argument("--bundle-retention", type=float, default=24 * 3600.0, metavar="SECONDS",
                   help="remove job bundles this long after their last change (default 86400 = 24 h; 0: keep them)")
    s.add_argument("--max-handbacks", type=int, default=3,
                   help="times a task may be handed back for agents' own faults (full or unwritable work root) "
                        "before it fails with reason agent_fault")
    s.add_argument("--slurm-config", metavar="FILE", help="slurm: site knobs as JSON/TOML (see slurm/README.md)")
    s.add_argument("--partition", help="slurm: partition (overrides the config file)")
    s.add_argument("--cold", action="store_true", help="local: a fresh runner process per task (no warm worker)")
    s.add_argument("--embedded", action="store_true", help=argparse.SUPPRESS)
    s.add_argument("--log-format", choices=["human", "json"], default="human",
                   help="json: one object per line, with task_id/device/attempt fields (for a log pipeline)")
    s.set_defaults(fn=cmd_agent)

    s = sub.add_parser("gateway", help="serve the vQPU API for a whole JupyterHub (run as a hub-managed service)")
    s.add_argument("--redis-url", help="control plane Redis URL (default: $VQPU_REDIS_URL)")
    s.add_argument("--config", help="a Python config file setting c.VqpuGateway.* (quotas per group, devices, ...)")
    s.add_argument("--log-format", choices=("human", "json"), default="human",
                   help="json: one JSON object per line, with the caller and task ids as fields")
    s.add_argument("gateway_args", nargs=argparse.REMAINDER, help="more --VqpuGateway.<trait>=<value> settings")
    s.set_defaults(fn=cmd_gateway)

    s = sub.add_parser("metrics", parents=[common],
                       help="print the Prometheus metrics (what {base_url}vqpu/metrics serves), read from Redis")
    s.add_argument("--devices", default="all", help="comma-separated device names, or all")
    s.set_defaults(fn=cmd_metrics)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    _Parser.json_requested = "--json" in (sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(argv)
    if extra:  # only the gateway takes more (traitlets) settings: --VqpuGateway.<trait>=<value>
        if getattr(args, "fn", None) is not cmd_gateway:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.gateway_args = [*args.gateway_args, *extra]
    try:
        code = args.fn(args)
        sys.stdout.flush()  # a closed pipe shows up here, inside the handler below, not at exit
        return code
    except BrokenPipeError:  # `vqpu tasks | head`: the reader left; stop quietly, as other tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush does not raise again
        return EXIT_BROKEN_PIPE
    except VqpuError as exc:
        if getattr(args, "json", False):  # a script reading --json output gets JSON, failures included
            _print_json(exc.to_dict())
        print(f"vqpu: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  {exc.hint}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence: still one line, not a traceback
        import redis

        if isinstance(exc, redis.RedisError):
            print(f"vqpu: error: control plane error: {exc}", file=sys.stderr)
            print("  check that Redis is reachable (`vqpu up`, --redis-url or VQPU_REDIS_URL)", file=sys.stderr)
            return EXIT_ERROR
        raise


if __name__ == "__main__":
    sys.exit(main())
