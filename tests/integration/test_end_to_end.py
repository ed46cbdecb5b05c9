"""A circuit goes in, Fez-faithful counts come out: real Redis, a real agent, the real runner."""

from __future__ import annotations

import json

import pytest

from jupyter_vqpu.core.client import Client
from jupyter_vqpu.core.errors import TaskFailed
from tests.agents import Running
from tests.conftest import GHZ3

pytestmark = pytest.mark.redis


@pytest.fixture
def local_agent(seeded, redis_url, tmp_path):
    from jupyter_vqpu_agent.executors.local import LocalExecutor

    running = Running(redis_url, LocalExecutor(slots=1, warm=True, log_dir=tmp_path), tmp_path,
                      devices=("fez", "ideal"), capacity=1)
    yield running
    running.stop()


def tvd(a: dict[str, int], b: dict[str, int]) -> float:
    na, nb = sum(a.values()), sum(b.values())
    return 0.5 * sum(abs(a.get(k, 0) / na - b.get(k, 0) / nb) for k in set(a) | set(b))


def test_ghz3_on_fez_carries_real_noise_and_is_reproducible(seeded, local_agent):
    client = Client(control=seeded, owner="alice")
    ideal = client.submit(GHZ3, device="ideal", shots=4096, seed=11).result(timeout=120)
    fez = client.submit(GHZ3, device="fez", shots=4096, seed=11).result(timeout=120)
    again = client.submit(GHZ3, device="fez", shots=4096, seed=11).result(timeout=120)

    assert set(ideal["counts"]) <= {"000", "111"} and sum(ideal["counts"].values()) == 4096
    assert sum(fez["counts"].values()) == 4096
    # Fez's calibration noise shows: outcomes other than 000/111 and a measurable distance from ideal
    off = sum(v for k, v in fez["counts"].items() if k not in ("000", "111"))
    assert off > 20, fez["counts"]
    assert tvd(ideal["counts"], fez["counts"]) > 0.01
    # same snapshot, circuit and seed: identical counts
    assert again["counts"] == fez["counts"] and again["snapshot_id"] == fez["snapshot_id"]
    # the layout is on Fez's physical qubits and coupled as the device is
    assert len(fez["layout"]) == 3 and all(0 <= q < 156 for q in fez["layout"])
    assert fez["simulator"]["device"] in ("CPU", "GPU") and fez["simulator"]["reason"]
    assert {"transpile", "noise_model", "simulate"} <= set(fez["timings"])
    history = [e["event"] for e in client.history(fez["task_id"])]
    assert history == ["queued", "claimed", "scheduled", "running", "completed"]


def test_mutating_fez_before_the_claim_changes_the_counts(seeded, local_agent):
    """A calibration change before the claim is seen by the task."""
    from jupyter_vqpu.core import snapshot

    client = Client(control=seeded, owner="alice")
    before = client.submit(GHZ3, device="fez", shots=2000, seed=5).result(timeout=120)
    base = snapshot.load_snapshot(seeded.snapshot_bytes("fez"))

    def worse(version: int) -> dict:
        doc = json.loads(json.dumps(base))
        doc["version"] = version
        doc["source"] = "test: readout errors raised to 0.2"
        for q in doc["qubits"]:
            q["readout_error"] = 0.2
        return doc

    sid, _ = seeded.publish("fez", worse)
    after = client.submit(GHZ3, device="fez", shots=2000, seed=5).result(timeout=120)
    assert after["snapshot_id"] == sid != before["snapshot_id"]
    assert tvd(before["counts"], after["counts"]) > 0.1


def test_a_corrupted_snapshot_fails_the_task_with_a_clear_reason(seeded, local_agent):
    client = Client(control=seeded, owner="alice")
    k = seeded.keys("ideal")
    sid = seeded.devices(["ideal"])[0]["snapshot_id"]
    data = seeded.redis.get(k.snapshot(sid))
    seeded.redis.set(k.snapshot(sid), data.replace('"num_qubits":32', '"num_qubits":33'))
    task = client.submit(GHZ3, device="ideal", shots=10)
    with pytest.raises(TaskFailed) as info:
        task.result(timeout=120)
    assert "hash" in info.value.message and task.refresh()["reason"] == "invalid_snapshot"
