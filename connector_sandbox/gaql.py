"""A small Google Ads Query Language parser and evaluator, enough for the emulator.

It follows the published grammar (SELECT ... FROM ... WHERE c AND c ...
ORDER BY ... LIMIT n) and is strict where it matters for the connector: a
string literal must be terminated, may not span lines, and only backslash
escapes of a backslash or a quote are allowed. A name with a quote that a
client forgot to escape therefore fails here as it fails at Google (QueryError).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from google.protobuf import field_mask_pb2
from google.protobuf.descriptor import FieldDescriptor

T = TypeVar("T")

KEYWORDS = frozenset(
    {"SELECT", "FROM", "WHERE", "AND", "IN", "NOT", "ORDER", "BY", "ASC", "DESC", "LIMIT"}
)
OPERATORS = ("=", "!=", ">", ">=", "<", "<=", "IN", "NOT IN")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"'}
_SIMPLE = re.compile(
    r"(?P<number>-?\d+(?:\.\d+)?(?![A-Za-z_]))"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*)"
    r"|(?P<op>!=|>=|<=|=|<|>)"
    r"|(?P<punct>[(),])"
)
_FIELD = re.compile(r"[a-z][a-zA-Z0-9._]*")
_RESOURCE = re.compile(r"[a-z][a-zA-Z0-9_]*")


class GaqlError(ValueError):
    """A query Google would reject; `code` is a QueryErrorEnum name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Literal:
    """An unquoted literal such as ENABLED or TRUE."""

    text: str


Value = str | int | float | Literal


@dataclass(frozen=True)
class Condition:
    field: str
    operator: str
    values: tuple[Value, ...]  # one value, or the list of IN / NOT IN


@dataclass(frozen=True)
class Query:
    fields: tuple[str, ...]
    resource: str
    conditions: tuple[Condition, ...] = ()
    order_by: tuple[tuple[str, bool], ...] = ()  # (field, descending)
    limit: int | None = None


@dataclass(frozen=True)
class _Token:
    kind: str  # number, word, op, punct, string
    text: str
    value: Value


def parse(text: str) -> Query:
    return _Parser(tokenize(text)).query()


def tokenize(text: str) -> list[_Token]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        if text[pos] in "'\"":
            token, pos = _string(text, pos)
            tokens.append(token)
            continue
        match = _SIMPLE.match(text, pos)
        if match is None:
            raise GaqlError("BAD_SYMBOL", f"unexpected character {text[pos]!r} at {pos}")
        kind = match.lastgroup or ""
        raw = match.group()
        tokens.append(_Token(kind, raw, _number(raw) if kind == "number" else raw))
        pos = match.end()
    return tokens


def _string(text: str, start: int) -> tuple[_Token, int]:
    quote, pos = text[start], start + 1
    chars: list[str] = []
    while pos < len(text):
        char = text[pos]
        if char == quote:
            value = "".join(chars)
            return _Token("string", text[start : pos + 1], value), pos + 1
        if char in "\r\n":
            raise GaqlError("PROHIBITED_NEWLINE_IN_STRING", "a string may not contain a newline")
        if char == "\\":
            escaped = text[pos + 1 : pos + 2]
            if escaped not in _ESCAPES:
                raise GaqlError("BAD_ESCAPE_SEQUENCE", f"bad escape sequence at {pos}")
            chars.append(_ESCAPES[escaped])
            pos += 2
            continue
        chars.append(char)
        pos += 1
    raise GaqlError("STRING_NOT_TERMINATED", f"string starting at {start} is not terminated")


