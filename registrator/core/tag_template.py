"""Pure core: ``-tags`` as gliderlabs/registrator v7.4 reads it, a Go text/template over the
container's inspect (under go-dockerclient's field names, ``godocker_data``) with the
original's functions (bridge/bridge.go): strSlice, sIndex, mIndex, toUpper, toLower,
replace, join, split, splitIndex, matchFirstElement, matchAllElements, httpGet, jsonParse.

Each function keeps the original's argument order and edge cases: a negative index counts
from the end, an index past either end gives the first or last element, and an index into
an empty list fails as Go's does (``index out of range [0] with length 0``), which fails the
template for that container only. ``httpGet`` is the only I/O: the caller passes the fetch
(URL -> body, ``b""`` on any failure); one render fetches each URL once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from registrator.core.godocker_data import go_container
from registrator.core.gotemplate import ANY, FuncError, GoFunc, Template
from registrator.core.gotemplate_builtins import BUILTINS

Fetch = Callable[[str], bytes]
TEMPLATE_START = "{{"


def is_template(text: str) -> bool:
    """A ``-tags`` with no ``{{`` is a plain comma list, as before."""
    return TEMPLATE_START in text


def _bytes_of(text: str) -> bytes:
    return text.encode()


def str_slice(value: str, *bounds: int) -> str:
    """``strSlice s start [end]``: s[start:end] in bytes; a bound past the end gives s
    unchanged, an end before the start gives s[start:]; a negative bound fails."""
    raw = _bytes_of(value)
    if len(bounds) == 1 and len(raw) >= bounds[0]:
        return _cut(raw, bounds[0], None)
    if len(bounds) == 2 and len(raw) >= bounds[0] and len(raw) >= bounds[1]:
        start, end = bounds
        if start == 0:
            return _cut(raw, None, end)
        if end < start:
            return _cut(raw, start, None)
        return _cut(raw, start, end)
    return value


def _cut(raw: bytes, start: int | None, end: int | None) -> str:
    """raw[start:end], failing as Go's slice expression does on a negative bound."""
    if end is not None and end < 0:
        raise FuncError(f"runtime error: slice bounds out of range [:{end}]")
    if start is not None and start < 0:
        raise FuncError(f"runtime error: slice bounds out of range [{start}:]")
    return raw[start:end].decode(errors="replace")


def s_index(index: int, items: list[str]) -> str:
    """``sIndex i s``: s[i]; i < 0 counts from the end (-1: the last); past the start the
    first element, past the end the last. An empty s fails."""
    if index < 0:
        index = -index
        if index >= len(items):
            return _element(items, 0)
        return _element(items, len(items) - index)
    if index >= len(items):
        return _element(items, len(items) - 1)
    return items[index]


def _element(items: list[str], index: int) -> str:
    if index < 0:
        raise FuncError(f"runtime error: index out of range [{index}]")
    if index >= len(items):
        raise FuncError(f"runtime error: index out of range [{index}] with length {len(items)}")
    return items[index]


def go_split(value: str, sep: str) -> list[str]:
    """strings.Split: an empty sep splits into characters; "" with an empty sep is []."""
    if sep == "":
        return list(value)
    return value.split(sep)


def go_replace(count: int, old: str, new: str, value: str) -> str:
    """``replace n old new s``: strings.Replace(s, old, new, n); n < 0: every one."""
    return value.replace(old, new, -1 if count < 0 else count)


def _case(value: str, upper: bool) -> str:
    """Go's simple case mapping, rune by rune (``ß`` stays ``ß``)."""
    out = []
    for char in value:
        mapped = char.upper() if upper else char.lower()
        out.append(mapped if len(mapped) == 1 else char)
    return "".join(out)


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern.replace(r"\z", r"\Z"))
    except re.error as exc:
        raise FuncError(f"regexp: Compile(`{pattern}`): error parsing regexp: {exc}") from None


def match_first(pattern: str, items: list[str]) -> str:
    regex = _compile(pattern)
    return next((item for item in items if regex.search(item)), "")


def match_all(pattern: str, items: list[str]) -> list[str]:
    regex = _compile(pattern)
    return [item for item in items if regex.search(item)]


def json_parse(body: bytes, path: str) -> str:
    """``jsonParse b "k1::k2"``: the value at that path (``[n]`` indexes an array), as
    buger/jsonparser's Get gives it: a string without its quotes (escapes kept), anything
    else as its JSON text; "" when the path is not there."""
    text = body.decode(errors="replace")
    try:
        start, end = _find(text, path.split("::"))
    except (ValueError, IndexError):
        return ""
    found = text[start:end]
    return found[1:-1] if found.startswith('"') else found


_DECODER = json.JSONDecoder()
_WS = re.compile(r"[ \t\r\n]*")


def _find(text: str, keys: list[str]) -> tuple[int, int]:
    """The span of the value at ``keys``; ValueError when it is not there."""
    pos = _WS.match(text, 0).end()  # type: ignore[union-attr]
    for key in keys:
        array_index = re.fullmatch(r"\[(\d+)\]", key)
        if text[pos] == "[" and array_index:
            pos = _nth(text, pos, int(array_index.group(1)))
        elif text[pos] == "{":
            pos = _member(text, pos, key)
        else:
            raise ValueError(key)
    return pos, _DECODER.raw_decode(text, pos)[1]


def _member(text: str, pos: int, key: str) -> int:
    pos += 1
    while True:
        pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
        if text[pos] == "}":
            raise ValueError(key)
        name, pos = _DECODER.raw_decode(text, pos)
        pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
        if text[pos] != ":":
            raise ValueError(key)
        pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
        if name == key:
            return pos
        pos = _WS.match(text, _DECODER.raw_decode(text, pos)[1]).end()  # type: ignore[union-attr]
        if text[pos] == ",":
            pos += 1


def _nth(text: str, pos: int, wanted: int) -> int:
    pos += 1
    for _ in range(wanted):
        pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
        pos = _WS.match(text, _DECODER.raw_decode(text, pos)[1]).end()  # type: ignore[union-attr]
        if text[pos] != ",":
            raise ValueError(wanted)
        pos += 1
    pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
    if text[pos] == "]":
        raise ValueError(wanted)
    return pos


def original_functions(fetch: Fetch) -> dict[str, GoFunc]:
    """The original's FuncMap, with its Go parameter types; ``httpGet`` calls ``fetch``."""
    return {
        "strSlice": GoFunc(str_slice, ("string",), "int"),
        "sIndex": GoFunc(s_index, ("int", "[]string")),
        "mIndex": GoFunc(
            lambda key, mapping: mapping.get(key, ""), ("string", "map[string]string")
        ),
        "toUpper": GoFunc(lambda value: _case(value, True), ("string",)),
        "toLower": GoFunc(lambda value: _case(value, False), ("string",)),
        "replace": GoFunc(go_replace, ("int", "string", "string", "string")),
        "join": GoFunc(lambda sep, items: sep.join(items), ("string", "[]string")),
        "split": GoFunc(lambda sep, value: go_split(value, sep), ("string", "string")),
        "splitIndex": GoFunc(
            lambda index, sep, value: s_index(index, go_split(value, sep)),
            ("int", "string", "string"),
        ),
        "matchFirstElement": GoFunc(match_first, ("string", "[]string")),
        "matchAllElements": GoFunc(match_all, ("string", "[]string")),
        "httpGet": GoFunc(fetch, ("string",)),
        "jsonParse": GoFunc(json_parse, ("[]uint8", "string")),
    }


def _no_fetch(url: str) -> bytes:
    return b""


class TagTemplate:
    """A parsed ``-tags`` template. ``parse`` fails (TemplateError) on a template that does
    not parse or calls an unknown function; ``render`` on one that fails for this container."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._template = Template(source, {**BUILTINS, **original_functions(_no_fetch)})

    def __repr__(self) -> str:
        return f"TagTemplate({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TagTemplate) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

    def render(self, container: Mapping[str, Any], fetch: Fetch | None = None) -> str:
        """The template's text for one container's inspect (Docker's JSON)."""
        fetched: dict[str, bytes] = {}

        def fetch_once(url: str) -> bytes:
            if url not in fetched:
                fetched[url] = (fetch or _no_fetch)(url)
            return fetched[url]

        http_get = {"httpGet": GoFunc(fetch_once, ("string",))}
        return self._template.execute(go_container(container), http_get)


__all__ = ["ANY", "Fetch", "TagTemplate", "is_template"]
