"""registrator with timestamps at each stage of an event, for finding where latency goes.

``python -m benchmarks.trace TRACE_FILE <registrator arguments>`` runs the real daemon
(``registrator.cli.main``) with a few of its functions wrapped so that each call appends a
line ``{"t": wall ns, "what": ..., ...}`` to TRACE_FILE. Nothing in registrator/ is changed;
the wrappers cost a few microseconds per call. Used by ``benchmarks.latency_breakdown``.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

_lock = threading.Lock()
_out: Any = None


def _emit(what: str, **fields: Any) -> None:
    line = json.dumps({"t": time.time_ns(), "what": what, **fields})
    with _lock:
        _out.write(line + "\n")


def _wrap(owner: Any, name: str, label: str, key: Callable[..., dict[str, Any]]) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        fields = key(*args, **kwargs)
        _emit(f"{label}.begin", **fields)
        try:
            return original(*args, **kwargs)
        finally:
            _emit(f"{label}.end", **fields)

    setattr(owner, name, wrapper)


def install() -> None:
    from registrator import consul_agent, daemon, docker_source, reconcile, workqueue

    original_on_event = daemon.Daemon._on_event

    def on_event(self: Any, event: Any) -> None:
        _emit("event", action=event.action, cid=event.container_id, nano=event.time_nano)
        original_on_event(self, event)

    daemon.Daemon._on_event = on_event  # type: ignore[method-assign]

    original_get = workqueue.WorkQueue.get

    def get(self: Any, timeout: float | None = None) -> Any:
        key = original_get(self, timeout)
        if key is not None:
            _emit("dequeue", cid=key)
        return key

    workqueue.WorkQueue.get = get  # type: ignore[method-assign]

    _wrap(docker_source.DockerSource, "inspect", "inspect", lambda _s, cid: {"cid": cid})
    _wrap(
        daemon,
        "derive_services",
        "derive",
        lambda container, *_a: {"cid": str(container.get("Id", ""))},
    )
    _wrap(
        reconcile.Reconciler,
        "set_container",
        "set_container",
        lambda _s, cid, *_a, **_k: {"cid": cid},
    )
    _wrap(reconcile.Reconciler, "sync", "sync", lambda *_a, **_k: {})
    _wrap(
        consul_agent.ConsulAgent,
        "register",
        "register",
        lambda _s, svc: {"sid": svc.id, "cid": svc.container_id},
    )
    _wrap(consul_agent.ConsulAgent, "deregister", "deregister", lambda _s, sid: {"sid": sid})


def main() -> int:
    global _out
    _out = open(sys.argv[1], "a", buffering=1)  # noqa: SIM115 - open for the process's life
    install()
    from registrator.cli import main as registrator_main

    return registrator_main(sys.argv[2:])


if __name__ == "__main__":
    raise SystemExit(main())
