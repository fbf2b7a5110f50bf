"""python-consul2's HTTP client interface on kept-alive ``http.client`` connections.

python-consul2 builds every request (paths, parameters, bodies) and reads every answer; this
only carries them, over TCP, TLS or a Unix socket. The requests-based client it ships costs
about four times the CPU per request, most of a start-up sync (benchmarks/README.md). The interface is four methods and a four-field answer, so this module does
not import python-consul2, whose package loads requests: the start-up ping goes out before
either is loaded. Connections are kept in a small pool shared by all threads (one request
per connection at a time); one the agent closed while idle is replaced before it is used,
and a request that finds its reused connection reset before any answer is sent once more
on a new one. No proxy is ever used: the agent is local.
"""

from __future__ import annotations

import collections
import http.client
import os
import select
import socket
import ssl
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from registrator.core.config import ConsulEndpoint

MAX_IDLE = 16
# A kept-alive connection failing like this before any answer was closed by the agent in
# the meantime (idle timeout, restart): the request never reached it.
STALE_CONNECTION = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    ConnectionAbortedError,
)


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over the agent's Unix socket (``consul-unix://``)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Answer(NamedTuple):
    """One whole answer, in the shape of python-consul2's ``Response`` (its callbacks read
    these four fields)."""

    code: int
    headers: http.client.HTTPMessage
    content: bytes

    @property
    def body(self) -> str:
        """The text, decoded when read (python-consul2 reads it for an error's message):
        decoded with every answer, it was a second copy of each listing read."""
        return self.content.decode("utf-8", "replace")


class AgentHTTP:
    """The transport python-consul2 calls (``get``/``put``/``delete``/``post`` with a
    callback taking the answer); the ACL token goes as a header on every request, never in
    a URL or a message."""

    def __init__(self, endpoint: ConsulEndpoint, timeout: float, token: str = "") -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._headers = {"X-Consul-Token": token} if token else {}
        # Idle connections; a deque's appends and pops are atomic, so the pool needs no lock
        # (the count may pass MAX_IDLE by one per thread for a moment: harmless).
        self._idle: collections.deque[http.client.HTTPConnection] = collections.deque()
        self._tls: ssl.SSLContext | None = None

    # --- python-consul2's interface -----------------------------------------------------

    def get(
        self, callback: Callable[[Answer], Any], path: str, params: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:  # fmt: skip
        return callback(self.request("GET", path, params, None, headers))

    def put(
        self, callback: Callable[[Answer], Any], path: str, params: Any = None,
        data: Any = "", headers: Mapping[str, str] | None = None,
    ) -> Any:  # fmt: skip
        return callback(self.request("PUT", path, params, data, headers))

    def delete(
        self, callback: Callable[[Answer], Any], path: str, params: Any = None,
        data: Any = "", headers: Mapping[str, str] | None = None,
    ) -> Any:  # fmt: skip
        return callback(self.request("DELETE", path, params, data, headers))

    def post(
        self, callback: Callable[[Answer], Any], path: str, params: Any = None,
        headers: Mapping[str, str] | None = None, data: Any = "",
    ) -> Any:  # fmt: skip
        return callback(self.request("POST", path, params, data, headers))

    # --- the requests -------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        params: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """One request and its whole answer. Raises OSError (ssl.SSLError for TLS) or
        http.client.HTTPException when the agent cannot be reached or the exchange broke."""
        # The path and query python-consul2's own clients would send.
        target = urllib.parse.quote(path, safe="/:")
        if params:
            target += "?" + urllib.parse.urlencode(params)
        body = data.encode("utf-8") if isinstance(data, str) else data
        sent = {**self._headers, **headers} if headers else self._headers
        conn, reused = self._take()
        try:
            try:
                response = self._exchange(conn, method, target, body, sent)
            except STALE_CONNECTION:
                if not reused:
                    raise
                conn.close()
                conn = self._connect()
                response = self._exchange(conn, method, target, body, sent)
        except BaseException:
            conn.close()
            raise
        status, message, content = response
        self._give_back(conn)
        return Answer(status, message, content)

    @staticmethod
    def _exchange(
        conn: http.client.HTTPConnection,
        method: str,
        target: str,
        body: bytes | None,
        headers: Mapping[str, str],
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn.request(method, target, body=body, headers=headers)
        answer = conn.getresponse()
        content = answer.read()
        if answer.will_close:
            conn.close()
        return answer.status, answer.headers, content

    # --- the pool -----------------------------------------------------------------------

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection the agent has not closed meanwhile (reused), or a new one."""
        while True:
            try:
                conn: http.client.HTTPConnection | None = self._idle.pop()
            except IndexError:
                conn = None
            if conn is None:
                return self._connect(), False
            if not _dropped(conn):
                return conn, True
            conn.close()

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        if conn.sock is None:
            return
        if len(self._idle) < MAX_IDLE:
            self._idle.append(conn)
            return
        conn.close()

    def _connect(self) -> http.client.HTTPConnection:
        """A new connection (it connects at its first request). The TLS context (CA
        certificates loaded) is made once, at the first connection to a ``consul-tls://``
        agent, so that a bad file is reported as that request's failure."""
        endpoint = self.endpoint
        if endpoint.socket_path:
            return _UnixConnection(endpoint.socket_path, self.timeout)
        if endpoint.scheme != "https":
            return http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=self.timeout)
        if self._tls is None:
            self._tls = tls_context(endpoint)
        return http.client.HTTPSConnection(
            endpoint.host, endpoint.port, timeout=self.timeout, context=self._tls
        )

    def close(self) -> None:
        while self._idle:
            try:
                self._idle.pop().close()
            except IndexError:
                return


def tls_context(endpoint: ConsulEndpoint) -> ssl.SSLContext:
    """Verification as Consul's clients do it: CONSUL_CACERT (a file) or CONSUL_CAPATH (a
    folder), else the system's CAs; a client certificate when given; none with
    CONSUL_HTTP_SSL_VERIFY=false."""
    if not endpoint.verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif endpoint.ca_file and os.path.isdir(endpoint.ca_file):
        context = ssl.create_default_context(capath=endpoint.ca_file)
    elif endpoint.ca_file:
        context = ssl.create_default_context(cafile=endpoint.ca_file)
    else:
        context = ssl.create_default_context()
    if endpoint.cert_file:
        context.load_cert_chain(endpoint.cert_file, endpoint.key_file)
    return context


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """An idle kept-alive connection is readable only when the agent closed it (or sent
    something unasked): either way it cannot carry the next request."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
