"""How gliderlabs/registrator (Go) registers a container's services with Consul, to seed the
Consul double with exactly what a host running it holds before the switch.

Written from its source: bridge/bridge.go (``add``, ``newService``: ports, name, ID, address,
tags, attributes), bridge/util.go (``serviceMetaData``: env vars and labels, per-port keys;
``servicePort``; ``combineTags``/``recParseEscapedComma``, which returns the tags of a comma
list in reverse order) and consul/consul.go (``Register``: ID, Name, Port, Tags, Address,
Check from ``buildCheck``, Meta = the remaining attributes; no owner mark). Only the parts a
test container exercises are covered: no ``-internal``, ``-useIpFromLabel``, container network
modes, ``check_cmd`` or gRPC checks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

DEFAULT_INTERVAL = "10s"  # consul/consul.go DefaultInterval
_ATOI = re.compile(r"[+-]?[0-9]+")


def go_split_tags(text: str) -> list[str]:
    """``recParseEscapedComma``: split on commas not preceded by a backslash (which is
    dropped), skipping leading commas; each split appends the head after the rest, so the
    parts come back in reverse order ("a,b,c" -> [c, b, a])."""
    if not text:
        return []
    if text[0] == ",":
        return go_split_tags(text[1:])
    offset = 0
    while text[offset:]:
        index = text[offset:].find(",")
        if index == -1:
            break
        at = offset + index
        if text[at - 1 : at] != "\\":
            return [*go_split_tags(text[at + 1 :]), text[:at]]
        text = text[: at - 1] + text[at:]
        offset += index
    return [text]


def go_combine_tags(*parts: str) -> list[str]:
    return [tag for part in parts for tag in go_split_tags(part)]


def go_metadata(config: Mapping[str, Any], port: str) -> tuple[dict[str, str], set[str]]:
    """``serviceMetaData``: env vars, then labels (versions differ on which wins when both set
    a key; these tests never set one twice); ``SERVICE_`` keys lower-cased; a key whose first
    part is a number belongs to that port and wins over the generic key."""
    merged: dict[str, str] = {}
    for entry in config.get("Env") or []:
        key, _, value = entry.partition("=")
        merged[key] = value
    merged.update(config.get("Labels") or {})
    metadata: dict[str, str] = {}
    from_port: set[str] = set()
    for raw, value in merged.items():
        if not raw.startswith("SERVICE_"):
            continue
        key = raw[len("SERVICE_") :].lower()
        if key in from_port:
            continue
        head, sep, rest = key.partition("_")
        if _ATOI.fullmatch(head) and sep:
            if head != port:
                continue
            metadata[rest] = value
            from_port.add(rest)
        else:
            metadata[key] = value
    return metadata, from_port


def go_check(attrs: Mapping[str, str], ip: str, port: int) -> dict[str, Any] | None:
    """``buildCheck`` for the HTTP(S), script, TTL and TCP checks, in its order."""
    check: dict[str, Any] = {}
    if attrs.get("check_initial_status"):
        check["Status"] = attrs["check_initial_status"]
    if attrs.get("check_http") or attrs.get("check_https"):
        scheme = "http" if attrs.get("check_http") else "https"
        check["HTTP"] = f"{scheme}://{ip}:{port}{attrs[f'check_{scheme}']}"
        if attrs.get("check_timeout"):
            check["Timeout"] = attrs["check_timeout"]
    elif attrs.get("check_script"):
        script = attrs["check_script"].replace("$SERVICE_IP", ip)
        check["Args"] = [script.replace("$SERVICE_PORT", str(port))]
    elif attrs.get("check_ttl"):
        check["TTL"] = attrs["check_ttl"]
    elif attrs.get("check_tcp"):
        check["TCP"] = f"{ip}:{port}"
        if attrs.get("check_timeout"):
            check["Timeout"] = attrs["check_timeout"]
    else:
        return None
    if "Args" in check or "HTTP" in check or "TCP" in check:
        check["Interval"] = attrs.get("check_interval") or DEFAULT_INTERVAL
    if attrs.get("check_deregister_after"):
        check["DeregisterCriticalServiceAfter"] = attrs["check_deregister_after"]
    return check


def go_registrations(
    container: Mapping[str, Any], hostname: str, host_ip: str = "", force_tags: str = ""
) -> list[dict[str, Any]]:
    """The ``AgentServiceRegistration`` bodies the Go original sends for an inspected
    container (``host_ip``: its ``-ip``; ``force_tags``: its ``-tags``)."""
    config = container["Config"]
    settings = container["NetworkSettings"]
    ports: dict[str, tuple[str, str]] = {}
    for port in config.get("ExposedPorts") or {}:
        ports[port] = (port.split("/")[0], "0.0.0.0")
    for port, published in (settings.get("Ports") or {}).items():
        binding = published[0] if published else {}
        ports[port] = (binding.get("HostPort", ""), binding.get("HostIp", "") or "0.0.0.0")
    published_ports = {port: hp for port, hp in ports.items() if hp[0]}
    is_group = len(published_ports) > 1

    bodies = []
    for port, (host_port, binding_ip) in published_ports.items():
        exposed, _, protocol = port.partition("/")
        metadata, from_port = go_metadata(config, exposed)
        if metadata.get("ignore"):
            continue
        name = metadata.get("name") or config["Image"].rsplit("/", 1)[-1].split(":")[0]
        if is_group and "name" not in from_port:
            name += f"-{exposed}"
        ip = host_ip or binding_ip
        service_id = f"{hostname}:{container['Name'][1:]}:{exposed}"
        extra = ["udp"] if protocol == "udp" else []
        tags = go_combine_tags(metadata.get("tags", ""), force_tags, *extra)
        if protocol == "udp":
            service_id += ":udp"
        service_id = metadata.get("id") or service_id
        attrs = {k: v for k, v in metadata.items() if k not in ("id", "tags", "name")}
        body: dict[str, Any] = {"ID": service_id, "Name": name, "Port": int(host_port)}
        if tags:
            body["Tags"] = tags
        body["Address"] = ip
        body["Check"] = go_check(attrs, ip, int(host_port))  # a nil *AgentServiceCheck: null
        if attrs:
            body["Meta"] = attrs
        bodies.append(body)
    return bodies
