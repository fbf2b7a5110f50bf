"""The churn step (issue 30): the issue's two loops side by side for a window, with the hold
(registrator's default) and with ``-flap-hold 0`` (the original's behaviour), counting the
agent's writes and the changes of the passing list; and a first start's event latency under
both, to show the hold costs a first start nothing.

- crash loop: one container under ``--restart always`` that dies 0.3 s after each start;
- replacement: a new container of one service (same ``SERVICE_NAME``, new name) every 1.5 s,
  each dying 0.5 s after its start, as the ECS scheduler replaces a failing task.

The passing list is what ``/v1/health/service/NAME?passing`` returns: these services have no
check, so each register of an ID not there and each deregister of one there changes it once
(one consul-template render, one nginx reload)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from benchmarks.harness import (
    BENCH_LABEL,
    BenchDouble,
    is_deregister,
    is_register,
    service_id,
)
from tests.conftest import TEST_IMAGE, service_id_of
from tests.consul_double import RecordedRequest

if TYPE_CHECKING:
    from benchmarks.scenarios import Bench

CHURN_PORT = 45000
REPLACE_EVERY = 1.5  # seconds between two replacements
CONFIGS = {"hold": (), "off": ("-flap-hold", "0")}


def passing_changes(writes: Iterable[RecordedRequest]) -> int:
    """Changes of the passing list, replaying the writes in arrival order."""
    present: set[str] = set()
    changes = 0
    for write in writes:
        sid = service_id_of(write) or ""
        if write.status == 200 and is_register(write) and sid not in present:
            present.add(sid)
            changes += 1
        elif write.status == 200 and is_deregister(write) and sid in present:
            present.discard(sid)
            changes += 1
    return changes


def _dying(bench: Bench, name: str, port: int, service: str, after: float, restart: bool) -> str:
    """A host-network container exposing ``port`` that exits 1 ``after`` seconds after each
    start; restarted by Docker when ``restart``."""
    api = bench.fleet.api
    policy = {"Name": "always"} if restart else None
    created = api.create_container(
        TEST_IMAGE,
        name=name,
        ports=[port],
        command=["sh", "-c", f"sleep {after}; exit 1"],
        environment={"SERVICE_NAME": service},
        host_config=api.create_host_config(network_mode="host", restart_policy=policy),
        labels={BENCH_LABEL: "1"},
    )
    api.start(created["Id"])
    return str(created["Id"])


def loops(bench: Bench, double: BenchDouble, seconds: float, tag: str) -> dict[str, Any]:
    """Both loops for ``seconds``; what the agent got for each."""
    double.clear_requests()
    began = time.monotonic()
    crash = f"crash{tag}.0"
    crash_id = _dying(bench, crash, CHURN_PORT, f"crashy{tag}", 0.3, restart=True)
    replaced: list[str] = []
    ids = [crash_id]
    while time.monotonic() - began < seconds:
        name = f"ecs{tag}.{len(replaced)}"
        port = CHURN_PORT + 1 + len(replaced)
        ids.append(_dying(bench, name, port, f"ecsy{tag}", 0.5, restart=False))
        replaced.append(name)
        time.sleep(max(0.0, began + REPLACE_EVERY * len(replaced) - time.monotonic()))
    restarts = bench.fleet.api.inspect_container(crash_id)["RestartCount"]
    writes = [r for r in double.requests() if is_register(r) or is_deregister(r)]
    bench.fleet.remove_all(ids)
    crash_ids = {service_id(crash, CHURN_PORT)}
    ecs_ids = {service_id(name, CHURN_PORT + 1 + n) for n, name in enumerate(replaced)}

    def about(ids: set[str]) -> list[RecordedRequest]:
        return [w for w in writes if service_id_of(w) in ids]

    return {
        "seconds": round(time.monotonic() - began, 1),
        "crash_loop": {
            "restarts": restarts,
            "writes": len(about(crash_ids)),
            "passing_changes": passing_changes(about(crash_ids)),
        },
        "replacement": {
            "containers": len(replaced),
            "writes": len(about(ecs_ids)),
            "passing_changes": passing_changes(about(ecs_ids)),
        },
    }


def churn(bench: Bench, seconds: float, starts: int) -> dict[str, Any]:
    """Each configuration in turn: the loops, then ``starts`` first starts (event latency)."""
    from benchmarks.scenarios import event_latency

    result: dict[str, Any] = {}
    for key, args in CONFIGS.items():
        with BenchDouble() as double:
            proc = bench.registrator(double.port, args, label=f"churn-{key}")
            try:
                proc.wait_log("synced: ", timeout=60)
                result[key] = loops(bench, double, seconds, f"-{key}")
                latency = event_latency(bench, proc, double, starts, f"churn-{key}")
                result[key]["start_to_register_ms"] = latency["start_to_register_ms"]
                result[key]["foreign_share_percent"] = latency["foreign_share_percent"]
            finally:
                proc.stop()
    hold, off = (result[k]["start_to_register_ms"]["p50"] for k in CONFIGS)
    result["first_start_p50_ratio"] = round(hold / off, 3) if off else None
    return result
