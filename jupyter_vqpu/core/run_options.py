"""The run options a task may carry (``options`` on a submission), and their one check.

An option is honoured or refused with one line, never ignored: the control plane
checks the ones it knows at submission (a bad method is a 400, not a failed job),
and the runner refuses any it does not know before it simulates, so an option a
newer client sends to an older runner fails loudly instead of running something
else than asked.

    method               one of METHODS ("automatic" lets the runner choose the fastest exact method;
                         "aer_default" is Aer's own choice, and a named method is that method, both
                         on the whole-device model: counts identical to AerSimulator.from_backend(device)
                         (with that method) at the same seed)
    device               "CPU" or "GPU" (the runner falls back to the CPU, saying why)
    noise                false: an ideal run of the same transpiled circuit (Qiskit's noise_model=None)
    skip_transpilation   true: the circuits are already for the device (ISA); run them as they
                         are, keeping their layout, and fail if they are not
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_vqpu.core.errors import InvalidRequest, LimitExceeded

METHODS = ("automatic", "aer_default", "statevector", "density_matrix", "stabilizer", "matrix_product_state", "extended_stabilizer")
DEVICES = ("CPU", "GPU")
#: Options the real runner knows; anything else is refused by it (test runners read their own).
KNOWN = ("method", "device", "noise", "skip_transpilation")
MAX_OPTIONS_BYTES = 4096


def problem(name: str, value: Any) -> str | None:
    """What is wrong with one known option's value (one line), or None."""
    if name == "method" and value not in METHODS:
        return f"unknown simulation method {value!r}; use one of {', '.join(METHODS)}"
    if name == "device" and (not isinstance(value, str) or value.strip().upper() not in DEVICES):
        return f"unknown simulator device {value!r}; use CPU or GPU"
    if name in ("noise", "skip_transpilation") and not isinstance(value, bool):
        return f"option {name} must be true or false, got {value!r}"[:200]
    return None


def check(options: Any) -> dict[str, Any]:
    """The options of a submission, bounded and with every known option's value checked."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise InvalidRequest(f"options must be an object, got {type(options).__name__}", 'e.g. {"method": "statevector"}')
    size = len(json.dumps(options))
    if size > MAX_OPTIONS_BYTES:
        raise LimitExceeded(f"the options are {size} bytes, over the limit of {MAX_OPTIONS_BYTES}", "send fewer options")
    for name, value in options.items():
        wrong = problem(name, value) if name in KNOWN else None
        if wrong:
            raise InvalidRequest(wrong, f"the run options are {', '.join(KNOWN)}")
    return dict(options)


def unknown(options: dict[str, Any]) -> list[str]:
    """The options the runner does not know (it refuses them)."""
    return sorted(set(options) - set(KNOWN))
