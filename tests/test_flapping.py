"""The hold for crash-looping containers, as a pure rule: what counts as a short run, a streak,
a replacement, and when a start is released."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from registrator.adapters.docker_source import ContainerEvent
from registrator.core.container import ContainerView, docker_time
from registrator.core.flapping import (
    DEFAULT_HOLD,
    FLAP_RUNS,
    WINDOW,
    Hold,
    RecentRuns,
    Run,
    assess,
    evidence,
    seen_held,
    streak,
)
from registrator.sync.records import Records
from tests.inspect_data import inspect

WEB = frozenset({"web"})
HOLD = DEFAULT_HOLD


def run(
    started: float,
    lasted: float,
    cid: str = "c1",
    crashed: bool = True,
    services: frozenset[str] = WEB,
    held: bool = False,
) -> Run:
    return Run(cid, f"name-{cid}", services, started, started + lasted, crashed, held)


def crash_loop(n: int, cid: str = "c1", lasted: float = 0.3, gap: float = 0.1) -> list[Run]:
    """``n`` runs of ``lasted`` seconds, ``gap`` apart, from t=1000."""
    return [run(1000 + i * (lasted + gap), lasted, cid) for i in range(n)]


def next_start(runs: list[Run], gap: float = 0.1) -> float:
    return max(r.ended for r in runs) + gap


def test_a_first_start_and_a_single_crash_are_not_held():
    assert not assess(RecentRuns([]), "c1", WEB, 1000, 1000, HOLD).held
    one = crash_loop(1)
    start = next_start(one)
    assert not assess(RecentRuns(one), "c1", WEB, start, start, HOLD).held


def test_two_short_crashes_in_a_row_hold_the_next_start_until_it_stays_up():
    runs = crash_loop(FLAP_RUNS)
    start = next_start(runs)
    verdict = assess(RecentRuns(runs), "c1", WEB, start, start + 0.5, HOLD)
    assert verdict.held and verdict.until == start + HOLD
    assert [r.started for r in verdict.streak] == sorted((r.started for r in runs), reverse=True)
    assert not verdict.continued
    assert not assess(RecentRuns(runs), "c1", WEB, start, start + HOLD, HOLD).held  # released


def test_the_hold_off_holds_nothing():
    runs = crash_loop(10)
    start = next_start(runs)
    assert assess(RecentRuns(runs), "c1", WEB, start, start, 0) == Hold()


def test_a_run_that_lasted_the_hold_time_ends_the_streak():
    runs = [*crash_loop(2), run(1001, HOLD), run(1001 + HOLD + 0.1, 0.3)]
    start = next_start(runs)
    assert len(streak(runs, "c1", WEB, start, HOLD)) == 1
    assert not assess(RecentRuns(runs), "c1", WEB, start, start, HOLD).held


def test_stops_on_purpose_are_neither_crashes_nor_proof():
    """docker stop/restart after a few seconds: passed over, the streak goes on across it."""
    stopped = [run(1000 + 2 * i, 1, crashed=False) for i in range(5)]
    start = next_start(stopped)
    assert not assess(RecentRuns(stopped), "c1", WEB, start, start, HOLD).held
    mixed = [run(1000, 0.3), run(1001, 1, crashed=False), run(1003, 0.3)]
    assert assess(RecentRuns(mixed), "c1", WEB, 1004, 1004, HOLD).held


def test_a_gap_longer_than_the_window_ends_the_streak():
    runs = [run(1000, 0.3), run(1000 + 0.3 + WINDOW + 1, 0.3)]
    start = next_start(runs)
    assert len(streak(runs, "c1", WEB, start, HOLD)) == 1
    # Docker's longest backoff (60 s) keeps a crash loop held
    slow = [run(1000, 0.3), run(1060.3, 0.3)]
    assert assess(RecentRuns(slow), "c1", WEB, 1120.6, 1120.6, HOLD).held


def test_replacements_of_the_same_service_count_other_names_do_not():
    """ECS-like: a new container every 1.5 s, each dead 0.5 s after its start."""
    runs = [run(1000 + 1.5 * i, 0.5, cid=f"e{i}") for i in range(2)]
    held = assess(RecentRuns(runs), "e2", WEB, 1003, 1003.1, HOLD)
    assert held.held
    assert evidence(held, "e2") == (
        "2 replacements (name-e0, name-e1) in a row, each dead within 0.5s of its start"
    )
    assert not assess(RecentRuns(runs), "e2", frozenset({"api"}), 1003, 1003.1, HOLD).held


def test_a_replacement_must_follow_within_the_hold_time():
    """A restart policy may wait a minute between two runs; a scheduler replaces at once,
    and containers that merely share a name a minute apart do not hold one another."""
    apart = [run(1000, 0.5, cid="e0"), run(1030, 0.5, cid="e1")]
    assert not assess(RecentRuns(apart), "e2", WEB, 1040, 1040, HOLD).held
    own = [run(1000, 0.5), run(1030, 0.5)]
    assert assess(RecentRuns(own), "c1", WEB, 1060, 1060, HOLD).held


def test_runs_that_ended_after_the_start_are_not_before_it():
    runs = [run(1000, 0.3, cid="other"), run(1000.5, 0.3, cid="other")]
    assert not assess(RecentRuns(runs), "c1", WEB, 1000.1, 1000.2, HOLD).held


def test_continued_when_the_newest_run_was_held_already():
    runs = [run(1000, 0.3), run(1000.4, 0.3), run(1000.8, 0.3, held=True)]
    assert assess(RecentRuns(runs), "c1", WEB, 1001.2, 1001.2, HOLD).continued


def test_evidence_of_restarts():
    runs = crash_loop(3)
    start = next_start(runs)
    said = evidence(assess(RecentRuns(runs), "c1", WEB, start, start, HOLD), "c1")
    assert said == "3 restarts in a row, each dead within 0.3s of its start"


def test_recent_runs_keep_what_may_still_count_and_their_crashes():
    old, recent = run(0, 1), run(1000, 1)
    runs = RecentRuns([old])
    runs.add(recent, 1001)
    assert (list(runs), runs.crashes) == ([recent], 1)
    kept = RecentRuns(keep=2)
    for _ in range(5):
        kept.add(recent, 1001)
    assert (list(kept), kept.crashes) == ([recent] * 2, 2)
    kept.add(recent._replace(crashed=False), 1001)
    assert (len(kept), kept.crashes) == (2, 1)


def test_the_view_reads_pause_start_and_restarts():
    container = inspect()
    container["State"].update(Paused=True, StartedAt="2024-05-01T10:00:00.25Z")
    container["RestartCount"] = 3
    view = ContainerView(container)
    assert (view.paused, view.started_at, view.restart_count) == (True, 1714557600.25, 3)
    container["State"].update(Restarting=True)  # Docker says Running between two runs too
    assert not ContainerView(container).running
    assert docker_time("0001-01-01T00:00:00Z") == 0.0
    assert docker_time("2024-05-01T12:00:00.5+02:00") == 1714557600.5
    assert docker_time("garbage") == 0.0


# --- properties --------------------------------------------------------------------------

runs_strategy = st.lists(
    st.builds(
        run,
        started=st.floats(900, 1100),
        lasted=st.floats(0, 30),
        cid=st.sampled_from(["c1", "c2", "c3"]),
        crashed=st.booleans(),
        services=st.sampled_from([WEB, frozenset({"api"}), frozenset()]),
        held=st.booleans(),
    ),
    max_size=12,
)
times = st.floats(1000, 1200)


@given(runs_strategy, times, st.floats(0, 20), st.floats(0, 30))
def test_held_only_after_enough_short_crashes_and_never_past_the_hold(runs, start, age, hold):
    verdict = assess(RecentRuns(runs), "c1", WEB, start, start + age, hold)
    if verdict.held:
        assert hold > 0 and age < hold and verdict.until == start + hold
        assert len(verdict.streak) >= FLAP_RUNS
        assert all(r.crashed and r.lasted < hold and r.ended <= start for r in verdict.streak)
    else:
        assert verdict.streak == ()


@given(runs_strategy, times, st.floats(0.1, 20))
def test_unrelated_containers_change_nothing(runs, start, hold):
    unrelated = [r._replace(container_id="x", services=frozenset({"other"})) for r in runs]
    base = crash_loop(2)
    assert assess(RecentRuns(base + unrelated), "c1", WEB, start, start, hold) == assess(
        RecentRuns(base), "c1", WEB, start, start, hold
    )


@given(runs_strategy, times, st.floats(0.1, 20))
def test_a_run_that_stayed_up_just_before_the_start_releases(runs, start, hold):
    proven = run(start - hold - 1, hold + 0.01, cid="c1")
    assert not assess(RecentRuns([*runs, proven]), "c1", WEB, start, start, hold).held or any(
        proven.ended < r.ended <= start for r in runs
    )


def test_seen_held_is_what_one_look_at_docker_tells():
    """plan and resync: restarted twice or more by the policy, this run younger than the hold."""
    assert seen_held(1000, FLAP_RUNS, 999.5, 1001, HOLD) == 1000 + HOLD
    assert seen_held(1000, FLAP_RUNS - 1, 999.5, 1001, HOLD) == 0  # crashed once
    assert seen_held(1000, FLAP_RUNS, 999.5, 1000 + HOLD, HOLD) == 0  # stayed up
    assert seen_held(1000, FLAP_RUNS, 1000 - WINDOW - 1, 1001, HOLD) == 0  # long ago
    assert seen_held(1000, 5, 999.5, 1001, 0) == 0  # -flap-hold 0


def event(action: str, at: float, **attributes: str) -> ContainerEvent:
    return ContainerEvent(action, "c1", "crash.0", int(at * 1e9), attributes)


def test_the_records_follow_runs_from_docker_events():
    """Crashes count; a run after a stop signal does not, nor one that exits 0."""
    records = Records()
    for n in range(2):
        records.event(event("start", 1000 + n))
        records.event(event("die", 1000.3 + n, exitCode="1"))
    verdict, was_held = records.hold("c1", WEB, 1002, 1002.1, HOLD)
    assert verdict.held and not was_held and records.held_count(1002.1) == 1
    assert records.hold("c1", WEB, 1002, 1002 + HOLD, HOLD) == (Hold(), True)  # released
    assert records.held_count(1002 + HOLD) == 0

    calm = Records()
    calm.event(event("start", 1000))
    calm.stop_signal("c1")
    calm.event(event("die", 1000.3, exitCode="143"))
    calm.event(event("start", 1001))
    calm.event(event("die", 1001.3, exitCode="0"))
    assert not calm.hold("c1", WEB, 1002, 1002.1, HOLD)[0].held
