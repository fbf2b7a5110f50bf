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
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.harness import (
    BENCH_LABEL,
    REPO,
    CodeUnderTest,
    Fleet,
    RegistratorProcess,
    is_register,
)
from registrator.config import docker_host
from tests.conftest import TEST_IMAGE
from tests.consul_double import ConsulDouble
from tests.ecs_agent_double import DoubleContainer, EcsAgentDouble

PAUSE = "~internal~ecs~pause"
APP_PORT = 8080


@dataclass(frozen=True)
class Run:
    seconds_to_all_registered: float
    seconds_to_synced_line: float
    ecs_task_requests: int
    registers: int


def ecs_labels(task_arn: str, container_name: str) -> dict[str, str]:
    return {
        BENCH_LABEL: "1",
        "com.amazonaws.ecs.cluster": "bench",
        "com.amazonaws.ecs.task-arn": task_arn,
        "com.amazonaws.ecs.task-definition-family": "bench",
        "com.amazonaws.ecs.task-definition-version": "1",
        "com.amazonaws.ecs.container-name": container_name,
    }


def lay_out_tasks(
    fleet: Fleet, agent: EcsAgentDouble, tasks: int, per_task: int
) -> dict[str, tuple[str, int]]:
    """Create and start the tasks; returns service ID -> the (address, port) it must have."""
    api = fleet.api
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

    pauses = fleet.parallel(pause, range(tasks), 8)
    specs = [
        (n, k, arn, pause_id) for n, (arn, pause_id) in enumerate(pauses) for k in range(per_task)
    ]
    app_ids = fleet.parallel(app, specs, 8)
    expected: dict[str, tuple[str, int]] = {}
    for n, (arn, pause_id) in enumerate(pauses):
        containers = [DoubleContainer(pause_id, PAUSE, internal=True)]
        for k in range(per_task):
            app_id = app_ids[n * per_task + k]
            containers.append(DoubleContainer(app_id, f"app{k}", [(APP_PORT, "tcp")]))
            name = f"bench-ecs-{run_id}-{n}-app{k}"
            expected[f"{hostname}:{name}:{APP_PORT}"] = (f"10.1.{n}.10", APP_PORT)
        agent.add_task(arn, containers, family="bench", version="1", ipv4=[f"10.1.{n}.10"])
    fleet.parallel(api.start, app_ids, 8)  # the agent knows the tasks before their apps start
    return expected


def one_run(
    code: CodeUnderTest, agent: EcsAgentDouble, expected: dict[str, tuple[str, int]], log: Path
) -> Run:
    agent.clear_requests()
    with ConsulDouble() as consul:
        args = ["-ecs", "-ecs-agent-uri", agent.url]
        proc = RegistratorProcess(code, docker_host(os.environ), consul.port, log, args)
        try:
            services = consul.wait_for(lambda s: set(expected) <= set(s), timeout=120)
            registered = [r for r in consul.writes() if is_register(r)]
            last = max(r.wall_ns for r in registered)
            proc.wait_log("synced: ", timeout=60)
            synced = proc.line_time_ns("synced: ")
        finally:
            proc.stop()
    wrong = {
        sid: (svc["Address"], svc["Port"])
        for sid, svc in services.items()
        if sid in expected and (svc["Address"], svc["Port"]) != expected[sid]
    }
    if wrong:
        raise AssertionError(f"registered at the wrong address: {wrong}")
    return Run(
        seconds_to_all_registered=round((last - proc.started_ns) / 1e9, 3),
        seconds_to_synced_line=round((synced - proc.started_ns) / 1e9, 3),
        ecs_task_requests=len(agent.task_requests()),
        registers=len(registered),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ecs_startup", description=__doc__)
    p.add_argument("--tasks", type=int, default=10)
    p.add_argument("--per-task", type=int, default=5, help="app containers per task")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results/ecs-startup.json")
    p.add_argument("--ref", default="worktree", help="the registrator commit to measure")
    args = p.parse_args(argv)

    code = CodeUnderTest.export(args.ref)
    fleet = Fleet(docker_host(os.environ))
    fleet.remove_all()
    runs: list[Run] = []
    with EcsAgentDouble() as agent:
        try:
            began = time.monotonic()
            expected = lay_out_tasks(fleet, agent, args.tasks, args.per_task)
            print(
                f"{args.tasks} awsvpc tasks, {len(expected)} app containers (+{args.tasks} pause) "
                f"running after {time.monotonic() - began:.1f}s"
            )
            for n in range(args.runs):
                run = one_run(code, agent, expected, Path(f"/tmp/registrator-ecs-bench-{n}.log"))
                runs.append(run)
                print(f"run {n + 1}: {run}")
        finally:
            errors = fleet.remove_all()
            fleet.close()
            code.cleanup()
            if errors:
                print(f"cleanup: {len(errors)} container(s) not removed: {errors[:3]}")
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
