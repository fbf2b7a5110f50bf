"""Pure core: Go's values as text/template sees them, and Go's fmt (``print``, ``println``,
``printf``) over them.

Go values are plain Python ones: ``str``, ``int``, ``float``, ``bool``, ``bytes`` (a
``[]byte``), ``list`` (a slice), ``dict`` (a map; ``GoMap`` when its value type is known),
``GoStruct`` (a struct, by its Go type name), ``None`` (nil) and ``NO_VALUE`` (what a missing
map key gives: Go's invalid ``reflect.Value``, printed ``<no value>``).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, NamedTuple


class _NoValue:
    def __repr__(self) -> str:
        return "NO_VALUE"


NO_VALUE: Any = _NoValue()


class GoMap(dict[str, Any]):
    """A Go map whose value type is known: a missing key's zero value, and the type's name."""

    def __init__(self, items: dict[str, Any], elem: str = "string", zero: Any = "") -> None:
        super().__init__(items)
        self.elem = elem
        self.zero = zero


class GoStruct(NamedTuple):
    """A Go struct (or a pointer to one: ``type_name`` starts with ``*``)."""

    type_name: str
    fields: dict[str, Any]


class GoNil(NamedTuple):
    """A nil pointer of a known type (``.Node`` when Docker sent none): prints ``<nil>``;
    a field of it is an error."""

    type_name: str


def type_name(value: Any) -> str:
    """Go's name for the type of ``value``, as its error messages print it."""
    if value is None or value is NO_VALUE:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bytes):
        return "[]uint8"
    if isinstance(value, (GoStruct, GoNil)):
        return value.type_name
    if isinstance(value, GoMap):
        return f"map[string]{value.elem}"
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, list):
        return "[]string" if all(isinstance(v, str) for v in value) else "[]interface {}"
    return type(value).__name__


def truth(value: Any) -> bool:
    """Go's truth: false, 0, nil, an empty string, slice or map, and no value are false."""
    if value is None or value is NO_VALUE or isinstance(value, GoNil):
        return False
    if isinstance(value, GoStruct):
        return True
    if isinstance(value, (bool, int, float)):
        return bool(value)
    return len(value) > 0


