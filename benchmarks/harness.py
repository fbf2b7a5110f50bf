"""What the benchmarks run on: the code under test as deployed, /proc readings, a timed Consul
double, the registrator process, the Docker event stream as dockerd reports it, containers.

Clocks: Docker stamps its events with the wall clock (``timeNano``), so every instant a
benchmark compares with an event is ``time.time_ns()`` too; durations inside one process use
``time.perf_counter_ns()``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import docker

from tests.conftest import DEREGISTER_PATH, HOSTNAME, REGISTER_PATH, TEST_IMAGE
from tests.consul_double import ConsulDouble, RecordedRequest

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
BENCH_LABEL = "registrator-bench"
SLEEP = ["sleep", "86400"]

T = TypeVar("T")
R = TypeVar("R")


def service_id(name: str, port: int) -> str:
    """The ID registrator gives a host-network container's exposed TCP port."""
    return f"{HOSTNAME}:{name}:{port}"


def is_register(request: RecordedRequest) -> bool:
    return request.path == REGISTER_PATH


def is_deregister(request: RecordedRequest) -> bool:
    return request.path.startswith(DEREGISTER_PATH)


# --- the code under test ------------------------------------------------------------------


@dataclass(frozen=True)
class CodeUnderTest:
    """registrator as of one commit, exported to a folder of its own, so that edits in the
    work tree while a benchmark runs cannot mix versions; byte-compiled, as pip compiles an
    installed wheel (this machine sets PYTHONDONTWRITEBYTECODE), with the dist-info a wheel
    installs beside it; run by ``python``, a venv like the deployed one."""

    directory: Path
    commit: str  # short hash, or "work tree at <hash>" (+ "-dirty" when it differs from HEAD)
    python: str
    python_env: str

    @classmethod
    def export(cls, ref: str) -> CodeUnderTest:
        python, python_env = deployed_python()
        if ref == "worktree":
            dirty = _git("status", "--porcelain", "--", "registrator")
            _compile(REPO / "registrator")
            commit = f"work tree at {_git('rev-parse', '--short', 'HEAD')}"
            return cls(REPO, commit + ("-dirty" if dirty else ""), python, python_env)
        commit = _git("rev-parse", "--short", f"{ref}^{{commit}}")
        target = Path(tempfile.mkdtemp(prefix=f"registrator-{commit}-"))
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", commit, "registrator"],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
        _compile(target / "registrator")
        _write_dist_info(target, commit)
        return cls(target, commit, python, python_env)

    def cleanup(self) -> None:
        if self.directory != REPO:
            shutil.rmtree(self.directory, ignore_errors=True)


def _compile(package: Path) -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)


def _write_dist_info(target: Path, commit: str) -> None:
    """The ``registrator-<version>.dist-info/METADATA`` a wheel installs beside the package
    (its headers, then the README), where registrator looks its version up as deployed."""
    project = tomllib.loads(_git("show", f"{commit}:pyproject.toml"))["project"]
    info = target / f"registrator-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.4\nName: registrator\nVersion: {project['version']}\n"
        f"Summary: {project.get('description', '')}\n"
        f"Description-Content-Type: text/markdown\n\n{_git('show', f'{commit}:README.md')}\n"
    )


