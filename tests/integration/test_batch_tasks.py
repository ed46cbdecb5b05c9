"""One task of many circuits: the submission, its bounds, the bundle, the runner pass, the API.

Real redis-server (fixtures) and the real parser pool; the API tests run a real Jupyter
server with the extension (fixtures of test_server_ext).
"""

from __future__ import annotations

import json

import pytest

from jupyter_vqpu.core import result as result_schema
from jupyter_vqpu.core.client import Client
from jupyter_vqpu.core.control import ControlPlane, Limits
from jupyter_vqpu.core.errors import CircuitError, InvalidRequest, LimitExceeded
from jupyter_vqpu_agent import bundle, runner
from tests.conftest import BELL_QASM2, GHZ3
from tests.server_support import ALICE, body, fails, jp_auth_header, jp_server_config  # noqa: F401

X1 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[1] q;\nbit[1] c;\nx q[0];\nc = measure q;\n'


def test_a_list_of_circuits_is_one_task_with_every_circuit_in_order(seeded):
    task = Client(control=seeded, owner="ada").submit([GHZ3, BELL_QASM2, X1], device="ideal", shots=50, seed=3)
    view = seeded.task(task.id)
    assert view["num_circuits"] == 3 and view["state"] == "queued"
    assert [t["task_id"] for t in seeded.tasks("ada")] == [task.id]  # one task, not three
    claim = seeded.claim("ideal", task.id, "agent-1", 30_000)
    batch = bundle.batch_of(claim.fields)
    assert batch == [("qasm3", GHZ3), ("qasm2", BELL_QASM2), ("qasm3", X1)]
    # single-circuit readers still find the first one where they always did
    assert claim.fields["circuit"] == GHZ3 and claim.fields["circuit_format"] == "qasm3"


def test_a_batch_runs_in_one_runner_pass_with_a_result_per_circuit(seeded, tmp_path):
    """The bundle of a 3-circuit task, through the real runner: three experiments, Aer's seeds."""
    task = Client(control=seeded, owner="ada").submit([GHZ3, BELL_QASM2, X1], device="ideal", shots=64, seed=11)
    claim = seeded.claim("ideal", task.id, "agent-1", 30_000)
    spec = bundle.TaskSpec(task_id=task.id, device="ideal", attempt=claim.attempt, snapshot_id=claim.snapshot_id,
                           shots=64, circuit_format=claim.fields["circuit_format"], seed=11)
    where = bundle.stage(tmp_path / "b", spec, seeded.snapshot_bytes("ideal", claim.snapshot_id),
                         claim.fields["circuit"], bundle.batch_of(claim.fields))
    result = runner.run_bundle(where)
    assert result["ok"], result
    assert result_schema.problem(result, shots=64) is None
    experiments = result["experiments"]
    assert [e["seed"] for e in experiments] == [11, 11 + 2113, 11 + 2 * 2113]
    assert set(experiments[0]["counts"]) <= {"000", "111"} and set(experiments[1]["counts"]) <= {"00", "11"}
    assert experiments[2]["counts"] == {"1": 64}
    assert result["counts"] == experiments[0]["counts"]  # the top level is the first circuit, as before
    # the schema checks every experiment: one broken entry breaks the result
    broken = json.loads(json.dumps(result))
    broken["experiments"][2]["counts"] = {"1": 63}
    assert "experiments[2]" in result_schema.problem(broken, shots=64)


def test_task_wide_bounds_are_checked_before_any_circuit_is_parsed(seeded):
    cp = ControlPlane(seeded.redis, limits=Limits(max_circuits=3, max_task_bytes=2 * len(GHZ3) + 10,
                                                  max_total_shots=1000))
    before = cp.parser.stats["requests"]
    with pytest.raises(LimitExceeded, match="4 circuits in one task is over the limit of 3"):
        cp.submit(owner="ada", device="ideal", circuits=[X1] * 4, shots=10)
    with pytest.raises(LimitExceeded, match="bytes together"):
        cp.submit(owner="ada", device="ideal", circuits=[GHZ3] * 3, shots=10)
    with pytest.raises(LimitExceeded, match="2 circuits x 600 shots = 1200 shots"):
        cp.submit(owner="ada", device="ideal", circuits=[X1] * 2, shots=600)
    with pytest.raises(InvalidRequest, match="not both"):
        cp.submit(owner="ada", device="ideal", circuit=X1, circuits=[X1], shots=10)
    with pytest.raises(InvalidRequest, match="non-empty list"):
        cp.submit(owner="ada", device="ideal", circuits=[], shots=10)
    assert cp.parser.stats["requests"] == before  # none of them cost a parse
    with pytest.raises(CircuitError, match=r"^circuits\[1\]: "):
        cp.submit(owner="ada", device="ideal", circuits=[X1, "OPENQASM 3.0;\nqubit[1] q;\nnope q[0];\n"], shots=10)
    assert seeded.tasks("ada") == []


def test_run_options_are_checked_at_submission(seeded):
    client = Client(control=seeded, owner="ada")
    with pytest.raises(InvalidRequest, match="unknown simulation method 'magic'"):
        client.submit(X1, device="ideal", options={"method": "magic"})
    with pytest.raises(InvalidRequest, match="noise must be true or false"):
        client.submit(X1, device="ideal", options={"noise": "off"})
    with pytest.raises(LimitExceeded, match="options are"):
        client.submit(X1, device="ideal", options={"x": "y" * 5000})
    assert seeded.tasks("ada") == []


def test_the_runner_refuses_an_option_it_does_not_know(seeded, tmp_path):
    """Never ignored: an option this runner does not know fails the task, naming it."""
    spec = bundle.TaskSpec(task_id="ideal.t", device="ideal", attempt=1, snapshot_id="0" * 64, shots=10,
                           circuit_format="qasm3", options={"fusion_enable": False})
    result = runner.run_bundle(bundle.stage(tmp_path / "b", spec, b"{}", X1))
    assert not result["ok"] and "unknown run option(s) fusion_enable" in result["error"]


async def test_the_api_takes_circuits_and_options(jp_fetch, seeded):
    payload = {"device": "ideal", "shots": 20, "circuits": [GHZ3, {"circuit": BELL_QASM2, "circuit_format": "qasm2"}],
               "options": {"method": "statevector"}}
    r = await jp_fetch("vqpu", "api", "tasks", method="POST", body=json.dumps(payload), headers=ALICE)
    view = body(r)
    assert r.code == 201 and view["num_circuits"] == 2
    fields = seeded.redis.hgetall(seeded.keys("ideal").task(view["task_id"]))
    assert json.loads(fields["options"]) == {"method": "statevector"}
    code, err = await fails(jp_fetch("vqpu", "api", "tasks", method="POST", headers=ALICE,
                                     body=json.dumps({**payload, "options": {"method": "nope"}})))
    assert code == 400 and "unknown simulation method" in err["message"]
    code, err = await fails(jp_fetch("vqpu", "api", "tasks", method="POST", headers=ALICE,
                                     body=json.dumps({"device": "ideal", "shots": 20})))
    assert code == 400 and "circuit" in err["message"]
