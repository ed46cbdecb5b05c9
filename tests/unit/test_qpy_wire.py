"""QPY on the wire: what the Qiskit backend sends, and the hostile payloads it must refuse.

``screen_qpy`` runs before Qiskit's reader (in the service: before a sandboxed parser is
even asked); what passes it is read only in the parser pool, never in the service.
"""

from __future__ import annotations

import base64
import io
import struct

import pytest
from qiskit import QuantumCircuit, qpy
from qiskit.circuit.classical import expr

from jupyter_vqpu.core import circuits as C
from jupyter_vqpu.core.errors import CircuitError, LimitExceeded
from jupyter_vqpu.core.parsing import ParserPool


def dynamic() -> QuantumCircuit:
    qc = QuantumCircuit(3, 3, name="dyn")
    qc.h(0)
    qc.measure(0, 0)
    with qc.switch(qc.clbits[0]) as case:
        with case(0):
            qc.x(1)
        with case(1):
            qc.z(1)
    with qc.if_test(expr.logic_and(qc.clbits[0], qc.clbits[1])):
        qc.x(2)
    qc.measure([1, 2], [1, 2])
    return qc


def raw(qc: QuantumCircuit | list, **kw) -> bytes:
    buf = io.BytesIO()
    qpy.dump(qc, buf, **kw)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def patched(data: bytes, offset: int, fmt: str, value) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def circuit_header_at(data: bytes) -> int:
    return struct.unpack_from("!Q", data, 20)[0]  # QPY >= 16: the program table follows the type key


def test_qpy_round_trips_what_openqasm_cannot():
    qc = dynamic()
    from qiskit import qasm3

    with pytest.raises(Exception):  # noqa: B017 (whichever error: switch does not come back through OpenQASM 3)
        qasm3.loads(qasm3.dumps(qc))
    fmt, text = C.circuit_to_wire(qc, prefer="qpy")
    assert fmt == "qpy" and C.detect_format(text) == "qpy"
    assert C.parse_circuit(text, "qpy") == qc


@pytest.mark.parametrize("why, payload, error, match", [
    ("not base64", "QISKIT!!" * 4, CircuitError, "base64"),
    ("bad padding", b64(raw(QuantumCircuit(1)))[:-1], CircuitError, "base64"),
    ("no QPY magic", b64(b"NOTQPY" + bytes(40)), CircuitError, "QPY header"),
    ("too short", b64(b"QISKIT"), CircuitError, "QPY header"),
])
def test_hostile_qpy_framing_is_refused_before_the_reader(why, payload, error, match):
    with pytest.raises(error, match=match):
        C.screen_qpy(payload)


def test_old_new_symengine_and_multi_program_payloads_are_refused():
    good = raw(QuantumCircuit(1))
    with pytest.raises(CircuitError, match="older than the oldest accepted"):  # sympy-era: its reader parses text
        C.screen_qpy(b64(patched(good, 6, "!B", 12)))
    with pytest.raises(CircuitError, match="newer than this service reads"):
        C.screen_qpy(b64(patched(good, 6, "!B", 200)))
    with pytest.raises(CircuitError, match="symengine"):
        C.screen_qpy(b64(patched(good, 18, "!c", b"e")))
    with pytest.raises(CircuitError, match="2 programs"):
        C.screen_qpy(b64(raw([QuantumCircuit(1), QuantumCircuit(1)])))
    with pytest.raises(CircuitError, match="not a circuit"):
        C.screen_qpy(b64(patched(good, 19, "!c", b"s")))  # a schedule block


def test_declared_sizes_are_bounded_before_anything_is_allocated():
    good = raw(QuantumCircuit(2, 1))
    at = circuit_header_at(good)
    # name(H) phase type(c) phase size(H) qubits(I) clbits(I) metadata(Q) registers(I) instructions(Q) vars(I)
    with pytest.raises(LimitExceeded, match="declares 4000000000 qubits"):
        C.screen_qpy(b64(patched(good, at + 5, "!I", 4_000_000_000)))
    with pytest.raises(LimitExceeded, match="declares 156 qubits.*max_qubits=100"):
        C.screen_qpy(b64(patched(good, at + 5, "!I", 156)), max_qubits=100)
    with pytest.raises(LimitExceeded, match="classical bits"):
        C.screen_qpy(b64(patched(good, at + 9, "!I", 4_000_000_000)))
    with pytest.raises(LimitExceeded, match="instructions"):
        C.screen_qpy(b64(patched(good, at + 25, "!Q", 2**60)), max_ops=1000)
    with pytest.raises(CircuitError, match="more than the payload holds"):
        C.screen_qpy(b64(patched(good, at + 13, "!Q", 2**40)))  # metadata size
    with pytest.raises(LimitExceeded, match="over the limit of max_bytes"):
        C.screen_qpy("A" * 2_000_000, max_bytes=1_000_000)


def test_a_payload_that_passes_the_screen_but_breaks_the_reader_is_a_400_and_the_pool_lives():
    """Valid framing, garbage body: the reader fails inside a sandboxed worker; the user gets one line."""
    good = raw(dynamic())
    at = circuit_header_at(good)
    garbage = good[: at + 37] + bytes([0xFF]) * (len(good) - at - 37)
    pool = ParserPool(size=1)
    try:
        with pytest.raises(CircuitError, match="qpy payload could not be read|could not be parsed"):
            pool.parse(b64(garbage), "qpy")
        facts = pool.parse(b64(good), "qpy")  # the same pool answers the next one
        assert (facts.format, facts.num_qubits, facts.num_clbits) == ("qpy", 3, 3)
    finally:
        pool.close()


def test_numpy_payloads_are_never_unpickled():
    """An object array hidden where QPY keeps numpy data (a unitary's matrix) is refused, not unpickled."""
    import numpy as np
    from qiskit.circuit.library import UnitaryGate

    qc = QuantumCircuit(2)
    qc.append(UnitaryGate(np.eye(4)), [0, 1])
    data = raw(qc)
    at = data.index(b"\x93NUMPY")  # where the matrix lives: an .npy blob (magic, version, header length)
    (header_len,) = struct.unpack_from("<H", data, at + 8)
    size = 10 + header_len + 16 * 16  # 4x4 complex128
    evil = io.BytesIO()
    np.save(evil, np.array([{"x": 1}, None], dtype=object), allow_pickle=True)
    payload = evil.getvalue()
    assert len(payload) <= size
    hostile = data[:at] + payload + b"." * (size - len(payload)) + data[at + size:]
    with pytest.raises(CircuitError, match="could not be read"):
        C.parse_circuit(b64(hostile), "qpy")
