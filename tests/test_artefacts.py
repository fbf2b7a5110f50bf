"""What users install: the sdist and the wheel ``python -m build`` makes from this checkout.

The wheel is installed into a fresh venv outside the work tree and run from there, so a module
or file the wheel misses fails here even though the work tree has it. The version is written
once, in pyproject.toml; everything else reads it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from registrator import __version__
from tests.conftest import (
    HOSTNAME,
    REPO,
    Containers,
    Dist,
    Registrator,
    copy_tracked_files,
    environ_outside_work_tree,
    foreign,
    project_version,
    run_cli,
)
from tests.consul_double import ConsulDouble

# Where the version may be written: its one source, and the changelog that quotes it. The
# Dockerfile's label cannot read pyproject.toml, so the Dockerfile names the version once too, as
# ARG VERSION's default, which its build checks against pyproject.toml.
VERSION_FILES = {"pyproject.toml", "CHANGELOG.md"}


def tracked_files() -> list[str]:
    result = subprocess.run(
        ["git", "ls-files"], capture_output=True, text=True, cwd=REPO, timeout=60, check=True
    )
    return result.stdout.splitlines()


def package_modules() -> set[str]:
    return {name for name in tracked_files() if re.fullmatch(r"registrator/.+\.py", name)}


def test_the_version_is_written_only_in_pyproject_toml() -> None:
    version = project_version()
    pattern = re.compile(rf"(?<![\w.]){re.escape(version)}(?!\w|\.\d)")
    found = []
    for name in tracked_files():
        path = REPO / name
        if path.is_file() and name not in VERSION_FILES:
            text = path.read_text(errors="replace")
            found += [
                f"{name}:{n}"
                for n, line in enumerate(text.splitlines(), 1)
                if pattern.search(line)
                and not (name == "Dockerfile" and line == f"ARG VERSION={version}")
            ]
    assert found == [], (
        f"{version} is written again in {found}: read it from pyproject.toml instead"
    )


def test_the_changelog_has_unreleased_and_this_version() -> None:
    headings = re.findall(r"^## (.+)$", (REPO / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert headings[0] == "Unreleased"
    assert any(
        re.fullmatch(rf"{re.escape(project_version())} - \d{{4}}-\d{{2}}-\d{{2}}", h)
        for h in headings
    ), headings


def test_a_source_tree_reports_pyproject_version() -> None:
    assert __version__ == project_version()
    result = run_cli("-version")
    assert (result.returncode, result.stdout.strip()) == (0, f"registrator {project_version()}")


@pytest.mark.slow  # pip builds the package, then python -m build builds it again
def test_python_m_build_works_right_after_pip_install_in_the_same_checkout(tmp_path: Path) -> None:
    """`pip install .` builds in the checkout and leaves setuptools' scratch directory there.
    Named build/ (setuptools' default), that directory took the import name of the `build` tool:
    where the tool was missing, `python3 -m build` said "'build' is a package and cannot be
    directly executed" instead of that the tool is missing."""
    checkout = copy_tracked_files(tmp_path / "checkout")
    env = environ_outside_work_tree()
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(tmp_path / "site"),
         "."],
        capture_output=True, text=True, cwd=checkout, env=env, timeout=600,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (tmp_path / "site/registrator/app/cli.py").is_file()
    left = sorted(path.name for path in checkout.iterdir() if path.is_dir())
    assert "build" not in left, left

    # A Python without the build tool: the message says what is missing.
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")],
        check=True, timeout=120, env=env,
    )  # fmt: skip
    missing = subprocess.run(
        [str(tmp_path / "bare/bin/python"), "-m", "build"],
        capture_output=True, text=True, cwd=checkout, env=env, timeout=60,
    )  # fmt: skip
    assert missing.returncode != 0
    assert missing.stderr.strip().endswith("No module named build"), missing.stderr

    # With it (`pip install build`): the sdist and the wheel, in the checkout's dist/.
    built = subprocess.run(
        [sys.executable, "-m", "build"],
        capture_output=True, text=True, cwd=checkout, env=env, timeout=900,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    version = project_version()
    assert sorted(path.name for path in (checkout / "dist").iterdir()) == [
        f"registrator-{version}-py3-none-any.whl",
        f"registrator-{version}.tar.gz",
    ]


@pytest.mark.slow  # builds the sdist and the wheel (the dist fixture)
def test_the_wheel_holds_the_package_licence_and_metadata(dist: Dist) -> None:
    info = f"registrator-{dist.version}.dist-info"
    with zipfile.ZipFile(dist.wheel) as wheel:
        names = set(wheel.namelist())
        assert {n for n in names if n.startswith("registrator/")} == package_modules()
        assert not [n for n in names if n.startswith("tests/")]
        assert wheel.read(f"{info}/licenses/LICENSE") == (REPO / "LICENSE").read_bytes()
        metadata = wheel.read(f"{info}/METADATA").decode()
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    headers = dict(
        line.split(": ", 1) for line in metadata.split("\n\n", 1)[0].splitlines() if ": " in line
    )
    assert (headers["Name"], headers["Version"]) == ("registrator", dist.version)
    assert (headers["License-Expression"], headers["License-File"]) == ("MIT", "LICENSE")
    assert "registrator = registrator.app.cli:main" in entry_points


@pytest.mark.slow  # builds the sdist and the wheel (the dist fixture)
def test_the_sdist_holds_what_the_wheel_is_built_from(dist: Dist) -> None:
    top = f"registrator-{dist.version}"
    with tarfile.open(dist.sdist) as sdist:
        names = {n.removeprefix(f"{top}/") for n in sdist.getnames()}
        licence = sdist.extractfile(f"{top}/LICENSE")
        assert licence is not None and licence.read() == (REPO / "LICENSE").read_bytes()
    assert {"pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md"} <= names
    assert {n for n in names if re.fullmatch(r"registrator/.+\.py", n)} == package_modules()
    assert not [n for n in names if n.startswith("tests/")]


class Installed:
    """The wheel installed into a fresh venv in a temporary directory outside the work tree;
    its commands run there, without the work tree on any path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.venv = root / "venv"
        self.registrator = self.venv / "bin/registrator"
        self.env = environ_outside_work_tree()

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.registrator), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            cwd=self.root,
        )


@pytest.fixture(scope="module")
def installed(dist: Dist) -> Iterator[Installed]:
    with tempfile.TemporaryDirectory(prefix="registrator-wheel-") as name:
        place = Installed(Path(name))
        for argv in (
            [sys.executable, "-m", "venv", str(place.venv)],
            [str(place.venv / "bin/python"), "-m", "pip", "install", "-q", str(dist.wheel)],
        ):
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=600, env=place.env, cwd=place.root
            )
            assert result.returncode == 0, result.stdout + result.stderr
        yield place


@pytest.mark.slow
def test_the_installed_wheel_runs_from_its_venv(installed: Installed, dist: Dist) -> None:
    result = installed.run("-version")
    assert (result.returncode, result.stdout.strip()) == (0, f"registrator {dist.version}")
    where = subprocess.run(
        [
            str(installed.venv / "bin/python"),
            "-c",
            "import registrator; print(registrator.__file__)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=installed.env,
        cwd=installed.root,
    )
    assert where.returncode == 0, where.stderr
    module = Path(where.stdout.strip())
    assert module.is_relative_to(installed.venv), module
    assert not module.is_relative_to(REPO), module


@pytest.mark.slow
@pytest.mark.docker
def test_the_installed_wheel_dry_run_follows_docker(
    installed: Installed, containers: Containers
) -> None:
    proc = Registrator(
        ["-dry-run", "-ip", "127.0.0.1", "consul://"],
        installed.env,
        command=[str(installed.registrator)],
        cwd=installed.root,
    )
    try:
        proc.wait_log(r"synced: ", timeout=30)
        containers.run("wheel.0", "-p", "127.0.0.1::80", "-e", "SERVICE_NAME=wheel")
        sid = re.escape(f"{HOSTNAME}:wheel.0:80")
        proc.wait_log(
            rf"dry-run: would register wheel\.0 \([0-9a-f]{{12}}\): service {sid} \(name wheel, ",
            timeout=30,
        )
        containers.rm("wheel.0")
        proc.wait_log(
            rf"dry-run: would deregister wheel\.0 \([0-9a-f]{{12}}\): service {sid}", timeout=30
        )
        assert proc.stop() == 0, proc.logs()
    finally:
        proc.close()


@pytest.mark.slow
@pytest.mark.docker
def test_the_installed_wheel_plans_against_the_consul_double(
    installed: Installed, consul: ConsulDouble, containers: Containers
) -> None:
    containers.run("wheelplan.0", "-p", "127.0.0.1::80", "-e", "SERVICE_NAME=wheelplan")
    stale = f"{HOSTNAME}:wheelgone.0:80"
    consul.register({"ID": stale, "Name": "wheelgone", "Meta": {"registrator": HOSTNAME}})
    consul.clear_requests()

    result = installed.run("plan", "-json", "-ip", "127.0.0.1", f"consul://127.0.0.1:{consul.port}")
    assert result.returncode == 2, result.stdout + result.stderr
    body: dict[str, Any] = json.loads(result.stdout)
    assert body["in_sync"] is False
    mine = ["wheelplan.0", "wheelgone.0"]  # other containers on the engine are added too
    changes = {(c["action"], c["id"]) for c in body["changes"] if not foreign(c["id"], mine)}
    assert changes == {("add", f"{HOSTNAME}:wheelplan.0:80"), ("remove", stale)}
    assert consul.writes() == []  # plan never writes
