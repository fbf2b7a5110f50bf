"""When a container's services belong in Consul: exits kept with -deregister on-success,
services withheld until Docker's HEALTHCHECK passes."""

from __future__ import annotations

from typing import Any

from registrator.core.container import ContainerView
from registrator.core.derive import DeriveOptions
from registrator.core.lifecycle import PAUSED, retained_after_exit, withheld_reason
from registrator.core.reasons import Reason, Why
from tests.inspect_data import inspect

OPTS = DeriveOptions(hostname="host1")


def with_health(status: str | None, env: dict[str, str] | None = None) -> dict[str, Any]:
    container = inspect(env=env)
    if status is not None:
        container["State"]["Health"] = {"Status": status}
    return container


def test_is_running() -> None:
    assert ContainerView(inspect()).running
    assert not ContainerView(inspect(running=False)).running
    assert not ContainerView({"State": None}).running


def test_retained_after_exit_only_on_success_mode_and_a_failure() -> None:
    failed = inspect(running=False, exit_code=2)
    assert not retained_after_exit(failed, "always")
    assert retained_after_exit(failed, "on-success")
    assert not retained_after_exit(inspect(running=False, exit_code=0), "on-success")
    assert not retained_after_exit(inspect(running=False, exit_code=137), "on-success")


def test_withheld_until_healthy_with_require_healthy() -> None:
    required = OPTS._replace(require_healthy=True)
    assert withheld_reason(with_health("starting"), required) == Why(
        Reason.UNHEALTHY, "Docker health is starting"
    )
    assert str(withheld_reason(with_health(""), required)) == "Docker health is unknown"
    assert withheld_reason(with_health("healthy"), required) is None
    assert withheld_reason(with_health(None), required) is None  # no HEALTHCHECK: not held
    assert withheld_reason(with_health("starting"), OPTS) is None


def test_the_container_setting_wins_over_the_flag() -> None:
    opted_in = with_health("starting", env={"SERVICE_REQUIRE_HEALTHY": "yes"})
    assert str(withheld_reason(opted_in, OPTS)) == "Docker health is starting"
    opted_out = with_health("starting", env={"SERVICE_REQUIRE_HEALTHY": "false"})
    assert withheld_reason(opted_out, OPTS._replace(require_healthy=True)) is None


def test_a_paused_container_is_withheld_whatever_the_flags() -> None:
    paused = with_health("healthy")
    paused["State"]["Paused"] = True
    for options in (OPTS, OPTS._replace(health_sync=True), OPTS._replace(require_healthy=True)):
        assert withheld_reason(paused, options) == PAUSED
    assert withheld_reason(inspect(), OPTS) is None
