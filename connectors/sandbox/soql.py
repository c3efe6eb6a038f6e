"""A small SOQL parser and evaluator for the Salesforce sandbox.

Supported (contract §B3): ``SELECT`` field list with relationship paths (``Owner.Name``),
``COUNT()`` and ``COUNT(field) [alias]``; ``FROM`` one sObject; ``WHERE`` with AND / OR / NOT and
parentheses, ``= != <> < <= > >=``, ``IN`` / ``NOT IN``, ``LIKE``, ``INCLUDES`` / ``EXCLUDES``,
``null``, ``true`` / ``false``, string literals with SOQL's backslash escapes, date and datetime
literals and the common date literals (``TODAY``, ``LAST_N_DAYS:n`` ...); ``ORDER BY`` several
fields ``ASC|DESC NULLS FIRST|LAST``; ``LIMIT``; ``OFFSET``. Not supported (rejected as
``MALFORMED_QUERY``): sub-queries and semi-joins, ``GROUP BY``, ``TYPEOF``, ``FIELDS()``, bind
variables.

Vendor behaviour reproduced on purpose:

* Error messages echo a window of the query (four tokens either side of the culprit, on its line)
  with a caret, then ``ERROR at Row:r:Column:c`` and the reason — the shape clients parse.
* Text comparisons (``=``, ``IN``, ``LIKE``, ordering) are case-insensitive; ``!=`` and ``NOT IN``
  match nulls (SOQL treats null as a value, unlike SQL).
* ``a AND b OR c`` is a syntax error: SOQL requires parentheses when mixing AND and OR.
* ``ORDER BY`` puts nulls first by default (documented), in both directions.
* Filter values are type-checked against the field (a quoted datetime is an error).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from connectors.sandbox.salesforce_schema import (
    NAME_OBJECT_FIELDS,
    NUMBER_TYPES,
    SOBJECTS,
    TEXT_TYPES,
    FieldDef,
    SObjectDef,
    compound_address,
    format_datetime,
    id18,
    is_id,
    parse_datetime,
    sobject,
    to_wire,
)

_WSDL_HINT = "Please reference your WSDL or the describe call for the appropriate names."
MAX_OFFSET = 2000


class SoqlError(Exception):
    """A query rejected the way Salesforce rejects it (HTTP 400, ``[{message, errorCode}]``)."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


# ---------------------------------------------------------------------------------------------
# Tokens


@dataclass(frozen=True)
class Token:
    kind: str  # ident, string, number, date, datetime, op, "(", ")", ",", ":", eof
    text: str
    pos: int
    end: int
    value: Any = None
    like: str | None = None  # for strings: the LIKE regex honouring \% and \_

    def is_kw(self, *words: str) -> bool:
        return self.kind == "ident" and self.text.upper() in words


_WS = re.compile(r"\s+")
_DATETIME_LIT = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})(?![\w:])"
)
_DATE_LIT = re.compile(r"\d{4}-\d{2}-\d{2}(?![\w:.-])")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?![\w.])")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_OPERATOR = re.compile(r"!=|<>|<=|>=|=|<|>")
# SOQL's escape sequences (SOQL and SOSL reference, "Quoted String Escape Sequences").
_ESCAPES = {
    "n": "\n",
    "N": "\n",
    "r": "\r",
    "R": "\r",
    "t": "\t",
    "T": "\t",
    "b": "\b",
    "B": "\b",
    "f": "\f",
    "F": "\f",
    '"': '"',
    "'": "'",
    "\\": "\\",
}

_KEYWORDS = frozenset(
    {
        "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "INCLUDES", "EXCLUDES",
        "ORDER", "BY", "ASC", "DESC", "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET", "NULL", "TRUE",
        "FALSE", "GROUP", "HAVING", "WITH", "FOR", "USING", "TYPEOF",
    }
)  # fmt: skip


def _tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    n = len(text)
    while i < n:
        ws = _WS.match(text, i)
        if ws:
            i = ws.end()
            continue
        ch = text[i]
        if ch == "'":
            tokens.append(_scan_string(text, i))
            i = tokens[-1].end
            continue
        for kind, pattern in (("datetime", _DATETIME_LIT), ("date", _DATE_LIT)):
            m = pattern.match(text, i)
            if m:
                tokens.append(_temporal_token(text, kind, m.group(), i))
                i = m.end()
                break
        else:
            m = _NUMBER.match(text, i)
            if m and (ch not in "+-" or not tokens or tokens[-1].kind in {"op", "(", ",", ":"}):
                literal = m.group()
                value: float | int = float(literal) if "." in literal else int(literal)
                tokens.append(Token("number", literal, i, m.end(), value))
                i = m.end()
                continue
            m = _IDENT.match(text, i)
            if m:
                tokens.append(Token("ident", m.group(), i, m.end()))
                i = m.end()
                continue
            m = _OPERATOR.match(text, i)
            if m:
                tokens.append(Token("op", "!=" if m.group() == "<>" else m.group(), i, m.end()))
                i = m.end()
                continue
            if ch in "(),:":
                tokens.append(Token(ch, ch, i, i + 1))
                i += 1
                continue
            raise _positioned(
                text, tokens, i, "MALFORMED_QUERY", f"no viable alternative at character '{ch}'"
            )
    tokens.append(Token("eof", "<EOF>", n, n))
    return tokens


