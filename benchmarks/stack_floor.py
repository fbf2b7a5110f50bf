"""registrator's start-up beside the floor of its chosen libraries: ``python -m
benchmarks.stack_floor [--ref HEAD] [--containers 300] [--rounds 5] [--instructions]``.

The floor is ``benchmarks.floor_program``: the least a start-up sync does with the Docker SDK
and python-consul2 (ping, load them, list, inspect each container through the SDK's pool,
register each through python-consul2; nothing else). Whatever registrator spends above it is
its own work (validation, derivation, logs, bookkeeping, the event stream); the floor itself
is what no registrator on these libraries can go below on this machine. Both run against one
private dockerd holding ``--containers`` running containers and a fresh Consul double each:
each round starts the floor once, then registrator, so both see the same moment of the host.
Prints a line per start-up and the medians. With ``--instructions`` both are also counted
under valgrind's callgrind (see ``benchmarks.instructions``), with no container and with
``--containers``. Writes ``stack_floor.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import scenarios
from benchmarks.harness import REPO, CodeUnderTest
from benchmarks.instructions import count_startup

PROGRAMS = {"floor": ("benchmarks.floor_program",), "registrator": ("registrator",)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.stack_floor", description=__doc__)
    p.add_argument("--ref", default="HEAD", help="registrator's commit ('worktree': the tree)")
    p.add_argument("--containers", type=int, default=300)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--instructions", action="store_true", help="count instructions too")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args(argv)
    if args.instructions and shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    code = CodeUnderTest.export(args.ref)
    bench = scenarios.Bench(args.out, code=code)
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in PROGRAMS}
    counts: dict[str, dict[str, int]] = {name: {} for name in PROGRAMS}
    dumps = Path(tempfile.mkdtemp(prefix="registrator-callgrind-"))
    try:
        if args.instructions:
            for name, module in PROGRAMS.items():
                counts[name]["empty"] = count_startup(bench, set(), dumps, module)
        scenarios.populate(bench, args.containers)
        for n in range(args.rounds):
            for name, module in PROGRAMS.items():
                startup, proc, double = scenarios.startup_sync(bench, 1, module=module)
                proc.stop()
                double.stop()
                run = startup["runs"][0]
                rows[name].append(run)
                print(
                    f"round {n} {name}: start-up {run['sync_s']} s, CPU "
                    f"{run['registrator_cpu_s']} s, first request "
                    f"{run['first_consul_request_s']} s",
                    flush=True,
                )
        if args.instructions:
            for name, module in PROGRAMS.items():
                counts[name]["full"] = count_startup(bench, set(bench.background), dumps, module)
    finally:
        bench.close()
        code.cleanup()
        shutil.rmtree(dumps, ignore_errors=True)
    results: dict[str, dict[str, Any]] = {}
    for name, runs in rows.items():
        result: dict[str, Any] = {
            key: round(statistics.median(run[key] for run in runs), 3)
            for key in ("sync_s", "registrator_cpu_s", "first_consul_request_s")
        }
        result["sync_s_all"] = [run["sync_s"] for run in runs]
        if counts[name]:
            empty, full = counts[name]["empty"], counts[name]["full"]
            result["startup_empty_instructions"] = empty
            result["startup_instructions"] = full
            result["instructions_per_container"] = round((full - empty) / args.containers)
        results[name] = result
        print(
            f"{name}: start-up median {result['sync_s']} s (of {result['sync_s_all']}), CPU "
            f"{result['registrator_cpu_s']} s, first request {result['first_consul_request_s']} s"
        )
        if counts[name]:
            print(
                f"{name}: instructions {empty / 1e6:.1f} M with no container, {full / 1e6:.1f} M "
                f"with {args.containers}, {result['instructions_per_container'] / 1e3:.0f} K "
                "per container"
            )
    doc = {
        "registrator_commit": code.commit,
        "containers": args.containers,
        "rounds": args.rounds,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "results": results,
    }
    (args.out / "stack_floor.json").write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
