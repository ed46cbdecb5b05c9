"""A job runner whose parser crashes natively, for the test that such a crash ends as a failed task.

Run as ``python -m tests.integration.crashing_runner BUNDLE_DIR``. It hands
Qiskit's native OpenQASM 3 importer what ``circuits.screen`` exists to refuse
(9,000 nested brackets), i.e. what would happen in a job if the screen ever
missed a text that overflows the importer's stack: the process dies of a
signal without writing a result.
"""

from __future__ import annotations

import sys
import warnings

HOSTILE = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\nrz(' + "(" * 9000 + "1" + ")" * 9000 + ") q[0];\n"

if __name__ == "__main__":
    print(f"crashing runner for {sys.argv[1:]}", flush=True)
    warnings.simplefilter("ignore")
    from qiskit import qasm3

    qasm3.loads_experimental(HOSTILE)
    print("crashing runner: the importer survived", file=sys.stderr, flush=True)
    sys.exit(3)
