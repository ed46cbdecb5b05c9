"""The warm-worker line protocol, both ends, with a real worker process."""

from __future__ import annotations

import subprocess
import sys
import time

from jupyter_vqpu_agent.worker_protocol import next_message, read_message

# A worker whose "runner" prints to stdout while loading and while running: none of it may reach the protocol.
WORKER = r"""
import sys
from jupyter_vqpu_agent.worker_protocol import serve

def load():
    print("loading... {not json")
    def run(path):
        print("running", path, '{"bundle": "forged", "ok": true}')
        if path.name == "boom":
            raise RuntimeError("the runner broke")
        if path.name == "exit3":
            raise SystemExit(3)
        return path.name == "good"
    return run

sys.exit(serve(load, "test worker"))
"""


def test_next_message_skips_noise_and_keeps_a_partial_line():
    buf = bytearray(b'Qiskit says hi\n{"ready": true, "pid": 7}\n{broken json\n[1, 2]\n{"bundle": "/b", "ok": fal')
    assert next_message(buf) == {"ready": True, "pid": 7}
    assert next_message(buf) is None  # the rest is noise and half a line
    assert bytes(buf) == b'{"bundle": "/b", "ok": fal'
    buf += b'se}\n'
    assert next_message(buf) == {"bundle": "/b", "ok": False}


def test_a_worker_answers_each_bundle_and_what_it_prints_goes_to_stderr(tmp_path):
    err = open(tmp_path / "worker.err", "wb")
    proc = subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=err, bufsize=0)
    try:
        deadline = time.monotonic() + 120
        hello = read_message(proc, deadline)
        assert hello == {"ready": True, "pid": proc.pid}
        answers = []
        for name in ("good", "bad", "boom", "exit3"):
            proc.stdin.write(f"{tmp_path / name}\n".encode())
            answers.append(read_message(proc, deadline))
        assert answers == [{"bundle": str(tmp_path / n), "ok": ok}
                           for n, ok in (("good", True), ("bad", False), ("boom", False), ("exit3", False))]
        proc.stdin.close()
        assert proc.wait(60) == 0
        assert read_message(proc, time.monotonic() + 5) is None  # EOF
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err.close()
    printed = (tmp_path / "worker.err").read_text()
    assert "loading... {not json" in printed and '"forged"' in printed
    assert "test worker: " in printed and "RuntimeError: the runner broke" in printed


def test_the_worker_hands_freed_heap_back_after_each_answer(monkeypatch, capsys):
    """malloc_trim runs once per bundle, after its answer is sent (the answer never waits for it)."""
    import io

    from jupyter_vqpu_agent import worker_protocol as wp

    events: list[str] = []
    monkeypatch.setattr(wp, "_TRIM", lambda pad: events.append(f"trim {pad}") or 1)
    monkeypatch.setattr(wp, "_send", lambda proto, message: events.append(f"send {sorted(message)}"))
    monkeypatch.setattr(wp, "protocol_stream", io.StringIO)
    monkeypatch.setattr(wp.sys, "stdin", io.StringIO("/a\n\n/b\n"))
    assert wp.serve(lambda: (lambda path: True), "test worker") == 0
    assert events == ["send ['pid', 'ready']", "send ['bundle', 'ok']", "trim 0", "send ['bundle', 'ok']", "trim 0"]
    monkeypatch.setattr(wp, "_TRIM", False)  # no glibc: nothing to call, nothing raised
    wp.release_freed_memory()
