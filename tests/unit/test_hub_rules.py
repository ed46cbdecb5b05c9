"""Rights from hub scopes, and quotas from hub groups: the rules, without a hub."""

from __future__ import annotations

import pytest

from jupyter_vqpu.core.control import Limits
from jupyter_vqpu.core.errors import VqpuError
from jupyter_vqpu_server.caller import Caller, caller_from_hub
from jupyter_vqpu_server.gateway import Quotas, most_generous

MEMBERS = {"physics101": {"ada", "bob"}, "chem200": {"cy"}}


def hub_user(name: str, scopes: list[str], groups: list[str] = ()) -> dict:
    return {"kind": "user", "name": name, "groups": list(groups), "scopes": scopes}


def test_student_submits_and_sees_only_their_own():
    c = caller_from_hub(hub_user("ada", ["custom:vqpu:submit", "access:services!service=vqpu"], ["physics101"]),
                        MEMBERS.get)
    assert c.submit and not c.operates and not c.oversees_all
    assert c.may_see("ada") and not c.may_see("bob")


def test_instructor_scope_filtered_by_group_oversees_its_members_only():
    c = caller_from_hub(hub_user("prof", ["custom:vqpu:instruct!group=physics101"]), MEMBERS.get)
    assert not c.submit and c.any_right
    assert c.may_see("ada") and c.may_see("bob") and not c.may_see("cy")
    assert set(c.courses) == {"physics101"}


def test_user_filters_and_group_filters_on_submit():
    assert caller_from_hub(hub_user("ada", ["custom:vqpu:submit!user=ada"]), MEMBERS.get).submit
    assert not caller_from_hub(hub_user("ada", ["custom:vqpu:submit!user=bob"]), MEMBERS.get).submit
    assert caller_from_hub(hub_user("ada", ["custom:vqpu:submit!group=g"], ["g"]), MEMBERS.get).submit
    assert not caller_from_hub(hub_user("ada", ["custom:vqpu:submit!group=g"], ["h"]), MEMBERS.get).any_right


def test_admin_operates_and_oversees_everyone_but_a_filtered_admin_scope_is_not_admin():
    c = caller_from_hub(hub_user("root", ["custom:vqpu:admin"]), MEMBERS.get)
    assert c.operates and c.oversees_all and c.submit and c.may_see("anyone")
    assert not caller_from_hub(hub_user("x", ["custom:vqpu:admin!user=x"]), MEMBERS.get).operates


def test_services_and_scopeless_users_get_no_rights():
    assert not caller_from_hub({"kind": "service", "name": "agent", "scopes": ["custom:vqpu:admin"]},
                               MEMBERS.get).any_right
    assert not caller_from_hub(hub_user("eve", ["read:users!user=eve"]), MEMBERS.get).any_right


def test_quotas_most_generous_group_and_default_for_the_rest():
    q = Quotas({"max_shots": 1000, "max_queued_per_owner": 2, "submissions_per_minute": 5, "max_qubits": 20},
               {"physics101": {"max_shots": 5000, "max_queued_per_owner": 3},
                "research": {"max_shots": 2000, "max_queued_per_owner": 0, "max_qubits": 28}})
    assert q.for_caller(Caller("guest")).max_shots == 1000
    student = q.for_caller(Caller("ada", groups=frozenset({"physics101", "unlisted"})))
    assert (student.max_shots, student.max_queued_per_owner, student.submissions_per_minute) == (5000, 3, 5)
    both = q.for_caller(Caller("bob", groups=frozenset({"physics101", "research"})))
    assert (both.max_shots, both.max_queued_per_owner, both.max_qubits) == (5000, 0, 28)  # 0: unlimited wins


def test_quota_config_mistakes_are_readable():
    with pytest.raises(VqpuError, match="unknown limit"):
        Quotas({"max_shotz": 1}, {})
    with pytest.raises(VqpuError, match="whole numbers"):
        Quotas({}, {"g": {"max_shots": -1}})
    assert most_generous([Limits(max_shots=1), Limits(max_shots=9)]).max_shots == 9


def test_the_hub_service_entry_passes_on_the_script_loader_from_the_hubs_environment(monkeypatch):
    from jupyter_vqpu_server.hub_config import vqpu_service

    monkeypatch.setenv("VQPU_REDIS_URL", "redis://vqpu-gateway:g@127.0.0.1:6379/0")
    monkeypatch.setenv("VQPU_SCRIPT_LOADER_URL", "redis://vqpu-admin:a@127.0.0.1:6379/0")
    env = vqpu_service(url="http://127.0.0.1:10101")["environment"]
    assert env["VQPU_SCRIPT_LOADER_URL"] == "redis://vqpu-admin:a@127.0.0.1:6379/0"
    monkeypatch.delenv("VQPU_SCRIPT_LOADER_URL")
    assert "VQPU_SCRIPT_LOADER_URL" not in vqpu_service(url="http://127.0.0.1:10101")["environment"]
