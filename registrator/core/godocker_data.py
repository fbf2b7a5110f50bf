"""Pure core: Docker's inspect answer (JSON) as go-dockerclient's ``*docker.Container``, the
data gliderlabs/registrator's ``-tags`` template sees.

Field names are go-dockerclient's (``.ID`` for ``Id``, ``.Config.CPUShares`` for
``CpuShares``, ``.NetworkSettings.Networks.<name>.IPAddress``, ``.HostConfig.DNS``...); a
field Docker left out is its Go zero value (``""``, ``0``, ``false``, an empty list or map,
nil for a pointer such as ``.Node``); times print as Go's (``2024-05-01 10:11:12.5 +0000
UTC``). Maps (``.Config.Labels``, ``.NetworkSettings.Ports``...) answer a missing key with
``<no value>``; a name that is neither a field nor in Docker's answer is an error. As in the
original, whose metadata pass writes the env vars into the labels map before the template
runs, ``.Config.Labels`` also holds each ``Env`` entry (the env var winning).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from registrator.core.gofmt import GoMap, GoNil, GoStruct

# GoName[=JSONName]:kind; kinds: s string, i int, b bool, t time, [s] []string, {s}
# map[string]string, {b} map[string]bool, set map[string]struct{}, T a struct, *T a
# pointer to one, [T] a slice of them, {T} a map of them, {[T]} a map of slices of them.
SCHEMA = {
    "Container": "ID=Id:s Created:t Path:s Args:[s] Config:*Config State:State Image:s "
    "Node:*SwarmNode NetworkSettings:*NetworkSettings SysInitPath:s ResolvConfPath:s "
    "HostnamePath:s HostsPath:s LogPath:s Name:s Driver:s Mounts:[Mount] Volumes:{s} "
    "VolumesRW:{b} HostConfig:*HostConfig ExecIDs:[s] GraphDriver:*GraphDriver "
    "RestartCount:i AppArmorProfile:s MountLabel:s ProcessLabel:s Platform:s SizeRw:i "
    "SizeRootFs:i",
    "Config": "Hostname:s Domainname:s User:s Memory:i MemorySwap:i MemoryReservation:i "
    "KernelMemory:i CPUShares=CpuShares:i CPUSet=Cpuset:s PortSpecs:[s] ExposedPorts:set "
    "PublishService:s StopSignal:s StopTimeout:i Env:[s] Cmd:[s] Shell:[s] "
    "Healthcheck:*HealthConfig DNS=Dns:[s] Image:s Volumes:set VolumeDriver:s WorkingDir:s "
    "MacAddress:s Entrypoint:[s] SecurityOpts=SecurityOpt:[s] OnBuild:[s] Mounts:[Mount] "
    "Labels:{s} AttachStdin:b AttachStdout:b AttachStderr:b ArgsEscaped:b Tty:b OpenStdin:b "
    "StdinOnce:b NetworkDisabled:b VolumesFrom:s",
    "State": "Status:s Running:b Paused:b Restarting:b OOMKilled:b RemovalInProgress:b Dead:b "
    "Pid:i ExitCode:i Error:s StartedAt:t FinishedAt:t Health:Health",
    "Health": "Status:s FailingStreak:i Log:[HealthCheck]",
    "HealthCheck": "Start:t End:t ExitCode:i Output:s",
    "HealthConfig": "Test:[s] Interval:i Timeout:i StartPeriod:i Retries:i",
    "NetworkSettings": "Networks:{ContainerNetwork} IPAddress:s IPPrefixLen:i MacAddress:s "
    "Gateway:s Bridge:s Ports:{[PortBinding]} NetworkID:s EndpointID:s SandboxKey:s "
    "GlobalIPv6Address:s GlobalIPv6PrefixLen:i IPv6Gateway:s LinkLocalIPv6Address:s "
    "LinkLocalIPv6PrefixLen:i",
    "ContainerNetwork": "Aliases:[s] MacAddress:s GlobalIPv6PrefixLen:i GlobalIPv6Address:s "
    "IPv6Gateway:s IPPrefixLen:i IPAddress:s Gateway:s EndpointID:s NetworkID:s",
    "PortBinding": "HostIP=HostIp:s HostPort:s",
    "Mount": "Name:s Source:s Destination:s Driver:s RW:b Mode:s",
    "GraphDriver": "Name:s Data:{s}",
    "SwarmNode": "ID:s IP:s Addr:s Name:s CPUs:i Memory:i Labels:{s}",
    "HostConfig": "Binds:[s] CapAdd:[s] CapDrop:[s] ContainerIDFile:s Privileged:b "
    "PortBindings:{[PortBinding]} Links:[s] PublishAllPorts:b DNS=Dns:[s] "
    "DNSOptions=DnsOptions:[s] DNSSearch=DnsSearch:[s] ExtraHosts:[s] VolumesFrom:[s] "
    "UsernsMode:s NetworkMode:s IpcMode:s PidMode:s UTSMode:s RestartPolicy:RestartPolicy "
    "LogConfig:LogConfig ReadonlyRootfs:b SecurityOpt:[s] Memory:i CPUShares=CpuShares:i "
    "AutoRemove:b Init:b Runtime:s",
    "RestartPolicy": "Name:s MaximumRetryCount:i",
    "LogConfig": "Type:s Config:{s}",
}
_FIELDS = {
    name: [
        (go, json or go, kind)
        for go, _, json, kind in (
            re.fullmatch(r"(\w+)(=(\w+))?:(.+)", spec).groups()  # type: ignore[union-attr]
            for spec in specs.split()
        )
    ]
    for name, specs in SCHEMA.items()
}
_TIME = re.compile(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d+)?Z")


def go_time(value: Any) -> str:
    """RFC 3339 in UTC as Go's Time.String prints it."""
    match = _TIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return "0001-01-01 00:00:00 +0000 UTC" if not value else str(value)
    fraction = (match.group(3) or "").rstrip("0").rstrip(".")
    return f"{match.group(1)} {match.group(2)}{fraction} +0000 UTC"


