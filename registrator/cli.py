"""Command line: ``registrator [run] [options] <uri>`` and ``registrator resync [options] <uri>``.

Flags keep the original's single-dash spelling (``-ip``, ``-resync 30``, ``-cleanup``,
``-internal=false``); ``--double-dash`` works too. Bad usage prints a message and the usage
and exits 2; nothing below this module calls ``sys.exit``.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import socket
import sys
import threading
import warnings
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import NamedTuple

from registrator import __version__
from registrator.config import (
    DEFAULT_ECS_AGENT_URI,
    Config,
    ConfigError,
    acl_token,
    docker_host,
    parse_ecs_agent_uri,
    parse_registry_uri,
)
from registrator.consul_agent import ConsulAgent, ConsulError, ConsulRejected
from registrator.derive import DeriveOptions, split_tags
from registrator.legacy import adopting
from registrator.logs import setup_logging

# The daemon's and the one-shot commands' modules (the Docker SDK among them) are imported
# when the command runs, after the agent answered: a fifth of the start-up comes sooner.

log = logging.getLogger("registrator")

COMMANDS = ("run", "resync", "plan")


class Flag(NamedTuple):
    """One option: ``-name`` and ``--name``; its type is its default's (a bool is a switch)."""

    name: str
    default: str | int | float | bool
    help: str
    metavar: str = ""
    dest: str = ""  # the Config field; default: the name with '-' as '_'

    @property
    def field(self) -> str:
        return self.dest or self.name.replace("-", "_")


