"""The measurements. Each returns a plain dict for the JSON report.

One private dockerd serves the whole run. The order matters and is fixed:

1. ``startup_empty``: registrator against an empty daemon (the floor: interpreter, imports,
   connecting, memory with nothing tracked);
2. ``populate``: N background containers started in parallel;
3. ``startup_sync``: registrator started R times with N containers running; the last process
   (A) is kept, default flags;
4. ``idle``: A's CPU and requests while nothing happens;
5. ``event_latency``: sequential start/remove cycles while A tracks N containers;
6. ``burst``: B containers started, then removed, in parallel;
7. ``memory`` of A (VmHWM), then A stops;
8. ``resync``: a new process with ``-resync 1`` (and ``-log-level DEBUG`` to count resyncs).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    BENCH_LABEL,
    REPO,
    BenchDouble,
    CodeUnderTest,
    DockerPool,
    EventWatcher,
    Fleet,
    ForeignSnapshot,
    RegistratorProcess,
    foreign_cpu_seconds,
    foreign_snapshot,
    is_deregister,
    is_register,
    log_time_ns,
    reap_private_dockerd,
    registered_id,
    self_cpu_seconds,
    service_id,
    summary_ms,
    system_busy_cpu_seconds,
    tree_cpu_seconds,
)
from tests.consul_double import RecordedRequest
from tests.private_dockerd import PrivateDockerd

BACKGROUND_PORT = 20000
LATENCY_PORT = 30000
BURST_PORT = 40000


@dataclass(frozen=True)
class Sizes:
    containers: int = 300
    starts: int = 200
    burst: int = 100
    idle: float = 60.0
    resync_window: float = 20.0
    startup_runs: int = 3
    scale_low: int = 100
    scale_high: int = 1000


class Bench:
    """The shared environment of one run: a private dockerd, its containers, the processes."""

    def __init__(self, out_dir: Path, code: CodeUnderTest | None = None) -> None:
        self.code = code or CodeUnderTest(REPO, "work tree")
        self.out_dir = out_dir
        self.logs = out_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.dockerd = PrivateDockerd()
        self.dockerd.start()
        self.dockerd.load_test_image()
        self.host = self.dockerd.host
        self.fleet = Fleet(self.host)
        self.watcher = EventWatcher(self.host)
        self.background: dict[str, str] = {}  # service ID -> container ID
        self.stopped: dict[str, str] = {}  # background containers killed (set_running)
        self._runs = 0

    @property
    def dockerd_pid(self) -> int:
        assert self.dockerd.proc is not None
        return self.dockerd.proc.pid

    def registrator(
        self,
        double: BenchDouble,
        args: Sequence[str] = (),
        label: str = "",
    ) -> RegistratorProcess:
        self._runs += 1
        name = f"{self._runs:02d}-{label or 'run'}"
        log = self.logs / f"registrator-{name}.log"
        return RegistratorProcess(
            self.host, double.port, args, log, self.code.directory,
            self.code.python,
        )  # fmt: skip

    def close(self) -> None:
        try:
            errors = self.fleet.remove_all()
        except Exception as exc:
            errors = [str(exc)]
        if errors:
            print(f"cleanup: {len(errors)} container(s) not removed: {errors[:3]}", file=sys.stderr)
        self.watcher.close()
        self.fleet.close()
        root = self.dockerd.root
        self.dockerd.close()
        left = reap_private_dockerd(root)
        if left:
            print(f"cleanup: killed {left} leftover containerd shim(s) of {root}", file=sys.stderr)
        shutil.rmtree(root, ignore_errors=True)


CpuSample = tuple[float, float, float, float, ForeignSnapshot]


def _window_cpu(bench: Bench, proc: RegistratorProcess | None) -> CpuSample:
    return (
        proc.cpu_seconds() if proc is not None else 0.0,
        tree_cpu_seconds(bench.dockerd_pid),
        self_cpu_seconds(),
        system_busy_cpu_seconds(),
        foreign_snapshot([os.getpid(), bench.dockerd_pid]),
    )


def _cpu_delta(
    before: CpuSample, after: CpuSample, proc_cpu: float | None = None
) -> dict[str, float]:
    """Where the CPU went in a window. ``foreign`` is other people's work on the machine
    (processes that are neither ours nor the container runtime's, alive throughout the
    window); ``other`` is everything else that is not ours: container runtime helpers
    (containerd shims, runc), short-lived processes, and the foreign work."""
    registrator = after[0] - before[0] if proc_cpu is None else proc_cpu
    dockerd, bench, system = after[1] - before[1], after[2] - before[2], after[3] - before[3]
    return {
        "registrator_cpu_s": round(registrator, 3),
        "dockerd_cpu_s": round(dockerd, 3),
        "benchmark_process_cpu_s": round(bench, 3),
        "other_processes_cpu_s": round(max(0.0, system - registrator - dockerd - bench), 3),
        "foreign_cpu_s": round(foreign_cpu_seconds(before[4], after[4]), 3),
    }


def _kinds(requests: Sequence[RecordedRequest]) -> dict[str, int]:
    def kind(r: RecordedRequest) -> str:
        if is_deregister(r):
            return f"{r.method} {r.path[: r.path.rindex('/') + 1]}<id>"
        return f"{r.method} {r.path}"

    return dict(Counter(kind(r) for r in requests).most_common())


# --- 1. the floor: nothing to sync ---------------------------------------------------------


def startup_empty(bench: Bench) -> dict[str, Any]:
    with BenchDouble() as double:
        proc = bench.registrator(double, label="empty")
        try:
            proc.wait_log("synced: ", timeout=60)
            first = min(r.wall_ns for r in double.requests())
            synced = proc.line_time_ns("synced: ")
            time.sleep(1.0)
            status = proc.status()
            return {
                "first_consul_request_s": round((first - proc.started_ns) / 1e9, 3),
                "synced_log_line_s": round((synced - proc.started_ns) / 1e9, 3),
                "cpu_s": round(proc.cpu_seconds(), 3),
                "vm_hwm_mb": round(status["VmHWM"] / 1024, 1),
                "vm_rss_mb": round(status["VmRSS"] / 1024, 1),
                "threads": status["Threads"],
            }
        finally:
            proc.stop()


# --- 2. the background containers ---------------------------------------------------------


def populate(bench: Bench, count: int) -> dict[str, Any]:
    specs = [(f"bg.{n}", BACKGROUND_PORT + n) for n in range(count)]
    began = time.monotonic()
    ids = bench.fleet.create_and_start(specs, workers=16)
    took = time.monotonic() - began
    bench.background = {
        service_id(name, port): cid for (name, port), cid in zip(specs, ids, strict=True)
    }
    return {"containers": count, "seconds": round(took, 1), "per_second": round(count / took, 1)}


# --- 3. start-up sync ----------------------------------------------------------------------


def foreign_share(foreign_cpu_s: float, seconds: float) -> float:
    """Other people's CPU use as a share (%) of the whole machine over a window."""
    return round(100 * foreign_cpu_s / (max(seconds, 1e-3) * (os.cpu_count() or 1)), 1)


