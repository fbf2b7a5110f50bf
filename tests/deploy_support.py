"""Helpers shared by the deployment tests (the Docker image and the Ansible role)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import HOSTNAME, REPO, SESSION_LABEL, environ_outside_work_tree

PLAYBOOK = REPO / "ansible/ami.yml"
# How the role mounts the socket, and where registrator looks for it in the container.
SOCKET_BIND = "/var/run/docker.sock:/tmp/docker.sock"


def tool(name: str) -> str:
    """A command installed with the test extra: beside this Python first, then on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: python3 -m pip install -e '.[test]'")
    return found


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def service_id(container: str, port: int = 80) -> str:
    return f"{HOSTNAME}:{container}:{port}"


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def remove_container(name: str) -> None:
    docker("rm", "-f", name)


def container_logs(name: str) -> str:
    result = docker("logs", name)
    return result.stdout + result.stderr


def wait_registered(consul: Any, sid: str, registrator: str) -> dict[str, Any]:
    """The double's services once ``sid`` is there; on timeout the failure shows the
    registrator container's log."""
    try:
        services: dict[str, Any] = consul.wait_for(lambda s: sid in s, timeout=30)
    except AssertionError as exc:
        logs = container_logs(registrator)
        raise AssertionError(f"{exc}\n--- registrator ---\n{logs}") from None
    return services


def published_port(docker_client: Any, name: str, port: str = "80/tcp") -> int:
    attrs = docker_client.api.inspect_container(name)
    return int(attrs["NetworkSettings"]["Ports"][port][0]["HostPort"])


def run_web(containers: Any, service_name: str) -> str:
    """A busybox httpd publishing port 80 on 127.0.0.1, announced as ``service_name``."""
    name = unique("deploy-web")
    containers.run(
        name,
        "-p",
        "127.0.0.1::80",
        "-e",
        f"SERVICE_NAME={service_name}",
        command="httpd -f -p 80 -h /www",
    )
    return name


class PlaybookRun:
    def __init__(self, result: subprocess.CompletedProcess[str]) -> None:
        self.returncode = result.returncode
        self.output = result.stdout + result.stderr

    def recap(self) -> dict[str, int]:
        match = re.search(r"^localhost\s*:\s*(.*)$", self.output, re.MULTILINE)
        assert match, f"no PLAY RECAP in:\n{self.output}"
        return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}

    def ok(self) -> PlaybookRun:
        assert self.returncode == 0, f"ansible-playbook exited {self.returncode}:\n{self.output}"
        assert self.recap()["failed"] == 0, self.output
        return self


def ansible_playbook(extra_vars: dict[str, Any], *args: str, timeout: float = 600) -> PlaybookRun:
    """Run ansible/ami.yml against this host, as root without become (there is no sudo here).

    The modules run under this Python, which has the Docker SDK (interpreter discovery would
    pick a pyenv shim)."""
    all_vars = {
        "ansible_python_interpreter": sys.executable,
        "ansible_become": False,
        **extra_vars,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="registrator-vars-") as handle:
        json.dump(all_vars, handle)
        handle.flush()
        result = subprocess.run(
            [
                tool("ansible-playbook"),
                "-i",
                "localhost,",
                "-c",
                "local",
                str(PLAYBOOK),
                "-e",
                f"@{handle.name}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            # The role's pip must see the venv it installs into, not this test's work tree.
            env={
                **environ_outside_work_tree(),
                "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_FORCE_COLOR": "0",
                "ANSIBLE_LOCALHOST_WARNING": "0",
                "ANSIBLE_RETRY_FILES_ENABLED": "0",
                "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default",
            },
        )
    return PlaybookRun(result)


def session_labels() -> dict[str, str]:
    """The label conftest's docker_client fixture removes containers by at the session's end."""
    key, _, value = SESSION_LABEL.partition("=")
    return {key: value}
