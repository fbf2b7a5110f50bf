"""One container explained, as plain data: its state, what each port gives or why not, the
keys refused, and what the agent holds of each service (pure).

``registrator explain`` prints it and the daemon's ``/containers`` serves it; both take the
decisions as the deciding code made them (``Why`` codes, ``Derivation``), and compare with
the agent by the reconciler's own rule (``plan.differences``). The JSON is documented in
docs/operations.md#explain: add fields, never rename one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Any, NamedTuple

from registrator.core.container import ContainerView, display_name
from registrator.core.derive import Derivation
from registrator.core.model import Check, Service
from registrator.core.plan import differences, in_step
from registrator.core.ports import port_candidates
from registrator.core.reasons import PortOutcome, Problem, Reason, Why

HIDDEN = "(hidden)"  # what the daemon's view shows of a check's headers and body
SECRET_META_PREFIXES = ("check_header_", "check_body")  # Meta that may carry credentials


class AgentState(Enum):
    """What the agent holds of one service, against what registrator would register."""

    IN_STEP = "in_step"
    DIFFERS = "differs"
    MISSING = "missing"


class AgentView(NamedTuple):
    state: AgentState
    fields: tuple[str, ...] = ()  # those that differ

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state.value, "fields": list(self.fields)}


class WriteState(Enum):
    """Where the daemon's writes of one service stand (its ``/containers``)."""

    IN_STEP = "in_step"  # the agent holds it as wanted (written, or found so)
    REFUSED = "refused"  # the agent refused its last write: not retried until it changes
    PENDING = "pending"  # a write is due or in flight (or waits for Consul to answer)


def write_state_of(service: Service, known: Service | None, refused: Service | None) -> WriteState:
    """``known``: what the agent holds as last read or written; ``refused``: the version of
    the service the agent refused last, if any."""
    if refused == service:
        return WriteState.REFUSED
    return WriteState.IN_STEP if in_step(known, service) else WriteState.PENDING


def agent_view(actual: Service | None, desired: Service) -> AgentView:
    if actual is None:
        return AgentView(AgentState.MISSING)
    fields = differences(actual, desired)
    return AgentView(AgentState.DIFFERS, fields) if fields else AgentView(AgentState.IN_STEP)


class Explained(NamedTuple):
    """One container: the container's reason (nothing to look at port by port: not running,
    withheld, no ports), each port's outcome, the refused keys. Small: the daemon keeps one
    per container."""

    id: str
    name: str
    state: str  # Docker's: running, exited, created, paused, ...
    health: str | None  # Docker's health status; None without a HEALTHCHECK
    why: Why | None
    ports: tuple[PortOutcome, ...]
    refused: tuple[Problem, ...]
    held_until: float = 0.0  # held by -flap-hold until then (Unix seconds); 0: not held

    @property
    def display(self) -> str:
        return display_name(self.name, self.id)

    @property
    def services(self) -> tuple[Service, ...]:
        return tuple(o.service for o in self.ports if o.service is not None)

    def reasons(self) -> tuple[Why, ...]:
        """Why services are missing: the container's reason, else its ports'."""
        if self.why is not None:
            return (self.why,)
        return tuple(o.why for o in self.ports if o.why is not None)

    def codes(self) -> tuple[Reason, ...]:
        """Why it registers nothing, each code once; () when it registers something."""
        if self.services:
            return ()
        return tuple(dict.fromkeys(why.code for why in self.reasons()))


def explain(view: ContainerView, why: Why | None, derivation: Derivation | None) -> Explained:
    """The container as the deciding code left it: ``why`` is its own reason (from
    lifecycle or processing), ``derivation`` what derive made of it (None when it was not
    asked: the container's reason then applies to each of its ports)."""
    seen = (view.id, view.name, view.status, view.health_status)
    if derivation is None:
        ports = tuple(
            PortOutcome(f"{c.exposed_port}/{c.protocol}", None, why) for c in port_candidates(view)
        )
        return Explained(*seen, why, ports, ())
    return Explained(*seen, why or derivation.skipped, derivation.ports, derivation.problems)


def held(explained: Explained, detail: str, until: float) -> Explained:
    """The container held out of Consul (-flap-hold) until ``until``: its own reason is
    ``held``, and so is that of each port that would give a service."""
    why = Why(Reason.HELD, detail)
    ports = tuple(
        o if o.service is None else PortOutcome(o.port, None, why) for o in explained.ports
    )
    return explained._replace(why=why, ports=ports, held_until=until)


