"""Whether a circuit is already for a device (an ISA circuit of its Target).

IBM's backends run only such circuits, as they are; so do ours (``backend.run``
refuses others before sending them, the runner checks again, since a circuit is a
user's input). The runner also uses it to run a circuit transpiled by the user
without transpiling it again, which would move it off the qubits the user chose.
"""

from __future__ import annotations

from typing import Any


def not_for_device(qc: Any, target: Any) -> str | None:
    """Why ``qc`` is not an ISA circuit for ``target`` (one line), or None when every instruction,
    control-flow bodies included, is native on the qubits it acts on."""
    from qiskit.circuit import ControlFlowOp

    if qc.num_qubits > target.num_qubits:
        return f"it has {qc.num_qubits} qubits, the device {target.num_qubits}"

    def walk(circuit: Any, outer: list[int] | None) -> str | None:
        for inst in circuit.data:
            qargs = [circuit.find_bit(q).index for q in inst.qubits]
            if outer is not None:
                qargs = [outer[q] for q in qargs]
            op = inst.operation
            if isinstance(op, ControlFlowOp):
                if op.name not in target.operation_names:
                    return f"{op.name} is not supported by the device"
                for block in op.blocks:
                    wrong = walk(block, qargs)
                    if wrong:
                        return wrong
                continue
            if op.name == "barrier":
                continue
            if not target.instruction_supported(op.name, tuple(qargs)):
                return f"{op.name} on qubits {tuple(qargs)} is not a native instruction of the device"
        return None

    return walk(qc, None)
