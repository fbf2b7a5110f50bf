"""The measurements. Each returns a plain dict for the JSON report.

One private dockerd serves the whole run, in this order (the runner's):

1. ``startup_empty``: registrator against an empty daemon (the floor: interpreter, imports,
   connecting, memory with nothing tracked);
2. ``ecs_startup``: ``registrator -ecs`` beside awsvpc ECS tasks, which it then removes;
   ``health_sync``: ``-health-sync`` with containers that have a HEALTHCHECK, likewise;
3. ``populate``: N background containers started in parallel;
4. ``startup_sync``: registrator started R times with N containers running; the last process
   (A) is kept, default flags; ``startup_slow_agent``: against an agent slow to write;
5. ``idle``: A's CPU and requests while nothing happens, then its ``memory``;
6. ``event_latency``: sequential start/remove cycles while A tracks N containers;
7. ``burst``: B containers started, then removed, in parallel; then A stops;
8. ``resync``: a new process with ``-resync 1`` (and ``-log-level DEBUG`` to count resyncs);
9. ``startup_scaling``: start-up sync and event latency at other numbers of running
   containers.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    BENCH_LABEL,
    BenchDouble,
    CodeUnderTest,
    CpuWindow,
    DockerPool,
    EventWatcher,
    Fleet,
    RegistratorProcess,
    is_deregister,
    is_register,
    log_time_ns,
    reap_private_dockerd,
    service_id,
    summary_ms,
)
from tests.conftest import service_id_of
from tests.consul_double import RecordedRequest
from tests.ecs_agent_double import DoubleContainer, EcsAgentDouble
from tests.private_dockerd import PrivateDockerd

BACKGROUND_PORT = 20000
LATENCY_PORT = 30000
BURST_PORT = 40000
HEALTH_PORT = 50000
HEALTH_CHECKS = ["SERVICE_CHECK_1_TTL=1m", "SERVICE_CHECK_2_TTL=2m"]
HOUR_NS = 3600 * 10**9
ECS_PORT = 8080
ECS_PAUSE = "~internal~ecs~pause"
ECS_LABELS = {"cluster": "bench", "task-definition-family": "bench", "task-definition-version": "1"}


@dataclass(frozen=True)
class Sizes:
    containers: int = 300
    starts: int = 200
    burst: int = 100
    idle: float = 60.0
    resync_window: float = 20.0
    startup_runs: int = 3
    scale: tuple[int, ...] = (100, 1000)  # running containers for startup_scaling
    ecs_tasks: int = 10
    health_containers: int = 300
    churn_window: float = 60.0  # seconds of each churn loop, with the hold and without


class Bench:
    """The shared environment of one run: a private dockerd, its containers, the processes."""

    def __init__(self, out_dir: Path, code: CodeUnderTest) -> None:
        self.code = code
        self.logs = out_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.dockerd = PrivateDockerd()
        self.dockerd.start()
        self.dockerd.load_test_image()
        self.host = self.dockerd.host
        self.fleet = Fleet(self.host)
        self.watcher = EventWatcher(self.host)
        self.background: dict[str, str] = {}  # service ID -> container ID, running
        self.stopped: dict[str, str] = {}  # background containers killed (set_running)
        self._runs = 0

    def registrator(
        self,
        consul_port: int,
        args: Sequence[str] = (),
        label: str = "run",
        wrapper: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> RegistratorProcess:
        self._runs += 1
        log = self.logs / f"registrator-{self._runs:02d}-{label}.log"
        return RegistratorProcess(self.code, self.host, consul_port, log, args, wrapper, env)

    def window(self, proc: RegistratorProcess | None = None) -> CpuWindow:
        assert self.dockerd.proc is not None
        return CpuWindow(self.dockerd.proc.pid, proc)

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
        shutil.rmtree(root, ignore_errors=True)  # what its close could not delete before


def _since(proc: RegistratorProcess, wall_ns: int) -> float:
    """Seconds from the process's Popen to a wall-clock instant."""
    return round((wall_ns - proc.started_ns) / 1e9, 3)


def _kinds(requests: Sequence[RecordedRequest]) -> dict[str, int]:
    def kind(r: RecordedRequest) -> str:
        if is_deregister(r):
            return f"{r.method} {r.path[: r.path.rindex('/') + 1]}<id>"
        return f"{r.method} {r.path}"

    return dict(Counter(kind(r) for r in requests).most_common())


