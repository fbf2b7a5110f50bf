"""The table: measured figures against the issue's targets and the Go original."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Row:
    what: str
    get: Callable[[dict[str, Any]], float | None]
    unit: str
    target: float | None = None  # upper bound
    go: str = ""
    scale_key: str = ""  # the size the target was set for (a smaller run is only indicative)


def _dig(*keys: str) -> Callable[[dict[str, Any]], float | None]:
    def get(results: dict[str, Any]) -> float | None:
        value: Any = results
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return float(value) if isinstance(value, int | float) else None

    return get


ROWS = (
    Row(
        "event latency p50: dockerd `start` -> register at agent",
        _dig("event_latency", "start_to_register_ms", "p50"),
        "ms",
        4,
        "4 ms",
    ),
    Row(
        "event latency p99",
        _dig("event_latency", "start_to_register_ms", "p99"),
        "ms",
        12,
    ),
    Row(
        "`die` -> deregister at agent, p50",
        _dig("event_latency", "die_to_deregister_ms", "p50"),
        "ms",
    ),
    Row(
        "`die` -> deregister at agent, p99",
        _dig("event_latency", "die_to_deregister_ms", "p99"),
        "ms",
    ),
    Row(
        "start-up sync: Popen -> all registered (median)",
        _dig("startup_sync", "sync_s_median"),
        "s",
        0.6,
        "0.11 s (60 containers)",
        "containers",
    ),
    Row(
        "start-up: registrator CPU per container (minus a 0-container start-up's)",
        _dig("startup_sync", "cpu_ms_per_container"),
        "ms",
        1.5,
        "",
        "containers",
    ),
    Row(
        "start-up: Popen -> first Consul request (imports, connect)",
        _dig("startup_sync", "first_consul_request_s_median"),
        "s",
        0.2,
    ),
    Row(
        "start-up: writes in flight at the double, peak",
        _dig("startup_sync", "writes_in_flight_peak"),
        "writes",
    ),
    Row(
        "start-up, agent taking 5 ms a write: writes in flight, peak (-workers 16, -agent-writes 8)",
        _dig("startup_slow_agent", "writes_in_flight_peak"),
        "writes",
        8,
    ),
    Row(
        "start-up, agent taking 5 ms a write: Popen -> all registered",
        _dig("startup_slow_agent", "sync_s"),
        "s",
    ),
    Row(
        "start-up scaling: wall time per container, high count / low count",
        _dig("startup_scaling", "wall_per_container_ratio"),
        "x",
        1.2,
    ),
    Row(
        "start-up scaling: CPU per container, high count / low count",
        _dig("startup_scaling", "cpu_per_container_ratio"),
        "x",
    ),
    Row(
        "start-up with 0 containers: Popen -> `synced` log line",
        _dig("startup_empty", "synced_log_line_s"),
        "s",
    ),
    Row(
        "resync (-resync 1), nothing changed: Consul writes",
        _dig("resync", "writes"),
        "writes",
        0,
    ),
    Row(
        "resync: Consul requests per resync (all kinds)",
        _dig("resync", "requests_per_resync"),
        "req",
    ),
    Row(
        "resync: measured period (asked 1 s)",
        _dig("resync", "measured_period_s_median"),
        "s",
    ),
    Row(
        "resync: registrator CPU per resync",
        _dig("resync", "registrator_cpu_per_resync_s"),
        "s",
    ),
    Row(
        "agent poll (-agent-poll 2): Consul requests per minute, idle",
        _dig("idle", "requests_per_minute"),
        "req/min",
    ),
    Row(
        "burst start: all registered (from first `start` call)",
        _dig("burst", "start", "all_done_s"),
        "s",
    ),
    Row(
        "burst start: lag after dockerd's last `start` event",
        _dig("burst", "start", "lag_after_last_event_ms"),
        "ms",
    ),
    Row(
        "burst start: Consul writes",
        _dig("burst", "start", "writes"),
        "writes",
    ),
    Row(
        "burst remove: all deregistered (from first `rm` call)",
        _dig("burst", "remove", "all_done_s"),
        "s",
    ),
    Row(
        "burst remove: lag after dockerd's last `die` event",
        _dig("burst", "remove", "lag_after_last_event_ms"),
        "ms",
    ),
    Row(
        "burst remove: Consul writes",
        _dig("burst", "remove", "writes"),
        "writes",
    ),
    Row(
        "peak RSS (VmHWM) tracking the background containers",
        _dig("memory", "vm_hwm_mb"),
        "MB",
        36,
        "18 MB",
        "containers",
    ),
    Row(
        "peak RSS at the end (after latency and burst runs)",
        _dig("memory_end", "vm_hwm_mb"),
        "MB",
    ),
    Row(
        "peak RSS with 0 containers",
        _dig("startup_empty", "vm_hwm_mb"),
        "MB",
    ),
    Row(
        "idle CPU over the idle window (agent polls included)",
        _dig("idle", "registrator_cpu_s"),
        "s",
    ),
    Row(
        "idle CPU, share of one core",
        _dig("idle", "cpu_percent_of_one_core"),
        "%",
        1.0,
    ),
    Row(
        "Consul double: its share of the start-up sync wall time (busy serving)",
        lambda r: (
            None
            if _dig("startup_sync", "double_busy_share_median")(r) is None
            else 100 * (_dig("startup_sync", "double_busy_share_median")(r) or 0.0)
        ),
        "%",
    ),
    Row(
        "Consul double: time to serve one register, p50 (start-up)",
        _dig("startup_sync", "double_register_p50_ms_median"),
        "ms",
    ),
    Row(
        "Consul double: time to serve one request during the burst, p99",
        lambda r: (
            max(
                (_dig("burst", phase, "double_service_ms", "p99")(r) or 0.0)
                for phase in ("start", "remove")
            )
            if "burst" in r
            else None
        ),
        "ms",
    ),
)

TARGET_SIZES = {"containers": 300, "starts": 200, "burst": 100, "idle": 60.0}


def _fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
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


def verdicts(results: dict[str, Any], sizes: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for row in ROWS:
        value = row.get(results)
        verdict = ""
        if row.target is not None and value is not None:
            verdict = "met" if value <= row.target else "MISSED"
            if row.scale_key and sizes.get(row.scale_key) != TARGET_SIZES[row.scale_key]:
                verdict += f" (at {sizes.get(row.scale_key)}, target is for 300)"
        out.append(
            {
                "what": row.what,
                "value": value,
                "unit": row.unit,
                "target": row.target,
                "go_original": row.go,
                "verdict": verdict,
            }
        )
    return out


def table(results: dict[str, Any], sizes: dict[str, Any]) -> str:
    lines = [
        "| measure | measured | target | Go original | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for v in verdicts(results, sizes):
        target = "" if v["target"] is None else "<= " + _fmt(v["target"], v["unit"])
        lines.append(
            f"| {v['what']} | {_fmt(v['value'], v['unit'])} | {target} | "
            f"{v['go_original']} | {v['verdict']} |"
        )
    return "\n".join(lines)


def other_load(results: dict[str, Any]) -> dict[str, float]:
    """Share (%) of the machine that other people's work (processes neither ours nor the
    container runtime's) took during each measurement that the figures come from."""
    out: dict[str, float] = {}
    for key in (
        "startup_sync",
        "startup_slow_agent",
        "idle",
        "event_latency",
        "burst",
        "resync",
        "startup_scaling",
    ):
        value = results.get(key, {}).get("foreign_share_percent")
        if value is not None:
            out[key.replace("_", " ")] = float(value)
    return out
