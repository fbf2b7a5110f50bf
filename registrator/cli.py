"""Command line: ``registrator [run] [options] <uri>`` and ``registrator resync [options] <uri>``.

Flags keep the original's single-dash spelling (``-ip``, ``-resync 30``, ``-cleanup``,
``-internal=false``); ``--double-dash`` works too. Bad usage prints a message and the usage
and exits 2; nothing below this module calls ``sys.exit``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Mapping, Sequence
from types import FrameType

from registrator import __version__
from registrator.config import (
    Config,
    ConfigError,
    acl_token,
    docker_host,
    parse_registry_uri,
)
from registrator.consul_agent import ConsulAgent, ConsulError, ConsulRejected
from registrator.daemon import Daemon
from registrator.derive import DeriveOptions, split_tags
from registrator.docker_source import DockerSource
from registrator.logs import setup_logging
from registrator.metrics import Metrics, MetricsServer
from registrator.oneshot import EXIT_ERROR, run_plan, run_resync
from registrator.reconcile import Reconciler
from registrator.systemd import Notifier

log = logging.getLogger("registrator")

COMMANDS = ("run", "resync", "plan")
BOOL_FLAGS = (
    "internal",
    "explicit",
    "cleanup",
    "dry-run",
    "allow-script-checks",
    "deregister-on-shutdown",
    "require-healthy",
    "drain",
)


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser(command: str) -> _Parser:
    parser = _Parser(
        prog=f"registrator {command}" if command != "run" else "registrator",
        description=(
            "Keep the local Consul agent in step with this host's Docker containers."
            if command == "run"
            else "Make the agent match Docker once, print what changed, and exit."
        ),
        allow_abbrev=False,
        add_help=False,
    )

    def flag(name: str, **kwargs: object) -> None:
        parser.add_argument(f"-{name}", f"--{name}", **kwargs)  # type: ignore[arg-type]

    parser.add_argument("-h", "-help", "--help", action="help", help="show this help and exit")
    parser.add_argument(
        "-version", "--version", action="version", version=f"registrator {__version__}"
    )
    flag(
        "ip",
        default="",
        metavar="IP",
        help="IP for ports mapped to the host (overrides the detected one)",
    )
    flag(
        "internal",
        action="store_true",
        help="use the container IP and exposed ports instead of published ones",
    )
    flag("explicit", action="store_true", help="only register containers that set SERVICE_NAME")
    flag("tags", default="", metavar="TAGS", help="comma-separated tags appended to every service")
    flag(
        "useIpFromLabel",
        dest="use_ip_from_label",
        default="",
        metavar="LABEL",
        help="use the IP in this container label as the service address",
    )
    flag(
        "deregister",
        default="always",
        metavar="MODE",
        help='"always" (default) or "on-success": deregister at exit only if the exit code is 0 or a signal',
    )
    flag(
        "cleanup",
        action="store_true",
        help="remove services this host's registrator owns whose container is gone",
    )
    flag(
        "resync",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="re-list Docker every SECONDS (0: never); writes only what differs",
    )
    flag(
        "retry-attempts",
        dest="retry_attempts",
        type=int,
        default=0,
        metavar="N",
        help="at start, retries while Consul is unreachable (-1: forever)",
    )
    flag(
        "retry-interval",
        dest="retry_interval",
        type=int,
        default=2000,
        metavar="MS",
        help="milliseconds between those retries (default 2000)",
    )
    flag(
        "ttl",
        type=int,
        default=0,
        metavar="SECONDS",
        help="accepted for compatibility; no effect with Consul",
    )
    flag(
        "ttl-refresh",
        dest="ttl_refresh",
        type=int,
        default=0,
        metavar="SECONDS",
        help="accepted for compatibility; no effect with Consul",
    )
    flag(
        "dry-run",
        dest="dry_run",
        action="store_true",
        help="follow Docker and log what would be registered; touch no registry",
    )
    flag(
        "allow-script-checks",
        dest="allow_script_checks",
        action="store_true",
        help="allow SERVICE_CHECK_SCRIPT/CMD (the agent then runs commands on this host)",
    )
    flag(
        "deregister-on-shutdown",
        dest="deregister_on_shutdown",
        action="store_true",
        help="deregister this process's services when it stops (default: leave them)",
    )
    flag(
        "agent-poll",
        dest="agent_poll",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how often the agent is compared with Docker's state (one read)",
    )
    flag(
        "consul-timeout",
        dest="consul_timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="timeout of one request to the agent",
    )
    flag("workers", type=int, default=8, metavar="N", help="containers inspected in parallel")
    flag(
        "require-healthy",
        dest="require_healthy",
        action="store_true",
        help="register containers that have a Docker HEALTHCHECK only while healthy",
    )
    flag(
        "drain",
        action="store_true",
        help="deregister at the stop signal (docker stop/kill), not at exit",
    )
    flag(
        "drain-grace",
        dest="drain_grace",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="a container still running this long after the signal is registered again",
    )
    flag(
        "metrics-addr",
        dest="metrics_addr",
        default="",
        metavar="HOST:PORT",
        help="serve Prometheus /metrics and /healthz here (e.g. 127.0.0.1:9102)",
    )
    flag(
        "healthz-threshold",
        dest="health_threshold",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="/healthz fails once Docker or Consul is unreachable this long",
    )
    flag("log-format", dest="log_format", default="text", metavar="FORMAT", help="text or json")
    flag(
        "log-level",
        dest="log_level",
        default="INFO",
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING, ERROR",
    )
    if command == "plan":
        parser.add_argument(
            "-json", "--json", dest="plan_json", action="store_true", help="print JSON"
        )
    parser.add_argument(
        "uri",
        nargs="*",
        help="registry URI: consul://host:port, consul-tls://, consul-unix:///path",
    )
    for name in BOOL_FLAGS:
        dest = name.replace("-", "_")
        parser.add_argument(f"--no-{name}", dest=dest, action="store_false", help=argparse.SUPPRESS)
    return parser


def _normalize_bools(argv: Sequence[str]) -> list[str]:
    """Go's flag package accepts ``-cleanup=false``; argparse needs ``--no-cleanup``."""
    out: list[str] = []
    for arg in argv:
        name, sep, value = arg.lstrip("-").partition("=")
        if arg.startswith("-") and sep and name in BOOL_FLAGS:
            lowered = value.lower()
            if lowered in ("true", "1", "t"):
                out.append(f"--{name}")
                continue
            if lowered in ("false", "0", "f"):
                out.append(f"--no-{name}")
                continue
            raise UsageError(f"invalid boolean value {value!r} for -{name}")
        out.append(arg)
    return out


