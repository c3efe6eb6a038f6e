"""In-memory HubSpot CRM v3 emulator (WSGI, werkzeug).

The unmodified `hubspot-api-client==12.0.0` is pointed at this app with
`HubSpot(access_token=..., host="http://127.0.0.1:PORT")` and must not be able to tell it from
api.hubapi.com. The wire contract is /work/shared/reference/api_contract.md (Part A); the record
load format is docs/sandbox-data.md. Where HubSpot's behaviour is undocumented the choice made here
is written next to the code, marked "unverified".

State lives in dicts keyed by numeric id behind one lock; the werkzeug threaded server calls
`__call__` from many threads.
"""

import bisect
import fnmatch
import functools
import json
import logging
import math
import operator
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import (
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
)
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, NoReturn

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from connectors.sandbox.hubspot_properties import (
    ENGAGEMENT_TYPES,
    OBJECT_TYPES,
    standard_groups,
    standard_properties,
)

Json = dict[str, Any]
WsgiEnviron = dict[str, Any]
StartResponse = Callable[..., Any]

_log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Object types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ObjectMeta:
    name: str  # plural path name
    type_id: str  # "0-1" ...
    upper: str  # used in HubSpot error messages ("Could not get some CONTACT objects")
    singular: str
    created_prop: str
    modified_prop: str
    defaults: tuple[str, ...]  # properties returned when none are requested
    searchable: tuple[str, ...]  # properties the free-text `query` of search looks at


def _engagement_meta(name: str, type_id: str, searchable: tuple[str, ...]) -> _ObjectMeta:
    singular = name[:-1]
    return _ObjectMeta(
        name,
        type_id,
        singular.upper(),
        singular,
        "hs_createdate",
        "hs_lastmodifieddate",
        (),
        searchable,
    )


_OBJECTS: dict[str, _ObjectMeta] = {
    "contacts": _ObjectMeta(
        "contacts",
        "0-1",
        "CONTACT",
        "contact",
        "createdate",
        "lastmodifieddate",
        ("firstname", "lastname", "email"),
        (
            "firstname",
            "lastname",
            "email",
            "hs_additional_emails",
            "phone",
            "mobilephone",
            "company",
        ),
    ),
    "companies": _ObjectMeta(
        "companies",
        "0-2",
        "COMPANY",
        "company",
        "createdate",
        "hs_lastmodifieddate",
        ("name", "domain"),
        ("name", "domain", "website", "phone"),
    ),
    "deals": _ObjectMeta(
        "deals",
        "0-3",
        "DEAL",
        "deal",
        "createdate",
        "hs_lastmodifieddate",
        ("dealname", "amount", "closedate", "pipeline", "dealstage"),
        ("dealname", "dealstage"),
    ),
    "emails": _engagement_meta("emails", "0-49", ("hs_email_subject", "hs_email_text")),
    "calls": _engagement_meta("calls", "0-48", ("hs_call_title", "hs_call_body")),
    "meetings": _engagement_meta("meetings", "0-47", ("hs_meeting_title", "hs_meeting_body")),
    "notes": _engagement_meta("notes", "0-46", ("hs_note_body",)),
    "tasks": _engagement_meta("tasks", "0-27", ("hs_task_subject", "hs_task_body")),
}
assert set(_OBJECTS) == set(OBJECT_TYPES)

# HubSpot accepts the plural name, the singular name and the object type id in paths, in any case.
_OBJECT_ALIASES: dict[str, str] = {}
for _meta in _OBJECTS.values():
    for _alias in (_meta.name, _meta.singular, _meta.type_id):
        _OBJECT_ALIASES[_alias] = _meta.name

# --------------------------------------------------------------------------------------------
# Association types (ids from hubspot/crm/association_type.py; contract §A8)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _AssocType:
    type_id: int
    from_ot: str
    to_ot: str
    v3_name: str  # the string "type" of the v3 `associations` block on object reads
    label: str | None  # the v4 label; unlabeled (default) associations have none
    inverse: int


_ASSOC_TYPES: dict[int, _AssocType] = {}
_DEFAULT_TYPE: dict[tuple[str, str], int] = {}
_PRIMARY_TYPE: dict[tuple[str, str], int] = {}


def _define_assoc(a: str, b: str, a_to_b: int, b_to_a: int, kind: str) -> None:
    """Register both directions of an association type. `kind`: "sole" (the only type between
    the pair, e.g. email_to_contact), "unlabeled" (the default where a pair also has a primary;
    v3 calls it contact_to_company_unlabeled) or "primary" (v4 label "Primary")."""
    sa, sb = _OBJECTS[a].singular, _OBJECTS[b].singular
    suffix = "_unlabeled" if kind == "unlabeled" else ""
    label = "Primary" if kind == "primary" else None
    _ASSOC_TYPES[a_to_b] = _AssocType(a_to_b, a, b, f"{sa}_to_{sb}{suffix}", label, b_to_a)
    _ASSOC_TYPES[b_to_a] = _AssocType(b_to_a, b, a, f"{sb}_to_{sa}{suffix}", label, a_to_b)
    if kind == "primary":
        _PRIMARY_TYPE[(a, b)] = a_to_b
    else:
        _DEFAULT_TYPE[(a, b)] = a_to_b
        _DEFAULT_TYPE[(b, a)] = b_to_a


_define_assoc("contacts", "companies", 279, 280, "unlabeled")
_define_assoc("contacts", "companies", 1, 2, "primary")
_define_assoc("deals", "contacts", 3, 4, "sole")
_define_assoc("deals", "companies", 341, 342, "unlabeled")
_define_assoc("deals", "companies", 5, 6, "primary")
for _eng, _ids in {
    "calls": ((194, 193), (182, 181), (206, 205)),
    "emails": ((198, 197), (186, 185), (210, 209)),
    "meetings": ((200, 199), (188, 187), (212, 211)),
    "notes": ((202, 201), (190, 189), (214, 213)),
    "tasks": ((204, 203), (192, 191), (216, 215)),
}.items():
    for _target, (_fwd, _rev) in zip(("contacts", "companies", "deals"), _ids, strict=True):
        _define_assoc(_eng, _target, _fwd, _rev, "sole")

# The types linking two records come from a handful of combinations ({279}, {1, 279}...), so
# every association shares one interned frozenset: a set of its own per link and direction was
# ~190 B (tracemalloc at 10,000 people; ~1.2 GiB at a million). Links change by replacing it.
_TYPE_SETS: dict[frozenset[int], frozenset[int]] = {}
_NO_TYPES: frozenset[int] = frozenset()


def _type_set(types: Iterable[int]) -> frozenset[int]:
    key = frozenset(types)
    return _TYPE_SETS.setdefault(key, key)


# --------------------------------------------------------------------------------------------
# Limits (contract §A5, §A6, Part D)
# --------------------------------------------------------------------------------------------

_LIST_MAX = 100
_LIST_MAX_WITH_HISTORY = 50
_SEARCH_MAX = 200
_SEARCH_WINDOW = 10_000
_SEARCH_MAX_BODY = 3_000
_SEARCH_MAX_GROUPS = 5
_SEARCH_MAX_FILTERS_PER_GROUP = 6
_SEARCH_MAX_FILTERS = 18
_SEARCH_CACHE_SIZE = 4  # queries whose sorted matches are kept between pages
_BATCH_MAX = 100
_V4_PAGE_MAX = 500
_V4_BATCH_READ_MAX = 1_000  # unverified (secondary source, contract §A6)
_V4_BATCH_WRITE_MAX = 2_000  # unverified
_V4_BATCH_ARCHIVE_MAX = 100  # unverified
_PRIVATE_APP_ID = 2_000_001  # appears in the TEN_SECONDLY_ROLLING groupName


def rate_limit_body(policy: str, portal_id: int) -> Json:
    """HubSpot's 429 body for a policy: TEN_SECONDLY_ROLLING, DAILY or SECONDLY (search).

    Bodies from the usage guide (DAILY) and hubspot-api-python#117 (TEN_SECONDLY_ROLLING); the
    search body follows the long-standing "secondly" shape (unverified for search). The fault
    injector uses this too, so an injected 429 cannot drift from the emulator's own.
    """
    if policy == "TEN_SECONDLY_ROLLING":
        return {
            "status": "error",
            "message": "You have reached your ten_secondly_rolling limit.",
            "errorType": "RATE_LIMIT",
            "policyName": "TEN_SECONDLY_ROLLING",
            "groupName": "publicapi:private_app-api-calls-ten-secondly:"
            f"{_PRIVATE_APP_ID}:{portal_id}",
        }
    message = {"DAILY": "daily", "SECONDLY": "secondly"}[policy]
    return {
        "status": "error",
        "message": f"You have reached your {message} limit.",
        "errorType": "RATE_LIMIT",
        "policyName": policy,
        "requestId": uuid.uuid4().hex,
    }


_API_ORIGIN = "https://api.hubapi.com"
_AUTH_MESSAGE = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you "
    "can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)

_PROPERTY_TYPES = frozenset(
    {"string", "number", "date", "datetime", "enumeration", "bool", "phone_number"}
)
_FIELD_TYPES = frozenset(
    {
        "text",
        "textarea",
        "select",
        "radio",
        "checkbox",
        "booleancheckbox",
        "number",
        "date",
        "file",
        "html",
        "phonenumber",
        "calculation_equation",
    }
)
# Which field types HubSpot lets each data type use (unverified in detail; it does reject e.g.
# an enumeration rendered as a text field).
_FIELD_TYPES_FOR: dict[str, frozenset[str]] = {
    "string": frozenset({"text", "textarea", "html", "phonenumber", "file", "select", "radio"}),
    "phone_number": frozenset({"phonenumber", "text"}),
    "number": frozenset({"number", "calculation_equation", "select", "radio"}),
    "date": frozenset({"date"}),
    "datetime": frozenset({"date"}),
    "enumeration": frozenset({"select", "radio", "checkbox", "booleancheckbox"}),
    "bool": frozenset({"booleancheckbox", "calculation_equation"}),
}
_PROPERTY_NAME_RE = re.compile(r"[a-z][a-z0-9_]*\Z")
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z0-9-]{2,}\Z")
_INT_RE = re.compile(r"-?\d+\Z")
_TOKEN_SPLIT_RE = re.compile(r"[^\w*]+", re.UNICODE)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


_TWO_DIGITS = [f"{i:02d}" for i in range(100)]
_THREE_DIGITS = [f"{i:03d}" for i in range(1000)]


@functools.lru_cache(maxsize=4096)
def _iso_day(days: int) -> str:
    t = time.gmtime(days * 86_400)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"


