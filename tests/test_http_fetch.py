"""``httpGet``'s fetch: the body whatever the status, an empty body on failure or timeout."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from registrator.adapters.http_fetch import http_get
from tests.conftest import serve_http

RELEASE = threading.Event()  # /slow answers only once the test lets it


class Slow(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/slow":
            RELEASE.wait(30)
        code = 404 if self.path == "/missing" else 200
        with contextlib.suppress(OSError):  # the client gave up on /slow
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b"body of " + self.path.encode())

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    RELEASE.clear()
    with serve_http(Slow) as port:
        yield f"http://127.0.0.1:{port}"
        RELEASE.set()


def test_the_body_whatever_the_status(server: str):
    assert http_get(f"{server}/task") == b"body of /task"
    assert http_get(f"{server}/missing") == b"body of /missing"  # as Go's client: no error


def test_a_failure_or_a_timeout_is_an_empty_body_with_a_warning(server: str, caplog):
    assert http_get("http://127.0.0.1:1/") == b""
    assert http_get("file:///etc/passwd") == b""
    assert http_get(f"{server}/slow", timeout=0.5) == b""  # it answers only when released
    assert "-tags: httpGet http://127.0.0.1:1/ failed" in caplog.text
