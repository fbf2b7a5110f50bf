"""The flag table, the parsing of the command line and the help, in one place.

One table says, for every flag, its default, its help, how its value is checked and whether
it applies to the daemon only: ``plan`` and ``resync`` refuse those, so they never accept a
flag they would ignore. Flags keep the original's single-dash spelling (``-ip``, ``-resync
30``, ``-cleanup``, ``-internal=false``); ``--double-dash`` works too but is not shown, and
no flag is ever abbreviated. Every value is checked before anything runs; a bad one is a
``UsageError`` whose message names the flag, the value and what is expected.
"""

from __future__ import annotations

import ipaddress
import math
import textwrap
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple, TypeAlias

from registrator.core.config import DEFAULT_ECS_AGENT_URI, Config, ConfigError, parse_ecs_agent_uri
from registrator.core.container import split_tags

if TYPE_CHECKING:
    from registrator.core.tag_template import TagTemplate

COMMANDS = ("run", "resync", "plan", "explain")
Value: TypeAlias = "str | int | float | bool | tuple[str, ...] | TagTemplate | None"


class UsageError(Exception):
    """Bad usage: the CLI prints the message and one hint line, and exits 2."""


def _ip(text: str) -> str:
    if not text:  # -ip= : the default, as the original takes it
        return text
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ValueError("not an IP address (expected IPv4 or IPv6, e.g. 10.0.0.5)") from None
    return text


def _number(kind: type[int] | type[float], least: float, expected: str) -> Callable[[str], Value]:
    def check(text: str) -> Value:
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"not a number (expected {expected})") from None
        if not math.isfinite(value) or value < least:
            raise ValueError(f"out of range (expected {expected})")
        return value

    return check


def _choice(*allowed: str, fold: bool = False) -> Callable[[str], Value]:
    def check(text: str) -> Value:
        value = text.upper() if fold else text
        if value not in allowed:
            raise ValueError(f"expected {', '.join(allowed[:-1])} or {allowed[-1]}")
        return value

    return check


def metrics_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``:PORT`` (loopback: metrics are not for the whole network)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected HOST:PORT or :PORT, e.g. 127.0.0.1:9102")
    return host.strip("[]") or "127.0.0.1", int(port)


def _metrics(text: str) -> str:
    if text:  # -metrics-addr= : off, the default
        metrics_address(text)
    return text


def _ecs_uri(text: str) -> str:
    try:
        parse_ecs_agent_uri(text)
    except ConfigError:
        raise ValueError(f"expected http://HOST[:PORT], e.g. {DEFAULT_ECS_AGENT_URI}") from None
    return text


def _text(text: str) -> str:
    return text


def _tags(text: str) -> tuple[str, ...] | TagTemplate:
    """A comma list; with ``{{`` a Go template (gliderlabs/registrator v7.4), parsed now so
    that one which does not parse stops the start (TemplateError is a ValueError). The
    template modules are imported only then, for the memory they take."""
    from registrator.core.tag_template import TagTemplate, is_template

    if is_template(text):
        return TagTemplate(text)
    return tuple(split_tags(text))


SECONDS = "seconds greater than 0, e.g. 2.5"


class Flag(NamedTuple):
    """One option; its value is a switch when its default (Config's) is a bool, else
    ``check(text)``."""

    name: str
    help: str
    metavar: str = ""
    dest: str = ""  # the Config field; default: the name with '-' as '_'
    daemon_only: bool = False  # plan and resync refuse it
    check: Callable[[str], Value] = _text
    shown_default: str = ""  # the default as -h shows it, when not the value itself

    @property
    def field(self) -> str:
        return self.dest or self.name.replace("-", "_")

    @property
    def default(self) -> Value:
        """Config's default for the field: the one place defaults are written."""
        value: Value = Config._field_defaults[self.field]
        return value


