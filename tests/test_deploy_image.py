"""The Docker image: the Dockerfile lints, and the image built from it, run as the Ansible role
runs it (host network, the Docker socket at /tmp/docker.sock), registers and deregisters a
container's service in the Consul double.

The image is built from this checkout's source as a user builds it, `docker build -t <tag> .`
(the registrator_image fixture, tests/images/build-registrator.sh); the only build argument is
BASE_IMAGE, since no registry here serves the default python image: the build script makes that
base once with debootstrap (about a minute and a half) and caches it; later builds reuse
Docker's layer cache."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    BASE_IMAGE,
    HOSTNAME,
    REPO,
    SESSION_LABEL,
    Dist,
    copy_tracked_files,
    project_version,
)
from tests.consul_double import ConsulDouble
from tests.deploy_support import (
    SOCKET_BIND,
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
def image(registrator_image: str) -> str:
    return registrator_image


@pytest.fixture
def container_names() -> Iterator[list[str]]:
    """Names of containers a test starts outside the ``containers`` fixture; removed after it."""
    names: list[str] = []
    yield names
    for name in names:
        remove_container(name)


@pytest.fixture
def image_tags() -> Iterator[list[str]]:
    """Image tags a test builds; removed after it."""
    tags: list[str] = []
    yield tags
    for tag in tags:
        docker("rmi", tag)


def docker_build(context: Path, tag: str, *build_args: str) -> subprocess.CompletedProcess[str]:
    """`docker build -t <tag> .` in ``context``, on the local base (no registry here to pull the
    Dockerfile's default base from), with ``build_args`` (NAME=value) besides."""
    argv = ["build", "--force-rm", "--network=host", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}"]
    for arg in build_args:
        argv += ["--build-arg", arg]
    return docker(*argv, "-t", tag, str(context), timeout=900)


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
    builder, final = text.split(f"\n{stages[1]}\n", 1)
    assert "COPY --from=builder /opt/registrator /opt/registrator" in final
    assert "RUN " not in final  # nothing is built or installed in the final stage
    assert not re.search(r"^COPY (?!--from=builder )", final, re.MULTILINE)
    assert 'ENTRYPOINT ["registrator"]' in final
    assert 'org.opencontainers.image.version="${VERSION}"' in final
    # The builder builds the wheel from the source (or installs a given WHEEL) and checks that
    # the installed package reports VERSION.
    assert re.findall(r"^COPY .*$", builder, re.MULTILINE) == [
        "COPY pyproject.toml ./",
        "COPY . ./",
    ]
    assert "pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /tmp/wheels ." in (
        builder
    )
    assert '"$(/opt/registrator/bin/registrator -version)"' in builder
    # VERSION has one default, before the first stage: pyproject.toml's version.
    assert re.findall(r"^ARG VERSION\b.*$", text, re.MULTILINE) == [
        f"ARG VERSION={project_version()}",
        "ARG VERSION",
        "ARG VERSION",
    ]
    assert re.findall(r"^ARG WHEEL\b.*$", text, re.MULTILINE) == ["ARG WHEEL="]
    # The one command the header gives.
    assert "#   docker build -t registrator .\n" in text


def test_dockerignore_lets_in_the_source_and_keeps_out_the_rest(tmp_path: Path) -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*"
    allowed = {p.removeprefix("!") for p in patterns if p.startswith("!")}
    # What the build backend reads: pyproject.toml, setup.cfg, MANIFEST.in and what they name.
    assert {"pyproject.toml", "setup.cfg", "MANIFEST.in", "README.md", "LICENSE"} <= allowed
    assert {"registrator", "dist/registrator-*.whl"} <= allowed
    assert not [p for p in allowed if re.match(r"\.git|tests|build|\.setuptools-build|\.venv", p)]
    assert patterns[-2:] == ["**/__pycache__", "**/*.pyc"]


@pytest.mark.slow
@pytest.mark.docker
def test_docker_build_from_a_clean_checkout(
    image: str, tmp_path: Path, image_tags: list[str], docker_client: Any
) -> None:
    """`docker build -t <tag> .` in a copy of the tracked files: no dist/, no wheel built first,
    no build argument but BASE_IMAGE, which must name the local base here since no registry
    serves the Dockerfile's default (python:3.11-slim-bookworm). Depends on ``image`` so that
    its layers are in the cache."""
    checkout = copy_tracked_files(tmp_path / "checkout")
    assert not (checkout / "dist").exists()
    tag = f"{unique('registrator-clean')}:latest"
    image_tags.append(tag)
    built = docker_build(checkout, tag)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    version = docker("run", "--rm", "--pull=never", "--net=none", tag, "-version")
    assert (version.returncode, version.stdout.strip()) == (0, f"registrator {project_version()}")
    labels = docker_client.api.inspect_image(tag)["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == project_version()


@pytest.mark.slow
@pytest.mark.docker
def test_a_version_other_than_pyprojects_fails_the_build(image: str, tmp_path: Path) -> None:
    checkout = copy_tracked_files(tmp_path / "checkout")
    tag = f"{unique('registrator-other')}:latest"
    result = docker_build(checkout, tag, "VERSION=99.0.0")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert (
        "VERSION 99.0.0 (the build argument, or its default in the Dockerfile) is not the "
        f"version in pyproject.toml, {project_version()}"
    ) in output
    assert docker("image", "inspect", tag).returncode != 0


@pytest.mark.slow
@pytest.mark.docker
def test_a_release_wheel_instead_of_the_source(
    image: str, tmp_path: Path, image_tags: list[str], dist: Dist
) -> None:
    """The WHEEL build argument: the image installs a wheel from the context (built by
    `python3 -m build` into dist/), not one it builds. The context holds no source package, so
    an image that runs can only have come from the wheel (the build's log is no proof: an
    identical earlier build on the same engine is reused from its cache, and prints nothing)."""
    checkout = copy_tracked_files(tmp_path / "checkout")
    shutil.rmtree(checkout / "registrator")
    (checkout / "dist").mkdir()
    shutil.copy(dist.wheel, checkout / "dist")
    tag = f"{unique('registrator-wheel')}:latest"
    image_tags.append(tag)
    built = docker_build(checkout, tag, f"WHEEL=dist/{dist.wheel.name}")
    output = built.stdout + built.stderr
    assert built.returncode == 0, output[-8000:]
    version = docker("run", "--rm", "--pull=never", "--net=none", tag, "-version")
    assert (version.returncode, version.stdout.strip()) == (0, f"registrator {dist.version}")


@pytest.mark.slow
@pytest.mark.docker
def test_a_wheel_of_another_version_fails_the_build(image: str, tmp_path: Path) -> None:
    """The installed package must report the version the label carries."""
    other = copy_tracked_files(tmp_path / "other")
    pyproject = other / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(f'version = "{project_version()}"', 'version = "99.0.0"', 1)
    )
    wheel = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path / "dist"), "."],
        capture_output=True, text=True, cwd=other, timeout=900,
    )  # fmt: skip
    assert wheel.returncode == 0, wheel.stdout[-4000:] + wheel.stderr[-4000:]
    checkout = copy_tracked_files(tmp_path / "checkout")
    shutil.copytree(tmp_path / "dist", checkout / "dist")
    tag = f"{unique('registrator-mismatch')}:latest"
    result = docker_build(checkout, tag, "WHEEL=dist/registrator-99.0.0-py3-none-any.whl")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert (
        f"the installed package reports 'registrator 99.0.0', not 'registrator {project_version()}'"
        in output
    )
    assert docker("image", "inspect", tag).returncode != 0


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
def test_image_metadata_and_contents(image: str, docker_client: Any) -> None:
    attrs = docker_client.api.inspect_image(image)
    config = attrs["Config"]
    assert config["Entrypoint"] == ["registrator"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "registrator"
    # The label is VERSION, checked against pyproject.toml and the installed package.
    assert labels["org.opencontainers.image.version"] == project_version()
    assert labels["org.opencontainers.image.licenses"] == "MIT"
    assert labels["org.opencontainers.image.base.name"] == BASE_IMAGE
    assert attrs["Size"] < 300 * 1024 * 1024, attrs["Size"]

    version = docker("run", "--rm", "--pull=never", "--net=none", image, "-version")
    assert (version.returncode, version.stdout.strip()) == (
        0,
        f"registrator {project_version()}",
    ), version
    # Only the venv came from the builder: no sources, no wheel, no build backend, no pip cache.
    probe = docker(
        "run", "--rm", "--pull=never", "--net=none", "--entrypoint", "sh", image, "-c",
        "test ! -e /src && ! ls /tmp/wheels /tmp/*.whl && test ! -e /opt/build-backend"
        " && test ! -e /root/.cache/pip && command -v registrator",
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
