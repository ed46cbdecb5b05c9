"""The suite's way to end a server it started (tests/support.end_process) survives a refused SIGTERM.

A redis-server refuses SIGTERM while it writes its initial AOF (a replica just after a full sync) and
runs on; one SIGTERM and a wait failed a failover test's teardown in CI."""

from __future__ import annotations

import subprocess
import sys

from tests.support import end_process

# Refuses its first SIGTERM, as redis-server does mid-rewrite; exits 0 on the next.
STUBBORN = """
import signal, sys, time
refused = []
def on_term(*_):
    if refused:
        sys.exit(0)
    refused.append(1)
signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


def test_a_refused_sigterm_is_sent_again_before_any_sigkill():
    with subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout.readline().strip() == "ready"
        end_process(proc, grace_s=120)
    assert proc.returncode == 0  # the second SIGTERM ended it (a SIGKILL would read -9)


def test_a_process_that_never_exits_on_sigterm_is_killed_at_the_deadline():
    ignores = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n" \
              "while True:\n    time.sleep(0.05)\n"
    with subprocess.Popen([sys.executable, "-c", ignores], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout.readline().strip() == "ready"
        end_process(proc, grace_s=2)
    assert proc.returncode == -9