def utc_time(seconds: float) -> str:
    """``2026-12-06T22:50:13Z``: a time in the JSON, to the second."""
    return datetime.fromtimestamp(round(seconds), UTC).isoformat().replace("+00:00", "Z")


def to_json(
    explained: Explained, actual: Mapping[str, Service] | None, secrets: bool = True
) -> dict[str, Any]:
    """The documented JSON of one container; ``actual`` (the agent's services) adds the
    agent's view of each service; ``secrets=False`` hides check headers and bodies."""
    return {
        "id": explained.id,
        "name": explained.name,
        "state": explained.state,
        "health": explained.health,
        "reason": explained.why.to_json() if explained.why else None,
        "ports": [_port_json(o, actual, secrets) for o in explained.ports],
        "refused": [_refused_json(p, secrets) for p in explained.refused],
        "held_until": utc_time(explained.held_until) if explained.held_until else None,
    }


def _port_json(
    outcome: PortOutcome, actual: Mapping[str, Service] | None, secrets: bool
) -> dict[str, Any]:
    service = outcome.service
    body: dict[str, Any] = {
        "port": outcome.port,
        "service": None if service is None else service_json(service, secrets),
        "reason": outcome.why.to_json() if outcome.why else None,
    }
    if actual is not None:
        body["agent"] = (
            None if service is None else agent_view(actual.get(service.id), service).to_json()
        )
    return body


def _refused_json(problem: Problem, secrets: bool) -> dict[str, str]:
    hidden = not secrets and _secret_key(problem.key.removeprefix("SERVICE_").lower())
    return {
        "key": problem.key,
        "value": HIDDEN if hidden else problem.value,
        "why": problem.message,
    }


def _secret_key(key: str) -> bool:
    return any(part in key for part in SECRET_META_PREFIXES)


def service_json(service: Service, secrets: bool = True) -> dict[str, Any]:
    """A service as ``plan -json`` shows one (without the action)."""
    meta = service.meta_dict
    if not secrets:
        meta = {k: HIDDEN if _secret_key(k) else v for k, v in meta.items()}
    return {
        "id": service.id,
        "name": service.name,
        "address": service.address,
        "port": service.port,
        "tags": list(service.tags),
        "meta": meta,
        "checks": [
            _check_json(check_id, check, secrets)
            for check_id, check in zip(service.check_ids(), service.checks, strict=True)
        ],
        "weights": {"passing": service.weights[0], "warning": service.weights[1]},
        "enable_tag_override": service.enable_tag_override,
    }


def _check_json(check_id: str, check: Check, secrets: bool) -> dict[str, Any]:
    body = {"id": check_id, "kind": check.kind, **check.to_consul()}
    if not secrets:
        if "Header" in body:
            body["Header"] = {name: [HIDDEN] for name in body["Header"]}
        if "Body" in body:
            body["Body"] = HIDDEN
    return body


def daemon_json(
    kind: str, explained: Explained, writes: Mapping[str, tuple[WriteState, str]]
) -> dict[str, Any]:
    """One container in the daemon's ``/containers``: the explanation (check headers and
    bodies hidden), what the daemon wants of it (``verdict``), its reason codes, and for each
    service where its writes stand (a refusal with the agent's message)."""
    body = to_json(explained, None, secrets=False)
    body["verdict"] = kind
    body["codes"] = list(dict.fromkeys(why.code.value for why in explained.reasons()))
    for port, outcome in zip(body["ports"], explained.ports, strict=True):
        service = outcome.service
        if service is None:
            port["write"] = None
            continue
        result, error = writes.get(service.id, (WriteState.PENDING, ""))
        port["write"] = {"result": result.value, "error": error}
    return body


def unregistered_counts(explained: Iterable[Explained]) -> dict[str, int]:
    """Reason code -> how many of the containers that register nothing have it."""
    return count_codes(one.codes() for one in explained)


def count_codes(per_container: Iterable[tuple[Reason, ...]]) -> dict[str, int]:
    """Reason code -> how many containers have it, the most frequent first."""
    counts: dict[str, int] = {}
    for codes in per_container:
        for code in codes:
            counts[code.value] = counts.get(code.value, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
