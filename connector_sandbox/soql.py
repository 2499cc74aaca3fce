"""The emulated org's data and SOQL over it: schema, records, a parser and an evaluator.

A small tokenizer and a recursive-descent parser turn the SOQL subset into a
tree that is evaluated in Python (no eval). Where real Salesforce rejects a
query the connector might plausibly send (a quoted datetime, a filter on a
history row's NewValue, AND mixed with OR without parentheses), this rejects
it the same way, so such bugs show up in tests rather than in production.
Used by the REST emulator (`salesforce.py`) and the Bulk API 2.0 jobs
(`salesforce_bulk.py`).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from connector_sandbox.dataset import sf_date, sf_datetime, sf_id

Record = dict[str, Any]
Predicate = Callable[[Record], bool]


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
# Multi-currency objects: only an org that has the feature has them (a single-currency
# org answers INVALID_TYPE), so they exist only when the data brings records of them.
MULTI_CURRENCY_FIELDS: dict[str, dict[str, str]] = {
    "CurrencyType": _schema(
        f"{_SYSTEM} IsoCode:picklist ConversionRate:double DecimalPlaces:int "
        "IsActive:boolean IsCorporate:boolean"
    ),
    "DatedConversionRate": _schema(
        f"{_SYSTEM} IsoCode:picklist ConversionRate:double StartDate:date NextStartDate:date"
    ),
}
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


def tokenize(soql: str) -> list[_Token]:
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
class Query:
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
        self.tokens = tokenize(soql)
        self.i = 0

    def parse(self) -> Query:
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
        return Query(fields, count_only, sobject, sobject_pos, where, order, limit, offset)

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


def parse_soql(soql: str) -> Query:
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


def wire_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return sf_datetime(_as_utc(value))
    if isinstance(value, date):
        return sf_date(value)
    return value


@dataclass(frozen=True)
class Step:
    relationship: str  # the name in output records, e.g. "Lead"
    ref_field: str  # e.g. "LeadId"
    target: str  # e.g. "Lead"


@dataclass(frozen=True)
class FieldPath:
    steps: tuple[Step, ...]
    field: str
    type: str


class OrgStore:
    """Records per object, an Id index and a case-insensitive schema; callers hold the lock."""

    def __init__(self, data: dict[str, list[Record]]) -> None:
        self.records: dict[str, list[Record]] = {}
        self.by_id: dict[str, dict[str, Record]] = {}
        self.fields: dict[str, dict[str, str]] = {}
        self._objects: dict[str, str] = {}  # lower-case name -> name
        self._field_names: dict[str, dict[str, str]] = {}
        self._guessed: set[tuple[str, str]] = set()  # fields typed from a None value
        self._serial = 0
        # (object, field) -> casefolded value -> positions in `records`; built on first use
        # and dropped on any change: an `Id IN (...)`-style lookup reads its rows, not all.
        self._indexes: dict[tuple[str, str], dict[str, list[int]]] = {}
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
            schema = KNOWN_FIELDS.get(name) or MULTI_CURRENCY_FIELDS.get(name, {})
            for field_name, field_type in schema.items():
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
        self._indexes.clear()  # every insert and update passes here
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
        row = {name: wire_value(value) for name, value in record.items()}
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

    def index(self, sobject: str, field: str) -> dict[str, list[int]]:
        """Positions of `sobject`'s records by the casefolded text of `field` (SOQL's `=`)."""
        key = (sobject, field)
        if key not in self._indexes:
            found: dict[str, list[int]] = {}
            for position, record in enumerate(self.records[sobject]):
                value = record.get(field)
                if value is not None:
                    found.setdefault(_normalise("string", value), []).append(position)
            self._indexes[key] = found
        return self._indexes[key]

    def parent(self, record: Record, step: Step) -> Record | None:
        ref = record.get(step.ref_field)
        return self.by_id[step.target].get(ref) if isinstance(ref, str) else None

    def value(self, record: Record, path: FieldPath) -> Any:
        current: Record | None = record
        for step in path.steps:
            current = self.parent(current, step) if current is not None else None
        return None if current is None else current.get(path.field)


# --------------------------------------------------------------------------- query execution


def record_attributes(sobject: str, record: Record, version: str) -> dict[str, str]:
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


class Compiler:
    """Resolves field paths against the schema and turns conditions into predicates."""

    def __init__(self, store: OrgStore, sobject: str, soql: str) -> None:
        self.store, self.sobject, self.soql = store, sobject, soql

    def path(self, text: str, pos: int) -> FieldPath:
        parts = text.split(".")
        if len(parts) > 1 and parts[0].lower() == self.sobject.lower():
            parts = parts[1:]  # `SELECT Lead.Email FROM Lead` names the object itself
        steps: list[Step] = []
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
        return FieldPath(tuple(steps), found[0], found[1])

    def relationship(self, sobject: str, name: str) -> Step | None:
        """Relationship R resolves through field RId (custom: R__r through R__c)."""
        custom = name.lower().endswith("__r")
        ref = self.store.field(sobject, name[:-3] + "__c" if custom else name + "Id")
        if ref is None or ref[1] not in ("reference", "id"):
            return None
        candidates = (REFERENCE_TARGETS.get(ref[0]), ref[0] if custom else None, name[:-3], name)
        targets = (self.store.object_name(c) for c in candidates if c)
        target = next((t for t in targets if t is not None), None)
        relationship = ref[0][:-3] + "__r" if custom else ref[0][:-2]
        return None if target is None else Step(relationship, ref[0], target)

    def filterable(self, text: str, pos: int, literals: tuple[_Literal, ...]) -> FieldPath:
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
                if all(lit.kind == "string" for lit in literals):
                    # A set, not a scan of 2,000 literals per record: same `=` semantics.
                    wanted = frozenset(_normalise("string", lit.value) for lit in literals)
                    return lambda r: (
                        negate
                        != ((v := value(r, path)) is not None and _normalise("string", v) in wanted)
                    )
                return lambda r: (
                    negate != any(_matches(value(r, path), "=", lit) for lit in literals)
                )
            case _Like(path=text, pos=pos, pattern=pattern):
                path = self.filterable(text, pos, (_Literal("string", ""),))
                return lambda r: isinstance(v := value(r, path), str) and bool(pattern.fullmatch(v))
        raise AssertionError(f"unknown condition {condition!r}")

    def sortable(self, key: _OrderKey) -> FieldPath:
        path = self.path(key.path, key.pos)
        if path.type == "anyType":
            detail = f"field '{path.field}' can not be sorted in a query call"
            raise _error("INVALID_FIELD", self.soql, key.pos, detail)
        return path

    def selected(self, fields: tuple[tuple[str, int], ...]) -> list[FieldPath]:
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
    store: OrgStore, sobject: str, record: Record, paths: list[FieldPath], version: str
) -> Record:
    out: Record = {"attributes": record_attributes(sobject, record, version)}
    for path in paths:
        _put(store, out, record, path.steps, path.field, version)
    return out


def _put(
    store: OrgStore, out: Record, record: Record, steps: tuple[Step, ...], name: str, version: str
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
        child = {"attributes": record_attributes(step.target, parent, version)}
        out[step.relationship] = child
    _put(store, child, parent, steps[1:], name, version)


def select_rows(
    store: OrgStore, query: Query, soql: str, *, include_deleted: bool
) -> tuple[str, list[FieldPath], list[Record]]:
    """The object, the selected paths and the matching records, ordered and limited."""
    sobject = store.object_name(query.sobject)
    if sobject is None:
        raise _error("INVALID_TYPE", soql, query.sobject_pos, _NO_TYPE.format(name=query.sobject))
    compiler = Compiler(store, sobject, soql)
    paths = compiler.selected(query.fields)
    keep = compiler.predicate(query.where) if query.where is not None else None
    order = [(key, compiler.sortable(key)) for key in query.order]
    candidates = _indexed(store, compiler, query.where)
    rows = [
        r
        for r in (store.records[sobject] if candidates is None else candidates)
        if (include_deleted or not r.get("IsDeleted")) and (keep is None or keep(r))
    ]
    for key, path in reversed(order):  # stable sorts, last key first
        rows.sort(key=lambda r: _sort_key(store.value(r, path), path.type, key), reverse=key.desc)
    end = None if query.limit is None else query.offset + query.limit
    return sobject, paths, rows[query.offset : end]


def _indexed(store: OrgStore, compiler: Compiler, where: _Condition | None) -> list[Record] | None:
    """The only records that can match, in store order, when `where` requires a field of
    the object itself to equal one of some text literals (`X = 'a'`, `X IN ('a', ...)`,
    alone or ANDed); None when it does not (every record is then a candidate).

    The full predicate still runs on each candidate: the index only narrows the scan.
    """
    parts = where.parts if isinstance(where, _Logic) and where.op == "AND" else (where,)
    for part in parts:
        if isinstance(part, _In) and not part.negate:
            text, pos, literals = part.path, part.pos, part.literals
        elif isinstance(part, _Compare) and part.op == "=":
            text, pos, literals = part.path, part.pos, (part.literal,)
        else:
            continue
        path = compiler.path(text, pos)
        if path.steps or path.type not in _TEXT_TYPES:
            continue
        if any(lit.kind != "string" for lit in literals):
            continue
        index = store.index(compiler.sobject, path.field)
        keys = {_normalise("string", lit.value) for lit in literals}
        positions = sorted(p for key in keys for p in index.get(key, ()))
        return [store.records[compiler.sobject][p] for p in positions]
    return None


def project(
    store: OrgStore, sobject: str, rows: list[Record], paths: list[FieldPath], version: str
) -> list[Record]:
    """`rows` as a REST query returns them: the selected paths, parents nested."""
    return [_project(store, sobject, r, paths, version) for r in rows]
