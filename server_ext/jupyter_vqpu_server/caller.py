"""Who is calling the vQPU API, and what they may do.

The server extension and the hub gateway serve the same routes with the same
handlers and the same ``VqpuService``; they differ only in how they build a
``Caller`` from the request. The service decides every permission from the
Caller alone, so the rules are written once:

- ``submit``: use the API at all (devices, snapshots, own tasks and events);
- ``oversees`` / ``oversees_all``: read and cancel other users' tasks (an
  instructor over the members of a course group; a vQPU admin over everyone);
- ``operates``: device administration (drain, resume, publish a snapshot).

On a hub the rights come from JupyterHub custom scopes (``caller_from_hub``);
custom scopes accept the ``!user=``, ``!group=`` filters of built-in scopes, so
``custom:vqpu:instruct!group=physics101`` is an instructor of that course.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

#: The JupyterHub custom scopes the gateway understands (defined by ``hub_config.custom_scopes``).
SCOPE_SUBMIT = "custom:vqpu:submit"
SCOPE_INSTRUCT = "custom:vqpu:instruct"
SCOPE_ADMIN = "custom:vqpu:admin"


@dataclass(frozen=True)
class Caller:
    """The authenticated identity of one request and its rights; never taken from the request body."""

    name: str
    groups: frozenset[str] = frozenset()
    submit: bool = True
    oversees: frozenset[str] = frozenset()  # other users whose tasks this caller may read and cancel
    oversees_all: bool = False
    operates: bool = False
    #: group -> its members, for the groups this caller oversees (listing a course's tasks)
    courses: dict[str, frozenset[str]] = field(default_factory=dict, hash=False, compare=False)

    @property
    def any_right(self) -> bool:
        """Whether this caller may use the API at all."""
        return self.submit or self.operates or self.oversees_all or bool(self.oversees)

    def may_see(self, owner: str) -> bool:
        """May this caller read (and cancel) a task of ``owner``?"""
        return owner == self.name or self.oversees_all or owner in self.oversees


def _filtered(scopes: Iterable[str], name: str) -> list[str]:
    """The filters of ``name`` among ``scopes``: '' for an unfiltered scope, else e.g. 'group=physics101'."""
    out = []
    for scope in scopes:
        base, _, flt = scope.partition("!")
        if base == name:
            out.append(flt)
    return out


def caller_from_hub(model: dict, members_of: Callable[[str], Iterable[str]]) -> Caller:
    """A Caller from a JupyterHub user model (``GET /hub/api/user`` with the caller's token).

    ``model["scopes"]`` are the token's own scopes, so a token a user made with
    fewer scopes gets fewer rights. ``members_of(group)`` names a hub group's
    members (the gateway asks the hub, with a cache). Services (kind 'service')
    get no rights here: an agent holds Redis credentials, not a hub token."""
    name = model.get("name", "")
    if model.get("kind", "user") != "user":
        return Caller(name=f"service:{name}", submit=False)
    scopes = list(model.get("scopes") or [])
    groups = frozenset(model.get("groups") or [])

    def holds(scope: str) -> bool:
        return any(f in ("", "user", f"user={name}") or (f.startswith("group=") and f[6:] in groups)
                   for f in _filtered(scopes, scope))

    admin = "" in _filtered(scopes, SCOPE_ADMIN)
    oversees: set[str] = set()
    courses: dict[str, frozenset[str]] = {}
    oversees_all = admin
    for flt in _filtered(scopes, SCOPE_INSTRUCT):
        if flt == "":
            oversees_all = True
        elif flt.startswith("group="):
            courses[flt[6:]] = frozenset(members_of(flt[6:]))
            oversees.update(courses[flt[6:]])
        elif flt.startswith("user="):
            oversees.add(flt[5:])
    return Caller(
        name=name,
        groups=groups,
        submit=holds(SCOPE_SUBMIT) or admin,
        oversees=frozenset(oversees),
        oversees_all=oversees_all,
        operates=admin,
        courses=courses,
    )
