"""Where a service answers: the address rules of ``derive``, apart from its name and tag rules
(pure). The precedence is the original's, but a published port registers the address where it
is published, of its binding's family (docs/metadata.md#addresses)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from registrator.core.container import ContainerView
from registrator.core.networks import (
    HOST_NETWORK_MODE,
    NETWORK_KEY,
    NO_NETWORK_MODE,
    join_host_port,
    network_address,
)
from registrator.core.ports import UNSPECIFIED_ADDRESSES, PortCandidate, binding_for, family
from registrator.core.reasons import Reason


class AddressOptions(Protocol):
    """The settings the address rules read (``DeriveOptions`` has them)."""

    @property
    def internal(self) -> bool: ...

    @property
    def ip(self) -> str: ...

    @property
    def host_ip(self) -> str: ...

    @property
    def use_ip_from_label(self) -> str: ...


class Reporter(Protocol):
    """Whom the rules tell what is wrong (``problem``) and why a port gives no service."""

    port: str  # the port being derived ("8080/tcp")

    def problem(self, key: str, message: str) -> None: ...

    def skip(self, code: Reason, detail: str) -> None: ...


class ServiceAddresses:
    """The address rules for one container's ports (and the container whose network it
    shares, if any); what goes wrong is told to ``report``."""

    def __init__(
        self,
        container: ContainerView,
        peer: ContainerView | None,
        options: AddressOptions,
        report: Reporter,
    ) -> None:
        self.container = container
        self.peer = peer
        self.options = options
        self.report = report

    def address(
        self, port: PortCandidate, metadata: Mapping[str, str], from_port: set[str]
    ) -> tuple[str, int] | None:
        """Where the service answers; None when it has no address (said why)."""
        located = self.locate(port, metadata, from_port)
        if located is None:
            return None
        address, number = located
        if address in UNSPECIFIED_ADDRESSES - {""}:
            self.report.problem(
                "", f"address {address} cannot be registered; left empty (the agent's)"
            )
            address = ""
        try:
            return address, int(number)
        except ValueError:
            return address, 0

    def locate(
        self, port: PortCandidate, metadata: Mapping[str, str], from_port: set[str]
    ) -> tuple[str, str] | None:
        """(address, port) by the original's precedence: an awsvpc task's ENI address, which
        only ``-useIpFromLabel`` overrides; with ``--network container:<id>`` the other
        container's address, over everything; else ``-useIpFromLabel``; else with
        ``-internal`` the container's own address (``registrator.core.networks``) and port;
        else the address where the port is published (``published_address``). Host networking
        has no address of its own: the published rule applies there, ``-internal`` or not."""
        if port.awsvpc:
            binding = port.bindings[0]
            return self.label_address() or binding.host_ip, binding.host_port
        if self.container.shares_network:
            address = self.peer_address(port, metadata, from_port)
        else:
            label, internal = self.label_address(), self.options.internal
            mode = self.container.network_mode
            own = (internal and (label or mode != HOST_NETWORK_MODE)) or (
                mode == NO_NETWORK_MODE and not label  # no address, and said so
            )
            if not own:
                return self.published_address(port, label, port.exposed_port if internal else "")
            address = label or self.own_address(self.container, port, metadata, from_port)
        return None if address is None else (address, port.exposed_port)

    def published_address(
        self, port: PortCandidate, label: str, number: str = ""
    ) -> tuple[str, str] | None:
        """A published port at the address where it is published: the label's address; else
        the binding's own host IP when it is specific; else ``-ip``; else the hostname's IP.
        The binding is one of that address's family; with none, nothing is registered. This
        holds on every network: the container's own address with the host's port is reachable
        from nowhere (the original's pair on user-defined networks). ``number`` (the container
        port, with ``-internal``) replaces the binding's port."""
        options = self.options
        fallback = label or options.ip or options.host_ip
        binding = binding_for(port.bindings, fallback, strict=bool(label or options.ip))
        if binding is None:
            published = ", ".join(join_host_port(b.host_ip, b.host_port) for b in port.bindings)
            message = (
                f"port {self.report.port} is published only on {published}, "
                f"none for an IPv{family(fallback)} address ({fallback})"
            )
            self.report.problem(
                "-ip" if options.ip and not label else "", f"{message}; not registered"
            )
            self.report.skip(Reason.NO_BINDING, message)
            return None
        if label or binding.host_ip not in UNSPECIFIED_ADDRESSES:
            address = label or binding.host_ip
        else:
            address = fallback or binding.host_ip or "0.0.0.0"
        return address, number or binding.host_port

    def peer_address(
        self, port: PortCandidate, metadata: Mapping[str, str], from_port: set[str]
    ) -> str | None:
        """``--network container:<id>``: the other container's address."""
        if self.peer is None:
            mode = self.container.network_mode
            self.report.skip(Reason.NO_ADDRESS, f"its network container ({mode}) is unknown")
            return None
        return self.own_address(self.peer, port, metadata, from_port)

    def label_address(self) -> str:
        """``-useIpFromLabel``: the address in that container label ("" when none)."""
        label = self.options.use_ip_from_label
        if not label:
            return ""
        from_label = self.container.labels.get(label, "")
        return from_label.rsplit("/", 1)[0] if "/" in from_label else from_label

    def own_address(
        self,
        view: ContainerView,
        port: PortCandidate,
        metadata: Mapping[str, str],
        from_port: set[str],
    ) -> str | None:
        """The address of ``view`` (this container, or the one whose network it shares) on
        the network ``SERVICE_NETWORK`` names, else on its default network; None when it has
        none there (said why)."""
        per_port = NETWORK_KEY in from_port
        key = f"SERVICE_{port.exposed_port}_NETWORK" if per_port else "SERVICE_NETWORK"
        found = network_address(view, metadata.get(NETWORK_KEY, "").strip(), key)
        whose = "" if view is self.container else f"network container {view.display}: "
        for problem_key, message in found.problems:
            self.report.problem(problem_key, whose + message)
        if not found.address:
            said = found.note or "; ".join(message for _, message in found.problems)
            self.report.skip(Reason.NO_ADDRESS, whose + said)
            return None
        return found.address