def _number(raw: str) -> int | float:
    return float(raw) if "." in raw else int(raw)


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._pos = 0

    def query(self) -> Query:
        self._keyword("SELECT", "EXPECTED_SELECT")
        fields = self._list(self._field)
        self._keyword("FROM", "EXPECTED_FROM")
        resource = self._word()
        if not _RESOURCE.fullmatch(resource):
            raise GaqlError("BAD_RESOURCE_TYPE_IN_FROM_CLAUSE", f"bad resource {resource!r}")
        conditions: list[Condition] = []
        if self._accept("WHERE"):
            conditions.append(self._condition())
            while self._accept("AND"):
                conditions.append(self._condition())
        order_by = self._order_by()
        limit = self._limit()
        if self._peek() is not None:
            raise GaqlError("UNEXPECTED_INPUT", f"unexpected {self._peek_text()!r}")
        return Query(tuple(fields), resource, tuple(conditions), order_by, limit)

    def _order_by(self) -> tuple[tuple[str, bool], ...]:
        if not self._accept("ORDER"):
            return ()
        self._keyword("BY", "EXPECTED_BY")

        def ordering() -> tuple[str, bool]:
            field = self._field()
            if self._accept("DESC"):
                return field, True
            self._accept("ASC")
            return field, False

        return tuple(self._list(ordering))

    def _limit(self) -> int | None:
        if not self._accept("LIMIT"):
            return None
        token = self._next("UNEXPECTED_END_OF_QUERY")
        if not isinstance(token.value, int) or token.value < 1:
            raise GaqlError("BAD_LIMIT_VALUE", f"bad LIMIT {token.text!r}")
        return token.value

    def _condition(self) -> Condition:
        field = self._field()
        operator = self._operator()
        if operator in ("IN", "NOT IN"):
            values = tuple(self._parenthesised())
            if not values:
                raise GaqlError("PROHIBITED_EMPTY_LIST_IN_CONDITION", "empty IN list")
            return Condition(field, operator, values)
        return Condition(field, operator, (self._value(),))

    def _operator(self) -> str:
        if self._accept("NOT"):
            self._keyword("IN", "BAD_OPERATOR")
            return "NOT IN"
        token = self._next("UNEXPECTED_END_OF_QUERY")
        text = token.text.upper()
        if text not in OPERATORS or token.kind not in ("op", "word"):
            raise GaqlError("BAD_OPERATOR", f"unsupported operator {token.text!r}")
        return text

    def _parenthesised(self) -> list[Value]:
        self._punct("(", "EXPECTED_LIST")
        if self._peek_text() == ")":
            self._pos += 1
            return []
        values = self._list(self._value)
        self._punct(")", "UNEXPECTED_INPUT")
        return values

    def _value(self) -> Value:
        token = self._next("UNEXPECTED_END_OF_QUERY")
        if token.kind in ("string", "number"):
            return token.value
        if token.kind == "word" and token.text.upper() not in KEYWORDS:
            return Literal(token.text)
        raise GaqlError("BAD_VALUE", f"expected a value, got {token.text!r}")

    def _field(self) -> str:
        name = self._word()
        if not _FIELD.fullmatch(name) or name.upper() in KEYWORDS:
            raise GaqlError("BAD_FIELD_NAME", f"bad field name {name!r}")
        return name

    def _list(self, item: Callable[[], T]) -> list[T]:
        items = [item()]
        while self._peek_text() == ",":
            self._pos += 1
            items.append(item())
        return items

    # -- token helpers

    def _peek(self) -> _Token | None:
        return self._tokens[self._pos] if self._pos < len(self._tokens) else None

    def _peek_text(self) -> str:
        token = self._peek()
        return token.text if token else ""

    def _next(self, code: str) -> _Token:
        token = self._peek()
        if token is None:
            raise GaqlError(code, "unexpected end of query")
        self._pos += 1
        return token

    def _word(self) -> str:
        token = self._next("UNEXPECTED_END_OF_QUERY")
        if token.kind != "word":
            raise GaqlError("UNEXPECTED_INPUT", f"expected a name, got {token.text!r}")
        return token.text

    def _accept(self, keyword: str) -> bool:
        token = self._peek()
        if token is not None and token.kind == "word" and token.text.upper() == keyword:
            self._pos += 1
            return True
        return False

    def _keyword(self, keyword: str, code: str) -> None:
        if not self._accept(keyword):
            raise GaqlError(code, f"expected {keyword}")

    def _punct(self, char: str, code: str) -> None:
        if self._peek_text() != char:
            raise GaqlError(code, f"expected {char!r}")
        self._pos += 1


# --------------------------------------------------------------------------- evaluation


# Resources a FROM resource may select fields of besides its own, metrics and segments.
ATTRIBUTED = {"click_view": frozenset({"campaign", "ad_group", "customer"})}


def run(query: Query, rows: list[Any]) -> list[Any]:
    """Filter, order, limit and mask full row protobufs (GoogleAdsRow) as Google would."""
    allowed = {query.resource, "metrics", "segments", *ATTRIBUTED.get(query.resource, ())}
    for name in query.fields:
        if name.split(".")[0] not in allowed:
            raise GaqlError(
                "PROHIBITED_RESOURCE_TYPE_IN_SELECT_CLAUSE", f"{name} is not of {query.resource}"
            )
    _check_date_range(query)
    if not rows:
        return []
    descriptor = rows[0].DESCRIPTOR
    selected = [pb_path(f, descriptor) for f in query.fields]
    matching = [r for r in rows if all(_matches(r, c) for c in query.conditions)]
    for name, descending in reversed(query.order_by):
        path = pb_path(name, descriptor)
        matching.sort(key=_order_key(path), reverse=descending)
    if query.limit is not None:
        matching = matching[: query.limit]
    # The resource name always comes back, selected or not.
    mask = field_mask_pb2.FieldMask(paths=[*selected, f"{query.resource}.resource_name"])
    return [_masked(r, mask) for r in matching]