def _writes(requests: Sequence[RecordedRequest]) -> int:
    return sum(r.method != "GET" for r in requests)


def memory(proc: RegistratorProcess) -> dict[str, Any]:
    """Peak and current RSS and threads: what a host gives registrator to run."""
    status = proc.status()
    return {
        "vm_hwm_mb": round(status["VmHWM"] / 1024, 1),
        "vm_rss_mb": round(status["VmRSS"] / 1024, 1),
        "threads": status["Threads"],
    }


def startup_empty(bench: Bench) -> dict[str, Any]:
    """A start-up with nothing to sync: what every start-up pays before its first container
    (the interpreter, imports, connecting), and memory with nothing tracked."""
    with BenchDouble() as double:
        proc = bench.registrator(double.port, label="empty")
        try:
            proc.wait_log("synced: ", timeout=60)
            first = min(r.wall_ns for r in double.requests())
            time.sleep(1.0)
            return {
                "first_consul_request_s": _since(proc, first),
                "synced_log_line_s": _since(proc, proc.line_time_ns("synced: ")),
                "cpu_s": round(proc.cpu_seconds(), 3),
                **memory(proc),
            }
        finally:
            proc.stop()


def _ecs_task(
    fleet: Fleet, agent: EcsAgentDouble, n: int, count: int
) -> tuple[str, dict[str, str]]:
    """Task ``n`` as the ECS agent lays out an awsvpc task: a pause container in network mode
    ``none``, ``count`` apps in ``container:<pause>``, all with the ECS labels; the agent
    double knows it (the containers' IDs, the ENI address 10.1.n.10) before its apps start.
    Returns the pause container's ID and the apps' (their task's names) IDs."""
    arn = f"arn:aws:ecs:eu-west-1:123456789012:task/bench/{n:04d}"

    def create(name: str, network: str) -> str:
        ecs_name = ECS_PAUSE if name == "pause" else name
        keys = {**ECS_LABELS, "task-arn": arn, "container-name": ecs_name}
        labels = {f"com.amazonaws.ecs.{key}": value for key, value in keys.items()}
        return fleet.create(f"ecs{n}.{name}", network=network, labels=labels)

    pause = create("pause", "none")
    fleet.start(pause)
    apps = {f"app{k}": create(f"app{k}", f"container:{pause}") for k in range(count)}
    known = [DoubleContainer(cid, name, [(ECS_PORT, "tcp")]) for name, cid in apps.items()]
    known.append(DoubleContainer(pause, ECS_PAUSE, internal=True))
    agent.add_task(arn, known, family="bench", version="1", ipv4=[f"10.1.{n}.10"])
    for cid in apps.values():
        fleet.start(cid)
    return pause, apps


def ecs_startup(bench: Bench, tasks: int, runs: int, per_task: int = 5) -> dict[str, Any]:
    """``registrator -ecs`` started ``runs`` times beside ``tasks`` awsvpc tasks of
    ``per_task`` apps on an otherwise empty dockerd, which it removes afterwards: the requests
    to the ECS agent (target: one per task) and Popen -> every app registered, each at its
    task's ENI address (checked)."""
    fleet, rows = bench.fleet, []
    with EcsAgentDouble() as agent:
        laid_out = fleet.parallel(lambda n: _ecs_task(fleet, agent, n, per_task), range(tasks), 8)
        expected = {
            service_id(f"ecs{n}.{name}", ECS_PORT): (f"10.1.{n}.10", ECS_PORT)
            for n, (_, apps) in enumerate(laid_out)
            for name in apps
        }
        for _ in range(runs):
            agent.clear_requests()
            with BenchDouble() as double:
                args = ["-ecs", "-ecs-agent-uri", agent.url]
                proc = bench.registrator(double.port, args, label="ecs")
                try:
                    double.wait_ids(set(expected).issubset, timeout=120)
                    services = double.services()
                    registers = [r.wall_ns for r in double.requests() if is_register(r)]
                    proc.wait_log("synced: ", timeout=60)
                finally:
                    proc.stop()
            got = {sid: (services[sid]["Address"], services[sid]["Port"]) for sid in expected}
            if got != expected:
                raise AssertionError(f"not all at their ENI address: {got}")
            rows.append({
                "all_registered_s": _since(proc, max(registers)),
                "synced_log_line_s": _since(proc, proc.line_time_ns("synced: ")),
                "ecs_task_requests": len(agent.task_requests()),
                "registers": len(registers),
            })  # fmt: skip
    fleet.remove_all([cid for pause, apps in laid_out for cid in (pause, *apps.values())])
    return {
        "tasks": tasks,
        "app_containers": len(expected),
        "runs": rows,
        "ecs_task_requests_per_task": max(r["ecs_task_requests"] for r in rows) / tasks,
        "all_registered_s_median": statistics.median(r["all_registered_s"] for r in rows),
    }


