"""The Docker image: the Dockerfile lints, and the image built from it, run as the Ansible role
runs it (host network, the Docker socket at /tmp/docker.sock), registers and deregisters a
container's service in the Consul double.

The image installs the wheel the session built (the ``dist`` fixture), as a release would. The
image build (tests/images/build-registrator.sh) makes its base once with debootstrap (about a
minute and a half) and caches it; later builds reuse Docker's layer cache."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import HOSTNAME, REPO, SESSION_LABEL, Dist, project_version
from tests.consul_double import ConsulDouble
from tests.deploy_support import (
    BASE_IMAGE,
    SOCKET_BIND,
    build_image,
    container_logs,
    docker,
    published_port,
    remove_container,
    run_web,
    service_id,
    tool,
    unique,
    wait_registered,
)


@pytest.fixture(scope="module")
def image(docker_client: Any, dist: Dist) -> str:
    return build_image(dist.wheel)


@pytest.fixture
def container_names() -> Iterator[list[str]]:
    """Names of containers a test starts outside the ``containers`` fixture; removed after it."""
    names: list[str] = []
    yield names
    for name in names:
        remove_container(name)


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [tool("hadolint"), "Dockerfile"], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_shape() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=\S+", text, re.MULTILINE)
    stages = re.findall(r"^FROM .*$", text, re.MULTILINE)
    assert stages == ["FROM ${BASE_IMAGE} AS builder", "FROM ${BASE_IMAGE}"]
    final = text.split(f"\n{stages[1]}\n", 1)[1]
    assert "COPY --from=builder /opt/registrator /opt/registrator" in final
    assert "RUN " not in final  # nothing is built or installed in the final stage
    assert 'ENTRYPOINT ["registrator"]' in final
    assert 'org.opencontainers.image.version="${VERSION}"' in final
    builder = text.split(f"\n{stages[1]}\n", 1)[0]
    # The builder installs the built wheel that VERSION names, not the source tree; the
    # version is not written here (no default).
    assert "COPY dist/registrator-${VERSION}-py3-none-any.whl /tmp/" in builder
    assert re.findall(r"^ARG VERSION\b.*$", text, re.MULTILINE) == ["ARG VERSION", "ARG VERSION"]
    assert not re.search(r"^COPY (?!dist/|--from=builder )", text, re.MULTILINE)
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line for line in lines if line and not line.startswith("#")]
    # Everything is ignored but the wheel.
    assert patterns == ["*", "!dist/registrator-*.whl"]


@pytest.mark.slow
@pytest.mark.docker
def test_building_without_version_says_what_is_missing(image: str, dist: Dist) -> None:
    with tempfile.TemporaryDirectory(prefix="registrator-context-") as name:
        context = Path(name)
        (context / "dist").mkdir()
        shutil.copy(dist.wheel, context / "dist")
        shutil.copy(REPO / "Dockerfile", context)
        result = docker(
            "build", "--force-rm", "--network=host", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
            str(context),
            timeout=600,
        )  # fmt: skip
    assert result.returncode != 0
    assert "build arg VERSION is required" in result.stdout + result.stderr, result


@pytest.mark.slow
@pytest.mark.docker
def test_base_python_satisfies_requires_python(image: str) -> None:
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = re.fullmatch(r">=\s*(\d+)\.(\d+)", requires)
    assert minimum, f"update this test for requires-python {requires!r}"
    result = docker(
        "run", "--rm", "--pull=never", "--net=none", "--entrypoint", "python3", BASE_IMAGE,
        "-c", "import sys; print('%d.%d' % sys.version_info[:2])",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    major, minor = (int(part) for part in result.stdout.strip().split("."))
    assert (major, minor) >= (int(minimum[1]), int(minimum[2]))
    assert (major, minor) == (3, 11)  # Debian bookworm's python3


@pytest.mark.slow
@pytest.mark.docker
def test_image_metadata_and_contents(image: str, docker_client: Any, dist: Dist) -> None:
    attrs = docker_client.api.inspect_image(image)
    config = attrs["Config"]
    assert config["Entrypoint"] == ["registrator"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "registrator"
    # The label is the VERSION build arg: the version in pyproject.toml, of the wheel installed.
    assert labels["org.opencontainers.image.version"] == dist.version == project_version()
    assert labels["org.opencontainers.image.licenses"] == "MIT"
    assert labels["org.opencontainers.image.base.name"] == BASE_IMAGE
    assert attrs["Size"] < 300 * 1024 * 1024, attrs["Size"]

    version = docker("run", "--rm", "--pull=never", "--net=none", image, "-version")
    assert (version.returncode, version.stdout.strip()) == (0, f"registrator {dist.version}"), (
        version
    )
    # Only the venv came from the builder: no sources, no wheel, no pip cache.
    probe = docker(
        "run", "--rm", "--pull=never", "--net=none", "--entrypoint", "sh", image, "-c",
        "test ! -e /src && ! ls /tmp/*.whl && test ! -e /root/.cache/pip && command -v registrator",
    )  # fmt: skip
    assert (probe.returncode, probe.stdout.strip()) == (0, "/opt/registrator/bin/registrator"), (
        probe
    )


@pytest.mark.slow
@pytest.mark.docker
def test_image_registers_and_deregisters_like_the_role_runs_it(
    image: str,
    consul: ConsulDouble,
    containers: Any,
    container_names: list[str],
    docker_client: Any,
) -> None:
    name = unique("registrator-image")
    container_names.append(name)
    started = docker(
        "run", "-d", "--pull=never", "--name", name, "--label", SESSION_LABEL,
        "--net=host", "-v", SOCKET_BIND, image,
        "-ip", "127.0.0.1", f"consul://127.0.0.1:{consul.port}",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr

    service = unique("deploy-image")
    web = run_web(containers, service)
    sid = service_id(web)
    services = wait_registered(consul, sid, name)
    registered = services[sid]
    assert registered["Service"] == service
    assert registered["Address"] == "127.0.0.1"
    assert registered["Port"] == published_port(docker_client, web)
    assert registered["Meta"]["registrator"] == HOSTNAME

    containers.rm(web)
    consul.wait_for(lambda s: sid not in s, timeout=30)

    # registrator is PID 1 in the container: SIGTERM (docker stop) ends it cleanly.
    stopped = docker("stop", "-t", "20", name)
    assert stopped.returncode == 0, stopped.stderr
    state = docker_client.api.inspect_container(name)["State"]
    assert state["ExitCode"] == 0, container_logs(name)


@pytest.mark.slow
@pytest.mark.docker
def test_image_resync_as_a_non_root_user_in_the_sockets_group(
    image: str, containers: Any, docker_client: Any
) -> None:
    """The Dockerfile's documented alternative to root: --user and --group-add the socket's GID."""
    token = unique("token")
    with ConsulDouble(acl_token=token) as consul:
        service = unique("deploy-resync")
        web = run_web(containers, service)
        sid = service_id(web)
        socket_gid = os.stat("/var/run/docker.sock").st_gid
        result = docker(
            "run", "--rm", "--pull=never", "--label", SESSION_LABEL,
            "--user", "65534:65534", "--group-add", str(socket_gid),
            "--net=host", "-v", SOCKET_BIND, "-e", f"CONSUL_HTTP_TOKEN={token}", image,
            "resync", "-ip", "127.0.0.1", f"consul://127.0.0.1:{consul.port}",
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert re.search(rf"^added\s+{re.escape(sid)}\s", result.stdout, re.MULTILINE), (
            result.stdout
        )
        registered = consul.services()[sid]
        assert (registered["Service"], registered["Port"]) == (
            service,
            published_port(docker_client, web),
        )
        assert token not in json.dumps(registered)
