"""The shared follow loop: what a watcher sees, whatever the transport."""

from __future__ import annotations

from jupyter_vqpu.core.lifecycle import follow


def test_a_queued_task_is_re_read_although_none_of_its_own_events_arrive():
    views = iter([{"state": "queued", "queue_position": p} for p in (3, 2, 1)] + [{"state": "completed"}])
    waits: list[float] = []

    def only_other_users_events(seconds: float) -> bool:
        waits.append(seconds)
        return False  # the stream moved, but never for this task

    seen = [v.get("queue_position") or v["state"] for v in
            follow("fez.x", lambda: next(views), only_other_users_events, timeout=30, hint="")]
    assert seen == [3, 2, 1, "completed"]
    assert max(waits) <= 3.0  # a queued watcher never sleeps through 20 s of silence


def test_a_running_task_is_re_read_only_when_something_changed():
    views = iter([{"state": "running"}, {"state": "completed"}])
    answers = iter([False, False, True])
    seen = [v["state"] for v in follow("fez.x", lambda: next(views), lambda s: next(answers), timeout=30, hint="")]
    assert seen == ["running", "completed"]