def health_sync(bench: Bench, count: int, idle_seconds: float, changes: int = 20) -> dict[str, Any]:
    """``-health-sync`` with ``count`` containers that have a HEALTHCHECK and two TTL checks
    each, on an otherwise empty dockerd (removed afterwards): the writes of a ``registrator
    resync`` run beside the daemon when nothing changed (target 0), the daemon's cost while
    nothing happens (its agent polls, which read the checks too), and its CPU and writes per
    health change of one more container, whose probe is failed and mended in turn."""
    fleet = bench.fleet
    starting = {"test": ["CMD", "true"], "interval": HOUR_NS, "start_period": HOUR_NS}
    specs = [(f"hs.{n}", HEALTH_PORT + n) for n in range(count)]
    ids = fleet.create_and_start(specs, environment=HEALTH_CHECKS, healthcheck=starting)
    probe = {"test": ["CMD-SHELL", "[ -f /tmp/ok ]"], "interval": 300_000_000, "retries": 1}
    command = ["sh", "-c", "touch /tmp/ok; exec sleep 86400"]
    flip = fleet.create(
        "hs.flip", HEALTH_PORT - 1, environment=HEALTH_CHECKS, healthcheck=probe, command=command
    )
    fleet.start(flip)
    flip_sid = service_id("hs.flip", HEALTH_PORT - 1)
    check = f"service:{flip_sid}:docker-health"
    expected = {flip_sid, *(service_id(*spec) for spec in specs)}
    with BenchDouble() as double:
        proc = bench.registrator(double.port, ["-health-sync"], label="health-sync")
        try:
            double.wait_ids(expected.issubset, timeout=120)
            double.wait_check(check, "passing", timeout=60)
            proc.wait_log("synced: ", timeout=60)
            checks = len(double.checks())
            double.clear_requests()
            once = bench.registrator(double.port, ["resync", "-health-sync"], label="resync")
            resync_exit = once.popen.wait(300)
            once.stop()
            resync_writes = _writes(double.requests())
            quiet = idle(bench, proc, double, idle_seconds)
            double.clear_requests()
            window = bench.window(proc)
            for n in range(changes):
                status, change = ("critical", "rm") if n % 2 == 0 else ("passing", "touch")
                fleet.api.exec_start(fleet.api.exec_create(flip, ["sh", "-c", f"{change} /tmp/ok"]))
                double.wait_check(check, status, timeout=30)
            cpu = window.stop()
            requests = double.requests()
        finally:
            proc.stop()
    fleet.remove_all([*ids, flip])
    return {
        "containers": count,
        "checks": checks,
        "resync_exit": resync_exit,
        "resync_summary": once.log().strip().rsplit("\n", 1)[-1],
        "resync_writes": resync_writes,
        "changes": changes,
        "cpu_ms_per_change": round(1000 * cpu["registrator_cpu_s"] / changes, 2),
        "writes_per_change": round(_writes(requests) / changes, 2),
        "requests_by_kind": _kinds(requests),
        "idle": {key: quiet[key] for key in IDLE_FIGURES},
        **cpu,
    }


IDLE_FIGURES = ("seconds", "cpu_percent_of_one_core", "requests_per_minute", "writes")


def populate(bench: Bench, count: int) -> dict[str, Any]:
    """The background containers the later steps sync and track."""
    specs = [(f"bg.{n}", BACKGROUND_PORT + n) for n in range(count)]
    began = time.monotonic()
    ids = bench.fleet.create_and_start(specs)
    took = time.monotonic() - began
    bench.background = {service_id(*spec): cid for spec, cid in zip(specs, ids, strict=True)}
    return {"containers": count, "seconds": round(took, 1), "per_second": round(count / took, 1)}


