"""Pure core: runs a Go text/template (parsed by ``gotemplate_parse``) over Go-like data.

Go's rules: truth (``gofmt.truth``), ``<no value>`` for a missing map key, an error for an
unknown struct field, typed function arguments (``expected string; found 5``), a panic in a
function as ``error calling f: ...``, ``and``/``or`` short-circuiting and returning an
operand, ``range`` over maps in key order. The builtins are in ``gotemplate_builtins``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from registrator.core.gofmt import NO_VALUE, GoMap, GoNil, GoStruct, format_value, truth, type_name
from registrator.core.gotemplate_lex import Const, TemplateError, Text, line_col
from registrator.core.gotemplate_parse import (
    Action,
    Branch,
    Chain,
    Command,
    Dot,
    Field,
    Ident,
    Loop,
    Pipe,
    Variable,
    parse,
)

# Parameter types a function declares: a value is checked against them as Go would.
ANY = "interface {}"  # any value; no value becomes nil
VALUE = "reflect.Value"  # the builtins: any value, no value kept
_NILABLE = {"[]string": list, "map[string]string": dict, "[]uint8": bytes}
_ZERO: dict[str, Callable[[], Any]] = {"[]string": list, "map[string]string": dict,
                                       "[]uint8": bytes}  # fmt: skip


class GoFunc(NamedTuple):
    """A template function: what it does, its parameters' Go types, and the type of its
    variadic tail (``...int``), if it has one."""

    call: Callable[..., Any]
    params: tuple[str, ...]
    variadic: str = ""


class FuncError(Exception):
    """What a function's panic or error says (``index out of range [0] with length 0``)."""


class _Jump(Exception):
    def __init__(self, kind: str) -> None:
        self.kind = kind


_NOT_GIVEN: Any = object()  # no piped value for a command


class Template:
    """A parsed template and the functions it may call; ``execute`` runs it."""

    def __init__(self, source: str, funcs: Mapping[str, GoFunc]) -> None:
        self.source = source
        self.funcs = dict(funcs)
        self.tree = parse(source, set(self.funcs) | {"and", "or"})

    def execute(self, data: Any, funcs: Mapping[str, GoFunc] | None = None) -> str:
        """The text for ``data``; ``funcs`` replaces some functions for this run only."""
        run = _Run(self, data, {**self.funcs, **(funcs or {})})
        run.walk(data, self.tree)
        return "".join(run.out)


def _valid(value: Any, typ: str, fail: Callable[[str], TemplateError]) -> Any:
    """Go's validateType: ``value`` as an argument of type ``typ``."""
    if value is NO_VALUE:
        if typ == VALUE:
            return value
        if typ == ANY:
            return None
        if typ in _ZERO:
            return _ZERO[typ]()
        raise fail(f"invalid value; expected {typ}")
    if typ in (ANY, VALUE):
        return value
    ok = {
        "string": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "[]string": isinstance(value, list) and all(isinstance(v, str) for v in value),
        "map[string]string": isinstance(value, dict)
        and all(isinstance(v, str) for v in value.values()),
        "[]uint8": isinstance(value, bytes),
    }.get(typ, False)
    if not ok:
        raise fail(f"wrong type for value; expected {typ}; got {type_name(value)}")
    return value


def node_text(node: Any) -> str:
    """A node as Go prints it in ``executing "tags" at <...>``."""
    if isinstance(node, Field):
        return "." + ".".join(node.names)
    if isinstance(node, Variable):
        return node.name + "".join("." + f for f in node.fields)
    if isinstance(node, Dot):
        return "."
    if isinstance(node, Ident):
        return node.name
    if isinstance(node, Const):
        return node.text
    if isinstance(node, Chain):
        return node_text(node.node) + "".join("." + f for f in node.fields)
    if isinstance(node, Pipe):
        decl = ", ".join(node.decl) + (" = " if node.is_assign else " := ") if node.decl else ""
        return decl + " | ".join(map(node_text, node.cmds))
    if isinstance(node, Command):
        return " ".join(f"({node_text(a)})" if isinstance(a, Pipe) else node_text(a)
                        for a in node.args)  # fmt: skip
    return "?"


