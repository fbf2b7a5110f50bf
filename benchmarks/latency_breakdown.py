"""Where an event's latency goes, stage by stage.

``python -m benchmarks.latency_breakdown [--containers 300] [--starts 100]`` runs the same
start/remove cycles as the event-latency benchmark against registrator wrapped by
``benchmarks.trace``, then splits each ``start`` -> register (and ``die`` -> deregister) into:

- delivery: dockerd's event timestamp -> registrator has parsed the event;
- queue: -> a worker took the container from the keyed queue;
- inspect: the inspect request to dockerd (from the worker taking it to the answer);
- derive: computing the services;
- reconcile: -> the agent adapter is called (reconciler lock, desired-state merge, plan);
- client send: -> the request arrives at the Consul double (python-consul2, requests);
- double + answer: -> the adapter returns (the double's work, reading the answer).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks import scenarios
from benchmarks.harness import (
    REPO,
    BenchDouble,
    CodeUnderTest,
    is_deregister,
    is_register,
    percentile,
    registered_id,
)

STAGES = ("delivery", "queue", "inspect", "derive", "reconcile", "client send", "double + answer")


def _load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def breakdown(
    trace: list[dict[str, Any]],
    requests: list[Any],
    watcher: Any,
    cycles: list[tuple[str, str]],
    action: str,
) -> dict[str, list[float]]:
    """Stage durations (ms) for every cycle's ``action`` (start or die)."""
    by_cid: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in trace:
        if "cid" in rec:
            by_cid[rec["cid"]].append(rec)
    arrivals: dict[str, int] = {}
    for r in requests:
        if action == "start" and is_register(r):
            arrivals.setdefault(registered_id(r), r.wall_ns)
        elif action == "die" and is_deregister(r):
            arrivals.setdefault(r.path.rsplit("/", 1)[1], r.wall_ns)
    write = "register" if action == "start" else "deregister"
    sid_writes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in trace:
        if rec["what"].startswith(write + ".") and "sid" in rec:
            sid_writes[rec["sid"]].append(rec)
    out: dict[str, list[float]] = defaultdict(list)
    for cid, sid in cycles:
        nano = watcher.get(action, cid).time_nano
        recs = by_cid[cid]

        def first(what: str, after: int, recs: list[dict[str, Any]] = recs) -> int | None:
            return next((r["t"] for r in recs if r["what"] == what and r["t"] >= after), None)

        event = next(
            (r["t"] for r in recs if r["what"] == "event" and r.get("action") == action), None
        )
        if event is None:
            continue
        dequeue = first("dequeue", event)
        writes = sid_writes.get(sid, [])
        begin = next(
            (r["t"] for r in writes if r["what"].endswith(".begin") and r["t"] >= event), None
        )
        end = next((r["t"] for r in writes if r["what"].endswith(".end") and r["t"] >= event), None)
        arrival = arrivals.get(sid)
        if dequeue is None or begin is None or end is None or arrival is None:
            continue
        # A stage that did not happen (no inspect for a die, no derive for a stopped
        # container) takes no time.
        inspect_end = first("inspect.end", dequeue)
        if inspect_end is None or inspect_end > begin:
            inspect_end = dequeue
        derive_end = first("derive.end", inspect_end)
        if derive_end is None or derive_end > begin:
            derive_end = inspect_end
        out["delivery"].append((event - nano) / 1e6)
        out["queue"].append((dequeue - event) / 1e6)
        out["inspect"].append((inspect_end - dequeue) / 1e6)
        out["derive"].append((derive_end - inspect_end) / 1e6)
        out["reconcile"].append((begin - derive_end) / 1e6)
        out["client send"].append((arrival - begin) / 1e6)
        out["double + answer"].append((end - arrival) / 1e6)
        out["total (event -> arrival)"].append((arrival - nano) / 1e6)
    return out  # fmt: skip


def render(stages: dict[str, list[float]], title: str) -> str:
    lines = [
        f"{title} (n={len(stages.get('delivery', []))})",
        "| stage | p50 ms | p90 ms | p99 ms |",
    ]
    lines.append("| --- | --- | --- | --- |")
    for name in (*STAGES, "total (event -> arrival)"):
        values = stages.get(name, [])
        cells = " | ".join(f"{percentile(values, q):.2f}" for q in (50, 90, 99))
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.latency_breakdown")
    p.add_argument("--containers", type=int, default=300)
    p.add_argument("--starts", type=int, default=100)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--ref", default="HEAD", help="commit to measure ('worktree': as it is)")
    args = p.parse_args(argv)
    code = CodeUnderTest.export(args.ref)
    args.out.mkdir(parents=True, exist_ok=True)
    trace_path = args.out / "trace.jsonl"
    trace_path.unlink(missing_ok=True)
    bench = scenarios.Bench(args.out, code=code)
    try:
        scenarios.populate(bench, args.containers)
        expected = set(bench.background)
        with BenchDouble() as double:
            proc = bench.registrator(
                double, label="traced", module=("benchmarks.trace", str(trace_path))
            )
            try:
                double.wait_ids(lambda ids: expected <= ids, timeout=120)
                time.sleep(2)
                figures = scenarios.event_latency(bench, proc, double, args.starts)
                requests = double.requests()
            finally:
                proc.stop()
        trace = _load(trace_path)
        cycles = [(e.container_id, f"{e.name}") for e in bench.watcher.events if e.action == "start" and e.name.startswith("lat.")]  # fmt: skip
        from benchmarks.harness import service_id

        cycles = [(cid, service_id(name, scenarios.LATENCY_PORT + int(name.split(".")[1]))) for cid, name in cycles]  # fmt: skip
        report = [
            render(breakdown(trace, requests, bench.watcher, cycles, "start"), "start -> register"),
            render(breakdown(trace, requests, bench.watcher, cycles, "die"), "die -> deregister"),
        ]
    finally:
        bench.close()
        code.cleanup()
    text = f"registrator {code.commit}\n\n" + "\n\n".join(report)
    print(f"{args.containers} background containers; figures of this traced run: "
          f"start p50 {figures['start_to_register_ms']['p50']} ms, "
          f"die p50 {figures['die_to_deregister_ms']['p50']} ms\n")  # fmt: skip
    print(text)
    (args.out / "latency_breakdown.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