FLAGS = (
    Flag("ip", "", "IP for ports mapped to the host (overrides the detected one)", "IP"),
    Flag("internal", False, "use the container IP and exposed ports instead of published ones"),
    Flag("explicit", False, "only register containers that set SERVICE_NAME"),
    Flag("tags", "", "comma-separated tags appended to every service", "TAGS", "force_tags"),
    Flag("useIpFromLabel", "", "use the IP in this container label as the service address",
         "LABEL", "use_ip_from_label"),
    Flag("deregister", "always", '"always" (default) or "on-success": deregister at exit only '
         "if the exit code is 0 or a signal", "MODE"),
    Flag("cleanup", False, "remove services this host's registrator owns whose container is gone"),
    Flag("adopt", False, "take over the services gliderlabs/registrator registered on this host: "
         "mark those a container wants; the others are stale owned ones"),
    Flag("resync", 0.0, "re-list Docker every SECONDS (0: never); writes only what differs",
         "SECONDS"),
    Flag("retry-attempts", 0, "at start, retries while Consul is unreachable (-1: forever)", "N"),
    Flag("retry-interval", 2000, "milliseconds between those retries (default 2000)", "MS",
         "retry_interval_ms"),
    Flag("ttl", 0, "accepted for compatibility; no effect with Consul", "SECONDS"),
    Flag("ttl-refresh", 0, "accepted for compatibility; no effect with Consul", "SECONDS"),
    Flag("dry-run", False, "follow Docker and log what would be registered; touch no registry"),
    Flag("allow-script-checks", False,
         "allow SERVICE_CHECK_SCRIPT/CMD (the agent then runs commands on this host)"),
    Flag("deregister-on-shutdown", False,
         "deregister this process's services when it stops (default: leave them)"),
    Flag("agent-poll", 2.0, "how often the agent is compared with Docker's state (one read)",
         "SECONDS"),
    Flag("consul-timeout", 5.0, "timeout of one request to the agent", "SECONDS"),
    Flag("workers", 4, "containers inspected in parallel", "N"),
    Flag("agent-writes", 8, "writes in flight to the agent at most (never two for one service)",
         "N"),
    Flag("require-healthy", False,
         "register containers that have a Docker HEALTHCHECK only while healthy"),
    Flag("health-sync", False,
         "a container's Docker HEALTHCHECK becomes a TTL check on each of its services"),
    Flag("drain", False, "deregister at the stop signal (docker stop/kill), not at exit"),
    Flag("drain-grace", 15.0,
         "a container still running this long after the signal is registered again", "SECONDS"),
    Flag("metrics-addr", "", "serve Prometheus /metrics and /healthz here (e.g. 127.0.0.1:9102)",
         "HOST:PORT"),
    Flag("healthz-threshold", 60.0,
         "/healthz fails once Docker, Consul or the ECS agent is unreachable this long",
         "SECONDS", "health_threshold"),
    Flag("ecs", False, "ECS: register awsvpc tasks at their ENI address (from the ECS agent) "
         "and add ecs_* Meta to ECS containers' services"),
    Flag("ecs-agent-uri", DEFAULT_ECS_AGENT_URI, "the ECS agent's introspection API", "URL"),
    Flag("log-format", "text", "text or json", "FORMAT"),
    Flag("log-level", "INFO", "DEBUG, INFO, WARNING, ERROR", "LEVEL"),
)  # fmt: skip
BOOL_FLAGS = tuple(f.name for f in FLAGS if isinstance(f.default, bool))


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
    parser.add_argument("-h", "-help", "--help", action="help", help="show this help and exit")
    parser.add_argument(
        "-version", "--version", action="version", version=f"registrator {__version__}"
    )
    for flag in FLAGS:
        names = (f"-{flag.name}", f"--{flag.name}")
        if isinstance(flag.default, bool):
            parser.add_argument(*names, dest=flag.field, action="store_true", help=flag.help)
            parser.add_argument(
                f"--no-{flag.name}", dest=flag.field, action="store_false", help=argparse.SUPPRESS
            )
        else:
            parser.add_argument(
                *names,
                dest=flag.field,
                type=type(flag.default),
                default=flag.default,
                metavar=flag.metavar,
                help=flag.help,
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
    if args.retry_interval_ms <= 0:
        raise UsageError("-retry-interval must be greater than 0")
    if args.retry_attempts < -1:
        raise UsageError("-retry-attempts must be -1 (forever) or more")
    if args.deregister not in ("always", "on-success"):
        raise UsageError('-deregister must be "always" or "on-success"')
    if args.resync < 0:
        raise UsageError("-resync must be 0 (off) or a number of seconds")
    if args.agent_poll <= 0 or args.consul_timeout <= 0:
        raise UsageError("-agent-poll and -consul-timeout must be greater than 0")
    if args.workers < 1 or args.agent_writes < 1:
        raise UsageError("-workers and -agent-writes must be at least 1")
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
        parse_ecs_agent_uri(args.ecs_agent_uri)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    values = {flag.field: getattr(args, flag.field) for flag in FLAGS}
    values["force_tags"] = tuple(split_tags(args.force_tags))
    values["log_level"] = level
    return command, Config(
        consul=endpoint,
        token=acl_token(env),
        docker_host=docker_host(env),
        hostname=hostname or socket.gethostname(),
        plan_json=getattr(args, "plan_json", False),
        **values,
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
    return DeriveOptions.from_config(config, host_ip)


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


def _skip_charset_detection() -> None:
    """requests (under the Docker SDK) imports a character-set detector to guess the encoding
    of answers that name none. Docker answers JSON, which requests decodes without it (with
    no detector it assumes UTF-8); loading it cost a sixth of the start-up and 3.5 MB (it
    loads every CJK codec). Left out unless something imported it before registrator."""
    sys.modules.setdefault("charset_normalizer", None)  # type: ignore[arg-type]
    sys.modules.setdefault("chardet", None)  # type: ignore[arg-type]
    warnings.filterwarnings("ignore", "Unable to find acceptable character detection dependency")


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _skip_charset_detection()
    try:
        command, config = parse_config(argv, os.environ)
    except (UsageError, ConfigError) as exc:
        command = argv[0] if argv and argv[0] in COMMANDS else "run"
        prog = "registrator" if command == "run" else f"registrator {command}"
        print(f"{prog}: {exc}\n", file=sys.stderr)
        build_parser(command).print_usage(sys.stderr)
        return 1 if command == "plan" else 2  # plan: 1 is an error, 2 means "differences"
    setup_logging(config.log_level, config.log_format)
    if command == "run":
        return run_daemon(config)
    from registrator.oneshot import run_plan, run_resync

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
    # The imports below (the Docker SDK, requests, urllib3) make objects that live as long as
    # the process. The collector ran 26 times during them and found 19 objects to free:
    # without it they take 78-83 ms instead of 86-89 (measured, six pairs). Once loaded,
    # everything is frozen, so no collection walks it again: a full one in a process of this
    # size cost 40-50 ms (measured), and a start-up sync of 300 containers triggered one.
    gc.disable()
    from registrator.daemon import Daemon
    from registrator.docker_source import DockerSource
    from registrator.ecs_placement import EcsPlacement
    from registrator.metrics import Metrics, MetricsServer, PrometheusMetrics
    from registrator.processing import ContainerProcessor
    from registrator.reconcile import Reconciler
    from registrator.systemd import Notifier

    gc.freeze()
    gc.enable()
    metrics = Metrics(ecs=config.ecs)
    server = None
    if config.metrics_addr:
        host, port = metrics_address(config.metrics_addr)
        metrics = served = PrometheusMetrics(ecs=config.ecs)
        try:
            server = MetricsServer(served, host, port, config.health_threshold)
        except OSError as exc:
            log.error("cannot serve metrics on %s: %s", config.metrics_addr, exc.strerror)
            return 1
        server.start()
    placement = EcsPlacement(config.ecs_agent_uri, metrics) if config.ecs else None
    reconciler = Reconciler(
        adopting(agent, config.adopt),
        owner=config.hostname,
        cleanup=config.cleanup,
        metrics=metrics,
        max_writes=config.agent_writes,
        hold_stale=placement.held if placement is not None else None,
    )
    daemon = Daemon(
        config,
        ContainerProcessor(derive_options(config), config.deregister, placement),
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
