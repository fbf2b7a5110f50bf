"""Command line: ``registrator [flags] URI``, ``registrator plan|resync [flags] URI``,
``registrator explain [flags] URI [CONTAINER...]`` and ``registrator help [COMMAND]``. The flags themselves are in registrator/core/flags.py.

Bad usage prints the cause and one line saying where the usage is, and exits 2 for every
command; nothing below this module calls ``sys.exit``.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from types import FrameType

from registrator import __version__
from registrator.adapters.consul_agent import (
    ConsulAgent,
    ConsulError,
    ConsulRejected,
    agent_trouble,
)
from registrator.adapters.legacy import adopting
from registrator.adapters.logs import setup_logging
from registrator.adapters.systemd import Notifier
from registrator.core.config import (
    RETRY_WAIT,
    Config,
    ConfigError,
    acl_token,
    docker_host,
    parse_registry_uri,
)
from registrator.core.derive import DeriveOptions
from registrator.core.flags import (
    COMMANDS,
    UsageError,
    help_text,
    metrics_address,
    parse_args,
)

# The daemon's and the one-shot commands' modules (the Docker SDK among them) are imported
# when the command runs, after the agent answered, so that the first request goes sooner
# (benchmarks/README.md#why-the-code-is-as-it-is has the figures of these choices).

log = logging.getLogger("registrator")

EXIT_USAGE = 2


def parse_config(
    argv: Sequence[str], env: Mapping[str, str], hostname: str | None = None
) -> tuple[str, Config]:
    """argv (without the program name) -> (command, Config). Raises UsageError/ConfigError."""
    command, args = _command(argv)
    parsed = parse_args(command, args)
    containers: tuple[str, ...] = ()
    if command == "explain" and parsed.uris:
        containers = tuple(parsed.uris[1:])
        del parsed.uris[1:]
    if len(parsed.uris) != 1:
        if not parsed.uris:
            raise UsageError("missing required argument for registry URI")
        raise UsageError(
            f"extra unparsed arguments: {' '.join(parsed.uris[1:])} "
            "(one registry URI only; flags come before it)"
        )
    try:
        endpoint = parse_registry_uri(parsed.uris[0], env)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    config = Config(
        consul=endpoint,
        token=acl_token(env),
        docker_host=docker_host(env),
        hostname=hostname or socket.gethostname(),
        **parsed.values,  # type: ignore[arg-type]
    )._replace(explain_containers=containers)
    if (config.ttl == 0) != (config.ttl_refresh == 0):
        raise UsageError("-ttl and -ttl-refresh must be specified together or not at all")
    if 0 < config.ttl <= config.ttl_refresh:
        raise UsageError("-ttl must be greater than -ttl-refresh")
    return command, config


def _command(argv: Sequence[str]) -> tuple[str, list[str]]:
    """The command (``run`` when none is named) and its arguments."""
    args = list(argv)
    if args and args[0] in COMMANDS:
        return args[0], args[1:]
    return "run", args


def derive_options(config: Config) -> DeriveOptions:
    host_ip = ""
    try:
        host_ip = socket.gethostbyname(config.hostname)
    except OSError:
        log.warning("cannot resolve hostname %s; ports on 0.0.0.0 keep no address", config.hostname)
    return DeriveOptions.from_config(config, host_ip)


WAIT_CAP_SECONDS = 30.0  # the longest pause between two pings while waiting for the agent
GIL_SWITCH_INTERVAL = 0.001  # seconds; Python's default is 0.005


def wait_for_consul(
    agent: ConsulAgent, config: Config, stop: threading.Event, notifier: Notifier
) -> bool:
    """Ping the agent until it answers. By default wait as long as it takes: one warning,
    then pings backing off from -retry-interval to 30 s, at DEBUG, while systemd's watchdog
    is fed. An explicit -retry-attempts keeps the original's meaning: N retries (-1: forever)
    -retry-interval apart, a warning each, then give up. Waiting for good tells systemd
    READY=1 with a waiting STATUS, so a Type=notify unit's start neither hangs nor times out."""
    waiting = config.retry_attempts == RETRY_WAIT
    attempt = 0
    delay = config.retry_interval_ms / 1000
    while True:
        try:
            leader = agent.ping()
        except ConsulError as exc:
            trouble = agent_trouble(config.consul, exc)
            if config.retry_attempts not in (RETRY_WAIT, -1) and attempt >= config.retry_attempts:
                log.error("%s; giving up after %d retries", trouble, attempt)
                return False
            attempt += 1
            if not waiting:
                state = "refused" if isinstance(exc, ConsulRejected) else "unreachable"
                log.warning(
                    "Consul agent at %s %s (%s); retry %d in %dms",
                    config.consul, state, exc, attempt, config.retry_interval_ms,
                )  # fmt: skip
            elif attempt == 1:
                log.warning("%s; waiting for it (retrying until it answers)", trouble)
            else:
                log.debug("Consul agent at %s: still no answer (%s); next try in %.1fs",
                          config.consul, exc, delay)  # fmt: skip
            if attempt == 1 and config.retry_attempts in (RETRY_WAIT, -1):
                notifier.ready(f"waiting for the Consul agent at {config.consul}")
            if _pause(stop, delay, notifier):
                return False
            if waiting:
                delay = min(delay * 2, max(WAIT_CAP_SECONDS, config.retry_interval_ms / 1000))
            continue
        if attempt and waiting:
            log.info("Consul agent at %s answers after %d retries; registering",
                     config.consul, attempt)  # fmt: skip
        else:
            log.info("Consul agent at %s answers (leader %s)", config.consul, leader or "none")
        return True


