"""Pure core: Go text/template's lexer (``gotemplate_parse`` builds the tree from its tokens):
text pieces, the ``{{-``/``-}}`` trim markers, comments, and the tokens of an action; Go's
constants (strings with Go's escapes, raw strings, characters, numbers)."""

from __future__ import annotations

import ast
import re
from typing import Any, NamedTuple

KEYWORDS = {"if", "else", "end", "range", "with", "break", "continue", "define", "template",
            "block", "nil", "true", "false"}  # fmt: skip
_SPACE = " \t\r\n"
_NUMBER = re.compile(
    r"[+-]?(0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|"
    r"(\d[\d_]*)?\.?\d[\d_]*([eE][+-]?\d+)?|\d[\d_]*\.)"
)
_TOKEN = re.compile(
    r"""(?P<string>"(\\.|[^"\\\n])*")|(?P<raw>`[^`]*`)|(?P<char>'(\\.|[^'\\\n])+')"""
    r"|(?P<decl>:=)|(?P<punct>[|(),=])|(?P<var>\$\w*)|(?P<field>\.[^\W\d]\w*)"
    r"|(?P<number>[+-]?\.?\d[\w.+-]*)|(?P<dot>\.)|(?P<word>[^\W\d]\w*)"
)


class TemplateError(ValueError):
    """A template that does not parse, or fails on some data; the text reads as Go's."""


class Token(NamedTuple):
    kind: str  # string raw char decl punct var field number dot word end
    text: str
    pos: int
    spaced: bool  # preceded by white space


class Text(NamedTuple):
    text: str


class Const(NamedTuple):
    value: Any  # str, int, float, bool or None
    pos: int
    text: str


def line_col(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    return f"{line}:{pos - (text.rfind(chr(10), 0, pos) + 1)}"


def lex(text: str) -> list[Token | Text]:
    """Text pieces and action tokens; each action ends with an ``end`` token."""
    items: list[Token | Text] = []
    pos = 0
    while True:
        start = text.find("{{", pos)
        if start < 0:
            items.append(Text(text[pos:]))
            return items
        trim_left = text[start + 2 : start + 3] == "-" and text[start + 3 : start + 4] in _SPACE
        piece = text[pos:start]
        items.append(Text(piece.rstrip(_SPACE) if trim_left and piece else piece))
        inner = start + (4 if trim_left else 2)
        pos, trim_right = _lex_action(text, inner, items)
        if trim_right:
            while pos < len(text) and text[pos] in _SPACE:
                pos += 1


def _close_at(text: str, pos: int) -> tuple[int, bool] | None:
    """(end of the closing delimiter, trim right) when one starts at ``pos``."""
    if text.startswith("}}", pos):
        return pos + 2, False
    if text[pos : pos + 1] in _SPACE and text.startswith("-}}", pos + 1) and pos < len(text):
        return pos + 4, True
    return None


def _lex_action(text: str, pos: int, items: list[Token | Text]) -> tuple[int, bool]:
    rest = text[pos:].lstrip(_SPACE)
    if rest.startswith("/*"):
        start = len(text) - len(rest)
        end = text.find("*/", start + 2)
        if end < 0:
            raise TemplateError(f"template: tags:{line_col(text, start)}: unclosed comment")
        closed = _close_at(text, end + 2)
        if closed is None:
            raise TemplateError(
                f"template: tags:{line_col(text, end)}: comment ends before closing delimiter"
            )
        return closed
    spaced = True
    while True:
        if pos >= len(text):
            raise TemplateError(f"template: tags:{line_col(text, pos)}: unclosed action")
        closed = _close_at(text, pos)
        if closed is not None:
            items.append(Token("end", "}}", pos, spaced))
            return closed
        if text[pos] in _SPACE:
            pos += 1
            spaced = True
            continue
        match = _TOKEN.match(text, pos)
        if match is None or not match.lastgroup:
            char = text[pos]
            raise TemplateError(
                f"template: tags:{line_col(text, pos)}: unrecognized character in action: "
                f"U+{ord(char):04X} {char!r}"
            )
        items.append(Token(match.lastgroup, match.group(), pos, spaced))
        pos = match.end()
        spaced = False


def _number(text: str) -> int | float | None:
    if not _NUMBER.fullmatch(text):
        return None
    try:
        return int(text.replace("_", ""), 0)
    except ValueError:
        pass
    try:
        return float(text.replace("_", ""))
    except ValueError:
        return None


def constant(token: Token, source: str) -> Const:
    where = f"template: tags:{line_col(source, token.pos)}:"
    if token.kind == "raw":
        return Const(token.text[1:-1], token.pos, token.text)
    if token.kind in ("string", "char"):
        try:
            value = ast.literal_eval(token.text)
        except (SyntaxError, ValueError):
            raise TemplateError(f"{where} bad {token.kind} syntax: {token.text}") from None
        if token.kind == "char":
            if len(value) != 1:
                raise TemplateError(f"{where} malformed character constant: {token.text}")
            return Const(ord(value), token.pos, token.text)
        return Const(value, token.pos, token.text)
    number = _number(token.text)
    if number is None:
        raise TemplateError(f"{where} bad number syntax: {token.text!r}")
    return Const(number, token.pos, token.text)
