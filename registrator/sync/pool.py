"""The write pool: up to ``size`` threads, started only when no thread is idle (each thread
that writes costs memory: its stack and its malloc arena) and kept for the next job."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

Job = Callable[[], None]


class Pool:
    def __init__(self, size: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._idle: queue.SimpleQueue[bool] = queue.SimpleQueue()  # one token per idle thread
        self._size = size
        self._name = name
        self._threads: list[threading.Thread] = []

    def submit(self, job: Job) -> None:
        self._jobs.put(job)
        try:
            self._idle.get_nowait()  # an idle thread takes it
            return
        except queue.Empty:
            pass
        if len(self._threads) < self._size:
            thread = threading.Thread(
                target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _work(self) -> None:
        while True:
            self._idle.put(True)
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:
                log.exception("%s: unexpected error", self._name)

    def close(self) -> None:
        """Threads end once done with what they hold; what waits is dropped."""
        for _ in self._threads:
            self._jobs.put(None)
