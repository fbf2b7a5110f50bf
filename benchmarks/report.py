"""The table: measured figures against the issue's targets and the Go original."""

from __future__ import annotations

import math
from typing import Any, NamedTuple


class Row(NamedTuple):
    what: str
    path: str  # where in the results, dotted
    unit: str
    target: float | None = None  # an upper bound
    go: str = ""  # the Go original's figure
    for_300: bool = False  # the target was set for 300 containers (a smaller run indicates)


# fmt: off
ROWS = (
    Row("event latency p50: dockerd `start` -> register at agent",
        "event_latency.start_to_register_ms.p50", "ms", 4, "4 ms"),
    Row("event latency p99", "event_latency.start_to_register_ms.p99", "ms", 12),
    Row("`die` -> deregister at agent, p50", "event_latency.die_to_deregister_ms.p50", "ms"),
    Row("`die` -> deregister at agent, p99", "event_latency.die_to_deregister_ms.p99", "ms"),
    Row("start-up sync: Popen -> all registered (median)", "startup_sync.sync_s_median", "s",
        0.6, "0.11 s (60 containers)", True),
    Row("start-up: registrator CPU per container (minus a 0-container start-up's)",
        "startup_sync.cpu_ms_per_container", "ms", 1.5, "", True),
    Row("start-up: Popen -> first Consul request (imports, connect)",
        "startup_sync.first_consul_request_s_median", "s", 0.2),
    Row("start-up: writes in flight at the double, peak",
        "startup_sync.writes_in_flight_peak", "writes"),
    Row("start-up, agent taking 5 ms a write: writes in flight, peak (-workers 16)",
        "startup_slow_agent.writes_in_flight_peak", "writes", 8),
    Row("start-up, agent taking 5 ms a write: Popen -> all registered",
        "startup_slow_agent.sync_s_median", "s"),
    Row("start-up scaling: wall time per container, high count / low count",
        "startup_scaling.wall_per_container_ratio", "x", 1.2),
    Row("start-up scaling: CPU per container, high count / low count",
        "startup_scaling.cpu_per_container_ratio", "x"),
    Row("ECS start-up, awsvpc tasks: requests to the ECS agent per task",
        "ecs_startup.ecs_task_requests_per_task", "req", 1),
    Row("ECS start-up: Popen -> every app registered at its ENI address (median)",
        "ecs_startup.all_registered_s_median", "s"),
    Row("health sync: Consul writes of a `registrator resync` when nothing changed",
        "health_sync.resync_writes", "writes", 0),
    Row("health sync: Consul writes per health change", "health_sync.writes_per_change",
        "writes"),
    Row("health sync: registrator CPU per health change (agent polls included)",
        "health_sync.cpu_ms_per_change", "ms"),
    Row("health sync, idle: registrator CPU (% of one core; its agent polls)",
        "health_sync.idle.cpu_percent_of_one_core", "%"),
    Row("churn, crash loop (--restart always, dies 0.3 s after start): agent writes",
        "churn.hold.crash_loop.writes", "writes", 4, "20 in 60 s"),
    Row("churn, crash loop: changes of the passing list",
        "churn.hold.crash_loop.passing_changes", "changes", 4, "20 in 60 s"),
    Row("churn, crash loop, -flap-hold 0: agent writes", "churn.off.crash_loop.writes",
        "writes"),
    Row("churn, replacement (new container every 1.5 s, dies after 0.5 s): agent writes",
        "churn.hold.replacement.writes", "writes", 6, "80 in 60 s"),
    Row("churn, replacement: changes of the passing list",
        "churn.hold.replacement.passing_changes", "changes", 6, "80 in 60 s"),
    Row("churn, replacement, -flap-hold 0: agent writes", "churn.off.replacement.writes",
        "writes"),
    Row("churn: first start's event latency p50, hold / -flap-hold 0",
        "churn.first_start_p50_ratio", "x", 1.1),
    Row("start-up with 0 containers: Popen -> `synced` log line",
        "startup_empty.synced_log_line_s", "s"),
    Row("resync (-resync 1), nothing changed: Consul writes", "resync.writes", "writes", 0),
    Row("resync: Consul requests per resync (all kinds)", "resync.requests_per_resync", "req"),
    Row("resync: measured period (asked 1 s)", "resync.measured_period_s_median", "s"),
    Row("resync: registrator CPU per resync", "resync.registrator_cpu_per_resync_s", "s"),
    Row("agent poll (-agent-poll 2): Consul requests per minute, idle",
        "idle.requests_per_minute", "req/min"),
    Row("burst start: all registered (from first `start` call)", "burst.start.all_done_s", "s"),
    Row("burst start: lag after dockerd's last `start` event",
        "burst.start.lag_after_last_event_ms", "ms"),
    Row("burst start: Consul writes", "burst.start.writes", "writes"),
    Row("burst remove: all deregistered (from first `rm` call)",
        "burst.remove.all_done_s", "s"),
    Row("burst remove: lag after dockerd's last `die` event",
        "burst.remove.lag_after_last_event_ms", "ms"),
    Row("burst remove: Consul writes", "burst.remove.writes", "writes"),
    Row("peak RSS (VmHWM) tracking the background containers", "memory.vm_hwm_mb", "MB",
        36, "18 MB", True),
    Row("peak RSS at the end (after latency and burst runs)", "memory_end.vm_hwm_mb", "MB"),
    Row("peak RSS with 0 containers", "startup_empty.vm_hwm_mb", "MB"),
    Row("idle CPU over the idle window (agent polls included)",
        "idle.registrator_cpu_s", "s"),
    Row("idle CPU, share of one core", "idle.cpu_percent_of_one_core", "%", 1.0),
    Row("Consul double: its share of the start-up sync wall time (busy serving)",
        "startup_sync.double_busy_percent_median", "%"),
    Row("Consul double: time to serve one register, p50 (start-up)",
        "startup_sync.double_register_p50_ms_median", "ms"),
    Row("Consul double: time to serve one request during the burst start, p99",
        "burst.start.double_service_ms.p99", "ms"),
)
# fmt: on