def parse_config(
    argv: Sequence[str], env: Mapping[str, str], hostname: str | None = None
) -> tuple[str, Config]:
    """argv (without the program name) -> (command, Config). Raises UsageError/ConfigError."""
    args_list = list(argv)
    command = "run"
    if args_list and args_list[0] in COMMANDS:
        command = args_list.pop(0)
    args = build_parser(command).parse_args(_normalize_bools(args_list))

    if len(args.uri) != 1:
        if not args.uri:
            raise UsageError("missing required argument for registry URI")
        raise UsageError(
            f"extra unparsed arguments: {' '.join(args.uri[1:])} "
            "(options should come before the registry URI argument)"
        )
    if (args.ttl == 0) != (args.ttl_refresh == 0):
        raise UsageError("-ttl and -ttl-refresh must be specified together or not at all")
    if args.ttl > 0 and args.ttl <= args.ttl_refresh:
        raise UsageError("-ttl must be greater than -ttl-refresh")
    if args.retry_interval <= 0:
        raise UsageError("-retry-interval must be greater than 0")
    if args.retry_attempts < -1:
        raise UsageError("-retry-attempts must be -1 (forever) or more")
    if args.deregister not in ("always", "on-success"):
        raise UsageError('-deregister must be "always" or "on-success"')
    if args.resync < 0:
        raise UsageError("-resync must be 0 (off) or a number of seconds")
    if args.agent_poll <= 0 or args.consul_timeout <= 0:
        raise UsageError("-agent-poll and -consul-timeout must be greater than 0")
    if args.workers < 1:
        raise UsageError("-workers must be at least 1")
    if args.log_format not in ("text", "json"):
        raise UsageError(f"-log-format {args.log_format!r}: use text or json")
    if args.drain_grace <= 0 or args.health_threshold <= 0:
        raise UsageError("-drain-grace and -healthz-threshold must be greater than 0")
    if args.metrics_addr:
        metrics_address(args.metrics_addr)
    level = str(args.log_level).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise UsageError(f"-log-level {args.log_level!r}: use DEBUG, INFO, WARNING or ERROR")

    try:
        endpoint = parse_registry_uri(args.uri[0], env)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    return command, Config(
        consul=endpoint,
        token=acl_token(env),
        docker_host=docker_host(env),
        hostname=hostname or socket.gethostname(),
        ip=args.ip,
        internal=args.internal,
        explicit=args.explicit,
        force_tags=tuple(split_tags(args.tags)),
        use_ip_from_label=args.use_ip_from_label,
        deregister=args.deregister,
        cleanup=args.cleanup,
        resync=args.resync,
        retry_attempts=args.retry_attempts,
        retry_interval_ms=args.retry_interval,
        ttl=args.ttl,
        ttl_refresh=args.ttl_refresh,
        allow_script_checks=args.allow_script_checks,
        dry_run=args.dry_run,
        deregister_on_shutdown=args.deregister_on_shutdown,
        agent_poll=args.agent_poll,
        consul_timeout=args.consul_timeout,
        workers=args.workers,
        log_level=level,
        plan_json=getattr(args, "plan_json", False),
        log_format=args.log_format,
        require_healthy=args.require_healthy,
        drain=args.drain,
        drain_grace=args.drain_grace,
        metrics_addr=args.metrics_addr,
        health_threshold=args.health_threshold,
    )