def startup_sync(
    bench: Bench,
    runs: int,
    max_foreign: float = 100.0,
    extra: int = 0,
    args: Sequence[str] = (),
    write_delay: float = 0.0,
) -> tuple[dict[str, Any], RegistratorProcess, BenchDouble]:
    """Popen -> every background container's service registered, ``runs`` times; the last
    process is returned, still running. A run during which other work took more than
    ``max_foreign`` % of the machine is repeated (at most ``extra`` more runs); the figures
    use the ``runs`` least disturbed runs. ``write_delay``: the double's every service write
    answered that late."""
    expected = set(bench.background)
    rows: list[dict[str, Any]] = []
    for run in range(runs + extra):
        double = BenchDouble().start()
        if write_delay:
            double.fail("slow", delay=write_delay, paths="/v1/agent/service/")
        window = bench.window()
        proc = bench.registrator(
            double.port, args, label="slow-agent" if write_delay else "startup"
        )
        double.wait_ids(expected.issubset, timeout=120)
        cpu = window.stop(registrator_cpu=proc.cpu_seconds())  # all of it is in the window
        requests = double.requests()
        registers = [r.wall_ns for r in requests if is_register(r)]
        served = double.service_times_ns(proc.started_ns, max(registers) + 1_000_000)
        row: dict[str, Any] = {
            "sync_s": _since(proc, max(registers)),
            "first_consul_request_s": _since(proc, requests[0].wall_ns),
            "first_register_s": _since(proc, min(registers)),
            "writes_in_flight_peak": double.in_flight_peak(),
            "registers": len(registers),
            "other_requests": _kinds([r for r in requests if not is_register(r)]),
            "double_service_ms": summary_ms(served),
            "double_busy_s": round(sum(served) / 1e9, 3),
            **cpu,
        }
        with contextlib.suppress(TimeoutError):
            proc.wait_log("synced: ", timeout=10)
            row["synced_log_line_s"] = _since(proc, proc.line_time_ns("synced: "))
        rows.append(row)
        clean = sum(r["foreign_share_percent"] <= max_foreign for r in rows)
        if clean >= runs or run == runs + extra - 1:
            break
        proc.stop()
        double.stop()
    measured = sorted(rows, key=lambda r: r["foreign_share_percent"])[:runs]
    for r in measured:
        r["used"] = True

    def median(values: Iterable[float]) -> float:
        return round(statistics.median(values), 3)

    syncs = [r["sync_s"] for r in measured]
    result = {
        "containers": len(expected),
        "runs": rows,
        "foreign_share_percent": max(r["foreign_share_percent"] for r in measured),
        "sync_s_median": median(syncs),
        "sync_s_min": min(syncs),
        "sync_s_max": max(syncs),
        "first_consul_request_s_median": median(r["first_consul_request_s"] for r in measured),
        "registrator_cpu_s_median": median(r["registrator_cpu_s"] for r in measured),
        "writes_in_flight_peak": max(r["writes_in_flight_peak"] for r in measured),
        "registers_per_container": median(r["registers"] / len(expected) for r in measured),
        "double_busy_percent_median": median(
            100 * r["double_busy_s"] / r["sync_s"] for r in measured
        ),
        "double_register_p50_ms_median": median(r["double_service_ms"]["p50"] for r in measured),
    }
    return result, proc, double


def startup_slow_agent(bench: Bench, delay: float = 0.005) -> dict[str, Any]:
    """Start-up sync against an agent that takes ``delay`` s per write (the double otherwise
    answers at once and, one process under one GIL, seldom has two requests in hand): how
    many writes registrator keeps in flight, which -agent-writes bounds (default 8). Run with
    more workers than that (each worker writes its own container's services), so that the
    peak shows the bound of -agent-writes, not the number of workers."""
    result, proc, double = startup_sync(bench, 1, args=["-workers", "16"], write_delay=delay)
    proc.stop()
    double.stop()
    return {"write_delay_s": delay, **result}


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
    ids = fleet.create_and_start(specs)
    bench.background = dict(keep)
    bench.background.update({service_id(*s): cid for s, cid in zip(specs, ids, strict=True)})
    bench.stopped = dict(surplus)
    return {"running": count, "seconds": round(time.monotonic() - began, 1)}