FLAGS = (
    Flag("ip", "IP for ports mapped to the host (default: the host's address)", "IP",
         check=_ip),
    Flag("internal", "use the container IP and exposed ports instead of published ones"),
    Flag("explicit", "only register containers that set SERVICE_NAME"),
    Flag("tags", "comma-separated tags appended to every service; with {{ }} a Go template "
         "evaluated per container (docs/flags.md)", "TAGS", "force_tags",
         check=_tags),
    Flag("useIpFromLabel", "use the IP in this container label as the service address",
         "LABEL", "use_ip_from_label"),
    Flag("deregister", "always, or on-success: deregister at a container's exit only "
         "if its exit code is 0 or a signal", "MODE", daemon_only=True,
         check=_choice("always", "on-success")),
    Flag("cleanup", "remove services this host's registrator owns whose container is gone "
         "(plan and resync always do)"),
    Flag("adopt", "take over the services gliderlabs/registrator registered on this host: "
         "mark those a container wants; the others are stale owned ones"),
    Flag("resync", "re-list Docker every SECONDS (0: never); writes only what differs",
         "SECONDS", daemon_only=True, check=_number(float, 0, "0 for never, or seconds, e.g. 30")),
    Flag("retry-attempts", "at start, give up after N retries while the Consul agent does "
         "not answer, and exit 1; -1: retry forever, a warning each", "N", daemon_only=True,
         check=_number(int, -1, "-1 for forever, or 0 or more retries"),
         shown_default="wait for the agent: one warning, retries backing off to 30s"),
    Flag("retry-interval", "milliseconds between those retries", "MS", "retry_interval_ms",
         daemon_only=True, check=_number(int, 1, "milliseconds, at least 1")),
    Flag("ttl", "accepted for compatibility; no effect with Consul", "SECONDS",
         daemon_only=True, check=_number(int, 0, "0 or more seconds")),
    Flag("ttl-refresh", "accepted for compatibility; no effect with Consul", "SECONDS",
         daemon_only=True, check=_number(int, 0, "0 or more seconds")),
    Flag("dry-run", "follow Docker and log what would be registered; touch no registry",
         daemon_only=True),
    Flag("allow-script-checks", "allow SERVICE_CHECK_SCRIPT/CMD (the agent then runs commands on this host)"),
    Flag("deregister-on-shutdown", "deregister this process's services when it stops (default: leave them)",
         daemon_only=True),
    Flag("agent-poll", "how often the agent is compared with Docker's state (its services and checks)",
         "SECONDS", daemon_only=True, check=_number(float, 0.001, SECONDS)),
    Flag("consul-timeout", "timeout of one request to the agent", "SECONDS",
         check=_number(float, 0.001, SECONDS)),
    Flag("workers", "containers inspected in parallel", "N", check=_number(int, 1, "1 or more")),
    Flag("agent-writes", "writes in flight to the agent at most (never two for one service)",
         "N", check=_number(int, 1, "1 or more")),
    Flag("require-healthy", "register containers that have a Docker HEALTHCHECK only while healthy"),
    Flag("health-sync", "a container's Docker HEALTHCHECK becomes a TTL check on each of its services"),
    Flag("drain", "deregister at the stop signal (docker stop/kill), not at exit",
         daemon_only=True),
    Flag("drain-grace", "a container still running this long after the signal is registered again", "SECONDS",
         daemon_only=True, check=_number(float, 0.001, SECONDS)),
    Flag("flap-hold", "a container that keeps dying soon after it starts is held out of Consul "
         "until a start stays up this long (0: off)", "SECONDS",
         check=_number(float, 0, "0 for off, or seconds, e.g. 10")),
    Flag("metrics-addr", "serve Prometheus /metrics, /healthz and /containers here (e.g. 127.0.0.1:9102)",
         "HOST:PORT", daemon_only=True, check=_metrics, shown_default="off"),
    Flag("healthz-threshold", "/healthz fails once Docker, Consul or the ECS agent is unreachable this long",
         "SECONDS", "health_threshold", daemon_only=True, check=_number(float, 0.001, SECONDS)),
    Flag("ecs", "ECS: register awsvpc tasks at their ENI address (from the ECS agent) "
         "and add ecs_* Meta to ECS containers' services"),
    Flag("ecs-agent-uri", "the ECS agent's introspection API", "URL",
         check=_ecs_uri),
    Flag("log-format", "text or json", "FORMAT", check=_choice("text", "json")),
    Flag("log-level", "DEBUG, INFO, WARNING or ERROR", "LEVEL",
         check=_choice("DEBUG", "INFO", "WARNING", "ERROR", fold=True)),
)  # fmt: skip
PLAN_JSON = Flag("json", "print the plan as JSON", dest="plan_json")
EXPLAIN_FLAGS = (
    Flag("json", "print the explanation as JSON (schema: docs/operations.md#explain)",
         dest="explain_json"),
    Flag("daemon", "add the running daemon's own view, read from its -metrics-addr",
         "HOST:PORT", "explain_daemon", check=_metrics),
)  # fmt: skip
BY_NAME = {flag.name: flag for flag in FLAGS}
DAEMON_ONLY = tuple(f"-{flag.name}" for flag in FLAGS if flag.daemon_only)


