"""The widget says how the counts were computed in plain words, not as phase jargon."""

from __future__ import annotations

import re

from jupyter_vqpu.kernel.widget import simulated_text


def test_the_simulation_line_is_a_plain_sentence():
    text = simulated_text({"device": "CPU", "method": "density_matrix"},
                          {"load": 0.114, "noise_model": 0.487, "simulate": 0.2, "total": 0.853})
    assert text == "simulated on the CPU with a density matrix in 0.85 s"
    assert not re.search(r"\b(noise_model|load|ms)\b|_", text)  # no phase names, no identifiers


def test_unknown_methods_and_missing_timings_still_read():
    assert simulated_text({"device": "GPU", "method": "statevector"}, {}) == "simulated on a GPU with a state vector"
    assert simulated_text({"method": "some_new_method"}, {"total": 1}) == "simulated on Aer with some new method in 1.00 s"