def metrics_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``:PORT`` (loopback: metrics are not for the whole network)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageError(f"-metrics-addr {text!r}: use HOST:PORT, e.g. 127.0.0.1:9102")
    return host.strip("[]") or "127.0.0.1", int(port)


def derive_options(config: Config) -> DeriveOptions:
    host_ip = ""
    try:
        host_ip = socket.gethostbyname(config.hostname)
    except OSError:
        log.warning("cannot resolve hostname %s; ports on 0.0.0.0 keep no address", config.hostname)
    return DeriveOptions(
        hostname=config.hostname,
        host_ip=host_ip,
        ip=config.ip,
        internal=config.internal,
        explicit=config.explicit,
        force_tags=config.force_tags,
        use_ip_from_label=config.use_ip_from_label,
        allow_script_checks=config.allow_script_checks,
        require_healthy=config.require_healthy,
    )


def wait_for_consul(agent: ConsulAgent, config: Config, stop: threading.Event) -> bool:
    """The original's start-up ping: -retry-attempts times (-1 forever), -retry-interval apart."""
    attempt = 0
    while True:
        try:
            leader = agent.ping()
            log.info("Consul agent at %s answers (leader %s)", config.consul, leader or "none")
            return True
        except ConsulError as exc:
            state = "refused" if isinstance(exc, ConsulRejected) else "unreachable"
            if config.retry_attempts != -1 and attempt >= config.retry_attempts:
                log.error("Consul agent at %s %s: %s", config.consul, state, exc)
                return False
            attempt += 1
            log.warning(
                "Consul agent at %s %s (%s); retry %d in %dms",
                config.consul,
                state,
                exc,
                attempt,
                config.retry_interval_ms,
            )
            if stop.wait(config.retry_interval_ms / 1000):
                return False


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        command, config = parse_config(argv, os.environ)
    except (UsageError, ConfigError) as exc:
        command = argv[0] if argv and argv[0] in COMMANDS else "run"
        prog = "registrator" if command == "run" else f"registrator {command}"
        print(f"{prog}: {exc}\n", file=sys.stderr)
        build_parser(command).print_usage(sys.stderr)
        return EXIT_ERROR if command == "plan" else 2  # plan: 2 means "differences"
    setup_logging(config.log_level, config.log_format)
    if command == "run":
        return run_daemon(config)
    agent = None if config.dry_run else _make_agent(config)
    if command == "plan":
        return run_plan(config, derive_options(config), agent, as_json=config.plan_json)
    return run_resync(config, derive_options(config), agent)


def _make_agent(config: Config) -> ConsulAgent:
    return ConsulAgent(config.consul, token=config.token, timeout=config.consul_timeout)


def run_daemon(config: Config) -> int:
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    log.info(
        "registrator %s starting (host %s, Docker %s)",
        __version__,
        config.hostname,
        config.docker_host,
    )
    agent: ConsulAgent | None = None
    if config.dry_run:
        log.info("dry run: nothing is written to any registry")
    else:
        agent = _make_agent(config)
        if not wait_for_consul(agent, config, stop):
            return 0 if stop.is_set() else 1
    metrics = Metrics()
    server = None
    if config.metrics_addr:
        host, port = metrics_address(config.metrics_addr)
        try:
            server = MetricsServer(metrics, host, port, config.health_threshold)
        except OSError as exc:
            log.error("cannot serve metrics on %s: %s", config.metrics_addr, exc.strerror)
            return 1
        server.start()
    reconciler = Reconciler(agent, owner=config.hostname, cleanup=config.cleanup, metrics=metrics)
    daemon = Daemon(
        config,
        derive_options(config),
        reconciler,
        lambda: DockerSource(os.environ, config.docker_host),
        Notifier(os.environ),
    )
    daemon.start()
    stop.wait()
    daemon.stop()
    if server is not None:
        server.stop()
    log.info("stopped")
    return 0
