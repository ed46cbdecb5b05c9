"""A warm worker: one long-lived process that runs bundle after bundle.

    python -m jupyter_vqpu_agent.worker      (bundle directories on stdin, one per line)

Importing Qiskit and Aer costs seconds; building a 156-qubit Target or a noise
model costs more. A warm worker pays that once and keeps ``jupyter_vqpu_agent.runner``'s
caches between tasks. Each task still reads only its bundle and writes only its
result.json, exactly as ``python -m jupyter_vqpu_agent.runner`` would.

Protocol on the ORIGINAL stdout, one JSON object per line:
``{"ready": true, "pid": N}`` once warm, then ``{"bundle": PATH, "ok": BOOL}``
per input line. Everything else anyone prints (Qiskit, Aer, the native OpenQASM
importer's diagnostics) lands on stderr, so it cannot corrupt the protocol.
"""

from __future__ import annotations

import json
import os
import sys


def _protocol_stream():
    """Keep the real stdout for the protocol and point fd 1 (and sys.stdout) at stderr."""
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    sys.stdout.flush()
    os.dup2(2, 1)
    return proto


def _warm_up() -> None:
    """Import and exercise the heavy machinery once, so the first task is not the slow one."""
    from qiskit import QuantumCircuit, transpile
    from qiskit_aer import AerSimulator

    import jupyter_vqpu_agent.noise
    import jupyter_vqpu_agent.runner
    from jupyter_vqpu.core import circuits

    circuits.parse_circuit('OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[1] q;\nbit[1] c;\nh q[0];\nc[0] = measure q[0];\n')
    qc = QuantumCircuit(1, 1)
    qc.h(0)
    qc.measure(0, 0)
    with jupyter_vqpu_agent.runner._builtin_transpiler_plugins_only():
        tqc = transpile(qc, basis_gates=["h", "measure"], seed_transpiler=1)
    AerSimulator(seed_simulator=1).run(tqc, shots=1).result()
    jupyter_vqpu_agent.noise.warm_up()
    jupyter_vqpu_agent.runner._device_info()


def main(argv: list[str] | None = None) -> int:
    from jupyter_vqpu_agent.private import UMASK

    os.umask(UMASK)  # a job process: whatever it writes is private
    proto = _protocol_stream()
    _warm_up()
    from pathlib import Path

    from jupyter_vqpu_agent.runner import run_bundle

    proto.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    proto.flush()
    for line in sys.stdin:
        path = line.strip()
        if not path:
            continue
        try:
            ok = bool(run_bundle(Path(path)).get("ok"))
        except Exception as exc:  # run_bundle already guards; this only keeps the worker alive
            print(f"vqpu worker: {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
            ok = False
        sys.stderr.flush()
        proto.write(json.dumps({"bundle": path, "ok": ok}) + "\n")
        proto.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