def startup_sync(
    bench: Bench,
    runs: int,
    max_foreign: float = 100.0,
    extra: int = 0,
) -> tuple[dict[str, Any], RegistratorProcess, BenchDouble]:
    """Popen -> every background container's service registered, ``runs`` times; the last
    process is returned, still running. A run during which other work took more than
    ``max_foreign`` % of the machine is repeated (at most ``extra`` more runs); the figures
    use the ``runs`` least disturbed runs."""
    expected = set(bench.background)
    rows: list[dict[str, Any]] = []
    total = runs + extra
    for run in range(total):
        double = BenchDouble().start()
        cpu_before = _window_cpu(bench, None)
        proc = bench.registrator(double, label="startup")
        double.wait_ids(lambda ids: expected <= ids, timeout=120)
        cpu_after = _window_cpu(bench, None)
        proc_cpu = proc.cpu_seconds()
        requests = double.requests()
        registers = [r for r in requests if is_register(r)]
        last = max(r.wall_ns for r in registers)
        row: dict[str, Any] = {
            "sync_s": round((last - proc.started_ns) / 1e9, 3),
            "writes_in_flight_peak": double.in_flight_peak(),
            "first_consul_request_s": round((requests[0].wall_ns - proc.started_ns) / 1e9, 3),
            "first_register_s": round(
                (min(r.wall_ns for r in registers) - proc.started_ns) / 1e9, 3
            ),
            "registers": len(registers),
            "other_requests": _kinds([r for r in requests if not is_register(r)]),
            # registrator: all its CPU since its start, which is within the window
            **_cpu_delta(cpu_before, cpu_after, proc_cpu),
            "double_service_ms": summary_ms(
                double.service_times_ns(proc.started_ns, last + 1_000_000)
            ),
            "double_busy_s": round(
                sum(double.service_times_ns(proc.started_ns, last + 1_000_000)) / 1e9, 3
            ),
        }
        with contextlib.suppress(TimeoutError):
            proc.wait_log("synced: ", timeout=10)
            synced = proc.line_time_ns("synced: ")
            row["synced_log_line_s"] = round((synced - proc.started_ns) / 1e9, 3)
        row["foreign_share_percent"] = foreign_share(row["foreign_cpu_s"], row["sync_s"])
        rows.append(row)
        clean = [r for r in rows if r["foreign_share_percent"] <= max_foreign]
        if len(clean) >= runs or run == total - 1:
            break
        proc.stop()
        double.stop()
    candidates = sorted(rows, key=lambda r: r["foreign_share_percent"])
    measured = candidates[:runs]
    for r in measured:
        r["used"] = True
    syncs = [r["sync_s"] for r in measured]
    result = {
        "containers": len(expected),
        "double_busy_share_median": round(
            statistics.median(r["double_busy_s"] / r["sync_s"] for r in measured), 3
        ),
        "double_register_p50_ms_median": round(
            statistics.median(r["double_service_ms"]["p50"] for r in measured), 3
        ),
        "runs": rows,
        "foreign_share_percent": max(r["foreign_share_percent"] for r in measured),
        "sync_s_median": round(statistics.median(syncs), 3),
        "sync_s_min": min(syncs),
        "sync_s_max": max(syncs),
        "first_consul_request_s_median": round(
            statistics.median(r["first_consul_request_s"] for r in measured), 3
        ),
        "registrator_cpu_s_median": round(
            statistics.median(r["registrator_cpu_s"] for r in measured), 3
        ),
        "writes_in_flight_peak": max(r["writes_in_flight_peak"] for r in measured),
        "registers_per_container": round(
            statistics.median(r["registers"] for r in measured) / max(1, len(expected)), 3
        ),
    }
    return result, proc, double


