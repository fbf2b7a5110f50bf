"""``python -m benchmarks.instructions [--ref REF[,REF...]] [--containers 300]``: the CPU
instructions a start-up sync takes, counted by valgrind's callgrind; the regression guard CI
runs.

Seconds on this machine move with the host (the same loop runs 1.8 times slower at some
moments, per CPU and within a second), so two start-ups of the same code differ by more than
most changes to it. The instruction count repeats within 0.05 %. Under valgrind registrator
runs about 30 times slower, one thread at a time: this says how much work a start-up is, not
how long it takes. Hence ``-agent-poll 600``: the comparison with the agent every 2 s would run
about 15 times in a start-up under valgrind and at most once in a real one.

For each commit, two start-ups on one private dockerd against the Consul double, each counted
from exec until its first sync is done: with no container (its ``synced:`` log line) and with
``--containers`` running ones (every one registered). Prints both and the difference per
container, and writes ``instructions.json`` into ``--out``. Needs ``valgrind``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import scenarios
from benchmarks.harness import REPO, BenchDouble, CodeUnderTest

AGENT_POLL = ("-agent-poll", "600")  # no timed agent comparison during a slowed start-up


def count_startup(bench: scenarios.Bench, expected: set[str], dumps: Path) -> int:
    """Instructions of one registrator start-up under callgrind, up to the moment the first
    sync is done: every ``expected`` ID registered, or (none expected) the ``synced:`` line."""
    with BenchDouble() as double:
        wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={dumps}/cg.%p"]
        proc = bench.registrator(
            double.port, AGENT_POLL, f"instructions-{len(expected)}", wrapper,
            env={"PYTHONHASHSEED": "0"},
        )  # fmt: skip
        try:
            if expected:
                double.wait_ids(expected.issubset, timeout=600)
            else:
                proc.wait_log("synced: ", timeout=300)
            subprocess.run(
                ["callgrind_control", "--dump=synced", str(proc.pid)],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
        finally:
            proc.stop()
    for path in dumps.glob(f"cg.{proc.pid}.*"):
        text = path.read_text(errors="replace")
        if "Trigger: dump synced\n" in text:
            totals = next(line for line in text.splitlines() if line.startswith("totals:"))
            return int(totals.split()[1])
    raise RuntimeError(f"callgrind wrote no 'synced' dump for {proc.pid} into {dumps}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.instructions", description=__doc__)
    p.add_argument(
        "--ref", default="HEAD",
        help="commits to measure, comma-separated (default HEAD; 'worktree': the work tree)",
    )  # fmt: skip
    p.add_argument("--containers", type=int, default=300)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    codes = [CodeUnderTest.export(ref) for ref in args.ref.split(",")]
    bench = scenarios.Bench(args.out, codes[0])
    dumps = Path(tempfile.mkdtemp(prefix="registrator-callgrind-"))
    empty: list[int] = []
    full: list[int] = []
    try:
        for code in codes:
            bench.code = code
            empty.append(count_startup(bench, set(), dumps))
        scenarios.populate(bench, args.containers)  # the same containers for every commit
        for code in codes:
            bench.code = code
            full.append(count_startup(bench, set(bench.background), dumps))
    finally:
        bench.close()
        for code in codes:
            code.cleanup()
        shutil.rmtree(dumps, ignore_errors=True)
    results = []
    for code, none, some in zip(codes, empty, full, strict=True):
        per_container = round((some - none) / max(1, args.containers))
        results.append({
            "registrator_commit": code.commit,
            "startup_empty_instructions": none,
            "startup_instructions": some,
            "instructions_per_container": per_container,
        })  # fmt: skip
        print(
            f"registrator {code.commit}: start-up with no container {none / 1e6:.1f} M "
            f"instructions, with {args.containers} {some / 1e6:.1f} M, "
            f"{per_container / 1e3:.0f} K per container"
        )
    doc = {
        "containers": args.containers,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "results": results,
    }
    (args.out / "instructions.json").write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
