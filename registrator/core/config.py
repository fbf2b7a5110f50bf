"""Every option, parsed once into frozen values that the rest of the program reads."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlsplit

from registrator.core.flapping import DEFAULT_HOLD

if TYPE_CHECKING:
    from registrator.core.tag_template import TagTemplate

DEFAULT_CONSUL_HOST = "127.0.0.1"
DEFAULT_CONSUL_PORT = 8500
DEFAULT_CONSUL_TLS_PORT = 8501
# -retry-attempts not given: wait for the agent as long as it takes (one warning, backoff).
RETRY_WAIT = -2
DOCKER_SOCKET_IN_CONTAINER = "/tmp/docker.sock"
DOCKER_SOCKET_DEFAULT = "/var/run/docker.sock"
# The ECS agent's introspection API, on the instance's loopback (since agent PR #2588, 2020).
DEFAULT_ECS_AGENT_URI = "http://127.0.0.1:51678"


class ConfigError(ValueError):
    """A bad option or argument: the CLI prints it and a hint line, and exits 2."""


class ConsulEndpoint(NamedTuple):
    """Where the local agent answers, from the registry URI."""

    scheme: str = "http"
    host: str = "127.0.0.1"
    port: int = 8500
    socket_path: str = ""
    ca_file: str = ""  # a CA bundle file, or a directory of CA certificates (CONSUL_CAPATH)
    cert_file: str = ""
    key_file: str = ""
    verify: bool = True

    def __str__(self) -> str:
        if self.socket_path:
            return f"unix://{self.socket_path}"
        return f"{self.scheme}://{self.host}:{self.port}"


class Config(NamedTuple):
    """All of registrator's settings; ``token`` is never printed (see ``__repr__``)."""

    consul: ConsulEndpoint = ConsulEndpoint()
    token: str = ""
    docker_host: str = ""
    hostname: str = ""
    ip: str = ""
    internal: bool = False
    explicit: bool = False
    force_tags: tuple[str, ...] = ()
    tags_template: TagTemplate | None = None  # -tags with {{ }}: evaluated per container
    use_ip_from_label: str = ""
    deregister: str = "always"
    cleanup: bool = False
    adopt: bool = False
    resync: float = 0.0
    retry_attempts: int = RETRY_WAIT
    retry_interval_ms: int = 2000
    ttl: int = 0
    ttl_refresh: int = 0
    allow_script_checks: bool = False
    dry_run: bool = False
    deregister_on_shutdown: bool = False
    agent_poll: float = 2.0
    consul_timeout: float = 5.0
    workers: int = 4
    agent_writes: int = 8
    log_level: str = "INFO"
    log_format: str = "text"
    require_healthy: bool = False
    health_sync: bool = False
    drain: bool = False
    drain_grace: float = 15.0
    flap_hold: float = DEFAULT_HOLD
    metrics_addr: str = ""
    health_threshold: float = 60.0
    plan_json: bool = False
    explain_json: bool = False
    explain_daemon: str = ""  # explain -daemon: the daemon's -metrics-addr
    explain_containers: tuple[str, ...] = ()  # explain's arguments after the URI
    ecs: bool = False
    ecs_agent_uri: str = DEFAULT_ECS_AGENT_URI

    def __repr__(self) -> str:
        shown = (
            f"{name}={value!r}"
            for name, value in zip(self._fields, self, strict=True)
            if name != "token"
        )
        return f"Config({', '.join(shown)})"


