"""Which of a container's networks gives a service its address, and that address (pure).

A service registers the container's own address with ``-internal`` (not with host networking,
where the container's addresses are the host's) and, for ``--network container:<other>``, the
other container's. A published port registers the address where it is published, on every
network (``derive``). The network is, in this order:

1. the one ``SERVICE_NETWORK`` (``SERVICE_<port>_NETWORK``) names; when the container is not
   attached to it, the service is not registered (a warning names the networks it has);
2. the network its network mode names (``--network NAME``; ``default`` is ``bridge``);
3. the default ``bridge`` network, when attached;
4. the only network;
5. the first by name, with a warning that names the choice and ``SERVICE_NETWORK``.

Only ``NetworkSettings.Networks`` is read, so the answer is the same on every Engine API
version. The address there is the IPv4 one, else the global IPv6 one; with neither the
service is not registered (never an empty address, which Consul would take as the agent's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from registrator.core.container import DEFAULT_BRIDGE, ContainerView, NetworkAttachment

NETWORK_KEY = "network"  # SERVICE_NETWORK, in the metadata's lower-cased form
NO_NETWORK_MODE = "none"  # --network none: no address, by the operator's choice
HOST_NETWORK_MODE = "host"  # the host's addresses: a published port's rule applies


class NetworkAddress(NamedTuple):
    """The address a service gets, and what an operator should hear about the choice."""

    address: str  # "" : the service is not registered
    problems: tuple[tuple[str, str], ...] = ()  # (key, message) warnings
    note: str = ""  # why not registered, when that is no fault (network mode none)


def join_host_port(address: str, port: int | str) -> str:
    """``address:port``, an IPv6 address in brackets (``[fd00::5]:8080``), as Go's
    ``net.JoinHostPort`` writes it for Consul's checks."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def default_network(
    networks: Mapping[str, NetworkAttachment], network_mode: str
) -> tuple[str, bool]:
    """Steps 2 to 5 of the rule: the network a container's address comes from when
    ``SERVICE_NETWORK`` does not say ("" when it is attached to none), and whether it was a
    guess (the first by name of several)."""
    own = DEFAULT_BRIDGE if network_mode in ("", "default") else network_mode
    for name in (own, DEFAULT_BRIDGE):
        if name in networks:
            return name, False
    return min(networks, default=""), len(networks) > 1


def network_address(container: ContainerView, requested: str, key: str) -> NetworkAddress:
    """The container's address on the network ``requested`` (``SERVICE_NETWORK``, read as
    ``key``), or on its default network when "" (see the module's rule)."""
    networks = container.networks
    listed = ", ".join(sorted(networks)) or "none"
    problems: list[tuple[str, str]] = []
    if requested:
        if requested not in networks:
            message = f"not attached to network {requested!r} (its networks: {listed})"
            return NetworkAddress("", ((key, f"{message}; not registered"),))
        name = requested
    elif container.network_mode == NO_NETWORK_MODE:
        return NetworkAddress("", note="network mode none: no address")
    else:
        name, guessed = default_network(networks, container.network_mode)
        if not name:
            return NetworkAddress("", (("", "attached to no network: no address; not registered"),))
        if guessed:
            problems.append(
                (key, f"attached to networks {listed}; using {name!r}, the first by name "
                 f"(set {key}=<network> to choose)")
            )  # fmt: skip
    attachment = networks[name]
    address = attachment.ipv4 or attachment.ipv6
    if not address:
        problems.append(("", f"no IPv4 or global IPv6 address on network {name!r}; not registered"))
    return NetworkAddress(address, tuple(problems))
