"""The ports a container may have services on: from Docker, or from the ECS agent (pure)."""

from __future__ import annotations

from typing import NamedTuple

from registrator.core.container import ContainerView
from registrator.core.ecs_rules import AwsvpcNetwork

ANY_ADDRESS = "0.0.0.0"


class PortCandidate(NamedTuple):
    exposed_port: str
    protocol: str
    host_port: str
    host_ip: str  # the binding's; an awsvpc task's ENI address
    awsvpc: bool = False  # the address is the task ENI's: -ip and peers do not apply


def port_candidates(container: ContainerView) -> list[PortCandidate]:
    """Exposed ports (host port = exposed port, as with host networking), overridden by
    the published bindings Docker reports; the first binding of a port wins. Where the
    container's own address is registered instead is the service's rule (``derive``)."""
    found: dict[str, tuple[str, str]] = {}
    for port in container.exposed_ports:
        found[port] = (port.split("/", 1)[0], ANY_ADDRESS)
    for port, (host_port, host_ip) in container.published_ports.items():
        found[port] = (host_port, host_ip or ANY_ADDRESS)

    candidates: list[PortCandidate] = []
    for port, (host_port, host_ip) in found.items():
        number, _, protocol = port.partition("/")
        if not number.isdigit():
            continue  # not a port Docker would report
        candidates.append(PortCandidate(number, protocol or "tcp", host_port, host_ip))
    candidates.sort(key=lambda c: (int(c.exposed_port), c.protocol))
    return candidates


def awsvpc_candidates(network: AwsvpcNetwork) -> list[PortCandidate]:
    """An awsvpc container's ports, from the ECS agent: each at the task ENI's first IPv4
    address, else its first IPv6 address, the container port being the port (in awsvpc the
    host port equals it)."""
    address = next(iter(network.ipv4_addresses + network.ipv6_addresses), "")
    found: dict[tuple[int, str], PortCandidate] = {}
    for number, protocol in network.ports:
        found.setdefault(
            (number, protocol),
            PortCandidate(str(number), protocol, str(number), address, awsvpc=True),
        )
    return [found[key] for key in sorted(found)]
