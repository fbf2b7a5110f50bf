"""``httpGet``'s fetch: the body whatever the status, an empty body on failure or timeout."""

from __future__ import annotations

import contextlib
import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from registrator.adapters.http_fetch import http_get


class Slow(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(1.5)
        code = 404 if self.path == "/missing" else 200
        with contextlib.suppress(OSError):  # the client gave up on /slow
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b"body of " + self.path.encode())

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_the_body_whatever_the_status(server: str):
    assert http_get(f"{server}/task") == b"body of /task"
    assert http_get(f"{server}/missing") == b"body of /missing"  # as Go's client: no error


def test_a_failure_or_a_timeout_is_an_empty_body_with_a_warning(server: str, caplog):
    assert http_get("http://127.0.0.1:1/") == b""
    assert http_get("file:///etc/passwd") == b""
    started = time.monotonic()
    assert http_get(f"{server}/slow", timeout=0.5) == b""
    assert time.monotonic() - started < 1.4
    assert "-tags: httpGet http://127.0.0.1:1/ failed" in caplog.text