def dependency_pins() -> list[str]:
    """registrator's dependencies and theirs, each at the version installed here, so that a
    venv measures the same libraries."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    todo = [str(req) for req in project["dependencies"]]
    pins: dict[str, str] = {}
    while todo:
        req = todo.pop()
        match = re.match(r"[A-Za-z0-9._-]+", req)
        if match is None or "extra ==" in req:
            continue
        name = match.group(0).lower().replace("_", "-")
        if name in pins:
            continue
        try:
            pins[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        todo.extend(metadata.requires(name) or [])
    return sorted(f"{name}=={version}" for name, version in pins.items())


def deployed_python() -> tuple[str, str]:
    """An interpreter like the deployed one (the image, the role's systemd mode: a venv holding
    registrator's dependencies), made once and kept under /var/tmp: this machine's own
    site-packages runs start-up hooks no deployed registrator has (0.07 s at every start).
    Falls back to this interpreter (saying so) when the venv cannot be made (no index)."""
    pins = dependency_pins()
    key = hashlib.sha256("\n".join([sys.version, *pins]).encode()).hexdigest()[:12]
    venv = Path("/var/tmp") / f"registrator-bench-venv-{key}"
    python = venv / "bin" / "python"
    description = f"a venv with {', '.join(pins)}"
    if python.exists():
        return str(python), description
    building = Path(tempfile.mkdtemp(prefix=f"{venv.name}-", dir=venv.parent))
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(building)], check=True)
        subprocess.run(
            [str(building / "bin" / "python"), "-m", "pip", "install", "-q", *pins],
            check=True, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    except (subprocess.SubprocessError, OSError) as exc:
        shutil.rmtree(building, ignore_errors=True)
        detail = (getattr(exc, "stderr", "") or str(exc)).strip()[-300:]
        print(f"benchmarks: no venv ({detail}); using {sys.executable}", file=sys.stderr)
        return sys.executable, "this Python (a venv could not be made)"
    try:
        building.rename(venv)
    except OSError:  # made meanwhile by another run
        shutil.rmtree(building, ignore_errors=True)
    return str(python), description


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


# --- /proc ---------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used (threads included)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its direct children (dockerd and its containerd)."""
    total = 0.0
    for p in [pid, *children(pid)]:
        with contextlib.suppress(OSError, ValueError):
            total += cpu_seconds(p)
    return total


def system_busy_cpu_seconds() -> float:
    """CPU seconds all processes on the machine have used (every core, not idle or iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


# Processes of the container runtime (per container, started and reaped by containerd) and
# the benchmark containers themselves: not other people's work, even though not ours.
RUNTIME_COMMS = ("containerd-shim", "runc", "sleep", "docker-init", "exe")
ForeignSnapshot = dict[tuple[int, int], float]  # (pid, start time) -> CPU seconds


def foreign_snapshot(our_roots: Iterable[int]) -> ForeignSnapshot:
    """CPU seconds of every process that is neither ours (``our_roots`` and their
    descendants) nor the container runtime's: other people's work on a shared machine."""
    table: dict[int, tuple[str, int, int, float]] = {}  # pid -> comm, ppid, start, CPU
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError, ValueError):
            if entry.isdigit():
                text = Path(f"/proc/{entry}/stat").read_text()
                fields = text[text.rindex(")") + 2 :].split()
                cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
                comm = text[text.index("(") + 1 : text.rindex(")")]
                table[int(entry)] = (comm, int(fields[1]), int(fields[19]), cpu)
    kids: dict[int, list[int]] = {}
    for pid, (_, ppid, _, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    ours, todo = set(), list(our_roots)
    while todo:
        pid = todo.pop()
        if pid not in ours:
            ours.add(pid)
            todo.extend(kids.get(pid, ()))
    return {
        (pid, start): cpu
        for pid, (comm, _, start, cpu) in table.items()
        if pid not in ours and not comm.startswith(RUNTIME_COMMS)
    }


class CpuWindow:
    """Where the CPU went from its making to ``stop()``: registrator's (``proc``), dockerd's,
    this process's, the other processes', and other people's work among those (``foreign``:
    processes neither ours nor the container runtime's, alive throughout; a lower bound),
    which decides whether a measurement is repeated."""

    def __init__(self, dockerd_pid: int, proc: RegistratorProcess | None = None) -> None:
        self._dockerd_pid, self._proc = dockerd_pid, proc
        self._began = time.monotonic()
        self._before = self._sample()

    def _sample(self) -> tuple[float, float, float, float, ForeignSnapshot]:
        return (
            self._proc.cpu_seconds() if self._proc is not None else 0.0,
            tree_cpu_seconds(self._dockerd_pid),
            cpu_seconds(os.getpid()),
            system_busy_cpu_seconds(),
            foreign_snapshot([os.getpid(), self._dockerd_pid]),
        )

    def stop(self, registrator_cpu: float | None = None) -> dict[str, float]:
        """The shares; ``registrator_cpu`` replaces the process's delta (a process started
        within the window: all its CPU)."""
        after, seconds = self._sample(), time.monotonic() - self._began
        before = self._before
        ours = after[0] - before[0] if registrator_cpu is None else registrator_cpu
        dockerd, bench = after[1] - before[1], after[2] - before[2]
        system = after[3] - before[3]
        foreign = sum(cpu - before[4][key] for key, cpu in after[4].items() if key in before[4])
        cores = os.cpu_count() or 1
        return {
            "seconds": round(seconds, 3),
            "registrator_cpu_s": round(ours, 3),
            "dockerd_cpu_s": round(dockerd, 3),
            "benchmark_process_cpu_s": round(bench, 3),
            "other_processes_cpu_s": round(max(0.0, system - ours - dockerd - bench), 3),
            "foreign_cpu_s": round(foreign, 3),
            "foreign_share_percent": round(100 * foreign / (max(seconds, 1e-3) * cores), 1),
        }


def speed_probe_ms(rounds: int = 3) -> float:
    """The machine's speed now: the median time of ``sum(range(10**7))`` in ms, lower is
    faster. The host lends this machine more or less CPU over the day (156 to 313 ms on one
    day), which moves every figure, so each run records it beside them."""
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        sum(range(10**7))
        times.append((time.perf_counter() - began) * 1000)
    return round(statistics.median(times), 1)


def wait_quiet(
    max_wait: float, busy_below: float = 0.15, log: Callable[[str], None] = print
) -> float:
    """Wait (up to ``max_wait`` s) until the machine's CPUs are less than ``busy_below`` busy
    over 3 s: other work on a 2-core machine distorts every figure. Returns the last share."""
    deadline = time.monotonic() + max_wait
    cores = os.cpu_count() or 1
    while True:
        before = system_busy_cpu_seconds()
        time.sleep(3)
        share = (system_busy_cpu_seconds() - before) / (3 * cores)
        if share < busy_below or time.monotonic() >= deadline:
            return share
        log(f"machine {share:.0%} busy (other work); waiting for it to calm down")


def reap_private_dockerd(root: Path) -> int:
    """Kill what a private dockerd under ``root`` left behind (containerd shims and their
    containers, found by that path in their command line) and unmount its mounts, so that
    its folder can be deleted. Returns how many shims were left."""
    shims = []
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes() if entry.isdigit() else b""
            if b"containerd-shim" in cmdline and str(root).encode() in cmdline:
                shims.append(int(entry))
    for shim in shims:
        for pid in [*children(shim), shim]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(str(root))), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
    return len(shims)


# --- the Consul double, timed --------------------------------------------------------------


class BenchDouble(ConsulDouble):
    """The Consul agent double, plus what a benchmark needs from it.

    - the double's own service time for every request (from reading the body to having
      written the answer), to show whether the double is a bottleneck;
    - a cheap wait on the set of service IDs: ``wait_for`` deep-copies every service on every
      change, which is O(n^2) in the benchmark process at hundreds of services and would take
      CPU from the daemon being measured on a 2-core machine.
    """

    def __init__(self) -> None:
        super().__init__()
        self._changed = threading.Condition()
        self._service_times: list[tuple[int, int]] = []  # (wall ns at start, duration ns)

    def start(self) -> BenchDouble:
        super().start()
        return self

    def __enter__(self) -> BenchDouble:
        return self.start()

    def _serve(self, handler: Any, raw_body: bytes) -> None:
        wall = time.time_ns()
        began = time.perf_counter_ns()
        try:
            super()._serve(handler, raw_body)
        finally:
            took = time.perf_counter_ns() - began
            with self._changed:
                self._service_times.append((wall, took))
                self._changed.notify_all()

    def _wait_served(self, holds: Callable[[], bool], timeout: float, what: str) -> None:
        """Until ``holds()``, checked whenever a request has been served."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not holds():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"Consul double: no {what} within {timeout}s")
                self._changed.wait(min(remaining, 0.05))

    def wait_ids(self, predicate: Callable[[set[str]], bool], timeout: float) -> None:
        def holds() -> bool:
            with self._cond:
                return predicate(set(self._agent.services))

        self._wait_served(holds, timeout, "such service IDs")

    def wait_check(self, check_id: str, status: str, timeout: float) -> None:
        def holds() -> bool:
            with self._cond:
                return bool(self._agent.checks.get(check_id, {}).get("Status") == status)

        self._wait_served(holds, timeout, f"{status} {check_id}")

    def service_times_ns(self, since_ns: int = 0, until_ns: int | None = None) -> list[int]:
        """Durations of the requests that began within [since_ns, until_ns]."""
        end = until_ns if until_ns is not None else time.time_ns()
        with self._changed:
            return [took for wall, took in self._service_times if since_ns <= wall <= end]


