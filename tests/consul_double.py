"""A Consul agent test double: a real HTTP server on 127.0.0.1 that answers like a Consul agent.

Why it exists: Consul cannot be installed where these tests run, and a loose mock would accept
whatever the code under test sends. This double decodes and validates requests the way a Consul
1.16 agent does (strict JSON decoding with case-insensitive field names, Go durations, Consul's
status codes and plain-text error messages), so code that passes against it also passes against a
real agent. Tests drive it in-process: they read its state, record every request, inject faults
and restart it on the same port.

It serves what registrator and its tests call, no more: ``GET /v1/agent/services``,
``GET /v1/agent/checks``, ``PUT /v1/agent/service/register``,
``PUT /v1/agent/service/deregister/<id>``, ``PUT /v1/agent/check/update/<id>``,
``PUT /v1/agent/check/deregister/<id>``, ``GET /v1/status/leader`` and
``GET /v1/catalog/service/<name>?tag=`` (what consul-template reads). Any other path is a 404,
as an agent answers a path it does not know.

Standard library only. It never listens on anything but 127.0.0.1 (or a Unix socket).

Typical use::

    with ConsulDouble() as agent:  # or ConsulDouble(acl_token="secret", ...)
        run_code_under_test(consul_url=agent.url)
        agent.wait_for(lambda services: "web-1" in services)
        assert [r.path for r in agent.writes()] == [...]
        agent.fail("error", paths="/v1/agent/service/register")  # inject faults
        agent.restart()  # same port, empty state: an agent that lost it

Deliberate simplifications: checks are not run unless ``run_checks`` (HTTP and TCP only) and TTLs
never expire; DeregisterCriticalServiceAfter never reaps; fields registrator never sends (Kind,
TaggedAddresses, SocketPath, Token, Proxy, Connect, Locality) are accepted and ignored;
?filter= and other unknown query parameters are ignored; the catalog is exactly the agent's
state (one node, always a leader); request bodies are read by Content-Length (no client here
sends chunked ones); with acl_token set every endpoint demands the token (a real agent filters
some reads instead of refusing them).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import ipaddress
import json
import math
import os
import re
import socket
import ssl
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from tests.check_runner import CheckRunner

__all__ = [
    "ConsulDouble",
    "GoDurationError",
    "RecordedRequest",
    "format_go_duration",
    "parse_go_duration",
]

_T = TypeVar("_T")

DATACENTER = "dc1"
LEADER = "127.0.0.1:8300"
NODE_ADDRESS = "127.0.0.1"
NODE_NAME = "double-node"

VALID_STATUSES = ("passing", "warning", "critical")
FAULT_MODES = ("error", "hang", "reset", "reset_after", "slow")
DEREGISTER_MODES = ("404", "200", "500")
WRITE_METHODS = ("PUT", "POST", "DELETE")

# Texts copied from Consul's sources (agent/agent_endpoint.go, agent/agent.go, agent/structs).
MSG_MISSING_NAME = "Missing service name"
MSG_BAD_ADDRESS = "Invalid service address"
MSG_BAD_CHECK_STATUS = "Status for checks must 'passing', 'warning', 'critical'"
MSG_SCRIPTS_DISABLED = (
    "Scripts are disabled on this agent from remote calls; "
    "to enable, configure 'enable_script_checks' to true"
)
MSG_NOT_FOUND_PATH = "Invalid URL path: not a recognized HTTP API endpoint\n"
MSG_NOT_FOUND_ROOT = (
    "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'\n"
)
MSG_PERMISSION_DENIED = "Permission denied"
MSG_ACL_NOT_FOUND = "ACL not found"
CHECK_OUTPUT_MAX = 4096

_TEXT = "text/plain; charset=utf-8"
_JSON = "application/json"


def _go_q(text: str) -> str:
    """Go's %q (strconv.Quote) for the printable text IDs and keys are made of."""
    return json.dumps(text, ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# Go durations (time.ParseDuration / Duration.String), because Consul parses check intervals
# with Go's rules and reports Go's error texts.
# --------------------------------------------------------------------------------------------

_UNIT_NS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_MAX_U63 = 1 << 63
_DURATION_PART = re.compile(r"([0-9]*)(\.[0-9]*)?([^0-9.]*)")  # every group may be empty


class GoDurationError(ValueError):
    """A string Go's time.ParseDuration rejects; str() is Go's message."""


def parse_go_duration(text: str) -> int:
    """Parse a Go duration ("10s", "1m30s", "2.5s", "0") into nanoseconds, as Go does."""
    invalid = GoDurationError(f"time: invalid duration {_go_q(text)}")
    rest = text[1:] if text[:1] in ("+", "-") else text
    if rest == "0":
        return 0
    if not rest:
        raise invalid
    total = pos = 0
    while pos < len(rest):
        part = _DURATION_PART.match(rest, pos)
        assert part is not None
        whole, frac, unit = part.groups()
        pos = part.end()
        if not whole and len(frac or "") < 2:  # no digit before the point nor after it
            raise invalid
        if not unit:
            raise GoDurationError(f"time: missing unit in duration {_go_q(text)}")
        scale = _UNIT_NS.get(unit)
        if scale is None:
            raise GoDurationError(f"time: unknown unit {_go_q(unit)} in duration {_go_q(text)}")
        digits = (frac or ".")[1:19]  # Go stops reading a fraction before it overflows
        total += int(whole or 0) * scale
        total += int(float(int(digits or 0)) * (float(scale) / 10 ** len(digits)))
        if total > _MAX_U63:
            raise invalid
    if text[:1] == "-":
        return -total
    if total > _MAX_U63 - 1:
        raise invalid
    return total


def _fmt_frac(value: int, prec: int) -> str:
    """Go's fmtFrac+fmtInt: value/10**prec with trailing zeros of the fraction dropped."""
    whole, frac = divmod(value, 10**prec)
    digits = f"{frac:0{prec}d}".rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def format_go_duration(ns: int) -> str:
    """Render nanoseconds like Go's Duration.String() ("1m30s", "500ms", "1h0m0s")."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1_000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{_fmt_frac(u, 3)}\u00b5s"
    if u < 1_000_000_000:
        return f"{sign}{_fmt_frac(u, 6)}ms"
    seconds, minutes = _fmt_frac(u % 60_000_000_000, 9), u // 60_000_000_000
    if minutes == 0:
        return f"{sign}{seconds}s"
    if minutes < 60:
        return f"{sign}{minutes}m{seconds}s"
    return f"{sign}{minutes // 60}h{minutes % 60}m{seconds}s"


# --------------------------------------------------------------------------------------------
# Go encoding/json emulation. Consul decodes request bodies with Go's encoding/json and
# DisallowUnknownFields; field names match case-insensitively; the first error wins.
# --------------------------------------------------------------------------------------------


class _GoError(Exception):
    """A decode failure; str() is the Go text Consul prints after 'Request decode failed: '."""


class _GoTypeError(_GoError):
    """Go's *json.UnmarshalTypeError, whose field context an outer decoder may rewrite."""

    def __init__(self, value: str, go_type: str, struct_name: str = "", field: str = "") -> None:
        super().__init__(value)
        self.value = value
        self.go_type = go_type
        self.struct_name = struct_name
        self.field = field

    def __str__(self) -> str:
        if self.struct_name or self.field:
            return (
                f"json: cannot unmarshal {self.value} into Go struct field "
                f"{self.struct_name}.{self.field} of type {self.go_type}"
            )
        return f"json: cannot unmarshal {self.value} into Go value of type {self.go_type}"


class _Num(str):
    """A JSON number kept as its literal, so Go's int/float rules can be applied to it."""

    __slots__ = ()


class _Obj(list[tuple[str, Any]]):
    """A JSON object as its (key, value) pairs in document order, duplicates kept, as Go sees it."""


def _reject_constant(name: str) -> Any:
    """NaN and Infinity, which Python's json reads and Go's refuses."""
    if name.startswith("-"):
        raise _GoError("invalid character 'I' in numeric literal")
    raise _GoError(f"invalid character '{name[0]}' looking for beginning of value")


_DECODER = json.JSONDecoder(
    object_pairs_hook=_Obj, parse_float=_Num, parse_int=_Num, parse_constant=_reject_constant
)
_SKIP = object()  # "leave the Go field as it was" (JSON null into a plain field, or an error)
_INT_RE = re.compile(r"-?[0-9]+")
# Python's json message -> Go's words after "invalid character 'c'" for the same mistake.
_SYNTAX_CONTEXT = {
    "Expecting value": "looking for beginning of value",
    "Expecting property name enclosed in double quotes": (
        "looking for beginning of object key string"
    ),
    "Expecting ':' delimiter": "after object key",
}


def _go_syntax_message(text: str, exc: json.JSONDecodeError) -> str:
    """A JSON syntax error in Go's words for a truncated body and the mistakes _SYNTAX_CONTEXT
    names; other ones (which registrator never makes) in Python's words."""
    if exc.msg.startswith("Unterminated string") or exc.pos >= len(text):
        return "unexpected EOF"
    ch = text[exc.pos]
    context = _SYNTAX_CONTEXT.get(exc.msg)
    if context is None or ch in "ntf-":  # Go reads on into a literal before it fails
        return f"invalid JSON: {exc.msg} at offset {exc.pos}"
    quoted = "'\\''" if ch == "'" else "'\"'" if ch == '"' else f"'{ch}'"
    return f"invalid character {quoted} {context}"


def _go_json_load(text: str) -> Any:
    """Decode the first JSON value of text as Go's json.Decoder does (trailing data is ignored)."""
    start = len(text) - len(text.lstrip(" \t\r\n"))
    if start == len(text):
        raise _GoError("EOF")
    try:
        return _DECODER.raw_decode(text, start)[0]
    except json.JSONDecodeError as exc:
        raise _GoError(_go_syntax_message(text, exc)) from None


_JSON_KINDS = ((_Obj, "object"), (list, "array"), (_Num, "number"), (str, "string"), (bool, "bool"))


def _json_kind(value: Any) -> str:
    """The JSON kind name Go uses in UnmarshalTypeError ("string", "number", ...)."""
    return next((name for kind, name in _JSON_KINDS if isinstance(value, kind)), "null")


class _Decoder:
    """Go's decodeState error bookkeeping: the first error, the struct and field path being
    decoded (which a type error names)."""

    def __init__(self) -> None:
        self.error: _GoError | None = None
        self.struct_name: str | None = None
        self.fields: list[str] = []

    def save(self, err: _GoError) -> None:
        if self.error is None:
            self.error = err

    def mismatch(self, value: Any, go_type: str, what: str = "") -> object:
        """Save Go's type error for value (``what``: Go's words for it); skip the field."""
        field = ".".join(self.fields)
        self.save(_GoTypeError(what or _json_kind(value), go_type, self.struct_name or "", field))
        return _SKIP


# Field specs: JSON name -> kind. Kind "any" is a field registrator never sends: accepted
# unchecked and ignored.
_SPEC = dict[str, str]
_WEIGHTS_SPEC: _SPEC = {"Passing": "int", "Warning": "int"}
_SERVICE_SPEC: _SPEC = {
    # ServiceDefinition.UnmarshalJSON's aux fields, then the ServiceDefinition's own.
    "enable_tag_override": "bool",
    "tagged_addresses": "any",
    **dict.fromkeys(("Kind", "ID", "Name", "Address", "SocketPath", "Token"), "string"),
    "Tags": "strlist",
    "TaggedAddresses": "any",
    "Meta": "strmap",
    "Port": "int",
    "Check": "check",
    "Checks": "checks",
    "Weights": "weights",
    "EnableTagOverride": "bool",
    **dict.fromkeys(("Proxy", "Connect", "Locality"), "any"),
}
_CHECK_DURATIONS = ("Interval", "Timeout", "TTL", "DeregisterCriticalServiceAfter")
_CHECK_ALIASES = {  # CheckType.UnmarshalJSON's snake_case aliases -> the field they fill
    "args": "ScriptArgs",
    "script_args": "ScriptArgs",
    "deregister_critical_service_after": "DeregisterCriticalServiceAfter",
    "docker_container_id": "DockerContainerID",
    "tls_server_name": "TLSServerName",
    "tls_skip_verify": "TLSSkipVerify",
    "grpc_use_tls": "GRPCUseTLS",
    "h2ping_use_tls": "H2PingUseTLS",
}
_CHECK_SPEC: _SPEC = {
    **dict.fromkeys(_CHECK_DURATIONS, "duration"),
    "ScriptArgs": "strlist",
    **dict.fromkeys(
        (
            "CheckID",
            "Name",
            "Status",
            "Notes",
            "HTTP",
            "H2PING",
            "Method",
            "Body",
            "TCP",
            "UDP",
            "AliasNode",
            "AliasService",
            "DockerContainerID",
            "Shell",
            "GRPC",
            "OSService",
            "TLSServerName",
            "ProxyHTTP",
            "ProxyGRPC",
            "ServiceID",
            "service_id",
        ),
        "string",
    ),
    **dict.fromkeys(
        (
            "H2PingUseTLS",
            "DisableRedirects",
            "GRPCUseTLS",
            "TLSSkipVerify",
        ),
        "bool",
    ),
    **dict.fromkeys(
        (
            "SuccessBeforePassing",
            "FailuresBeforeWarning",
            "FailuresBeforeCritical",
            "OutputMaxSize",
        ),
        "int",
    ),
    "Header": "headers",
}
_CHECK_SPEC.update({alias: _CHECK_SPEC[name] for alias, name in _CHECK_ALIASES.items()})
_CHECK_UPDATE_SPEC: _SPEC = {"Status": "string", "Output": "string"}
_ZERO: dict[str, Any] = {"string": "", "bool": False, "int": 0}  # other kinds: None


def _decode_struct(obj: Any, spec: _SPEC, struct_name: str, go_type: str, d: _Decoder) -> Any:
    """Decode a JSON object into a Go struct described by spec (unknown fields rejected)."""
    if obj is None:
        return _SKIP
    if not isinstance(obj, _Obj):
        return d.mismatch(obj, go_type)
    folded: dict[str, str] = {}
    for name in spec:
        folded.setdefault(name.lower(), name)
    out: dict[str, Any] = {}
    for key, value in obj:
        field = key if key in spec else folded.get(key.lower())
        if field is None:
            d.save(_GoError(f"json: unknown field {_go_q(key)}"))
            continue
        outer, depth = d.struct_name, len(d.fields)
        d.struct_name = struct_name
        d.fields.append(field)
        try:
            decoded = _decode_value(value, spec[field], d)
        finally:
            del d.fields[depth:]
            d.struct_name = outer
        if decoded is not _SKIP:
            out[field] = decoded
    return out


def _element(value: Any, kind: str, d: _Decoder) -> Any:
    """A list's or a map's element: null or a wrong kind leaves Go's zero value."""
    decoded = _decode_value(value, kind, d)
    return _ZERO.get(kind) if decoded is _SKIP else decoded


def _nested_check(value: Any, d: _Decoder) -> Any:
    """A check in a registration: CheckType has its own UnmarshalJSON, so its first error ends
    the whole decode, a type error then named after the outer field."""
    try:
        return _decode_check(value)
    except _GoTypeError as err:
        err.struct_name, err.field = d.struct_name or "", ".".join(d.fields)
        raise


def _decode_value(value: Any, kind: str, d: _Decoder) -> Any:
    """Decode one JSON value into the Go type named by kind, saving Go's first error. JSON null
    leaves a plain Go field as it was and makes a nillable one nil."""
    if value is None:
        return _SKIP if kind in ("string", "int", "bool", "check") else None
    if kind == "string":
        is_string = isinstance(value, str) and not isinstance(value, _Num)
        return str(value) if is_string else d.mismatch(value, "string")
    if kind == "bool":
        return value if isinstance(value, bool) else d.mismatch(value, "bool")
    if kind == "int":
        if not isinstance(value, _Num):
            return d.mismatch(value, "int")
        if _INT_RE.fullmatch(value) and -_MAX_U63 <= int(value) < _MAX_U63:
            return int(value)
        return d.mismatch(value, "int", f"number {value}")
    if kind == "duration":  # interface{}: anything goes, numbers must fit a float64
        if isinstance(value, _Num) and math.isinf(float(value)):
            return d.mismatch(value, "float64", f"number {value}")
        return value
    if kind == "any":
        return value
    if kind in ("strlist", "checks"):
        if not isinstance(value, list) or isinstance(value, _Obj):
            return d.mismatch(value, "[]string" if kind == "strlist" else "structs.CheckTypes")
        if kind == "checks":
            return [_nested_check(item, d) for item in value if item is not None]
        return [_element(item, "string", d) for item in value]
    if kind in ("strmap", "headers"):
        if not isinstance(value, _Obj):
            return d.mismatch(
                value, "map[string]string" if kind == "strmap" else "map[string][]string"
            )
        elem = "string" if kind == "strmap" else "strlist"
        return {key: _element(item, elem, d) for key, item in value}
    if kind == "weights":
        return _decode_struct(value, _WEIGHTS_SPEC, "Weights", "structs.Weights", d)
    if kind == "check":
        return _nested_check(value, d)
    raise AssertionError(f"unknown kind {kind}")


def _decode_body(raw: Any, spec: _SPEC, struct_name: str, go_type: str) -> dict[str, Any]:
    """A decoded JSON value into the Go struct spec describes: its fields, or Go's first error."""
    if raw is not None and not isinstance(raw, _Obj):
        raise _GoTypeError(_json_kind(raw), go_type)
    d = _Decoder()
    fields = _decode_struct(raw, spec, struct_name, go_type, d)
    if d.error is not None:
        raise d.error
    return {} if fields is _SKIP else fields


def _duration_of(raw: Any) -> int:
    """CheckType.UnmarshalJSON: a string is a Go duration, a number is nanoseconds, else 0."""
    if isinstance(raw, _Num):
        return int(float(raw))
    if isinstance(raw, str):
        try:
            return parse_go_duration(raw)
        except GoDurationError as exc:
            raise _GoError(str(exc)) from None
    return 0


def _decode_check(raw: Any) -> dict[str, Any]:
    """One check definition as structs.CheckType.UnmarshalJSON reads it, normalised: every
    field present (its zero value when absent), aliases folded in, durations in nanoseconds."""
    f = _decode_body(raw, _CHECK_SPEC, "", "structs.CheckType")
    for alias, name in _CHECK_ALIASES.items():  # Consul fills an unset field from its alias
        unset = f.get(name) is None if name in _CHECK_DURATIONS else not f.get(name)
        if unset:
            f[name] = f.get(alias, _ZERO.get(_CHECK_SPEC[name]))
    check: dict[str, Any] = {
        name: f.get(name, _ZERO.get(kind))
        for name, kind in _CHECK_SPEC.items()
        if name not in _CHECK_ALIASES and name not in ("ServiceID", "service_id")
    }
    for name in _CHECK_DURATIONS:
        check[name] = _duration_of(check[name])
    check["_empty"] = (
        not any(value for name, value in check.items() if name not in ("ScriptArgs", "Header"))
        and check["ScriptArgs"] is None
        and check["Header"] is None
    )
    return check


def _decode_service(raw: Any) -> dict[str, Any]:
    """Decode a service registration body like structs.ServiceDefinition.UnmarshalJSON."""
    f = _decode_body(raw, _SERVICE_SPEC, "", "structs.ServiceDefinition")
    if f.get("enable_tag_override"):
        f["EnableTagOverride"] = True
    return f


def _check_error(check: dict[str, Any]) -> str | None:
    """structs.CheckType.Validate: Consul's reasons, in Consul's order."""
    interval_check = bool(check["ScriptArgs"]) or any(
        check[k] for k in ("HTTP", "TCP", "UDP", "GRPC", "H2PING", "OSService")
    )
    alias = bool(check["AliasNode"] or check["AliasService"])
    interval, ttl = check["Interval"], check["TTL"]
    if interval > 0 and ttl > 0:
        return "Interval and TTL cannot both be specified"
    if interval_check and interval <= 0:
        return "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks"
    if interval_check and alias:
        return "Interval cannot be set for Alias checks"
    if alias and ttl > 0:
        return "TTL must be not be set for Alias checks"
    if not interval_check and not alias and ttl <= 0:
        return "TTL must be > 0 for TTL checks"
    if check["OutputMaxSize"] < 0:
        return "MaxOutputMaxSize must be positive"
    if check["FailuresBeforeWarning"] > check["FailuresBeforeCritical"]:
        return "FailuresBeforeWarning can't be higher than FailuresBeforeCritical"
    return None


def _check_type(check: dict[str, Any]) -> str:
    """structs.CheckType.Type(): the "Type" reported by /v1/agent/checks."""
    timed, script = check["Interval"] > 0, bool(check["ScriptArgs"])
    types = (  # the first that applies, in Go's order
        ("grpc", check["GRPC"] and timed),
        ("http", check["HTTP"] and timed),
        ("ttl", check["TTL"] > 0),
        ("tcp", check["TCP"] and timed),
        ("udp", check["UDP"] and timed),
        ("alias", check["AliasNode"] or check["AliasService"]),
        ("docker", script and check["DockerContainerID"] and timed),
        ("script", script),
        ("h2ping", check["H2PING"] and timed),
        ("os_service", check["OSService"] and timed),
    )
    return next((name for name, applies in types if applies), "")


_META_KEY_RE = re.compile(r"[a-zA-Z0-9_-]+")


def _meta_error(meta: dict[str, str]) -> str | None:
    """structs.ValidateServiceMetadata for a typical service."""
    if len(meta) > 64:
        return "Node metadata cannot contain more than 64 key/value pairs"
    for key, value in meta.items():
        reason = None
        if not key:
            reason = "Key cannot be blank"
        elif not _META_KEY_RE.fullmatch(key):
            reason = "Key contains invalid characters"
        elif len(key.encode()) > 128:
            reason = "Key is too long (limit: 128 characters)"
        elif key.startswith("consul-"):
            reason = "Key prefix 'consul-' is reserved for internal use"
        elif len(value.encode()) > 512:
            reason = "Value is too long (limit: 512 characters)"
        if reason:
            return f"Couldn't load metadata pair ('{key}', '{value}'): {reason}"
    return None


def _weights_error(weights: dict[str, int]) -> str | None:
    """structs.ValidateWeights."""
    passing, warning = weights.get("Passing", 0), weights.get("Warning", 0)
    if passing < 1:
        return "Passing must be greater than 0"
    if warning < 0:
        return "Warning must be greater or equal than 0"
    if passing > 65535 or warning > 65535:
        return "DNS Weight must be between 0 and 65535"
    return None


def _ip_family(address: str) -> int:
    """4 or 6 when Go's net.ParseIP accepts address (IPv4-mapped counts as 4), else 0."""
    with contextlib.suppress(ValueError):
        ip = ipaddress.ip_address(address)
        if "%" not in address:  # Go parses no IPv6 zone
            return 4 if ip.version == 4 or getattr(ip, "ipv4_mapped", None) else 6
    return 0


# --------------------------------------------------------------------------------------------
# Requests, responses, recording
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """One request the double received. Tokens are never stored, only whether one was sent."""

    method: str
    path: str  # percent-decoded, without the query string
    query: dict[str, list[str]]  # a "token" parameter's value is replaced by "<redacted>"
    body: str
    status: int  # 0 when no response was sent (hang, reset, reset_after)
    time: float  # time.monotonic() when it arrived
    has_token: bool = False
    wall_ns: int = 0  # time.time_ns() when it arrived (comparable with Docker's event timeNano)
    finished: float = 0.0  # time.monotonic() when it was answered (0: not answered)


@dataclasses.dataclass(frozen=True)
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: str
    token: str | None


@dataclasses.dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Fault:
    mode: str
    status: int
    body: str
    every: int
    paths: str | None
    release: threading.Event
    delay: float
    count: int = 0


def _text(status: int, message: str) -> _Response:
    return _Response(status, message.encode("utf-8"), [("Content-Type", _TEXT)])


def _json(obj: Any) -> _Response:
    """A JSON answer encoded as Go's json.Marshal does it (HTML characters escaped)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(raw, escaped)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return _Response(200, text.encode("utf-8", "replace"), [("Content-Type", _JSON)])


def _token_of(query: dict[str, list[str]], headers: Any) -> str | None:
    """Consul's parseToken: ?token=, then X-Consul-Token (no client here sends a Bearer)."""
    values = query.get("token")
    if values and values[0].strip():
        return values[0].strip()
    return (headers.get("X-Consul-Token") or "").strip() or None


# --------------------------------------------------------------------------------------------
# The agent: state and endpoints
# --------------------------------------------------------------------------------------------

_Handler = Callable[["_Request"], _Response]


@dataclasses.dataclass(eq=False)
class _Agent:
    """The agent's state (services, checks, index) and Consul's endpoint logic over it."""

    cond: threading.Condition
    acl_token: str | None
    enable_script_checks: bool
    unknown_deregister: str
    denied: set[str]  # the service names the token may not write
    run_checks: bool  # probe HTTP and TCP checks as the agent does
    runners: dict[str, CheckRunner] = dataclasses.field(default_factory=dict)
    accessor_id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    index: int = 1
    services: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    checks: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        # Go ServeMux patterns: a path matches exactly, or a pattern ending in "/" is its prefix.
        self.routes: dict[str, tuple[str, _Handler]] = {
            "/v1/agent/services": ("GET", lambda _req: _json(self.services_view())),
            "/v1/agent/checks": ("GET", lambda _req: _json(self.checks_view())),
            "/v1/agent/service/register": ("PUT", self.register),
            "/v1/agent/service/deregister/": ("PUT", self.deregister),
            "/v1/agent/check/update/": ("PUT", self.check_update),
            "/v1/agent/check/deregister/": ("PUT", self.check_deregister),
            "/v1/status/leader": ("GET", lambda _req: _json(LEADER)),
            "/v1/catalog/service/": ("GET", self.catalog_service),
        }

    # -- routing, ACL ------------------------------------------------------------------------

    def route(self, path: str) -> tuple[str, _Handler] | None:
        """Go ServeMux matching: an exact pattern first, else the longest "/..."-prefix pattern."""
        prefixes = [p for p in self.routes if p.endswith("/") and path.startswith(p)]
        pattern = path if path in self.routes else max(prefixes, key=len, default=None)
        return None if pattern is None else self.routes[pattern]

    def dispatch(self, req: _Request) -> _Response:
        """Answer one request as the agent's HTTP server would."""
        found = self.route(req.path)
        if found is None:
            return _text(404, MSG_NOT_FOUND_PATH if "/v1/" in req.path else MSG_NOT_FOUND_ROOT)
        method, handler = found
        if req.method == "OPTIONS":
            return _Response(200, b"", [("Allow", f"OPTIONS,{method}")])
        if req.method != method:
            resp = _text(405, f"method {req.method} not allowed")
            resp.headers.append(("Allow", f"OPTIONS,{method}"))
            return resp
        if self.acl_token is not None:
            if not req.token:
                return _text(403, MSG_PERMISSION_DENIED)
            if req.token != self.acl_token:
                return _text(403, MSG_ACL_NOT_FOUND)
        resp = handler(req)
        if req.method == "GET" and resp.status == 200:
            with self.cond:
                resp.headers.append(("X-Consul-Index", str(self.index)))
        return resp

    def denied_response(self, service_name: str) -> _Response | None:
        """A 403 like Consul's when the token may not write service_name, else None."""
        if self.acl_token is None or service_name not in self.denied:
            return None
        return _text(
            403,
            f"Permission denied: token with AccessorID '{self.accessor_id}' lacks permission "
            f"'service:write' on {_go_q(service_name)}",
        )

    def bump(self) -> None:
        """Advance the index after a change and wake every waiter."""
        self.index += 1
        self.cond.notify_all()

    # -- registration ------------------------------------------------------------------------

    def register(self, req: _Request) -> _Response:
        """PUT /v1/agent/service/register, validated in Consul's order."""
        try:
            d = _decode_service(_go_json_load(req.body))
        except _GoError as exc:
            return _text(400, f"Request decode failed: {exc}")
        name = d.get("Name") or ""
        if not name:
            return _text(400, MSG_MISSING_NAME)
        if d.get("Address") in ("0.0.0.0", "::", "[::]"):
            return _text(400, MSG_BAD_ADDRESS)
        reason = _weights_error(d["Weights"]) if d.get("Weights") is not None else None
        if reason:
            return _text(400, f"Invalid Weights: {reason}")
        reason = _meta_error(d.get("Meta") or {})
        if reason:
            return _text(400, f"Invalid Service Meta: {reason}")
        single = d.get("Check")
        checks = [single] if single is not None and not single["_empty"] else []
        checks.extend(d.get("Checks") or [])
        for check in checks:
            reason = _check_error(check)
            if reason:
                return _text(400, f"Invalid check: {reason}")
        if any(c["Status"] and c["Status"] not in VALID_STATUSES for c in checks):
            return _text(400, MSG_BAD_CHECK_STATUS)
        service_id = d.get("ID") or name
        with self.cond:
            previous = self.services.get(service_id)
            for owner in dict.fromkeys([name, previous["Service"] if previous else name]):
                denied = self.denied_response(owner)
                if denied is not None:
                    return denied
            if not self.enable_script_checks and any(c["ScriptArgs"] for c in checks):
                return _text(500, MSG_SCRIPTS_DISABLED)
            values = req.query.get("replace-existing-checks") or ["false"]
            replace_existing = values[0] in ("", "true")
            self.apply_registration(service_id, d, checks, replace_existing)
        return _Response(200)

    def apply_registration(
        self,
        service_id: str,
        d: dict[str, Any],
        checks: list[dict[str, Any]],
        replace_existing: bool,
    ) -> None:
        """Store the service and its checks as Consul's agent local state would (lock held)."""
        name, address, port = d["Name"], d.get("Address") or "", d.get("Port", 0)
        tags = list(d.get("Tags") or [])
        weights = d.get("Weights")
        service: dict[str, Any] = {
            "ID": service_id,
            "Service": name,
            "Tags": tags,
            "Meta": dict(sorted((d.get("Meta") or {}).items())),
            "Port": port,
            "Address": address,
        }
        family = _ip_family(address)
        if family:  # the agent tags an IP address as the LAN and WAN one of its family
            service["TaggedAddresses"] = {
                f"{net}_ipv{family}": {"Address": address, "Port": port} for net in ("lan", "wan")
            }
        service["Weights"] = (
            {"Passing": weights.get("Passing", 0), "Warning": weights.get("Warning", 0)}
            if weights is not None
            else {"Passing": 1, "Warning": 1}
        )
        service["EnableTagOverride"] = bool(d.get("EnableTagOverride"))
        service["Datacenter"] = DATACENTER

        before_service = self.services.get(service_id)
        before_checks = {k: v for k, v in self.checks.items() if v["ServiceID"] == service_id}
        new_checks: dict[str, dict[str, Any]] = {}
        probed: dict[str, dict[str, Any]] = {}  # check ID -> its definition
        for i, check in enumerate(checks):
            check_id = check["CheckID"] or f"service:{service_id}"
            if not check["CheckID"] and len(checks) > 1:
                check_id += f":{i + 1}"
            probed[check_id] = check
            prev = self.checks.get(check_id)  # an existing check keeps its state
            status, output = (prev["Status"], prev["Output"]) if prev else (check["Status"], "")
            new_checks[check_id] = {
                "Node": NODE_NAME,
                "CheckID": check_id,
                "Name": check["Name"] or f"Service '{name}' check",
                "Status": status or "critical",
                "Notes": check["Notes"],
                "Output": output,
                "ServiceID": service_id,
                "ServiceName": name,
                "ServiceTags": list(tags),
                "Type": _check_type(check),
                "Interval": format_go_duration(check["Interval"]) if check["Interval"] else "",
                "Timeout": format_go_duration(check["Timeout"]) if check["Timeout"] else "",
                "ExposedPort": 0,
                "Definition": {},
                "CreateIndex": 0,
                "ModifyIndex": 0,
            }
        self.services[service_id] = service
        self.checks.update(new_checks)
        if replace_existing:
            for check_id in set(before_checks) - set(new_checks):
                del self.checks[check_id]
                self.stop_runner(check_id)
        if self.run_checks:
            for check_id, check in probed.items():
                self.stop_runner(check_id)
                if CheckRunner.runs(check):
                    self.runners[check_id] = CheckRunner(
                        check, functools.partial(self.probed, check_id)
                    ).start()
        after_checks = {k: v for k, v in self.checks.items() if v["ServiceID"] == service_id}
        if before_service != service or before_checks != after_checks:
            self.bump()

    # -- deregistration, checks, reads -------------------------------------------------------

    def deregister(self, req: _Request) -> _Response:
        """PUT /v1/agent/service/deregister/<id>; unknown IDs answer per unknown_deregister."""
        service_id = req.path[len("/v1/agent/service/deregister/") :]
        with self.cond:
            service = self.services.get(service_id)
            if service is None:
                if self.unknown_deregister == "200":
                    return _Response(200)
                if self.unknown_deregister == "500":
                    return _text(500, f"Unknown service {_go_q(service_id)}")
                return _text(
                    404,
                    f"Unknown service ID {_go_q(service_id)}. "
                    "Ensure that the service ID is passed, not the service name.",
                )
            denied = self.denied_response(service["Service"])
            if denied is not None:
                return denied
            del self.services[service_id]
            for check_id in [k for k, v in self.checks.items() if v["ServiceID"] == service_id]:
                del self.checks[check_id]
                self.stop_runner(check_id)
            self.bump()
        return _Response(200)

    def writable_check(self, check_id: str) -> tuple[dict[str, Any], _Response | None]:
        """The check a request would change, or the agent's answer why not (lock held): 404
        for an unknown ID, 403 when the token may not write its service."""
        check = self.checks.get(check_id)
        if check is None:
            return {}, _text(
                404,
                f"Unknown check ID {_go_q(check_id)}. "
                "Ensure that the check ID is passed, not the check name.",
            )
        return check, self.denied_response(check["ServiceName"])

    def check_deregister(self, req: _Request) -> _Response:
        """PUT /v1/agent/check/deregister/<id>: one check goes, its service stays."""
        check_id = req.path[len("/v1/agent/check/deregister/") :]
        with self.cond:
            _, refused = self.writable_check(check_id)
            if refused is not None:
                return refused
            del self.checks[check_id]
            self.stop_runner(check_id)
            self.bump()
        return _Response(200)

    def check_update(self, req: _Request) -> _Response:
        """PUT /v1/agent/check/update/<id> with {"Status", "Output"}: a TTL check's state."""
        try:
            raw = _go_json_load(req.body)
            update = _decode_body(raw, _CHECK_UPDATE_SPEC, "checkUpdate", "agent.checkUpdate")
        except _GoError as exc:
            return _text(400, f"Request decode failed: {exc}")
        status, output = update.get("Status", ""), update.get("Output", "")
        if status not in VALID_STATUSES:
            return _text(400, f"Invalid check status: '{status}'")
        check_id = req.path[len("/v1/agent/check/update/") :]
        with self.cond:
            check, refused = self.writable_check(check_id)
            if refused is not None:
                return refused
            if check["Type"] != "ttl":
                return _text(500, f"CheckID {_go_q(check_id)} does not have associated TTL")
            raw_output = output.encode("utf-8")
            if len(raw_output) > CHECK_OUTPUT_MAX:
                output = (
                    raw_output[:CHECK_OUTPUT_MAX].decode("utf-8", "ignore")
                    + f" ... (captured {CHECK_OUTPUT_MAX} of {len(raw_output)} bytes)"
                )
            self.probed(check_id, status, output)
        return _Response(200)

    def stop_runner(self, check_id: str) -> None:
        runner = self.runners.pop(check_id, None)
        if runner is not None:
            runner.stop()

    def probed(self, check_id: str, status: str, output: str) -> None:
        """A check's new result (a check runner's, or a TTL update), as local state records it."""
        with self.cond:
            check = self.checks.get(check_id)
            if check is not None and (check["Status"], check["Output"]) != (status, output):
                check["Status"], check["Output"] = status, output
                self.bump()

    def services_view(self) -> dict[str, dict[str, Any]]:
        with self.cond:
            return copy.deepcopy(dict(sorted(self.services.items())))

    def checks_view(self) -> dict[str, dict[str, Any]]:
        with self.cond:
            return copy.deepcopy(dict(sorted(self.checks.items())))

    def catalog_service(self, req: _Request) -> _Response:
        """GET /v1/catalog/service/<name>?tag=...: this one-node cluster's catalog is the agent
        state; every tag given must match (case-insensitively, as service names do)."""
        name = req.path[len("/v1/catalog/service/") :]
        if not name:
            return _text(400, MSG_MISSING_NAME)
        wanted = {tag.lower() for tag in req.query.get("tag", [])}
        with self.cond:
            matching = [
                service
                for _sid, service in sorted(self.services.items())
                if service["Service"].lower() == name.lower()
                and wanted <= {tag.lower() for tag in service["Tags"]}
            ]
            entries = [self.catalog_entry(service) for service in matching]
        return _json(entries)

    @staticmethod
    def catalog_entry(service: dict[str, Any]) -> dict[str, Any]:
        """A catalog entry: the node's and the service's fields consul-template reads."""
        entry = {
            "Node": NODE_NAME,
            "Address": NODE_ADDRESS,
            "Datacenter": DATACENTER,
            "ServiceID": service["ID"],
            "ServiceName": service["Service"],
            "ServiceTags": list(service["Tags"]),
            "ServiceAddress": service["Address"],
            "ServiceWeights": dict(service["Weights"]),
            "ServiceMeta": dict(service["Meta"]),
            "ServicePort": service["Port"],
            "ServiceEnableTagOverride": service["EnableTagOverride"],
        }
        if "TaggedAddresses" in service:
            entry["ServiceTaggedAddresses"] = copy.deepcopy(service["TaggedAddresses"])
        return entry


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------


class TrackingServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that tracks its connections so stop() can cut keep-alive clients off
    (the ECS agent double serves with it too)."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: Any, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.stopping = threading.Event()
        self.conns: set[socket.socket] = set()
        self.conns_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.conns_lock:
            if self.stopping.is_set():
                self.close_request(request)
                return
            self.conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.conns_lock:
            self.conns.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        with self.conns_lock:
            conns = list(self.conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def serve_in_thread(self, name: str) -> threading.Thread:
        thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.01}, name=name, daemon=True
        )
        thread.start()
        return thread

    def close(self, thread: threading.Thread | None) -> None:
        """Stop serving: the listener closes (new clients get connection refused), open
        connections are cut, and the serving thread ends."""
        self.stopping.set()
        self.shutdown()
        self.server_close()
        self.cut_connections()
        if thread is not None:
            thread.join(timeout=2)


