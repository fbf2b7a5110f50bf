"""A keyed work queue (after Kubernetes' client-go workqueue).

A key is never handed to two workers at once, so one container's events apply in order; a
key added again while it is queued is coalesced (the worker reads the container's current
state anyway: level-triggered), and one added while it is being processed is queued again
when that processing ends, so no change is lost.

Waiting is a queue item too: ``add_after`` makes a key due later (a drain's grace period, a
placement the ECS agent cannot give yet, retried with the backoff kept in the container's
record, the next periodic re-list). No timer thread: the workers' ``get`` waits for the
earliest due key.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Batch(Generic[K]):
    """Completes once every key it was made with has been processed after it was made."""

    def __init__(self, keys: Iterable[K], on_done: Callable[[], None] | None = None) -> None:
        self.remaining = set(keys)
        self._done = threading.Event()
        self._on_done = on_done

    def _finish(self, key: K) -> bool:
        self.remaining.discard(key)
        return not self.remaining

    def _complete(self) -> None:
        self._done.set()
        if self._on_done is not None:
            self._on_done()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)


class WorkQueue(Generic[K]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._order: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._batches: list[Batch[K]] = []
        self._later: list[tuple[float, int, K]] = []  # (due, tie-breaker, key), a heap
        self._due: dict[K, float] = {}  # key -> its earliest due time in _later
        self._tie = itertools.count()
        self._shut = False

    def add(self, key: K) -> None:
        with self._cond:
            self._add(key)

    def _add(self, key: K) -> None:
        if self._shut or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._order.append(key)
            self._cond.notify()

    def add_after(self, key: K, delay: float) -> None:
        """Queue ``key`` once ``delay`` seconds have passed (at the earliest due time asked)."""
        if delay <= 0:
            self.add(key)
            return
        due = time.monotonic() + delay
        with self._cond:
            if self._shut or self._due.get(key, due + 1) <= due:
                return
            self._due[key] = due
            heapq.heappush(self._later, (due, next(self._tie), key))
            self._cond.notify()  # a waiting worker may have to wake sooner

    def add_batch(self, keys: Iterable[K], on_done: Callable[[], None] | None = None) -> Batch[K]:
        """Queue every key; the batch completes when all of them were processed since."""
        batch = Batch(keys, on_done)
        if not batch.remaining:
            batch._complete()
            return batch
        with self._cond:
            self._batches.append(batch)
            for key in batch.remaining:
                self._add(key)
        return batch

    def get(self, timeout: float | None = None) -> K | None:
        """The next key to process, or None when shut down (or on timeout)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._shut:
                wait = self._release_due()
                if self._order:
                    key = self._order.popleft()
                    self._dirty.discard(key)
                    self._processing.add(key)
                    return key
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)
            return None

    def _release_due(self) -> float | None:
        """Move due keys to the queue; the seconds until the next one (None: none waits)."""
        now = time.monotonic()
        while self._later:
            due, _, key = self._later[0]
            if due > now:
                return due - now
            heapq.heappop(self._later)
            if self._due.get(key) == due:
                del self._due[key]
                self._add(key)
        return None

    def done(self, key: K) -> None:
        completed: list[Batch[K]] = []
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._order.append(key)  # changed while processing: go again
                self._cond.notify()
            else:
                for batch in self._batches:
                    if key in batch.remaining and batch._finish(key):
                        completed.append(batch)
                if completed:
                    self._batches = [b for b in self._batches if b not in completed]
        for batch in completed:
            batch._complete()

    def shutdown(self) -> None:
        with self._cond:
            self._shut = True
            self._later.clear()
            self._due.clear()
            self._cond.notify_all()
