"""``registrator explain``: why a container is (not) registered, port by port, and what the
agent holds of each service. It asks the code that decides (``ContainerProcessor``, the
same as the daemon's and ``plan``'s) and prints its reasons; it writes nothing.

Exit 0 when every service explained is in step with the agent, 2 when one differs or is
missing (and for bad usage), 1 when Docker, the agent or the daemon could not be read, or a
container named is unknown.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from registrator.adapters.consul_agent import ConsulAgent, ConsulError, agent_trouble
from registrator.adapters.docker_source import DockerSource, DockerUnavailable
from registrator.adapters.legacy import AdoptingAgent
from registrator.adapters.metrics import Metrics
from registrator.core.config import Config
from registrator.core.container import ContainerView
from registrator.core.derive import DeriveOptions
from registrator.core.explanation import (
    AgentState,
    Explained,
    agent_view,
    to_json,
    unregistered_counts,
)
from registrator.core.flags import metrics_address
from registrator.core.model import Service
from registrator.core.networks import join_host_port
from registrator.sync.ecs_placement import EcsPlacement
from registrator.sync.holding import held_at_a_look
from registrator.sync.processing import ContainerProcessor
from registrator.sync.records import Records
from registrator.sync.writes import read_actual

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_DIFFERENT = 2
DAEMON_TIMEOUT = 5.0


class ExplainError(Exception):
    """Docker, the agent or the daemon could not be read, or a container is unknown."""


def run_explain(
    config: Config, options: DeriveOptions, agent: ConsulAgent, refs: Sequence[str]
) -> int:
    try:
        explained, actual = gather(config, options, agent, refs)
        daemon = daemon_view(config.explain_daemon) if config.explain_daemon else None
    except ExplainError as exc:
        print(f"registrator explain: {exc}", file=sys.stderr)
        if config.explain_json:  # a script reading stdout gets the cause too
            print(json.dumps({"error": str(exc)}, indent=2, sort_keys=True))
        return EXIT_ERROR
    states = [
        agent_view(actual.get(svc.id), svc).state for one in explained for svc in one.services
    ]
    in_step = all(state == AgentState.IN_STEP for state in states)
    if config.explain_json:
        print(json.dumps(report(explained, actual, daemon, in_step), indent=2, sort_keys=True))
    else:
        for one in explained:
            print_container(one, actual, daemon)
        print(summary_line(explained, states))
    return EXIT_OK if in_step else EXIT_DIFFERENT


def gather(
    config: Config, options: DeriveOptions, agent: ConsulAgent, refs: Sequence[str]
) -> tuple[list[Explained], dict[str, Service]]:
    """Each container asked for (every one on the engine when none is), explained by the
    deciding code, and the services this host owns on the agent."""
    try:
        docker = DockerSource(os.environ, config.docker_host)
        ids = resolve(docker, refs)
    except DockerUnavailable as exc:
        raise ExplainError(f"Docker unreachable at {config.docker_host}: {exc}") from None
    try:
        agent.ping()
        reader = AdoptingAgent(agent) if config.adopt else agent
        actual = read_actual(reader, config.hostname)
    except ConsulError as exc:
        raise ExplainError(agent_trouble(config.consul, exc)) from None
    placement = (
        EcsPlacement(config.ecs_agent_uri, Metrics(ecs=True), Records()) if config.ecs else None
    )
    processor = ContainerProcessor(options, config.deregister, placement)
    try:
        explained = [
            one for cid in ids if (one := explain_one(docker, processor, cid, config.flap_hold))
        ]
    except DockerUnavailable as exc:
        raise ExplainError(f"Docker failed: {exc}") from None
    return explained, actual


def resolve(docker: DockerSource, refs: Sequence[str]) -> list[str]:
    """Full IDs of the containers named (by name, ID or ID prefix, as docker inspect takes
    them), in the order given; every container, running or not, when none is named."""
    if not refs:
        return docker.container_ids(every=True)
    ids: list[str] = []
    for ref in refs:
        container = docker.inspect(ref)
        if container is None:
            raise ExplainError(f"no such container: {ref}")
        ids.append(ContainerView(container).id)
    return list(dict.fromkeys(ids))


def explain_one(
    docker: DockerSource, processor: ContainerProcessor, cid: str, hold: float
) -> Explained | None:
    """One container as the processor decides it now, held as ``plan`` holds it (None: it
    went away meanwhile)."""
    return held_at_a_look(processor.assess(docker, cid), time.time(), hold).explained


def daemon_view(address: str) -> dict[str, Any]:
    """The daemon's ``/containers``, by container ID."""
    host, port = metrics_address(address)
    url = f"http://{join_host_port(host, port)}/containers"
    try:
        with urllib.request.urlopen(url, timeout=DAEMON_TIMEOUT) as answer:
            body = json.load(answer)
    except (OSError, ValueError) as exc:
        raise ExplainError(f"the daemon at {address} did not answer {url}: {exc}") from None
    return {entry["id"]: entry for entry in body.get("containers", [])}