def parse_registry_uri(uri: str, env: Mapping[str, str]) -> ConsulEndpoint:
    """``consul://host:port``, ``consul-tls://host:port``, ``consul-unix:///path``; an empty
    host means ``CONSUL_HTTP_ADDR`` or 127.0.0.1, as Consul's own clients default; a missing
    port means 8500, or 8501 with TLS."""
    parts = urlsplit(uri)
    if parts.scheme == "consul-unix":
        path = (parts.netloc + parts.path) if parts.netloc else parts.path
        if not path:
            raise ConfigError(f"registry URI {uri!r}: consul-unix needs a socket path")
        return ConsulEndpoint(scheme="http", host="", port=0, socket_path=path)
    if parts.scheme in ("consul", "consul-tls") and not uri.startswith(f"{parts.scheme}://"):
        fixed = f"{parts.scheme}://{uri.split(':', 1)[1].lstrip('/')}"
        raise ConfigError(f"registry URI {uri!r}: missing '//'; did you mean {fixed}?")
    if parts.scheme not in ("consul", "consul-tls"):
        guess = f"; did you mean consul://{uri}?" if "://" not in uri else ""
        raise ConfigError(
            f"unrecognized registry backend {parts.scheme or uri!r}: "
            f"use consul://, consul-tls:// or consul-unix://{guess}"
        )
    tls = parts.scheme == "consul-tls"
    address = parts.netloc or env.get("CONSUL_HTTP_ADDR", "") or DEFAULT_CONSUL_HOST
    if "://" in address:  # CONSUL_HTTP_ADDR may carry a scheme
        address = address.split("://", 1)[1]
    host, _, port_text = address.rpartition(":") if ":" in address else (address, "", "")
    host = host.strip("[]") or "127.0.0.1"
    default_port = DEFAULT_CONSUL_TLS_PORT if tls else DEFAULT_CONSUL_PORT
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise ConfigError(f"registry URI {uri!r}: port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"registry URI {uri!r}: port {port} out of range")
    if parts.path not in ("", "/"):
        raise ConfigError(f"registry URI {uri!r}: unexpected path {parts.path!r}")
    if not tls:
        return ConsulEndpoint(scheme="http", host=host, port=port)
    return tls_endpoint(host, port, env)


def parse_ecs_agent_uri(uri: str) -> tuple[str, int]:
    """``http://host[:port]`` -> (host, port). The introspection API speaks plain HTTP on the
    instance; anything else (a path, a query, credentials, https) is a mistake worth saying."""
    parts = urlsplit(uri)
    usage = "use http://HOST[:PORT], e.g. " + DEFAULT_ECS_AGENT_URI
    if parts.scheme != "http":
        raise ConfigError(f"-ecs-agent-uri {uri!r}: {usage}")
    try:
        port = 80 if parts.port is None else parts.port
    except ValueError:
        port = 0
    if not port:
        raise ConfigError(f"-ecs-agent-uri {uri!r}: bad port; {usage}")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise ConfigError(f"-ecs-agent-uri {uri!r}: {usage}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"-ecs-agent-uri {uri!r}: unexpected path or query; {usage}")
    return parts.hostname, port


def tls_endpoint(host: str, port: int, env: Mapping[str, str]) -> ConsulEndpoint:
    """Consul's client variables for TLS: a CA (file or directory), a client certificate
    and key (both or neither), and CONSUL_HTTP_SSL_VERIFY=false to skip verification."""
    ca_file = env.get("CONSUL_CACERT", "") or env.get("CONSUL_CAPATH", "")
    cert_file = env.get("CONSUL_CLIENT_CERT", "")
    key_file = env.get("CONSUL_CLIENT_KEY", "")
    if bool(cert_file) != bool(key_file):
        raise ConfigError("both CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY must be set, or neither")
    for name, path in (("CA", ca_file), ("client certificate", cert_file), ("key", key_file)):
        if path and not os.path.exists(path):
            raise ConfigError(f"TLS {name} {path!r} does not exist")
    verify = env.get("CONSUL_HTTP_SSL_VERIFY", "true").strip().lower() not in ("false", "0", "f")
    return ConsulEndpoint("https", host, port, "", ca_file, cert_file, key_file, verify)


def acl_token(env: Mapping[str, str]) -> str:
    """The ACL token as Consul's clients find it: the file named by CONSUL_HTTP_TOKEN_FILE
    wins over CONSUL_HTTP_TOKEN when it holds a token."""
    path = env.get("CONSUL_HTTP_TOKEN_FILE", "")
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                from_file = handle.read().strip()
        except OSError as exc:
            raise ConfigError(f"CONSUL_HTTP_TOKEN_FILE {path!r}: {exc.strerror}") from None
        if from_file:
            return from_file
    return env.get("CONSUL_HTTP_TOKEN", "").strip()


def docker_host(env: Mapping[str, str]) -> str:
    """DOCKER_HOST, else the socket the container deployment mounts, else the usual one."""
    if env.get("DOCKER_HOST"):
        return env["DOCKER_HOST"]
    if os.path.exists(DOCKER_SOCKET_IN_CONTAINER):
        return f"unix://{DOCKER_SOCKET_IN_CONTAINER}"
    return f"unix://{DOCKER_SOCKET_DEFAULT}"