def startup_scaling(
    bench: Bench, counts: Sequence[int], runs: int, starts: int, floor_cpu_s: float
) -> dict[str, Any]:
    """Start-up sync, then event latency (``starts`` cycles), at each number of running
    containers: whether the cost per container stays flat (linear) as a host grows, and what
    a started container waits for with that many tracked. Per container: (Popen -> all
    registered, minus Popen -> first Consul request) / N, and (registrator's CPU -
    ``floor_cpu_s``, a start-up with no containers) / N."""
    by_count: dict[str, dict[str, Any]] = {}
    for count in counts:
        populated = set_running(bench, count)
        sync, proc, double = startup_sync(bench, runs)
        try:
            latency = event_latency(bench, proc, double, starts, f"x{count}") if starts else {}
        finally:
            proc.stop()
            double.stop()
        used = [r for r in sync["runs"] if r.get("used")]
        wall = statistics.median(r["sync_s"] - r["first_consul_request_s"] for r in used)
        cpu = sync["registrator_cpu_s_median"] - floor_cpu_s
        by_count[str(count)] = {
            "populate": populated,
            "startup_sync": sync,
            "event_latency": latency,
            "foreign_share_percent": max(
                sync["foreign_share_percent"], latency.get("foreign_share_percent", 0.0)
            ),
            "wall_ms_per_container": round(1000 * wall / count, 3),
            "cpu_ms_per_container": round(1000 * cpu / count, 3),
        }
    low, high = by_count[str(min(counts))], by_count[str(max(counts))]
    result: dict[str, Any] = {"counts": list(counts), "by_count": by_count}
    for kind in ("wall", "cpu"):
        key = f"{kind}_ms_per_container"
        # None when the smaller run's cost is below what can be measured (tiny smoke sizes:
        # CPU is counted in 10 ms ticks)
        ratio = round(high[key] / low[key], 2) if low[key] > 0 else None
        result[f"{kind}_per_container_ratio"] = ratio
    result["foreign_share_percent"] = max(r["foreign_share_percent"] for r in by_count.values())
    return result


def idle(
    bench: Bench, proc: RegistratorProcess, double: BenchDouble, seconds: float
) -> dict[str, Any]:
    """What the daemon costs while nothing happens (its agent polls): no busy polling."""
    time.sleep(min(2.0, seconds))  # let the post-sync agent read pass
    double.clear_requests()
    window = bench.window(proc)
    time.sleep(seconds)
    cpu = window.stop()
    requests = double.requests()
    return {
        "cpu_percent_of_one_core": round(100 * cpu["registrator_cpu_s"] / cpu["seconds"], 2),
        "requests": len(requests),
        "requests_per_minute": round(len(requests) * 60 / cpu["seconds"], 1),
        "requests_by_kind": _kinds(requests),
        "writes": _writes(requests),
        **cpu,
    }


def event_latency(
    bench: Bench, proc: RegistratorProcess, double: BenchDouble, starts: int, tag: str = ""
) -> dict[str, Any]:
    """Sequential cycles: create, start, wait for the service, remove, wait until it is gone.
    Latency = the register's arrival at the double - dockerd's ``start`` event timeNano (the
    same clock); likewise ``die`` -> deregister."""
    fleet = bench.fleet
    cycles: list[tuple[str, str]] = []
    double.clear_requests()
    window = bench.window(proc)
    for n in range(starts):
        name, port = f"lat{tag}.{n}", LATENCY_PORT + n
        sid, cid = service_id(name, port), fleet.create(name, port)
        fleet.start(cid)
        double.wait_ids({sid}.issubset, timeout=30)
        fleet.remove(cid)
        double.wait_ids({sid}.isdisjoint, timeout=30)
        cycles.append((cid, sid))
    cpu = window.stop()
    time.sleep(0.5)  # what the last removal still causes, for the request counts
    requests = double.requests()
    arrived: dict[tuple[bool, str | None], int] = {}  # (register?, service ID) -> first
    for r in requests:
        arrived.setdefault((is_register(r), service_id_of(r)), r.wall_ns)
    start_ns, die_ns, delivery_ns = [], [], []
    for cid, sid in cycles:
        start, die = bench.watcher.get("start", cid), bench.watcher.get("die", cid)
        start_ns.append(arrived[True, sid] - start.time_nano)
        die_ns.append(arrived[False, sid] - die.time_nano)
        delivery_ns.append(start.received_ns - start.time_nano)
    return {
        "cycles": len(cycles),
        "start_to_register_ms": summary_ms(start_ns),
        "die_to_deregister_ms": summary_ms(die_ns),
        "docker_event_delivery_to_benchmark_ms": summary_ms(delivery_ns),
        "writes_per_cycle": round(_writes(requests) / max(1, len(cycles)), 2),
        "requests_by_kind": _kinds(requests),
        **cpu,
    }