def report(
    explained: list[Explained],
    actual: Mapping[str, Service],
    daemon: Mapping[str, Any] | None,
    in_step: bool,
) -> dict[str, Any]:
    containers = []
    for one in explained:
        body = to_json(one, actual)
        if daemon is not None:
            body["daemon"] = daemon.get(one.id)
        containers.append(body)
    return {
        "in_step": in_step,
        "containers": containers,
        "unregistered": unregistered_counts(explained),
    }


def print_container(
    one: Explained, actual: Mapping[str, Service], daemon: Mapping[str, Any] | None
) -> None:
    health = f", {one.health or 'health unknown'}" if one.health is not None else ""
    print(f"{one.display}: {one.state}{health}")
    if one.why is not None:
        print(f"  {one.why.code.value}: {one.why.detail}")
        print(f"    {one.why.code.hint}")
    else:
        for outcome in one.ports:
            if outcome.service is not None:
                print_service(outcome.port, outcome.service, actual)
            elif outcome.why is not None:
                print(f"  {outcome.port:<10}{outcome.why.code.value}: {outcome.why.detail}")
                print(f"  {'':<10}  {outcome.why.code.hint}")
    for problem in one.refused:
        shown = f"{problem.key}={problem.value!r}" if problem.key else "(no key)"
        print(f"  refused   {shown}: {problem.message}")
    if daemon is not None:
        print_daemon(daemon.get(one.id))


def print_service(port: str, svc: Service, actual: Mapping[str, Service]) -> None:
    where = join_host_port(svc.address or "-", svc.port)
    print(f"  {port:<10}service {svc.id}  name {svc.name}  at {where}")
    details = [f"tags {','.join(svc.tags) or '-'}"]
    if svc.summary():
        details.append(svc.summary())
    meta = [f"{k}={v}" for k, v in svc.meta]
    details.append(f"meta {' '.join(meta)}")
    print(f"  {'':<10}{'; '.join(details)}")
    seen = agent_view(actual.get(svc.id), svc)
    fields = f" ({', '.join(seen.fields)})" if seen.fields else ""
    print(f"  {'':<10}agent: {seen.state.value.replace('_', ' ')}{fields}")


def print_daemon(entry: Mapping[str, Any] | None) -> None:
    """The daemon's view of the container: what it wants of it, where its writes stand."""
    if entry is None:
        print("  daemon    holds no record of it")
        return
    codes = entry.get("codes") or []
    print(f"  daemon    {entry.get('verdict', '?')}" + (f" ({', '.join(codes)})" if codes else ""))
    for port in entry.get("ports", []):
        write = port.get("write")
        if write:
            error = f": {write['error']}" if write.get("error") else ""
            print(f"  {'':<10}{port['service']['id']}: {write['result']}{error}")


def summary_line(explained: list[Explained], states: list[AgentState]) -> str:
    counts = {state: states.count(state) for state in AgentState}
    line = (
        f"{len(explained)} container(s), {len(states)} service(s): "
        f"{counts[AgentState.IN_STEP]} in step, {counts[AgentState.DIFFERS]} differ, "
        f"{counts[AgentState.MISSING]} missing"
    )
    quiet = unregistered_counts(explained)
    nothing = sum(1 for one in explained if one.codes())
    if nothing:
        line += f"; {nothing} register nothing ({', '.join(f'{k} {n}' for k, n in quiet.items())})"
    return line
