"""The least a start-up sync does with registrator's chosen libraries, as a program of its own:
``python -m benchmarks.floor_program -ip IP [-workers N] consul://127.0.0.1:PORT``.

What any registrator built on the Docker SDK and python-consul2 must spend, and nothing more:
it pings the agent on a kept-alive ``http.client`` connection (before loading the libraries,
as registrator does), loads the Docker SDK and python-consul2, lists the running containers,
and with ``-workers`` threads inspects each through the SDK's connection pool (the cheapest
way registrator found: ``urllib3`` under the SDK, not ``requests``) and registers each exposed
TCP port of a host-network container through python-consul2, with the ID, name, address and
owner mark registrator would give it. No validation, no checks, no labels or ``SERVICE_*``
variables, no log line per service, no bookkeeping, no event stream: the figures
``benchmarks.stack_floor`` puts beside registrator's. It prints ``synced: N container(s)``
when done, then waits to be stopped.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import threading
import time
import urllib.parse
from types import SimpleNamespace
from typing import Any


class Transport:
    """python-consul2's HTTP client interface (``get``/``put``), one kept-alive connection per
    thread."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._local = threading.local()

    def request(self, method: str, path: str, params: Any = None, data: Any = None) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        target = path + ("?" + urllib.parse.urlencode(params) if params else "")
        conn.request(method, target, body=data.encode() if isinstance(data, str) else data)
        answer = conn.getresponse()
        content = answer.read()
        return SimpleNamespace(
            code=answer.status, headers=answer.headers, body=content.decode(), content=content
        )

    def get(self, callback: Any, path: str, params: Any = None, headers: Any = None) -> Any:
        return callback(self.request("GET", path, params))

    def put(
        self, callback: Any, path: str, params: Any = None, data: Any = "", headers: Any = None
    ) -> Any:
        return callback(self.request("PUT", path, params, data))


def main(argv: list[str]) -> None:
    ip = argv[argv.index("-ip") + 1]
    workers = int(argv[argv.index("-workers") + 1]) if "-workers" in argv else 4
    agent = urllib.parse.urlsplit(argv[-1])
    transport = Transport(agent.hostname or "127.0.0.1", agent.port or 8500)
    transport.request("GET", "/v1/status/leader")

    sys.modules.setdefault("charset_normalizer", None)  # type: ignore[arg-type] # as registrator
    import consul.base
    import docker
    from docker.transport import UnixHTTPAdapter

    class OnePool(UnixHTTPAdapter):  # type: ignore[misc] # registrator's one pool, all requests
        def get_connection(self, url: str = "", proxies: Any = None) -> Any:
            return super().get_connection("http+docker://localhost", proxies)

    api = docker.APIClient(base_url=os.environ["DOCKER_HOST"], version="auto", max_pool_size=16)
    api.trust_env = False
    adapter = OnePool("http+unix://" + api._custom_adapter.socket_path, 30.0, max_pool_size=16)
    api.mount("http+docker://", adapter)
    pool, headers, version = adapter.get_connection(), dict(api.headers), api.api_version
    services = consul.base.Consul.Agent.Service(SimpleNamespace(http=transport, token=None))
    hostname = socket.gethostname()
    todo = [str(item["Id"]) for item in api.containers()]
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                if not todo:
                    return
                container_id = todo.pop()
            answer = pool.urlopen(
                "GET", f"/v{version}/containers/{container_id}/json", headers=headers,
                retries=False, redirect=False, timeout=30.0,
            )  # fmt: skip
            container = json.loads(answer.data)
            name = container["Name"].lstrip("/")
            image = container["Config"]["Image"].rsplit("/", 1)[-1].split(":", 1)[0]
            for exposed in container["Config"].get("ExposedPorts") or {}:
                port, _, proto = exposed.partition("/")
                if proto == "tcp":
                    services.register(
                        image, service_id=f"{hostname}:{name}:{port}", address=ip,
                        port=int(port), tags=[], meta={"registrator": hostname},
                    )  # fmt: skip

    count = len(todo)
    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    now = time.time()  # stamped as registrator's log lines, which the benchmarks read
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    print(f"{stamp},{int(now % 1 * 1000):03d} INFO synced: {count} container(s)", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv[1:])