# --- the registrator process ---------------------------------------------------------------


class RegistratorProcess:
    """``python -m registrator [args] -ip 127.0.0.1 consul://127.0.0.1:<port>`` of ``code``
    against one dockerd, its output in ``log_path``; a ``wrapper`` (valgrind) execs it in the
    same process, ``env`` is added to this one's."""

    def __init__(
        self,
        code: CodeUnderTest,
        docker_host: str,
        consul_port: int,
        log_path: Path,
        args: Sequence[str] = (),
        wrapper: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.log_path = log_path
        argv = [*wrapper, code.python, "-m", "registrator", *args, "-ip", "127.0.0.1"]
        argv.append(f"consul://127.0.0.1:{consul_port}")
        env = {**os.environ, **(env or {}), "DOCKER_HOST": docker_host, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = str(code.directory)
        self._log = open(log_path, "wb")  # noqa: SIM115 - open while the process runs
        self.started_ns = time.time_ns()
        self.popen = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=code.directory
        )
        self.pid = self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def line_time_ns(self, text: str) -> int:
        """The wall-clock instant of the first log line holding ``text`` (0: none yet)."""
        line = next((line for line in self.log().splitlines() if text in line), "")
        return log_time_ns(line) if line else 0

    def wait_log(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.popen.poll() is not None:
                raise RuntimeError(f"registrator exited {self.popen.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {text!r} in the registrator log after {timeout}s")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def status(self) -> dict[str, int]:
        """VmHWM, VmRSS (kB) and Threads from /proc/<pid>/status."""
        lines = Path(f"/proc/{self.pid}/status").read_text().splitlines()
        fields = (line.partition(":") for line in lines)
        return {k: int(v.split()[0]) for k, _, v in fields if k in ("VmHWM", "VmRSS", "Threads")}

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


def log_time_ns(line: str) -> int:
    """The wall-clock instant of a registrator log line (logging's asctime, ms resolution)."""
    stamp = line[:23]  # 2024-01-01 12:00:00,123
    seconds = time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S"))
    return int(seconds * 1e9) + int(stamp[20:23]) * 1_000_000


# --- Docker --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DockerEvent:
    action: str
    container_id: str
    time_nano: int  # dockerd's own timestamp
    received_ns: int  # when this process read it from the stream


class EventWatcher:
    """The benchmark's own subscription to dockerd's container events."""

    def __init__(self, docker_host: str) -> None:
        self._api = docker.APIClient(base_url=docker_host, version="auto")
        self._stream = self._api.events(
            decode=True, filters={"type": ["container"], "event": ["start", "die"]}
        )
        self._cond = threading.Condition()
        self._by_key: dict[tuple[str, str], DockerEvent] = {}
        threading.Thread(target=self._run, name="bench-events", daemon=True).start()

    def _run(self) -> None:
        with contextlib.suppress(Exception):  # the stream is closed at the end
            for raw in self._stream:
                received = time.time_ns()
                action = str(raw.get("Action") or raw.get("status") or "")
                container_id = str((raw.get("Actor") or {}).get("ID") or raw.get("id") or "")
                event = DockerEvent(action, container_id, int(raw.get("timeNano") or 0), received)
                with self._cond:
                    self._by_key.setdefault((action, container_id), event)
                    self._cond.notify_all()

    def get(self, action: str, container_id: str, timeout: float = 10.0) -> DockerEvent:
        deadline = time.monotonic() + timeout
        with self._cond:
            while (action, container_id) not in self._by_key:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no {action} event for {container_id[:12]}")
                self._cond.wait(remaining)
            return self._by_key[(action, container_id)]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stream.close()
        self._api.close()


class Fleet:
    """Creates, starts and removes benchmark containers on one daemon: by default host
    networking and ``--expose PORT``, running ``sleep`` (registrator registers host port =
    exposed port); ``config`` goes to the Docker SDK's ``create_container``."""

    def __init__(self, docker_host: str, pool: int = 32) -> None:
        self.api = docker.APIClient(
            base_url=docker_host, version="auto", timeout=120, max_pool_size=pool
        )
        self.pool = pool

    def create(
        self,
        name: str,
        port: int | None = None,
        network: str = "host",
        labels: dict[str, str] | None = None,
        **config: Any,
    ) -> str:
        config.setdefault("command", SLEEP)
        created = self.api.create_container(
            TEST_IMAGE,
            name=name,
            ports=[port] if port else None,
            host_config=self.api.create_host_config(network_mode=network),
            labels={BENCH_LABEL: "1", **(labels or {})},
            **config,
        )
        return str(created["Id"])

    def start(self, container_id: str) -> None:
        self.api.start(container_id)

    def remove(self, container_id: str) -> None:
        self.api.remove_container(container_id, force=True)

    def parallel(self, func: Callable[[T], R], items: Iterable[T], workers: int = 0) -> list[R]:
        with ThreadPoolExecutor(workers or self.pool) as pool:
            return list(pool.map(func, items))

    def create_and_start(
        self, specs: Sequence[tuple[str, int]], workers: int = 16, **config: Any
    ) -> list[str]:
        def one(spec: tuple[str, int]) -> str:
            container_id = self.create(*spec, **config)
            self.start(container_id)
            return container_id

        return self.parallel(one, specs, workers)

    def remove_all(self, ids: Iterable[str] | None = None, workers: int = 8) -> list[str]:
        """Remove ``ids`` (default: every benchmark container); returns the errors (a few
        threads only: under hundreds of parallel removals dockerd 20.10 has been seen to stop
        answering)."""
        errors: list[str] = []

        def remove(container_id: str) -> None:
            try:
                self.remove(container_id)
            except docker.errors.NotFound:
                pass
            except Exception as exc:
                errors.append(f"{container_id[:12]}: {exc}")

        if ids is None:
            ids = [c["Id"] for c in self.api.containers(all=True, filters={"label": BENCH_LABEL})]
        self.parallel(remove, ids, workers)
        return errors

    def close(self) -> None:
        self.api.close()


def docker_op_in_child(docker_host: str, op: str, ids: Sequence[str], workers: int) -> int:
    """``start`` or ``remove`` every container at once from a pool of threads; run in a child
    process (see ``DockerPool``) so the benchmark process, which hosts the Consul double, is
    not busy while the daemon is measured. Returns the wall-clock ns of the first call."""
    fleet = Fleet(docker_host, pool=workers)
    fleet.api.ping()  # connect before the clock starts
    began = time.time_ns()
    try:
        fleet.parallel(fleet.start if op == "start" else fleet.remove, ids, workers)
    finally:
        fleet.close()
    return began


class DockerPool:
    """One warm child process (spawned, not forked: this process has threads) for bursts."""

    def __init__(self) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        self._pool.submit(time.time_ns).result(timeout=60)  # started and imported

    def run(self, docker_host: str, op: str, ids: Sequence[str], workers: int) -> int:
        return self._pool.submit(docker_op_in_child, docker_host, op, ids, workers).result(600)

    def close(self) -> None:
        self._pool.shutdown()


# --- numbers -------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); q in [0, 100]."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(values_ns: Sequence[int]) -> dict[str, float]:
    ms = [v / 1e6 for v in values_ns]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "min": round(min(ms), 3),
        "p50": round(percentile(ms, 50), 3),
        "p90": round(percentile(ms, 90), 3),
        "p99": round(percentile(ms, 99), 3),
        "max": round(max(ms), 3),
        "mean": round(sum(ms) / len(ms), 3),
    }