def _generic(value: Any) -> Any:
    """A JSON value Go would hold in an interface{}."""
    if isinstance(value, dict):
        return {k: _generic(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_generic(v) for v in value]
    return value


def _convert(value: Any, kind: str) -> Any:
    if kind in ("s", "i", "b"):
        zero = {"s": "", "i": 0, "b": False}[kind]
        return zero if value is None else value
    if kind == "t":
        return go_time(value)
    if kind == "[s]":
        return [str(v) for v in value or []]
    if kind in ("{s}", "{b}"):
        elem, zero = ("string", "") if kind == "{s}" else ("bool", False)
        return GoMap(dict(value or {}), elem, zero)
    if kind == "set":
        return GoMap({k: GoStruct("struct {}", {}) for k in value or {}}, "struct {}", None)
    if kind.startswith("*"):
        if value is None:
            return GoNil("*docker." + kind[1:])
        return _struct(kind[1:], value, pointer=True)
    if kind.startswith("[") and kind.endswith("]"):
        return [_struct(kind[1:-1], v) for v in value or []]
    if kind.startswith("{[") and kind.endswith("]}"):
        item = kind[2:-2]
        elem = f"[]docker.{item}"
        return GoMap({k: [_struct(item, b) for b in v or []] for k, v in (value or {}).items()},
                     elem, None)  # fmt: skip
    if kind.startswith("{"):
        item = kind[1:-1]
        converted = {k: _struct(item, v) for k, v in (value or {}).items()}
        return GoMap(converted, f"docker.{item}", None)
    return _struct(kind, value)


def _struct(name: str, value: Any, pointer: bool = False) -> GoStruct:
    source: Mapping[str, Any] = value if isinstance(value, Mapping) else {}
    fields: dict[str, Any] = {}
    known = set()
    for go, json_name, kind in _FIELDS[name]:
        fields[go] = _convert(source.get(json_name, source.get(go)), kind)
        known |= {json_name, go}
    for key, item in source.items():  # what Docker sends beyond go-dockerclient's fields
        if key not in known:
            fields[key] = _generic(item)
    return GoStruct(("*" if pointer else "") + "docker." + name, fields)


def go_container(inspect: Mapping[str, Any]) -> GoStruct:
    """The ``*docker.Container`` go-dockerclient decodes from ``inspect``."""
    container = _struct("Container", inspect, pointer=True)
    config = container.fields["Config"]
    if isinstance(config, GoStruct):
        labels = config.fields["Labels"]
        for entry in config.fields["Env"]:
            key, _, value = entry.partition("=")
            labels[key] = value
    return container
