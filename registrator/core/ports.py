"""The ports a container may have services on: from Docker, or from the ECS agent (pure)."""

from __future__ import annotations

from typing import NamedTuple

from registrator.core.container import Binding, ContainerView
from registrator.core.ecs_rules import AwsvpcNetwork

UNSPECIFIED_ADDRESSES = frozenset({"0.0.0.0", "::", ""})


class PortCandidate(NamedTuple):
    exposed_port: str
    protocol: str
    bindings: tuple[Binding, ...]  # where it is reachable on the host; () when not published
    awsvpc: bool = False  # the binding is the task ENI's address: -ip and peers do not apply


def family(address: str) -> int | None:
    """4 or 6; None for "" (an address of either family, or none known)."""
    return (6 if ":" in address else 4) if address else None


def binding_for(bindings: tuple[Binding, ...], address: str, strict: bool) -> Binding | None:
    """The first binding a client reaches: one on a specific host IP at that IP, one on every
    address at ``address`` when the family matches (0.0.0.0 is reached over IPv4 only, :: over
    IPv6 only, "" as Podman and host networking give over both). ``strict`` (``address`` is
    ``-ip`` or a label's, stating how the host is reached) also holds specific bindings to
    that family. None when no binding fits: another family's port would be a port nobody
    listens on at that address."""
    wanted = family(address)
    for binding in bindings:
        if binding.host_ip not in UNSPECIFIED_ADDRESSES and not strict:
            return binding
        if wanted is None or not binding.host_ip or family(binding.host_ip) == wanted:
            return binding
    return None


def port_candidates(container: ContainerView) -> list[PortCandidate]:
    """Exposed ports (reachable at the exposed port on every address, as with host
    networking), overridden by the bindings Docker reports for the port. Where the container's
    own address is registered instead is the service's rule (``derive``)."""
    found: dict[str, tuple[Binding, ...]] = {}
    for port in container.exposed_ports:
        found[port] = (Binding("", port.split("/", 1)[0]),)
    found.update(container.published_ports)

    candidates: list[PortCandidate] = []
    for port, bindings in found.items():
        number, _, protocol = port.partition("/")
        if not number.isdigit():
            continue  # not a port Docker would report
        candidates.append(PortCandidate(number, protocol or "tcp", bindings))
    candidates.sort(key=lambda c: (int(c.exposed_port), c.protocol))
    return candidates


def awsvpc_candidates(network: AwsvpcNetwork) -> list[PortCandidate]:
    """An awsvpc container's ports, from the ECS agent: each at the task ENI's first IPv4
    address, else its first IPv6 address, the container port being the port (in awsvpc the
    host port equals it)."""
    address = next(iter(network.ipv4_addresses + network.ipv6_addresses), "")
    found: dict[tuple[int, str], PortCandidate] = {}
    for number, protocol in network.ports:
        binding = Binding(address, str(number))
        found.setdefault((number, protocol), PortCandidate(str(number), protocol, (binding,), True))
    return [found[key] for key in sorted(found)]
