"""The double's check runner probes as the Consul agent does: what an HTTP check sends, and
the StatusHandler's thresholds (a first result applies at once; after a failure, passing
needs SuccessBeforePassing successes in a row)."""

from __future__ import annotations

import time

from tests.check_runner import StatusHandler
from tests.conftest import Probed, wait_until
from tests.consul_double import ConsulDouble


def test_an_http_check_sends_its_method_headers_and_body(probed):
    with ConsulDouble(run_checks=True) as double:
        double.register({
            "ID": "web", "Name": "web", "Port": probed,
            "Check": {
                "HTTP": f"http://127.0.0.1:{probed}/probe", "Interval": "1s",
                "Method": "POST", "Header": {"X-Probe": ["yes"]}, "Body": "ping",
            },
        })  # fmt: skip
        wait_until(lambda: double.checks()["service:web"]["Status"] == "passing", 10, "passing")
        method, path, headers, body = Probed.seen[0]
        assert (method, path, body) == ("POST", "/probe", b"ping")
        assert headers["X-Probe"] == "yes"
        assert double.checks()["service:web"]["Output"].startswith(
            f"HTTP POST http://127.0.0.1:{probed}/probe: 200 OK Output: fine"
        )


def test_success_before_passing_counts_after_a_failure(probed):
    Probed.codes = [500]
    with ConsulDouble(run_checks=True) as double:
        double.register({
            "ID": "web", "Name": "web", "Port": probed,
            "Check": {
                "HTTP": f"http://127.0.0.1:{probed}/", "Interval": "1s",
                "SuccessBeforePassing": 3,
            },
        })  # fmt: skip
        wait_until(lambda: len(Probed.seen) >= 2, 10, "a failure, then a success")
        first_success = time.monotonic()
        assert double.checks()["service:web"]["Status"] == "critical"
        wait_until(lambda: double.checks()["service:web"]["Status"] == "passing", 15, "passing")
        assert time.monotonic() - first_success >= 1.8  # two more intervals


def test_status_handler_thresholds():
    updates: list[str] = []
    handler = StatusHandler(lambda status, _: updates.append(status), {
        "SuccessBeforePassing": 2, "FailuresBeforeCritical": 2, "FailuresBeforeWarning": 1,
    })  # fmt: skip
    handler("passing", "")  # the counters start at the threshold: applies at once
    handler("critical", "")  # one failure: warning first
    handler("critical", "")
    handler("passing", "")  # one success after failures: not yet
    handler("passing", "")
    assert updates == ["passing", "warning", "critical", "passing"]