def startup_slow_agent(bench: Bench, delay: float = 0.005) -> dict[str, Any]:
    """Start-up sync against an agent that takes ``delay`` s per write (the double otherwise
    answers at once and, one process under one GIL, seldom has two requests in hand): how
    many writes registrator keeps in flight, which -agent-writes bounds (default 8). Run with
    more workers than that (each worker writes its own container's services), so that the
    peak shows the bound of -agent-writes, not the number of workers."""
    expected = set(bench.background)
    with BenchDouble() as double:
        double.fail("slow", delay=delay, paths="/v1/agent/service/")
        before = _window_cpu(bench, None)
        proc = bench.registrator(double, ["-workers", "16"], label="startup-slow-agent")
        try:
            double.wait_ids(lambda ids: expected <= ids, timeout=120)
            after = _window_cpu(bench, None)
            registers = [r for r in double.requests() if is_register(r)]
            sync_s = (max(r.wall_ns for r in registers) - proc.started_ns) / 1e9
            window = _cpu_delta(before, after, proc.cpu_seconds())
            return {
                "write_delay_s": delay,
                "containers": len(expected),
                "sync_s": round(sync_s, 3),
                "writes_in_flight_peak": double.in_flight_peak(),
                "sequential_floor_s": round(len(registers) * delay, 3),
                "foreign_share_percent": foreign_share(window["foreign_cpu_s"], sync_s),
                **window,
            }
        finally:
            proc.stop()