def _check_date_range(query: Query) -> None:
    """Rows by day need a finite date range; click_view needs exactly one day."""
    dated = [c for c in query.conditions if c.field == "segments.date"]
    single_day = any(c.operator == "=" for c in dated)
    if query.resource == "click_view" and not single_day:
        code = "DATE_RANGE_TOO_WIDE" if dated else "EXPECTED_FILTERS_ON_DATE_RANGE"
        raise GaqlError(code, "click_view needs a filter on segments.date for a single day")
    if "segments.date" in query.fields and not dated:
        raise GaqlError("EXPECTED_FILTERS_ON_DATE_RANGE", "segments.date needs a date range")


def pb_path(name: str, descriptor: Any) -> str:
    """The protobuf path of a GAQL leaf field; UNRECOGNIZED_FIELD if it has none."""
    parts: list[str] = []
    segments = name.split(".")
    for position, segment in enumerate(segments):
        fields = descriptor.fields_by_name if descriptor is not None else {}
        found = fields.get(segment) or fields.get(segment + "_")  # python's `type_` for `type`
        last = position == len(segments) - 1
        if found is None or (found.message_type is None) != last:
            raise GaqlError("UNRECOGNIZED_FIELD", f"unrecognized field {name!r}")
        parts.append(found.name)
        descriptor = found.message_type
    return ".".join(parts)


def _masked(row: Any, mask: field_mask_pb2.FieldMask) -> Any:
    out = type(row)()
    mask.MergeMessage(row, out)
    return out


def _value(row: Any, path: str) -> tuple[object, FieldDescriptor]:
    """A field's value (enum values by name) and its descriptor."""
    message = row
    names = path.split(".")
    for name in names[:-1]:
        message = getattr(message, name)
    descriptor = message.DESCRIPTOR.fields_by_name[names[-1]]
    value = getattr(message, names[-1])
    if descriptor.enum_type is not None:
        value = descriptor.enum_type.values_by_number[value].name
    return value, descriptor


def _matches(row: Any, condition: Condition) -> bool:
    actual, descriptor = _value(row, pb_path(condition.field, row.DESCRIPTOR))
    wanted = [_coerce(v, descriptor, condition.field) for v in condition.values]
    if condition.operator in ("=", "IN"):
        return actual in wanted
    if condition.operator in ("!=", "NOT IN"):
        return actual not in wanted
    if isinstance(actual, str) and isinstance(wanted[0], str):  # dates: YYYY-MM-DD sorts
        return {
            ">": actual > wanted[0],
            ">=": actual >= wanted[0],
            "<": actual < wanted[0],
            "<=": actual <= wanted[0],
        }[condition.operator]
    if not isinstance(actual, int | float):
        raise GaqlError("OPERATOR_FIELD_MISMATCH", f"{condition.operator} needs a number")
    bound = float(str(wanted[0]))
    return {
        ">": actual > bound,
        ">=": actual >= bound,
        "<": actual < bound,
        "<=": actual <= bound,
    }[condition.operator]


def _coerce(value: Value, descriptor: FieldDescriptor, name: str) -> object:
    """The condition value in the field's type; a mismatch is Google's BAD_VALUE."""
    if descriptor.enum_type is not None:
        text = value.text if isinstance(value, Literal) else value
        if not isinstance(text, str) or text not in descriptor.enum_type.values_by_name:
            raise GaqlError("BAD_ENUM_CONSTANT", f"{value!r} is not a value of {name}")
        return text
    if descriptor.type == FieldDescriptor.TYPE_BOOL:
        if isinstance(value, Literal) and value.text.upper() in ("TRUE", "FALSE"):
            return value.text.upper() == "TRUE"
    elif descriptor.type == FieldDescriptor.TYPE_STRING:
        if isinstance(value, str):
            return value
    elif isinstance(value, int | float):
        return value
    raise GaqlError("BAD_VALUE", f"{value!r} does not fit {name}")


def _order_key(path: str) -> Callable[[Any], Any]:
    return lambda row: _value(row, path)[0]
