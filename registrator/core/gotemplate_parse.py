"""Pure core: Go's text/template language parsed into a tree from ``gotemplate_lex``'s tokens
(``gotemplate`` runs it).

The subset: text; actions with pipelines (``|``), parenthesised pipelines, variables (``$``,
``$x :=``, ``$x =``), fields and chains (``.A.B``, ``$x.A``, ``(pipe).A``), string, raw
string, character, number, bool and nil constants; ``if``/``else if``/``else``, ``range``
(with ``$i, $v :=``, ``else``, ``break``, ``continue``), ``with``, ``end``; comments; the
``{{-``/``-}}`` trim markers. ``define``, ``template`` and ``block`` are refused, and so is
``{{else with}}``, as by Go before 1.23 (the original is from 2021). Errors read as Go's:
``template: tags:1:14: function "foo" not defined``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, NamedTuple

from registrator.core.gotemplate_lex import (
    KEYWORDS,
    Const,
    TemplateError,
    Text,
    Token,
    constant,
    lex,
    line_col,
)


# The tree. Each node keeps ``pos``, its offset in the template text.
class Dot(NamedTuple):
    pos: int


class Field(NamedTuple):
    names: tuple[str, ...]  # .A.B
    pos: int


class Variable(NamedTuple):
    name: str  # "$x"
    fields: tuple[str, ...]  # $x.A.B
    pos: int


class Ident(NamedTuple):
    name: str  # a function
    pos: int


class Chain(NamedTuple):
    node: Any  # (pipe).A.B
    fields: tuple[str, ...]
    pos: int


class Command(NamedTuple):
    args: tuple[Any, ...]
    pos: int


class Pipe(NamedTuple):
    decl: tuple[str, ...]  # declared or assigned variables
    is_assign: bool
    cmds: tuple[Command, ...]
    pos: int


class Action(NamedTuple):
    pipe: Pipe


class Branch(NamedTuple):
    kind: str  # if, range, with
    pipe: Pipe
    body: tuple[Any, ...]
    otherwise: tuple[Any, ...]
    pos: int


class Loop(NamedTuple):
    kind: str  # break, continue
    pos: int


def parse(source: str, functions: Collection[str]) -> tuple[Any, ...]:
    """The tree of ``source``; raises TemplateError naming the line and column."""
    return _Parser(source, functions).parse()


class _Parser:
    def __init__(self, source: str, functions: Collection[str]) -> None:
        self.source = source
        self.functions = functions
        self.items = lex(source)
        self.at = 0
        self.scopes: list[set[str]] = [{"$"}]
        self.loops = 0

    def error(self, pos: int, message: str) -> TemplateError:
        return TemplateError(f"template: tags:{line_col(self.source, pos)}: {message}")

    def next(self) -> Token:
        item = self.items[self.at]
        self.at += 1
        assert isinstance(item, Token)
        return item

    def peek(self) -> Token:
        item = self.items[self.at]
        assert isinstance(item, Token)
        return item

    def parse(self) -> tuple[Any, ...]:
        body, stop = self.list_until()
        if stop is not None:
            raise self.error(stop.pos, f"unexpected {{{{{stop.text}}}}}")
        return body

    def list_until(self) -> tuple[tuple[Any, ...], Token | None]:
        """Nodes up to an ``{{end}}`` or ``{{else}}`` (returned, its ``}}`` not consumed for
        ``else``) or the end of the text (None)."""
        nodes: list[Any] = []
        while self.at < len(self.items):
            item = self.items[self.at]
            self.at += 1
            if isinstance(item, Text):
                if item.text:
                    nodes.append(item)
                continue
            if item.kind == "end":  # an empty action {{}}
                raise self.error(item.pos, "missing value for command")
            if item.kind == "word" and item.text in ("end", "else"):
                return tuple(nodes), item
            self.at -= 1
            nodes.append(self.action())
        return tuple(nodes), None

    def action(self) -> Any:
        token = self.peek()
        if token.kind == "word" and token.text in ("if", "range", "with"):
            self.next()
            return self.branch(token.text, token.pos)
        if token.kind == "word" and token.text in ("break", "continue"):
            self.next()
            if not self.loops:
                raise self.error(token.pos, f"{{{{{token.text}}}}} outside {{{{range}}}}")
            self.expect_end(token.text)
            return Loop(token.text, token.pos)
        if token.kind == "word" and token.text in ("define", "template", "block"):
            raise self.error(token.pos, f"{{{{{token.text}}}}} is not supported in -tags")
        return Action(self.pipeline("command", decl_ok=True))

    def expect_end(self, context: str) -> None:
        token = self.next()
        if token.kind != "end":
            raise self.error(token.pos, f"unexpected {token.text!r} in {context}")

    def branch(self, kind: str, pos: int) -> Branch:
        self.scopes.append(set())
        pipe = self.pipeline(kind, decl_ok=True, range_decl=kind == "range")
        self.loops += kind == "range"
        body, stop = self.list_until()
        self.loops -= kind == "range"
        otherwise: tuple[Any, ...] = ()
        if stop is None:
            raise self.error(len(self.source), f"unexpected EOF in {kind}")
        if stop.text == "else":
            follow = self.peek()
            if follow.kind == "word" and follow.text == "if" and kind != "range":
                self.next()  # {{else if ...}}: an {{if}} inside the else, sharing its {{end}}
                otherwise = (self.branch(follow.text, follow.pos),)
                self.scopes.pop()
                return Branch(kind, pipe, body, otherwise, pos)
            self.expect_end("else")
            otherwise, stop = self.list_until()
            if stop is None or stop.text != "end":
                where = stop.pos if stop is not None else len(self.source)
                raise self.error(where, f"expected end; found {stop.text if stop else 'EOF'}")
        self.expect_end("end")
        self.scopes.pop()
        return Branch(kind, pipe, body, otherwise, pos)

    def declared(self, name: str, pos: int) -> None:
        if not any(name in scope for scope in self.scopes):
            raise self.error(pos, f"undefined variable {name!r}".replace("'", '"'))

    def pipeline(self, context: str, decl_ok: bool = False, range_decl: bool = False) -> Pipe:
        start = self.peek().pos
        decl, is_assign = self.declarations(range_decl) if decl_ok else ((), False)
        cmds: list[Command] = []
        while True:
            token = self.peek()
            if token.kind == "end" or (token.kind == "punct" and token.text == ")"):
                break
            cmds.append(self.command())
            token = self.peek()
            if token.kind == "punct" and token.text == "|":
                self.next()  # Go (1.19) accepts a "|" with nothing after it
        if context != "(":
            self.expect_end(context)
        if not cmds:
            raise self.error(start, f"missing value for {context}")
        for index, cmd in enumerate(cmds[1:], 2):
            if isinstance(cmd.args[0], (Const, Dot)):
                raise self.error(cmd.pos, f"non executable command in pipeline stage {index}")
        for name in decl:
            if not is_assign:
                self.scopes[-1].add(name)
        return Pipe(decl, is_assign, tuple(cmds), start)

    def declarations(self, range_decl: bool) -> tuple[tuple[str, ...], bool]:
        """``$x :=``, ``$x =`` or (in a range) ``$i, $v :=`` at the start of a pipeline."""
        at = self.at
        names: list[str] = []
        while self.peek().kind == "var":
            names.append(self.next().text)
            token = self.next()
            if token.kind == "decl" or (token.kind == "punct" and token.text == "="):
                if token.text == "=":
                    for name in names:
                        self.declared(name, token.pos)
                if len(names) > (2 if range_decl else 1):
                    raise self.error(
                        token.pos,
                        f"too many declarations in {'range' if range_decl else 'command'}",
                    )
                return tuple(names), token.text == "="
            if not (token.kind == "punct" and token.text == "," and range_decl):
                break
        self.at = at
        return (), False

    def command(self) -> Command:
        start = self.peek().pos
        args: list[Any] = []
        while True:
            token = self.peek()
            if token.kind == "end" or (token.kind == "punct" and token.text in "|)"):
                break
            if args and not token.spaced and token.kind != "punct":
                raise self.error(token.pos, f"unexpected {token.text!r} in operand")
            args.append(self.operand())
        if not args:
            token = self.peek()
            if token.kind == "punct":
                raise self.error(token.pos, f'unexpected "{token.text}" in command')
            raise self.error(start, "missing value for command")
        return Command(tuple(args), start)

    def operand(self) -> Any:
        node = self.term()
        fields: list[str] = []
        chain_pos = self.peek().pos  # Go places a chain at its second part
        while self.peek().kind == "field" and not self.peek().spaced:
            fields.append(self.next().text[1:])
        if not fields:
            return node
        if isinstance(node, Field):
            return Field(node.names + tuple(fields), chain_pos)
        if isinstance(node, Variable):
            return Variable(node.name, node.fields + tuple(fields), chain_pos)
        if isinstance(node, (Const, Dot)):
            raise self.error(node.pos, "unexpected . after term")
        return Chain(node, tuple(fields), chain_pos)

    def term(self) -> Any:
        token = self.next()
        if token.kind == "word":
            if token.text in ("true", "false"):
                return Const(token.text == "true", token.pos, token.text)
            if token.text == "nil":
                return Const(None, token.pos, "nil")
            if token.text in KEYWORDS or token.text not in self.functions:
                raise self.error(token.pos, f'function "{token.text}" not defined')
            return Ident(token.text, token.pos)
        if token.kind == "dot":
            return Dot(token.pos)
        if token.kind == "field":
            return Field((token.text[1:],), token.pos)
        if token.kind == "var":
            self.declared(token.text, token.pos)
            return Variable(token.text, (), token.pos)
        if token.kind in ("string", "raw", "char", "number"):
            return constant(token, self.source)
        if token.kind == "punct" and token.text == "(":
            pipe = self.pipeline("(")
            close = self.next()
            if close.text != ")":
                raise self.error(close.pos, "unclosed left paren")
            return pipe
        raise self.error(token.pos, f"unexpected {token.text!r} in operand")
