"""Health sync's cost (issue 22): CPU and requests per health_status event, and the writes of a
no-op resync with N containers (two checks and health sync each), on a private dockerd.

    python3 -m benchmarks.health_sync [N]     # default 300
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import TEST_IMAGE, wait_until
from tests.consul_double import ConsulDouble
from tests.private_dockerd import PrivateDockerd

N = int(sys.argv[1]) if len(sys.argv) > 1 else 300
TOGGLES = 20


def cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


engine = PrivateDockerd()
engine.start()
try:
    engine.load_test_image()
    env = {**os.environ, "DOCKER_HOST": engine.host}

    def docker(*args: str) -> str:
        return subprocess.run(
            ["docker", *args], env=env, check=True, capture_output=True, text=True, timeout=120
        ).stdout.strip()

    started = time.monotonic()
    for i in range(N):
        docker(
            "run",
            "-d",
            "--net=host",
            "--name",
            f"hs{i}",
            "--expose",
            str(20000 + i),
            "-e",
            "SERVICE_CHECK_1_TTL=1m",
            "-e",
            "SERVICE_CHECK_2_TTL=2m",
            "--health-cmd",
            "true",
            "--health-interval",
            "1h",
            "--health-start-period",
            "1h",
            TEST_IMAGE,
            "sleep",
            "3600",
        )
    print(f"{N} containers started in {time.monotonic() - started:.0f}s", flush=True)
    docker(
        "run",
        "-d",
        "--net=host",
        "--name",
        "toggle",
        "--expose",
        "19999",
        "-e",
        "SERVICE_CHECK_1_TTL=1m",
        "-e",
        "SERVICE_CHECK_2_TTL=2m",
        "--health-cmd",
        "[ -f /tmp/ok ]",
        "--health-interval",
        "300ms",
        "--health-retries",
        "1",
        TEST_IMAGE,
        "sh",
        "-c",
        "touch /tmp/ok; sleep 3600",
    )
    with ConsulDouble() as consul:
        uri = f"consul://127.0.0.1:{consul.port}"
        log = tempfile.NamedTemporaryFile(suffix=".log", delete=False)  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "registrator", "-health-sync", "-ip", "127.0.0.1", uri],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(lambda: "synced:" in Path(log.name).read_text(), 120, "synced")
            wait_until(lambda: len(consul.services()) == N + 1, 60, "all registered")
            health_checks = sum(
                c["CheckID"].endswith(":docker-health") for c in consul.checks().values()
            )
            print(
                f"services {len(consul.services())}, checks {len(consul.checks())}, health checks {health_checks}"
            )
            tid = f"service:{next(s for s in consul.services() if ':toggle:' in s)}:docker-health"
            wait_until(lambda: consul.checks()[tid]["Status"] == "passing", 30, "toggle passing")
            consul.clear_requests()
            resync = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "registrator",
                    "resync",
                    "-health-sync",
                    "-ip",
                    "127.0.0.1",
                    uri,
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            print("resync:", resync.stdout.strip().splitlines()[-1], "exit", resync.returncode)
            print("resync writes:", len(consul.writes()))
            # events
            consul.clear_requests()
            before = cpu(proc.pid)
            for n in range(TOGGLES):
                want = "critical" if n % 2 == 0 else "passing"
                docker(
                    "exec",
                    "toggle",
                    "sh",
                    "-c",
                    "rm /tmp/ok" if want == "critical" else "touch /tmp/ok",
                )
                wait_until(lambda: consul.checks()[tid]["Status"] == want, 20, want)  # noqa: B023
            spent = cpu(proc.pid) - before
            reqs = consul.requests()
            writes = [r for r in reqs if r.method == "PUT"]
            reads = [r for r in reqs if r.method == "GET"]
            print(
                f"{TOGGLES} health changes: CPU {spent / TOGGLES * 1000:.1f} ms each "
                f"(the process's, agent polls included); writes {len(writes)} "
                f"({sorted({r.path.rsplit('/', 1)[0] for r in writes})}); reads {len(reads)}"
            )
        finally:
            proc.terminate()
            proc.wait(10)
finally:
    engine.close()
