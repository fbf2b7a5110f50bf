"""When a container keeps dying soon after it starts: the hold (pure rules, no clock read).

A crash-looping container would otherwise cost two agent writes per start (register, then
deregister), and every one of them is a consul-template render and an nginx reload on every
host that reads the service. Held, its services are removed once and not registered again
until a start stays up for the hold time.

The definitions, and why:

- A **run** is one start to the next ``die`` of a container, by Docker's own event times.
- A run is **short** when it ends less than the hold time after its start. The default hold
  is 10 s, the time after which Docker resets its restart backoff: Docker itself takes a run
  of 10 s as the end of a crash loop.
- A run **crashed** when the container died by itself with an exit code other than 0: no
  stop signal (``kill`` event) was sent to it during the run. ``docker stop``, ``docker
  restart``, a deploy's stop neither counts as a crash nor proves anything, whatever the run
  lasted; nor does a job that exits 0 at once (Docker's ``on-failure`` does not restart it
  either). A run that lasted the hold time (stopped or not) ends a streak.
- A start is **held** after ``FLAP_RUNS`` (2) short crashed runs in a row of the same
  container (Docker's restart policy restarting it), each ending less than ``WINDOW`` before
  the next one began, or of containers sharing a service name with it on this host (a
  scheduler such as ECS replacing a container that died young by a new one), each ending
  less than the hold time before the next one began. Two, so that a service that crashed
  once registers as fast as without the hold; at most four writes (register, deregister,
  twice) before the hold.
- ``WINDOW`` is 5 minutes: longer than Docker's longest restart backoff (1 minute), so a
  container Docker keeps restarting stays held through the longest wait, and short enough
  that two unrelated crashes far apart do not add up to a hold. A replacement must follow
  closer, within the hold time: a scheduler starts one at once, and slows down by itself
  when they keep failing (ECS throttles its launches), while other containers that merely
  share a service name (a test's default name on a shared engine, another deploy) must not
  hold one another for long.
- The hold is **released** when a start stays up for the hold time: the container is looked
  at again then, and registered at once.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Collection, Iterable, Iterator
from typing import NamedTuple

DEFAULT_HOLD = 10.0  # seconds; Docker resets its restart backoff after a run of 10 s
FLAP_RUNS = 2  # short crashed runs in a row that hold the next start
WINDOW = 300.0  # seconds between two runs of one streak at most (Docker's max backoff: 60)
KEEP = 256  # recent runs kept at most


class Run(NamedTuple):
    """One run of a container, from its start to its ``die`` (seconds, Docker's clock)."""

    container_id: str
    name: str  # the container's name, for the log
    services: Collection[str]  # its service names, when its services were known
    started: float
    ended: float
    crashed: bool  # died by itself: no stop signal was sent during the run
    held: bool = False  # its services were held during the run

    @property
    def lasted(self) -> float:
        return self.ended - self.started


class RecentRuns:
    """The runs that may still count (ended within ``window``, the newest ``keep`` at most),
    oldest first, and how many of them crashed. The count is kept as runs come and go: every
    start looks at it, and a host without crashes then costs no look at the runs."""

    def __init__(self, runs: Iterable[Run] = (), window: float = WINDOW, keep: int = KEEP) -> None:
        self._runs: collections.deque[Run] = collections.deque()
        self._window, self._keep = window, keep
        self.crashes = 0
        for run in runs:
            self._runs.append(run)
            self.crashes += run.crashed

    def add(self, run: Run, now: float) -> None:
        """A run ended (runs come in the order Docker's ``die`` events do: by their end)."""
        self._runs.append(run)
        self.crashes += run.crashed
        runs = self._runs
        while runs and (len(runs) > self._keep or now - runs[0].ended > self._window):
            self.crashes -= runs.popleft().crashed

    def __iter__(self) -> Iterator[Run]:
        return iter(self._runs)

    def __len__(self) -> int:
        return len(self._runs)


class Hold(NamedTuple):
    """The verdict on one start: held until ``until`` (0: not held), and the evidence."""

    until: float = 0.0
    streak: tuple[Run, ...] = ()  # the short crashed runs in a row before it, newest first
    continued: bool = False  # the newest of them was held too: the hold was already said

    @property
    def held(self) -> bool:
        return self.until > 0


def related(runs: Iterable[Run], container_id: str, services: frozenset[str]) -> list[Run]:
    """The runs that speak about this container: its own, and those of containers that
    share a service name with it; newest end first."""
    chosen = [
        r for r in runs if r.container_id == container_id or not services.isdisjoint(r.services)
    ]
    return sorted(chosen, key=lambda r: r.ended, reverse=True)


def streak(
    runs: Iterable[Run],
    container_id: str,
    services: frozenset[str],
    started: float,
    hold: float,
    window: float = WINDOW,
) -> tuple[Run, ...]:
    """The short crashed runs in a row that ended before a start at ``started``, newest
    first: a run that lasted ``hold`` ends the streak, so does a gap over ``window`` (over
    ``hold`` before another container's run); a short run stopped on purpose is passed over."""
    found: list[Run] = []
    edge = started
    for run in related(runs, container_id, services):
        if run.ended > started:
            continue  # another container's, ended after this start: not before it
        gap = window if run.container_id == container_id else hold
        if edge - run.ended > gap or run.lasted >= hold:
            break
        if run.crashed:
            found.append(run)
            edge = run.started
    return tuple(found)


def assess(
    runs: RecentRuns,
    container_id: str,
    services: frozenset[str],
    started: float,
    now: float,
    hold: float,
    window: float = WINDOW,
) -> Hold:
    """Whether the run that began at ``started`` is held at ``now``: after ``FLAP_RUNS``
    short crashed runs in a row, until it has lasted ``hold`` (0 turns the hold off)."""
    if hold <= 0 or started <= 0 or now >= started + hold:
        return Hold()
    if runs.crashes < FLAP_RUNS:
        return Hold()  # too few crashes on the whole host: no need to sort out whose
    found = streak(runs, container_id, services, started, hold, window)
    if len(found) < FLAP_RUNS:
        return Hold()
    return Hold(started + hold, found, found[0].held)


def seen_held(started: float, restarts: int, previous_end: float, now: float, hold: float) -> float:
    """What one look at Docker tells (``plan`` and ``resync``, which keep no history): a run
    younger than ``hold`` after the restart policy restarted the container ``FLAP_RUNS``
    times or more, the last within ``WINDOW``, is held until ``started + hold`` (0: not)."""
    if hold <= 0 or started <= 0 or restarts < FLAP_RUNS or now >= started + hold:
        return 0.0
    return started + hold if 0 < started - previous_end <= WINDOW else 0.0


def evidence(hold: Hold, container_id: str) -> str:
    """What was seen, in words: ``3 restarts`` and/or ``2 replacements (a.1, a.2)``, with
    how long the runs lasted."""
    own = [r for r in hold.streak if r.container_id == container_id]
    others = [r for r in hold.streak if r.container_id != container_id]
    parts = []
    if own:
        parts.append(f"{len(own)} restart{'s' if len(own) > 1 else ''}")
    if others:
        names = ", ".join(dict.fromkeys(r.name or r.container_id[:12] for r in reversed(others)))
        parts.append(f"{len(others)} replacement{'s' if len(others) > 1 else ''} ({names})")
    longest = max((r.lasted for r in hold.streak), default=0.0)
    return f"{' and '.join(parts)} in a row, each dead within {longest:.1f}s of its start"


def held_detail(seen: str, until: float, hold: float) -> str:
    """The ``held`` reason's detail (explain, /containers): what was seen, what releases it."""
    at = time.strftime("%H:%M:%S UTC", time.gmtime(round(until)))  # as the JSON rounds it
    return f"{seen}; registered once this start stays up {hold:g}s (-flap-hold), at {at}"


def held_line(
    label: str, services: Iterable[str], verdict: Hold, container_id: str, hold: float
) -> str:
    """The one warning that says a container is held: which, what was seen, what releases it."""
    names = ", ".join(sorted(services))
    return (
        f"{label}: service {names} held out of Consul: {evidence(verdict, container_id)}; "
        f"registered once a start stays up {hold:g}s (-flap-hold)"
    )
