"""Summarise a py-spy raw profile (``--format raw``, collapsed stacks, ``--threads``).

``python -m benchmarks.profile_summary FILE [--top 25]`` prints where the CPU samples went:
by activity (imports, inspecting containers, writing to Consul, ...), by thread, and the
functions with the most samples, inclusive and self. ``python -m benchmarks --profile``
writes such files (``profile-*.txt``) into its output folder.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

# (activity, any of these substrings in a stack), first match wins: most specific first.
ACTIVITIES = (
    ("imports", ("_find_and_load", "_call_with_frames_removed")),
    ("Consul: register/deregister", ("ConsulAgent.register", "ConsulAgent.deregister")),
    ("Consul: read agent services", ("ConsulAgent.services", "ConsulAgent.owned_services")),
    ("Consul: ping", ("ConsulAgent.ping",)),
    ("Docker: inspect", ("DockerSource.inspect",)),
    ("Docker: list containers", ("DockerSource.container_ids",)),
    ("Docker: event stream", ("EventStream.__iter__", "DockerSource.events")),
    ("derive services", ("derive_services",)),
    ("logging", ("logging/__init__.py", "Logger.")),
    ("reconciler (own work)", ("Reconciler.",)),
    ("work queue", ("WorkQueue.",)),
    (
        "start-up (cli, config, clients)",
        ("cli.py", "DockerSource.__init__", "ConsulAgent.__init__"),
    ),
)

# Inside HTTP calls: what part of the client stack.
HTTP_PARTS = (
    ("requests: proxy/env lookup per request", ("merge_environment_settings",)),
    ("requests: prepare request", ("prepare_request", "PreparedRequest.prepare")),
    ("socket send/recv, http.client", ("sendall", "recv_into", "readinto", "_read_status")),
    ("JSON decode", ("json/decoder.py", "json/__init__.py:346", "loads (json")),
    ("JSON encode", ("json/encoder.py", "dumps (json")),
    ("tenacity", ("tenacity",)),
    ("urllib3 pool / connection", ("urllib3",)),
    ("requests: other", ("requests/",)),
    ("docker SDK: other", ("docker/",)),
    ("consul SDK: other", ("consul/",)),
)


def load(path: Path) -> list[tuple[str, list[str], int]]:
    samples = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread = frames[0]
        if thread.startswith("thread ("):
            name = thread.split(":", 1)[1].strip() if ":" in thread else thread
            frames = frames[1:]
        else:
            name = "?"
        samples.append((name, frames, int(count)))
    return samples


def classify(frames: list[str], table: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
    text = ";".join(frames)
    for label, needles in table:
        if any(n in text for n in needles):
            return label
    return "other"


def summarize(path: Path, top: int = 20) -> str:
    samples = load(path)
    total = sum(c for _, _, c in samples) or 1
    out = [f"{path.name}: {total} samples"]

    def block(title: str, counter: Counter[str], limit: int = top) -> None:
        out.append(f"\n{title}")
        for key, count in counter.most_common(limit):
            out.append(f"  {100 * count / total:5.1f}%  {key}")

    threads: Counter[str] = Counter()
    activities: Counter[str] = Counter()
    http: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    for thread, frames, count in samples:
        base = thread.split("-")[0] if thread.startswith("worker-") else thread
        threads[base] += count
        activity = classify(frames, ACTIVITIES)
        activities[activity] += count
        if activity.startswith(("Consul", "Docker")):
            http[f"{activity} / {classify(frames, HTTP_PARTS)}"] += count
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            self_[frames[-1]] += count
    block("by thread (workers together)", threads)
    block("by activity", activities)
    block("inside Docker and Consul calls", http)
    block("inclusive (top functions)", inclusive)
    block("self (leaf functions)", self_)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_summary")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--top", type=int, default=20)
    args = p.parse_args(argv)
    for path in args.files:
        print(summarize(path, args.top))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