def _temporal_token(text: str, kind: str, literal: str, pos: int) -> Token:
    try:
        value: date | datetime = (
            parse_datetime(literal) if kind == "datetime" else date.fromisoformat(literal)
        )
    except ValueError:
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{literal}'") from None
    return Token(kind, literal, pos, pos + len(literal), value)


def _scan_string(text: str, start: int) -> Token:
    value: list[str] = []
    like: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "'":
            return Token("string", text[start : i + 1], start, i + 1, "".join(value), "".join(like))
        if ch == "\\":
            nxt = text[i + 1] if i + 1 < len(text) else ""
            if nxt in _ESCAPES:
                value.append(_ESCAPES[nxt])
                like.append(re.escape(_ESCAPES[nxt]))
            elif nxt in {"%", "_"}:
                # Escaped wildcards are only meaningful in LIKE; elsewhere they stand for the
                # plain character.
                value.append(nxt)
                like.append(re.escape(nxt))
            else:
                raw = text[start + 1 : min(len(text), i + 2)]
                raise SoqlError(
                    "MALFORMED_QUERY",
                    f"Invalid string literal '{raw}'. Illegal character sequence "
                    f"'\\{nxt}' in string literal.",
                )
            i += 2
            continue
        value.append(ch)
        like.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    raise SoqlError("MALFORMED_QUERY", f"line 1:{start} mismatched character '<EOF>' expecting '''")


def _positioned(text: str, tokens: list[Token], pos: int, code: str, reason: str) -> SoqlError:
    """Build Salesforce's error text: a window of the query, a caret, row/column, reason."""
    line_start = text.rfind("\n", 0, pos) + 1
    line_end = text.find("\n", pos)
    line_end = len(text) if line_end == -1 else line_end
    row = text.count("\n", 0, pos) + 1
    column = pos - line_start + 1
    real = [t for t in tokens if t.kind != "eof"]
    index = next((k for k, t in enumerate(real) if t.end > pos), len(real) - 1)
    if index < 0:
        window_start, window_end = pos, pos
    else:
        window_start = max(real[max(0, index - 4)].pos, line_start)
        window_end = min(real[min(len(real) - 1, index + 4)].end, line_end)
        window_start = min(window_start, pos)
        window_end = max(window_end, min(pos, line_end))
    window = text[window_start:window_end]
    caret = " " * (pos - window_start) + "^"
    return SoqlError(code, f"\n{window}\n{caret}\nERROR at Row:{row}:Column:{column}\n{reason}")


# ---------------------------------------------------------------------------------------------
# Syntax tree


@dataclass(frozen=True)
class FieldPath:
    text: str
    pos: int

    @property
    def parts(self) -> list[str]:
        return self.text.split(".")


@dataclass(frozen=True)
class CountExpr:
    path: FieldPath | None  # None for COUNT()
    alias: str | None
    pos: int


@dataclass(frozen=True)
class Literal:
    kind: str  # string, number, boolean, null, date, datetime, range
    value: Any
    token: Token


@dataclass(frozen=True)
class Comparison:
    path: FieldPath
    op: str  # = != < <= > >= LIKE IN NOT IN INCLUDES EXCLUDES
    values: tuple[Literal, ...]


@dataclass(frozen=True)
class BoolOp:
    op: str  # AND, OR, NOT
    items: tuple[Condition, ...]


Condition = Comparison | BoolOp


@dataclass(frozen=True)
class OrderItem:
    path: FieldPath
    descending: bool
    nulls_first: bool


