"""Processing one container (what the daemon and plan/resync share): what it wants now, from
its newest event, its inspect and the drain state. Docker here is a dict of recorded inspects."""

from __future__ import annotations

import gc
import sys
from typing import Any, cast

from registrator.adapters.docker_source import ContainerEvent, DockerSource
from registrator.core.derive import DeriveOptions
from registrator.sync.processing import (
    DRAINING,
    GONE,
    KEPT,
    NOT_FOUND,
    WANTS,
    WITHHELD,
    ContainerProcessor,
    exited_for_good,
)
from tests.inspect_data import inspect

OPTIONS = DeriveOptions(hostname="h1", host_ip="10.0.0.7")
WEB = inspect(name="web.0", published={"80/tcp": "32768"})
WEB_ID = str(WEB["Id"])


class RecordedDocker:
    """Answers inspect from recorded dicts and counts the inspects."""

    def __init__(self, *containers: dict[str, Any]) -> None:
        self.by_id = {str(c["Id"]): c for c in containers}
        self.inspected: list[str] = []

    def inspect(self, container_id: str) -> dict[str, Any] | None:
        self.inspected.append(container_id)
        return self.by_id.get(container_id)


def assess(docker: RecordedDocker, deregister: str = "always", **kwargs: Any):
    processor = ContainerProcessor(OPTIONS, deregister)
    return processor.assess(cast(DockerSource, docker), WEB_ID, **kwargs)


def event(action: str, **attributes: str) -> ContainerEvent:
    return ContainerEvent(action, WEB_ID, "web.0", 1, attributes)


def test_a_running_container_wants_its_services():
    verdict = assess(RecordedDocker(WEB))
    assert verdict.kind == WANTS
    assert [s.id for s in verdict.services] == ["h1:web.0:80"]
    assert verdict.label == f"web.0 ({WEB_ID[:12]})"


def test_an_assessment_keeps_nothing_of_the_inspect():
    """What an assessment made is freed as it ends: a reference cycle would keep the
    container's whole inspect until the collector runs (several at a time at start-up)."""
    two_ports = inspect(name="web.0", published={"80/tcp": "32768", "443/tcp": ""})
    gc.disable()
    try:
        for container in (WEB, two_ports, inspect(name="web.0", env={"SERVICE_IGNORE": "1"})):
            before = sys.getrefcount(container)
            assess(RecordedDocker(container))
            assert sys.getrefcount(container) == before
    finally:
        gc.enable()


def test_a_destroy_or_final_die_needs_no_inspect():
    for last in (event("destroy"), event("die", exitCode="0")):
        docker = RecordedDocker(WEB)
        assert assess(docker, last_event=last).kind == GONE
        assert docker.inspected == []


def test_a_failed_exit_keeps_services_with_on_success_only():
    assert exited_for_good(event("die", exitCode="1"), "always")
    assert not exited_for_good(event("die", exitCode="1"), "on-success")
    assert exited_for_good(event("die", exitCode="137"), "on-success")  # a signal
    assert not exited_for_good(event("start"), "always")
    failed = inspect(name="web.0", published={"80/tcp": "32768"}, running=False, exit_code=3)
    verdict = assess(RecordedDocker(failed), deregister="on-success")
    assert (verdict.kind, verdict.reason) == (KEPT, "3")
    assert assess(RecordedDocker(failed)).kind == GONE


def test_a_container_that_cannot_be_inspected_is_gone():
    verdict = assess(RecordedDocker())
    assert (verdict.kind, verdict.reason) == (GONE, NOT_FOUND)


def test_draining_withholds_a_running_container():
    verdict = assess(RecordedDocker(WEB), draining=True)
    assert (verdict.kind, verdict.reason, verdict.services) == (WITHHELD, DRAINING, ())


def test_refused_metadata_is_reported_and_the_rest_registered():
    bad = inspect(
        name="web.0",
        published={"80/tcp": "32768"},
        env={"SERVICE_CHECK_HTTP": "/", "SERVICE_CHECK_INTERVAL": "often"},
    )
    verdict = assess(RecordedDocker(bad))
    assert verdict.kind == WANTS and len(verdict.services) == 1
    assert any("SERVICE_CHECK_INTERVAL" in problem for problem in verdict.problems)
