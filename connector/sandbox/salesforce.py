"""A Salesforce REST emulator: OAuth token grants, SOQL query / queryAll with paging, describe.

It serves HTTPS on loopback with the test CA (API-NOTES §6), so the real
simple_salesforce client runs against it unchanged. The SOQL subset is parsed
by a small tokenizer and a recursive-descent parser and evaluated in Python
(no eval). Where real Salesforce rejects a query the connector might plausibly
send (a quoted datetime, a filter on a history row's NewValue, AND mixed with
OR without parentheses), the emulator rejects it the same way, so such bugs
show up in tests rather than in production.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import operator
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs

from pydantic import SecretStr

from connector.sandbox.dataset import sf_date, sf_datetime, sf_id
from connector.sandbox.faults import FaultQueue
from connector.sandbox.server import EmulatorServer, Request, Response
from connector.settings import SalesforceSettings

Record = dict[str, Any]
Predicate = Callable[[Record], bool]

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
OLDEST_VERSION, NEWEST_VERSION = 31, 68  # v68.0 is Winter '27, current in late 2026
_CURSOR_CACHE = 256  # open query locators kept; the oldest is dropped beyond this


def _schema(spec: str) -> dict[str, str]:
    return dict(item.split(":") for item in spec.split())


_SYSTEM = "Id:id IsDeleted:boolean CreatedDate:datetime"
_HISTORY = f"{_SYSTEM} Field:picklist OldValue:anyType NewValue:anyType DataType:picklist"
# Field types of the objects the connector reads; fields only seen in records are inferred.
KNOWN_FIELDS: dict[str, dict[str, str]] = {
    "Lead": _schema(
        f"{_SYSTEM} SystemModstamp:datetime LastModifiedDate:datetime OwnerId:reference "
        "FirstName:string LastName:string Email:email Phone:phone Company:string Status:picklist "
        "LeadSource:picklist Rating:picklist IsConverted:boolean ConvertedDate:date "
        "ConvertedOpportunityId:reference ConvertedContactId:reference "
        "ConvertedAccountId:reference MasterRecordId:reference CurrencyIsoCode:picklist "
        "GCLID__c:string GBRAID__c:string "
        "WBRAID__c:string GA_Client_ID__c:string UTM_Source__c:string UTM_Medium__c:string "
        "UTM_Campaign__c:string Consent_Ad_User_Data__c:picklist "
        "Consent_Ad_Personalization__c:picklist"
    ),
    "LeadHistory": _schema(f"{_HISTORY} LeadId:reference"),
    "Opportunity": _schema(
        f"{_SYSTEM} SystemModstamp:datetime LastModifiedDate:datetime AccountId:reference "
        "Name:string StageName:picklist Amount:currency CurrencyIsoCode:picklist "
        "IsClosed:boolean IsWon:boolean CloseDate:date"
    ),
    "OpportunityFieldHistory": _schema(f"{_HISTORY} OpportunityId:reference"),
    "Contact": _schema(f"{_SYSTEM} SystemModstamp:datetime AccountId:reference Email:email"),
    "Account": _schema(f"{_SYSTEM} SystemModstamp:datetime Name:string"),
    "OpportunityContactRole": _schema(
        f"{_SYSTEM} SystemModstamp:datetime OpportunityId:reference ContactId:reference "
        "IsPrimary:boolean Role:picklist"
    ),
}
# Fields with field history tracking on, per history object (what describe reports).
TRACKED_FIELDS = {"LeadHistory": ("Status",), "OpportunityFieldHistory": ("StageName", "Amount")}
# Lookups whose target object is not named after the field.
REFERENCE_TARGETS = {
    "ConvertedOpportunityId": "Opportunity",
    "ConvertedContactId": "Contact",
    "ConvertedAccountId": "Account",
    "MasterRecordId": "Lead",  # the emulator's only merged object
    "OwnerId": "User",
    "CreatedById": "User",
    "LastModifiedById": "User",
}
KEY_PREFIXES = {
    "Lead": "00Q",
    "LeadHistory": "017",
    "Opportunity": "006",
    "OpportunityFieldHistory": "017",
    "Contact": "003",
    "Account": "001",
    "User": "005",
    "OpportunityContactRole": "00K",
}
_TEXT_TYPES = {"id", "reference", "string", "email", "phone", "picklist", "textarea", "url"}
_NUMBER_TYPES = {"double", "currency", "int", "percent"}


# --------------------------------------------------------------------------- SOQL errors


class SoqlError(Exception):
    """A query Salesforce would answer with HTTP 400 and this error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _error(code: str, soql: str, pos: int, detail: str) -> SoqlError:
    # Salesforce echoes the query line with a caret under the offending token.
    line_start = soql.rfind("\n", 0, pos) + 1
    line_end = soql.find("\n", pos)
    line = soql[line_start : line_end if line_end >= 0 else len(soql)]
    row, col = soql.count("\n", 0, pos) + 1, pos - line_start
    return SoqlError(code, f"\n{line}\n{' ' * col}^\nERROR at Row:{row}:Column:{col + 1}\n{detail}")


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class _Token:
    kind: str  # ident, string, number, datetime, date, op, punct, eof
    text: str
    pos: int


_TOKEN_RE = re.compile(
    r"""
      (?P<ws>\s+)
    | (?P<string>'(?:[^'\\]|\\.)*')
    | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
    | (?P<date>\d{4}-\d{2}-\d{2})(?![\w:.])
    | (?P<number>[+-]?\d+(?:\.\d+)?)(?![\w.])
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    | (?P<op>!=|<>|<=|>=|=|<|>)
    | (?P<punct>[(),])
    """,
    re.VERBOSE | re.DOTALL,
)
_RESERVED = {"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "LIMIT"}
_RESERVED |= {"OFFSET", "NULL", "TRUE", "FALSE", "GROUP", "HAVING"}
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}


