"""Builders of ``docker inspect`` dicts shaped as Docker 20.10+ returns them, for pure tests."""

from __future__ import annotations

from typing import Any


def inspect(
    *,
    name: str = "app.0",
    image: str = "example/app:1.0",
    env: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    published: dict[str, str | None] | None = None,
    exposed: list[str] | None = None,
    host_ip: str = "0.0.0.0",
    network_mode: str = "default",
    ip: str = "172.17.0.5",
    networks: dict[str, str] | None = None,
    running: bool = True,
    exit_code: int = 0,
    container_id: str = "0123456789ab" + "c" * 52,
) -> dict[str, Any]:
    """``published`` maps "80/tcp" -> host port ("" or None: exposed but not published)."""
    published = published or {}
    ports: dict[str, Any] = {}
    for port, host_port in published.items():
        ports[port] = (
            [
                {"HostIp": host_ip, "HostPort": host_port},
                {"HostIp": "::", "HostPort": host_port},
            ]
            if host_port
            else None
        )
    exposed_ports: dict[str, Any] = {p: {} for p in [*(exposed or []), *published]}
    if networks is None:
        networks = {"bridge": ip} if network_mode == "default" else {network_mode: ip}
    return {
        "Id": container_id,
        "Name": f"/{name}",
        "State": {"Running": running, "ExitCode": exit_code, "Status": "running"},
        "Config": {
            "Image": image,
            "Hostname": container_id[:12],
            "Env": [f"{k}={v}" for k, v in (env or {}).items()] + ["PATH=/bin"],
            "Labels": labels or {},
            "ExposedPorts": exposed_ports or None,
        },
        "HostConfig": {"NetworkMode": network_mode},
        "NetworkSettings": {
            "IPAddress": ip if network_mode == "default" else "",
            "Ports": ports if network_mode != "host" else {},
            "Networks": {
                net: {"IPAddress": addr, "NetworkID": "n" * 12} for net, addr in networks.items()
            },
        },
    }