def value_at(results: dict[str, Any], path: str) -> float | None:
    value: Any = results
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, int | float) else None


def _fmt(value: float | None, unit: str) -> str:
    if value is None or math.isnan(value):
        return "-"
    if unit in ("writes", "req", "req/min") or (value == int(value) and abs(value) >= 100):
        text = f"{value:g}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}" if unit != "s" else f"{value:.3f}"
    return f"{text} {unit}"


def scaling_rows(results: dict[str, Any]) -> list[Row]:
    """Event latency at each number of running containers of the scaling step."""
    return [
        Row(f"with {count} running: event latency {q}", f"startup_scaling.by_count.{count}."
            f"event_latency.start_to_register_ms.{q}", "ms")
        for count in results.get("startup_scaling", {}).get("counts", [])
        for q in ("p50", "p99")
    ]  # fmt: skip


def verdicts(results: dict[str, Any], sizes: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for row in [*ROWS, *scaling_rows(results)]:
        value = value_at(results, row.path)
        verdict = ""
        if row.target is not None and value is not None:
            verdict = "met" if value <= row.target else "MISSED"
            if row.for_300 and sizes["containers"] != 300:
                verdict += f" (at {sizes['containers']}, target is for 300)"
        out.append({**row._asdict(), "value": value, "verdict": verdict})
    return out


def table(verdicts: list[dict[str, Any]]) -> str:
    lines = [
        "| measure | measured | target | Go original | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for v in verdicts:
        target = "" if v["target"] is None else "<= " + _fmt(v["target"], v["unit"])
        measured = _fmt(v["value"], v["unit"])
        lines.append(f"| {v['what']} | {measured} | {target} | {v['go']} | {v['verdict']} |")
    return "\n".join(lines)


def other_load(results: dict[str, Any]) -> dict[str, float]:
    """Share (%) of the machine that other people's work (processes neither ours nor the
    container runtime's) took during each measurement that the figures come from."""
    return {
        key.replace("_", " "): float(value["foreign_share_percent"])
        for key, value in results.items()
        if isinstance(value, dict) and "foreign_share_percent" in value
    }