def _pause(stop: threading.Event, seconds: float, notifier: Notifier) -> bool:
    """Wait ``seconds`` (True when stopped meanwhile), feeding systemd's watchdog."""
    slice_ = notifier.watchdog_interval or seconds
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if stop.wait(min(left, slice_)):
            return True
        notifier.watchdog()
    return stop.is_set()


def _skip_charset_detection() -> None:
    """requests (under the Docker SDK) imports a character-set detector to guess the encoding
    of answers that name none. Docker answers JSON, which requests decodes without it (with
    no detector it assumes UTF-8); loading it is slow and large (it loads every CJK codec).
    Left out unless something imported it before registrator."""
    sys.modules.setdefault("charset_normalizer", None)  # type: ignore[arg-type]
    sys.modules.setdefault("chardet", None)  # type: ignore[arg-type]
    warnings.filterwarnings("ignore", "Unable to find acceptable character detection dependency")


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _skip_charset_detection()
    if argv and argv[0] == "help":
        topic = argv[1] if len(argv) > 1 else "run"
        if topic not in COMMANDS or len(argv) > 2:
            return usage_error(
                "run", f"no help for {' '.join(argv[1:])!r} (commands: plan, resync, explain)"
            )
        print(help_text(topic), end="")
        return 0
    command, args = _command(argv)
    try:
        wants = parse_args(command, args).wants
        if wants == "help":
            print(help_text(command), end="")
            return 0
        if wants == "version":
            print(f"registrator {__version__}")
            return 0
        command, config = parse_config(argv, os.environ)
    except (UsageError, ConfigError) as exc:
        return usage_error(command, str(exc))
    setup_logging(config.log_level, config.log_format)
    if command == "run":
        return run_daemon(config)
    agent = _make_agent(config)
    if command == "explain":
        from registrator.app.explain import run_explain

        return run_explain(config, derive_options(config), agent, config.explain_containers)
    from registrator.app.oneshot import run_plan, run_resync

    if command == "plan":
        return run_plan(config, derive_options(config), agent, as_json=config.plan_json)
    return run_resync(config, derive_options(config), agent)


def usage_error(command: str, message: str) -> int:
    """The cause on one line, then where the usage is: exit 2, for every command."""
    prog = "registrator" if command == "run" else f"registrator {command}"
    print(f"{prog}: {message}\nrun '{prog} -h' for usage", file=sys.stderr)
    return EXIT_USAGE


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
    notifier = Notifier(os.environ)
    if config.dry_run:
        log.info("dry run: nothing is written to any registry")
    else:
        agent = _make_agent(config)
        if not wait_for_consul(agent, config, stop, notifier):
            return 0 if stop.is_set() else 1
    _import_the_daemon()
    return _serve(config, agent, notifier, stop)


def _import_the_daemon() -> None:
    """The daemon's modules (the Docker SDK, requests, urllib3) make objects that live as
    long as the process: they are imported with the collector off, then frozen, so that no
    collection walks them again (benchmarks/README.md: what each step saved)."""
    gc.disable()
    import registrator.adapters.metrics
    import registrator.app.daemon  # noqa: F401

    gc.freeze()
    gc.enable()


def _serve(
    config: Config, agent: ConsulAgent | None, notifier: Notifier, stop: threading.Event
) -> int:
    """Wire the parts together, run until ``stop``, then stop them."""
    from registrator.adapters.docker_source import DockerSource
    from registrator.adapters.metrics import Metrics, MetricsServer, PrometheusMetrics
    from registrator.app.daemon import Daemon
    from registrator.sync.agent_sync import AgentSync
    from registrator.sync.processing import ContainerProcessor
    from registrator.sync.records import Records

    # A thread that waits for the GIL gets it within 1 ms instead of 5: a full comparison
    # with the agent (hundreds of services read and compared) would otherwise hold an
    # event's worker back (benchmarks/README.md, "Why the code is as it is").
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
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
    records = Records(keep_assessments=server is not None)  # for /containers only
    placement = None
    if config.ecs:  # its modules (the ECS agent's client) are imported only then: memory
        from registrator.sync.ecs_placement import EcsPlacement

        placement = EcsPlacement(config.ecs_agent_uri, metrics, records)
    agent_sync = AgentSync(
        adopting(agent, config.adopt),
        owner=config.hostname,
        cleanup=config.cleanup,
        metrics=metrics,
        max_writes=config.agent_writes,
        hold_stale=records.held if placement is not None else None,
        poll=config.agent_poll,
    )
    processor = ContainerProcessor(derive_options(config), config.deregister, placement)
    docker = lambda: DockerSource(os.environ, config.docker_host)  # noqa: E731
    daemon = Daemon(config, processor, agent_sync, docker, notifier, records)
    if server is not None:
        server.containers = daemon.containers_view
    daemon.start()
    stop.wait()
    daemon.stop()
    if server is not None:
        server.stop()
    log.info("stopped")
    return 0
