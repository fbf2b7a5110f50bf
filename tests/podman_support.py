"""A private rootful Podman for the Podman tier: its own storage, run and event-log
directories under a temporary directory, and its Docker-compatible API served by
``podman system service`` on a socket of its own, which a test may stop and start again.

Podman 4.3 here runs containers only with runc and with limits no higher than the host's,
and it cannot run health checks by itself (no systemd timers): a test runs a probe with
``podman healthcheck run``. Containers get slirp4netns networking, which publishes ports on
the host without touching its bridges or firewall rules."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.conftest import TEST_IMAGE, engine_answers, wait_until

PODMAN = shutil.which("podman")
# The name Podman gives the test image it loads from Docker.
PODMAN_IMAGE = f"localhost/{TEST_IMAGE}"
# What Podman makes outside its configured directories when they are missing (the image
# cache of rootful Podman, and the defaults a stray call would use): removed at the end
# when this created them, deepest first.
SYSTEM_PATHS = (
    "/var/lib/containers/cache",
    "/var/lib/containers",
    "/run/containers",
    "/run/libpod",
)

needs_podman = pytest.mark.skipif(
    PODMAN is None, reason="podman is not installed (.ci/run installs it)"
)

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
netns = "slirp4netns"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{root}/events.log"
tmp_dir = "{root}/tmp"

[network]
network_config_dir = "{root}/networks"
"""

STORAGE_CONF = """\
[storage]
driver = "overlay"
graphroot = "{root}/storage"
runroot = "{root}/run"
"""


class PodmanService:
    """A Podman of its own and its API service; ``close()`` removes all of it."""

    def __init__(self) -> None:
        self._existing = {path for path in SYSTEM_PATHS if os.path.lexists(path)}
        self.root = Path(tempfile.mkdtemp(prefix="rtest-podman-"))
        (self.root / "containers.conf").write_text(CONTAINERS_CONF.format(root=self.root))
        (self.root / "storage.conf").write_text(STORAGE_CONF.format(root=self.root))
        self.env = {
            **os.environ,
            "CONTAINERS_CONF": str(self.root / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.root / "storage.conf"),
        }
        self.socket = self.root / "podman.sock"
        self.host = f"unix://{self.socket}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = open(self.root / "service.log", "ab")  # noqa: SIM115 - lives with the service

    def start(self) -> None:
        assert PODMAN is not None
        self.proc = subprocess.Popen(
            [PODMAN, "system", "service", "--time=0", self.host],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        wait_until(self.answers, timeout=30, what="podman system service to answer /_ping")

    def answers(self) -> bool:
        return engine_answers("podman system service", self.proc, self.host, self.log_tail)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def podman(self, *args: str, timeout: float = 60) -> str:
        """The podman command on this storage (it needs no service); its output."""
        assert PODMAN is not None
        result = subprocess.run(
            [PODMAN, *args], capture_output=True, text=True, env=self.env, timeout=timeout
        )
        assert result.returncode == 0, f"podman {' '.join(args)}: {result.stderr[-2000:]}"
        return result.stdout.strip()

    def load_test_image(self) -> None:
        """The test image from the host's Docker engine, exported by its name (as
        ``PrivateDockerd.load_test_image``); Podman names it ``localhost/rtest/busybox``."""
        assert PODMAN is not None
        main = docker.from_env()
        try:
            archive = b"".join(main.api.get_image(TEST_IMAGE))
        finally:
            main.close()
        result = subprocess.run(
            [PODMAN, "load"], input=archive, capture_output=True, env=self.env, timeout=120
        )
        assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]

    def client(self) -> Any:
        return docker.DockerClient(base_url=self.host, version="auto", timeout=60)

    def log_tail(self) -> str:
        return (self.root / "service.log").read_text(errors="replace")[-3000:]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.podman("rm", "--all", "--force", "--time", "0")
        self.stop()
        self._log.close()
        _unmount_under(self.root)  # the storage mounts its overlay directory on itself
        shutil.rmtree(self.root, ignore_errors=True)
        for path in SYSTEM_PATHS:
            if path not in self._existing:
                shutil.rmtree(path, ignore_errors=True)


def _unmount_under(root: Path) -> None:
    """Whatever is still mounted under ``root``, deepest first."""
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    points = [line.split()[1] for line in mounts if len(line.split()) > 1]
    for point in sorted((p for p in points if p.startswith(f"{root}/")), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


@pytest.fixture(scope="session")
def podman_service() -> Iterator[PodmanService]:
    """One private Podman for the session, its API served and the test image loaded."""
    if PODMAN is None:
        pytest.skip("podman is not installed (.ci/run installs it)")
    service = PodmanService()
    try:
        service.start()
        service.load_test_image()
        yield service
    finally:
        service.close()


class PodmanContainers:
    """Runs the test's containers through the podman command, as a user would."""

    def __init__(self, service: PodmanService) -> None:
        self.service = service
        self.names: list[str] = []

    def run(self, name: str, *args: str, command: str | list[str] = "sleep 600") -> str:
        self.names.append(name)
        argv = ["run", "-d", "--pull=never", "--name", name, *args, PODMAN_IMAGE]
        return self.service.podman(
            *argv, *(command.split() if isinstance(command, str) else command)
        )

    def __call__(self, *args: str) -> str:
        return self.service.podman(*args)

    def probe(self, name: str) -> None:
        """One run of the container's health check (it fails when the check fails)."""
        assert PODMAN is not None
        subprocess.run(
            [PODMAN, "healthcheck", "run", name],
            capture_output=True,
            env=self.service.env,
            timeout=60,
            check=False,
        )

    def cleanup(self) -> None:
        if self.names:
            with contextlib.suppress(AssertionError):  # some are gone already
                self.service.podman("rm", "--force", "--ignore", "--time", "0", *self.names)


@pytest.fixture
def podman(podman_service: PodmanService) -> Iterator[PodmanContainers]:
    """The test's containers on the session's Podman, removed at its end; the service runs
    (a test may have stopped it)."""
    if not podman_service.answers():
        podman_service.start()
    helper = PodmanContainers(podman_service)
    yield helper
    helper.cleanup()
    if not podman_service.answers():
        podman_service.start()
