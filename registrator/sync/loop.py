"""The sync loop's machinery: its inbox, its turn, the carriers of its writes, its clock.

Other threads hand the loop work only as messages (after Nomad's service client, whose
callers send operations to its loop). The loop's rounds run one at a time, on whichever
thread posts while no round runs (a publisher waits for the turn): it takes the turn, runs
rounds until the inbox is empty, and gives the turn back. A dedicated loop thread would add a hand-off between two Python
threads to every event, and then another to the write pool: each a wake-up and a GIL
hand-over, which on a loaded host cost more than the rest of the event's path
(benchmarks/README.md, issue 29).
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from registrator.sync.pool import Pool

log = logging.getLogger(__name__)

Message = Callable[[], None]
T = TypeVar("T")
W = TypeVar("W")


class Inbox:
    """Messages in the order they were posted, and whose turn it is to run them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()  # guards only these fields: the rounds own the rest
        self._messages: list[Message] = []
        self._jobs: list[Message] = []  # for the clock's thread (reads of the agent)
        self._turn_taken = False
        self._waiting = 0  # publishers waiting for the turn
        self._closed = False

    def post(self, message: Message, wait: bool = False) -> bool:
        """Queue the message; True when the caller took the turn and must run the rounds.
        With ``wait`` the caller waits for the turn (a round only keeps books: short)."""
        with self._cond:
            self._messages.append(message)
            while self._turn_taken:
                if not wait:
                    return False
                self._waiting += 1
                self._cond.wait()
                self._waiting -= 1
            self._turn_taken = True
            return True

    def take(self) -> list[Message]:
        """For the thread holding the turn: the messages posted since its last take; none
        gives the turn back (and wakes only a publisher waiting for it: waking the clock's
        thread too, at every event, cost two thread switches for nothing)."""
        with self._cond:
            messages, self._messages = self._messages, []
            if not messages:
                self._turn_taken = False
                if self._waiting:
                    self._cond.notify_all()
            return messages

    def give(self, job: Message) -> None:
        """A job for the clock's thread, which runs it as it wakes."""
        with self._cond:
            self._jobs.append(job)
            self._cond.notify_all()

    def sleep(self, until: float) -> list[Message] | None:
        """For the loop's clock: wait until the monotonic time ``until`` (inf: until woken)
        unless a job is given; the jobs given, None once closed."""
        with self._cond:
            wait = until - time.monotonic()
            if not self._closed and not self._jobs and wait > 0:
                self._cond.wait(None if wait == math.inf else wait)
            jobs, self._jobs = self._jobs, []
            return None if self._closed else jobs

    def wake(self) -> None:
        """The clock's next time changed: the sleeper looks at it again."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Loop(Generic[W]):
    """Rounds run one at a time on the threads that post; each round ends with
    ``end_round()``, which hands out writes (``W``). A carrier sends them itself (a worker,
    a caller who waits, a pool thread); ``send(write)`` returns the message that folds its
    result in. ``clock()`` says when the next timed message (``tick``) is due; the clock
    runs on a thread of its own, ``name``, which also runs the jobs ``submit`` gives it."""

    def __init__(
        self,
        end_round: Callable[[], Iterable[W]],
        send: Callable[[W], Message],
        pool_size: int,
        clock: Callable[[], float],
        tick: Message,
        name: str,
    ) -> None:
        self._inbox = Inbox()
        self._end_round = end_round
        self._send = send
        self._clock = clock
        self._tick = tick
        self._pool = Pool(pool_size, f"{name}-write")
        self._spread = pool_size  # the pool threads started for writes nobody carries
        # Writes handed out, waiting for a carrier (a deque: atomic appends and pops; only a
        # round appends, while it holds the turn).
        self._ready: collections.deque[W] = collections.deque()
        self.thread = threading.Thread(target=self._clock_loop, name=name, daemon=True)
        self.thread.start()

    def post(self, message: Message, carry: bool = True) -> None:
        """Hand the loop a message and run the rounds here if no other thread does. Then a
        carrier (``carry``) sends the writes handed out itself, as an event's worker did
        before; any other caller leaves them to the pool."""
        if self._inbox.post(message, wait=carry):
            self._rounds()
        if carry:
            self.carry()
        else:
            for _ in range(min(len(self._ready), self._spread)):
                self._pool.submit(self.carry)

    def ask(self, question: Callable[[], T]) -> T:
        """An answer computed in a round, from the state the loop owns."""
        answer: list[T] = []
        done = threading.Event()

        def ask() -> None:
            answer.append(question())
            done.set()

        self.post(ask, carry=False)
        done.wait()
        return answer[0]

    def submit(self, job: Callable[[], None]) -> None:
        """Work that is not a write (a read of the agent), for the clock's thread: one at a
        time, as the reads are, and no thread (its stack, its malloc arena) more for it."""
        self._inbox.give(job)

    def wake(self) -> None:
        """The clock's next time changed."""
        self._inbox.wake()

    def close(self, timeout: float) -> None:
        self._inbox.close()
        self.thread.join(timeout)
        self._pool.close()

    def _rounds(self) -> None:
        """With the turn: run what was posted until nothing is left."""
        while messages := self._inbox.take():
            for message in messages:
                try:
                    message()
                except Exception:
                    log.exception("sync loop: unexpected error")
            self._ready.extend(self._end_round())

    def carry(self) -> None:
        """Send the writes handed out until none is left, each result folded in (here,
        when no other thread runs the rounds)."""
        while True:
            try:
                write = self._ready.popleft()
            except IndexError:
                return
            if self._inbox.post(self._send(write)):
                self._rounds()

    def _clock_loop(self) -> None:
        ticked = math.nan
        while True:
            jobs = self._inbox.sleep(math.inf if self._clock() == ticked else self._clock())
            if jobs is None:
                return
            for job in jobs:
                try:
                    job()
                except Exception:
                    log.exception("sync loop: unexpected error")
            due = self._clock()
            if due != ticked and time.monotonic() >= due:
                ticked = due
                self.post(self._tick, carry=False)