def _iso(ms: int) -> str:
    """HubSpot's wire format for instants: ISO-8601, millisecond precision, `Z`."""
    # Runs twice per record on load (a million records at scale): the date part comes from a
    # small cache and the time of day from lookup tables, ~5x faster than datetime + strftime.
    days, rest = divmod(ms, 86_400_000)
    seconds, millis = divmod(rest, 1000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return (
        f"{_iso_day(days)}{_TWO_DIGITS[hours]}:{_TWO_DIGITS[minutes]}:{_TWO_DIGITS[seconds]}"
        f".{_THREE_DIGITS[millis]}Z"
    )


def _to_ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _MS


@functools.lru_cache(maxsize=262_144)
def _instant_ms(value: str) -> int | None:
    """Epoch-ms or ISO-8601 (date or date-time, any offset) → epoch ms, as HubSpot accepts both
    for date and datetime properties on writes and in search filters."""
    text = value.strip()
    if _INT_RE.match(text):
        return int(text)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    return _to_ms(dt)


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _coerce_value(raw: Any) -> str | None:
    """Property values travel as strings; JSON numbers/booleans are accepted and stringified the
    way HubSpot echoes them back (`true`, `17`)."""
    if raw is None:
        return None
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return str(raw)


# A page view as the Events API stores it: (occurredAt ms, id, contact id, event type, property
# (name, value) pairs). A million people view ~6M pages; as the JSON dicts the API returns they
# took 538 B each (tracemalloc), as rows 122 B (the type and property pairs are shared).
_PageView = tuple[int, str, str, str, tuple[tuple[str, str], ...]]


def _page_view_json(row: _PageView) -> Json:
    """A stored page view as the Events API returns it."""
    at_ms, event_id, object_id, event_type, properties = row
    return {
        "objectType": "contact",
        "objectId": object_id,
        "eventType": event_type,
        "occurredAt": _iso(at_ms),
        "id": event_id,
        "properties": dict(properties),
    }


def _load_instant(value: Any, fallback_ms: int) -> int:
    if value is None:
        return fallback_ms
    if isinstance(value, datetime):
        return _to_ms(value)
    if isinstance(value, date):
        return _to_ms(datetime(value.year, value.month, value.day, tzinfo=UTC))
    if isinstance(value, int | float):
        return int(value)
    parsed = _instant_ms(str(value))
    if parsed is None:
        raise ValueError(f"unparseable timestamp {value!r}")
    return parsed


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class _ApiError(Exception):
    def __init__(
        self, status: int, body: Json | None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def _fail(status: int, category: str, message: str, **extra: Any) -> NoReturn:
    body: Json = {"status": "error", "message": message, "category": category}
    body.update(extra)
    raise _ApiError(status, body)


def _bad_request(message: str, **extra: Any) -> NoReturn:
    _fail(400, "VALIDATION_ERROR", message, **extra)


@dataclass(frozen=True)
class _PropertyProblem:
    name: str
    code: str
    message: str


def _property_validation_error(problems: list[_PropertyProblem]) -> NoReturn:
    # The message embeds a JSON array, exactly as HubSpot renders it (no spaces); integrations
    # parse it, e.g. for INVALID_OPTION (contract §A7/§A11).
    detail = [
        {"isValid": False, "message": p.message, "error": p.code, "name": p.name} for p in problems
    ]
    message = "Property values were not valid: " + json.dumps(
        detail, ensure_ascii=False, separators=(",", ":")
    )
    errors = [
        {"message": p.message, "code": p.code, "context": {"propertyName": [p.name]}}
        for p in problems
    ]
    _bad_request(message, errors=errors)


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


class _Layout:
    """The property names of a record, in insertion order, shared by every record written in
    the same order (a "hidden class"). A million contacts with ~40 properties each cost ~1.6 KB
    apiece as dicts; with a shared layout a record keeps only a list of values (~0.4 KB)."""

    __slots__ = ("_getters", "_plus", "index", "names")

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.index = {name: i for i, name in enumerate(names)}
        self._plus: dict[str, _Layout] = {}
        self._getters: dict[tuple[str, ...], Callable[[list[str | None]], tuple[Any, ...]]] = {}

    def plus(self, name: str) -> "_Layout":
        layout = self._plus.get(name)
        if layout is None:
            layout = self._plus[name] = _layout_for((*self.names, name))
        return layout

    def getter(self, names: tuple[str, ...]) -> Callable[[list[str | None]], tuple[Any, ...]]:
        """A C-level picker of `names` out of a values list; a name the layout lacks reads the
        trailing None every values list carries."""
        getter = self._getters.get(names)
        if getter is None:
            indices = [self.index.get(name, -1) for name in names]
            if len(indices) == 1:
                only = indices[0]
                getter = lambda values: (values[only],)  # noqa: E731
            elif not indices:
                getter = lambda values: ()  # noqa: E731
            else:
                getter = operator.itemgetter(*indices)
            if len(self._getters) > 256:  # callers vary `properties=`; keep the cache small
                self._getters.clear()
            self._getters[names] = getter
        return getter


# Layouts are interned by name sequence, so records loaded from the same source share one. Their
# number is the number of distinct property-name sequences, not of records.
_LAYOUTS: dict[tuple[str, ...], _Layout] = {}


def _layout_for(names: tuple[str, ...]) -> _Layout:
    layout = _LAYOUTS.get(names)
    if layout is None:
        layout = _LAYOUTS.setdefault(names, _Layout(names))
    return layout


class _Props(MutableMapping[str, str | None]):
    """A record's property values: a dict-like view over (shared layout, values list). Absent and
    None-valued names stay distinct, exactly as in a dict."""

    __slots__ = ("_layout", "_values")

    def __init__(self, mapping: Mapping[str, str | None] | None = None) -> None:
        mapping = mapping or {}
        self._layout = _layout_for(tuple(mapping))
        # The trailing None is what `pick` reads for names the layout lacks.
        self._values: list[str | None] = [*mapping.values(), None]

    def get(self, name: str, default: Any = None) -> Any:
        index = self._layout.index.get(name)
        return default if index is None else self._values[index]

    def __getitem__(self, name: str) -> str | None:
        index = self._layout.index.get(name)
        if index is None:
            raise KeyError(name)
        return self._values[index]

    def __setitem__(self, name: str, value: str | None) -> None:
        index = self._layout.index.get(name)
        if index is None:
            self._layout = self._layout.plus(name)
            self._values.insert(-1, value)
        else:
            self._values[index] = value

    def __delitem__(self, name: str) -> None:
        index = self._layout.index.get(name)
        if index is None:
            raise KeyError(name)
        names = self._layout.names
        self._layout = _layout_for(names[:index] + names[index + 1 :])
        del self._values[index]

    def __contains__(self, name: object) -> bool:
        return name in self._layout.index

    def __iter__(self) -> Iterator[str]:
        return iter(self._layout.names)

    def __len__(self) -> int:
        return len(self._layout.names)

    def copy(self) -> "_Props":
        clone = _Props.__new__(_Props)
        clone._layout, clone._values = self._layout, list(self._values)
        return clone

    def pick(self, names: tuple[str, ...]) -> dict[str, str | None]:
        """{name: value or None} for `names`, in that order (the serialisation hot path)."""
        return dict(zip(names, self._layout.getter(names)(self._values), strict=True))


@dataclass(slots=True)
class _Record:
    id: int
    properties: _Props
    created_ms: int
    updated_ms: int
    # `createdAt`/`updatedAt` as sent; the same string objects as the created/modified-date
    # property values, so keeping them costs two pointers, and serialising costs nothing.
    created_iso: str = ""
    updated_iso: str = ""
    archived: bool = False
    archived_ms: int | None = None
    # Per property, the writes made through the API: (value, epoch ms, sourceType), oldest
    # first. None until the first API write (most loaded records are never written).
    history: dict[str, list[tuple[str, int, str]]] | None = None
    # Search-index lag: until `indexed_at` (monotonic) search sees `stale` instead of this record
    # (or nothing, when `stale_absent` — the record was just created).
    stale: "_Record | None" = None
    stale_absent: bool = False
    indexed_at: float = 0.0

    def stamp(self, meta: "_ObjectMeta", updated_ms: int) -> None:
        """Set the modified instant, `updatedAt` and the modified-date property together."""
        self.updated_ms = updated_ms
        self.updated_iso = _iso(updated_ms)
        self.properties[meta.modified_prop] = self.updated_iso


@dataclass(slots=True)
class _Store:
    """One object type's records. The list endpoint pages by ascending id through `live` (or
    `archived`), so resolving an `after` cursor is a bisect, O(log n), and a page never skips
    over records of the other kind."""

    records: dict[int, _Record] = field(default_factory=dict)
    live: list[int] = field(default_factory=list)
    archived: list[int] = field(default_factory=list)

    def ids(self, archived: bool) -> list[int]:
        return self.archived if archived else self.live

    @staticmethod
    def _insert(ids: list[int], record_id: int) -> None:
        if not ids or record_id > ids[-1]:
            ids.append(record_id)  # ids mostly arrive ascending: O(1)
        else:
            bisect.insort(ids, record_id)

    @staticmethod
    def _remove(ids: list[int], record_id: int) -> None:
        index = bisect.bisect_left(ids, record_id)
        if index < len(ids) and ids[index] == record_id:
            del ids[index]

    def put(self, record: _Record) -> None:
        old = self.records.get(record.id)
        if old is not None:
            self._remove(self.ids(old.archived), old.id)
        self.records[record.id] = record
        self._insert(self.ids(record.archived), record.id)

    def set_archived(self, record: _Record, archived: bool) -> None:
        if record.archived != archived:
            self._remove(self.ids(record.archived), record.id)
            record.archived = archived
            self._insert(self.ids(archived), record.id)

    def drop(self, record_id: int) -> None:
        record = self.records.pop(record_id, None)
        if record is not None:
            self._remove(self.ids(record.archived), record_id)


# --------------------------------------------------------------------------------------------
# Rate limiting (contract §A12)
# --------------------------------------------------------------------------------------------


class _RateLimiter:
    """A 10-second sliding window per private app, a daily counter per account, and the separate
    search bucket (5 req/s per account; search is exempt from the 10-second window but counts
    toward the daily limit). Rejected requests consume nothing."""

    def __init__(
        self,
        ten_second: int | None,
        daily: int | None,
        search_per_second: int | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.ten_second = ten_second
        self.daily = daily
        self.search_per_second = search_per_second
        self._clock = clock
        self._lock = threading.Lock()
        self._window: deque[float] = deque()
        self._search_window: deque[float] = deque()
        self._day: date | None = None
        self._daily_used = 0

    def admit(self, *, search: bool) -> tuple[str | None, dict[str, str]]:
        """Returns (rejecting policy or None, rate-limit headers for the response)."""
        now = time.monotonic()
        with self._lock:
            today = self._clock().astimezone(UTC).date()
            if today != self._day:
                self._day, self._daily_used = today, 0
            window = self._search_window if search else self._window
            horizon = now - (1.0 if search else 10.0)
            while window and window[0] <= horizon:
                window.popleft()
            if self.daily is not None and self._daily_used >= self.daily:
                return "DAILY", {} if search else self._headers()
            limit = self.search_per_second if search else self.ten_second
            if limit is not None and len(window) >= limit:
                return ("SECONDLY" if search else "TEN_SECONDLY_ROLLING"), (
                    {} if search else self._headers()
                )
            window.append(now)
            self._daily_used += 1
            # Search responses carry no X-HubSpot-RateLimit-* headers at all (usage guide).
            return None, {} if search else self._headers()

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.daily is not None:
            headers["X-HubSpot-RateLimit-Daily"] = str(self.daily)
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(
                max(self.daily - self._daily_used, 0)
            )
        if self.ten_second is not None:
            headers["X-HubSpot-RateLimit-Interval-Milliseconds"] = "10000"
            headers["X-HubSpot-RateLimit-Max"] = str(self.ten_second)
            headers["X-HubSpot-RateLimit-Remaining"] = str(
                max(self.ten_second - len(self._window), 0)
            )
        return headers


# --------------------------------------------------------------------------------------------
# Routing
# --------------------------------------------------------------------------------------------

_EVENT_KINDS = ("web_events", "email_events")
_EVENTS_MAX = 1000  # [unverified] the Events API documents no maximum page size

_URLS = Map(
    [
        Rule("/events/v3/events", endpoint="events", methods=["GET"]),
        Rule("/crm/v3/objects/<ot>", endpoint="objects", methods=["GET", "POST"]),
        Rule("/crm/v3/objects/<ot>/search", endpoint="search", methods=["POST"]),
        Rule("/crm/v3/objects/<ot>/merge", endpoint="merge", methods=["POST"]),
        Rule("/crm/v3/objects/<ot>/batch/<op>", endpoint="batch", methods=["POST"]),
        Rule("/crm/v3/objects/<ot>/<oid>", endpoint="object", methods=["GET", "PATCH", "DELETE"]),
        Rule("/crm/v3/properties/<ot>", endpoint="properties", methods=["GET", "POST"]),
        Rule("/crm/v3/properties/<ot>/groups", endpoint="groups", methods=["GET", "POST"]),
        Rule(
            "/crm/v3/properties/<ot>/groups/<name>",
            endpoint="group",
            methods=["GET", "PATCH", "DELETE"],
        ),
        Rule("/crm/v3/properties/<ot>/batch/<op>", endpoint="properties_batch", methods=["POST"]),
        Rule(
            "/crm/v3/properties/<ot>/<name>",
            endpoint="property",
            methods=["GET", "PATCH", "DELETE"],
        ),
        Rule(
            "/crm/v4/associations/<from_ot>/<to_ot>/batch/<path:op>",
            endpoint="assoc_batch",
            methods=["POST"],
        ),
        Rule(
            "/crm/v4/objects/<ot>/<oid>/associations/<to_ot>",
            endpoint="assoc_list",
            methods=["GET"],
        ),
        Rule(
            "/crm/v4/objects/<ot>/<oid>/associations/default/<to_ot>/<to_id>",
            endpoint="assoc_default",
            methods=["PUT"],
        ),
        Rule(
            "/crm/v4/objects/<ot>/<oid>/associations/<to_ot>/<to_id>",
            endpoint="assoc_pair",
            methods=["PUT", "DELETE"],
        ),
    ],
    strict_slashes=False,
)


def _family(endpoint: str, method: str, args: Mapping[str, Any]) -> str:
    """Endpoint family for `call_counts()`."""
    if endpoint == "objects":
        return "list" if method == "GET" else "create"
    if endpoint == "object":
        return {"GET": "get", "PATCH": "update"}.get(method, "archive")
    if endpoint == "batch":
        return f"batch_{args['op']}"
    if endpoint in ("properties", "property", "properties_batch"):
        return "properties"
    if endpoint in ("groups", "group"):
        return "property_groups"
    if endpoint == "assoc_batch":
        return "associations_batch_" + args["op"].replace("/", "_")
    if endpoint == "assoc_list":
        return "associations_list"
    if endpoint in ("assoc_default", "assoc_pair"):
        return "associations_archive" if method == "DELETE" else "associations_create"
    return endpoint  # search, merge


def _is_read(endpoint: str, method: str, args: Mapping[str, Any]) -> bool:
    """Whether a request cannot change records (search and batch reads are POSTs)."""
    if method == "GET" or endpoint == "search":
        return True
    return endpoint in ("batch", "properties_batch", "assoc_batch") and args.get("op") == "read"


# --------------------------------------------------------------------------------------------
# Request helpers
# --------------------------------------------------------------------------------------------


def _multi(request: Request, name: str) -> list[str]:
    """List-valued query params arrive repeated (`properties=a&properties=b`, what the official
    client sends) or comma-separated (what the docs show); accept both."""
    values: list[str] = []
    for raw in request.args.getlist(name):
        values.extend(part.strip() for part in raw.split(",") if part.strip())
    return values


def _bool_arg(request: Request, name: str, default: bool = False) -> bool:
    # The Python client sends `archived=False` (str(bool)); HubSpot is case-insensitive here.
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    _bad_request(f"Invalid boolean value '{raw}' for query parameter '{name}'")


def _int_value(raw: Any, name: str) -> int:
    if isinstance(raw, bool):
        _bad_request(f"Invalid value for {name}: {raw}")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and _INT_RE.match(raw.strip()):
        return int(raw.strip())
    _bad_request(f"Invalid value for {name}: '{raw}'. It must be formatted as an integer.")


def _json_body(request: Request) -> Any:
    data = request.get_data(cache=True)
    if not data:
        return {}
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        _bad_request(f"Invalid input JSON on line {getattr(exc, 'lineno', 1)}: {exc}")


def _object_body(request: Request) -> Json:
    body = _json_body(request)
    if not isinstance(body, dict):
        _bad_request("Invalid input JSON: expected an object")
    return body


def _inputs(body: Json, maximum: int = _BATCH_MAX) -> list[Any]:
    inputs = body.get("inputs")
    if not isinstance(inputs, list):
        _bad_request("Invalid input JSON: 'inputs' must be an array")
    if len(inputs) > maximum:
        # Real message unverified; the status and category are what integrations key on.
        _bad_request(
            f"Too many inputs: {len(inputs)}. The maximum batch size is {maximum}.",
            context={"inputs": [str(len(inputs))], "maxInputs": [str(maximum)]},
        )
    return inputs


def _parse_id(raw: Any) -> int | None:
    text = str(raw).strip() if raw is not None else ""
    return int(text) if text.isdigit() else None


# --------------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------------


class HubSpotSandbox:
    """HubSpot CRM v3 emulator: a WSGI app plus seeding and inspection hooks for tests.

    Limits are keyword arguments so tests can set them low; `None` disables a limit (and drops
    its response headers). `retry_after` adds `Retry-After: <seconds>` to 429s — HubSpot does not
    document one, and with it urllib3 silently retries GETs (contract trip-wire 11).
    `search_index_lag` (seconds) models "it may take a few moments for newly created or updated
    CRM objects to appear in search results"; 0 makes search consistent with writes.
    `clock` returns the current instant (tz-aware); tests may freeze or advance it.

    `reject_record_ids` (record id -> message) is the fault-injection hook for per-record
    rejections: a batch create/update/upsert writes every other input and reports each listed one
    as a per-record VALIDATION_ERROR of a 207, and a single PATCH of one answers 400. Ids match
    the input's `id` (for upsert the `idProperty` value), the resolved record id, or a create
    input's `objectWriteTraceId`. Fault middleware mutates this dict in place.
    """

    def __init__(
        self,
        access_token: str = "pat-sandbox-leadsync",
        *,
        portal_id: int = 1234567,
        ten_second_limit: int | None = 190,
        daily_limit: int | None = 625_000,
        search_per_second_limit: int | None = 5,
        retry_after: int | None = None,
        search_index_lag: float = 0.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.access_token = access_token
        self.portal_id = portal_id
        self.retry_after = retry_after
        self.search_index_lag = search_index_lag
        self._clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self._limiter = _RateLimiter(
            ten_second_limit, daily_limit, search_per_second_limit, self._clock
        )
        self._lock = threading.RLock()
        self._stores: dict[str, _Store] = {ot: _Store() for ot in OBJECT_TYPES}
        # Timeline events of the Events API as compact rows (`_PageView`), sorted by (occurredAt
        # ms, id) on the first read after a load (`_sorted_events`).
        self._events: list[_PageView] = []
        self._events_sorted = True
        # Event types and property pairs repeat across millions of page views: one copy each.
        self._event_parts: dict[Any, Any] = {}
        self._unserved_events: dict[str, int] = {}
        self._props: dict[str, dict[str, Json]] = {
            ot: {p["name"]: p for p in defs} for ot, defs in standard_properties().items()
        }
        self._groups: dict[str, dict[str, Json]] = {
            ot: {g["name"]: g for g in defs} for ot, defs in standard_groups().items()
        }
        # (from_ot, to_ot) -> from_id -> to_id -> association type ids (from -> to)
        self._assoc: dict[tuple[str, str], dict[int, dict[int, frozenset[int]]]] = {}
        # Lower-cased primary and additional emails -> contact id (live contacts only).
        self._emails: dict[str, int] = {}
        # Contact id -> its keys in `_emails` (a bare string for the usual single address).
        self._email_keys: dict[int, str | tuple[str, ...]] = {}
        # Merged-away ids keep resolving to the surviving record, as in HubSpot.
        self._merged_into: dict[tuple[str, int], int] = {}
        self._next_id = 1
        self._counts: dict[str, int] = {}
        self._counts_lock = threading.Lock()
        self.reject_record_ids: dict[str, str] = {}
        # Bumped after every request that may write (and by `load`): it invalidates the search
        # cache, (data version, sorted matches) per query.
        self._version = 0
        self._search_cache: dict[str, tuple[int, list[_Record]]] = {}

    # ----------------------------------------------------------------------------------------
    # Public seeding / inspection API
    # ----------------------------------------------------------------------------------------

    def load(self, object_type: str, records: list[dict]) -> None:
        """Seed records in the docs/sandbox-data.md load format. Ids are kept; `createdate`,
        the modified-date property and `hs_object_id` are derived from `createdAt`/`updatedAt`/
        `id`; `associations` are made symmetric. Values are not validated (they are data that
        already exists in the portal); property names the catalogue lacks are registered as
        custom string properties so they stay readable."""
        if object_type in _EVENT_KINDS:
            self._load_events(object_type, records)
            return
        ot = self._object_type(object_type)
        meta = _OBJECTS[ot]
        now_ms = self._now_ms()
        with self._lock:
            store = self._stores[ot]
            defs = self._props[ot]
            for raw in records:
                record_id = _parse_id(raw["id"])
                if record_id is None:
                    raise ValueError(f"HubSpot ids are digit strings, got {raw['id']!r}")
                props = {
                    name: value if value is None or type(value) is str else _coerce_value(value)
                    for name, value in (raw.get("properties") or {}).items()
                }
                for name in props:
                    if name not in defs:
                        self._register_loaded_property(ot, name)
                created_ms = _load_instant(raw.get("createdAt"), now_ms)
                updated_ms = _load_instant(raw.get("updatedAt"), created_ms)
                created_iso, updated_iso = _iso(created_ms), _iso(updated_ms)
                props["hs_object_id"] = str(record_id)
                props[meta.created_prop] = created_iso
                props[meta.modified_prop] = updated_iso
                archived = bool(raw.get("archived", False))
                record = _Record(
                    record_id,
                    _Props(props),
                    created_ms,
                    updated_ms,
                    created_iso,
                    updated_iso,
                    archived=archived,
                    archived_ms=_load_instant(raw.get("archivedAt"), updated_ms)
                    if archived
                    else None,
                )
                if ot == "contacts" and record_id in store.records:
                    self._unindex_contact(record_id)
                store.put(record)
                if ot == "contacts" and not archived:
                    self._index_contact(record)
                self._next_id = max(self._next_id, record_id + 1)
                for to_name, to_ids in (raw.get("associations") or {}).items():
                    to_ot = self._object_type(to_name)
                    for to_id in to_ids:
                        target = _parse_id(to_id)
                        if target is None:
                            raise ValueError(f"bad association id {to_id!r}")
                        self._link_default(ot, record_id, to_ot, target)
            self._version += 1

    def records(self, object_type: str) -> list[dict]:
        """Live (non-archived) records by ascending id, as {"id", "properties", "createdAt",
        "updatedAt", "archived"}; timestamps are tz-aware datetimes like the load format."""
        ot = self._object_type(object_type)
        with self._lock:
            store = self._stores[ot]
            out = []
            for record_id in store.live:
                record = store.records[record_id]
                out.append(
                    {
                        "id": str(record.id),
                        "properties": dict(record.properties),
                        "createdAt": _EPOCH + timedelta(milliseconds=record.created_ms),
                        "updatedAt": _EPOCH + timedelta(milliseconds=record.updated_ms),
                        "archived": False,
                    }
                )
            return out

    def call_counts(self) -> dict[str, int]:
        """Requests received per endpoint family (including ones answered with an error or a
        429; `rate_limited` counts the 429s, `unauthorized` the 401s), plus `total`."""
        with self._counts_lock:
            counts = dict(self._counts)
        counts["total"] = counts.get("total", 0)
        return counts

    def reset_call_counts(self) -> None:
        with self._counts_lock:
            self._counts.clear()

    # ----------------------------------------------------------------------------------------
    # WSGI
    # ----------------------------------------------------------------------------------------

    def __call__(self, environ: WsgiEnviron, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        correlation_id = str(uuid.uuid4())
        headers: dict[str, str] = {}
        try:
            status, body, headers = self._handle(request)
        except _ApiError as exc:
            status, body = exc.status, exc.body
            headers = {**headers, **exc.headers}
            if body is not None:
                body = {**body, "correlationId": correlation_id}
        except Exception:
            # An emulator bug: answer like HubSpot's 5xx (ServiceException in the client) and keep
            # the traceback in the log instead of werkzeug's HTML page.
            _log.exception("HubSpot sandbox failed on %s %s", request.method, request.full_path)
            status, body = (
                500,
                {
                    "status": "error",
                    "message": "internal error",
                    "category": "INTERNAL_ERROR",
                    "correlationId": correlation_id,
                },
            )
        headers["X-HubSpot-Correlation-Id"] = correlation_id
        if status == 204 or body is None:
            response = Response(status=status, headers=headers)
        else:
            payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
            response = Response(
                payload,
                status=status,
                headers=headers,
                content_type="application/json;charset=utf-8",
            )
        return response(environ, start_response)

    def _count(self, family: str) -> None:
        with self._counts_lock:
            self._counts[family] = self._counts.get(family, 0) + 1
            self._counts["total"] = self._counts.get("total", 0) + 1

    def _handle(self, request: Request) -> tuple[int, Json | None, dict[str, str]]:
        path = request.path.rstrip("/") or "/"
        adapter = _URLS.bind("api.hubapi.com")
        try:
            endpoint, args = adapter.match(path, method=request.method)
            family = _family(str(endpoint), request.method, args)
        except NotFound:
            endpoint, args, family = None, {}, "not_found"
        except MethodNotAllowed:
            endpoint, args, family = "method_not_allowed", {}, "method_not_allowed"
        self._count(family)

        auth = request.headers.get("Authorization", "")
        if auth != f"Bearer {self.access_token}":
            self._count_extra("unauthorized")
            _fail(401, "INVALID_AUTHENTICATION", _AUTH_MESSAGE)

        is_search = endpoint == "search"
        policy, rate_headers = self._limiter.admit(search=is_search)
        if policy is not None:
            self._count_extra("rate_limited")
            raise _ApiError(429, self._rate_limit_body(policy), self._retry_headers(rate_headers))

        try:
            if endpoint is None:
                _fail(404, "OBJECT_NOT_FOUND", f"Unable to route request: {request.method} {path}")
            if endpoint == "method_not_allowed":
                _fail(
                    405, "METHOD_NOT_ALLOWED", f"HTTP {request.method} is not supported by {path}"
                )
            handler = getattr(self, f"_ep_{endpoint}")
            try:
                status, body = handler(request, **args)
            finally:
                # After the write, so a search between the write and the bump caches fresh data.
                if not _is_read(str(endpoint), request.method, args):
                    with self._lock:
                        self._version += 1
        except _ApiError as exc:
            exc.headers = {**rate_headers, **exc.headers}
            raise
        return status, body, dict(rate_headers)

    def _count_extra(self, key: str) -> None:
        with self._counts_lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def _retry_headers(self, headers: dict[str, str]) -> dict[str, str]:
        if self.retry_after is None:
            return headers
        return {**headers, "Retry-After": str(self.retry_after)}

    def _rate_limit_body(self, policy: str) -> Json:
        return rate_limit_body(policy, self.portal_id)

    # ----------------------------------------------------------------------------------------
    # Shared internals
    # ----------------------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return _to_ms(self._clock())

    @staticmethod
    def _object_type(name: str) -> str:
        ot = _OBJECT_ALIASES.get(name.lower())
        if ot is None:
            raise ValueError(f"unsupported HubSpot object type {name!r}")
        return ot

    @staticmethod
    def _path_object_type(name: str) -> str:
        ot = _OBJECT_ALIASES.get(name.lower())
        if ot is None:
            # Real wording; category/status unverified.
            _bad_request(f"Unable to infer object type from: {name}")
        return ot

    def _register_loaded_property(self, ot: str, name: str) -> None:
        group = next(iter(self._groups[ot]))
        now = _iso(self._now_ms())
        self._props[ot][name] = self._custom_definition(
            {
                "name": name,
                "label": name,
                "type": "string",
                "fieldType": "text",
                "groupName": group,
            },
            now,
        )

    def _live(self, ot: str, record_id: int | None, *, archived: bool = False) -> _Record | None:
        if record_id is None:
            return None
        record = self._stores[ot].records.get(record_id)
        if record is None:
            survivor = self._merged_into.get((ot, record_id))
            record = self._stores[ot].records.get(survivor) if survivor is not None else None
        if record is None or record.archived != archived:
            return None
        return record

    def _unique_props(self, ot: str) -> set[str]:
        names = {n for n, d in self._props[ot].items() if d.get("hasUniqueValue")}
        if ot == "contacts":
            names.add("email")
        return names

    def _find(
        self, ot: str, raw_id: Any, id_property: str | None, *, archived: bool = False
    ) -> _Record | None:
        """Resolve an object by id or by a unique property value (`idProperty`)."""
        if not id_property or id_property == "hs_object_id":
            return self._live(ot, _parse_id(raw_id), archived=archived)
        if id_property not in self._unique_props(ot):
            _bad_request(
                f"Unable to perform update/upsert by non-unique {_OBJECTS[ot].type_id} property "
                f"{id_property} in portal ID {self.portal_id}"
            )
        value = str(raw_id)
        if ot == "contacts" and id_property == "email" and not archived:
            return self._live(ot, self._emails.get(value.lower()))
        for record in self._stores[ot].records.values():
            if record.archived == archived and record.properties.get(id_property) == value:
                return record
        return None

    def _index_contact(self, record: _Record) -> None:
        keys: list[str] = []
        extra = record.properties.get("hs_additional_emails")
        if extra:
            for email in extra.split(";"):
                key = email.strip().lower()
                if key and key not in self._emails:
                    self._emails[key] = record.id
                    keys.append(key)
        primary = record.properties.get("email")
        if primary:
            key = primary.strip().lower()
            # An address that already is its own key is stored once, not twice (1M contacts).
            key = primary if key == primary else key
            if key:
                self._emails[key] = record.id
                keys.append(key)
        self._email_keys[record.id] = keys[0] if len(keys) == 1 else tuple(keys)

    def _unindex_contact(self, record_id: int) -> None:
        keys = self._email_keys.pop(record_id, ())
        for key in (keys,) if isinstance(keys, str) else keys:
            if self._emails.get(key) == record_id:
                del self._emails[key]

    def _output_names(self, ot: str, requested: Iterable[str]) -> tuple[str, ...]:
        """Property names to serialise: the requested ones HubSpot knows (unknown names are
        silently ignored) or the object's defaults, plus the three always-present ones, sorted
        alphabetically as HubSpot returns them."""
        meta = _OBJECTS[ot]
        defs = self._props[ot]
        names = {n for n in requested if n in defs and not defs[n]["archived"]}
        if not requested:
            names.update(meta.defaults)
        names.update(("hs_object_id", meta.created_prop, meta.modified_prop))
        return tuple(sorted(names))

    def _serialise(
        self,
        ot: str,
        record: _Record,
        names: tuple[str, ...],
        history_names: Sequence[str] = (),
        assoc_types: Sequence[str] = (),
    ) -> Json:
        out: Json = {
            "id": str(record.id),
            "properties": record.properties.pick(names),
            "createdAt": record.created_iso,
            "updatedAt": record.updated_iso,
            "archived": record.archived,
        }
        if record.archived and record.archived_ms is not None:
            out["archivedAt"] = _iso(record.archived_ms)
        if history_names:
            out["propertiesWithHistory"] = {
                name: self._history(record, name) for name in history_names
            }
        if assoc_types:
            block = self._v3_associations(ot, record.id, assoc_types)
            if block:
                out["associations"] = block
        return out

    def _history(self, record: _Record, name: str) -> list[Json]:
        entries = list((record.history or {}).get(name, ()))
        if not entries:
            value = record.properties.get(name)
            if value is None:
                return []
            entries = [(value, record.updated_ms, "CRM_UI")]
        return [
            {"value": value, "timestamp": _iso(ts), "sourceType": source}
            if source != "INTEGRATION"
            else {
                "value": value,
                "timestamp": _iso(ts),
                "sourceType": source,
                "sourceId": str(_PRIVATE_APP_ID),
            }
            for value, ts, source in reversed(entries)
        ]

    def _v3_associations(self, ot: str, record_id: int, to_types: Sequence[str]) -> Json:
        block: Json = {}
        for to_ot in to_types:
            targets = self._assoc.get((ot, to_ot), {}).get(record_id, {})
            results = []
            for to_id in sorted(targets):
                if self._live(to_ot, to_id) is None:
                    continue
                for type_id in sorted(targets[to_id]):
                    results.append({"id": str(to_id), "type": _ASSOC_TYPES[type_id].v3_name})
            if results:
                block[to_ot] = {"results": results}
        return block

    def _assoc_targets(self, ot: str, to_ot: str, record_id: int) -> dict[int, frozenset[int]]:
        targets = self._assoc.get((ot, to_ot), {}).get(record_id, {})
        return {
            to_id: types for to_id, types in targets.items() if self._live(to_ot, to_id) is not None
        }

    # -- associations state ------------------------------------------------------------------

    def _link(
        self, from_ot: str, from_id: int, to_ot: str, to_id: int, types: Iterable[int]
    ) -> None:
        forward = self._assoc.setdefault((from_ot, to_ot), {}).setdefault(from_id, {})
        backward = self._assoc.setdefault((to_ot, from_ot), {}).setdefault(to_id, {})
        forward.setdefault(to_id, _NO_TYPES)
        backward.setdefault(from_id, _NO_TYPES)
        for type_id in types:
            primary = _PRIMARY_TYPE.get((from_ot, to_ot))
            reverse_primary = _PRIMARY_TYPE.get((to_ot, from_ot))
            # One primary company per contact (and per deal): a new primary demotes the old one.
            if primary is not None and type_id == primary:
                self._demote_primary(from_ot, from_id, to_ot, primary)
            elif reverse_primary is not None and type_id == _ASSOC_TYPES[reverse_primary].inverse:
                self._demote_primary(to_ot, to_id, from_ot, reverse_primary)
            # Any labelled association implies the unlabeled one (HubSpot always lists both).
            default = _DEFAULT_TYPE[(from_ot, to_ot)]
            forward[to_id] = _type_set(forward[to_id] | {type_id, default})
            backward[from_id] = _type_set(
                backward[from_id] | {_ASSOC_TYPES[type_id].inverse, _ASSOC_TYPES[default].inverse}
            )
        self._sync_primary_company(from_ot, from_id, to_ot, to_id)

    def _demote_primary(self, owner_ot: str, owner_id: int, target_ot: str, primary: int) -> None:
        table = self._assoc.get((owner_ot, target_ot), {}).get(owner_id, {})
        for other_id, types in list(table.items()):
            if primary in types:
                table[other_id] = _type_set(types - {primary})
                back = self._assoc[(target_ot, owner_ot)][other_id]
                back[owner_id] = _type_set(back[owner_id] - {_ASSOC_TYPES[primary].inverse})

    def _sync_primary_company(self, from_ot: str, from_id: int, to_ot: str, to_id: int) -> None:
        # HubSpot mirrors a contact's primary company into `associatedcompanyid`.
        if {from_ot, to_ot} != {"contacts", "companies"}:
            return
        contact_id = from_id if from_ot == "contacts" else to_id
        contact = self._stores["contacts"].records.get(contact_id)
        if contact is None:
            return
        primary = None
        for company_id, types in (
            self._assoc.get(("contacts", "companies"), {}).get(contact_id, {}).items()
        ):
            if 1 in types:
                primary = str(company_id)
        contact.properties["associatedcompanyid"] = primary

    def _link_default(self, from_ot: str, from_id: int, to_ot: str, to_id: int) -> int:
        """Associate with the default (unlabeled) type; the first company of a contact or deal
        also becomes its primary, as HubSpot does. Returns the from->to default type id."""
        if (from_ot, to_ot) not in _DEFAULT_TYPE:
            _bad_request(f"No default association type between {from_ot} and {to_ot}")
        types = [_DEFAULT_TYPE[(from_ot, to_ot)]]
        for owner_ot, target_ot, owner_id, is_forward in (
            (from_ot, to_ot, from_id, True),
            (to_ot, from_ot, to_id, False),
        ):
            primary = _PRIMARY_TYPE.get((owner_ot, target_ot))
            if primary is None:
                continue
            existing = self._assoc.get((owner_ot, target_ot), {}).get(owner_id, {})
            if not any(primary in t for t in existing.values()):
                types.append(primary if is_forward else _ASSOC_TYPES[primary].inverse)
        self._link(from_ot, from_id, to_ot, to_id, types)
        return types[0]

    def _unlink(
        self,
        from_ot: str,
        from_id: int,
        to_ot: str,
        to_id: int,
        types: Collection[int] | None = None,
    ) -> None:
        forward = self._assoc.get((from_ot, to_ot), {}).get(from_id, {})
        backward = self._assoc.get((to_ot, from_ot), {}).get(to_id, {})
        if to_id not in forward:
            return
        default = _DEFAULT_TYPE[(from_ot, to_ot)]
        if types is None or default in types:
            forward.pop(to_id, None)
            backward.pop(from_id, None)
        else:
            forward[to_id] = _type_set(forward[to_id].difference(types))
            if from_id in backward:
                inverses = {_ASSOC_TYPES[type_id].inverse for type_id in types}
                backward[from_id] = _type_set(backward[from_id] - inverses)
        self._sync_primary_company(from_ot, from_id, to_ot, to_id)

    # -- writes ------------------------------------------------------------------------------

    def _validate_writes(self, ot: str, raw_props: Any, *, creating: bool) -> dict[str, str | None]:
        """Check and normalise property values. Raises the whole-call 400 VALIDATION_ERROR with
        every problem found (unknown / read-only property, INVALID_OPTION, bad number/date,
        INVALID_EMAIL); an empty string (or null) clears the value."""
        if not isinstance(raw_props, dict):
            _bad_request("Invalid input JSON: 'properties' must be an object")
        defs = self._props[ot]
        problems: list[_PropertyProblem] = []
        values: dict[str, str | None] = {}
        for name, raw in raw_props.items():
            definition = defs.get(name)
            if definition is None or definition["archived"]:
                problems.append(
                    _PropertyProblem(
                        name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'
                    )
                )
                continue
            if definition["modificationMetadata"]["readOnlyValue"]:
                problems.append(
                    _PropertyProblem(
                        name,
                        "READ_ONLY_VALUE",
                        f'"{name}" is a read only property; its value cannot be set.',
                    )
                )
                continue
            value = _coerce_value(raw)
            if value is None or value == "":
                values[name] = None
                continue
            normalised, problem = self._normalise(ot, definition, value)
            if problem is not None:
                problems.append(problem)
            else:
                values[name] = normalised
        if creating and ot in ENGAGEMENT_TYPES and not values.get("hs_timestamp"):
            problems.append(
                _PropertyProblem(
                    "hs_timestamp", "REQUIRED_PROPERTY", "hs_timestamp is required on create"
                )
            )
        if problems:
            _property_validation_error(problems)
        return values

    @staticmethod
    def _normalise(ot: str, definition: Json, value: str) -> tuple[str, _PropertyProblem | None]:
        name, type_ = definition["name"], definition["type"]
        if type_ == "number":
            if _number(value) is None:
                return value, _PropertyProblem(
                    name, "INVALID_DOUBLE", f"{value} was not a valid number."
                )
            return value.strip(), None
        if type_ in ("datetime", "date"):
            ms = _instant_ms(value)
            if ms is None:
                return value, _PropertyProblem(
                    name, "INVALID_DATE", f"{value} was not a valid date or epoch milliseconds."
                )
            if type_ == "date":
                if ms % 86_400_000 != 0:
                    # Date properties only hold midnight UTC (HubSpot rejects other instants).
                    return value, _PropertyProblem(
                        name,
                        "INVALID_DATE",
                        f"{value} is not midnight UTC; date properties only accept dates.",
                    )
                return (_EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%d"), None
            return _iso(ms), None
        if type_ == "bool":
            if value.lower() not in ("true", "false"):
                return value, _PropertyProblem(
                    name, "INVALID_BOOLEAN", f"{value} was not a valid boolean."
                )
            return value.lower(), None
        if type_ == "enumeration" and not definition.get("externalOptions"):
            allowed = [o["value"] for o in definition["options"]]
            chosen = value.split(";") if definition["fieldType"] == "checkbox" else [value]
            for item in chosen:
                # Enumeration values are case-sensitive.
                if item not in allowed:
                    return value, _PropertyProblem(
                        name,
                        "INVALID_OPTION",
                        f"{item} was not one of the allowed options: [{', '.join(allowed)}]",
                    )
            return value, None
        if ot == "contacts" and name == "email" and not _EMAIL_RE.match(value.strip()):
            return value, _PropertyProblem(
                name, "INVALID_EMAIL", f"Email address {value} is invalid"
            )
        return value, None

    def _contact_email_conflict(
        self, values: dict[str, str | None], record_id: int | None, pending: dict[str, int]
    ) -> None:
        email = values.get("email")
        if not email:
            return
        key = email.strip().lower()
        owner = self._emails.get(key, pending.get(key))
        if owner is not None and owner != record_id:
            _fail(409, "CONFLICT", f"Contact already exists. Existing ID: {owner}")
        if record_id is not None:
            pending[key] = record_id

    def _snapshot_for_search(self, record: _Record, *, new: bool) -> None:
        if self.search_index_lag <= 0:
            return
        if time.monotonic() >= record.indexed_at:
            if new:
                record.stale, record.stale_absent = None, True
            else:
                record.stale = replace(
                    record, properties=record.properties.copy(), history=None, stale=None
                )
                record.stale_absent = False
        record.indexed_at = time.monotonic() + self.search_index_lag

    def _apply(self, ot: str, record: _Record, values: dict[str, str | None], now_ms: int) -> None:
        """Write values and bump the modified date. HubSpot bumps `updatedAt` and the modified
        property on every write that carries properties, even when every value is unchanged, so
        this does too (a no-op PATCH still moves the record in lastmodifieddate windows)."""
        self._snapshot_for_search(record, new=False)
        if record.history is None:
            record.history = {}
        for name, value in values.items():
            history = record.history.setdefault(name, [])
            if not history and record.properties.get(name) is not None:
                # Seed with the value the record had before the first API write.
                history.append((str(record.properties[name]), record.updated_ms, "CRM_UI"))
            history.append((value if value is not None else "", now_ms, "INTEGRATION"))
            record.properties[name] = value
        record.stamp(_OBJECTS[ot], max(now_ms, record.created_ms))
        if ot == "contacts":
            self._unindex_contact(record.id)
            self._index_contact(record)

    def _new_record(self, ot: str, values: dict[str, str | None], now_ms: int) -> _Record:
        meta = _OBJECTS[ot]
        record_id = self._next_id
        self._next_id += 1
        now_iso = _iso(now_ms)
        props = {name: value for name, value in values.items() if value is not None}
        history = {name: [(value, now_ms, "INTEGRATION")] for name, value in props.items()}
        props["hs_object_id"] = str(record_id)
        props[meta.created_prop] = now_iso
        props[meta.modified_prop] = now_iso
        record = _Record(record_id, _Props(props), now_ms, now_ms, now_iso, now_iso)
        record.history = history
        self._snapshot_for_search(record, new=True)
        self._stores[ot].put(record)
        if ot == "contacts":
            self._index_contact(record)
        return record

    def _archive(self, ot: str, record: _Record, now_ms: int) -> None:
        self._snapshot_for_search(record, new=False)
        self._stores[ot].set_archived(record, True)
        record.archived_ms = now_ms
        if ot == "contacts":
            self._unindex_contact(record.id)

    def _create_associations(self, ot: str, raw: Any) -> list[tuple[str, int, list[int]]]:
        """Validate the `associations` of a create body → [(to_ot, to_id, type ids)]."""
        if raw is None:
            return []
        if not isinstance(raw, list):
            _bad_request("Invalid input JSON: 'associations' must be an array")
        planned: list[tuple[str, int, list[int]]] = []
        for item in raw:
            to_id = _parse_id(((item or {}).get("to") or {}).get("id"))
            type_ids: list[int] = []
            to_ot: str | None = None
            for spec in (item or {}).get("types") or []:
                type_id = spec.get("associationTypeId")
                assoc = _ASSOC_TYPES.get(type_id) if isinstance(type_id, int) else None
                if assoc is None or assoc.from_ot != ot:
                    _bad_request(f"Invalid association type {type_id} for object type {ot}")
                if to_ot is not None and assoc.to_ot != to_ot:
                    _bad_request("All association types of one target must share its object type")
                to_ot = assoc.to_ot
                type_ids.append(assoc.type_id)
            if to_ot is None or to_id is None:
                _bad_request("Each association needs 'to.id' and at least one type")
            if self._live(to_ot, to_id) is None:
                _bad_request(
                    f"One or more associations are invalid: {_OBJECTS[to_ot].upper} {to_id} "
                    "does not exist"
                )
            planned.append((to_ot, to_id, type_ids))
        return planned

    # ----------------------------------------------------------------------------------------
    # /crm/v3/objects
    # ----------------------------------------------------------------------------------------

    def _read_params(
        self, request: Request, ot: str
    ) -> tuple[tuple[str, ...], list[str], list[str]]:
        names = self._output_names(ot, _multi(request, "properties"))
        history = [n for n in _multi(request, "propertiesWithHistory") if n in self._props[ot]]
        assoc: list[str] = []
        for name in _multi(request, "associations"):
            to_ot = _OBJECT_ALIASES.get(name.lower())
            if to_ot is not None and to_ot not in assoc:  # unknown types are ignored
                assoc.append(to_ot)
        return names, history, assoc

    def _load_events(self, kind: str, records: list[dict]) -> None:
        """Seed timeline events (`web_events`: page views as the Events API returns them)."""
        if kind != "web_events":
            # Marketing email events live in HubSpot's legacy email events API, which
            # hubspot-api-client 12 does not cover; they are kept for a later version of the
            # sandbox but not served.
            self._unserved_events[kind] = self._unserved_events.get(kind, 0) + len(records)
            return
        shared = self._event_parts.setdefault
        rows: list[_PageView] = []
        for raw in records:
            properties = tuple((k, str(v)) for k, v in (raw.get("properties") or {}).items())
            rows.append(
                (
                    _load_instant(raw["occurredAt"], self._now_ms()),
                    str(raw["id"]),
                    str(raw["objectId"]),
                    shared(raw["eventType"], raw["eventType"]),
                    shared(properties, properties),
                )
            )
        with self._lock:
            self._events.extend(rows)
            # Sorted once, when next read: sorting on every load made seeding in chunks
            # quadratic in the events.
            self._events_sorted = False

    def _sorted_events(self) -> list["_PageView"]:
        """The page views in (occurredAt, id) order; call with the lock held."""
        if not self._events_sorted:
            self._events.sort()  # ids are unique, so no two rows compare past the id
            self._events_sorted = True
        return self._events

    def _ep_events(self, request: Request) -> tuple[int, Json]:
        # GET /events/v3/events/: objectType (and optionally objectId, eventType) filters,
        # occurredAfter/occurredBefore bounds, `after` cursor, sort by time.
        args = request.args
        object_type = args.get("objectType")
        if object_type not in (None, "contact", "contacts", "0-1"):
            return 200, {"results": []}
        object_id = args.get("objectId")
        event_type = args.get("eventType")
        limit = _int_value(args.get("limit", "100"), "limit")
        if not 1 <= limit <= _EVENTS_MAX:
            _bad_request(f"limit must be between 1 and {_EVENTS_MAX}, got {limit}")
        lo = _instant_ms(args["occurredAfter"]) if args.get("occurredAfter") else None
        hi = _instant_ms(args["occurredBefore"]) if args.get("occurredBefore") else None
        if (args.get("occurredAfter") and lo is None) or (
            args.get("occurredBefore") and hi is None
        ):
            _bad_request("occurredAfter and occurredBefore must be ISO-8601 date-times")
        offset = _int_value(args.get("after", "0"), "after")
        descending = args.get("sort", "ASCENDING").upper() == "DESCENDING"
        # One page costs what it returns (plus, under a filter, what it skips): copying or
        # filtering the whole window per page made a full pull quadratic in the events.
        with self._lock:
            events = self._sorted_events()
            start = 0 if lo is None else bisect.bisect_right(events, (lo, "\uffff"))
            end = len(events) if hi is None else bisect.bisect_left(events, (hi, ""))
            positions = range(end - 1, start - 1, -1) if descending else range(start, end)
            if object_id is None and event_type is None:
                page = [_page_view_json(events[i]) for i in positions[offset : offset + limit]]
                following: int | None = offset + limit if offset + limit < len(positions) else None
            else:
                # The `after` token is opaque to clients: here it is the position in the window
                # where the next page's scan starts, so a page never re-skips earlier matches.
                page, following = [], None
                for index in range(offset, len(positions)):
                    row = events[positions[index]]
                    if (object_id is None or row[2] == object_id) and (
                        event_type is None or row[3] == event_type
                    ):
                        if len(page) == limit:
                            following = index
                            break
                        page.append(_page_view_json(row))
        body: Json = {"results": page}
        if following is not None:
            body["paging"] = {"next": {"after": str(following)}}
        return 200, body

    def _ep_objects(self, request: Request, ot: str) -> tuple[int, Json]:
        ot = self._path_object_type(ot)
        if request.method == "POST":
            return self._create(request, ot)
        with_history = bool(_multi(request, "propertiesWithHistory"))
        maximum = _LIST_MAX_WITH_HISTORY if with_history else _LIST_MAX
        limit = _int_value(request.args.get("limit", "10"), "limit")
        if not 1 <= limit <= maximum:
            # HubSpot documents the maximum but not whether it clamps; a 400 surfaces the misuse
            # here instead of in production (unverified).
            _bad_request(f"limit must be between 1 and {maximum}, got {limit}")
        after_raw = request.args.get("after")
        start = 0
        if after_raw:
            parsed = _parse_id(after_raw)
            if parsed is None:
                _bad_request(f"Invalid after cursor '{after_raw}'")
            start = parsed
        archived = _bool_arg(request, "archived")
        names, history, assoc = self._read_params(request, ot)
        results: list[Json] = []
        next_after: int | None = None
        with self._lock:
            store = self._stores[ot]
            ids = store.ids(archived)
            index = bisect.bisect_left(ids, start)  # O(log n) cursor resolution
            page = ids[index : index + limit + 1]
            if len(page) > limit:
                next_after = page.pop()
            records = store.records
            results = [self._serialise(ot, records[i], names, history, assoc) for i in page]
        body: Json = {"results": results}
        # The last page has no `paging` key at all: crm.objects.get_all() dereferences
        # paging.next.after whenever `paging` is present (trip-wire 12).
        if next_after is not None:
            body["paging"] = {
                "next": {
                    "after": str(next_after),
                    "link": f"{_API_ORIGIN}/crm/v3/objects/{ot}?after={next_after}&limit={limit}",
                }
            }
        return 200, body

    def _create(self, request: Request, ot: str) -> tuple[int, Json]:
        body = _object_body(request)
        now_ms = self._now_ms()
        with self._lock:
            values = self._validate_writes(ot, body.get("properties") or {}, creating=True)
            planned = self._create_associations(ot, body.get("associations"))
            if ot == "contacts":
                self._contact_email_conflict(values, None, {})
            record = self._new_record(ot, values, now_ms)
            for to_ot, to_id, type_ids in planned:
                self._link(ot, record.id, to_ot, to_id, type_ids)
            return 201, self._serialise(ot, record, self._written_names(ot, values))

    def _written_names(self, ot: str, values: Iterable[str]) -> tuple[str, ...]:
        # Write responses echo the written properties plus the always-present ones.
        return self._output_names(ot, [*values, "hs_object_id"])

    def _ep_object(self, request: Request, ot: str, oid: str) -> tuple[int, Json | None]:
        ot = self._path_object_type(ot)
        id_property = request.args.get("idProperty")
        if request.method == "GET":
            archived = _bool_arg(request, "archived")
            names, history, assoc = self._read_params(request, ot)
            with self._lock:
                record = self._find(ot, oid, id_property, archived=archived)
                if record is None:
                    self._not_found(ot, oid)
                return 200, self._serialise(ot, record, names, history, assoc)
        if request.method == "DELETE":
            # Archiving an unknown or already archived id is a silent 204 in HubSpot.
            with self._lock:
                record = self._find(ot, oid, None)
                if record is not None:
                    self._archive(ot, record, self._now_ms())
            return 204, None
        body = _object_body(request)
        raw_props = body.get("properties")
        with self._lock:
            record = self._find(ot, oid, id_property)
            if record is None:
                self._not_found(ot, oid)
            if not raw_props:
                _bad_request("No properties found to update, please provide at least one.")
            values = self._validate_writes(ot, raw_props, creating=False)
            rejected = self._rejection(oid, record.id)
            if rejected is not None:
                _bad_request(rejected, context={"ids": [str(oid)]})
            if ot == "contacts":
                self._contact_email_conflict(values, record.id, {})
            self._apply(ot, record, values, self._now_ms())
            return 200, self._serialise(ot, record, self._written_names(ot, values))

    def _rejection(self, *keys: Any) -> str | None:
        """The fault-injection message for a record known by any of `keys`, if it is listed in
        `reject_record_ids` (read without copying: the fault middleware mutates it in place)."""
        rejects = self.reject_record_ids
        if rejects:
            for key in keys:
                if key is not None and (message := rejects.get(str(key))) is not None:
                    return message
        return None

    @staticmethod
    def _not_found(ot: str, oid: str) -> NoReturn:
        # Body shape for a missing object is unverified (contract §A11); the client only uses
        # the status (NotFoundException).
        _fail(404, "OBJECT_NOT_FOUND", "resource not found", context={"id": [str(oid)]})

    def _ep_batch(self, request: Request, ot: str, op: str) -> tuple[int, Json | None]:
        ot = self._path_object_type(ot)
        handler = {
            "read": self._batch_read,
            "create": self._batch_create,
            "update": self._batch_update,
            "upsert": self._batch_upsert,
            "archive": self._batch_archive,
        }.get(op)
        if handler is None:
            _fail(404, "OBJECT_NOT_FOUND", f"Unable to route request: batch/{op}")
        return handler(request, ot)

    def _batch_response(
        self,
        results: list[Json],
        started_ms: int,
        missing: list[str],
        ot: str,
        ok_status: int,
        verb: str = "get",
        rejected: Sequence[tuple[str, str]] = (),
    ) -> tuple[int, Json]:
        body: Json = {"status": "COMPLETE", "results": results}
        errors: list[Json] = []
        if missing:
            errors.append(
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": f"Could not {verb} some {_OBJECTS[ot].upper} objects, they may be "
                    "deleted or not exist. Check that ids are valid.",
                    "context": {"ids": missing},
                    "errors": [],
                    "links": {},
                }
            )
        # Fault-injected rejections: one StandardError per record, as HubSpot reports a record a
        # portal validation rule refused (the others in the batch are written).
        errors.extend(
            {
                "status": "error",
                "category": "VALIDATION_ERROR",
                "message": message,
                "context": {"ids": [record_id]},
                "errors": [],
                "links": {},
            }
            for record_id, message in rejected
        )
        status = ok_status
        if errors:
            status = 207
            body["numErrors"] = len(errors)
            body["errors"] = errors
        body["startedAt"] = _iso(started_ms)
        body["completedAt"] = _iso(self._now_ms())
        return status, body

    def _batch_read(self, request: Request, ot: str) -> tuple[int, Json]:
        body = _object_body(request)
        inputs = _inputs(body)
        archived = _bool_arg(request, "archived")
        requested = body.get("properties") or []
        names = self._output_names(ot, [str(n) for n in requested])
        history = [n for n in body.get("propertiesWithHistory") or [] if n in self._props[ot]]
        id_property = body.get("idProperty")
        started = self._now_ms()
        results: list[Json] = []
        missing: list[str] = []
        seen: set[int] = set()
        with self._lock:
            for item in inputs:
                raw_id = (item or {}).get("id") if isinstance(item, dict) else None
                record = self._find(ot, raw_id, id_property, archived=archived)
                if record is None:
                    missing.append(str(raw_id))
                elif record.id not in seen:
                    seen.add(record.id)
                    results.append(self._serialise(ot, record, names, history))
        return self._batch_response(results, started, missing, ot, 200)

    def _batch_update(self, request: Request, ot: str) -> tuple[int, Json]:
        # Decision (contract §A6/§A11, whole-call vs per-record): HubSpot validates property
        # values for the batch as a whole — one unknown or read-only property, or one
        # INVALID_OPTION, fails the entire call with 400 VALIDATION_ERROR and nothing is written
        # (observed by integrators: a single bad email in a batch upsert throws for the batch,
        # Atlas-Authority/marketing-automation#174; a batch create with one existing contact is a
        # whole-call 409, HubSpot/hubspot-api-python#51). Only ids that do not resolve are
        # reported per record, as a 207 with OBJECT_NOT_FOUND, while the others are written.
        body = _object_body(request)
        inputs = _inputs(body)
        started = self._now_ms()
        with self._lock:
            plan: list[tuple[_Record, dict[str, str | None]]] = []
            missing: list[str] = []
            seen: dict[int, str] = {}
            duplicates: list[str] = []
            pending_emails: dict[str, int] = {}
            rejected: list[tuple[str, str]] = []
            for item in inputs:
                if not isinstance(item, dict):
                    _bad_request("Invalid input JSON: each input must be an object")
                raw_props = item.get("properties")
                if not raw_props:
                    _bad_request("No properties found to update, please provide at least one.")
                values = self._validate_writes(ot, raw_props, creating=False)
                record = self._find(ot, item.get("id"), item.get("idProperty"))
                if record is None:
                    missing.append(str(item.get("id")))
                    continue
                if record.id in seen:
                    duplicates.append(str(record.id))
                seen[record.id] = str(item.get("id"))
                message = self._rejection(item.get("id"), record.id)
                if message is not None:
                    rejected.append((str(item.get("id")), message))
                    continue
                if ot == "contacts":
                    self._contact_email_conflict(values, record.id, pending_emails)
                plan.append((record, values))
            if duplicates:
                _bad_request(
                    f"Duplicate IDs found in batch input: [{', '.join(duplicates)}]. "
                    "IDs must be unique",
                    context={"ids": duplicates},
                )
            now_ms = self._now_ms()
            results = []
            for record, values in plan:
                self._apply(ot, record, values, now_ms)
                results.append(self._serialise(ot, record, self._written_names(ot, values)))
        return self._batch_response(
            results, started, missing, ot, 200, verb="update", rejected=rejected
        )

    def _batch_create(self, request: Request, ot: str) -> tuple[int, Json]:
        body = _object_body(request)
        inputs = _inputs(body)
        started = self._now_ms()
        with self._lock:
            plan = []
            pending_emails: dict[str, int] = {}
            rejected: list[tuple[str, str]] = []
            for index, item in enumerate(inputs):
                if not isinstance(item, dict):
                    _bad_request("Invalid input JSON: each input must be an object")
                values = self._validate_writes(ot, item.get("properties") or {}, creating=True)
                planned = self._create_associations(ot, item.get("associations"))
                # A create has no record id yet: its trace id (or an `id` key) names it.
                key = item.get("objectWriteTraceId") or item.get("id")
                message = self._rejection(key)
                if message is not None:
                    rejected.append((str(key), message))
                    continue
                if ot == "contacts":
                    # Pending creates get negative placeholders so a duplicate within the batch
                    # is a conflict too.
                    self._contact_email_conflict(values, -(index + 1), pending_emails)
                plan.append((values, planned))
            now_ms = self._now_ms()
            results = []
            for values, planned in plan:
                record = self._new_record(ot, values, now_ms)
                for to_ot, to_id, type_ids in planned:
                    self._link(ot, record.id, to_ot, to_id, type_ids)
                results.append(self._serialise(ot, record, self._written_names(ot, values)))
        return self._batch_response(results, started, [], ot, 201, rejected=rejected)

    def _batch_upsert(self, request: Request, ot: str) -> tuple[int, Json]:
        body = _object_body(request)
        inputs = _inputs(body)
        started = self._now_ms()
        with self._lock:
            plan: list[tuple[_Record | None, dict[str, str | None], str, str]] = []
            rejected: list[tuple[str, str]] = []
            for item in inputs:
                if not isinstance(item, dict) or not item.get("idProperty") or not item.get("id"):
                    _bad_request("Each upsert input needs 'id' and 'idProperty'")
                id_property, key = str(item["idProperty"]), str(item["id"])
                values = self._validate_writes(ot, item.get("properties") or {}, creating=False)
                record = self._find(ot, key, id_property)
                if record is None and ot in ENGAGEMENT_TYPES and not values.get("hs_timestamp"):
                    self._validate_writes(ot, {}, creating=True)
                message = self._rejection(key, record.id if record is not None else None)
                if message is not None:
                    rejected.append((key, message))
                    continue
                plan.append((record, values, id_property, key))
            now_ms = self._now_ms()
            results = []
            for record, values, id_property, key in plan:
                is_new = record is None
                if record is None:
                    record = self._new_record(ot, {**values, id_property: key}, now_ms)
                else:
                    self._apply(ot, record, values, now_ms)
                names = self._written_names(ot, [*values, id_property])
                results.append({**self._serialise(ot, record, names), "new": is_new})
        return self._batch_response(results, started, [], ot, 200, rejected=rejected)

    def _batch_archive(self, request: Request, ot: str) -> tuple[int, None]:
        body = _object_body(request)
        inputs = _inputs(body)
        now_ms = self._now_ms()
        with self._lock:
            for item in inputs:
                raw_id = item.get("id") if isinstance(item, dict) else None
                record = self._find(ot, raw_id, None)
                if record is not None:
                    self._archive(ot, record, now_ms)
        return 204, None

    def _ep_merge(self, request: Request, ot: str) -> tuple[int, Json]:
        ot = self._path_object_type(ot)
        body = _object_body(request)
        now_ms = self._now_ms()
        with self._lock:
            primary = self._live(ot, _parse_id(body.get("primaryObjectId")))
            merged = self._live(ot, _parse_id(body.get("objectIdToMerge")))
            if primary is None or merged is None:
                self._not_found(ot, str(body.get("primaryObjectId")))
            if primary.id == merged.id:
                _bad_request("Cannot merge an object with itself")
            # The primary keeps its id; empty values are filled from the merged record, whose id
            # is recorded in hs_merged_object_ids and keeps resolving to the primary.
            values: dict[str, str | None] = {}
            read_only = {
                n for n, d in self._props[ot].items() if d["modificationMetadata"]["readOnlyValue"]
            }
            for name, value in merged.properties.items():
                if (
                    value is not None
                    and primary.properties.get(name) is None
                    and name not in read_only
                ):
                    values[name] = value
            merged_ids = [
                i for i in (primary.properties.get("hs_merged_object_ids") or "").split(";") if i
            ]
            merged_ids.append(str(merged.id))
            primary.properties["hs_merged_object_ids"] = ";".join(merged_ids)
            for (from_ot, to_ot), table in list(self._assoc.items()):
                if from_ot != ot:
                    continue
                for to_id, types in list(table.get(merged.id, {}).items()):
                    self._unlink(ot, merged.id, to_ot, to_id)
                    self._link(ot, primary.id, to_ot, to_id, types)
            if ot == "contacts":
                self._unindex_contact(merged.id)
            self._stores[ot].drop(merged.id)
            self._merged_into[(ot, merged.id)] = primary.id
            self._apply(ot, primary, values, now_ms)
            return 200, self._serialise(ot, primary, self._output_names(ot, []))

    # ----------------------------------------------------------------------------------------
    # Search
    # ----------------------------------------------------------------------------------------

    def _ep_search(self, request: Request, ot: str) -> tuple[int, Json]:
        ot = self._path_object_type(ot)
        raw = request.get_data(cache=True)
        if len(raw) > _SEARCH_MAX_BODY:
            _bad_request(
                f"The search request body is {len(raw)} characters long; the maximum is "
                f"{_SEARCH_MAX_BODY}."
            )
        body = _object_body(request)
        groups = body.get("filterGroups") or []
        if not isinstance(groups, list):
            _bad_request("Invalid input JSON: 'filterGroups' must be an array")
        total_filters = 0
        for group in groups:
            filters = (group or {}).get("filters") or []
            total_filters += len(filters)
            if len(filters) > _SEARCH_MAX_FILTERS_PER_GROUP:
                self._too_many_filters(len(groups), len(filters), total_filters)
        if len(groups) > _SEARCH_MAX_GROUPS or total_filters > _SEARCH_MAX_FILTERS:
            self._too_many_filters(len(groups), 0, total_filters)
        sorts = body.get("sorts") or []
        if not isinstance(sorts, list):
            _bad_request("Invalid input JSON: 'sorts' must be an array")
        if len(sorts) > 1:
            # The search guide: "only one sorting rule can be applied" (400 is unverified).
            _bad_request("Only one sort rule is supported.")
        limit = _int_value(body.get("limit", 10), "limit")
        if not 0 <= limit <= _SEARCH_MAX:
            _bad_request(f"limit must be between 0 and {_SEARCH_MAX}, got {limit}")
        after_raw = body.get("after")
        after = 0 if after_raw in (None, "") else _int_value(after_raw, "after")
        if after < 0:
            _bad_request(f"Invalid value for after: '{after_raw}'")
        if after + limit > _SEARCH_WINDOW:
            # Search only pages through the first 10,000 results (exact body unverified).
            _bad_request(
                f"Cannot page past {_SEARCH_WINDOW} results: after={after}, limit={limit}. "
                "Narrow the query (for example on the modified date) to page further.",
                context={"after": [str(after)], "limit": [str(limit)]},
            )
        requested = [str(n) for n in body.get("properties") or []]
        compiled = [
            [self._compile_filter(ot, f) for f in (g or {}).get("filters") or []] for g in groups
        ]
        query = body.get("query")
        sort_key = self._sort_spec(ot, sorts[0] if sorts else None)
        now = time.monotonic()
        # Paging a search re-runs the same query with a growing `after`: without lag, the sorted
        # matches are kept until the next write, so page n costs a slice instead of a scan and
        # a sort of every record (seconds per page at a million contacts).
        cache_key = (
            json.dumps([ot, groups, sorts, query], sort_keys=True, default=str)
            if self.search_index_lag <= 0
            else None
        )
        with self._lock:
            names = self._output_names(ot, requested)
            cached = self._search_cache.get(cache_key) if cache_key is not None else None
            if cached is not None and cached[0] == self._version:
                matched = cached[1]
            else:
                matched = []
                for record in self._stores[ot].records.values():
                    view = record
                    if now < record.indexed_at:
                        if record.stale_absent:
                            continue
                        view = record.stale or record
                    if view.archived:
                        continue
                    if compiled and not any(all(f(view) for f in group) for group in compiled):
                        continue
                    matched.append(view)
                if query:
                    matched = self._text_query(ot, matched, str(query))
                matched = sort_key(matched)
                if cache_key is not None:
                    if len(self._search_cache) >= _SEARCH_CACHE_SIZE:
                        self._search_cache.pop(next(iter(self._search_cache)))
                    self._search_cache[cache_key] = (self._version, matched)
            total = len(matched)
            page = [self._serialise(ot, r, names) for r in matched[after : after + limit]]
        result: Json = {"total": total, "results": page}
        if after + limit < total:
            result["paging"] = {"next": {"after": str(after + limit)}}
        return 200, result

    @staticmethod
    def _too_many_filters(groups: int, in_group: int, total: int) -> NoReturn:
        _bad_request(
            f"Too many filters or filter groups: a search may have at most {_SEARCH_MAX_GROUPS} "
            f"filterGroups with up to {_SEARCH_MAX_FILTERS_PER_GROUP} filters each and "
            f"{_SEARCH_MAX_FILTERS} filters in total (got {groups} groups, {total} filters"
            + (f", {in_group} in one group" if in_group else "")
            + ")."
        )

    def _kind(self, ot: str, prop: str) -> tuple[str, bool]:
        """(comparison kind, multi-valued) for a property: number, instant, exact or text."""
        definition = self._props[ot].get(prop)
        if definition is None or definition["archived"]:
            _bad_request(f"Property {prop} does not exist on object type {ot}")
        type_ = definition["type"]
        if type_ == "number":
            return "number", False
        if type_ in ("datetime", "date"):
            return "instant", False
        if type_ == "enumeration":
            return "exact", definition["fieldType"] == "checkbox"
        if type_ == "bool":
            return "bool", False
        return "text", False

    @staticmethod
    def _converter(kind: str) -> Callable[[str], Any]:
        if kind == "number":
            return _number
        if kind == "instant":
            return _instant_ms
        if kind in ("text", "bool"):
            return str.lower
        return str

    def _compile_filter(self, ot: str, spec: Any) -> Callable[[_Record], bool]:
        if not isinstance(spec, dict):
            _bad_request("Invalid input JSON: each filter must be an object")
        prop, op = spec.get("propertyName"), spec.get("operator")
        if not isinstance(prop, str) or not isinstance(op, str):
            _bad_request("Each filter needs 'propertyName' and 'operator'")
        if prop.startswith("associations."):
            return self._association_filter(ot, prop, op, spec)
        kind, multi = self._kind(ot, prop)
        convert = self._converter(kind)

        def operand(raw: Any) -> Any:
            if raw is None:
                _bad_request(f"Operator {op} on {prop} needs a value")
            text = _coerce_value(raw) or ""
            value = convert(text)
            if value is None:
                _bad_request(f"{text} is not a valid value for property {prop}")
            return value

        def stored(record: _Record) -> list[Any]:
            raw = record.properties.get(prop)
            if raw is None or raw == "":
                return []
            parts = raw.split(";") if multi else [raw]
            out = []
            for part in parts:
                value = convert(part)
                if value is not None:
                    out.append(value)
            return out

        if op == "HAS_PROPERTY":
            return lambda r: bool(stored(r))
        if op == "NOT_HAS_PROPERTY":
            return lambda r: not stored(r)
        if op in ("IN", "NOT_IN"):
            raw_values = spec.get("values")
            if not isinstance(raw_values, list) or not raw_values:
                _bad_request(f"Operator {op} requires 'values'")
            # Text IN/NOT_IN compares against lower-cased stored values without lower-casing the
            # operands: HubSpot documents that the values must be given in lowercase.
            if kind == "text":
                wanted = {_coerce_value(v) for v in raw_values}
            else:
                wanted = {operand(v) for v in raw_values}
            if op == "IN":
                return lambda r: any(v in wanted for v in stored(r))
            return lambda r: not any(v in wanted for v in stored(r))
        if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            pattern = (_coerce_value(spec.get("value")) or "").lower()
            if not pattern:
                _bad_request(f"Operator {op} needs a value")

            def contains(record: _Record) -> bool:
                raw = (record.properties.get(prop) or "").lower()
                if not raw:
                    return False
                if fnmatch.fnmatchcase(raw, pattern):
                    return True
                return any(
                    fnmatch.fnmatchcase(token, pattern)
                    for token in _TOKEN_SPLIT_RE.split(raw)
                    if token
                )

            if op == "CONTAINS_TOKEN":
                return contains
            return lambda r: not contains(r)
        if op == "BETWEEN":
            low, high = operand(spec.get("value")), operand(spec.get("highValue"))
            return lambda r: any(low <= v <= high for v in stored(r))
        comparisons: dict[str, Callable[[Any, Any], bool]] = {
            "EQ": lambda a, b: a == b,
            "LT": lambda a, b: a < b,
            "LTE": lambda a, b: a <= b,
            "GT": lambda a, b: a > b,
            "GTE": lambda a, b: a >= b,
        }
        if op == "NEQ":
            target = operand(spec.get("value"))
            # Records without a value match NEQ (a must-not match in HubSpot's index).
            return lambda r: target not in stored(r)
        compare = comparisons.get(op)
        if compare is None:
            _bad_request(f"Unknown filter operator '{op}'")
        target = operand(spec.get("value"))
        return lambda r: any(compare(v, target) for v in stored(r))

    def _association_filter(
        self, ot: str, prop: str, op: str, spec: Json
    ) -> Callable[[_Record], bool]:
        # Pseudo-property `associations.contact` (EQ/IN an id) filters by associated record.
        to_ot = _OBJECT_ALIASES.get(prop.split(".", 1)[1].lower())
        if to_ot is None:
            _bad_request(f"Unknown association filter {prop}")
        if op == "EQ":
            wanted = {_parse_id(spec.get("value"))}
        elif op == "IN":
            wanted = {_parse_id(v) for v in spec.get("values") or []}
        else:
            _bad_request(f"Operator {op} is not supported on {prop}")
        table = self._assoc.get((ot, to_ot), {})
        return lambda r: any(t in wanted for t in table.get(r.id, {}))

    def _sort_spec(self, ot: str, spec: Any) -> Callable[[list[_Record]], list[_Record]]:
        if spec is None:
            # Default order: by creation, oldest first (id breaks ties).
            return lambda rs: sorted(rs, key=lambda r: (r.created_ms, r.id))
        if isinstance(spec, str):
            # Bare-string sorts (`"sorts": ["createdate"]`) are ascending; "-prop" descending.
            descending = spec.startswith("-")
            prop = spec.lstrip("-")
        elif isinstance(spec, dict):
            prop = spec.get("propertyName")
            direction = str(spec.get("direction", "ASCENDING")).upper()
            if direction not in ("ASCENDING", "DESCENDING"):
                _bad_request(f"Invalid sort direction '{direction}'")
            descending = direction == "DESCENDING"
        else:
            _bad_request("Invalid sort")
        if not isinstance(prop, str):
            _bad_request("A sort needs 'propertyName'")
        if prop in ("id", "hs_object_id"):
            return lambda rs: sorted(rs, key=lambda r: r.id, reverse=descending)
        kind, _ = self._kind(ot, prop)
        convert = self._converter(kind)

        def key(record: _Record) -> Any:
            raw = record.properties.get(prop)
            return None if raw is None or raw == "" else convert(raw)

        def apply(records: list[_Record]) -> list[_Record]:
            by_id = sorted(records, key=lambda r: r.id)
            keyed = [(key(r), r) for r in by_id]
            present = [(k, r) for k, r in keyed if k is not None]
            absent = [r for k, r in keyed if k is None]
            present.sort(key=lambda kr: kr[0], reverse=descending)
            # Records without the property sort last in either direction.
            return [r for _, r in present] + absent

        return apply

    def _text_query(self, ot: str, records: list[_Record], query: str) -> list[_Record]:
        terms = [t for t in _TOKEN_SPLIT_RE.split(query.lower()) if t]
        if not terms:
            return records
        fields = _OBJECTS[ot].searchable

        def matches(record: _Record) -> bool:
            tokens: list[str] = []
            for name in fields:
                value = record.properties.get(name)
                if value:
                    lowered = value.lower()
                    tokens.append(lowered)
                    tokens.extend(t for t in _TOKEN_SPLIT_RE.split(lowered) if t)
            return all(any(tok.startswith(term) for tok in tokens) for term in terms)

        return [r for r in records if matches(r)]

    # ----------------------------------------------------------------------------------------
    # Properties and groups
    # ----------------------------------------------------------------------------------------

    @staticmethod
    def _custom_definition(body: Json, now_iso: str) -> Json:
        options = []
        for order, option in enumerate(body.get("options") or []):
            options.append(
                {
                    "label": str(option.get("label")),
                    "value": str(option.get("value")),
                    "displayOrder": option.get("displayOrder", order),
                    "hidden": bool(option.get("hidden", False)),
                    **({"description": option["description"]} if "description" in option else {}),
                }
            )
        definition: Json = {
            "updatedAt": now_iso,
            "createdAt": now_iso,
            "name": body["name"],
            "label": body["label"],
            "type": body["type"],
            "fieldType": body["fieldType"],
            "description": body.get("description", ""),
            "groupName": body["groupName"],
            "options": options,
            "displayOrder": body.get("displayOrder", -1),
            "calculated": False,
            "externalOptions": bool(body.get("externalOptions", False)),
            "hasUniqueValue": bool(body.get("hasUniqueValue", False)),
            "hidden": bool(body.get("hidden", False)),
            "modificationMetadata": {
                "archivable": True,
                "readOnlyDefinition": False,
                "readOnlyValue": False,
            },
            "formField": bool(body.get("formField", False)),
            "dataSensitivity": body.get("dataSensitivity", "non_sensitive"),
            "archived": False,
        }
        for key in ("referencedObjectType", "numberDisplayHint", "textDisplayHint"):
            if key in body:
                definition[key] = body[key]
        return definition

    def _check_definition(self, ot: str, body: Json, *, partial: bool) -> None:
        required = ("name", "label", "type", "fieldType", "groupName")
        missing = [k for k in required if not partial and not body.get(k)]
        if missing:
            _bad_request(
                f"Some required fields were not set: [{', '.join(missing)}]",
                errors=[
                    {"message": f"{k} is required", "code": "REQUIRED_FIELD", "in": k}
                    for k in missing
                ],
            )
        type_ = body.get("type")
        field_type = body.get("fieldType")
        if type_ is not None and type_ not in _PROPERTY_TYPES:
            _bad_request(f"Invalid property type '{type_}'")
        if field_type is not None and field_type not in _FIELD_TYPES:
            _bad_request(f"Invalid fieldType '{field_type}'")
        if (
            type_ is not None
            and field_type is not None
            and field_type not in _FIELD_TYPES_FOR[type_]
        ):
            _bad_request(f"fieldType '{field_type}' is not valid for a property of type '{type_}'")
        if not partial and not _PROPERTY_NAME_RE.match(str(body["name"])):
            _bad_request(
                f"Invalid property name '{body['name']}': use lowercase letters, digits and "
                "underscores, starting with a letter"
            )
        group = body.get("groupName")
        if group is not None and (
            group not in self._groups[ot] or self._groups[ot][group]["archived"]
        ):
            _bad_request(f"Property group {group} does not exist")
        options = body.get("options")
        if options is not None:
            if not isinstance(options, list):
                _bad_request("options must be an array")
            values = []
            for option in options:
                if not isinstance(option, dict) or "label" not in option or "value" not in option:
                    _bad_request("Every option needs a label and a value")
                values.append(str(option["value"]))
            if len(set(values)) != len(values):
                _bad_request("Option values must be unique")

    def _ep_properties(self, request: Request, ot: str) -> tuple[int, Json]:
        ot = self._path_object_type(ot)
        if request.method == "GET":
            archived = _bool_arg(request, "archived")
            with self._lock:
                return 200, {
                    "results": [
                        dict(d) for d in self._props[ot].values() if d["archived"] == archived
                    ]
                }
        body = _object_body(request)
        with self._lock:
            return 201, self._create_property(ot, body)

    def _create_property(self, ot: str, body: Json) -> Json:
        self._check_definition(ot, body, partial=False)
        if body["name"] in self._props[ot]:
            # Category per HubSpot's properties API (message unverified).
            _fail(
                409,
                "OBJECT_ALREADY_EXISTS",
                f"Property named '{body['name']}' already exists.",
                context={"name": [body["name"]]},
            )
        definition = self._custom_definition(body, _iso(self._now_ms()))
        self._props[ot][definition["name"]] = definition
        return dict(definition)

    def _ep_property(self, request: Request, ot: str, name: str) -> tuple[int, Json | None]:
        ot = self._path_object_type(ot)
        with self._lock:
            definition = self._props[ot].get(name)
            if request.method == "GET":
                archived = _bool_arg(request, "archived")
                if definition is None or definition["archived"] != archived:
                    self._property_not_found(ot, name)
                return 200, dict(definition)
            if definition is None or definition["archived"]:
                self._property_not_found(ot, name)
            if request.method == "DELETE":
                if not definition["modificationMetadata"]["archivable"]:
                    _bad_request(
                        f"Property {name} is a HubSpot default property and can't be archived"
                    )
                definition["archived"] = True
                definition["archivedAt"] = _iso(self._now_ms())
                return 204, None
            body = _object_body(request)
            if definition["modificationMetadata"]["readOnlyDefinition"]:
                _bad_request(f"Property {name} has a read-only definition")
            merged = {**definition, **{k: v for k, v in body.items() if k != "name"}}
            self._check_definition(ot, merged, partial=True)
            for key in (
                "label",
                "type",
                "fieldType",
                "groupName",
                "description",
                "displayOrder",
                "hidden",
                "formField",
            ):
                if key in body:
                    definition[key] = body[key]
            if "options" in body:
                definition["options"] = self._custom_definition(
                    {**definition, "options": body["options"]}, definition["createdAt"]
                )["options"]
            definition["updatedAt"] = _iso(self._now_ms())
            return 200, dict(definition)

    @staticmethod
    def _property_not_found(ot: str, name: str) -> NoReturn:
        _fail(
            404,
            "OBJECT_NOT_FOUND",
            f"Unable to find property {name} for object type {_OBJECTS[ot].type_id}",
            context={"propertyName": [name]},
        )

    def _ep_properties_batch(self, request: Request, ot: str, op: str) -> tuple[int, Json | None]:
        ot = self._path_object_type(ot)
        body = _object_body(request)
        inputs = _inputs(body, maximum=_BATCH_MAX)
        started = self._now_ms()
        results: list[Json] = []
        errors: list[Json] = []
        with self._lock:
            if op == "read":
                archived = bool(body.get("archived", False))
                for item in inputs:
                    name = str((item or {}).get("name"))
                    definition = self._props[ot].get(name)
                    if definition is None or definition["archived"] != archived:
                        errors.append(self._standard_error("OBJECT_NOT_FOUND", name))
                    else:
                        results.append(dict(definition))
                ok = 200
            elif op == "create":
                for item in inputs:
                    try:
                        results.append(
                            self._create_property(ot, item if isinstance(item, dict) else {})
                        )
                    except _ApiError as exc:
                        errors.append(
                            {
                                "status": "error",
                                "category": (exc.body or {}).get("category", "VALIDATION_ERROR"),
                                "message": (exc.body or {}).get("message", ""),
                                "context": {"name": [str((item or {}).get("name"))]},
                                "errors": [],
                                "links": {},
                            }
                        )
                ok = 201
            elif op == "archive":
                for item in inputs:
                    definition = self._props[ot].get(str((item or {}).get("name")))
                    if definition and definition["modificationMetadata"]["archivable"]:
                        definition["archived"] = True
                        definition["archivedAt"] = _iso(self._now_ms())
                return 204, None
            else:
                _fail(404, "OBJECT_NOT_FOUND", f"Unable to route request: batch/{op}")
        out: Json = {"status": "COMPLETE", "results": results}
        if errors:
            out["numErrors"] = len(errors)
            out["errors"] = errors
        out["startedAt"] = _iso(started)
        out["completedAt"] = _iso(self._now_ms())
        return (207 if errors else ok), out

    @staticmethod
    def _standard_error(category: str, name: str) -> Json:
        return {
            "status": "error",
            "category": category,
            "message": f"Unable to find property {name}",
            "context": {"name": [name]},
            "errors": [],
            "links": {},
        }

    def _ep_groups(self, request: Request, ot: str) -> tuple[int, Json]:
        ot = self._path_object_type(ot)
        with self._lock:
            if request.method == "GET":
                return 200, {
                    "results": [dict(g) for g in self._groups[ot].values() if not g["archived"]]
                }
            body = _object_body(request)
            missing = [k for k in ("name", "label") if not body.get(k)]
            if missing:
                _bad_request(f"Some required fields were not set: [{', '.join(missing)}]")
            name = str(body["name"])
            if not _PROPERTY_NAME_RE.match(name):
                _bad_request(f"Invalid property group name '{name}'")
            if name in self._groups[ot] and not self._groups[ot][name]["archived"]:
                _fail(
                    409,
                    "OBJECT_ALREADY_EXISTS",
                    f"Property group named '{name}' already exists.",
                    context={"name": [name]},
                )
            group = {
                "name": name,
                "label": str(body["label"]),
                "displayOrder": int(body.get("displayOrder", -1)),
                "archived": False,
            }
            self._groups[ot][name] = group
            return 201, dict(group)

    def _ep_group(self, request: Request, ot: str, name: str) -> tuple[int, Json | None]:
        ot = self._path_object_type(ot)
        with self._lock:
            group = self._groups[ot].get(name)
            if group is None or group["archived"]:
                _fail(404, "OBJECT_NOT_FOUND", f"Unable to find property group {name}")
            if request.method == "GET":
                return 200, dict(group)
            if request.method == "DELETE":
                group["archived"] = True
                return 204, None
            body = _object_body(request)
            if "label" in body:
                group["label"] = str(body["label"])
            if "displayOrder" in body:
                group["displayOrder"] = int(body["displayOrder"])
            return 200, dict(group)

    # ----------------------------------------------------------------------------------------
    # Associations v4
    # ----------------------------------------------------------------------------------------

    @staticmethod
    def _v4_to(to_id: int, types: frozenset[int]) -> Json:
        return {
            "toObjectId": to_id,  # a JSON number in v4 (the client coerces it to str)
            "associationTypes": [
                {"category": "HUBSPOT_DEFINED", "typeId": t, "label": _ASSOC_TYPES[t].label}
                for t in sorted(types)
            ],
        }

    def _v4_page(
        self, ot: str, record_id: int, to_ot: str, after: int, limit: int
    ) -> tuple[list[Json], int | None]:
        targets = self._assoc_targets(ot, to_ot, record_id)
        ordered = sorted(t for t in targets if t >= after)
        page = ordered[:limit]
        next_after = ordered[limit] if len(ordered) > limit else None
        return [self._v4_to(t, targets[t]) for t in page], next_after

    def _ep_assoc_list(self, request: Request, ot: str, oid: str, to_ot: str) -> tuple[int, Json]:
        ot, to_ot = self._path_object_type(ot), self._path_object_type(to_ot)
        limit = _int_value(request.args.get("limit", str(_V4_PAGE_MAX)), "limit")
        if not 1 <= limit <= _V4_PAGE_MAX:
            _bad_request(f"limit must be between 1 and {_V4_PAGE_MAX}")
        after_raw = request.args.get("after")
        after = _parse_id(after_raw) if after_raw else 0
        if after is None:
            _bad_request(f"Invalid after cursor '{after_raw}'")
        with self._lock:
            record = self._live(ot, _parse_id(oid))
            results, next_after = (
                self._v4_page(ot, record.id, to_ot, after, limit) if record else ([], None)
            )
        body: Json = {"results": results}
        if next_after is not None:
            body["paging"] = {
                "next": {
                    "after": str(next_after),
                    "link": f"{_API_ORIGIN}/crm/v4/objects/{ot}/{oid}/associations/{to_ot}"
                    f"?after={next_after}",
                }
            }
        return 200, body

    def _check_types(self, from_ot: str, to_ot: str, specs: Any) -> list[int]:
        if not isinstance(specs, list) or not specs:
            _bad_request("At least one association type is required")
        type_ids = []
        for spec in specs:
            type_id = (spec or {}).get("associationTypeId") if isinstance(spec, dict) else None
            assoc = _ASSOC_TYPES.get(type_id) if isinstance(type_id, int) else None
            if assoc is None or (assoc.from_ot, assoc.to_ot) != (from_ot, to_ot):
                _bad_request(
                    f"association type id {type_id} doesn't exist between {from_ot} and {to_ot}"
                )
            type_ids.append(assoc.type_id)
        return type_ids

    def _pair(
        self, from_ot: str, raw_from: Any, to_ot: str, raw_to: Any
    ) -> tuple[_Record, _Record] | None:
        source = self._live(from_ot, _parse_id(raw_from))
        target = self._live(to_ot, _parse_id(raw_to))
        if source is None or target is None:
            return None
        return source, target

    def _labels_between(self, from_ot: str, from_id: int, to_ot: str, to_id: int) -> Json:
        types = self._assoc.get((from_ot, to_ot), {}).get(from_id, {}).get(to_id, set())
        return {
            "fromObjectTypeId": _OBJECTS[from_ot].type_id,
            "fromObjectId": from_id,
            "toObjectTypeId": _OBJECTS[to_ot].type_id,
            "toObjectId": to_id,
            "labels": sorted({lbl for t in types if (lbl := _ASSOC_TYPES[t].label)}),
        }

    def _ep_assoc_pair(
        self, request: Request, ot: str, oid: str, to_ot: str, to_id: str
    ) -> tuple[int, Json | None]:
        ot, to_ot = self._path_object_type(ot), self._path_object_type(to_ot)
        with self._lock:
            if request.method == "DELETE":
                source, target = _parse_id(oid), _parse_id(to_id)
                if source is not None and target is not None:
                    self._unlink(ot, source, to_ot, target)
                return 204, None
            type_ids = self._check_types(ot, to_ot, _json_body(request))
            pair = self._pair(ot, oid, to_ot, to_id)
            if pair is None:
                self._not_found(ot, oid)
            self._link(ot, pair[0].id, to_ot, pair[1].id, type_ids)
            return 201, self._labels_between(ot, pair[0].id, to_ot, pair[1].id)

    def _ep_assoc_default(
        self, request: Request, ot: str, oid: str, to_ot: str, to_id: str
    ) -> tuple[int, Json]:
        ot, to_ot = self._path_object_type(ot), self._path_object_type(to_ot)
        started = self._now_ms()
        with self._lock:
            pair = self._pair(ot, oid, to_ot, to_id)
            if pair is None:
                self._not_found(ot, oid)
            results = self._default_results(ot, to_ot, pair[0].id, pair[1].id)
        return 200, {
            "status": "COMPLETE",
            "results": results,
            "startedAt": _iso(started),
            "completedAt": _iso(self._now_ms()),
        }

    def _default_results(self, from_ot: str, to_ot: str, from_id: int, to_id: int) -> list[Json]:
        forward = self._link_default(from_ot, from_id, to_ot, to_id)
        backward = _ASSOC_TYPES[forward].inverse
        return [
            {
                "from": {"id": str(a)},
                "to": {"id": str(b)},
                "associationSpec": {
                    "associationCategory": "HUBSPOT_DEFINED",
                    "associationTypeId": t,
                },
            }
            for a, b, t in ((from_id, to_id, forward), (to_id, from_id, backward))
        ]

    def _ep_assoc_batch(
        self, request: Request, from_ot: str, to_ot: str, op: str
    ) -> tuple[int, Json | None]:
        from_ot, to_ot = self._path_object_type(from_ot), self._path_object_type(to_ot)
        body = _object_body(request)
        started = self._now_ms()
        results: list[Json] = []
        errors: list[Json] = []
        if op == "read":
            inputs = _inputs(body, _V4_BATCH_READ_MAX)
            with self._lock:
                for item in inputs:
                    raw_id = item.get("id") if isinstance(item, dict) else None
                    record = self._live(from_ot, _parse_id(raw_id))
                    if record is None:
                        errors.append(self._assoc_error(from_ot, to_ot, raw_id, found=False))
                        continue
                    after = _parse_id(item.get("after")) or 0
                    to, next_after = self._v4_page(from_ot, record.id, to_ot, after, _V4_PAGE_MAX)
                    if not to:
                        # HubSpot reports an object without associations of the requested type
                        # as an error of the batch (207), not as an empty `to` (unverified text).
                        errors.append(self._assoc_error(from_ot, to_ot, raw_id, found=True))
                        continue
                    result: Json = {"from": {"id": str(record.id)}, "to": to}
                    if next_after is not None:
                        result["paging"] = {"next": {"after": str(next_after)}}
                    results.append(result)
            ok = 200
        elif op == "create":
            inputs = _inputs(body, _V4_BATCH_WRITE_MAX)
            with self._lock:
                plan = []
                for item in inputs:
                    item = item if isinstance(item, dict) else {}
                    type_ids = self._check_types(from_ot, to_ot, item.get("types"))
                    pair = self._pair(
                        from_ot,
                        (item.get("from") or {}).get("id"),
                        to_ot,
                        (item.get("to") or {}).get("id"),
                    )
                    if pair is None:
                        errors.append(
                            self._assoc_error(
                                from_ot, to_ot, (item.get("from") or {}).get("id"), found=False
                            )
                        )
                        continue
                    plan.append((pair, type_ids))
                for (source, target), type_ids in plan:
                    self._link(from_ot, source.id, to_ot, target.id, type_ids)
                    results.append(self._labels_between(from_ot, source.id, to_ot, target.id))
            ok = 201
        elif op == "associate/default":
            inputs = _inputs(body, _V4_BATCH_WRITE_MAX)
            with self._lock:
                for item in inputs:
                    item = item if isinstance(item, dict) else {}
                    pair = self._pair(
                        from_ot,
                        (item.get("from") or {}).get("id"),
                        to_ot,
                        (item.get("to") or {}).get("id"),
                    )
                    if pair is None:
                        errors.append(
                            self._assoc_error(
                                from_ot, to_ot, (item.get("from") or {}).get("id"), found=False
                            )
                        )
                        continue
                    results.extend(self._default_results(from_ot, to_ot, pair[0].id, pair[1].id))
            ok = 200
        elif op in ("archive", "labels/archive"):
            inputs = _inputs(body, _V4_BATCH_ARCHIVE_MAX)
            with self._lock:
                for item in inputs:
                    item = item if isinstance(item, dict) else {}
                    source = _parse_id((item.get("from") or {}).get("id"))
                    if source is None:
                        continue
                    types: set[int] | None = None
                    if op == "labels/archive":
                        types = set(self._check_types(from_ot, to_ot, item.get("types")))
                    targets = item.get("to") or []
                    if isinstance(targets, dict):
                        targets = [targets]
                    for target in targets:
                        target_id = _parse_id((target or {}).get("id"))
                        if target_id is not None:
                            self._unlink(from_ot, source, to_ot, target_id, types)
            return 204, None
        else:
            _fail(404, "OBJECT_NOT_FOUND", f"Unable to route request: batch/{op}")
        out: Json = {"status": "COMPLETE", "results": results}
        if errors:
            out["numErrors"] = len(errors)
            out["errors"] = errors
        out["startedAt"] = _iso(started)
        out["completedAt"] = _iso(self._now_ms())
        return (207 if errors else ok), out

    @staticmethod
    def _assoc_error(from_ot: str, to_ot: str, raw_id: Any, *, found: bool) -> Json:
        from_meta, to_meta = _OBJECTS[from_ot], _OBJECTS[to_ot]
        context: Json = {"fromObjectId": [str(raw_id)]}
        if found:
            # Wording, subCategory (a string, though the spec types StandardError.subCategory as
            # an object) and context as captured from a real portal's v4 batch read:
            # "No company is associated with deal 515690208449.".
            message = f"No {to_meta.singular} is associated with {from_meta.singular} {raw_id}."
            sub = "crm.associations.NO_ASSOCIATIONS_FOUND"
            context["fromObjectType"] = [from_meta.singular]
            context["toObjectType"] = [to_meta.singular]
        else:
            message = f"{from_meta.upper} {raw_id} does not exist."  # unverified text
            sub = "crm.associations.OBJECT_NOT_FOUND"
        return {
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "subCategory": sub,
            "message": message,
            "context": context,
            "errors": [],
            "links": {},
        }