def _tokenize(soql: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(soql):
        match = _TOKEN_RE.match(soql, pos)
        if match is None or match.lastgroup is None:
            raise _error("MALFORMED_QUERY", soql, pos, f"unexpected token: {soql[pos : pos + 12]}")
        if match.lastgroup != "ws":
            tokens.append(_Token(match.lastgroup, match.group(), pos))
        pos = match.end()
    tokens.append(_Token("eof", "", len(soql)))
    return tokens


def _unquote(token: _Token, soql: str) -> str:
    """The value of a string literal; only the documented backslash escapes are allowed."""
    body, out, i = token.text[1:-1], [], 0
    while i < len(body):
        if body[i] != "\\":
            out.append(body[i])
            i += 1
            continue
        escaped = body[i + 1]
        if escaped in "_%":  # LIKE wildcards escaped: a literal _ or %
            out.append(escaped)
        elif escaped in _ESCAPES:
            out.append(_ESCAPES[escaped])
        else:
            raise _error("MALFORMED_QUERY", soql, token.pos, "Invalid string literal: bad escape")
        i += 2
    return "".join(out)


def _like_pattern(token: _Token) -> re.Pattern[str]:
    body, parts, i = token.text[1:-1], [], 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            escaped = body[i + 1]
            parts.append(re.escape(_ESCAPES.get(escaped, escaped)))
            i += 2
            continue
        parts.append({"%": ".*", "_": "."}.get(char) or re.escape(char))
        i += 1
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


# --------------------------------------------------------------------------- syntax tree


@dataclass(frozen=True)
class _Literal:
    kind: str  # string, number, boolean, null, datetime, date
    value: Any


@dataclass(frozen=True)
class _Compare:
    path: str
    pos: int
    op: str
    literal: _Literal


@dataclass(frozen=True)
class _In:
    path: str
    pos: int
    literals: tuple[_Literal, ...]
    negate: bool


@dataclass(frozen=True)
class _Like:
    path: str
    pos: int
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class _Logic:
    op: str  # AND, OR
    parts: tuple[_Condition, ...]


@dataclass(frozen=True)
class _Not:
    part: _Condition


_Condition = _Compare | _In | _Like | _Logic | _Not


@dataclass(frozen=True)
class _OrderKey:
    path: str
    pos: int
    desc: bool
    nulls_first: bool


@dataclass(frozen=True)
class _Query:
    fields: tuple[tuple[str, int], ...]
    count_only: bool
    sobject: str
    sobject_pos: int
    where: _Condition | None
    order: tuple[_OrderKey, ...]
    limit: int | None
    offset: int


# --------------------------------------------------------------------------- parser


class _Parser:
    """Recursive descent over the token list; one instance per query."""

    def __init__(self, soql: str) -> None:
        self.soql = soql
        self.tokens = _tokenize(soql)
        self.i = 0

    def parse(self) -> _Query:
        self._expect_word("SELECT")
        fields, count_only = self._select_list()
        self._expect_word("FROM")
        sobject, sobject_pos = self._path()
        where = self._condition() if self._accept_word("WHERE") else None
        order = self._order_by() if self._accept_word("ORDER") else ()
        limit = self._number_after("LIMIT")
        offset = self._number_after("OFFSET") or 0
        if self._peek().kind != "eof":
            raise self._unexpected()
        return _Query(fields, count_only, sobject, sobject_pos, where, order, limit, offset)

    # token helpers
    def _peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def _next(self) -> _Token:
        token = self._peek()
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return token

    def _unexpected(self, token: _Token | None = None) -> SoqlError:
        token = token or self._peek()
        shown = token.text or "<EOF>"
        return _error("MALFORMED_QUERY", self.soql, token.pos, f"unexpected token: {shown}")

    def _is_word(self, *words: str) -> bool:
        token = self._peek()
        return token.kind == "ident" and token.text.upper() in words

    def _accept_word(self, word: str) -> bool:
        if self._is_word(word):
            self.i += 1
            return True
        return False

    def _expect_word(self, word: str) -> None:
        if not self._accept_word(word):
            raise self._unexpected()

    def _accept_punct(self, char: str) -> bool:
        if self._peek().kind == "punct" and self._peek().text == char:
            self.i += 1
            return True
        return False

    def _expect_punct(self, char: str) -> None:
        if not self._accept_punct(char):
            raise self._unexpected()

    def _path(self) -> tuple[str, int]:
        token = self._next()
        if token.kind != "ident" or token.text.upper() in _RESERVED:
            raise self._unexpected(token)
        return token.text, token.pos

    # grammar
    def _select_list(self) -> tuple[tuple[tuple[str, int], ...], bool]:
        if self._is_word("COUNT") and self._peek(1).text == "(":
            self.i += 2
            self._expect_punct(")")
            return (), True
        fields = [self._path()]
        while self._accept_punct(","):
            fields.append(self._path())
        return tuple(fields), False

    def _condition(self) -> _Condition:
        parts = [self._unary()]
        joiner: str | None = None
        while self._is_word("AND", "OR"):
            token = self._next()
            if joiner not in (None, token.text.upper()):  # SOQL needs parentheses to mix them
                raise self._unexpected(token)
            joiner = token.text.upper()
            parts.append(self._unary())
        return parts[0] if joiner is None else _Logic(joiner, tuple(parts))

    def _unary(self) -> _Condition:
        if self._accept_word("NOT"):
            return _Not(self._unary())
        if self._accept_punct("("):
            condition = self._condition()
            self._expect_punct(")")
            return condition
        return self._predicate()

    def _predicate(self) -> _Condition:
        path, pos = self._path()
        if self._accept_word("NOT"):
            self._expect_word("IN")
            return _In(path, pos, self._literal_list(), negate=True)
        if self._accept_word("IN"):
            return _In(path, pos, self._literal_list(), negate=False)
        if self._accept_word("LIKE"):
            token = self._next()
            if token.kind != "string":
                raise self._unexpected(token)
            return _Like(path, pos, _like_pattern(token))
        token = self._next()
        if token.kind != "op":
            raise self._unexpected(token)
        return _Compare(path, pos, "!=" if token.text == "<>" else token.text, self._literal())

    def _literal_list(self) -> tuple[_Literal, ...]:
        self._expect_punct("(")
        literals = [self._literal()]
        while self._accept_punct(","):
            literals.append(self._literal())
        self._expect_punct(")")
        return tuple(literals)

    def _literal(self) -> _Literal:
        token = self._next()
        try:
            return self._literal_of(token)
        except ValueError:  # e.g. 2026-13-45
            raise _error("MALFORMED_QUERY", self.soql, token.pos, "invalid date/time") from None

    def _literal_of(self, token: _Token) -> _Literal:
        if token.kind == "string":
            return _Literal("string", _unquote(token, self.soql))
        if token.kind == "number":
            return _Literal("number", float(token.text))
        if token.kind in ("datetime", "date"):
            return _Literal(token.kind, _as_utc(datetime.fromisoformat(token.text)))
        word = token.text.upper() if token.kind == "ident" else ""
        if word in ("TRUE", "FALSE"):
            return _Literal("boolean", word == "TRUE")
        if word == "NULL":
            return _Literal("null", None)
        raise self._unexpected(token)

    def _order_by(self) -> tuple[_OrderKey, ...]:
        self._expect_word("BY")
        keys = [self._order_key()]
        while self._accept_punct(","):
            keys.append(self._order_key())
        return tuple(keys)

    def _order_key(self) -> _OrderKey:
        path, pos = self._path()
        desc = self._accept_word("DESC")
        if not desc:
            self._accept_word("ASC")
        nulls_first = not desc  # Salesforce's default null placement
        if self._accept_word("NULLS"):
            if not self._is_word("FIRST", "LAST"):
                raise self._unexpected()
            nulls_first = self._next().text.upper() == "FIRST"
        return _OrderKey(path, pos, desc, nulls_first)

    def _number_after(self, word: str) -> int | None:
        if not self._accept_word(word):
            return None
        token = self._next()
        if token.kind != "number" or not token.text.isdigit():
            raise self._unexpected(token)
        return int(token.text)


def parse_soql(soql: str) -> _Query:
    """Parse a query of the supported SOQL subset; raises SoqlError(MALFORMED_QUERY)."""
    return _Parser(soql).parse()


# --------------------------------------------------------------------------- values


def _as_utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


@lru_cache(maxsize=1 << 16)
def _parse_datetime(text: str) -> datetime | None:
    try:
        return _as_utc(datetime.fromisoformat(text))
    except ValueError:
        return None


def _to_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return _as_utc(value)
    return _parse_datetime(value) if isinstance(value, str) else None


def _normalise(kind: str, value: Any) -> Any:
    """A field value made comparable with a literal of `kind`; None when it cannot be."""
    if kind in ("datetime", "date"):
        return _to_datetime(value)
    if kind == "number":
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if numeric else None
    if kind == "boolean":
        return value if isinstance(value, bool) else None
    # SOQL compares text case-insensitively.
    return value.casefold() if isinstance(value, str) else str(value).casefold()


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _matches(value: Any, op: str, literal: _Literal) -> bool:
    if literal.kind == "null" or value is None:
        # In SOQL null is a value: `X != 'a'` includes records where X is null.
        same = value is None and literal.kind == "null"
        return same if op == "=" else (not same if op == "!=" else False)
    left = _normalise(literal.kind, value)
    right = _normalise(literal.kind, literal.value)
    return left is not None and bool(_OPERATORS[op](left, right))


def _sort_key(value: Any, field_type: str, key: _OrderKey) -> tuple[int, int, Any]:
    if value is None:
        # Ranks 0 / 2 put nulls first / last once `reverse` is applied for DESC.
        return (0 if key.nulls_first != key.desc else 2, 0, 0)
    if field_type in ("datetime", "date"):
        moment = _to_datetime(value)
        return (1, 0, moment.timestamp()) if moment else (1, 1, str(value))
    if isinstance(value, bool | int | float):
        return (1, 0, float(value))
    return (1, 1, str(value).casefold())


# --------------------------------------------------------------------------- the org's data


_DATETIME_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")
_DATE_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _infer_type(name: str, value: Any) -> str:
    if name == "Id":
        return "id"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "double"
    if isinstance(value, str) and _DATETIME_TEXT.match(value):
        return "datetime"
    if isinstance(value, str) and _DATE_TEXT.match(value):
        return "date"
    return "reference" if name.endswith("Id") else "string"


def _wire_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return sf_datetime(_as_utc(value))
    if isinstance(value, date):
        return sf_date(value)
    return value


@dataclass(frozen=True)
class _Step:
    relationship: str  # the name in output records, e.g. "Lead"
    ref_field: str  # e.g. "LeadId"
    target: str  # e.g. "Lead"


@dataclass(frozen=True)
class _Path:
    steps: tuple[_Step, ...]
    field: str
    type: str


class _Store:
    """Records per object, an Id index and a case-insensitive schema; callers hold the lock."""

    def __init__(self, data: dict[str, list[Record]]) -> None:
        self.records: dict[str, list[Record]] = {}
        self.by_id: dict[str, dict[str, Record]] = {}
        self.fields: dict[str, dict[str, str]] = {}
        self._objects: dict[str, str] = {}  # lower-case name -> name
        self._field_names: dict[str, dict[str, str]] = {}
        self._guessed: set[tuple[str, str]] = set()  # fields typed from a None value
        self._serial = 0
        for name in KNOWN_FIELDS:  # a real org has its standard objects even when empty
            self.add_object(name)
        for name, rows in data.items():
            self.add_object(name)
            for row in rows:
                self.add(name, row, now=None)

    def add_object(self, name: str) -> str:
        if name.lower() not in self._objects:
            self._objects[name.lower()] = name
            self.records[name], self.by_id[name] = [], {}
            self.fields[name], self._field_names[name] = {}, {}
            for field_name, field_type in KNOWN_FIELDS.get(name, {}).items():
                self._learn(name, field_name, field_type)
        return self._objects[name.lower()]

    def object_name(self, name: str) -> str | None:
        return self._objects.get(name.lower())

    def field(self, sobject: str, name: str) -> tuple[str, str] | None:
        canonical = self._field_names[sobject].get(name.lower())
        return None if canonical is None else (canonical, self.fields[sobject][canonical])

    def _learn(self, sobject: str, name: str, field_type: str) -> None:
        self._field_names[sobject][name.lower()] = name
        self.fields[sobject][name] = field_type

    def learn_record(self, sobject: str, record: Record) -> None:
        for name, value in record.items():
            key = (sobject, name)
            known = name.lower() in self._field_names[sobject]  # field names are case-insensitive
            if known and (key not in self._guessed or value is None):
                continue
            self._learn(sobject, name, _infer_type(name, value))
            self._guessed.discard(key)
            if value is None:
                self._guessed.add(key)

    def new_id(self, sobject: str) -> str:
        prefix = KEY_PREFIXES.get(sobject, "a0" + chr(ord("A") + len(sobject) % 26))
        while True:
            self._serial += 1
            candidate = sf_id(prefix, 900_000_000 + self._serial)
            if candidate not in self.by_id[sobject]:
                return candidate

    def add(self, sobject: str, record: Record, now: datetime | None) -> Record:
        row = {name: _wire_value(value) for name, value in record.items()}
        if "Id" not in row:
            row["Id"] = self.new_id(sobject)
        row.setdefault("IsDeleted", False)
        if now is not None:  # records inserted while running get the org's timestamps
            row.setdefault("CreatedDate", sf_datetime(now))
            if "SystemModstamp" in self.fields[sobject]:
                row.setdefault("SystemModstamp", sf_datetime(now))
        self.learn_record(sobject, row)
        self.records[sobject].append(row)
        self.by_id[sobject][row["Id"]] = row
        return row

    def parent(self, record: Record, step: _Step) -> Record | None:
        ref = record.get(step.ref_field)
        return self.by_id[step.target].get(ref) if isinstance(ref, str) else None

    def value(self, record: Record, path: _Path) -> Any:
        current: Record | None = record
        for step in path.steps:
            current = self.parent(current, step) if current is not None else None
        return None if current is None else current.get(path.field)


# --------------------------------------------------------------------------- query execution


def _attributes(sobject: str, record: Record, version: str) -> dict[str, str]:
    return {"type": sobject, "url": f"/services/data/v{version}/sobjects/{sobject}/{record['Id']}"}


_NO_COLUMN = (
    "No such column '{name}' on entity '{sobject}'. If you are attempting to use a custom field, "
    "be sure to append the '__c' after the custom field name. Please reference your WSDL or the "
    "describe call for the appropriate names."
)
_NO_RELATIONSHIP = (
    "Didn't understand relationship '{name}' in field path. If you are attempting to use a "
    "custom relationship, be sure to append the '__r' after the custom relationship name. "
    "Please reference your WSDL or the describe call for the appropriate names."
)
_NO_TYPE = (
    "sObject type '{name}' is not supported. If you are attempting to use a custom object, be "
    "sure to append the '__c' after the entity name. Please reference your WSDL or the describe "
    "call for the appropriate names."
)
_LITERAL_RULES = {  # field type -> (accepted literal kinds, wording of Salesforce's complaint)
    "datetime": (("datetime", "date"), "dateTime and should not be enclosed in quotes"),
    "date": (("date", "datetime"), "date and should not be enclosed in quotes"),
    "boolean": (("boolean",), "boolean and should not be enclosed in quotes"),
    **{t: (("number",), "double and should not be enclosed in quotes") for t in _NUMBER_TYPES},
    **{t: (("string",), "string and should be enclosed in quotes") for t in _TEXT_TYPES},
}


class _Compiler:
    """Resolves field paths against the schema and turns conditions into predicates."""

    def __init__(self, store: _Store, sobject: str, soql: str) -> None:
        self.store, self.sobject, self.soql = store, sobject, soql

    def path(self, text: str, pos: int) -> _Path:
        parts = text.split(".")
        if len(parts) > 1 and parts[0].lower() == self.sobject.lower():
            parts = parts[1:]  # `SELECT Lead.Email FROM Lead` names the object itself
        steps: list[_Step] = []
        current = self.sobject
        for name in parts[:-1]:
            step = self.relationship(current, name)
            if step is None:
                raise _error("INVALID_FIELD", self.soql, pos, _NO_RELATIONSHIP.format(name=name))
            steps.append(step)
            current = step.target
        found = self.store.field(current, parts[-1])
        if found is None:
            detail = _NO_COLUMN.format(name=parts[-1], sobject=current)
            raise _error("INVALID_FIELD", self.soql, pos, detail)
        return _Path(tuple(steps), found[0], found[1])

    def relationship(self, sobject: str, name: str) -> _Step | None:
        """Relationship R resolves through field RId (custom: R__r through R__c)."""
        custom = name.lower().endswith("__r")
        ref = self.store.field(sobject, name[:-3] + "__c" if custom else name + "Id")
        if ref is None or ref[1] not in ("reference", "id"):
            return None
        candidates = (REFERENCE_TARGETS.get(ref[0]), ref[0] if custom else None, name[:-3], name)
        targets = (self.store.object_name(c) for c in candidates if c)
        target = next((t for t in targets if t is not None), None)
        relationship = ref[0][:-3] + "__r" if custom else ref[0][:-2]
        return None if target is None else _Step(relationship, ref[0], target)

    def filterable(self, text: str, pos: int, literals: tuple[_Literal, ...]) -> _Path:
        path = self.path(text, pos)
        if path.type == "anyType":
            detail = f"field '{path.field}' can not be filtered in a query call"
            raise _error("INVALID_FIELD", self.soql, pos, detail)
        accepted, wording = _LITERAL_RULES.get(path.type, ((), ""))
        for literal in literals:
            if accepted and literal.kind not in (*accepted, "null"):
                detail = (
                    f"value of filter criterion for field '{path.field}' must be of type {wording}"
                )
                raise _error("INVALID_QUERY_FILTER_OPERATOR", self.soql, pos, detail)
        return path

    def predicate(self, condition: _Condition) -> Predicate:
        value = self.store.value
        match condition:
            case _Logic(op=op, parts=parts):
                preds = [self.predicate(part) for part in parts]
                combine = all if op == "AND" else any
                return lambda r: combine(p(r) for p in preds)
            case _Not(part=part):
                inner = self.predicate(part)
                return lambda r: not inner(r)
            case _Compare(path=text, pos=pos, op=op, literal=literal):
                path = self.filterable(text, pos, (literal,))
                return lambda r: _matches(value(r, path), op, literal)
            case _In(path=text, pos=pos, literals=literals, negate=negate):
                path = self.filterable(text, pos, literals)
                return lambda r: (
                    negate != any(_matches(value(r, path), "=", lit) for lit in literals)
                )
            case _Like(path=text, pos=pos, pattern=pattern):
                path = self.filterable(text, pos, (_Literal("string", ""),))
                return lambda r: isinstance(v := value(r, path), str) and bool(pattern.fullmatch(v))
        raise AssertionError(f"unknown condition {condition!r}")

    def sortable(self, key: _OrderKey) -> _Path:
        path = self.path(key.path, key.pos)
        if path.type == "anyType":
            detail = f"field '{path.field}' can not be sorted in a query call"
            raise _error("INVALID_FIELD", self.soql, key.pos, detail)
        return path

    def selected(self, fields: tuple[tuple[str, int], ...]) -> list[_Path]:
        paths, seen = [], set()
        for text, pos in fields:
            path = self.path(text, pos)
            name = ".".join([*(s.relationship for s in path.steps), path.field]).lower()
            if name in seen:
                raise _error("MALFORMED_QUERY", self.soql, pos, f"duplicate field selected: {text}")
            seen.add(name)
            paths.append(path)
        return paths


def _project(
    store: _Store, sobject: str, record: Record, paths: list[_Path], version: str
) -> Record:
    out: Record = {"attributes": _attributes(sobject, record, version)}
    for path in paths:
        _put(store, out, record, path.steps, path.field, version)
    return out


def _put(
    store: _Store, out: Record, record: Record, steps: tuple[_Step, ...], name: str, version: str
) -> None:
    if not steps:
        out[name] = record.get(name)
        return
    step = steps[0]
    parent = store.parent(record, step)
    if parent is None:
        out.setdefault(step.relationship, None)  # Salesforce sends "Lead": null
        return
    child = out.get(step.relationship)
    if not isinstance(child, dict):
        child = {"attributes": _attributes(step.target, parent, version)}
        out[step.relationship] = child
    _put(store, child, parent, steps[1:], name, version)


def select_rows(
    store: _Store, query: _Query, soql: str, *, include_deleted: bool
) -> tuple[str, list[_Path], list[Record]]:
    """The object, the selected paths and the matching records, ordered and limited."""
    sobject = store.object_name(query.sobject)
    if sobject is None:
        raise _error("INVALID_TYPE", soql, query.sobject_pos, _NO_TYPE.format(name=query.sobject))
    compiler = _Compiler(store, sobject, soql)
    paths = compiler.selected(query.fields)
    keep = compiler.predicate(query.where) if query.where is not None else None
    order = [(key, compiler.sortable(key)) for key in query.order]
    rows = [
        r
        for r in store.records[sobject]
        if (include_deleted or not r.get("IsDeleted")) and (keep is None or keep(r))
    ]
    for key, path in reversed(order):  # stable sorts, last key first
        rows.sort(key=lambda r: _sort_key(store.value(r, path), path.type, key), reverse=key.desc)
    end = None if query.limit is None else query.offset + query.limit
    return sobject, paths, rows[query.offset : end]


def run_query(
    store: _Store, query: _Query, soql: str, *, include_deleted: bool, version: str
) -> tuple[str, list[Record] | int]:
    """(object name, projected records or the COUNT() result) for a parsed query."""
    sobject, paths, rows = select_rows(store, query, soql, include_deleted=include_deleted)
    if query.count_only:
        return sobject, len(rows)
    return sobject, [_project(store, sobject, r, paths, version) for r in rows]


# --------------------------------------------------------------------------- HTTP helpers


def _sf_error(status: int, code: str, message: str) -> Response:
    return Response(status, [{"message": message, "errorCode": code}])


def _not_found() -> Response:
    return _sf_error(404, "NOT_FOUND", "The requested resource does not exist")


def _oauth_error(error: str, description: str) -> Response:
    return Response(400, {"error": error, "error_description": description})


def _release_label(major: int) -> str:
    # Three releases a year; v62.0 was Winter '25.
    season = ("Winter", "Spring", "Summer")[(major - 62) % 3]
    return f"{season} '{25 + (major - 62) // 3}"


def _label(name: str) -> str:
    base = name.removesuffix("__c").replace("_", " ")
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", base)


def _jwt_claims(assertion: str) -> dict[str, Any] | None:
    parts = assertion.split(".")
    if len(parts) != 3:
        return None
    try:
        decoded = [json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in parts[:2]]
    except (ValueError, binascii.Error):
        return None
    header, claims = decoded
    valid = isinstance(header, dict) and isinstance(claims, dict)
    return claims if valid else None


@dataclass
class _Cursor:
    sobject: str
    records: list[Record]
    page_size: int


# --------------------------------------------------------------------------- the emulator


class SalesforceEmulator:
    """Salesforce REST over HTTPS on loopback, for simple_salesforce and the connector.

    `data` maps object names ("Lead", "LeadHistory", ...) to records in REST
    shape (see `connector.sandbox.dataset`). Every data request counts against
    `api_limit` and reports usage in `Sforce-Limit-Info`; faults pushed onto
    `faults` are served before anything else.
    """

    def __init__(
        self,
        data: dict[str, list[dict[str, Any]]],
        *,
        username: str = "demo@example.com",
        password: str = "demo-password",  # noqa: S107 - the emulator's demo org
        security_token: str = "demo-token",  # noqa: S107
        client_id: str = "demo-client-id",
        client_secret: str = "demo-client-secret",  # noqa: S107
        api_limit: int = 100_000,
        page_size: int = 2000,
    ) -> None:
        self.username, self.password, self.security_token = username, password, security_token
        self.client_id, self.client_secret = client_id, client_secret
        self.api_limit, self.page_size = api_limit, page_size
        self.faults = FaultQueue()
        self._initial = (data, api_limit, page_size)
        self._lock = threading.RLock()
        self._store = _Store(data)
        self._tokens: set[str] = set()
        self._api_usage = 0
        self._query_calls: dict[str, int] = {}
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self._cursor_serial = 0
        self._org_id, self._user_id = sf_id("00D", 4_242_424), sf_id("005", 4_242_424)
        # Imported here: salesforce_bulk is built on this module's SOQL engine.
        from connector.sandbox.salesforce_bulk import BulkQueryJobs

        self.bulk_jobs = BulkQueryJobs(self._user_id)  # Bulk API 2.0 query jobs
        self._server: EmulatorServer | None = None
        self.tracked_fields = {k: set(v) for k, v in TRACKED_FIELDS.items()}

    # lifecycle
    def start(self) -> Self:
        if self._server is None:
            self._server = EmulatorServer(self._handle).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def reset(self) -> None:
        """Back to the constructor's data, limits and counters; tokens and faults are dropped.

        Lets tests share one running server (stopping one waits out the poll interval).
        """
        data, api_limit, page_size = self._initial
        self.faults.clear()
        with self._lock:
            self._store = _Store(data)
            self.api_limit, self.page_size = api_limit, page_size
            self._tokens.clear()
            self._api_usage = 0
            self._query_calls.clear()
            self.bulk_jobs.clear()
            self._cursors.clear()
            self.tracked_fields = {k: set(v) for k, v in TRACKED_FIELDS.items()}

    @property
    def url(self) -> str:
        """Base URL: the login URL and the instance_url alike."""
        if self._server is None:
            raise RuntimeError("SalesforceEmulator is not started")
        return self._server.base_url

    def login_settings(self) -> SalesforceSettings:
        """Connector settings that log in to this emulator (password grant, test CA)."""
        from connector.sandbox.tls import sandbox_ca

        return SalesforceSettings(
            login_url=self.url,
            username=self.username,
            password=SecretStr(self.password),
            security_token=SecretStr(self.security_token),
            client_id=self.client_id,
            client_secret=SecretStr(self.client_secret),
            ca_bundle=sandbox_ca().bundle_path,
        )

    # counters
    @property
    def api_usage(self) -> int:
        with self._lock:
            return self._api_usage

    def set_api_usage(self, used: int) -> None:
        """Pretend `used` calls were already made today (to test the daily limit)."""
        with self._lock:
            self._api_usage = used

    @property
    def query_calls(self) -> dict[str, int]:
        """query / queryAll / nextRecordsUrl calls per FROM object (a copy)."""
        with self._lock:
            return dict(self._query_calls)

    @property
    def bulk_calls(self) -> dict[str, int]:
        """Bulk API 2.0 query job calls (create, poll, results, ...) per FROM object (a copy)."""
        with self._lock:
            return self.bulk_jobs.calls

    def expire_sessions(self) -> None:
        """Invalidate every access token issued so far (the next data call gets 401)."""
        with self._lock:
            self._tokens.clear()

    # data changes at run time
    def insert(self, object_name: str, record: dict[str, Any]) -> str:
        """Add a record (Id, CreatedDate, SystemModstamp default to new / now); returns its Id."""
        with self._lock:
            sobject = self._store.add_object(object_name)
            return str(self._store.add(sobject, record, now=datetime.now(UTC))["Id"])

    def update(self, object_name: str, record_id: str, changes: dict[str, Any]) -> None:
        """Change fields of a record; SystemModstamp moves to now unless given."""
        with self._lock:
            sobject, record = self._find(object_name, record_id)
            if "SystemModstamp" in self._store.fields[sobject]:
                record["SystemModstamp"] = sf_datetime(datetime.now(UTC))
            for name, value in changes.items():
                record[name] = _wire_value(value)
            self._store.learn_record(sobject, record)

    def delete(self, object_name: str, record_id: str) -> None:
        """Soft-delete: the record leaves `query` results but stays in `queryAll`."""
        self.update(object_name, record_id, {"IsDeleted": True})

    def merge(self, object_name: str, master_id: str, loser_id: str) -> None:
        """Merge `loser_id` into `master_id`: the loser is deleted and names its master."""
        self._find(object_name, master_id)
        self.update(object_name, loser_id, {"IsDeleted": True, "MasterRecordId": master_id})

    def records(self, object_name: str) -> list[dict[str, Any]]:
        """Copies of all records of an object, deleted ones included."""
        with self._lock:
            sobject = self._store.object_name(object_name)
            return [dict(r) for r in self._store.records[sobject]] if sobject else []

    def _find(self, object_name: str, record_id: str) -> tuple[str, Record]:
        sobject = self._store.object_name(object_name)
        record = self._store.by_id[sobject].get(record_id) if sobject else None
        if sobject is None or record is None:
            raise KeyError(f"no {object_name} with Id {record_id}")
        return sobject, record

    # HTTP entry point
    def _handle(self, request: Request) -> Response:
        injected = self.faults.take(request.path)
        if injected is not None:
            return injected
        if request.path == "/services/oauth2/token":
            return self._token(request) if request.method == "POST" else _not_found()
        if request.path.rstrip("/") == "/services/data":
            return self._with_limit_info(Response(200, self._versions()))
        match = re.fullmatch(r"/services/data/v(\d+)\.0(/.*)?", request.path)
        if match is None:
            return _not_found()
        with self._lock:
            response = self._serve_data(request, int(match[1]), match[2] or "/")
            return self._with_limit_info(response)

    def _with_limit_info(self, response: Response) -> Response:
        response.headers["Sforce-Limit-Info"] = f"api-usage={self._api_usage}/{self.api_limit}"
        return response

    def _serve_data(self, request: Request, major: int, rest: str) -> Response:
        if not self._authorized(request):
            return _sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        if self._api_usage >= self.api_limit:
            return _sf_error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        self._api_usage += 1
        if rest.startswith("/jobs/query"):  # Bulk API 2.0: POST, PATCH, DELETE too
            return self.bulk_jobs.serve(self._store, request, major, rest)
        if not OLDEST_VERSION <= major <= NEWEST_VERSION or request.method != "GET":
            return _not_found()
        version = f"{major}.0"
        for pattern, route in self._routes():
            found = re.fullmatch(pattern, rest)
            if found is not None:
                return route(request, found, version)
        return _not_found()

    def _routes(self) -> list[tuple[str, Callable[[Request, re.Match[str], str], Response]]]:
        return [
            (r"/?", self._resources),
            (r"/(query|queryAll)/?", self._query),
            (r"/(query|queryAll)/(01g\w+)-(\d+)", self._query_more),
            (r"/sobjects/?", self._global_describe),
            (r"/sobjects/(\w+)/describe/?", self._describe),
            (r"/sobjects/(\w+)/(\w{15}|\w{18})/?", self._record),
            (r"/limits/?", self._limits),
        ]

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() in ("bearer", "oauth") and token.strip() in self._tokens

    # OAuth
    def _token(self, request: Request) -> Response:
        form = dict(request.query)
        parsed = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        form |= {key: values[-1] for key, values in parsed.items()}
        grant = form.get("grant_type", "")
        checks: dict[str, Callable[[dict[str, str]], Response | None]] = {
            "password": self._check_password,
            JWT_BEARER: self._check_jwt,
            "client_credentials": self._check_client,
        }
        if grant not in checks:
            return _oauth_error("unsupported_grant_type", "grant type not supported")
        failure = checks[grant](form)
        return failure if failure is not None else Response(200, self._issue_token())

    def _check_client(self, form: dict[str, str]) -> Response | None:
        if form.get("client_id") != self.client_id:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if not hmac.compare_digest(form.get("client_secret", ""), self.client_secret):
            return _oauth_error("invalid_client", "invalid client credentials")
        return None

    def _check_password(self, form: dict[str, str]) -> Response | None:
        failure = self._check_client(form)
        if failure is not None:
            return failure
        same_user = form.get("username", "").lower() == self.username.lower()
        secret = self.password + self.security_token
        if not (same_user and hmac.compare_digest(form.get("password", ""), secret)):
            return _oauth_error("invalid_grant", "authentication failure")
        return None

    def _check_jwt(self, form: dict[str, str]) -> Response | None:
        claims = _jwt_claims(form.get("assertion", ""))
        if claims is None:
            return _oauth_error("invalid_grant", "invalid assertion")
        expiry = claims.get("exp")
        if isinstance(expiry, int | float) and expiry < time.time():
            return _oauth_error("invalid_grant", "invalid assertion")
        if str(claims.get("sub", "")).lower() != self.username.lower():
            return _oauth_error("invalid_grant", "authentication failure")
        return None

    def _issue_token(self) -> dict[str, str]:
        token = f"{self._org_id[:15]}!AQ{secrets.token_urlsafe(72)}"
        issued_at = str(int(time.time() * 1000))
        identity = f"{self.url}/id/{self._org_id}/{self._user_id}"
        mac = hmac.new(self.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256)
        with self._lock:
            self._tokens.add(token)
        return {
            "access_token": token,
            "instance_url": self.url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
            "signature": base64.b64encode(mac.digest()).decode(),
            "scope": "api",
        }

    # data endpoints (called with the lock held)
    def _versions(self) -> list[dict[str, str]]:
        return [
            {
                "label": _release_label(major),
                "url": f"/services/data/v{major}.0",
                "version": f"{major}.0",
            }
            for major in range(OLDEST_VERSION, NEWEST_VERSION + 1)
        ]

    def _resources(self, request: Request, match: re.Match[str], version: str) -> Response:
        names = ("sobjects", "query", "queryAll", "limits")
        return Response(200, {name: f"/services/data/v{version}/{name}" for name in names})

    def _limits(self, request: Request, match: re.Match[str], version: str) -> Response:
        remaining = max(0, self.api_limit - self._api_usage)
        return Response(200, {"DailyApiRequests": {"Max": self.api_limit, "Remaining": remaining}})

    def _query(self, request: Request, match: re.Match[str], version: str) -> Response:
        soql = request.query.get("q", "")
        try:
            query = parse_soql(soql)
            counted = self._store.object_name(query.sobject) or query.sobject
            self._query_calls[counted] = self._query_calls.get(counted, 0) + 1
            sobject, result = run_query(
                self._store, query, soql, include_deleted=match[1] == "queryAll", version=version
            )
        except SoqlError as exc:
            return _sf_error(400, exc.code, exc.message)
        if isinstance(result, int):
            return Response(200, {"totalSize": result, "done": True, "records": []})
        cursor = _Cursor(sobject, result, self._page_size(request))
        return Response(200, self._page(cursor, self._new_locator(), 0, version))

    def _query_more(self, request: Request, match: re.Match[str], version: str) -> Response:
        cursor = self._cursors.get(match[2])
        if cursor is None:
            return _sf_error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        self._query_calls[cursor.sobject] = self._query_calls.get(cursor.sobject, 0) + 1
        return Response(200, self._page(cursor, match[2], int(match[3]), version))

    def _page_size(self, request: Request) -> int:
        # Clients may ask for smaller batches (200..2000) with Sforce-Query-Options.
        options = request.headers.get("sforce-query-options", "")
        asked = re.search(r"batchSize=(\d+)", options)
        batch = min(max(int(asked[1]), 200), 2000) if asked else 2000
        return max(1, min(self.page_size, batch))

    def _new_locator(self) -> str:
        self._cursor_serial += 1
        return sf_id("01g", 7_000_000 + self._cursor_serial)

    def _page(self, cursor: _Cursor, locator: str, offset: int, version: str) -> dict[str, Any]:
        chunk = cursor.records[offset : offset + cursor.page_size]
        end = offset + len(chunk)
        done = end >= len(cursor.records)
        body: dict[str, Any] = {"totalSize": len(cursor.records), "done": done, "records": chunk}
        if not done:
            body["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{end}"
            self._cursors[locator] = cursor
            self._cursors.move_to_end(locator)
            while len(self._cursors) > _CURSOR_CACHE:
                self._cursors.popitem(last=False)
        return body

    def _global_describe(self, request: Request, match: re.Match[str], version: str) -> Response:
        sobjects = [self._object_summary(name, version) for name in self._store.records]
        return Response(200, {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects})

    def _object_summary(self, sobject: str, version: str) -> dict[str, Any]:
        base = f"/services/data/v{version}/sobjects/{sobject}"
        return {
            "name": sobject,
            "label": _label(sobject),
            "keyPrefix": KEY_PREFIXES.get(sobject),
            "custom": sobject.endswith("__c"),
            "queryable": True,
            "urls": {"sobject": base, "describe": f"{base}/describe"},
        }

    def _describe(self, request: Request, match: re.Match[str], version: str) -> Response:
        sobject = self._store.object_name(match[1])
        if sobject is None:
            return _not_found()
        fields = [
            self._field_summary(sobject, n, t) for n, t in self._store.fields[sobject].items()
        ]
        return Response(200, self._object_summary(sobject, version) | {"fields": fields})

    def _field_summary(self, sobject: str, name: str, field_type: str) -> dict[str, Any]:
        step = None
        if field_type == "reference":
            custom = name.endswith("__c")
            relationship = name[:-3] + "__r" if custom else name.removesuffix("Id")
            step = _Compiler(self._store, sobject, "").relationship(sobject, relationship)
        return {
            "name": name,
            "type": field_type,
            "label": _label(name),
            "custom": name.endswith("__c"),
            "nillable": name != "Id",
            "filterable": field_type != "anyType",
            "sortable": field_type != "anyType",
            "referenceTo": [step.target] if step else [],
            "relationshipName": step.relationship if step else None,
            "picklistValues": self._picklist(sobject, name),
        }

    def _picklist(self, sobject: str, name: str) -> list[dict[str, Any]]:
        # A history object's Field picklist lists the fields whose history is tracked:
        # that is how a client tells, through describe, whether tracking is on.
        if name != "Field" or sobject not in self.tracked_fields:
            return []
        return [
            {"value": f, "label": _label(f), "active": True, "defaultValue": False}
            for f in sorted(self.tracked_fields[sobject])
        ]

    def _record(self, request: Request, match: re.Match[str], version: str) -> Response:
        sobject = self._store.object_name(match[1])
        record = self._store.by_id[sobject].get(match[2]) if sobject else None
        if sobject is None or record is None or record.get("IsDeleted"):
            return _not_found()
        return Response(200, {"attributes": _attributes(sobject, record, version)} | record)
