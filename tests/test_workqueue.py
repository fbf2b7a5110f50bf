"""The keyed work queue: order, coalescing, batches, and waiting as queue items (add_after,
per-key backoff) instead of timer threads."""

from __future__ import annotations

import threading
import time

from registrator.sync.records import Records
from registrator.sync.workqueue import WorkQueue
from tests.conftest import wait_until


def test_a_key_is_coalesced_and_never_handed_out_twice_at_once():
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add("a")
    queue.add("b")
    assert queue.get(0) == "a"
    queue.add("a")  # changed while processing: handed out again after done()
    assert queue.get(0) == "b"
    assert queue.get(0) is None
    queue.done("a")
    assert queue.get(0) == "a"


def test_add_after_hands_the_key_out_once_due_and_not_before():
    queue: WorkQueue[str] = WorkQueue()
    started = time.monotonic()
    queue.add_after("late", 0.3)
    assert queue.get(0.05) is None
    assert queue.get(5) == "late"
    assert time.monotonic() - started >= 0.3


def test_add_after_keeps_the_earliest_due_time_and_a_plain_add_comes_first():
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("x", 30)
    queue.add_after("x", 0.1)
    queue.add_after("x", 60)  # later than what is asked already: no change
    assert queue.get(5) == "x"
    queue.done("x")
    assert queue.get(0.3) is None  # the 30 s and 60 s asks were replaced, not kept


def test_a_waiting_worker_wakes_for_a_key_added_later_that_is_due_sooner():
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("slow", 60)
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get(10)))
    worker.start()
    queue.add_after("soon", 0.05)
    worker.join(10)
    assert got == ["soon"]


def test_retry_delays_grow_per_container_until_it_succeeded():
    """The retry backoff lives in the container's record (the queue only waits)."""
    records = Records()
    delays = [records.retry_delay("task", 1.0, 4.0) for _ in range(4)]
    assert 0.5 <= delays[0] <= 1.0
    assert 1.0 <= delays[1] <= 2.0
    assert 2.0 <= delays[2] <= 4.0 and 2.0 <= delays[3] <= 4.0  # capped
    assert 0.5 <= records.retry_delay("other", 1.0, 4.0) <= 1.0  # each its own backoff
    records.retried("task")
    assert 0.5 <= records.retry_delay("task", 1.0, 4.0) <= 1.0
    records.retry_delay("gone", 1.0, 4.0)
    records.retry_delay("gone", 1.0, 4.0)
    records.drop("gone")  # dropped with the rest of its record
    assert 0.5 <= records.retry_delay("gone", 1.0, 4.0) <= 1.0


def test_batch_completes_after_each_key_was_processed_since():
    queue: WorkQueue[str] = WorkQueue()
    finished = threading.Event()
    batch = queue.add_batch(["a", "b"], on_done=finished.set)
    for _ in range(2):
        key = queue.get(1)
        assert key is not None
        queue.done(key)
    wait_until(finished.is_set, 5, "the batch's on_done")
    assert batch.wait(0)


def test_shutdown_wakes_workers_and_drops_what_waits():
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("later", 0.05)
    got: list[str | None] = ["not yet"]
    worker = threading.Thread(target=lambda: got.__setitem__(0, queue.get()))
    queue.shutdown()
    worker.start()
    worker.join(5)
    assert got == [None]