def burst(
    bench: Bench, proc: RegistratorProcess, double: BenchDouble, count: int, tag: str = ""
) -> dict[str, Any]:
    """``count`` containers started at once, then removed at once, from a child process:
    registrator's lag after dockerd's last event, and its writes."""
    specs = [(f"burst{tag}.{n}", BURST_PORT + n) for n in range(count)]
    sids = {service_id(*spec) for spec in specs}
    ids = bench.fleet.parallel(lambda spec: bench.fleet.create(*spec), specs, workers=16)
    pool = DockerPool()
    time.sleep(0.5)
    result: dict[str, Any] = {"containers": count}
    phases = (("start", "start", sids.issubset), ("remove", "die", sids.isdisjoint))
    for phase, action, done in phases:
        double.clear_requests()
        window = bench.window(proc)
        began_ns = pool.run(bench.host, phase, ids, workers=count)
        double.wait_ids(done, timeout=120)
        cpu = window.stop()
        requests = double.requests()
        last_write = max(r.wall_ns for r in requests if is_register(r) or is_deregister(r))
        events = [bench.watcher.get(action, cid).time_nano for cid in ids]
        result[phase] = {
            "all_done_s": round((last_write - began_ns) / 1e9, 3),
            "docker_first_to_last_event_s": round((max(events) - min(events)) / 1e9, 3),
            "lag_after_last_event_ms": round((last_write - max(events)) / 1e6, 1),
            "writes": _writes(requests),
            "requests_by_kind": _kinds(requests),
            "double_service_ms": summary_ms(double.service_times_ns(began_ns)),
            **cpu,
        }
    pool.close()
    result["foreign_share_percent"] = max(result[p]["foreign_share_percent"] for p, _, _ in phases)
    return result


def resync(bench: Bench, seconds: float, idle_requests_per_s: float) -> dict[str, Any]:
    """``-resync 1`` with nothing changing: writes (target 0), requests and CPU per resync."""
    with BenchDouble() as double:
        args = ["-resync", "1", "-log-level", "DEBUG"]
        proc = bench.registrator(double.port, args, label="resync")
        try:
            double.wait_ids(set(bench.background).issubset, timeout=120)
            proc.wait_log("synced: ", timeout=30)
            proc.wait_log("resync: ", timeout=30)
            time.sleep(0.5)
            double.clear_requests()
            before = proc.log().count("resync: ")
            window = bench.window(proc)
            time.sleep(seconds)
            cpu = window.stop()
            log, requests = proc.log(), double.requests()
        finally:
            proc.stop()
    resyncs = log.count("resync: ") - before
    stamps = [log_time_ns(line) for line in log.splitlines() if "resync: " in line]
    periods = [(b - a) / 1e9 for a, b in itertools.pairwise(stamps)]
    beyond_polls = len(requests) - idle_requests_per_s * cpu["seconds"]
    return {
        "asked_period_s": 1.0,
        "resyncs": resyncs,
        "measured_period_s_median": round(statistics.median(periods), 2) if periods else None,
        "writes": _writes(requests),
        "requests_by_kind": _kinds(requests),
        "requests_per_resync": round(len(requests) / max(1, resyncs), 2),
        "requests_per_resync_beyond_agent_poll": round(beyond_polls / max(1, resyncs), 2),
        "registrator_cpu_per_resync_s": round(cpu["registrator_cpu_s"] / max(1, resyncs), 3),
        **cpu,
    }
