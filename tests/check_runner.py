"""The Consul double's check runner: HTTP and TCP checks probed as the Consul agent does
(agent/checks/check.go): a random stagger of up to one interval before the first probe, then
one every interval; HTTP with the check's method (GET by default), headers, body and timeout
(10 s by default), 2xx passing, 429 warning, anything else critical; the StatusHandler's
thresholds (SuccessBeforePassing, FailuresBeforeWarning, FailuresBeforeCritical), whose
counters start at the threshold, so that the first probe's result applies at once."""

from __future__ import annotations

import random
import socket
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

DEFAULT_TIMEOUT_NS = 10_000_000_000
USER_AGENT = "Consul Health Check"
OUTPUT_MAX = 4096


class StatusHandler:
    """Consul's agent/checks StatusHandler: a status reaches the agent only past its threshold."""

    def __init__(self, update: Callable[[str, str], None], check: dict[str, Any]) -> None:
        self.update = update
        self.success_before_passing = int(check.get("SuccessBeforePassing") or 0)
        self.failures_before_critical = int(check.get("FailuresBeforeCritical") or 0)
        self.failures_before_warning = int(
            check.get("FailuresBeforeWarning") or self.failures_before_critical
        )
        self.successes = self.success_before_passing
        self.failures = self.failures_before_critical

    def __call__(self, status: str, output: str) -> None:
        if status in ("passing", "warning"):
            self.successes += 1
            self.failures = 0
            if self.successes >= self.success_before_passing:
                self.update(status, output)
            return
        self.failures += 1
        self.successes = 0
        if self.failures >= self.failures_before_critical:
            self.update(status, output)
        elif self.failures >= self.failures_before_warning:
            self.update("warning", output)


def probe_http(check: dict[str, Any]) -> tuple[str, str]:
    method = check.get("Method") or "GET"
    url = str(check["HTTP"])
    headers = {"User-Agent": USER_AGENT, "Accept": "text/plain, text/*, */*"}
    for name, values in (check.get("Header") or {}).items():
        headers[name] = ", ".join(values)  # urllib sends one line per name
    body = str(check.get("Body") or "").encode() or None
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    context = None
    if url.startswith("https://"):
        context = ssl.create_default_context()
        if check.get("TLSSkipVerify"):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    timeout = (check.get("Timeout") or DEFAULT_TIMEOUT_NS) / 1e9
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:
            code, reason, text = answer.status, answer.reason, answer.read(OUTPUT_MAX)
    except urllib.error.HTTPError as exc:
        code, reason, text = exc.code, exc.reason, exc.read(OUTPUT_MAX)
    except OSError as exc:
        return "critical", f"Get {url!r}: {exc}"
    output = f"HTTP {method} {url}: {code} {reason} Output: {text.decode(errors='replace')}"
    if 200 <= code <= 299:
        return "passing", output
    return ("warning" if code == 429 else "critical"), output


def probe_tcp(check: dict[str, Any]) -> tuple[str, str]:
    host, _, port = str(check["TCP"]).rpartition(":")
    timeout = (check.get("Timeout") or DEFAULT_TIMEOUT_NS) / 1e9
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return "passing", f"TCP connect {check['TCP']}: Success"
    except OSError as exc:
        return "critical", f"dial tcp {check['TCP']}: {exc}"


class CheckRunner:
    """Probes one HTTP or TCP check on a thread of its own until stopped."""

    def __init__(self, check: dict[str, Any], update: Callable[[str, str], None]) -> None:
        self.check = check
        self.probe = probe_http if check.get("HTTP") else probe_tcp
        self.handler = StatusHandler(update, check)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="consul-check", daemon=True)

    @staticmethod
    def runs(check: dict[str, Any]) -> bool:
        return bool((check.get("HTTP") or check.get("TCP")) and check.get("Interval"))

    def start(self) -> CheckRunner:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()

    def _run(self) -> None:
        interval = self.check["Interval"] / 1e9
        if self.stopped.wait(random.uniform(0, interval)):
            return
        while not self.stopped.is_set():
            status, output = self.probe(self.check)
            if self.stopped.is_set():
                return
            self.handler(status, output)
            if self.stopped.wait(interval):
                return
