"""The Ansible role ansible/roles/registrator, run for real by ansible/ami.yml against this host.

Container mode creates the container in the real Docker engine (from the image
`docker build` makes from this checkout, the registrator_image fixture), and the container, once
started, registers services in the Consul double; a new image recreates it. Systemd mode runs
against a temporary root (the role's path variables) with systemctl off: it makes a real venv
with the session's wheel installed and a unit that passes ``systemd-analyze verify``; the unit's
ExecStart, run with its environment, registers too; a new wheel upgrades the venv."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from registrator.core.model import OWNER_META_KEY
from tests.conftest import (
    HOSTNAME,
    REPO,
    TEST_IMAGE,
    Dist,
    environ_outside_work_tree,
    project_version,
    wait_until,
)
from tests.consul_double import ConsulDouble
from tests.deploy_support import (
    SOCKET_BIND,
    PlaybookRun,
    ansible_playbook,
    container_logs,
    docker,
    published_port,
    remove_container,
    run_web,
    service_id,
    session_labels,
    tool,
    unique,
    wait_registered,
)
from tests.go_registrator import go_registrations

pytestmark = pytest.mark.slow


@pytest.fixture
def temp_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="registrator-role-") as name:
        yield Path(name)


def test_ansible_lint_is_clean() -> None:
    result = subprocess.run(
        [tool("ansible-lint"), "--offline", "ansible/"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_role_runs_by_default_the_image_docker_build_makes() -> None:
    """`docker build -t registrator .` (the Dockerfile's one command) tags registrator:latest;
    the role's default, in its defaults and its argument spec, is that image."""
    assert "#   docker build -t registrator .\n" in (REPO / "Dockerfile").read_text()
    role = REPO / "ansible/roles/registrator"
    defaults = (role / "defaults/main.yml").read_text()
    assert re.findall(r"^registrator_image: (.*)$", defaults, re.MULTILINE) == [
        '"registrator:latest"'
    ]
    specs = (role / "meta/argument_specs.yml").read_text()
    spec = re.search(r"^ {6}registrator_image:\n((?: {8}.*\n)+)", specs, re.MULTILINE)
    assert spec, specs
    assert "        default: registrator:latest\n" in spec.group(1)


@pytest.fixture
def role_container(docker_client: Any, registrator_image: str) -> Iterator[str]:
    name = unique("registrator-role")
    yield name
    remove_container(name)


@pytest.fixture
def role_image(role_container: str, registrator_image: str) -> Iterator[str]:
    """A tag of its own for the session's image, which the test may rebuild as a new version."""
    tag = f"{unique('registrator-role-image')}:latest"
    subprocess.run(["docker", "tag", registrator_image, tag], check=True, timeout=60)
    yield tag
    remove_container(role_container)
    docker("rmi", tag)


def handler_ran(run: PlaybookRun) -> bool:
    return "RUNNING HANDLER [registrator : Restart registrator]" in run.output


@pytest.mark.docker
def test_container_mode_creates_a_host_network_container_that_registers(
    role_container: str,
    role_image: str,
    registrator_image: str,
    containers: Any,
    docker_client: Any,
    temp_dir: Path,
) -> None:
    token = unique("acl-token")
    token_file = temp_dir / "etc/registrator/consul-http-token"
    with ConsulDouble(acl_token=token) as consul:
        role_vars = {
            "registrator_mode": "container",
            "registrator_image": role_image,
            "registrator_image_pull": "never",
            "registrator_container_name": role_container,
            "registrator_container_labels": session_labels(),
            "registrator_ip": "127.0.0.1",
            "registrator_registry_uri": f"consul://127.0.0.1:{consul.port}",
            "registrator_consul_token": token,
            "registrator_token_file": str(token_file),
            "registrator_extra_flags": ["-tags", "ami"],
        }
        first = ansible_playbook(role_vars, "-v").ok()
        assert first.recap()["changed"] == 3, first.output  # token dir, token file, container
        assert token not in first.output

        attrs = docker_client.api.inspect_container(role_container)
        assert attrs["State"]["Status"] == "created"  # created while baking, not started
        host_config = attrs["HostConfig"]
        assert host_config["NetworkMode"] == "host"
        assert host_config["RestartPolicy"]["Name"] == "always"
        secret = "/run/secrets/consul-http-token"
        assert sorted(host_config["Binds"]) == sorted(
            [f"{SOCKET_BIND}:rw", f"{token_file}:{secret}:ro"]
        ), host_config["Binds"]
        # ami.yml turns -ecs on: the AMI is for ECS container instances.
        assert attrs["Config"]["Cmd"] == [
            "-ip", "127.0.0.1", "-cleanup", "-adopt", "-ecs", "-health-sync", "-tags", "ami",
            f"consul://127.0.0.1:{consul.port}",
        ]  # fmt: skip
        # The token is in a root-only file, not in the environment `docker inspect` shows.
        assert f"CONSUL_HTTP_TOKEN_FILE={secret}" in attrs["Config"]["Env"]
        assert token not in json.dumps(attrs)
        assert token_file.read_text().strip() == token
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600

        second = ansible_playbook(role_vars).ok()
        assert second.recap()["changed"] == 0, second.output
        assert docker_client.api.inspect_container(role_container)["Id"] == attrs["Id"]

        # An instance boots: Docker starts the container.
        subprocess.run(["docker", "start", role_container], check=True, timeout=60)
        service = unique("deploy-role")
        web = run_web(containers, service)
        sid = service_id(web)
        services = wait_registered(consul, sid, role_container)
        assert services[sid]["Service"] == service
        assert services[sid]["Tags"] == ["ami"]
        assert services[sid]["Port"] == published_port(docker_client, web)
        assert services[sid]["Meta"]["registrator"] == HOSTNAME

        # The operator's one-shot resync, through the role's tag.
        resync = ansible_playbook(role_vars, "--tags", "registrator_resync").ok()
        assert re.search(rf"unchanged\s+{re.escape(sid)}", resync.output), resync.output
        assert token not in resync.output

        containers.rm(web)
        consul.wait_for(lambda s: sid not in s, timeout=30)

        # An upgrade: a new image under the same name. The role recreates the container from it
        # and starts it again, since it was running (registrator_start is still false).
        new_version = subprocess.run(
            ["docker", "build", "-t", role_image, "-"],
            input=f"FROM {registrator_image}\nLABEL org.opencontainers.image.version=next\n",
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert new_version.returncode == 0, new_version.stdout + new_version.stderr
        upgrade = ansible_playbook(role_vars).ok()
        assert upgrade.recap()["changed"] == 1, upgrade.output
        upgraded = docker_client.api.inspect_container(role_container)
        assert upgraded["Id"] != attrs["Id"]
        assert upgraded["Image"] == docker_client.api.inspect_image(role_image)["Id"]
        assert upgraded["State"]["Running"], upgraded["State"]
        assert upgraded["HostConfig"]["Binds"] == host_config["Binds"]
        assert upgraded["Config"]["Cmd"] == attrs["Config"]["Cmd"]
        later = run_web(containers, unique("deploy-role"))
        wait_registered(consul, service_id(later), role_container)

        unchanged = ansible_playbook(role_vars).ok()
        assert unchanged.recap()["changed"] == 0, unchanged.output
        assert docker_client.api.inspect_container(role_container)["Id"] == upgraded["Id"]


@pytest.mark.docker
def test_container_mode_replaces_the_go_registrator_on_a_live_host(
    role_container: str, registrator_image: str, containers: Any, docker_client: Any
) -> None:
    """The documented migration: the role's container name is taken by the Go original's
    container; the role replaces it (its image differs), starts registrator, and registrator
    takes over what the Go original registered."""
    with ConsulDouble() as consul:
        # In the Go original's place: a container of that name and deployment, another image.
        old_id = subprocess.run(
            ["docker", "run", "-d", "--pull=never", "--name", role_container, "--net=host",
             "-v", SOCKET_BIND, "--label", "=".join(next(iter(session_labels().items()))),
             TEST_IMAGE, "sleep", "600"],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()  # fmt: skip
        web = run_web(containers, unique("deploy-adopt"))
        gone = run_web(containers, unique("deploy-gone"))
        for name in (web, gone):
            inspect = docker_client.api.inspect_container(name)
            for body in go_registrations(inspect, HOSTNAME, host_ip="127.0.0.1"):
                consul.register(body)
        containers.rm(gone)
        web_id, gone_id = service_id(web), service_id(gone)
        assert OWNER_META_KEY not in consul.services()[web_id].get("Meta", {})

        uri = f"consul://127.0.0.1:{consul.port}"
        role_vars = {
            "registrator_image": registrator_image,
            "registrator_image_pull": "never",
            "registrator_container_name": role_container,
            "registrator_container_labels": session_labels(),
            "registrator_ip": "127.0.0.1",
            "registrator_registry_uri": uri,
            "registrator_start": True,  # a live host: start the new one at once
        }
        ansible_playbook(role_vars).ok()
        attrs = docker_client.api.inspect_container(role_container)
        assert attrs["Id"] != old_id
        assert attrs["Config"]["Image"] == registrator_image
        assert attrs["State"]["Running"] is True
        assert attrs["Config"]["Cmd"] == [
            "-ip",
            "127.0.0.1",
            "-cleanup",
            "-adopt",
            "-ecs",
            "-health-sync",
            uri,
        ]

        def taken_over(services: dict[str, Any]) -> bool:
            meta = services.get(web_id, {}).get("Meta") or {}
            return meta.get(OWNER_META_KEY) == HOSTNAME and gone_id not in services

        try:
            consul.wait_for(taken_over, timeout=30)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{container_logs(role_container)}") from None
        # Each line is logged once its write has returned: the agent may show it first.
        lines = (
            f"adopted legacy service {web_id} of container {web} ",
            f"removed legacy service {gone_id}: no running container wants it",
        )
        try:
            wait_until(lambda: all(line in container_logs(role_container) for line in lines), 10)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{container_logs(role_container)}") from None

        again = ansible_playbook(role_vars).ok()
        assert again.recap()["changed"] == 0, again.output
        assert docker_client.api.inspect_container(role_container)["Id"] == attrs["Id"]


def unit_settings(unit: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def exec_start_argv(value: str) -> list[str]:
    """ExecStart's words as systemd passes them, for the quoting the role's template emits."""
    return [word.replace("%%", "%").replace("$$", "$") for word in shlex.split(value)]


def environment_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    return env


def checkout_with_wheel(root: Path, wheel: Path) -> Path:
    """What the role's default wheel comes from: a checkout's pyproject.toml and the wheel
    ``python3 -m build`` wrote to its dist/."""
    checkout = root / "checkout"
    (checkout / "dist").mkdir(parents=True)
    shutil.copy(REPO / "pyproject.toml", checkout)
    shutil.copy(wheel, checkout / "dist")
    return checkout


def systemd_vars(root: Path, **more: Any) -> dict[str, Any]:
    """The role in systemd mode, writing under ``root`` instead of /, with systemctl off."""
    unit_path = root / "etc/systemd/system/registrator.service"
    unit_path.parent.mkdir(parents=True, exist_ok=True)
    return {
        "registrator_mode": "systemd",
        "registrator_python": sys.executable,
        "registrator_venv": str(root / "opt/registrator"),
        "registrator_unit_path": str(unit_path),
        "registrator_env_file": str(root / "etc/registrator/registrator.env"),
        "registrator_systemd_enable": False,  # no running systemd here
        **more,
    }


def venv_run(venv: Path, *argv: str) -> str:
    """Run a venv's command outside the work tree, without the work tree on any path."""
    result = subprocess.run(
        [str(venv / "bin" / argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ_outside_work_tree(),
        cwd=venv,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


@pytest.mark.docker
def test_systemd_mode_renders_a_verified_unit_and_a_working_venv(
    temp_dir: Path, containers: Any, docker_client: Any, dist: Dist
) -> None:
    token = unique("acl-token")
    venv = temp_dir / "opt/registrator"
    unit_path = temp_dir / "etc/systemd/system/registrator.service"
    env_file = temp_dir / "etc/registrator/registrator.env"
    with ConsulDouble(acl_token=token) as consul:
        uri = f"consul://127.0.0.1:{consul.port}"
        role_vars = systemd_vars(
            temp_dir,
            # The default wheel: the checkout's dist/ wheel of its pyproject.toml's version.
            registrator_source_dir=str(checkout_with_wheel(temp_dir, dist.wheel)),
            registrator_ip="127.0.0.1",
            registrator_registry_uri=uri,
            registrator_consul_token=token,
            registrator_resync=3600,
            # daemon-only flags: the unit passes them, the resync tag leaves them out
            registrator_extra_flags=[
                "-tags",
                "ami,100%,x$y",
                "-deregister",
                "on-success",
                "-drain",
            ],
        )
        first = ansible_playbook(role_vars, "-v").ok()
        assert token not in first.output
        # The venv holds the wheel (not the work tree), and only the wheel is kept beside it.
        assert venv_run(venv, "registrator", "-version") == f"registrator {dist.version}"
        module = venv_run(venv, "python", "-c", "import registrator; print(registrator.__file__)")
        assert Path(module).is_relative_to(venv), module
        assert [path.name for path in (venv / "wheels").iterdir()] == [dist.wheel.name]

        unit = unit_path.read_text()
        settings = unit_settings(unit)
        assert settings["Type"] == ["notify"]  # READY=1 after the first sync
        assert settings["WatchdogSec"] == ["60"]
        assert settings["NotifyAccess"] == ["main"]
        assert settings["Restart"] == ["always"]
        for key in ("After", "Wants"):
            assert {"docker.service", "consul.service"} <= set(settings[key][0].split())
        assert settings["EnvironmentFile"] == [str(env_file)]
        assert settings["WantedBy"] == ["multi-user.target"]
        # % and $ are escaped for systemd, so registrator gets the words it was given.
        assert exec_start_argv(settings["ExecStart"][0]) == [
            str(venv / "bin/registrator"),
            "-ip", "127.0.0.1", "-resync", "3600", "-cleanup", "-adopt", "-ecs", "-health-sync",
            "-tags", "ami,100%,x$y", "-deregister", "on-success", "-drain", uri,
        ]  # fmt: skip
        assert "'ami,100%%,x$$y'" in settings["ExecStart"][0]

        verify = subprocess.run(
            ["systemd-analyze", "--man=no", "verify", str(unit_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (verify.returncode, verify.stderr.strip()) == (0, ""), verify.stdout + verify.stderr
        # The sandbox docs/security.md promises.
        for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices"):
            assert settings[key] == ["yes"], key
        assert settings["ProtectSystem"] == ["strict"]
        assert settings["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6 AF_NETLINK"]
        security = subprocess.run(
            ["systemd-analyze", "security", "--offline=true", str(unit_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        exposure = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
        assert exposure, security.stdout + security.stderr
        assert float(exposure[1]) < 6.0, security.stdout  # "MEDIUM" at worst

        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        assert environment_file(env_file) == {"CONSUL_HTTP_TOKEN": token}

        second = ansible_playbook(role_vars).ok()
        assert second.recap()["changed"] == 0, second.output

        # What systemd would start: ExecStart with the unit's environment.
        env = {"PATH": os.environ["PATH"], **environment_file(env_file)}
        for assignment in settings["Environment"]:
            for word in shlex.split(assignment):
                key, _, value = word.partition("=")
                env[key] = value
        service = unique("deploy-unit")
        web = run_web(containers, service)
        sid = service_id(web)
        with subprocess.Popen(
            exec_start_argv(settings["ExecStart"][0]),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as proc:
            try:
                services = consul.wait_for(lambda s: sid in s, timeout=30)
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    log, _ = proc.communicate(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    log, _ = proc.communicate()
            assert proc.returncode == 0, log
        assert token not in log
        assert services[sid]["Service"] == service
        assert services[sid]["Tags"] == ["ami", "100%", "x$y"]
        assert services[sid]["Port"] == published_port(docker_client, web)

        # The resync tag runs the venv's registrator with the environment file's token: it
        # refills an agent that restarted empty.
        consul.restart()
        resync = ansible_playbook(role_vars, "--tags", "registrator_resync").ok()
        assert re.search(rf"added\s+{re.escape(sid)}", resync.output), resync.output
        assert sid in consul.services()
        assert token not in resync.output


def build_wheel(root: Path, version: str, build: str) -> Path:
    """A wheel of this source tree as ``version``, marked with ``build`` (registrator.BUILD):
    the new release an operator ships, or a rebuild of one."""
    source = root / f"source-{build}"
    shutil.copytree(
        REPO / "registrator", source / "registrator", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("README.md", "LICENSE", "MANIFEST.in", "CHANGELOG.md"):
        shutil.copy(REPO / name, source)
    pyproject, count = re.subn(
        r'(?m)^version = "[^"]+"$',
        f'version = "{version}"',
        (REPO / "pyproject.toml").read_text(),
        count=1,
    )
    assert count == 1
    (source / "pyproject.toml").write_text(pyproject)
    with (source / "registrator/__init__.py").open("a") as module:
        module.write(f"\nBUILD = {build!r}\n")
    outdir = root / f"dist-{build}"
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(outdir), str(source)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return outdir / f"registrator-{version}-py3-none-any.whl"


def test_systemd_mode_upgrades_the_venv_when_the_wheel_changes(temp_dir: Path, dist: Dist) -> None:
    venv = temp_dir / "opt/registrator"
    role_vars = systemd_vars(temp_dir, registrator_wheel=str(dist.wheel))
    first = ansible_playbook(role_vars).ok()
    assert handler_ran(first), first.output
    again = ansible_playbook(role_vars).ok()
    assert (again.recap()["changed"], handler_ran(again)) == (0, False), again.output

    # A new version: the venv is upgraded and the unit restarted (the handler; here systemctl
    # is off, so it is notified and skipped).
    next_version = f"{dist.version}.post1"
    upgrade = build_wheel(temp_dir, next_version, "upgrade")
    upgraded = ansible_playbook({**role_vars, "registrator_wheel": str(upgrade)}).ok()
    assert handler_ran(upgraded), upgraded.output
    assert venv_run(venv, "registrator", "-version") == f"registrator {next_version}"
    assert [path.name for path in (venv / "wheels").iterdir()] == [upgrade.name]

    # A rebuild that keeps the version (pip alone would keep what is installed) replaces it too.
    rebuild = build_wheel(temp_dir, next_version, "rebuild")
    rebuilt = ansible_playbook({**role_vars, "registrator_wheel": str(rebuild)}).ok()
    assert handler_ran(rebuilt), rebuilt.output
    build = venv_run(venv, "python", "-c", "import registrator; print(registrator.BUILD)")
    assert build == "rebuild"

    settled = ansible_playbook({**role_vars, "registrator_wheel": str(rebuild)}).ok()
    assert (settled.recap()["changed"], handler_ran(settled)) == (0, False), settled.output


def test_systemd_mode_without_a_wheel_says_how_to_build_one(temp_dir: Path) -> None:
    checkout = temp_dir / "checkout"
    checkout.mkdir()
    shutil.copy(REPO / "pyproject.toml", checkout)
    run = ansible_playbook(systemd_vars(temp_dir, registrator_source_dir=str(checkout)))
    assert run.returncode != 0
    wheel = checkout / f"dist/registrator-{project_version()}-py3-none-any.whl"
    assert f"no wheel at {wheel}: run `python3 -m build` in the checkout" in run.output, run.output
    assert not (temp_dir / "opt/registrator").exists()  # nothing is made before the check