def flags_of(command: str) -> list[Flag]:
    """The flags ``command`` accepts, in the table's order."""
    own = [flag for flag in FLAGS if command == "run" or not flag.daemon_only]
    extra = {"plan": [PLAN_JSON], "explain": list(EXPLAIN_FLAGS)}.get(command, [])
    return [*own, *extra]


class Parsed(NamedTuple):
    values: dict[str, Value]  # by Config field, every flag of the command
    uris: list[str]
    wants: str = ""  # "help" or "version" when asked for


def _bool(flag: Flag, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "t"):
        return True
    if lowered in ("false", "0", "f"):
        return False
    raise UsageError(
        f"-{flag.name}={value}: invalid boolean value {value!r} (expected true or false)"
    )


def parse_args(command: str, argv: Sequence[str]) -> Parsed:
    """Go's flag syntax: ``-name value``, ``-name=value``, ``-switch``, ``-switch=false``;
    ``--name`` too, and ``--no-switch``. Names are matched exactly, never as prefixes."""
    accepted = {flag.name: flag for flag in flags_of(command)}
    values: dict[str, Value] = {flag.field: flag.default for flag in accepted.values()}
    uris: list[str] = []
    tokens = list(argv)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token == "--":
            uris += tokens[index:]
            break
        if not token.startswith("-") or token == "-":
            uris.append(token)
            continue
        name, has_value, value = token.lstrip("-").partition("=")
        if token.startswith("---") or not name:
            raise UsageError(f"unrecognized arguments: {token}")
        if name in ("h", "help"):
            return Parsed(values, uris, "help")
        if name == "version":
            return Parsed(values, uris, "version")
        negated = name.startswith("no-") and token.startswith("--") and not has_value
        flag = accepted.get(name[3:] if negated else name)
        if flag is None:
            raise UsageError(_unknown(command, token, name))
        if isinstance(flag.default, bool):
            values[flag.field] = _bool(flag, value) if has_value else not negated
            continue
        if negated:
            raise UsageError(_unknown(command, token, name))
        if not has_value:
            if index >= len(tokens):
                raise UsageError(f"-{flag.name} needs a value ({flag.metavar})")
            value = tokens[index]
            index += 1
        try:
            checked = flag.check(value)
        except ValueError as exc:
            raise UsageError(f"-{flag.name} {value!r}: {exc}") from None
        if flag.field == "force_tags":  # a template goes apart; the last -tags wins
            template = None if isinstance(checked, tuple) else checked
            values["tags_template"] = template
            checked = () if template is not None else checked
        values[flag.field] = checked
    return Parsed(values, uris)


