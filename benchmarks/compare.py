"""``python3 -m benchmarks.compare --ref OLD,NEW``: commits measured in turn on one private
dockerd with the same containers, interleaved (OLD, NEW, then NEW, OLD, ...), so that the
machine's drift over the run falls on each alike. At each number of running containers
(``--scale``): the start-up sync (Popen -> every service registered), event latency (dockerd's
``start`` event -> the register at the double, p50 and p99 over ``--starts`` cycles) and the
peak RSS of the process that did both. Prints a table (medians over ``--rounds``) and writes
``compare.json`` into ``--out``."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import REPO, CodeUnderTest
from benchmarks.scenarios import Bench, event_latency, memory, set_running, startup_sync


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__)
    parser.add_argument("--ref", required=True, help="commits to compare, comma-separated")
    parser.add_argument(
        "--scale", default="50,300,1000", help="running containers, comma-separated"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="measurements of each commit per size"
    )
    parser.add_argument(
        "--starts", type=int, default=200, help="event latency cycles per measurement"
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    return parser.parse_args(argv)


def measure(bench: Bench, starts: int, tag: str) -> dict[str, Any]:
    """One start-up sync, then event latency, with the same process; its peak RSS."""
    sync, proc, double = startup_sync(bench, 1)
    try:
        latency = event_latency(bench, proc, double, starts, tag)
        rss = memory(proc)["vm_hwm_mb"]
    finally:
        proc.stop()
        double.stop()
    return {
        "sync_s": sync["sync_s_median"],
        "cpu_s": sync["registrator_cpu_s_median"],
        "p50_ms": latency["start_to_register_ms"]["p50"],
        "p99_ms": latency["start_to_register_ms"]["p99"],
        "peak_rss_mb": rss,
        "foreign_share_percent": max(
            sync["foreign_share_percent"], latency.get("foreign_share_percent", 0.0)
        ),
    }


def table(rows: dict[str, dict[str, list[dict[str, Any]]]], refs: list[str]) -> str:
    """Medians per size and commit; the last commit against the first, in %."""
    keys = ("sync_s", "p50_ms", "p99_ms", "peak_rss_mb")
    lines = [
        "| running | measure | " + " | ".join(refs) + " | change |",
        "|---" * (len(refs) + 3) + "|",
    ]
    for count in next(iter(rows.values())):
        for key in keys:
            medians = [statistics.median(r[key] for r in rows[ref][count]) for ref in refs]
            change = 100 * (medians[-1] - medians[0]) / medians[0] if medians[0] else 0.0
            cells = " | ".join(f"{m:g}" for m in medians)
            lines.append(f"| {count} | {key} | {cells} | {change:+.1f} % |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    counts = [int(c) for c in args.scale.split(",") if c]
    subprocess.run(["bash", str(REPO / "tests/images/build-busybox.sh")], check=True)
    codes = [CodeUnderTest.export(ref) for ref in args.ref.split(",")]
    refs = [code.commit for code in codes]
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {ref: {} for ref in refs}
    bench = Bench(args.out, codes[0])
    try:
        for count in counts:
            set_running(bench, count)
            for n in range(args.rounds):
                for code in codes if n % 2 == 0 else codes[::-1]:
                    bench.code = code
                    tag = f"{count}r{n}{refs.index(code.commit)}"
                    print(f"[{time.strftime('%H:%M:%S')}] {code.commit}: {count} running, "
                          f"round {n + 1}", file=sys.stderr, flush=True)  # fmt: skip
                    row = measure(bench, args.starts, tag)
                    rows[code.commit].setdefault(str(count), []).append(row)
                    print(f"    {row}", file=sys.stderr, flush=True)
    finally:
        bench.close()
        for code in codes:
            code.cleanup()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows, refs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