@dataclass(frozen=True)
class Query:
    text: str
    tokens: list[Token]
    select: tuple[FieldPath | CountExpr, ...]
    sobject: str
    sobject_pos: int
    where: Condition | None
    order_by: tuple[OrderItem, ...]
    limit: int | None
    offset: int | None
    offset_pos: int = 0


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    # -- helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def _advance(self) -> Token:
        token = self.tokens[self.i]
        if token.kind != "eof":
            self.i += 1
        return token

    def error(self, token: Token | None = None) -> SoqlError:
        token = token or self.tok
        shown = "<EOF>" if token.kind == "eof" else token.text
        return _positioned(
            self.text, self.tokens, token.pos, "MALFORMED_QUERY", f"unexpected token: '{shown}'"
        )

    def expect_kw(self, *words: str) -> Token:
        if not self.tok.is_kw(*words):
            raise self.error()
        return self._advance()

    def expect(self, kind: str) -> Token:
        if self.tok.kind != kind:
            raise self.error()
        return self._advance()

    def field_path(self) -> FieldPath:
        token = self.tok
        if token.kind != "ident" or token.text.upper() in _KEYWORDS:
            raise self.error()
        self._advance()
        return FieldPath(token.text, token.pos)

    # -- grammar
    def parse(self) -> Query:
        self.expect_kw("SELECT")
        select: list[FieldPath | CountExpr] = []
        while True:
            select.append(self.select_item())
            if self.tok.kind != ",":
                break
            self._advance()
        self.expect_kw("FROM")
        obj = self.tok
        if obj.kind != "ident" or "." in obj.text or obj.text.upper() in _KEYWORDS:
            raise self.error()
        self._advance()
        where = None
        if self.tok.is_kw("WHERE"):
            self._advance()
            where = self.condition()
        order: list[OrderItem] = []
        if self.tok.is_kw("ORDER"):
            self._advance()
            self.expect_kw("BY")
            while True:
                order.append(self.order_item())
                if self.tok.kind != ",":
                    break
                self._advance()
        limit = offset = None
        offset_pos = 0
        if self.tok.is_kw("LIMIT"):
            self._advance()
            limit = self.integer()
        if self.tok.is_kw("OFFSET"):
            offset_pos = self._advance().pos
            offset = self.integer()
        if self.tok.kind != "eof":
            raise self.error()
        return Query(
            self.text,
            self.tokens,
            tuple(select),
            obj.text,
            obj.pos,
            where,
            tuple(order),
            limit,
            offset,
            offset_pos,
        )

    def integer(self) -> int:
        token = self.tok
        if token.kind != "number" or not isinstance(token.value, int) or token.value < 0:
            raise self.error()
        self._advance()
        return token.value

    def select_item(self) -> FieldPath | CountExpr:
        token = self.tok
        if token.is_kw("COUNT") and self.tokens[self.i + 1].kind == "(":
            self._advance()
            self._advance()
            path = None if self.tok.kind == ")" else self.field_path()
            self.expect(")")
            alias = None
            if (
                path is not None
                and self.tok.kind == "ident"
                and self.tok.text.upper() not in _KEYWORDS
            ):
                alias = self._advance().text
            return CountExpr(path, alias, token.pos)
        return self.field_path()

    def order_item(self) -> OrderItem:
        path = self.field_path()
        descending = False
        if self.tok.is_kw("ASC", "DESC"):
            descending = self._advance().text.upper() == "DESC"
        nulls_first = True  # documented default: "By default, null values are sorted first."
        if self.tok.is_kw("NULLS"):
            self._advance()
            nulls_first = self.expect_kw("FIRST", "LAST").text.upper() == "FIRST"
        return OrderItem(path, descending, nulls_first)

    def condition(self) -> Condition:
        first = self.unary()
        if not self.tok.is_kw("AND", "OR"):
            return first
        op = self.tok.text.upper()
        items = [first]
        while self.tok.is_kw(op):
            self._advance()
            items.append(self.unary())
        if self.tok.is_kw("AND", "OR"):
            # Mixing AND and OR without parentheses is a syntax error in SOQL.
            raise self.error()
        return BoolOp(op, tuple(items))

    def unary(self) -> Condition:
        if self.tok.is_kw("NOT"):
            self._advance()
            return BoolOp("NOT", (self.unary(),))
        if self.tok.kind == "(":
            self._advance()
            inner = self.condition()
            self.expect(")")
            return inner
        return self.comparison()

    def comparison(self) -> Comparison:
        path = self.field_path()
        token = self.tok
        if token.kind == "op":
            self._advance()
            return Comparison(path, token.text, (self.literal(),))
        if token.is_kw("LIKE"):
            self._advance()
            return Comparison(path, "LIKE", (self.literal(),))
        if token.is_kw("NOT"):
            self._advance()
            self.expect_kw("IN")
            return Comparison(path, "NOT IN", self.literal_list())
        if token.is_kw("IN", "INCLUDES", "EXCLUDES"):
            self._advance()
            return Comparison(path, token.text.upper(), self.literal_list())
        raise self.error()

    def literal_list(self) -> tuple[Literal, ...]:
        self.expect("(")
        values = [self.literal()]
        while self.tok.kind == ",":
            self._advance()
            values.append(self.literal())
        self.expect(")")
        return tuple(values)

    def literal(self) -> Literal:
        token = self.tok
        if token.kind in {"string", "number", "date", "datetime"}:
            self._advance()
            return Literal(token.kind, token.value, token)
        if token.is_kw("TRUE", "FALSE"):
            self._advance()
            return Literal("boolean", token.text.upper() == "TRUE", token)
        if token.is_kw("NULL"):
            self._advance()
            return Literal("null", None, token)
        if token.kind == "ident" and token.text.upper() in _DATE_RANGES:
            self._advance()
            name = token.text.upper()
            amount = None
            if name.endswith(":N") or _DATE_RANGES[name]:
                self.expect(":")
                amount = self.integer()
            return Literal("range", (name, amount), token)
        raise self.error()


