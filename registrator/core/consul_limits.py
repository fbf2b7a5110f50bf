"""What Consul accepts in a registration (pure): durations, service IDs, tags and Meta.

A value Consul would refuse costs only itself: it is dropped or replaced, and reported so an
operator can fix the container, instead of the whole registration failing at the agent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping

from registrator.core.model import OWNER_META_KEY, weights

# How a bad value is reported: (the SERVICE_* key, what is wrong and what was done).
ReportProblem = Callable[[str, str], None]

# Go's time.ParseDuration, which Consul uses for every check duration.
GO_DURATION_RE = re.compile(r"^[-+]?(0|((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)$")
# Consul's own limits on service Meta (agent/structs: ValidateServiceMetadata).
META_MAX_PAIRS = 64
META_KEY_MAX = 128
META_VALUE_MAX = 512
META_KEY_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
META_RESERVED_PREFIX = "consul-"
DNS_LABEL_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")
SERVICE_ID_MAX = 256
SERVICE_ID_RE = re.compile(r"^[^/?#%\s\x00-\x1f\x7f]+$")
TAG_MAX = 256
PRINTABLE_RE = re.compile(r"^[^\x00-\x1f\x7f]+$")


def valid_duration(value: str, positive: bool = True) -> bool:
    """True when Consul would parse ``value`` (and it is > 0, when ``positive``)."""
    if not GO_DURATION_RE.fullmatch(value):
        return False
    return not positive or (not value.startswith("-") and any(c in "123456789" for c in value))


def dns_label(text: str) -> str:
    """Turn an image base name into a DNS label: other characters become '-'."""
    label = re.sub(r"[^a-zA-Z0-9-]+", "-", text).strip("-")
    return label[:63].rstrip("-")


def valid_service_id(wanted: str, default: str, report: ReportProblem) -> str:
    """SERVICE_ID, unless Consul could not address it (it travels in URL paths)."""
    if not wanted:
        return default
    if len(wanted) > SERVICE_ID_MAX or not SERVICE_ID_RE.fullmatch(wanted):
        report(
            "SERVICE_ID",
            f"{wanted[:80]!r} is not a usable service ID (printable, no '/', '?', '#' or '%', "
            f"at most {SERVICE_ID_MAX} characters); using {default}",
        )
        return default
    return wanted


def valid_tags(tags: list[str], report: ReportProblem) -> list[str]:
    kept = []
    for tag in tags:
        if len(tag.encode()) > TAG_MAX or not PRINTABLE_RE.fullmatch(tag):
            report("SERVICE_TAGS", f"tag {tag[:40]!r}... is unprintable or too long; dropped")
        else:
            kept.append(tag)
    return kept


def valid_meta(
    attrs: Mapping[str, str], skipped: Collection[str], report: ReportProblem
) -> dict[str, str]:
    """Keep the metadata Consul accepts; drop each bad key with a problem naming it. Keys in
    ``skipped`` are left out silently (their problem is reported where they are refused)."""
    meta: dict[str, str] = {}
    for key, value in sorted(attrs.items()):
        env_key = f"SERVICE_{key.upper()}"
        if key in skipped:
            continue
        if key == OWNER_META_KEY:
            report(env_key, "reserved for registrator's ownership mark; dropped")
        elif not META_KEY_RE.fullmatch(key):
            report(env_key, "Meta key has characters Consul refuses; dropped")
        elif len(key) > META_KEY_MAX:
            report(env_key, f"Meta key longer than {META_KEY_MAX} characters; dropped")
        elif key.startswith(META_RESERVED_PREFIX):
            report(env_key, "Meta key prefix 'consul-' is reserved by Consul; dropped")
        elif len(value.encode()) > META_VALUE_MAX:  # Consul counts bytes
            report(env_key, f"value longer than {META_VALUE_MAX} characters; dropped")
        elif len(meta) >= META_MAX_PAIRS - 1:  # one pair is the ownership mark
            report(env_key, f"more than {META_MAX_PAIRS} Meta pairs; dropped")
        else:
            meta[key] = value
    return meta


def valid_weights(metadata: Mapping[str, str], report: ReportProblem) -> tuple[int, int]:
    """``SERVICE_WEIGHT_PASSING`` and ``SERVICE_WEIGHT_WARNING``: whole numbers >= 1
    (Consul's defaults, 1 and 1, otherwise)."""
    given = []
    for key in ("weight_passing", "weight_warning"):
        value = metadata.get(key, "").strip()
        if value and (not value.isdigit() or int(value) < 1):
            report(f"SERVICE_{key.upper()}", f"{value!r} is not a whole number >= 1; using 1")
            value = ""
        given.append(int(value) if value else 1)
    return weights(given[0], given[1])