class _Run:
    def __init__(self, template: Template, data: Any, funcs: dict[str, GoFunc]) -> None:
        self.template = template
        self.funcs = funcs
        self.vars: list[list[Any]] = [["$", data]]
        self.out: list[str] = []

    def error(self, node: Any, message: str) -> TemplateError:
        where = line_col(self.template.source, node.pos)
        return TemplateError(
            f'template: tags:{where}: executing "tags" at <{node_text(node)}>: {message}'
        )

    def walk(self, dot: Any, nodes: tuple[Any, ...]) -> None:
        for node in nodes:
            if isinstance(node, Text):
                self.out.append(node.text)
            elif isinstance(node, Action):
                value = self.pipeline(dot, node.pipe)
                if not node.pipe.decl:  # a nil interface is no value to Go
                    self.out.append(format_value(NO_VALUE if value is None else value, False))
            elif isinstance(node, Branch):
                self.branch(dot, node)
            elif isinstance(node, Loop):
                raise _Jump(node.kind)

    def branch(self, dot: Any, node: Branch) -> None:
        mark = len(self.vars)
        try:
            if node.kind == "range":
                self.range(dot, node)
                return
            value = self.pipeline(dot, node.pipe)
            if truth(value):
                self.walk(value if node.kind == "with" else dot, node.body)
            else:
                self.walk(dot, node.otherwise)
        finally:
            del self.vars[mark:]

    def range(self, dot: Any, node: Branch) -> None:
        value = self.pipeline(dot, node.pipe._replace(decl=()))
        if isinstance(value, dict):
            items: list[tuple[Any, Any]] = [(k, value[k]) for k in sorted(value)]
        elif isinstance(value, (list, bytes)):
            items = list(enumerate(value))
        elif value is None or value is NO_VALUE:
            items = []
        else:
            raise self.error(node.pipe, f"range can't iterate over {format_value(value)}")
        if not items:
            self.walk(dot, node.otherwise)
            return
        mark = len(self.vars)
        for key, elem in items:
            del self.vars[mark:]
            names = node.pipe.decl
            if len(names) == 1:
                self.vars.append([names[0], elem])
            elif len(names) == 2:
                self.vars += [[names[0], key], [names[1], elem]]
            try:
                self.walk(elem, node.body)
            except _Jump as jump:
                if jump.kind == "break":
                    break

    def pipeline(self, dot: Any, pipe: Pipe) -> Any:
        value = _NOT_GIVEN
        for cmd in pipe.cmds:
            value = self.command(dot, cmd, value)
        for name in pipe.decl:
            if pipe.is_assign:
                next(v for v in reversed(self.vars) if v[0] == name)[1] = value
            else:
                self.vars.append([name, value])
        return value

    def command(self, dot: Any, cmd: Command, final: Any) -> Any:
        first, args = cmd.args[0], cmd.args[1:]
        has_args = bool(args) or final is not _NOT_GIVEN
        if isinstance(first, Ident):
            return self.call(dot, cmd, args, final)
        if isinstance(first, Field):
            return self.fields(first, dot, first.names, has_args)
        if isinstance(first, Variable):
            return self.fields(first, self.variable(first), first.fields, has_args)
        if isinstance(first, Chain):
            return self.fields(first, self.arg(dot, first.node), first.fields, has_args)
        if has_args:
            raise self.error(first, f"can't give argument to non-function {node_text(first)}")
        if isinstance(first, Const) and first.value is None:
            raise self.error(first, "nil is not a command")
        return self.arg(dot, first)

    def variable(self, node: Variable) -> Any:
        return next(v for v in reversed(self.vars) if v[0] == node.name)[1]

    def arg(self, dot: Any, node: Any) -> Any:
        """An operand's value, with no type expected."""
        if isinstance(node, Const):
            return node.value
        if isinstance(node, Dot):
            return dot
        if isinstance(node, Pipe):
            mark = len(self.vars)
            value = self.pipeline(dot, node)
            del self.vars[mark:]
            return value
        return self.command(dot, Command((node,), node.pos), _NOT_GIVEN)

    def fields(self, node: Any, receiver: Any, names: tuple[str, ...], has_args: bool) -> Any:
        for index, name in enumerate(names):
            last = index == len(names) - 1
            receiver = self.field(node, receiver, name, has_args and last)
        return receiver

    def field(self, node: Any, receiver: Any, name: str, has_args: bool) -> Any:
        if receiver is NO_VALUE:
            return NO_VALUE
        if isinstance(receiver, GoStruct):
            if name not in receiver.fields:
                raise self.error(node, f"can't evaluate field {name} in type {receiver.type_name}")
            if has_args:
                raise self.error(node, f"{name} has arguments but cannot be invoked as function")
            return receiver.fields[name]
        if isinstance(receiver, dict):
            if has_args:
                raise self.error(node, f"{name} is not a method but has arguments")
            return receiver.get(name, NO_VALUE)
        if isinstance(receiver, GoNil):
            raise self.error(node, f"nil pointer evaluating {receiver.type_name}.{name}")
        if receiver is None:
            raise self.error(node, f"nil pointer evaluating interface {{}}.{name}")
        raise self.error(node, f"can't evaluate field {name} in type {type_name(receiver)}")

    def typed_arg(self, dot: Any, node: Any, typ: str) -> Any:
        """Go's evalArg: a constant must fit the parameter; other values are checked."""
        if isinstance(node, Const):
            value = node.value
            if value is None:
                if typ in _ZERO:
                    return _ZERO[typ]()
                if typ in (ANY, VALUE):
                    return None
                raise self.error(node, f"cannot assign nil to {typ}")
            if typ == "int":
                integral = isinstance(value, float) and value.is_integer()
                if (isinstance(value, int) and not isinstance(value, bool)) or integral:
                    return int(value)
                raise self.error(node, f"expected integer; found {node.text}")
            if typ == "string" and not isinstance(value, str):
                raise self.error(node, f"expected string; found {node.text}")
            if typ in _NILABLE:
                raise self.error(node, f"can't handle {node.text} for arg of type {typ}")
            return value
        return self.checked(node, self.arg(dot, node), typ)

    def checked(self, node: Any, value: Any, typ: str) -> Any:
        return _valid(value, typ, lambda message: self.error(node, message))

    def call(self, dot: Any, cmd: Command, args: tuple[Any, ...], final: Any) -> Any:
        ident = cmd.args[0]
        name = ident.name
        if name in ("and", "or"):
            return self.and_or(dot, ident, args, final)
        func = self.funcs[name]
        count = len(args) + (final is not _NOT_GIVEN)
        want = len(func.params)
        if count < want or (count > want and not func.variadic):
            least = "at least " if func.variadic else ""
            raise self.error(
                ident, f"wrong number of args for {name}: want {least}{want} got {count}"
            )
        types = [*func.params, *[func.variadic] * (count - want)]
        values = [self.typed_arg(dot, node, typ) for node, typ in zip(args, types, strict=False)]
        if final is not _NOT_GIVEN:
            values.append(self.checked(ident, final, types[-1]))
        try:
            return func.call(*values)
        except FuncError as exc:
            raise self.error(cmd, f"error calling {name}: {exc}") from None

    def and_or(self, dot: Any, ident: Ident, args: tuple[Any, ...], final: Any) -> Any:
        """``and``/``or``: evaluate operands left to right, stopping at the first false
        (``and``) or true (``or``) one, and return it (else the last)."""
        if not args and final is _NOT_GIVEN:
            raise self.error(ident, f"wrong number of args for {ident.name}: want at least 1 got 0")
        value: Any = None
        operands = [*args, final] if final is not _NOT_GIVEN else list(args)
        for operand in operands:
            value = operand if operand is final else self.typed_arg(dot, operand, VALUE)
            if truth(value) == (ident.name == "or"):
                return value
        return value


__all__ = ["ANY", "VALUE", "FuncError", "GoFunc", "GoMap", "Template", "TemplateError"]
