"""A second, private Docker daemon that a test may stop and restart without disturbing the
engine every other test uses. It runs in a network namespace of its own (``unshare --net``):
with ``--bridge=none`` dockerd deletes ``docker0``, which must not happen to the host's. Its
containers use host networking (that namespace's) and ``--expose``, which registrator
registers with host port = exposed port; its API socket is a file, reachable from here."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import docker

from tests.conftest import TEST_IMAGE, engine_answers, wait_until


class PrivateDockerd:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="rtest-dockerd-"))
        self.socket = self.root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = open(self.root / "dockerd.log", "ab")  # noqa: SIM115 - lives with the daemon

    def start(self) -> None:
        argv = ["unshare", "--net", "dockerd", "--host", self.host]
        argv += ["--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec")]
        argv += ["--pidfile", str(self.root / "docker.pid"), "--bridge=none"]
        argv += ["--iptables=false", "--ip-masq=false", "--ip-forward=false"]
        self.proc = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self.answers, timeout=60, what="private dockerd to answer")

    def answers(self) -> bool:
        return engine_answers("private dockerd", self.proc, self.host, self.log_tail)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> float:
        """Stop and start again; returns when it answers. The seconds it was down."""
        started = time.monotonic()
        self.stop()
        self.start()
        return time.monotonic() - started

    def client(self) -> Any:
        return docker.DockerClient(base_url=self.host, timeout=60)

    def load_test_image(self) -> None:
        """The test image from the host's engine, exported by its name (``/images/{name}/get``
        tags the archive with that reference): ``save(named=True)`` would use the image's
        first tag, which is another name once a user has run ``docker tag rtest/busybox X``."""
        main = docker.from_env()
        target = self.client()
        try:
            target.images.load(b"".join(main.api.get_image(TEST_IMAGE)))
        finally:
            target.close()
            main.close()

    def log_tail(self) -> str:
        return (self.root / "dockerd.log").read_text(errors="replace")[-3000:]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                client = self.client()
                for container in client.containers.list(all=True):
                    container.remove(force=True)
                client.close()
        self.stop()
        self._log.close()
        netns = self.root / "exec" / "netns" / "default"
        if os.path.ismount(netns):
            subprocess.run(["umount", str(netns)], check=False)
        shutil.rmtree(self.root, ignore_errors=True)