def set_running(bench: Bench, count: int) -> dict[str, Any]:
    """Make exactly the first ``count`` background containers (by port) run: kill the rest
    (SIGKILL: busybox ``sleep`` as PID 1 ignores SIGTERM), start stopped ones again, create
    more if needed. ``bench.background`` then names the running ones."""
    fleet = bench.fleet
    began = time.monotonic()
    every = {**bench.stopped, **bench.background}
    items = sorted(every.items(), key=lambda kv: int(kv[0].rsplit(":", 1)[1]))
    running = {c["Id"] for c in fleet.api.containers(filters={"label": BENCH_LABEL})}
    keep, surplus = items[:count], items[count:]
    fleet.parallel(fleet.api.kill, [cid for _, cid in surplus if cid in running], workers=8)
    fleet.parallel(fleet.start, [cid for _, cid in keep if cid not in running], workers=16)
    specs = [(f"bg.{n}", BACKGROUND_PORT + n) for n in range(len(keep), count)]
    ids = fleet.create_and_start(specs, workers=16)
    bench.background = dict(keep)
    bench.background.update(
        {service_id(name, port): cid for (name, port), cid in zip(specs, ids, strict=True)}
    )
    bench.stopped = dict(surplus)
    return {"running": count, "seconds": round(time.monotonic() - began, 1)}


def startup_scaling(
    bench: Bench, counts: Sequence[int], runs: int, floor_cpu_s: float
) -> dict[str, Any]:
    """Start-up sync at each number of running containers: whether the cost per container
    stays flat (linear) as a host grows. Per container: (Popen -> all registered, minus
    Popen -> first Consul request) / N, and (registrator's CPU - ``floor_cpu_s``, a start-up
    with no containers) / N."""
    result: dict[str, Any] = {"counts": list(counts), "by_count": {}}
    for count in counts:
        result["by_count"][str(count)] = {"populate": set_running(bench, count)}
        sync, proc, double = startup_sync(bench, runs)
        proc.stop()
        double.stop()
        per = [
            (r["sync_s"] - r["first_consul_request_s"]) / count
            for r in sync["runs"]
            if r.get("used")
        ]
        result["by_count"][str(count)].update(
            {
                "sync_s_median": sync["sync_s_median"],
                "first_consul_request_s_median": sync["first_consul_request_s_median"],
                "registrator_cpu_s_median": sync["registrator_cpu_s_median"],
                "wall_ms_per_container": round(1000 * statistics.median(per), 3),
                "cpu_ms_per_container": round(
                    1000 * (sync["registrator_cpu_s_median"] - floor_cpu_s) / count, 3
                ),
                "foreign_share_percent": sync["foreign_share_percent"],
                "runs": sync["runs"],
            }
        )
    low, high = (result["by_count"][str(c)] for c in (min(counts), max(counts)))
    for kind in ("wall", "cpu"):
        key = f"{kind}_ms_per_container"
        # None when the smaller run's cost is below what can be measured (tiny smoke sizes:
        # CPU is counted in 10 ms ticks)
        result[f"{kind}_per_container_ratio"] = (
            round(high[key] / low[key], 2) if low[key] > 0 else None
        )
    result["foreign_share_percent"] = max(
        r["foreign_share_percent"] for r in result["by_count"].values()
    )
    return result


# --- 4. idle ---------------------------------------------------------------------------------


def idle(
    bench: Bench, proc: RegistratorProcess, double: BenchDouble, seconds: float
) -> dict[str, Any]:
    time.sleep(min(2.0, seconds))  # let the post-sync agent read pass
    double.clear_requests()
    since = time.time_ns()
    before = _window_cpu(bench, proc)
    began = time.monotonic()
    time.sleep(seconds)
    took = time.monotonic() - began
    after = _window_cpu(bench, proc)
    requests = double.requests()
    cpu = after[0] - before[0]
    window = _cpu_delta(before, after)
    return {
        "seconds": round(took, 1),
        "foreign_share_percent": foreign_share(window["foreign_cpu_s"], took),
        "cpu_s": round(cpu, 3),
        "cpu_percent_of_one_core": round(100 * cpu / took, 2),
        "requests": len(requests),
        "requests_per_minute": round(len(requests) * 60 / took, 1),
        "requests_by_kind": _kinds(requests),
        "writes": sum(1 for r in requests if r.method != "GET"),
        "double_service_ms": summary_ms(double.service_times_ns(since)),
        **window,
    }


