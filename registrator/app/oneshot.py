"""One-shot commands for operators: ``resync`` (make Consul match Docker now) and ``plan``
(show what that would change). Both read Docker and the agent through the same derivation and
reconciler as the daemon; neither keeps running."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from registrator.adapters.consul_agent import ConsulAgent, ConsulError, agent_trouble
from registrator.adapters.docker_source import DockerSource, DockerUnavailable
from registrator.adapters.legacy import AdoptingAgent, adopting
from registrator.core.config import Config
from registrator.core.container import display_name, short_id
from registrator.core.derive import DeriveOptions
from registrator.core.explanation import count_codes
from registrator.core.model import OWNER_META_KEY, Service
from registrator.core.networks import join_host_port
from registrator.core.plan import Outcome, Plan
from registrator.core.reasons import Reason
from registrator.sync.agent_sync import AgentSync
from registrator.sync.ecs_placement import EcsPlacement
from registrator.sync.holding import held_at_a_look
from registrator.sync.processing import WAITING, WITHHELD, ContainerProcessor
from registrator.sync.records import Records

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_DIFFERENT = 2


class OneShotError(Exception):
    """Docker or Consul could not be used; the message says which and why."""


class Loaded(NamedTuple):
    """What every running container wants, in a sync loop (nothing written yet), and the
    services held back (-flap-hold): neither added nor counted as wanted."""

    reconciler: AgentSync
    held: list[Service]


def load_desired(
    config: Config,
    options: DeriveOptions,
    agent: ConsulAgent | None,
    unregistered: dict[str, tuple[Reason, ...]] | None = None,
) -> Loaded:
    """A sync loop holding what every running container wants (nothing written yet), and what
    is held. Each
    running container that registers nothing goes into ``unregistered``, with its codes."""
    try:
        docker = DockerSource(os.environ, config.docker_host)
        container_ids = docker.container_ids()
    except DockerUnavailable as exc:
        raise OneShotError(f"Docker unreachable at {config.docker_host}: {exc}") from None
    if agent is not None:
        try:
            agent.ping()
        except ConsulError as exc:
            raise OneShotError(agent_trouble(config.consul, exc)) from None
    reconciler = AgentSync(
        adopting(agent, config.adopt),
        owner=config.hostname,
        cleanup=True,
        max_writes=config.agent_writes,
        refresh_health=False,
    )
    placement = (
        EcsPlacement(config.ecs_agent_uri, reconciler.metrics, Records()) if config.ecs else None
    )
    processor = ContainerProcessor(options, config.deregister, placement)
    held: list[Service] = []

    def want(container_id: str) -> None:
        verdict = processor.assess(docker, container_id)
        if verdict.kind == WAITING:  # nothing is written from a guess
            raise OneShotError(f"ECS agent failed for {verdict.label}: {verdict.reason}")
        if verdict.kind == WITHHELD:
            log.info("%s: services withheld: %s", verdict.label, verdict.reason)
        for problem in verdict.problems:
            log.warning("%s", problem)
        codes = verdict.explained.codes() if verdict.explained else ()
        if codes and unregistered is not None:
            unregistered[container_id] = codes
        seen = held_at_a_look(verdict, time.time(), config.flap_hold)
        if seen is not verdict:
            log.info("%s: held: %s", verdict.label, seen.reason)
            held.extend(verdict.services)
            return
        reconciler.publish(container_id, verdict.services, write=False)

    try:
        with ThreadPoolExecutor(config.workers) as pool:
            list(pool.map(want, container_ids))
    except DockerUnavailable as exc:
        raise OneShotError(f"Docker failed: {exc}") from None
    return Loaded(reconciler, sorted(held, key=lambda service: service.id))


def run_resync(config: Config, options: DeriveOptions, agent: ConsulAgent | None) -> int:
    """One reconcile, printed. 0 when Consul matches Docker afterwards, 1 otherwise."""
    try:
        reconciler, held = load_desired(config, options, agent)
    except OneShotError as exc:
        print(f"registrator resync: {exc}", file=sys.stderr)
        return EXIT_ERROR
    outcome = reconciler.sync(remove_stale=True)
    legacy = reconciler.agent if isinstance(reconciler.agent, AdoptingAgent) else None
    print_outcome(outcome, legacy, held)
    if outcome.unavailable:
        print(f"registrator resync: Consul failed: {outcome.unavailable}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK if outcome.complete else EXIT_ERROR


def print_outcome(
    outcome: Outcome, legacy: AdoptingAgent | None = None, held_back: list[Service] | None = None
) -> None:
    """One line per service, then the counts, as ``plan`` names them: ``added`` where the
    agent held no service of that ID, ``updated`` where it held one that differed. Services
    taken over from gliderlabs/registrator (``-adopt``) say so, and are also counted as added
    or removed; those of crash-looping containers (``-flap-hold``) are listed ``held`` and
    counted when there are any."""
    adopted = set(legacy.adopted) if legacy else set()
    removed = set(legacy.removed) if legacy else set()
    n_added = n_adopted = 0
    registered = {service.id for service in outcome.registered}
    # A service whose Docker health check alone differed (plan: update) had only that written.
    health_only = [service for service in outcome.health if service.id not in registered]
    for service in [*outcome.registered, *health_only]:
        if service.id in adopted:
            verb = "adopted"
            n_added, n_adopted = n_added + 1, n_adopted + 1
        elif service.id in outcome.held or service.id not in registered:
            verb = "updated"
        else:
            verb = "added"
            n_added += 1
        print(
            f"{verb:<10} {service.id}  ({service.name} {join_host_port(service.address, service.port)})"
        )
    for service_id in outcome.deregistered:
        print(f"removed    {service_id}" + ("  (legacy)" if service_id in removed else ""))
    for service_id in outcome.unchanged:
        print(f"unchanged  {service_id}")
    for service_id, reason in outcome.rejected:
        print(f"failed     {service_id}: {reason}")
    for service in held_back or ():
        print(f"held       {service.id}  (keeps dying soon after it starts; -flap-hold)")
    n_updated = len(outcome.registered) + len(health_only) - n_added
    n_removed = sum(sid in removed for sid in outcome.deregistered)
    print(
        f"{n_added} added" + (f" ({n_adopted} adopted)" if n_adopted else "")
        + f", {n_updated} updated"
        + f", {len(outcome.deregistered)} removed" + (f" ({n_removed} legacy)" if n_removed else "")
        + f", {len(outcome.unchanged)} unchanged, {len(outcome.rejected)} failed"
        + (f", {len(held_back)} held" if held_back else "")
    )  # fmt: skip


def run_plan(
    config: Config, options: DeriveOptions, agent: ConsulAgent | None, as_json: bool
) -> int:
    """What ``resync`` would do. 0 in sync, 2 when there are differences, 1 on errors."""
    unregistered: dict[str, tuple[Reason, ...]] = {}
    try:
        reconciler, held = load_desired(config, options, agent, unregistered)
        plan, actual = reconciler.preview(remove_stale=True)
    except (OneShotError, ConsulError) as exc:
        failure = str(exc) if isinstance(exc, OneShotError) else f"Consul failed: {exc}"
        print(f"registrator plan: {failure}", file=sys.stderr)
        if as_json:  # a script reading stdout gets the cause too, not nothing
            print(json.dumps({"error": failure}, indent=2, sort_keys=True))
        return EXIT_ERROR
    rows = plan_rows(plan, actual, reconciler.desired()) + [_row("held", s) for s in held]
    if as_json:
        print(json.dumps({"in_sync": plan.empty, "changes": rows}, indent=2, sort_keys=True))
    else:
        print_plan_table(rows)
        if unregistered:
            counts = count_codes(unregistered.values())
            print(
                f"{len(unregistered)} running container(s) register nothing: "
                + ", ".join(f"{code} {n}" for code, n in counts.items())
                + " ('registrator explain URI CONTAINER' says why)"
            )
    return EXIT_OK if plan.empty else EXIT_DIFFERENT


def plan_rows(
    plan: Plan, actual: dict[str, Service], desired: dict[str, Service]
) -> list[dict[str, Any]]:
    """Rows of the plan. With ``-adopt`` the owned services include gliderlabs/registrator's
    unmarked ones of this host: ``adopt`` marks one a container wants, ``remove`` drops one no
    container wants (``legacy`` tells them from registrator's own)."""

    def legacy(sid: str) -> bool:
        return sid in actual and OWNER_META_KEY not in actual[sid].meta_dict

    rows = [
        _row(
            "adopt" if legacy(svc.id) else "update" if svc.id in actual else "add",
            svc,
            legacy(svc.id),
        )
        for svc in plan.register
    ]
    rows += [_row("remove", actual[sid], legacy(sid)) for sid in plan.deregister]
    rows += [_row("unchanged", desired[sid]) for sid in plan.unchanged]
    return rows


def _row(action: str, service: Service, legacy: bool = False) -> dict[str, Any]:
    return {
        "action": action,
        "legacy": legacy,
        "id": service.id,
        "name": service.name,
        "address": service.address,
        "port": service.port,
        "tags": list(service.tags),
        "meta": service.meta_dict,
        "checks": [
            {"id": check_id, "kind": check.kind, **check.to_consul()}
            for check_id, check in zip(service.check_ids(), service.checks, strict=True)
        ],
        "weights": {"passing": service.weights[0], "warning": service.weights[1]},
        "enable_tag_override": service.enable_tag_override,
        "container": service.container_name,
        "container_id": short_id(service.container_id),
    }


def print_plan_table(rows: list[dict[str, Any]]) -> None:
    header = ("ACTION", "SERVICE ID", "NAME", "ADDRESS", "TAGS", "CONTAINER", "CHECKS")
    table = [header] + [
        (
            row["action"],
            row["id"],
            row["name"],
            join_host_port(row["address"] or "-", row["port"]),
            ",".join(row["tags"]) or "-",
            display_name(row["container"], row["container_id"]) if row["container_id"] else "-",
            ",".join(
                f"{c['kind']}:{c.get('Status', '')}" if c["kind"] == "health" else c["kind"]
                for c in row["checks"]
            )
            or "-",
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )
    counts = {action: sum(r["action"] == action for r in rows) for action in
              ("add", "adopt", "update", "remove", "unchanged", "held")}  # fmt: skip
    for rare in ("adopt", "held"):  # only -adopt, -flap-hold find any: otherwise as without
        if not counts[rare]:
            del counts[rare]
    print(
        ", ".join(
            f"{n} to {a}" if a not in ("unchanged", "held") else f"{n} {a}"
            for a, n in counts.items()
        )
    )
