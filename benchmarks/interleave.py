"""Two commits measured in turn under the same conditions: ``python -m benchmarks.interleave
BEFORE,AFTER [--rounds 3] [--containers 300] [--starts 60]``.

On a shared machine two full runs minutes apart can see very different load (other people's
short-lived processes, which the runner's foreign share does not catch). Here one private
dockerd serves both; each round starts each commit once (start-up sync), runs ``--starts``
start/remove cycles on it (event latency), stops it, and goes on with the next commit. Prints
one line per round and commit and writes ``interleave.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from benchmarks import scenarios
from benchmarks.harness import REPO, CodeUnderTest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.interleave", description=__doc__)
    p.add_argument("refs", help="commits, comma-separated (e.g. fd476b3,HEAD)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--containers", type=int, default=300)
    p.add_argument("--starts", type=int, default=60, help="start/remove cycles per round")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    codes = {ref: CodeUnderTest.export(ref) for ref in args.refs.split(",")}
    rows: dict[str, list[dict[str, Any]]] = {code.commit: [] for code in codes.values()}
    bench = scenarios.Bench(args.out)
    try:
        scenarios.populate(bench, args.containers)
        for n in range(args.rounds):
            for code in codes.values():
                bench.code = code
                startup, proc, double = scenarios.startup_sync(bench, 1)
                try:
                    latency = scenarios.event_latency(
                        bench, proc, double, args.starts, f"{code.commit[:4]}{n}"
                    )
                finally:
                    proc.stop()
                    double.stop()
                run = startup["runs"][0]
                row = {
                    "sync_s": run["sync_s"],
                    "registrator_cpu_s": run["registrator_cpu_s"],
                    "first_consul_request_s": run["first_consul_request_s"],
                    "other_processes_cpu_s": run["other_processes_cpu_s"],
                    "latency_ms": latency["start_to_register_ms"],
                }
                rows[code.commit].append(row)
                lat = row["latency_ms"]
                print(
                    f"round {n} {code.commit}: start-up {row['sync_s']} s, CPU "
                    f"{row['registrator_cpu_s']} s, first request "
                    f"{row['first_consul_request_s']} s, other CPU "
                    f"{row['other_processes_cpu_s']} s; latency p50 {lat['p50']} p90 "
                    f"{lat['p90']} p99 {lat['p99']} ms",
                    flush=True,
                )
    finally:
        bench.close()
        for code in codes.values():
            code.cleanup()
    for commit, runs in rows.items():
        print(
            f"{commit}: median start-up {statistics.median(r['sync_s'] for r in runs)} s, "
            f"CPU {statistics.median(r['registrator_cpu_s'] for r in runs)} s, first request "
            f"{statistics.median(r['first_consul_request_s'] for r in runs)} s, latency p50 "
            f"{statistics.median(r['latency_ms']['p50'] for r in runs)} ms"
        )
    (args.out / "interleave.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