# --- 5. event latency --------------------------------------------------------------------------


def event_latency(
    bench: Bench, proc: RegistratorProcess, double: BenchDouble, starts: int, tag: str = ""
) -> dict[str, Any]:
    """Sequential cycles: create, start, wait for the service, remove, wait until it is gone.
    Latency = register request arriving at the double - dockerd's ``start`` event timeNano."""
    fleet = bench.fleet
    cycles: list[tuple[str, str]] = []
    double.clear_requests()
    since = time.time_ns()
    before = _window_cpu(bench, proc)
    began = time.monotonic()
    for n in range(starts):
        name, port = f"lat{tag}.{n}", LATENCY_PORT + n
        sid = service_id(name, port)
        cid = fleet.create(name, port)
        fleet.start(cid)
        double.wait_ids(lambda ids, sid=sid: sid in ids, timeout=30)  # type: ignore[misc]
        fleet.remove(cid)
        double.wait_ids(lambda ids, sid=sid: sid not in ids, timeout=30)  # type: ignore[misc]
        cycles.append((cid, sid))
    took = time.monotonic() - began
    after = _window_cpu(bench, proc)
    time.sleep(0.5)  # the last destroy event's inspect
    requests = double.requests()
    registers: dict[str, RecordedRequest] = {}
    deregisters: dict[str, RecordedRequest] = {}
    for r in requests:
        if is_register(r):
            registers.setdefault(registered_id(r), r)
        elif is_deregister(r):
            deregisters.setdefault(r.path.rsplit("/", 1)[1], r)
    start_ns, die_ns, delivery_ns, polls_in_between = [], [], [], 0
    slowest: list[tuple[float, str, bool]] = []
    polls = [r.wall_ns for r in requests if r.method == "GET"]
    for cid, sid in cycles:
        start = bench.watcher.get("start", cid)
        die = bench.watcher.get("die", cid)
        reg, dereg = registers[sid], deregisters[sid]
        start_ns.append(reg.wall_ns - start.time_nano)
        die_ns.append(dereg.wall_ns - die.time_nano)
        delivery_ns.append(start.received_ns - start.time_nano)
        overlapped = any(start.time_nano <= t <= reg.wall_ns for t in polls)
        polls_in_between += overlapped
        slowest.append(((reg.wall_ns - start.time_nano) / 1e6, sid, overlapped))
    slowest.sort(reverse=True)
    writes = [r for r in requests if r.method != "GET"]
    window = _cpu_delta(before, after)
    return {
        "cycles": len(cycles),
        "seconds": round(took, 1),
        "foreign_share_percent": foreign_share(window["foreign_cpu_s"], took),
        "start_to_register_ms": summary_ms(start_ns),
        "die_to_deregister_ms": summary_ms(die_ns),
        "docker_event_delivery_to_benchmark_ms": summary_ms(delivery_ns),
        "writes_per_cycle": round(len(writes) / max(1, len(cycles)), 2),
        "requests_by_kind": _kinds(requests),
        "starts_with_agent_poll_before_register": polls_in_between,
        "slowest_starts": [
            {"ms": round(ms, 2), "service": sid, "agent_poll_overlapped": o}
            for ms, sid, o in slowest[:5]
        ],
        "double_service_ms": summary_ms(double.service_times_ns(since)),
        **window,
    }


# --- 6. burst ----------------------------------------------------------------------------------