class _Server(TrackingServer):
    request_queue_size = 128

    def __init__(self, port: int, double: ConsulDouble, unix_socket: str = "") -> None:
        if unix_socket:
            self.address_family = socket.AF_UNIX
            with contextlib.suppress(FileNotFoundError):
                os.unlink(unix_socket)
            super().__init__(unix_socket, _RequestHandler)
        else:
            super().__init__(("127.0.0.1", port), _RequestHandler)
        self.double = double

    def process_request(self, request: Any, client_address: Any) -> None:
        if not isinstance(client_address, tuple):  # a Unix socket peer has no address
            client_address = ("unix", 0)
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A refused TLS handshake is the client's problem, as on a real agent: no traceback."""
        if isinstance(sys.exc_info()[1], ssl.SSLError | ConnectionError):
            return
        super().handle_error(request, client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    """One HTTP/1.1 connection; every request goes to ConsulDouble._serve."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        if self.server.address_family == socket.AF_UNIX:
            self.disable_nagle_algorithm = False  # type: ignore[misc]  # no TCP_NODELAY
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request stderr logging."""

    def _dispatch(self) -> None:
        length = (self.headers.get("Content-Length") or "").strip()
        try:
            body = self.rfile.read(int(length)) if length.isdigit() else b""
        except OSError:
            self.close_connection = True
            return
        self.server.double._serve(self, body)

    def write_response(self, resp: _Response) -> None:
        """Send resp in one write with a Content-Length, so keep-alive clients stay in step."""
        reason = self.responses.get(resp.status, ("",))[0]
        head = [
            f"{self.protocol_version} {resp.status} {reason}",
            f"Date: {self.date_time_string()}",
        ]
        head += [f"{name}: {value}" for name, value in resp.headers]
        head.append(f"Content-Length: {len(resp.body)}")
        payload = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if self.command != "HEAD":
            payload += resp.body
        try:
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True

    def drop(self, reset: bool) -> None:
        """Close the connection without answering; reset=True sends a TCP RST."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            if reset:
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        self.rfile.close()
        self.connection.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _dispatch


# --------------------------------------------------------------------------------------------
# The public double
# --------------------------------------------------------------------------------------------


class ConsulDouble:
    """A fake Consul agent on 127.0.0.1, strict like a real one, controllable from tests.

    Use as a context manager (start/stop) or call start()/stop(). State survives stop/start;
    restart(empty=True) simulates an agent that lost its state.
    """

    def __init__(
        self,
        *,
        acl_token: str | None = None,
        enable_script_checks: bool = False,
        unknown_deregister: str = "404",
        port: int = 0,
        denied_services: Iterable[str] = (),
        ssl_context: ssl.SSLContext | None = None,
        unix_socket: str = "",
        run_checks: bool = False,
    ) -> None:
        """``unknown_deregister``: how deregistering an unknown ID answers, "404" (Consul
        >= 1.11), "200" or "500" (older agents); ``denied_services``: the service names the
        ACL token may not write; ``run_checks``: probe HTTP and TCP checks as the agent does."""
        if unknown_deregister not in DEREGISTER_MODES:
            raise ValueError(f"unknown_deregister must be one of {DEREGISTER_MODES}")
        self.port = port
        self._ssl_context = ssl_context
        self.unix_socket = unix_socket  # serve on this Unix socket path instead of TCP
        self._cond = threading.Condition(threading.RLock())
        self._agent = _Agent(
            self._cond, acl_token, enable_script_checks, unknown_deregister,
            set(denied_services), run_checks,
        )  # fmt: skip
        self._requests: list[RecordedRequest] = []
        self._in_flight = {"all": 0, "writes": 0}  # requests being served now
        self._in_flight_peak = {"all": 0, "writes": 0}  # the most at once since cleared
        self._fault: _Fault | None = None
        self._hang_release = threading.Event()
        self._lifecycle = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self.unix_socket:
            return f"unix://{self.unix_socket}"
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> ConsulDouble:
        """Listen on 127.0.0.1:<port> (random when 0) and serve from a daemon thread."""
        with self._lifecycle:
            if self._server is not None:
                return self
            server = _Server(self.port, self, self.unix_socket)
            if self._ssl_context is not None:
                server.socket = self._ssl_context.wrap_socket(
                    server.socket, server_side=True, do_handshake_on_connect=False
                )
            if not self.unix_socket:
                self.port = server.server_address[1]
            self._server = server
            self._thread = server.serve_in_thread(f"consul-double-{self.port}")
        return self

    def stop(self) -> None:
        """Close the listener (new clients get connection refused) and cut open connections.

        Hung requests are released and dropped; checks stop being run. Idempotent; returns
        promptly.
        """
        with self._lifecycle:
            server, thread = self._server, self._thread
            if server is None:
                return
            self._server = self._thread = None
            server.stopping.set()
            with self._cond:
                for check_id in list(self._agent.runners):
                    self._agent.stop_runner(check_id)
                self._release_hung()
                self._cond.notify_all()
            server.close(thread)

    def restart(self, *, empty: bool = True) -> None:
        """Stop, then start on the same port; empty=True forgets every service and check."""
        self.stop()
        if empty:
            with self._cond:
                self._agent.services.clear()
                self._agent.checks.clear()
                self._agent.bump()
        self.start()

    def __enter__(self) -> ConsulDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state -------------------------------------------------------------------------------

    def services(self) -> dict[str, dict[str, Any]]:
        """A deep copy of the services, exactly as GET /v1/agent/services returns them."""
        return self._agent.services_view()

    def checks(self) -> dict[str, dict[str, Any]]:
        """A deep copy of the checks, exactly as GET /v1/agent/checks returns them."""
        return self._agent.checks_view()

    @property
    def index(self) -> int:
        """The X-Consul-Index value: increases on every change."""
        with self._cond:
            return self._agent.index

    def register(
        self, definition: dict[str, Any], *, replace_existing_checks: bool = False
    ) -> None:
        """Seed a service directly (same decoding and validation as the HTTP endpoint).

        Raises ValueError with Consul's status and message when Consul would refuse it.
        """
        query = {"replace-existing-checks": ["true"]} if replace_existing_checks else {}
        body = json.dumps(definition)
        req = _Request("PUT", "/v1/agent/service/register", query, body, self._agent.acl_token)
        resp = self._agent.register(req)
        if resp.status != 200:
            raise ValueError(f"{resp.status} {resp.body.decode()}")

    def set_denied_services(self, names: Iterable[str]) -> None:
        """Service names the ACL token may not write (only meaningful with acl_token)."""
        with self._cond:
            self._agent.denied = set(names)

    def catalog_tags_changed(self, service_id: str, tags: list[str]) -> bool:
        """Someone changed the service's tags in the catalog; the agent's next anti-entropy
        sync adopts them only when the service has EnableTagOverride (otherwise it writes
        its own back to the catalog). True when the agent's tags changed."""
        with self._cond:
            service = self._agent.services[service_id]
            if not service.get("EnableTagOverride") or service["Tags"] == tags:
                return False
            service["Tags"] = list(tags)
            self._agent.bump()
            return True

    def _wait(
        self, read: Callable[[], _T], predicate: Callable[[_T], bool], timeout: float
    ) -> _T | None:
        """read() once it satisfies predicate, woken on every change (no polling); None when
        timeout runs out first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                current = read()
                if predicate(current):
                    return current
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def wait_for(
        self, predicate: Callable[[dict[str, dict[str, Any]]], bool], timeout: float = 10.0
    ) -> dict[str, dict[str, Any]]:
        """Wait until predicate(services) holds; return them.

        Raises AssertionError showing the last state on timeout.
        """
        services = self._wait(self.services, predicate, timeout)
        if services is None:
            raise AssertionError(
                f"condition not met within {timeout}s; agent services: "
                + json.dumps(self.services(), indent=2, sort_keys=True)
            )
        return services

    # -- recording ---------------------------------------------------------------------------

    def requests(self) -> list[RecordedRequest]:
        """Every request received, in arrival order."""
        with self._cond:
            return list(self._requests)

    def writes(self) -> list[RecordedRequest]:
        """The recorded PUT/POST/DELETE requests."""
        return [r for r in self.requests() if r.method in WRITE_METHODS]

    def clear_requests(self) -> None:
        """Forget the recorded requests and the in-flight peaks."""
        with self._cond:
            self._requests.clear()
            self._in_flight_peak = dict(self._in_flight)

    def in_flight_peak(self, writes: bool = True) -> int:
        """The most requests (writes only: PUT/POST/DELETE) the double was serving at once,
        from arrival to answer, since it started or clear_requests()."""
        with self._cond:
            return self._in_flight_peak["writes" if writes else "all"]

    def wait_for_requests(
        self, predicate: Callable[[list[RecordedRequest]], bool], timeout: float = 10.0
    ) -> list[RecordedRequest]:
        """Wait until predicate(requests()) holds (e.g. a hung request has arrived)."""
        recorded = self._wait(self.requests, predicate, timeout)
        if recorded is None:
            lines = "\n".join(f"  {r.method} {r.path} -> {r.status}" for r in self.requests())
            raise AssertionError(f"requests condition not met within {timeout}s:\n{lines}")
        return recorded

    # -- faults ------------------------------------------------------------------------------

    def fail(
        self,
        mode: str | None,
        *,
        status: int = 500,
        body: str = "rpc error: No cluster leader",
        every: int = 1,
        paths: str | None = None,
        delay: float = 0.05,
    ) -> None:
        """Inject a fault into matching requests; mode None makes the agent healthy again.

        "error": answer status/body. "hang": hold the request until the fault is cleared or the
        double stops, then drop the connection. "reset": close with a TCP RST, no response.
        "reset_after": process the request (state changes) but reset instead of answering.
        "slow": wait ``delay`` seconds, then answer normally (a busy agent).
        every=N hits only every Nth matching request (deterministic counter); paths restricts
        the fault to request paths starting with that prefix.
        """
        if mode is not None and mode not in FAULT_MODES:
            raise ValueError(f"mode must be None or one of {FAULT_MODES}")
        if every < 1:
            raise ValueError("every must be >= 1")
        with self._cond:
            self._release_hung()
            self._fault = (
                None
                if mode is None
                else _Fault(mode, status, body, every, paths, self._hang_release, delay)
            )

    def _release_hung(self) -> None:
        """Let every hung request go (they then drop their connection); later ones hang anew."""
        self._hang_release.set()
        self._hang_release = threading.Event()
        if self._fault is not None:
            self._fault.release = self._hang_release

    def _take_fault(self, path: str) -> _Fault | None:
        """The fault for this request, if any: a snapshot, so a later release is not missed."""
        with self._cond:
            fault = self._fault
            if fault is None or (fault.paths is not None and not path.startswith(fault.paths)):
                return None
            fault.count += 1
            return dataclasses.replace(fault) if fault.count % fault.every == 0 else None

    # -- serving -----------------------------------------------------------------------------

    def _serve(self, handler: _RequestHandler, raw_body: bytes) -> None:
        """Record, apply faults, dispatch and answer one request (called on handler threads)."""
        split = urlsplit(handler.path)
        path = unquote(split.path)
        query = parse_qs(split.query, keep_blank_values=True)
        token = _token_of(query, handler.headers)
        req = _Request(handler.command, path, query, raw_body.decode("utf-8", "replace"), token)
        recorded_query = {
            k: ["<redacted>"] * len(v) if k == "token" else v for k, v in query.items()
        }
        arrived = time.monotonic()
        record = RecordedRequest(
            req.method,
            path,
            recorded_query,
            req.body,
            0,
            arrived,
            token is not None,
            time.time_ns(),
        )
        kinds = ("all", "writes") if req.method in WRITE_METHODS else ("all",)
        with self._cond:
            position = len(self._requests)
            self._requests.append(record)
            for kind in kinds:
                self._in_flight[kind] += 1
                self._in_flight_peak[kind] = max(self._in_flight_peak[kind], self._in_flight[kind])
            self._cond.notify_all()
        resp: _Response | None = None
        reset = False
        try:
            resp, reset = self._answer(req, handler.server.stopping)
        finally:
            # In flight from arrival until the answer is about to be written (a client may
            # send its next request as soon as it reads the answer) or the connection dropped.
            with self._cond:
                for kind in kinds:
                    self._in_flight[kind] -= 1
                recorded = position < len(self._requests) and self._requests[position] is record
                if resp is not None and recorded:
                    self._requests[position] = dataclasses.replace(
                        record, status=resp.status, finished=time.monotonic()
                    )
                self._cond.notify_all()
        if resp is None:
            handler.drop(reset)
        else:
            handler.write_response(resp)

    def _answer(self, req: _Request, stopping: threading.Event) -> tuple[_Response | None, bool]:
        """The agent's answer, or the fault's: None to drop the connection (True: with a RST)."""
        fault = self._take_fault(req.path)
        mode = fault.mode if fault is not None else ""
        if fault is not None and mode == "error":
            return _text(fault.status, fault.body), False
        if fault is not None and mode == "hang":
            fault.release.wait()
            return None, False
        if mode == "reset":
            return None, True
        if fault is not None and mode == "slow":
            fault.release.wait(fault.delay)
        try:
            resp = self._agent.dispatch(req)
        except Exception as exc:  # a bug in the double must surface, not hang the client
            resp = _text(500, f"consul double internal error: {exc!r}")
        if mode == "reset_after":
            return None, True
        if stopping.is_set():  # a stopped agent answers nothing in flight
            return None, False
        return resp, False