def parse(text: str) -> Query:
    """Parse a SOQL statement (syntax only); raises :class:`SoqlError` ``MALFORMED_QUERY``."""
    return _Parser(text).parse()


# ---------------------------------------------------------------------------------------------
# Date literals: name -> takes ":n".

_DATE_RANGES: dict[str, bool] = {
    "TODAY": False,
    "YESTERDAY": False,
    "TOMORROW": False,
    "THIS_WEEK": False,
    "LAST_WEEK": False,
    "NEXT_WEEK": False,
    "THIS_MONTH": False,
    "LAST_MONTH": False,
    "NEXT_MONTH": False,
    "THIS_YEAR": False,
    "LAST_YEAR": False,
    "LAST_N_DAYS": True,
    "NEXT_N_DAYS": True,
    "N_DAYS_AGO": True,
    "LAST_N_MONTHS": True,
}


def _date_range(name: str, n: int | None, today: date) -> tuple[date, date]:
    """[start, end) in days for a SOQL date literal, in the user's time zone (UTC here)."""
    n = n or 0
    day = timedelta(days=1)
    week_start = today - timedelta(days=(today.weekday() + 1) % 7)  # weeks start on Sunday
    month_start = today.replace(day=1)

    def add_months(d: date, months: int) -> date:
        index = d.year * 12 + d.month - 1 + months
        return date(index // 12, index % 12 + 1, 1)

    match name:
        case "TODAY":
            return today, today + day
        case "YESTERDAY":
            return today - day, today
        case "TOMORROW":
            return today + day, today + 2 * day
        case "THIS_WEEK":
            return week_start, week_start + 7 * day
        case "LAST_WEEK":
            return week_start - 7 * day, week_start
        case "NEXT_WEEK":
            return week_start + 7 * day, week_start + 14 * day
        case "THIS_MONTH":
            return month_start, add_months(month_start, 1)
        case "LAST_MONTH":
            return add_months(month_start, -1), month_start
        case "NEXT_MONTH":
            return add_months(month_start, 1), add_months(month_start, 2)
        case "THIS_YEAR":
            return date(today.year, 1, 1), date(today.year + 1, 1, 1)
        case "LAST_YEAR":
            return date(today.year - 1, 1, 1), date(today.year, 1, 1)
        case "LAST_N_DAYS":  # documented: includes today and the n days before it
            return today - n * day, today + day
        case "NEXT_N_DAYS":
            return today + day, today + (n + 1) * day
        case "N_DAYS_AGO":
            return today - n * day, today - (n - 1) * day
        case "LAST_N_MONTHS":
            return add_months(month_start, -n), month_start
    raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{name}'")


# ---------------------------------------------------------------------------------------------
# Compilation against the field table


class RecordLookup(Protocol):
    """What the evaluator needs from the store to follow relationship paths."""

    def lookup(self, record_id: str) -> tuple[str, Mapping[str, Any]] | None:
        """(sObject name, record) for an id, or None."""
        ...

    def canonical_id(self, value: str) -> str:
        """The stored 18-character form of a 15/18-character id (any case)."""
        ...


_NAME_FIELDS: dict[str, FieldDef] = {
    name.lower(): FieldDef(
        name,
        "id" if name == "Id" else "boolean" if name == "IsActive" else "string",
        name,
        length=0 if name in {"Id", "IsActive"} else 255,
    )
    for name in NAME_OBJECT_FIELDS
}

Reader = Callable[[str, Mapping[str, Any]], Any]


@dataclass
class _Step:
    ref: FieldDef
    polymorphic: bool
    target: SObjectDef | None  # None for the polymorphic ``Name`` pseudo-object


@dataclass
class _Resolved:
    steps: list[_Step]
    leaf: FieldDef
    name_object: bool


@dataclass
class _ProjectionNode:
    # key -> FieldDef (leaf) or _ProjectionChild; insertion order = output order
    entries: dict[str, FieldDef | _ProjectionChild] = field(default_factory=dict)


@dataclass
class _ProjectionChild:
    step: _Step
    node: _ProjectionNode


@dataclass
class Column:
    """One flat SELECT column (Bulk API CSV): header, leaf field and a raw-value reader."""

    header: str
    leaf: FieldDef
    read: Callable[[Mapping[str, Any]], Any]


@dataclass
class Plan:
    """A compiled query: filter, sort, window and projection over flat records."""

    sobject: SObjectDef
    predicate: Callable[[Mapping[str, Any]], bool] | None
    order: list[tuple[Callable[[Mapping[str, Any]], Any], bool, bool]]
    limit: int | None
    offset: int
    count_only: bool
    aggregate_alias: str | None
    aggregate_reader: Callable[[Mapping[str, Any]], Any] | None
    projector: Callable[[Mapping[str, Any]], dict[str, Any]]
    #: The SELECT list flattened to columns (relationship paths as ``Owner.Name``).
    columns: list[Column] = field(default_factory=list)

    def execute(self, records: Iterable[Mapping[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
        """Return (totalSize, projected rows)."""
        rows = self.select(records)
        if self.count_only:
            return len(rows), []
        if self.aggregate_reader is not None:
            reader = self.aggregate_reader
            count = sum(1 for r in rows if reader(r) is not None)
            alias = self.aggregate_alias or "expr0"
            return 1, [{"attributes": {"type": "AggregateResult"}, alias: count}]
        return len(rows), [self.projector(r) for r in rows]

    def select(
        self,
        records: Iterable[Mapping[str, Any]],
        keep: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> list[Mapping[str, Any]]:
        """The matching stored records (references, not copies), sorted and windowed.

        ``keep`` is an extra filter applied in the same pass (query vs. queryAll visibility).
        """
        predicate = self.predicate
        if predicate is not None and keep is not None:
            rows = [r for r in records if keep(r) and predicate(r)]
        elif predicate is not None or keep is not None:
            test = predicate or keep
            assert test is not None
            rows = [r for r in records if test(r)]
        else:
            rows = list(records)
        if self.order:
            rows = self._sort(rows)
        if self.offset:
            rows = rows[self.offset :]
        if self.limit is not None:
            rows = rows[: self.limit]
        return rows

    def _sort(self, rows: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        # Stable multi-key sort: one pass per key, last key first; nulls placed per NULLS FIRST
        # / LAST independently of the direction.
        # Each key is computed once per row (a million-row ORDER BY would otherwise pay for
        # three Python calls per row and key).
        for key, descending, nulls_first in reversed(self.order):
            keys = [key(r) for r in rows]
            nulls = [r for r, k in zip(rows, keys, strict=True) if k is None]
            order = [i for i, k in enumerate(keys) if k is not None]
            order.sort(key=keys.__getitem__, reverse=descending)
            values = [rows[i] for i in order]
            rows = nulls + values if nulls_first else values + nulls
        return rows


class Compiler:
    """Validates a parsed query against the field table and builds a :class:`Plan`."""

    def __init__(self, store: RecordLookup, api_version: str, now: datetime | None = None) -> None:
        self.store = store
        self.api_version = api_version
        self.now = now or datetime.now(UTC)

    def compile(self, query: Query) -> Plan:
        self.query = query
        obj = sobject(query.sobject)
        if obj is None:
            raise self._error(
                query.sobject_pos,
                "INVALID_TYPE",
                f"sObject type '{query.sobject}' is not supported. If you are attempting to use "
                f"a custom object, be sure to append the '__c' after the entity name. "
                + _WSDL_HINT,
            )
        self.obj = obj
        count_only = False
        aggregate_alias = None
        aggregate_reader = None
        fields: list[FieldPath] = []
        for item in query.select:
            if isinstance(item, CountExpr):
                if item.path is None:
                    if len(query.select) > 1:
                        raise self._error(item.pos, "MALFORMED_QUERY", "unexpected token: ','")
                    count_only = True
                else:
                    resolved = self._resolve(item.path)
                    aggregate_reader = self._reader(resolved)
                    aggregate_alias = item.alias
            else:
                fields.append(item)
        if aggregate_reader is not None and fields:
            raise self._error(
                fields[0].pos,
                "MALFORMED_QUERY",
                f"Field must be grouped or aggregated: {fields[0].text}",
            )
        root = _ProjectionNode()
        columns: list[Column] = []
        for path in fields:
            self._add_projection(root, path)
            columns.append(self._column(path))

        predicate = self._condition(query.where) if query.where is not None else None
        order = []
        for item in query.order_by:
            resolved = self._resolve(item.path)
            if not resolved.leaf.filterable or resolved.leaf.type == "multipicklist":
                raise self._error(
                    item.path.pos,
                    "INVALID_FIELD",
                    f"field '{resolved.leaf.name}' can not be sorted in a query call",
                )
            order.append((self._sort_key(resolved), item.descending, item.nulls_first))
        if query.offset is not None and query.offset > MAX_OFFSET:
            raise SoqlError(
                "NUMBER_OUTSIDE_VALID_RANGE", f"Maximum SOQL offset allowed is {MAX_OFFSET}"
            )
        return Plan(
            obj,
            predicate,
            order,
            query.limit,
            query.offset or 0,
            count_only,
            aggregate_alias,
            aggregate_reader,
            self._projector(root),
            columns,
        )

    # -- errors
    def _error(self, pos: int, code: str, reason: str) -> SoqlError:
        return _positioned(self.query.text, self.query.tokens, pos, code, reason)

    # -- paths
    def _resolve(self, path: FieldPath) -> _Resolved:
        parts = path.parts
        current: SObjectDef | None = self.obj
        steps: list[_Step] = []
        for rel in parts[:-1]:
            if current is None:  # traversing beyond the Name pseudo-object is not allowed
                raise self._error(path.pos, "INVALID_FIELD", _no_column(rel, "Name"))
            ref = current.relationship(rel)
            if ref is None:
                raise self._error(
                    path.pos,
                    "INVALID_FIELD",
                    f"Didn't understand relationship '{rel}' in field path. If you are "
                    "attempting to use a custom relationship, be sure to append the '__r' "
                    "after the custom relationship name. " + _WSDL_HINT,
                )
            if ref.polymorphic:
                steps.append(_Step(ref, True, None))
                current = None
            else:
                target = SOBJECTS.get(ref.reference_to[0])
                if target is None:
                    raise self._error(
                        path.pos,
                        "INVALID_FIELD",
                        f"Didn't understand relationship '{rel}' in field path. " + _WSDL_HINT,
                    )
                steps.append(_Step(ref, False, target))
                current = target
        leaf_name = parts[-1]
        if current is None:
            leaf = _NAME_FIELDS.get(leaf_name.lower())
            if leaf is None:
                raise self._error(path.pos, "INVALID_FIELD", _no_column(leaf_name, "Name"))
            return _Resolved(steps, leaf, True)
        leaf = current.field(leaf_name)
        if leaf is None:
            raise self._error(path.pos, "INVALID_FIELD", _no_column(leaf_name, current.name))
        return _Resolved(steps, leaf, False)

    def _reader(self, resolved: _Resolved) -> Callable[[Mapping[str, Any]], Any]:
        """Record → raw stored value of the path (None when a link is empty)."""
        leaf = resolved.leaf
        if resolved.name_object:
            leaf_name = leaf.name

            def read_leaf(obj_name: str, rec: Mapping[str, Any]) -> Any:
                if leaf_name == "Type":
                    return obj_name
                return rec.get(leaf_name)

        elif leaf.type == "address":

            def read_leaf(obj_name: str, rec: Mapping[str, Any]) -> Any:
                return compound_address(leaf, rec)

        else:
            leaf_name = leaf.name

            def read_leaf(obj_name: str, rec: Mapping[str, Any]) -> Any:
                return rec.get(leaf_name)

        reader: Reader = read_leaf
        lookup = self.store.lookup
        for step in reversed(resolved.steps):
            reader = _follow(step.ref.name, reader, lookup)
        base = self.obj.name
        final = reader
        return lambda rec: final(base, rec)

    def _sort_key(self, resolved: _Resolved) -> Callable[[Mapping[str, Any]], Any]:
        reader = self._reader(resolved)
        if resolved.leaf.type in TEXT_TYPES or resolved.name_object:

            def key(rec: Mapping[str, Any]) -> Any:
                value = reader(rec)
                return value.casefold() if isinstance(value, str) else value

            return key
        return reader

    # -- projection
    def _add_projection(self, root: _ProjectionNode, path: FieldPath) -> None:
        resolved = self._resolve(path)
        node = root
        for step in resolved.steps:
            key = step.ref.relationship_name or step.ref.name
            child = node.entries.get(key)
            if not isinstance(child, _ProjectionChild):
                child = _ProjectionChild(step, _ProjectionNode())
                node.entries[key] = child
            node = child.node
        node.entries.setdefault(resolved.leaf.name, resolved.leaf)

    def _column(self, path: FieldPath) -> Column:
        resolved = self._resolve(path)
        names = [step.ref.relationship_name or step.ref.name for step in resolved.steps]
        return Column(".".join([*names, resolved.leaf.name]), resolved.leaf, self._reader(resolved))

    def _projector(self, root: _ProjectionNode) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
        version = self.api_version
        lookup = self.store.lookup
        base = self.obj.name
        compiled = _compile_node(root)

        def project(ops: list[_Op], obj_name: str, type_name: str, rec: Mapping[str, Any]):
            out: dict[str, Any] = {
                "attributes": {
                    "type": type_name,
                    "url": f"/services/data/v{version}/sobjects/{obj_name}/{rec.get('Id')}",
                }
            }
            for kind, key, name, extra in ops:
                if kind == _LEAF:
                    value = rec.get(name)
                    out[key] = value if value is None or extra is None else extra(value)
                elif kind == _CHILD:
                    target_id = rec.get(name)
                    hit = lookup(target_id) if target_id else None
                    if hit is None:
                        out[key] = None
                        continue
                    polymorphic, child_ops = extra
                    child_type = "Name" if polymorphic else hit[0]
                    out[key] = project(child_ops, hit[0], child_type, hit[1])
                elif kind == _ADDRESS:
                    out[key] = compound_address(extra, rec)
                else:  # a field of the polymorphic Name pseudo-object: read from the real record
                    actual = SOBJECTS.get(obj_name)
                    if key == "Type":
                        out[key] = obj_name
                        continue
                    real_field = actual.field(key) if actual is not None else None
                    out[key] = to_wire(real_field, rec.get(real_field.name)) if real_field else None
            return out

        return lambda rec: project(compiled, base, base, rec)

    # -- WHERE
    def _condition(self, cond: Condition) -> Callable[[Mapping[str, Any]], bool]:
        if isinstance(cond, BoolOp):
            parts = [self._condition(c) for c in cond.items]
            if cond.op == "NOT":
                inner = parts[0]
                return lambda rec: not inner(rec)
            if cond.op == "AND":
                return lambda rec: all(p(rec) for p in parts)
            return lambda rec: any(p(rec) for p in parts)
        return self._comparison(cond)

    def _comparison(self, cmp: Comparison) -> Callable[[Mapping[str, Any]], bool]:
        resolved = self._resolve(cmp.path)
        leaf = resolved.leaf
        if not leaf.filterable:
            raise self._error(
                cmp.path.pos,
                "INVALID_FIELD",
                f"field '{leaf.name}' can not be filtered in a query call",
            )
        reader = self._reader(resolved)
        kind = _kind(leaf)
        op = cmp.op
        if op == "LIKE":
            if kind != "text":
                raise self._error(
                    cmp.values[0].token.pos,
                    "INVALID_QUERY_FILTER_OPERATOR",
                    f"invalid operator on {leaf.type} field",
                )
            literal = cmp.values[0]
            if literal.kind != "string":
                raise self._type_error(leaf, literal)
            pattern = re.compile(f"^{literal.token.like}$", re.IGNORECASE | re.DOTALL)

            def like(rec: Mapping[str, Any]) -> bool:
                value = reader(rec)
                return value is not None and pattern.match(value) is not None

            return like
        if op in {"INCLUDES", "EXCLUDES"}:
            if leaf.type != "multipicklist":
                raise self._error(
                    cmp.path.pos,
                    "INVALID_QUERY_FILTER_OPERATOR",
                    f"includes or excludes operator only valid on multipicklist field: {leaf.name}",
                )
            wanted = [
                {v.casefold() for v in str(self._value(leaf, lit)).split(";")} for lit in cmp.values
            ]

            def includes(rec: Mapping[str, Any]) -> bool:
                value = reader(rec)
                have = {v.casefold() for v in value.split(";")} if value else set()
                return any(w <= have for w in wanted)

            if op == "INCLUDES":
                return includes
            return lambda rec: not includes(rec)

        if op in {"IN", "NOT IN"}:
            values = [self._value(leaf, lit) for lit in cmp.values]
            if any(isinstance(v, tuple) for v in values):
                raise self._type_error(leaf, cmp.values[0])
            normalized = {_norm(kind, v) for v in values}
            positive = op == "IN"

            def member(rec: Mapping[str, Any]) -> bool:
                return (_norm(kind, reader(rec)) in normalized) == positive

            return member

        literal = cmp.values[0]
        value = self._value(leaf, literal)
        if isinstance(value, tuple):  # a date literal range: compare against its bounds
            return self._range_comparison(reader, leaf, op, value)
        target = _norm(kind, value)
        if target is None:
            if op == "=":
                return lambda rec: reader(rec) is None
            if op == "!=":
                return lambda rec: reader(rec) is not None
            return lambda rec: False
        compare = _COMPARATORS[op]

        def compare_value(rec: Mapping[str, Any]) -> bool:
            current = _norm(kind, reader(rec))
            if current is None:
                return op == "!="  # SOQL: null != 'x' is true
            return compare(current, target)

        return compare_value

    def _range_comparison(
        self,
        reader: Callable[[Mapping[str, Any]], Any],
        leaf: FieldDef,
        op: str,
        bounds: tuple[Any, Any],
    ) -> Callable[[Mapping[str, Any]], bool]:
        start, end = bounds
        tests: dict[str, Callable[[Any], bool]] = {
            "=": lambda v: start <= v < end,
            "!=": lambda v: not (start <= v < end),
            "<": lambda v: v < start,
            "<=": lambda v: v < end,
            ">": lambda v: v >= end,
            ">=": lambda v: v >= start,
        }
        test = tests[op]

        def in_range(rec: Mapping[str, Any]) -> bool:
            value = reader(rec)
            if value is None:
                return op == "!="
            return test(value)

        return in_range

    def _value(self, leaf: FieldDef, literal: Literal) -> Any:
        """Type-check a literal against the field; return the comparable Python value."""
        kind = _kind(leaf)
        if literal.kind == "null":
            return None
        if kind == "id":
            if literal.kind != "string":
                raise self._type_error(leaf, literal)
            text_value = literal.value
            if text_value == "":
                return None
            if not is_id(text_value):
                raise self._error(
                    literal.token.pos,
                    "INVALID_QUERY_FILTER_OPERATOR",
                    f"invalid ID field: {text_value}",
                )
            return self.store.canonical_id(text_value)
        if kind == "text":
            if literal.kind != "string":
                raise self._type_error(leaf, literal)
            return literal.value
        if kind == "boolean":
            if literal.kind != "boolean":
                raise self._type_error(leaf, literal)
            return literal.value
        if kind == "number":
            if literal.kind != "number":
                raise self._type_error(leaf, literal)
            return literal.value
        if kind == "date":
            if literal.kind == "date":
                return literal.value
            if literal.kind == "range":
                name, amount = literal.value
                return _date_range(name, amount, self.now.date())
            raise self._type_error(leaf, literal)
        if kind == "datetime":
            if literal.kind == "datetime":
                return literal.value
            if literal.kind == "range":
                name, amount = literal.value
                start, end = _date_range(name, amount, self.now.date())
                return (_midnight(start), _midnight(end))
            raise self._type_error(leaf, literal)
        raise self._type_error(leaf, literal)

    def _type_error(self, leaf: FieldDef, literal: Literal) -> SoqlError:
        expected = {
            "text": "string",
            "id": "id",
            "boolean": "boolean",
            "number": "integer" if leaf.type == "int" else "double",
            "date": "date",
            "datetime": "dateTime",
        }[_kind(leaf)]
        quoting = (
            "should be enclosed in quotes"
            if expected in {"string", "id"}
            else ("should not be enclosed in quotes")
        )
        return self._error(
            literal.token.pos,
            "MALFORMED_QUERY",
            f"value of filter criterion for field '{leaf.name}' must be of type {expected} "
            f"and {quoting}",
        )


# Projection ops, compiled once per query so a page of thousands of rows runs a flat loop
# instead of re-dispatching on field types per value: (kind, output key, stored name, extra).
_LEAF, _CHILD, _ADDRESS, _NAME_LEAF = range(4)
_Op = tuple[int, str, str, Any]


def _wire_converter(f: FieldDef) -> Callable[[Any], Any] | None:
    """``to_wire`` specialised to one field; None when the stored value is already the wire one."""
    if f.type in {"datetime", "date", "double", "currency", "percent", "int"}:
        return lambda value: to_wire(f, value)
    return None


def _compile_node(node: _ProjectionNode, name_object: bool = False) -> list[_Op]:
    ops: list[_Op] = []
    for key, entry in node.entries.items():
        if isinstance(entry, _ProjectionChild):
            child_ops = _compile_node(entry.node, name_object=entry.step.polymorphic)
            ops.append((_CHILD, key, entry.step.ref.name, (entry.step.polymorphic, child_ops)))
        elif name_object:
            ops.append((_NAME_LEAF, key, key, None))
        elif entry.type == "address":
            ops.append((_ADDRESS, key, entry.name, entry))
        else:
            converter = _wire_converter(entry)
            if entry.type == "datetime":
                converter = format_datetime
            ops.append((_LEAF, key, entry.name, converter))
    return ops


def _no_column(name: str, entity: str) -> str:
    return (
        f"No such column '{name}' on entity '{entity}'. If you are attempting to use a custom "
        f"field, be sure to append the '__c' after the custom field name. " + _WSDL_HINT
    )


def _follow(ref_name: str, inner: Reader, lookup: Callable[[str], Any]) -> Reader:
    def read(obj_name: str, rec: Mapping[str, Any]) -> Any:
        target_id = rec.get(ref_name)
        if not target_id:
            return None
        hit = lookup(target_id)
        if hit is None:
            return None
        return inner(hit[0], hit[1])

    return read


def _midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def _kind(leaf: FieldDef) -> str:
    if leaf.type in {"id", "reference"}:
        return "id"
    if leaf.type in TEXT_TYPES:
        return "text"
    if leaf.type in NUMBER_TYPES:
        return "number"
    if leaf.type in {"boolean", "date", "datetime"}:
        return leaf.type
    return "other"


def _norm(kind: str, value: Any) -> Any:
    """Comparable form: text is compared case-insensitively, ids by their 18-char form."""
    if value is None:
        return None
    if kind == "text" and isinstance(value, str):
        return value.casefold()
    if kind == "id" and isinstance(value, str):
        return id18(value).casefold() if len(value) == 15 else value.casefold()
    if kind == "number":
        return float(value)
    return value


_COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def compile_query(
    text: str, store: RecordLookup, api_version: str, now: datetime | None = None
) -> Plan:
    """Parse and compile ``text``; raises :class:`SoqlError` with Salesforce's error codes."""
    return Compiler(store, api_version, now).compile(parse(text))