def burst(
    bench: Bench, proc: RegistratorProcess, double: BenchDouble, count: int, tag: str = ""
) -> dict[str, Any]:
    fleet = bench.fleet
    specs = [(f"burst{tag}.{n}", BURST_PORT + n) for n in range(count)]
    sids = {service_id(name, port) for name, port in specs}
    ids = fleet.parallel(lambda spec: fleet.create(*spec), specs, workers=16)
    pool = DockerPool()
    time.sleep(0.5)
    result: dict[str, Any] = {"containers": count}
    for phase in ("start", "remove"):
        double.clear_requests()
        before = _window_cpu(bench, proc)
        began_ns = pool.run(bench.host, phase, ids, workers=count)
        if phase == "start":
            double.wait_ids(lambda got: sids <= got, timeout=120)
        else:
            double.wait_ids(lambda got: not (sids & got), timeout=120)
        after = _window_cpu(bench, proc)
        requests = double.requests()
        mine = [r for r in requests if is_register(r) or is_deregister(r)]
        last_write = max(r.wall_ns for r in mine)
        action = "start" if phase == "start" else "die"
        events = [bench.watcher.get(action, cid) for cid in ids]
        last_event = max(e.time_nano for e in events)
        first_event = min(e.time_nano for e in events)
        window = _cpu_delta(before, after)
        result[phase] = {
            "all_done_s": round((last_write - began_ns) / 1e9, 3),
            "foreign_share_percent": foreign_share(
                window["foreign_cpu_s"], (last_write - began_ns) / 1e9
            ),
            "docker_first_to_last_event_s": round((last_event - first_event) / 1e9, 3),
            "lag_after_last_event_ms": round((last_write - last_event) / 1e6, 1),
            "writes": len([r for r in requests if r.method != "GET"]),
            "requests_by_kind": _kinds(requests),
            "double_service_ms": summary_ms(double.service_times_ns(began_ns)),
            **window,
        }
    pool.close()
    result["foreign_share_percent"] = max(
        result[p]["foreign_share_percent"] for p in ("start", "remove")
    )
    return result


# --- 7. memory ---------------------------------------------------------------------------------


def memory(proc: RegistratorProcess, tracked: int) -> dict[str, Any]:
    status = proc.status()
    return {
        "tracked_containers": tracked,
        "vm_hwm_mb": round(status["VmHWM"] / 1024, 1),
        "vm_rss_mb": round(status["VmRSS"] / 1024, 1),
        "threads": status["Threads"],
    }


# --- 8. resync ---------------------------------------------------------------------------------


def resync(bench: Bench, window: float, idle_requests_per_s: float) -> dict[str, Any]:
    """``-resync 1`` with nothing changing: writes (target 0) and requests per resync."""
    expected = set(bench.background)
    with BenchDouble() as double:
        proc = bench.registrator(double, ["-resync", "1", "-log-level", "DEBUG"], label="resync")
        try:
            double.wait_ids(lambda ids: expected <= ids, timeout=120)
            proc.wait_log("synced: ", timeout=30)
            proc.wait_log("resync: ", timeout=30)
            time.sleep(0.5)
            double.clear_requests()
            log_before = proc.log().count("resync: ")
            before = _window_cpu(bench, proc)
            began = time.monotonic()
            time.sleep(window)
            took = time.monotonic() - began
            after = _window_cpu(bench, proc)
            log_after = proc.log()
            requests = double.requests()
            resyncs = log_after.count("resync: ") - log_before
            stamps = [log_time_ns(line) for line in log_after.splitlines() if "resync: " in line]
            periods = [(b - a) / 1e9 for a, b in itertools.pairwise(stamps)]
            cpu = after[0] - before[0]
            per_resync = (len(requests) - idle_requests_per_s * took) / max(1, resyncs)
            cpu_window = _cpu_delta(before, after)
            return {
                "asked_period_s": 1.0,
                "seconds": round(took, 1),
                "foreign_share_percent": foreign_share(cpu_window["foreign_cpu_s"], took),
                "resyncs": resyncs,
                "measured_period_s_median": round(statistics.median(periods), 2)
                if periods
                else None,
                "writes": sum(1 for r in requests if r.method != "GET"),
                "requests": len(requests),
                "requests_by_kind": _kinds(requests),
                "requests_per_resync": round(len(requests) / max(1, resyncs), 2),
                "requests_per_resync_beyond_agent_poll": round(per_resync, 2),
                "registrator_cpu_per_resync_s": round(cpu / max(1, resyncs), 3),
                "cpu_percent_of_one_core": round(100 * cpu / took, 1),
                "double_service_ms": summary_ms(double.service_times_ns()),
                **cpu_window,
            }
        finally:
            proc.stop()
