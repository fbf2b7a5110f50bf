"""Fixtures for end-to-end tests: the real Docker engine, the Consul double, and the real
``registrator`` process. Everything a test starts is removed when it ends.

The engine is shared: a developer's workstation, or CI's host, runs other containers (other
checkouts' tests, the user's own), and registrator registers every one of them in the test's
Consul double. The rule: **an assertion on the engine's or the double's state judges only what
the test created.** Each test names its containers; ``ours`` keeps the service IDs of those
containers (``host:name:port``), ``ours_requests`` drops the recorded requests that are about
another container's service, ``ours_summary`` recomputes a ``plan``/``resync`` summary line
without the other containers' rows, and engine queries filter on ``SESSION_LABEL``. A test never
asserts that the double holds nothing but its services, nor that registrator wrote nothing at
all: it asserts that none of its own remain, that nothing was written for its own. What cannot
be attributed to another container (a write without a service ID, a service ID of another
form) still counts, so a regression that shows in traffic still shows for the test's own
containers. Tests that need an engine to themselves use ``tests.private_dockerd``."""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from tests.consul_double import ConsulDouble, RecordedRequest

pytest_plugins = ["tests.podman_support"]  # the Podman tier's fixtures

REPO = Path(__file__).resolve().parent.parent
TEST_IMAGE = "rtest/busybox:latest"
HOSTNAME = socket.gethostname()
SESSION_LABEL = f"registrator-test={uuid.uuid4().hex[:8]}"


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def engine_answers(
    name: str, proc: subprocess.Popen[bytes] | None, host: str, log_tail: Callable[[], str]
) -> bool:
    """Whether the engine ``name`` (a private dockerd, a Podman service) started as ``proc``
    answers ``/_ping`` on ``host``; one that exited fails the wait at once, with its log."""
    if proc is not None and proc.poll() is not None:
        raise AssertionError(f"{name} exited: {log_tail()}")
    try:
        client = docker.APIClient(base_url=host, version="1.41", timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def owned(services: dict[str, Any]) -> set[str]:
    """The IDs of the services registrator of this host owns (its mark in ``Meta``)."""
    return {sid for sid, svc in services.items() if svc["Meta"].get("registrator") == HOSTNAME}


def _container_of(service_id: str) -> str | None:
    """The container name in an ID registrator makes (``host:name:port[:udp]``) of this host;
    None for another host's or another form (a ``SERVICE_ID``, a hand-made one)."""
    parts = service_id.split(":")
    if len(parts) in (3, 4) and parts[0] == HOSTNAME and parts[2].isdigit():
        return parts[1]
    return None


def ours(service_ids: Iterable[str], names: Collection[str]) -> set[str]:
    """The service IDs of this host's containers named ``names``: what the test created."""
    return {sid for sid in service_ids if _container_of(sid) in names}


def foreign(service_id: str, names: Collection[str]) -> bool:
    """Not the test's: an ID of this host's form whose container is not in ``names``, or an ID
    of any other form (another container's ``SERVICE_ID``, another tool's) that ``names`` does
    not list itself. A test lists the custom and hand-made IDs it watches with its names."""
    container = _container_of(service_id)
    return service_id not in names if container is None else container not in names


REGISTER_PATH = "/v1/agent/service/register"
DEREGISTER_PATH = "/v1/agent/service/deregister/"


def service_id_of(request: RecordedRequest) -> str | None:
    """The service a register or deregister request is about; None for any other request."""
    if request.path == REGISTER_PATH:
        try:
            body = {str(k).lower(): v for k, v in json.loads(request.body).items()}
        except (ValueError, AttributeError):
            return None
        return str(body.get("id") or body.get("name") or "") or None
    if request.path.startswith(DEREGISTER_PATH):
        return request.path[len(DEREGISTER_PATH) :]
    return None


def ours_requests(
    requests: Iterable[RecordedRequest], names: Collection[str]
) -> list[RecordedRequest]:
    """The requests, without those about a service that is not the test's (``foreign``).
    What is about no service (reads, checks) is kept."""
    return [r for r in requests if not foreign(service_id_of(r) or "", names)]


_SUMMARY_ITEM = re.compile(
    r"(\d+) (to add|to adopt|to update|to remove|added|adopted|updated|removed|legacy|unchanged"
    r"|failed)"
)


def _without_pointer(stdout: str) -> list[str]:
    """The output's lines but plan's closing pointer to explain, which it prints only when a
    running container (any on the engine) registers nothing."""
    lines = stdout.splitlines()
    if lines and lines[-1].endswith("says why)"):
        lines.pop()
    return lines


def plan_rows(stdout: str) -> list[str]:
    """The rows of ``plan``'s table: between its header and its summary line."""
    return _without_pointer(stdout)[1:-1]


def ours_summary(stdout: str, names: Collection[str]) -> str:
    """The last line of ``plan``'s table or ``resync``'s output, its counts less the rows of
    services of containers the test did not create, printed as the command prints it."""
    lines = _without_pointer(stdout)
    counts = {key: int(n) for n, key in _SUMMARY_ITEM.findall(lines[-1])}
    assert counts, f"no summary line: {stdout}"
    decrement = {
        "add": ["to add"], "adopt": ["to adopt"], "update": ["to update"],
        "remove": ["to remove"], "added": ["added"], "adopted": ["added", "adopted"],
        "updated": ["updated"], "removed": ["removed"], "failed": ["failed"],
        "unchanged": ["unchanged"],
    }  # fmt: skip
    for line in lines[:-1]:
        fields = line.split()
        if len(fields) < 2 or fields[0] not in decrement:
            continue
        if not foreign(fields[1].rstrip(":"), names):
            continue
        keys = decrement[fields[0]] + (["legacy"] if line.endswith("(legacy)") else [])
        for key in keys:
            counts[key] = counts.get(key, 0) - 1
    if "to add" in counts:  # plan
        items = [f"{counts.get('to add', 0)} to add"]
        if counts.get("to adopt"):
            items.append(f"{counts['to adopt']} to adopt")
        items += [
            f"{counts.get('to update', 0)} to update",
            f"{counts.get('to remove', 0)} to remove",
            f"{counts.get('unchanged', 0)} unchanged",
        ]
        return ", ".join(items)
    added, adopted = counts.get("added", 0), counts.get("adopted", 0)
    removed, legacy = counts.get("removed", 0), counts.get("legacy", 0)
    return (
        f"{added} added" + (f" ({adopted} adopted)" if adopted else "")
        + f", {counts.get('updated', 0)} updated"
        + f", {removed} removed" + (f" ({legacy} legacy)" if legacy else "")
        + f", {counts.get('unchanged', 0)} unchanged, {counts.get('failed', 0)} failed"
    )  # fmt: skip


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    client = docker.from_env()
    client.ping()
    if not client.images.list(name=TEST_IMAGE.split(":")[0]):
        subprocess.run(["bash", str(REPO / "tests/images/build-busybox.sh")], check=True)
    yield client
    for container in client.containers.list(all=True, filters={"label": SESSION_LABEL}):
        container.remove(force=True)
    client.close()


# The registrator image the deployment tests run: built from this checkout once per session,
# tagged for this session alone (other sessions may build theirs on the same engine meanwhile).
REGISTRATOR_IMAGE = f"registrator:test-{SESSION_LABEL.partition('=')[2]}"
# Where that image's base comes from: no registry here, so tests/images/build-registrator.sh
# makes it once with debootstrap (about a minute and a half) and caches it.
BASE_IMAGE = "rtest/python-base:bookworm"


@pytest.fixture(scope="session")
def registrator_image(docker_client: Any) -> Iterator[str]:
    """The image `docker build .` makes from this checkout (on the local base); removed at the
    session's end."""
    script = REPO / "tests/images/build-registrator.sh"
    result = subprocess.run(
        ["bash", str(script), REGISTRATOR_IMAGE],
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "REGISTRATOR_BASE_IMAGE": BASE_IMAGE},
    )
    assert result.returncode == 0, (
        f"{script.name} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    yield REGISTRATOR_IMAGE
    for container in docker_client.containers.list(all=True, filters={"label": SESSION_LABEL}):
        with contextlib.suppress(docker.errors.APIError):  # already gone
            container.remove(force=True)
    subprocess.run(["docker", "rmi", REGISTRATOR_IMAGE], capture_output=True, timeout=120)


class Containers:
    """Starts test containers (labelled for cleanup) through the docker CLI, as a user would."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.names: list[str] = []

    def run(
        self, name: str, *args: str, command: str | list[str] = "sleep 600", detach: bool = True
    ) -> str:
        argv = ["docker", "run", "--pull=never", "--label", SESSION_LABEL, "--name", name]
        if detach:
            argv.append("-d")
        argv += [*args, TEST_IMAGE, *(command.split() if isinstance(command, str) else command)]
        self.names.append(name)
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def exec(self, name: str, script: str, detach: bool = False) -> None:
        """Runs ``script`` in the container; ``detach`` for one that makes it exit (the
        exit would kill the script before docker exec returns: status 137)."""
        flags = ["-d"] if detach else []
        subprocess.run(["docker", "exec", *flags, name, "sh", "-c", script], timeout=60, check=True)

    def rm(self, *names: str) -> None:
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True, timeout=60, check=True)

    def cleanup(self) -> None:
        for container in self.client.containers.list(all=True, filters={"label": SESSION_LABEL}):
            with contextlib.suppress(docker.errors.APIError):  # already gone
                container.remove(force=True)


@pytest.fixture
def containers(docker_client: Any) -> Iterator[Containers]:
    helper = Containers(docker_client)
    yield helper
    helper.cleanup()


@pytest.fixture
def consul() -> Iterator[ConsulDouble]:
    with ConsulDouble() as double:
        yield double


class Registrator:
    """The real registrator process, with its log captured to a file: the work tree's by
    default, or another ``command`` (an installed wheel's) run in ``cwd`` with exactly ``env``."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str] | None = None,
        *,
        command: list[str] | None = None,
        cwd: Path = REPO,
    ) -> None:
        self.log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - open while the process runs
            prefix="registrator-", suffix=".log", delete=False
        )
        full_env = {
            **(os.environ if command is None else {}),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.proc = subprocess.Popen(
            [*(command or [sys.executable, "-m", "registrator"]), *args],
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
        )

    def logs(self) -> str:
        return Path(self.log_file.name).read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        compiled = re.compile(pattern)

        def found() -> re.Match[str] | None:
            if self.proc.poll() is not None and not compiled.search(self.logs()):
                raise AssertionError(f"registrator exited {self.proc.returncode}:\n{self.logs()}")
            return compiled.search(self.logs())

        try:
            return wait_until(found, timeout, f"log line /{pattern}/")  # type: ignore[no-any-return]
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- registrator log ---\n{self.logs()}") from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def close(self) -> None:
        self.stop()
        self.log_file.close()
        os.unlink(self.log_file.name)


@pytest.fixture
def registrator() -> Iterator[Callable[..., Registrator]]:
    started: list[Registrator] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Registrator:
        proc = Registrator(list(args), env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.close()


def environ_outside_work_tree() -> dict[str, str]:
    """This environment without what could put the work tree on a Python path, for what runs
    an installed registrator (a venv, the role's pip) as a user's machine would."""
    return {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH"}
    }


def project_version() -> str:
    """The version, from the one place it is written."""
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert isinstance(version, str)
    return version


def copy_tracked_files(dest: Path) -> Path:
    """A clean checkout of this work tree in ``dest``: the files git tracks, as they are now
    (uncommitted edits included), without what builds and test runs leave beside them."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], capture_output=True, cwd=REPO, timeout=60, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the work tree is not copied
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def source_date_epoch() -> str:
    """The wheel's file times: the last commit's, so that an unchanged tree builds the same
    wheel and the image build reuses its cached layers."""
    if "SOURCE_DATE_EPOCH" in os.environ:
        return os.environ["SOURCE_DATE_EPOCH"]
    result = subprocess.run(
        ["git", "log", "-1", "--format=%ct"], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    return result.stdout.strip() if result.returncode == 0 else "315532800"  # 1980-01-01


@dataclasses.dataclass(frozen=True)
class Dist:
    """This checkout's sdist and wheel, as ``python -m build`` makes them: what users install."""

    sdist: Path
    wheel: Path
    version: str


@pytest.fixture(scope="session")
def dist() -> Iterator[Dist]:
    """Built once per session into a temporary directory outside the work tree, or taken from
    ``REGISTRATOR_DIST`` (a directory CI has built into), which must hold this version's files."""
    version = project_version()
    given = os.environ.get("REGISTRATOR_DIST", "")
    with contextlib.ExitStack() as stack:
        if given:
            outdir = Path(given)
        else:
            outdir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="registrator-dist-"))
            )
            result = subprocess.run(
                [sys.executable, "-m", "build", "--outdir", str(outdir), str(REPO)],
                capture_output=True,
                text=True,
                timeout=900,
                env={**os.environ, "SOURCE_DATE_EPOCH": source_date_epoch()},
            )
            assert result.returncode == 0, (
                f"python -m build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        built = Dist(
            outdir / f"registrator-{version}.tar.gz",
            outdir / f"registrator-{version}-py3-none-any.whl",
            version,
        )
        for path in (built.sdist, built.wheel):
            assert path.is_file(), (
                f"{path.name} is not in {outdir} (REGISTRATOR_DIST={given!r}): build it with "
                f"python3 -m build --outdir {outdir}"
            )
        yield built


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "registrator", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )


class Probed(http.server.BaseHTTPRequestHandler):
    """A service an HTTP check probes: records each request; answers ``codes`` in turn, then 200."""

    seen: list[tuple[str, str, dict[str, str], bytes]] = []
    codes: list[int] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        Probed.seen.append((self.command, self.path, dict(self.headers), body))
        code = Probed.codes.pop(0) if Probed.codes else 200
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"fine" if code == 200 else b"no")

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_http(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    """A threading HTTP server of ``handler`` on 127.0.0.1; yields its port, then stops it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def probed() -> Iterator[int]:
    Probed.seen, Probed.codes = [], []
    with serve_http(Probed) as port:
        yield port
