"""The double's check runner probes as the Consul agent does: what an HTTP check sends, and
the StatusHandler's thresholds (a first result applies at once; after a failure, passing
needs SuccessBeforePassing successes in a row)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.check_runner import StatusHandler
from tests.conftest import wait_until
from tests.consul_double import ConsulDouble


class Probed(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str, dict[str, str], bytes]] = []
    codes: list[int] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        Probed.seen.append((self.command, self.path, dict(self.headers), body))
        code = Probed.codes.pop(0) if Probed.codes else 200
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"fine" if code == 200 else b"no")

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def probed() -> Iterator[int]:
    Probed.seen, Probed.codes = [], []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Probed)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


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
