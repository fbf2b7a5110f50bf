"""The sync loop's inbox: the one place other threads hand it work (after Nomad's service
client, whose callers only send operations to its loop)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")
Message = Callable[[], None]


class Inbox:
    """Messages (callables run on the loop's thread) in the order they were posted."""

    def __init__(self) -> None:
        self._cond = threading.Condition()  # guards only the messages: the loop owns the rest
        self._messages: list[Message] = []
        self._closed = False

    def post(self, message: Message) -> None:
        with self._cond:
            self._messages.append(message)
            self._cond.notify()

    def ask(self, question: Callable[[], T]) -> T:
        """An answer computed on the loop's thread (never call it from there)."""
        answer: Future[T] = Future()
        self.post(lambda: answer.set_result(question()))
        return answer.result()

    def take(self, until: float) -> list[Message] | None:
        """Every message posted so far, waiting for one until the monotonic time ``until``
        (inf: as long as it takes); None once closed and empty."""
        with self._cond:
            while not self._messages and not self._closed:
                wait = until - time.monotonic()
                if wait <= 0:
                    break
                self._cond.wait(None if wait == math.inf else wait)
            messages, self._messages = self._messages, []
            if self._closed and not messages:
                return None
            return messages

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
