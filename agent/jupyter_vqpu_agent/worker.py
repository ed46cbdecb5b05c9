"""A warm worker: one long-lived process that runs bundle after bundle.

    python -m jupyter_vqpu_agent.worker      (bundle directories on stdin, one per line)

Importing Qiskit and Aer costs seconds; building a 156-qubit Target or a noise
model costs more. A warm worker pays that once and keeps ``jupyter_vqpu_agent.runner``'s
caches between tasks. Each task still reads only its bundle and writes only its
result.json, exactly as ``python -m jupyter_vqpu_agent.runner`` would.

The line protocol on the ORIGINAL stdout (``ready``, then one answer per
bundle; everything else anyone prints lands on stderr) is
:mod:`jupyter_vqpu_agent.worker_protocol`'s.
"""

from __future__ import annotations

import os
import sys

from jupyter_vqpu_agent.worker_protocol import RunBundle, serve


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
    with jupyter_vqpu_agent.runner.builtin_transpiler_plugins_only():
        tqc = transpile(qc, basis_gates=["h", "measure"], seed_transpiler=1)
    AerSimulator(seed_simulator=1).run(tqc, shots=1).result()
    jupyter_vqpu_agent.noise.warm_up()
    jupyter_vqpu_agent.runner.device_info()


def _load() -> RunBundle:
    _warm_up()
    from jupyter_vqpu_agent.runner import run_bundle

    return lambda path: bool(run_bundle(path).get("ok"))


def main(argv: list[str] | None = None) -> int:
    from jupyter_vqpu_agent.private import UMASK

    os.umask(UMASK)  # a job process: whatever it writes is private
    return serve(_load, "vqpu worker")


if __name__ == "__main__":
    sys.exit(main())
