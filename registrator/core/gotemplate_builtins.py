"""Pure core: text/template's builtin functions, as Go defines them (funcs.go).

``and`` and ``or`` are in ``gotemplate`` (they short-circuit); here are ``not``, ``eq``,
``ne``, ``lt``, ``le``, ``gt``, ``ge``, ``index``, ``slice``, ``len``, ``print``,
``printf``, ``println``. Strings are indexed, sliced and measured in UTF-8 bytes, as in Go.
"""

from __future__ import annotations

from typing import Any

from registrator.core.gofmt import (
    NO_VALUE,
    GoMap,
    GoStruct,
    format_value,
    sprint,
    sprintf,
    sprintln,
    truth,
    type_name,
)
from registrator.core.gotemplate import ANY, VALUE, FuncError, GoFunc


def _kind(value: Any) -> str:
    if value is None or value is NO_VALUE:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return "other"


def eq(arg1: Any, *args: Any) -> bool:
    """arg1 == arg2 || arg1 == arg3 ...; values of different kinds are an error unless one
    is nil or no value (then simply not equal)."""
    if not args:
        raise FuncError("missing argument for comparison")
    kind1 = _kind(arg1)
    if kind1 == "other" and not isinstance(arg1, GoStruct):
        raise FuncError(f"non-comparable type {format_value(arg1)}: {type_name(arg1)}")
    for arg in args:
        kind2 = _kind(arg)
        if kind1 != kind2:
            if "nil" in (kind1, kind2):
                continue
            raise FuncError("incompatible types for comparison")
        if kind2 == "other" and not isinstance(arg, GoStruct):
            raise FuncError(f"non-comparable type {format_value(arg)}: {type_name(arg)}")
        if arg1 == arg:
            return True
    return False


def ne(arg1: Any, arg2: Any) -> bool:
    return not eq(arg1, arg2)


def lt(arg1: Any, arg2: Any) -> bool:
    kind1, kind2 = _kind(arg1), _kind(arg2)
    if kind1 not in ("int", "float", "string") or kind2 not in ("int", "float", "string"):
        raise FuncError("invalid type for comparison")
    if kind1 != kind2:
        raise FuncError("incompatible types for comparison")
    return bool(arg1 < arg2)


def le(arg1: Any, arg2: Any) -> bool:
    return lt(arg1, arg2) or eq(arg1, arg2)


def gt(arg1: Any, arg2: Any) -> bool:
    return not le(arg1, arg2)


def ge(arg1: Any, arg2: Any) -> bool:
    return not lt(arg1, arg2)


def not_(arg: Any) -> bool:
    return not truth(arg)


def _sequence(item: Any) -> Any:
    return item.encode() if isinstance(item, str) else item


def index(item: Any, *indexes: Any) -> Any:
    """item[i][j]...: a slice's or string's element (a string's is a byte), or a map's
    value (the zero value when the key is missing)."""
    if item is None or item is NO_VALUE:
        raise FuncError("index of untyped nil")
    for key in indexes:
        if isinstance(item, (list, str, bytes)):
            if not isinstance(key, int) or isinstance(key, bool):
                raise FuncError(f"cannot index slice/array with type {type_name(key)}")
            sequence = _sequence(item)
            if key < 0 or key >= len(sequence):
                raise FuncError(f"index out of range: {key}")
            item = sequence[key]
        elif isinstance(item, dict):
            if not isinstance(key, str):
                raise FuncError(f"value has type {type_name(key)}; should be string")
            zero = item.zero if isinstance(item, GoMap) else NO_VALUE
            item = item.get(key, zero)
        elif item is None or item is NO_VALUE:
            raise FuncError("index of untyped nil")
        else:
            raise FuncError(f"can't index item of type {type_name(item)}")
    return item


def slice_(item: Any, *indexes: Any) -> Any:
    """item[i:j] (or item[i:j:k] of a slice)."""
    if item is None or item is NO_VALUE:
        raise FuncError("slice of untyped nil")
    if len(indexes) > 3:
        raise FuncError(f"too many slice indexes: {len(indexes)}")
    if not isinstance(item, (list, str, bytes)):
        raise FuncError(f"can't slice item of type {type_name(item)}")
    if isinstance(item, str) and len(indexes) == 3:
        raise FuncError("cannot 3-index slice a string")
    sequence = _sequence(item)
    bounds = [0, len(sequence), len(sequence)]
    for position, key in enumerate(indexes):
        if not isinstance(key, int) or isinstance(key, bool):
            raise FuncError(f"cannot index slice/array with type {type_name(key)}")
        if key < 0 or key > len(sequence):
            raise FuncError(f"index out of range: {key}")
        bounds[position] = key
    if len(indexes) >= 2 and bounds[0] > bounds[1]:
        raise FuncError(f"invalid slice index: {bounds[0]} > {bounds[1]}")
    if len(indexes) == 3 and bounds[1] > bounds[2]:
        raise FuncError(f"invalid slice index: {bounds[1]} > {bounds[2]}")
    part = sequence[bounds[0] : bounds[1]]
    return part.decode(errors="replace") if isinstance(item, str) else part


def length(item: Any) -> int:
    if isinstance(item, str):
        return len(item.encode())
    if isinstance(item, (list, dict, bytes)):
        return len(item)
    if item is NO_VALUE:
        raise FuncError("reflect: call of reflect.Value.Type on zero Value")
    if item is None:
        raise FuncError("len of nil pointer")
    raise FuncError(f"len of type {type_name(item)}")


def printf(fmt: str, *args: Any) -> str:
    return sprintf(fmt, list(args))


BUILTINS = {
    "not": GoFunc(not_, (VALUE,)),
    "eq": GoFunc(eq, (VALUE,), VALUE),
    "ne": GoFunc(ne, (VALUE, VALUE)),
    "lt": GoFunc(lt, (VALUE, VALUE)),
    "le": GoFunc(le, (VALUE, VALUE)),
    "gt": GoFunc(gt, (VALUE, VALUE)),
    "ge": GoFunc(ge, (VALUE, VALUE)),
    "index": GoFunc(index, (VALUE,), VALUE),
    "slice": GoFunc(slice_, (VALUE,), VALUE),
    "len": GoFunc(length, (VALUE,)),
    "print": GoFunc(lambda *args: sprint(list(args)), (), ANY),
    "println": GoFunc(lambda *args: sprintln(list(args)), (), ANY),
    "printf": GoFunc(printf, ("string",), ANY),
}
