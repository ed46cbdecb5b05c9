"""The sandboxed parser pool: real worker processes, real crashes, timeouts, rlimits and recycling."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from jupyter_vqpu.core import parsing
from jupyter_vqpu.core.errors import CircuitError, ControlPlaneUnavailable, LimitExceeded
from jupyter_vqpu.core.parsing import CircuitFacts, ParserPool

GHZ3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[3] q;\nbit[3] c;\nh q[0];\ncx q[0], q[1];\ncx q[1], q[2];\nc = measure q;\n'
# A valid program the slow (ANTLR) importer takes seconds over: a user gate sends it off the native path.
SLOW = ('OPENQASM 3.0;\ninclude "stdgates.inc";\ngate g a, b { cx a, b; }\nqubit[20] q;\n'
        + "".join(f"g q[{i % 20}], q[{(i + 1) % 20}];\n" for i in range(5000)))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"  # a zombie is dead, only not yet reaped
    except FileNotFoundError:
        return False


def _until(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def pool():
    p = ParserPool(1)
    yield p
    p.close()


def test_facts_and_user_errors_come_back_as_plain_values(pool):
    assert pool.parse(GHZ3) == CircuitFacts("qasm3", 3, 3, 3, 6)
    with pytest.raises(CircuitError, match=r"line 5, column \d+: .*notagate") as err:
        pool.parse(GHZ3.replace("h q[0]", "notagate q[0]"))
    assert "stdgates.inc" in err.value.hint
    with pytest.raises(LimitExceeded, match="max_ops=3"):
        pool.parse(GHZ3, max_ops=3)
    assert pool.stats["parsed"] == 1 and pool.stats["user_errors"] == 2


def test_hostile_text_never_reaches_a_worker(pool):
    with pytest.raises(LimitExceeded, match="nest"):
        pool.parse(GHZ3 + "rz(" + "(" * 9000 + "1" + ")" * 9000 + ") q[0];\n")
    assert pool.stats["refused_by_screen"] == 1 and pool.stats["started"] == 0


def test_the_native_importer_really_crashes_on_what_the_screen_refuses():
    # Why the pool exists: this kills whatever process runs it.
    code = ("import warnings; warnings.simplefilter('ignore')\nfrom qiskit import qasm3\n"
            f"qasm3.loads_experimental({(GHZ3 + 'rz(' + '(' * 9000 + '1' + ')' * 9000 + ') q[0];').__repr__()})\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
    assert proc.returncode < 0, proc.returncode  # killed by a signal (SIGSEGV / SIGABRT), no exception


def test_a_worker_that_crashes_mid_parse_is_a_4xx_and_is_replaced(pool):
    pool.warm_up()
    results: list[BaseException | CircuitFacts] = []

    def parse() -> None:
        try:
            results.append(pool.parse(SLOW))
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion below
            results.append(exc)

    t = threading.Thread(target=parse)
    t.start()
    _until(lambda: pool.busy_pids(), "the parse to start")
    victim = pool.busy_pids()[0]
    os.kill(victim, signal.SIGSEGV)  # what a native stack overflow looks like from outside
    t.join(120)
    (err,) = results
    assert isinstance(err, CircuitError) and "could not be parsed safely" in err.message
    assert "SIGSEGV" in err.message and err.http_status == 400
    assert pool.stats["crashes"] == 1
    _until(lambda: not _alive(victim), "the crashed worker to be reaped")
    assert pool.parse(GHZ3).num_qubits == 3  # a fresh worker took its place
    assert victim not in pool.pids()


def test_a_parse_past_the_timeout_is_killed_and_the_user_told():
    pool = ParserPool(1, timeout_s=0.2)
    try:
        pool.warm_up()
        (victim,) = pool.pids()
        with pytest.raises(CircuitError, match="could not be parsed safely: parsing took longer than 0.2 s"):
            pool.parse(SLOW)
        assert pool.stats["timeouts"] == 1
        _until(lambda: not _alive(victim), "the timed-out worker to be killed")
        assert pool.parse(GHZ3).ops == 6
    finally:
        pool.close()


def test_the_memory_rlimit_applies_to_the_worker():
    # 120 MB of address space is not enough to load qiskit: the limit is really set in the child.
    pool = ParserPool(1, memory_mb=120, start_timeout_s=120)
    try:
        with pytest.raises(ControlPlaneUnavailable, match="could not start"):
            pool.parse(GHZ3)
    finally:
        pool.close()


def test_workers_are_recycled_after_max_requests():
    pool = ParserPool(1, max_requests=3)
    try:
        seen = set()
        for _ in range(7):
            assert pool.parse(GHZ3).num_qubits == 3
            seen.update(pool.pids())
        assert len(seen) >= 3 and pool.stats["recycled"] == 2
    finally:
        pool.close()


def test_a_worker_that_died_while_idle_is_replaced_without_blaming_the_user(pool):
    pool.warm_up()
    (idle,) = pool.pids()
    os.kill(idle, signal.SIGKILL)
    _until(lambda: not _alive(idle), "the idle worker to die")
    assert pool.parse(GHZ3).num_qubits == 3
    assert pool.stats["crashes"] == 0


def test_the_pool_is_safe_from_many_threads():
    pool = ParserPool(2)
    try:
        texts = [GHZ3.replace("[3]", f"[{n}]") for n in range(3, 11)] * 5
        with ThreadPoolExecutor(8) as ex:
            facts = list(ex.map(pool.parse, texts))
        assert [f.num_qubits for f in facts] == [int(t.split("qubit[")[1].split("]")[0]) for t in texts]
        assert pool.stats["started"] == 2 and len(pool.pids()) == 2
    finally:
        pids = pool.pids()
        pool.close()
    for pid in pids:
        _until(lambda pid=pid: not _alive(pid), "closed workers to exit")


def test_the_default_pool_is_shared():
    assert parsing.default_pool() is parsing.default_pool()
