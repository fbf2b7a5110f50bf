"""``python -m benchmarks.ecs_startup``: start-up sync of awsvpc ECS tasks (issue 10).

Lays out ``--tasks`` awsvpc tasks of ``--per-task`` app containers on the Docker engine as the
ECS agent does (a pause container in network mode ``none``, the app containers in
``container:<pause>``, every one with the ECS labels), gives the ECS agent double
(tests/ecs_agent_double.py) the tasks with the containers' real Docker IDs and ENI addresses
(data only), then starts the real ``registrator -ecs`` process against it and the Consul double,
``--runs`` times. It reports the requests registrator made to the ECS agent (the target: at
most one per task) and the time from ``Popen`` to the last of the services registered.

It uses the main Docker engine (``DOCKER_HOST`` or the default socket) and sees every container
on it: hold the lock the end-to-end tests use::

    flock /tmp/docker-e2e.lock python -m benchmarks.ecs_startup
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import docker

from tests.conftest import TEST_IMAGE
from tests.consul_double import ConsulDouble
from tests.ecs_agent_double import DoubleContainer, EcsAgentDouble

REPO = Path(__file__).resolve().parent.parent
LABEL = "registrator-bench-ecs"
PAUSE = "~internal~ecs~pause"
APP_PORT = 8080
T = TypeVar("T")


@dataclass(frozen=True)
class Run:
    seconds_to_all_registered: float
    seconds_to_synced_line: float
    ecs_task_requests: int
    registers: int


def ecs_labels(task_arn: str, container_name: str) -> dict[str, str]:
    return {
        LABEL: "1",
        "com.amazonaws.ecs.cluster": "bench",
        "com.amazonaws.ecs.task-arn": task_arn,
        "com.amazonaws.ecs.task-definition-family": "bench",
        "com.amazonaws.ecs.task-definition-version": "1",
        "com.amazonaws.ecs.container-name": container_name,
    }


def parallel(func: Callable[[Any], T], items: Sequence[Any], workers: int = 8) -> list[T]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(func, items))


def lay_out_tasks(
    api: Any, agent: EcsAgentDouble, tasks: int, per_task: int
) -> dict[str, tuple[str, int]]:
    """Create and start the tasks; returns service ID -> the (address, port) it must have."""
    run_id = uuid.uuid4().hex[:6]
    hostname = socket.gethostname()

    def pause(n: int) -> tuple[str, str]:
        arn = f"arn:aws:ecs:eu-west-1:123456789012:task/bench/{run_id}{n:04d}"
        created = api.create_container(
            TEST_IMAGE,
            ["sleep", "86400"],
            name=f"bench-ecs-{run_id}-{n}-pause",
            labels=ecs_labels(arn, PAUSE),
            host_config=api.create_host_config(network_mode="none"),
        )
        api.start(created["Id"])
        return arn, str(created["Id"])

    def app(spec: tuple[int, int, str, str]) -> str:
        n, k, arn, pause_id = spec
        created = api.create_container(
            TEST_IMAGE,
            ["sleep", "86400"],
            name=f"bench-ecs-{run_id}-{n}-app{k}",
            labels=ecs_labels(arn, f"app{k}"),
            host_config=api.create_host_config(network_mode=f"container:{pause_id}"),
        )
        return str(created["Id"])

    pauses = parallel(pause, range(tasks))
    specs = [
        (n, k, arn, pause_id) for n, (arn, pause_id) in enumerate(pauses) for k in range(per_task)
    ]
    app_ids = parallel(app, specs)
    expected: dict[str, tuple[str, int]] = {}
    for n, (arn, pause_id) in enumerate(pauses):
        containers = [DoubleContainer(pause_id, PAUSE, internal=True)]
        for k in range(per_task):
            app_id = app_ids[n * per_task + k]
            containers.append(DoubleContainer(app_id, f"app{k}", [(APP_PORT, "tcp")]))
            name = f"bench-ecs-{run_id}-{n}-app{k}"
            expected[f"{hostname}:{name}:{APP_PORT}"] = (f"10.1.{n}.10", APP_PORT)
        agent.add_task(arn, containers, family="bench", version="1", ipv4=[f"10.1.{n}.10"])
    parallel(api.start, app_ids)  # the agent knows the tasks before their apps start
    return expected


def remove_all(api: Any) -> None:
    ids = [c["Id"] for c in api.containers(all=True, filters={"label": LABEL})]
    parallel(lambda cid: api.remove_container(cid, force=True), ids)


def one_run(agent: EcsAgentDouble, expected: dict[str, tuple[str, int]], log: Path) -> Run:
    agent.clear_requests()
    with ConsulDouble() as consul, open(log, "wb") as out:
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        argv = [sys.executable, "-m", "registrator", "-ecs", "-ecs-agent-uri", agent.url]
        started = time.monotonic()
        proc = subprocess.Popen(
            [*argv, f"consul://127.0.0.1:{consul.port}"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
        )  # fmt: skip
        try:
            services = consul.wait_for(lambda s: set(expected) <= set(s), timeout=120)
            registered = [r for r in consul.writes() if r.path == "/v1/agent/service/register"]
            last = max(r.time for r in registered)
            synced = wait_for_line(log, "synced: ", proc, timeout=60)
        finally:
            proc.terminate()
            proc.wait(20)
    wrong = {
        sid: (svc["Address"], svc["Port"])
        for sid, svc in services.items()
        if sid in expected and (svc["Address"], svc["Port"]) != expected[sid]
    }
    if wrong:
        raise AssertionError(f"registered at the wrong address: {wrong}")
    return Run(
        seconds_to_all_registered=round(last - started, 3),
        seconds_to_synced_line=round(synced - started, 3),
        ecs_task_requests=len(agent.task_requests()),
        registers=len(registered),
    )


def wait_for_line(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> float:
    """When ``text`` appeared in the log (polled; the monotonic time it was first seen)."""
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"no {text!r} in the registrator log:\n{log.read_text()[-3000:]}")
        time.sleep(0.01)
    return time.monotonic()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ecs_startup", description=__doc__)
    p.add_argument("--tasks", type=int, default=10)
    p.add_argument("--per-task", type=int, default=5, help="app containers per task")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results/ecs-startup.json")
    args = p.parse_args(argv)

    api = docker.APIClient(version="auto", timeout=120, max_pool_size=16)
    remove_all(api)
    runs: list[Run] = []
    with EcsAgentDouble() as agent:
        try:
            began = time.monotonic()
            expected = lay_out_tasks(api, agent, args.tasks, args.per_task)
            print(
                f"{args.tasks} awsvpc tasks, {len(expected)} app containers (+{args.tasks} pause) "
                f"running after {time.monotonic() - began:.1f}s"
            )
            for n in range(args.runs):
                run = one_run(agent, expected, Path(f"/tmp/registrator-ecs-bench-{n}.log"))
                runs.append(run)
                print(f"run {n + 1}: {run}")
        finally:
            remove_all(api)
            api.close()
    requests = max(r.ecs_task_requests for r in runs)
    result = {
        "tasks": args.tasks,
        "app_containers": args.tasks * args.per_task,
        "runs": [asdict(r) for r in runs],
        "ecs_task_requests_max": requests,
        "seconds_to_all_registered_median": statistics.median(
            r.seconds_to_all_registered for r in runs
        ),
        "verdict": "met" if requests <= args.tasks else "MISSED",
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