def _unknown(command: str, token: str, name: str) -> str:
    if command != "run" and name in BY_NAME and BY_NAME[name].daemon_only:
        return (
            f"-{name} applies to the daemon only, not to 'registrator {command}' "
            "('registrator plan' shows what resync would do, writing nothing)"
        )
    candidates = [f.name for f in flags_of(command) if f.name.startswith(name)]
    hint = f" (did you mean -{candidates[0]}? flags are never abbreviated)" if candidates else ""
    return f"unrecognized arguments: {token}{hint}"


USAGE = {
    "run": "registrator [flags] URI",
    "plan": "registrator plan [flags] URI",
    "resync": "registrator resync [flags] URI",
    "explain": "registrator explain [flags] URI [CONTAINER...]",
}
ABOUT = {
    "run": (
        "Keep the local Consul agent in step with this host's Docker containers: register the\n"
        "services of running containers, deregister them when they stop. Runs until stopped:\n"
        "exit 0 after a stop signal; 1 when it cannot go on (e.g. -retry-attempts used up);\n"
        "2: bad usage."
    ),
    "plan": (
        "Compare what Docker's running containers want with what the agent holds, print the\n"
        "difference, and write nothing. Exit 0: in step; 2: differences (or bad usage);\n"
        "1: Docker or the agent could not be read."
    ),
    "resync": (
        "Make the agent match Docker once, print what changed, and exit. Exit 0: the agent\n"
        "matches Docker; 1: something could not be read or written; 2: bad usage.\n"
        "'registrator plan' shows what resync would do without writing."
    ),
    "explain": (
        "Say why each container is registered or not: for each port the service it gives\n"
        "(and whether the agent holds it in step) or a reason code and what to do; refused\n"
        "keys. CONTAINER: a name, ID or ID prefix; none: every container, running or not.\n"
        "Writes nothing. Exit 0: every service in step; 2: one differs or is missing (or\n"
        "bad usage); 1: Docker, the agent or the daemon could not be read, or a container\n"
        "is unknown."
    ),
}
URI_HELP = (
    "URI: the local Consul agent: consul://HOST[:PORT] (default 127.0.0.1:8500, or\n"
    "  CONSUL_HTTP_ADDR), consul-tls://HOST[:PORT] (default port 8501),\n"
    "  consul-unix:///PATH/TO/SOCKET"
)


def help_text(command: str) -> str:
    lines = [f"usage: {USAGE[command]}"]
    if command == "run":
        lines += [f"       {USAGE[c]}" for c in ("plan", "resync", "explain")]
    lines += ["", ABOUT[command], "", URI_HELP, "", "flags:"]
    for flag in flags_of(command):
        spelled = f"-{flag.name}" + (f" {flag.metavar}" if flag.metavar else "")
        shown = flag.shown_default or (
            "" if isinstance(flag.default, bool) or flag.default in ("", ()) else f"{flag.default:g}"
            if isinstance(flag.default, float) else str(flag.default)
        )  # fmt: skip
        described = flag.help + (f" (default: {shown})" if shown else "")
        lines.append(f"  {spelled}")
        lines.append(
            textwrap.fill(described, 92, initial_indent=" " * 6, subsequent_indent=" " * 6,
                          break_on_hyphens=False)
        )  # fmt: skip
    lines += [
        "  -h, -help",
        "      show this help and exit",
        "  -version",
        "      print the version",
    ]
    if command == "run":
        lines += [
            "",
            textwrap.fill(
                "plan, resync and explain take the same flags but these, which apply to the daemon "
                f"only: {', '.join(DAEMON_ONLY)}",
                92,
                break_on_hyphens=False,
            ),
            "",
            "commands:",
            "  plan     show what resync would change, write nothing ('registrator plan -h')",
            "  resync   make the agent match Docker once and exit ('registrator resync -h')",
            "  explain  why containers are (not) registered ('registrator explain -h')",
            "  help     this help; 'registrator help plan' for a command's",
        ]
    return "\n".join(lines) + "\n"
