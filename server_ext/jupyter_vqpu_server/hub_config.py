"""JupyterHub configuration for a class on a vQPU: one call in ``jupyterhub_config.py``.

    from jupyter_vqpu_server.hub_config import configure_vqpu
    configure_vqpu(c, courses={"physics101": ["prof"]}, admins=["admin"])

It sets, and documents by its code, everything the hub needs:

- the ``vqpu`` service: ``vqpu gateway`` started and stopped by the hub, the
  only process besides the agents that holds the Redis credentials (they come
  from the hub's own environment, ``VQPU_REDIS_URL``, and go to this service
  only: spawners pass single-user servers just ``env_keep`` and ``environment``);
- the custom scopes ``custom:vqpu:submit``, ``custom:vqpu:instruct`` and
  ``custom:vqpu:admin``, and roles granting them: students of a course (a hub
  group) submit; its instructors hold ``custom:vqpu:instruct!group=<course>``
  (custom scopes take the same ``!group=`` filters as built-in ones); admins
  drain devices and publish calibration;
- ``Spawner.server_token_scopes``: each user's server token (the kernels'
  ``$JUPYTERHUB_API_TOKEN``) carries the user's vQPU scopes and access to the
  service, so ``%%vqpu`` in a kernel needs nothing more;
- ``Spawner.environment``: ``VQPU_API_URL``, where servers, kernels and
  terminals find the gateway. Students change nothing in their notebooks.

The repository's ``docs/jupyterhub_config.py`` is the documented example and
the configuration the hub integration test runs.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import Any

SERVICE = "vqpu"
SCOPES: dict[str, dict[str, str]] = {
    "custom:vqpu:submit": {"description": "Use the virtual QPU: submit tasks, see and cancel your own."},
    "custom:vqpu:instruct": {"description": "See and cancel the vQPU tasks of users (filter: !group=<course>)."},
    "custom:vqpu:admin": {"description": "Administer vQPU devices: drain, resume, publish calibration."},
}


def access_scope(service: str = SERVICE) -> str:
    """The hub's own gate to the service: without it a token never reaches the gateway."""
    return f"access:services!service={service}"


def vqpu_roles(courses: Mapping[str, Iterable[str]], admins: Iterable[str] = (),
               service: str = SERVICE) -> list[dict[str, Any]]:
    """Roles for ``c.JupyterHub.load_roles``: students per course group, instructors per course, admins,
    and the gateway's own (reading group membership, for instructors' rights)."""
    roles: list[dict[str, Any]] = []
    if courses:
        roles.append({"name": "vqpu-student", "description": "submit to the vQPU (course members)",
                      "scopes": ["custom:vqpu:submit", access_scope(service)], "groups": sorted(courses)})
    for course, instructors in sorted(courses.items()):
        roles.append({"name": f"vqpu-instructor-{course}", "description": f"instructor of {course} on the vQPU",
                      "scopes": [f"custom:vqpu:instruct!group={course}", "custom:vqpu:submit",
                                 access_scope(service)],
                      "users": sorted(instructors)})
    admins = sorted(admins)
    if admins:
        roles.append({"name": "vqpu-admin", "description": "administer vQPU devices",
                      "scopes": ["custom:vqpu:admin", access_scope(service)], "users": admins})
    roles.append({"name": "vqpu-gateway", "description": "the vqpu service reads group membership",
                  "scopes": ["read:groups", "read:users:groups"], "services": [service]})
    return roles


def server_token_scopes(service: str = SERVICE) -> list[str]:
    """Scopes for each server's ``$JUPYTERHUB_API_TOKEN`` (the hub grants only those the user holds)."""
    return ["users:activity!user", "access:servers!server", *SCOPES, access_scope(service)]


def vqpu_service(*, url: str, name: str = SERVICE, gateway_config: str | None = None,
                 redis_url: str | None = None, python: str = sys.executable,
                 environment: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The hub-managed service entry for ``c.JupyterHub.services``.

    ``redis_url`` None: the gateway reads ``VQPU_REDIS_URL`` from the hub's
    environment (keep secrets out of config files); likewise the trusted script
    loader's ``VQPU_SCRIPT_LOADER_URL`` (the ``vqpu-admin`` user of ``vqpu acl
    --admin-password-file``), passed on when the hub has it."""
    import os

    env = dict(environment or {})
    url_value = redis_url if redis_url is not None else os.environ.get("VQPU_REDIS_URL", "")
    if url_value:
        env["VQPU_REDIS_URL"] = url_value
    loader = os.environ.get("VQPU_SCRIPT_LOADER_URL", "")
    if loader and "VQPU_SCRIPT_LOADER_URL" not in env:
        env["VQPU_SCRIPT_LOADER_URL"] = loader
    command = [python, "-m", "jupyter_vqpu.cli", "gateway"]
    if gateway_config:
        command += ["--config", gateway_config]
    return {
        "name": name,
        "url": url,
        "command": command,
        "environment": env,
        "oauth_no_confirm": True,  # students are not asked to approve the class's own service
        "oauth_client_allowed_scopes": list(SCOPES),  # what a browser session may carry to the gateway
        "display": True,
    }


def api_url(service_url: str, name: str = SERVICE) -> str:
    """Where servers, kernels and terminals find the gateway's API (directly, not through the proxy)."""
    return f"{service_url.rstrip('/')}/services/{name}/api/"


def configure_vqpu(c: Any, *, courses: Mapping[str, Iterable[str]], admins: Iterable[str] = (),
                   service_url: str = "http://127.0.0.1:10101", gateway_config: str | None = None,
                   name: str = SERVICE, python: str = sys.executable) -> None:
    """Apply the whole vQPU setup to a JupyterHub config object ``c`` (adds to what is there)."""
    c.JupyterHub.custom_scopes = {**dict(c.JupyterHub.get("custom_scopes", {}) or {}), **SCOPES}
    c.JupyterHub.services = [*list(c.JupyterHub.get("services", []) or []),
                             vqpu_service(url=service_url, name=name, gateway_config=gateway_config, python=python)]
    c.JupyterHub.load_roles = [*list(c.JupyterHub.get("load_roles", []) or []),
                               *vqpu_roles({k: list(v) for k, v in courses.items()}, admins, name)]
    c.Spawner.server_token_scopes = server_token_scopes(name)
    env = dict(c.Spawner.get("environment", {}) or {})
    env["VQPU_API_URL"] = api_url(service_url, name)
    c.Spawner.environment = env