def format_float(value: float, verb: str = "g", precision: int = -1) -> str:
    """strconv.FormatFloat for 'g' (shortest when precision is -1), 'e' and 'f'."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if verb == "f":
        return f"{value:.{6 if precision < 0 else precision}f}"
    if verb == "e":
        text = f"{value:.{6 if precision < 0 else precision}e}"
        return re.sub(r"e([+-])(\d)$", r"e\g<1>0\2", text)
    if precision >= 0:
        text = f"{value:.{max(precision, 1)}g}"
        return re.sub(r"e([+-])(\d)$", r"e\g<1>0\2", text)
    _sign, digits, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    text_digits = "".join(map(str, digits)) or "0"
    point = len(text_digits) + exponent  # digits before the decimal point
    neg = "-" if value < 0 or (value == 0 and str(value).startswith("-")) else ""
    exp = point - 1
    if value != 0 and (exp < -4 or exp >= 6):
        mantissa = text_digits[0] + ("." + text_digits[1:] if len(text_digits) > 1 else "")
        return f"{neg}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if value == 0:
        return neg + "0"
    if point <= 0:
        return f"{neg}0.{'0' * -point}{text_digits}"
    if point >= len(text_digits):
        return neg + text_digits + "0" * (point - len(text_digits))
    return f"{neg}{text_digits[:point]}.{text_digits[point:]}"


def format_value(value: Any, top: bool = True) -> str:
    """fmt's %v (what an action prints): ``<no value>``, ``<nil>``, ``[a b]``, ``map[k:v]``."""
    if value is NO_VALUE:
        return "<no value>"
    if value is None or isinstance(value, GoNil):
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, (int, str)):
        return str(value)
    if isinstance(value, bytes):
        return "[" + " ".join(str(b) for b in value) + "]"
    if isinstance(value, list):
        return "[" + " ".join(format_value(v, False) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{k}:{format_value(value[k], False)}" for k in sorted(value))
        return "map[" + " ".join(items) + "]"
    if isinstance(value, GoStruct):
        inner = "{" + " ".join(format_value(v, False) for v in value.fields.values()) + "}"
        return "&" + inner if top and value.type_name.startswith("*") else inner
    return str(value)


def sprint(args: list[Any]) -> str:
    """fmt.Sprint: a space between two operands when neither is a string."""
    out = []
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(format_value(arg))
    return "".join(out)


def sprintln(args: list[Any]) -> str:
    return " ".join(format_value(arg) for arg in args) + "\n"


def go_quote(text: str) -> str:
    """strconv.Quote."""
    escapes = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v", "\\": "\\\\", '"': '\\"'}  # fmt: skip
    out = []
    for char in text:
        if char in escapes:
            out.append(escapes[char])
        elif char == " " or (char.isprintable() and not char.isspace()):
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


_VERB = re.compile(r"%([-+# 0]*)(\*|\d+)?(?:\.(\*|\d*))?(.?)", re.S)


class _Spec(NamedTuple):
    flags: str
    width: int | None
    precision: int | None
    verb: str


def _bad(verb: str, arg: Any) -> str:
    if arg is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({type_name(arg)}={format_value(arg)})"


def _integer(spec: _Spec, arg: int) -> str:
    bases = {"d": "d", "x": "x", "X": "X", "o": "o", "b": "b"}
    digits = format(abs(arg), bases[spec.verb])
    if spec.precision is not None:
        digits = digits.rjust(spec.precision, "0")
    if "#" in spec.flags and spec.verb in "xXo":
        digits = {"x": "0x", "X": "0X", "o": "0"}[spec.verb] + digits
    sign = "-" if arg < 0 else "+" if "+" in spec.flags else " " if " " in spec.flags else ""
    return sign + digits


def _one(spec: _Spec, arg: Any) -> str:
    """One verb applied to one operand, before padding."""
    verb = spec.verb
    if verb == "T":
        return type_name(arg)
    if verb == "v":
        if "#" not in spec.flags and isinstance(arg, str):
            return arg
        return format_value(arg)
    if isinstance(arg, bool):
        return ("true" if arg else "false") if verb == "t" else _bad(verb, arg)
    if isinstance(arg, int):
        if verb in "dxXob":
            return _integer(spec, arg)
        if verb == "c":
            return chr(arg)
        if verb == "q":
            return "'" + go_quote(chr(arg))[1:-1].replace("'", "\\'").replace('\\"', '"') + "'"
        return _bad(verb, arg)
    if isinstance(arg, float):
        if verb in "eEfFgG":
            text = format_float(arg, verb.lower(), -1 if spec.precision is None else spec.precision)
            sign = "+" if "+" in spec.flags and arg >= 0 else ""
            return sign + (text.upper() if verb.isupper() else text)
        return _bad(verb, arg)
    if isinstance(arg, (str, bytes)):
        text = arg.decode(errors="replace") if isinstance(arg, bytes) else arg
        if verb == "s":
            return text if spec.precision is None else text[: spec.precision]
        if verb == "q":
            return go_quote(text)
        if verb in "xX":
            raw = arg if isinstance(arg, bytes) else arg.encode()
            hexed = raw.hex()
            return hexed.upper() if verb == "X" else hexed
        if isinstance(arg, bytes) and verb == "d":
            return format_value(arg)
        return _bad(verb, arg)
    if isinstance(arg, list) and verb in "sdq":
        return "[" + " ".join(_one(spec._replace(precision=None), v) for v in arg) + "]"
    return _bad(verb, arg)


def _pad(spec: _Spec, text: str, numeric: bool) -> str:
    if spec.width is None or len(text) >= spec.width:
        return text
    if "-" in spec.flags:
        return text.ljust(spec.width)
    if "0" in spec.flags and numeric:
        sign = text[0] if text[:1] in "+- " else ""
        return sign + text[len(sign) :].rjust(spec.width - len(sign), "0")
    return text.rjust(spec.width)


def sprintf(fmt: str, args: list[Any]) -> str:
    """fmt.Sprintf for the verbs templates use: %v %s %d %q %x %X %t %c %o %b %e %f %g %T %%,
    with flags, widths and precisions (``*`` too); Go's ``%!d(string=x)`` for a bad operand,
    ``%!d(MISSING)`` and ``%!(EXTRA ...)``."""
    out: list[str] = []
    pos = used = 0
    while True:
        at = fmt.find("%", pos)
        if at < 0:
            out.append(fmt[pos:])
            break
        out.append(fmt[pos:at])
        match = _VERB.match(fmt, at)
        assert match is not None
        flags, width_text, precision_text, verb = match.groups()
        pos = match.end()
        numbers: list[int | None] = []
        for text in (width_text, precision_text):
            if text == "*":
                value = args[used] if used < len(args) else None
                used += 1
                numbers.append(value if isinstance(value, int) else None)
            else:
                numbers.append(int(text) if text else (0 if text == "" else None))
        if verb == "%":
            out.append("%")
            continue
        if not verb:
            out.append("%!(NOVERB)")
            break
        spec = _Spec(flags, numbers[0], numbers[1], verb)
        if used >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[used]
        used += 1
        numeric = isinstance(arg, (int, float)) and not isinstance(arg, bool)
        out.append(_pad(spec, _one(spec, arg), numeric))
    if used < len(args):
        extra = ", ".join(f"{type_name(a)}={format_value(a)}" for a in args[used:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)
