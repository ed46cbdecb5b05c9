"""Key layout rules: one hash tag per device, ids that carry their device."""

from __future__ import annotations

import pytest

from jupyter_vqpu.core.errors import InvalidRequest, TaskNotFound
from jupyter_vqpu.core.keys import Keys, check_device_name, device_of, new_task_id


def test_every_key_of_a_device_shares_its_hash_tag():
    k = Keys("fez")
    tid = new_task_id("fez")
    names = [k.device, k.queue, k.pending, k.leases, k.events, k.snapshots, k.agents, k.task(tid),
             k.history(tid), k.result(tid), k.snapshot("ab" * 32), k.owner_index("a:b"), k.idempotency("a", "b")]
    assert all(n.startswith("vqpu:{fez}:") for n in names)
    assert len(set(names)) == len(names)


def test_task_ids_carry_their_device_and_sort_by_time():
    a, b = new_task_id("fez"), new_task_id("fez")
    assert device_of(a) == "fez" and a != b
    assert device_of(new_task_id("ibm_kyiv-2")) == "ibm_kyiv-2"
    with pytest.raises(TaskNotFound):
        device_of("nope")


def test_idempotency_keys_cannot_collide_through_separators():
    k = Keys("fez")
    assert k.idempotency("a:b", "c") != k.idempotency("a", "b:c")


@pytest.mark.parametrize("bad", ["", "Fez", "fez!", "a" * 40, "{fez}", "fez:1", None])
def test_device_names_are_checked(bad):
    with pytest.raises(InvalidRequest):
        check_device_name(bad)
