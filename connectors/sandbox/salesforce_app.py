"""Salesforce REST emulator (WSGI) that the unmodified simple-salesforce client cannot tell apart.

Serve it over HTTPS (simple-salesforce hardcodes ``https://``) with the private CA of
:mod:`connectors.sandbox.tls`::

    sandbox = SalesforceSandbox()
    ctx, ca_path = make_tls(tmp_dir)
    server = werkzeug.serving.make_server("127.0.0.1", 0, sandbox, threaded=True, ssl_context=ctx)
    sandbox.instance_url = f"https://127.0.0.1:{server.server_port}"

    s = requests.Session(); s.verify = str(ca_path); s.trust_env = False   # trip-wire 2
    sf = Salesforce(consumer_key="sandbox-client-id", consumer_secret="sandbox-client-secret",
                    domain=f"127.0.0.1:{server.server_port}/sf", session=s)

What it models (api_contract.md Part B): OAuth client-credentials and username-password token
grants with expiring sessions; versions / resources / limits; SOQL ``query`` and ``queryAll``
with server-side cursors; global and per-object describe generated from the field table in
:mod:`connectors.sandbox.salesforce_schema`; sObject CRUD, upsert and lookup by external id;
``updated`` / ``deleted``; sObject Collections (create, update, upsert, delete, retrieve);
Bulk API 2.0 ingest and query jobs (:mod:`connectors.sandbox.salesforce_bulk`), written through
the same validation as REST and Collections; ``Sforce-Limit-Info`` and the rolling 24-hour
request, Bulk batch and Bulk query-job limits. Error bodies are JSON arrays
``[{"message", "errorCode", "fields"?}]`` except inside Collections results, which use
``statusCode`` (trip-wire 6). ``reject_record_ids`` makes chosen records fail updates with
``FIELD_CUSTOM_VALIDATION_EXCEPTION`` (fault injection).

Scale: one dict per stored record and no per-record index (the key prefix names the sObject,
the 18-character checksum restores an id's case); query cursors and Bulk query jobs hold
references to the matching records and project a page at a time.

Timestamps the emulator stamps on writes are whole seconds, as Salesforce stores them, so a
``SystemModstamp > :hwm`` poll meets the same same-second ties as against a real org.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
import unicodedata
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, unquote

from werkzeug.wrappers import Request, Response

from connectors.sandbox.salesforce_bulk import BulkApiError, BulkJobs, BulkOutcome
from connectors.sandbox.salesforce_schema import (
    CLOSED_TASK_STATUSES,
    CONVERTED_LEAD_STATUS,
    FOREIGN_PREFIXES,
    NUMBER_TYPES,
    PREFIX_TO_SOBJECT,
    RESPONDED_MEMBER_STATUSES,
    SOBJECTS,
    STAGE_INFO,
    TEXT_TYPES,
    FieldDef,
    SObjectDef,
    child_relationships,
    compound_address,
    format_datetime,
    id18,
    is_id,
    make_id,
    parse_date,
    parse_datetime,
    references_to,
    restore_id_case,
    sobject,
    to_wire,
)
from connectors.sandbox.soql import Plan, SoqlError, compile_query

log = logging.getLogger(__name__)

JsonBody = Any
WsgiEnviron = dict[str, Any]
StartResponse = Callable[..., Any]

MAX_COLLECTION_RECORDS = 200
DEFAULT_QUERY_BATCH = 2000
MIN_QUERY_BATCH = 200
#: What Sforce-Limit-Info reports as the total when the sandbox runs without a daily limit.
UNLIMITED_REPORTED = 2_147_483_647
_ROLLING_WINDOW_S = 24 * 3600.0
_WSDL_HINT = "Please reference your WSDL or the describe call for the appropriate names."
_ROLLED_BACK = {
    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "message": "Record rolled back because not all records were valid and the request was using "
    "AllOrNone header",
    "fields": [],
}
#: Key prefixes are case-sensitive, but an 18-character id typed in another case still names
#: its sObject (no two modelled prefixes differ only in case).
_PREFIX_ANY_CASE = {prefix.lower(): name for prefix, name in PREFIX_TO_SOBJECT.items()}
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_VERSION_RE = re.compile(r"^/services/data/v(\d+\.\d)(/.*)?$")


# ---------------------------------------------------------------------------------------------
# Errors


class ApiError(Exception):
    """A REST error response: ``[{"message", "errorCode", "fields"?}]`` with an HTTP status."""

    def __init__(
        self, status: int, error_code: str, message: str, fields: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.fields = fields

    def body(self) -> list[dict[str, Any]]:
        item: dict[str, Any] = {"message": self.message, "errorCode": self.error_code}
        if self.fields is not None:
            item["fields"] = self.fields
        return [item]


class RecordError(Exception):
    """A DML failure of one record (a SaveResult error)."""

    def __init__(
        self,
        code: str,
        message: str,
        fields: list[str] | None = None,
        *,
        status: int = 400,
        rest_fields: bool = True,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields if fields is not None else []
        #: Single-record REST omits ``fields`` for errors raised while deserialising the body.
        self.rest_fields = rest_fields and fields is not None
        self.status = status

    def api_error(self) -> ApiError:
        return ApiError(
            self.status, self.code, self.message, self.fields if self.rest_fields else None
        )

    def result_error(self) -> dict[str, Any]:
        return {"statusCode": self.code, "message": self.message, "fields": self.fields}


class _ParseError(Exception):
    """A value of the wrong JSON type: Salesforce fails the whole request while deserialising.

    Bulk API CSV has no JSON types, so there the same conversion failure is a per-record
    ``INVALID_TYPE_ON_FIELD_IN_RECORD`` instead (``field`` / ``raw`` say which value).
    """

    def __init__(self, message: str, field: FieldDef | None = None, raw: Any = None) -> None:
        super().__init__(message)
        self.field = field
        self.raw = raw


def _json_parser_error(message: str) -> ApiError:
    return ApiError(400, "JSON_PARSER_ERROR", message)


def _not_found() -> ApiError:
    return ApiError(404, "NOT_FOUND", "The requested resource does not exist")


# ---------------------------------------------------------------------------------------------
# Small value helpers


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _is_cjk(text: str | None) -> bool:
    if not text or text.isascii():  # the common case, decided in C without a per-char loop
        return False
    return any(unicodedata.east_asian_width(ch) in {"W", "F"} and ch.isalpha() for ch in text)


def _person_name(first: str | None, last: str | None) -> str | None:
    """Compound Name. Japanese-locale orgs display family name first; Western orgs given first.

    The sandbox picks the order per record from the script of the name (a ja_JP user sees
    "山田 太郎", an en_US user "Taro Yamada").
    """
    parts = [p for p in ((last, first) if _is_cjk(last) or _is_cjk(first) else (first, last)) if p]
    return " ".join(parts) if parts else None


def _version_label(major: int) -> str:
    # v17.0 was Winter '10; three releases a year since.
    offset = major - 17
    season = ("Winter", "Spring", "Summer")[offset % 3]
    return f"{season} '{10 + offset // 3:02d}"


def _trunc_minute(value: datetime) -> datetime:
    return value.replace(second=0, microsecond=0)


def _bulk_failure(record_id: str, error: RecordError) -> BulkOutcome:
    return BulkOutcome(False, record_id, False, error.code, error.message, error.fields)


def _visible(rec: Mapping[str, Any]) -> bool:
    """Seen by ``query`` (not only ``queryAll``): not in the recycle bin, not archived."""
    return not rec.get("IsDeleted") and not rec.get("IsArchived")


# ---------------------------------------------------------------------------------------------
# Seeding (load): one precomputed plan per sObject keeps loading a million records fast.

# How a seeded value is converted to its stored form.
_LOAD_TEXT = 0
_LOAD_DATETIME = 1
_LOAD_DATE = 2
_LOAD_BOOLEAN = 3
_LOAD_INT = 4
_LOAD_NUMBER = 5
_LOAD_SKIP = 6  # compound address fields: computed on read, never stored


def _load_datetime(value: Any) -> datetime:
    if type(value) is datetime and value.tzinfo is UTC and not value.microsecond % 1000:
        return value  # already what we store: UTC, millisecond precision
    if isinstance(value, datetime):
        utc = _utc(value)
        return utc.replace(microsecond=utc.microsecond // 1000 * 1000)
    return parse_datetime(str(value))


def _load_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return parse_date(str(value))


def _load_boolean(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() == "true"


_LOAD_CONVERTERS: dict[int, Callable[[Any], Any]] = {
    _LOAD_DATETIME: _load_datetime,
    _LOAD_DATE: _load_date,
    _LOAD_BOOLEAN: _load_boolean,
    _LOAD_INT: int,
    _LOAD_NUMBER: float,
}


@dataclass(frozen=True)
class _Loader:
    #: Every stored field with the value it gets when a load omits it.
    template: dict[str, Any]
    #: Field name (as spelled and lower-cased) → (stored name, conversion kind).
    fields: dict[str, tuple[str, int]]
    has_owner: bool
    #: Exact names of the stored fields (a record using only these takes the fast path).
    exact: frozenset[str]
    #: Stored fields whose omitted / null value is not None (booleans, defaulted picklists).
    defaults: tuple[tuple[str, Any], ...]
    #: Stored fields that need a conversion (datetime, date, boolean, number).
    converted: tuple[tuple[str, int], ...]
    #: Stored text fields (a non-string value is turned into its string).
    text: tuple[str, ...]


#: Records seeded per lock hold.
_LOAD_SLICE = 5000


_LOADERS: dict[str, _Loader] = {}


# CPython keeps the attribute names of a class's instances once, in a key table every instance
# dict shares, for up to 30 names; a copy of such a dict shares it too. Records copied from it
# (Task, Event, CampaignMember...) hold only their values: a 25-field Task is ~340 B instead of
# ~840 B as an ordinary dict (about 1.2 GiB at a million people, extrapolated). Plain dicts,
# they behave as such (a key the table lacks simply gives that record its own table); wider
# objects (Lead, Contact) and other Pythons get an ordinary dict.
_SHARED_KEYS_MAX = 30


def _key_sharing(name: str, template: dict[str, Any]) -> dict[str, Any]:
    if len(template) > _SHARED_KEYS_MAX or not all(k.isidentifier() for k in template):
        return template
    holder = type(f"_{name}Record", (), {})()
    for key, value in template.items():
        setattr(holder, key, value)
    shared = vars(holder)
    return shared if list(shared.items()) == list(template.items()) else template


def _loader(obj: SObjectDef) -> _Loader:
    cached = _LOADERS.get(obj.name)
    if cached is not None:
        return cached
    template: dict[str, Any] = {}
    fields: dict[str, tuple[str, int]] = {}
    for f in obj.fields:
        if f.type == "address":
            kind = _LOAD_SKIP
        elif f.type == "datetime":
            kind = _LOAD_DATETIME
        elif f.type == "date":
            kind = _LOAD_DATE
        elif f.type == "boolean":
            kind = _LOAD_BOOLEAN
        elif f.type == "int":
            kind = _LOAD_INT
        elif f.type in NUMBER_TYPES:
            kind = _LOAD_NUMBER
        else:
            kind = _LOAD_TEXT
        fields[f.name] = fields[f.name.lower()] = (f.name, kind)
        if kind == _LOAD_SKIP:
            continue
        if f.type == "boolean":
            template[f.name] = bool(f.default_value)
        elif f.type == "picklist" and f.defaulted_on_create:
            template[f.name] = next((p.value for p in f.picklist if p.default), None)
        else:
            template[f.name] = None
    kinds = {name: kind for name, kind in fields.values()}
    loader = _Loader(
        _key_sharing(obj.name, template),
        fields,
        obj.field("OwnerId") is not None,
        frozenset(template),
        tuple((name, value) for name, value in template.items() if value is not None),
        tuple((name, kinds[name]) for name in template if kinds[name] != _LOAD_TEXT),
        tuple(name for name in template if kinds[name] == _LOAD_TEXT),
    )
    _LOADERS[obj.name] = loader
    return loader


# ---------------------------------------------------------------------------------------------
# Internal state


@dataclass
class _Session:
    user_id: str
    refreshed: float


@dataclass
class _Cursor:
    """A server-side query cursor: references to the matching stored records, projected one
    page at a time (a copy of 1,000,000 projected rows would dwarf the org itself)."""

    rows: list[Mapping[str, Any]]
    project: Callable[[Mapping[str, Any]], dict[str, Any]]
    total: int
    batch: int
    touched: float


@dataclass
class _Prepared:
    """A validated write waiting to be committed (lets allOrNone roll back for free)."""

    obj: SObjectDef
    record: dict[str, Any]  # the stored record (update/delete) or the new one (insert)
    changes: dict[str, Any]
    kind: str  # insert, update, delete
    created: bool = False


class _Lookup:
    """The store seen by the SOQL evaluator (relationship traversal, id canonicalisation)."""

    def __init__(self, sandbox: SalesforceSandbox) -> None:
        self._sandbox = sandbox

    def lookup(self, record_id: str) -> tuple[str, Mapping[str, Any]] | None:
        sandbox = self._sandbox
        hit = sandbox._locate(record_id)
        if hit is None:
            canonical = sandbox._canonical_id(record_id)
            hit = sandbox._locate(canonical) if canonical else None
        return hit

    def canonical_id(self, value: str) -> str:
        return self._sandbox._canonical_id(value) or (id18(value) if len(value) == 15 else value)


class SalesforceSandbox:
    """In-memory Salesforce org behind a WSGI app; thread-safe (one re-entrant lock)."""

    def __init__(
        self,
        client_id: str = "sandbox-client-id",
        client_secret: str = "sandbox-client-secret",
        *,
        api_version: str = "59.0",
        daily_api_limit: int | None = 100_000,
        session_lifetime_s: float | None = None,
        daily_bulk_batch_limit: int = 15_000,
        daily_bulk_query_job_limit: int = 10_000,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.api_version = api_version
        self.daily_api_limit = daily_api_limit
        self.session_lifetime_s = session_lifetime_s
        #: Set by whoever serves the app; returned in OAuth token responses.
        self.instance_url = "https://127.0.0.1"
        #: username → password (+ security token) accepted by the ``password`` grant.
        self.logins: dict[str, str] = {}
        #: Server-side query cursors: idle expiry and how many stay open (oldest evicted).
        self.query_locator_ttl_s = 15 * 60.0
        self.max_open_cursors = 200
        #: How far back getUpdated / getDeleted may start (documented 30 / 15 days).
        self.updated_lookback = timedelta(days=30)
        self.deleted_lookback = timedelta(days=15)
        #: Wall clock of the org (override to simulate time passing).
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        #: Fault injection: record id → message. An update of such a record (REST PATCH,
        #: Collections, Bulk ingest, upsert matching it) fails for that record only with
        #: FIELD_CUSTOM_VALIDATION_EXCEPTION, as an active validation rule would.
        self.reject_record_ids: dict[str, str] = {}

        self._lock = threading.RLock()
        # One dict per record and nothing else per record: the sObject of an id is its key
        # prefix, and 15-character or wrong-case ids are canonicalised through the checksum.
        self._data: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in SOBJECTS}
        #: Loaded ids whose checksum does not match (lower-case and 15-char form → stored id).
        self._irregular_ids: dict[str, str] = {}
        #: Lazily built lookup indexes: sObject → field → casefolded value → ids (ordered set).
        self._value_indexes: dict[str, dict[str, dict[str, dict[str, None]]]] = {}
        self._deleted_at: dict[str, datetime] = {}
        self._serial = 0
        self._sessions: dict[str, _Session] = {}
        self._api_calls: deque[float] = deque()
        self._counts: Counter[str] = Counter()
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self._rollups_dirty = False
        self._lookup = _Lookup(self)
        self._bulk = BulkJobs(
            self, batch_limit=daily_bulk_batch_limit, query_job_limit=daily_bulk_query_job_limit
        )

        self.org_id = id18("00D5g000004SmPL")
        self.integration_user_id = make_id("005", 1, pod="5g")
        now = self._now()
        self.load(
            "User",
            [
                {
                    "Id": self.integration_user_id,
                    "Username": "leadsync.integration@sandbox.example.com",
                    "FirstName": "LeadSync",
                    "LastName": "Integration",
                    "Alias": "lsync",
                    "Email": "leadsync.integration@sandbox.example.com",
                    "TimeZoneSidKey": "Asia/Tokyo",
                    "LocaleSidKey": "ja_JP",
                    "LanguageLocaleKey": "ja",
                    "EmailEncodingKey": "UTF-8",
                    "ProfileId": id18("00e5g000000abcd"),
                    "CreatedDate": now,
                    "LastModifiedDate": now,
                    "SystemModstamp": now,
                }
            ],
        )

    # =========================================================================================
    # Public inspection / seeding surface

    def load(self, sobject: str, records: list[dict]) -> None:
        """Seed records (docs/sandbox-data.md load format); ids are kept, nothing is validated
        beyond field names and value types. Derived fields (Name, roll-ups...) are filled in."""
        obj = self._object_or_raise(sobject)
        now = self._now()
        # The lock is taken per slice so seeding a million records does not stall requests.
        for start in range(0, len(records), _LOAD_SLICE):
            with self._lock:
                for raw in records[start : start + _LOAD_SLICE]:
                    rec = self._coerce_loaded(obj, raw, now)
                    self._store(obj, rec)
                    self._derive(obj, rec, None)
                    if rec["IsDeleted"]:
                        self._deleted_at[rec["Id"]] = rec["SystemModstamp"]
                self._rollups_dirty = True

    def records(self, sobject: str) -> list[dict]:
        """Live (non-deleted) records of ``sobject`` as flat dict copies."""
        obj = self._object_or_raise(sobject)
        with self._lock:
            self._ensure_rollups()
            return [dict(r) for r in self._data[obj.name].values() if not r.get("IsDeleted")]

    def call_counts(self) -> dict[str, int]:
        """Requests per endpoint family (query, query_more, collections, sobject, describe,
        oauth, limits, versions, resources, updated, deleted, bulk_ingest, bulk_query, other)
        and ``total``."""
        with self._lock:
            counts = dict(self._counts)
        counts["total"] = sum(counts.values())
        return counts

    def reset_call_counts(self) -> None:
        with self._lock:
            self._counts.clear()

    def revoke_sessions(self) -> None:
        """Sandbox hook: invalidate every issued access token (forces a re-login)."""
        with self._lock:
            self._sessions.clear()

    def convert_lead(
        self,
        lead_id: str,
        *,
        contact_id: str | None = None,
        account_id: str | None = None,
        opportunity_id: str | None = None,
    ) -> dict:
        """Sandbox-only hook for lead conversion (not a REST resource in Salesforce).

        Marks the lead converted (IsConverted, ConvertedDate, Status "Closed - Converted",
        Converted*Id), creates the Account and Contact from the lead unless given (an existing
        contact only gets its blank fields filled), moves the lead's campaign memberships and
        activities to the contact, and returns the converted lead.
        """
        with self._lock:
            lead = self._live_record("Lead", lead_id)
            if lead.get("IsConverted"):
                raise ValueError(f"lead {lead_id} is already converted")
            now = self._now()
            user = self.integration_user_id
            touched: list[tuple[SObjectDef, dict[str, Any]]] = []

            contact = self._live_record("Contact", contact_id) if contact_id else None
            if account_id:
                account = self._live_record("Account", account_id)
            elif contact is not None and contact.get("AccountId"):
                account = self._live_record("Account", contact["AccountId"])
            else:
                account = self._new_internal(
                    "Account",
                    {
                        "Name": lead.get("Company") or lead.get("LastName"),
                        "Industry": lead.get("Industry"),
                        "AnnualRevenue": lead.get("AnnualRevenue"),
                        "NumberOfEmployees": lead.get("NumberOfEmployees"),
                        "Phone": lead.get("Phone"),
                        "Website": lead.get("Website"),
                        "BillingStreet": lead.get("Street"),
                        "BillingCity": lead.get("City"),
                        "BillingState": lead.get("State"),
                        "BillingPostalCode": lead.get("PostalCode"),
                        "BillingCountry": lead.get("Country"),
                        "AccountSource": lead.get("LeadSource"),
                        "OwnerId": lead.get("OwnerId") or user,
                    },
                    now,
                )
            mapped = {
                "AccountId": account["Id"],
                "Salutation": lead.get("Salutation"),
                "FirstName": lead.get("FirstName"),
                "LastName": lead.get("LastName"),
                "Title": lead.get("Title"),
                "Email": lead.get("Email"),
                "Phone": lead.get("Phone"),
                "MobilePhone": lead.get("MobilePhone"),
                "LeadSource": lead.get("LeadSource"),
                "MailingStreet": lead.get("Street"),
                "MailingCity": lead.get("City"),
                "MailingState": lead.get("State"),
                "MailingPostalCode": lead.get("PostalCode"),
                "MailingCountry": lead.get("Country"),
                "Description": lead.get("Description"),
                "HasOptedOutOfEmail": lead.get("HasOptedOutOfEmail"),
                "DoNotCall": lead.get("DoNotCall"),
                **{k: v for k, v in lead.items() if k.startswith("LeadSync_")},
            }
            if contact is None:
                owner = lead.get("OwnerId")
                if not owner or not owner.startswith("005"):
                    owner = user  # a queue cannot own a contact
                contact = self._new_internal("Contact", {**mapped, "OwnerId": owner}, now)
            else:
                for key, value in mapped.items():
                    if contact.get(key) in (None, False) and value not in (None, False):
                        contact[key] = value
                touched.append((SOBJECTS["Contact"], contact))
            if opportunity_id:
                self._live_record("Opportunity", opportunity_id)
                opportunity_id = self._canonical_id(opportunity_id)

            lead.update(
                {
                    "IsConverted": True,
                    "ConvertedDate": now.date(),
                    "Status": CONVERTED_LEAD_STATUS,
                    "ConvertedAccountId": account["Id"],
                    "ConvertedContactId": contact["Id"],
                    "ConvertedOpportunityId": opportunity_id,
                }
            )
            touched.append((SOBJECTS["Lead"], lead))
            for member in self._data["CampaignMember"].values():
                if member.get("LeadId") == lead["Id"] and not member.get("IsDeleted"):
                    member["ContactId"] = contact["Id"]
                    touched.append((SOBJECTS["CampaignMember"], member))
            for activity in ("Task", "Event"):
                for rec in self._data[activity].values():
                    if rec.get("WhoId") == lead["Id"] and not rec.get("IsDeleted"):
                        rec["WhoId"] = contact["Id"]
                        if not rec.get("WhatId"):
                            rec["WhatId"] = opportunity_id or account["Id"]
                        touched.append((SOBJECTS[activity], rec))
            for obj, rec in touched:
                self._stamp(rec, now, user)
                self._derive(obj, rec, None)
            self._rollups_dirty = True
            return dict(lead)

    # =========================================================================================
    # WSGI

    def __call__(self, environ: WsgiEnviron, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._dispatch(request)
        except ApiError as exc:
            response = self._json(exc.status, exc.body(), request)
        except Exception:  # pragma: no cover - a bug in the emulator, reported like Salesforce
            log.exception("salesforce sandbox crashed on %s %s", request.method, request.path)
            response = self._json(
                500,
                [
                    {
                        "message": "An unexpected error occurred. Please include this ErrorId if "
                        "you contact support: 0000000000-00000 (0)",
                        "errorCode": "UNKNOWN_EXCEPTION",
                    }
                ],
                request,
            )
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        path = self._raw_path(request)
        if path.endswith("/services/oauth2/token"):
            self._count("oauth")
            return self._oauth_token(request)
        if path.rstrip("/") == "/services/data":
            self._count("versions")
            if request.method not in {"GET", "HEAD"}:
                raise self._method_not_allowed(request, "GET,HEAD")
            return self._json(200, self._versions(), request)
        match = _VERSION_RE.match(path)
        if match is None:
            self._count("other")
            raise _not_found()
        version, rest = match.group(1), match.group(2) or ""
        segments = [unquote(s) for s in rest.strip("/").split("/")] if rest.strip("/") else []
        family = self._family(segments, request.method)
        self._count(family)
        try:
            response = self._api_request(request, version, segments)
        except ApiError as exc:
            response = self._json(exc.status, exc.body(), request)
        response.headers["Sforce-Limit-Info"] = self._limit_info()
        return response

    def _api_request(self, request: Request, version: str, segments: list[str]) -> Response:
        user = self._authenticate(request)
        if float(version) > float(self.api_version) or float(version) < 20.0:
            raise _not_found()
        self._consume_api_request()
        head = segments[0] if segments else ""
        if not segments:
            return self._json(200, self._resources(version), request)
        if head == "limits" and len(segments) == 1:
            return self._json(200, self._limits(), request)
        if head in {"query", "queryAll"}:
            self._allow(request, "GET")
            if len(segments) == 1:
                return self._query(request, version, include_deleted=head == "queryAll")
            if len(segments) == 2:
                return self._query_more(request, version, segments[1])
            raise _not_found()
        if head == "sobjects":
            return self._sobjects(request, version, segments[1:], user)
        if head == "composite" and len(segments) >= 2 and segments[1] == "sobjects":
            return self._collections(request, version, segments[2:], user)
        if head == "jobs":
            try:
                return self._bulk.handle(request, version, segments[1:], user)
            except BulkApiError as exc:
                raise ApiError(exc.status, exc.error_code, exc.message) from None
        raise _not_found()

    @staticmethod
    def _family(segments: list[str], method: str) -> str:
        if not segments:
            return "resources"
        head = segments[0]
        if head == "limits":
            return "limits"
        if head in {"query", "queryAll"}:
            return "query" if len(segments) == 1 else "query_more"
        if head == "sobjects":
            if len(segments) == 1:
                return "describe"
            if len(segments) == 2 and method == "GET":
                return "describe"
            if len(segments) == 3 and segments[2] in {"describe", "updated", "deleted"}:
                return "describe" if segments[2] == "describe" else segments[2]
            return "sobject"
        if head == "composite" and len(segments) >= 2 and segments[1] == "sobjects":
            return "collections"
        if head == "jobs" and len(segments) >= 2 and segments[1] in {"ingest", "query"}:
            return f"bulk_{segments[1]}"
        return "other"

    @staticmethod
    def _raw_path(request: Request) -> str:
        # Use the undecoded path so percent-encoded slashes in external ids survive routing.
        raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
        if raw and raw.startswith("/"):
            return raw.split("?", 1)[0]
        return quote(request.path, safe="/")

    # -- responses

    @staticmethod
    def _json(
        status: int, body: JsonBody, request: Request | None = None, *, bulky: bool = False
    ) -> Response:
        # simple-salesforce sends X-PrettyPrint: 1 on every request. Pretty output needs the
        # pure-Python encoder (the C one only does compact JSON), 4x slower: query pages
        # (``bulky``) stay compact, which no JSON client can tell apart.
        pretty = not bulky and request is not None and request.headers.get("X-PrettyPrint") == "1"
        text = json.dumps(body, ensure_ascii=False, indent=2 if pretty else None)
        return Response(text, status=status, content_type="application/json;charset=UTF-8")

    @staticmethod
    def _method_not_allowed(request: Request, allowed: str) -> ApiError:
        return ApiError(
            405,
            "METHOD_NOT_ALLOWED",
            f"HTTP Method '{request.method}' not allowed. Allowed are {allowed}",
        )

    def _allow(self, request: Request, *methods: str) -> None:
        if request.method not in methods:
            raise self._method_not_allowed(request, ",".join(methods))

    def _count(self, family: str) -> None:
        with self._lock:
            self._counts[family] += 1

    # =========================================================================================
    # OAuth and sessions

    def _oauth_token(self, request: Request) -> Response:
        if request.method != "POST":
            return self._oauth_error("invalid_request", "must use HTTP POST")
        form = request.form
        client_id = form.get("client_id")
        client_secret = form.get("client_secret")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                decoded = base64.b64decode(auth[6:]).decode()
                client_id, _, client_secret = decoded.partition(":")
            except (ValueError, UnicodeDecodeError):
                return self._oauth_error("invalid_client", "invalid client credentials")
        grant = form.get("grant_type")
        if grant not in {"client_credentials", "password"}:
            return self._oauth_error("unsupported_grant_type", "grant type not supported")
        # Salesforce's texts: unknown consumer key vs. wrong secret are different errors.
        if client_id != self.client_id:
            return self._oauth_error("invalid_client_id", "client identifier invalid")
        if not hmac.compare_digest(client_secret or "", self.client_secret):
            return self._oauth_error("invalid_client", "invalid client credentials")
        user_id = self.integration_user_id
        if grant == "password":
            username = form.get("username") or ""
            password = form.get("password") or ""
            expected = self.logins.get(username)
            if expected is None or not hmac.compare_digest(password, expected):
                return self._oauth_error("invalid_grant", "authentication failure")
            user_id = self._user_by_username(username) or user_id
        token = f"{self.org_id[:15]}!{secrets.token_urlsafe(72)}"
        issued_at = str(int(time.time() * 1000))
        identity = f"{self.instance_url}/id/{self.org_id}/{user_id}"
        signature = base64.b64encode(
            hmac.new(
                self.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256
            ).digest()
        ).decode()
        with self._lock:
            self._sessions[token] = _Session(user_id, time.monotonic())
        body: dict[str, Any] = {"access_token": token, "signature": signature}
        if grant == "client_credentials":
            body["scope"] = "api"
        body.update(
            {
                "instance_url": self.instance_url,
                "id": identity,
                "token_type": "Bearer",
                "issued_at": issued_at,
            }
        )
        return self._json(200, body)

    def _oauth_error(self, error: str, description: str) -> Response:
        return self._json(400, {"error": error, "error_description": description})

    def _user_by_username(self, username: str) -> str | None:
        with self._lock:
            for user in self._data["User"].values():
                if (user.get("Username") or "").lower() == username.lower():
                    return user["Id"]
        return None

    def _authenticate(self, request: Request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        invalid = ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")
        if scheme.lower() not in {"bearer", "oauth"} or not token:
            raise invalid
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(token.strip())
            if session is None:
                raise invalid
            lifetime = self.session_lifetime_s
            if lifetime is not None:
                idle = now - session.refreshed
                if idle > lifetime:
                    del self._sessions[token.strip()]
                    raise invalid
                # Salesforce extends a session used after half its timeout has elapsed.
                if idle > lifetime / 2:
                    session.refreshed = now
            return session.user_id

    # -- API request limit

    def _api_used(self) -> int:
        horizon = time.monotonic() - _ROLLING_WINDOW_S
        calls = self._api_calls
        while calls and calls[0] < horizon:
            calls.popleft()
        return len(calls)

    def _consume_api_request(self) -> None:
        with self._lock:
            used = self._api_used()
            if self.daily_api_limit is not None and used >= self.daily_api_limit:
                raise ApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            self._api_calls.append(time.monotonic())

    def _limit_info(self) -> str:
        with self._lock:
            used = self._api_used()
        total = self.daily_api_limit if self.daily_api_limit is not None else UNLIMITED_REPORTED
        return f"api-usage={used}/{total}"

    # =========================================================================================
    # Versions, resources, limits

    def _versions(self) -> list[dict[str, str]]:
        top = int(float(self.api_version))
        return [
            {"label": _version_label(v), "url": f"/services/data/v{v}.0", "version": f"{v}.0"}
            for v in range(20, top + 1)
        ]

    def _resources(self, version: str) -> dict[str, str]:
        base = f"/services/data/v{version}"
        names = [
            "tooling", "metadata", "eclair", "folders", "prechatForms", "jsonxform", "chatter",
            "tabs", "appMenu", "quickActions", "queryAll", "commerce", "wave", "iot", "analytics",
            "search", "composite", "parameterizedSearch", "fingerprint", "theme", "nouns",
            "event", "serviceTemplates", "recent", "connect", "licensing", "limits", "process",
            "dedupe", "async-queries", "query", "match", "emailConnect", "compactLayouts",
            "knowledgeManagement", "sobjects", "actions", "support", "jobs",
        ]  # fmt: skip
        resources = {name: f"{base}/{name}" for name in names}
        resources["identity"] = f"{self.instance_url}/id/{self.org_id}/{self.integration_user_id}"
        return resources

    def _limits(self) -> dict[str, dict[str, int]]:
        with self._lock:
            used = self._api_used()
        api_max = self.daily_api_limit if self.daily_api_limit is not None else UNLIMITED_REPORTED

        def limit(maximum: int, used_: int = 0) -> dict[str, int]:
            return {"Max": maximum, "Remaining": max(0, maximum - used_)}

        return {
            "ConcurrentAsyncGetReportInstances": limit(200),
            "ConcurrentSyncReportRuns": limit(20),
            "DailyApiRequests": limit(api_max, used),
            "DailyAsyncApexExecutions": limit(250000),
            # Bulk API 2.0 ingest consumes one batch per 10,000 records; query jobs count apart.
            "DailyBulkApiBatches": limit(self._bulk.batch_limit, self._bulk.batches_used()),
            "DailyBulkV2QueryFileStorageMB": limit(976562),
            "DailyBulkV2QueryJobs": limit(self._bulk.query_job_limit, self._bulk.query_jobs_used()),
            "DailyDurableGenericStreamingApiEvents": limit(10000),
            "DailyDurableStreamingApiEvents": limit(10000),
            "DailyGenericStreamingApiEvents": limit(10000),
            "DailyStreamingApiEvents": limit(10000),
            "DailyWorkflowEmails": limit(2000),
            "DataStorageMB": limit(1024, 5),
            "FileStorageMB": limit(20480),
            "HourlyAsyncReportRuns": limit(1200),
            "HourlyDashboardRefreshes": limit(200),
            "HourlyODataCallout": limit(10000),
            "HourlySyncReportRuns": limit(500),
            "MassEmail": limit(5000),
            "SingleEmail": limit(5000),
        }

    # =========================================================================================
    # SOQL

    def _query(self, request: Request, version: str, *, include_deleted: bool) -> Response:
        text = request.args.get("q")
        if not text:
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        batch = self._batch_size(request) or DEFAULT_QUERY_BATCH
        plan, candidates = self._compile_for_read(text, version)
        if plan.count_only or plan.aggregate_reader is not None:
            keep = None if include_deleted else _visible
            total, rows = plan.execute(r for r in candidates if keep is None or keep(r))
            return self._json(200, {"totalSize": total, "done": True, "records": rows}, request)
        matches = self._select(plan, candidates, include_deleted=include_deleted)
        total = len(matches)
        with self._lock:
            # Project under the lock so no row shows a write half-applied; encode outside it.
            records = [plan.projector(r) for r in matches[:batch]]
            locator = self._open_cursor(matches, plan.projector, total, batch)
        if locator is None:
            body = {"totalSize": total, "done": True, "records": records}
            return self._json(200, body, request, bulky=True)
        body = {
            "totalSize": total,
            "done": False,
            "nextRecordsUrl": f"/services/data/v{version}/query/{locator}-{batch}",
            "records": records,
        }
        return self._json(200, body, request, bulky=True)

    def _compile_for_read(self, text: str, version: str) -> tuple[Plan, list[dict[str, Any]]]:
        """Compile a SOQL query and take a snapshot of references to its object's records.

        The filter and sort then run outside the lock, so a scan of a million rows does not
        stall concurrent writes (a record written meanwhile is matched on its old or its new
        values, as with Salesforce's read-committed queries). Rows are projected under the
        lock, so a returned row never shows a write half-applied.
        """
        with self._lock:
            self._ensure_rollups()
            try:
                plan = compile_query(text, self._lookup, version, self._now())
            except SoqlError as exc:
                raise ApiError(400, exc.error_code, exc.message) from None
            return plan, list(self._data[plan.sobject.name].values())

    @staticmethod
    def _select(
        plan: Plan, candidates: list[dict[str, Any]], *, include_deleted: bool
    ) -> list[Mapping[str, Any]]:
        # query excludes the recycle bin and archived activities; queryAll shows both.
        return plan.select(candidates, None if include_deleted else _visible)

    def _query_more(self, request: Request, version: str, token: str) -> Response:
        locator, _, offset_text = token.rpartition("-")
        invalid = ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        if not locator or not offset_text.isdigit():
            raise invalid
        offset = int(offset_text)
        now = time.monotonic()
        with self._lock:
            self._expire_cursors(now)
            cursor = self._cursors.get(locator)
            if cursor is None or offset > len(cursor.rows):
                raise invalid
            cursor.touched = now
            self._cursors.move_to_end(locator)
            batch = self._batch_size(request) or cursor.batch
            project = cursor.project
            records = [project(r) for r in cursor.rows[offset : offset + batch]]
            end = offset + len(records)
            done = end >= len(cursor.rows)
            total = cursor.total
        body: dict[str, Any] = {"totalSize": total, "done": done}
        if not done:
            body["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{end}"
        body["records"] = records
        return self._json(200, body, request, bulky=True)

    @staticmethod
    def _batch_size(request: Request) -> int | None:
        header = request.headers.get("Sforce-Query-Options", "")
        match = re.search(r"batchSize\s*=\s*(\d+)", header, re.IGNORECASE)
        if not match:
            return None
        # Documented range 200-2,000; Salesforce treats the value as a hint and clamps it.
        return max(MIN_QUERY_BATCH, min(DEFAULT_QUERY_BATCH, int(match.group(1))))

    def _open_cursor(
        self,
        rows: list[Mapping[str, Any]],
        project: Callable[[Mapping[str, Any]], dict[str, Any]],
        total: int,
        batch: int,
    ) -> str | None:
        """Keep the rest of a result for queryMore; None when one page holds everything."""
        if len(rows) <= batch:
            return None
        now = time.monotonic()
        self._expire_cursors(now)
        while len(self._cursors) >= self.max_open_cursors:
            self._cursors.popitem(last=False)
        self._serial += 1
        locator = make_id("01g", self._serial, pod="Dy")
        self._cursors[locator] = _Cursor(rows, project, total, batch, now)
        return locator

    def _expire_cursors(self, now: float) -> None:
        stale = [k for k, c in self._cursors.items() if now - c.touched > self.query_locator_ttl_s]
        for key in stale:
            del self._cursors[key]

    # =========================================================================================
    # sObject resources

    def _sobjects(self, request: Request, version: str, segments: list[str], user: str) -> Response:
        if not segments:
            self._allow(request, "GET")
            return self._json(200, self._global_describe(version), request)
        obj = sobject(segments[0])
        if obj is None:
            raise _not_found()
        rest = segments[1:]
        if not rest:
            if request.method == "GET":
                body = {"objectDescribe": self._describe_entry(obj, version), "recentItems": []}
                return self._json(200, body, request)
            if request.method == "POST":
                return self._create_one(request, obj, user)
            raise self._method_not_allowed(request, "GET,HEAD,POST")
        if len(rest) == 1 and rest[0] == "describe":
            self._allow(request, "GET")
            return self._json(200, self._describe(obj, version), request)
        if len(rest) == 1 and rest[0] in {"updated", "deleted"}:
            self._allow(request, "GET")
            if rest[0] == "updated":
                return self._json(200, self._get_updated(obj, request), request)
            return self._json(200, self._get_deleted(obj, request), request)
        if len(rest) == 1:
            return self._record_by_id(request, version, obj, rest[0], user)
        if len(rest) == 2:
            return self._record_by_external_id(request, version, obj, rest[0], rest[1], user)
        raise _not_found()

    def _record_by_id(
        self, request: Request, version: str, obj: SObjectDef, record_id: str, user: str
    ) -> Response:
        canonical = self._canonical_id(record_id) if is_id(record_id) else None
        if not (is_id(record_id) and (canonical or record_id)[:3] == obj.key_prefix):
            # Salesforce reads a non-id segment as an external id field name.
            raise ApiError(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {record_id}",
            )
        if request.method == "GET":
            with self._lock:
                self._ensure_rollups()
                rec = self._find_for_rest(obj, record_id)
                return self._json(200, self._full_record(obj, rec, version, request), request)
        if request.method == "PATCH":
            body = self._body_object(request)
            with self._lock:
                rec = self._find_for_rest(obj, record_id)
                try:
                    prepared = self._prepare_update(obj, rec, body, user)
                except RecordError as exc:
                    raise exc.api_error() from None
                except _ParseError as exc:
                    raise _json_parser_error(str(exc)) from None
                self._commit(prepared, user)
            return Response(status=204)
        if request.method == "DELETE":
            with self._lock:
                rec = self._find_for_rest(obj, record_id)
                self._commit(_Prepared(obj, rec, {}, "delete"), user)
            return Response(status=204)
        raise self._method_not_allowed(request, "GET,HEAD,PATCH,DELETE")

    def _record_by_external_id(
        self,
        request: Request,
        version: str,
        obj: SObjectDef,
        field_name: str,
        value: str,
        user: str,
    ) -> Response:
        ext = obj.field(field_name)
        # Upserts need an External ID field (or Id); plain GETs also resolve idLookup and custom
        # fields, as observed on real orgs (simple-salesforce issue #694).
        lookup_only = ext is not None and (ext.id_lookup or ext.custom)
        if ext is None or not (
            ext.external_id or ext.name == "Id" or (lookup_only and request.method == "GET")
        ):
            raise ApiError(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {field_name}",
            )
        with self._lock:
            matches = self._match_external(obj, ext, value)
            if len(matches) > 1:
                urls = [f"/services/data/v{version}/sobjects/{obj.name}/{m['Id']}" for m in matches]
                return self._json(300, urls, request)
            if request.method == "GET":
                if not matches:
                    raise _not_found()
                return self._json(
                    200, self._full_record(obj, matches[0], version, request), request
                )
            if request.method == "DELETE":
                if not matches:
                    raise _not_found()
                self._commit(_Prepared(obj, matches[0], {}, "delete"), user)
                return Response(status=204)
            if request.method != "PATCH":
                raise self._method_not_allowed(request, "GET,HEAD,PATCH,DELETE")
            body = self._body_object(request)
            try:
                if matches:
                    prepared = self._prepare_update(obj, matches[0], body, user)
                else:
                    if request.args.get("updateOnly", "").lower() == "true":
                        raise _not_found()
                    seeded = dict(body)
                    if ext.name != "Id":
                        seeded[ext.name] = value
                    prepared = self._prepare_insert(obj, seeded, user)
            except RecordError as exc:
                raise exc.api_error() from None
            except _ParseError as exc:
                raise _json_parser_error(str(exc)) from None
            self._commit(prepared, user)
        result = {
            "id": prepared.record["Id"],
            "success": True,
            "errors": [],
            "created": not matches,
        }
        return self._json(201 if not matches else 200, result, request)

    def _create_one(self, request: Request, obj: SObjectDef, user: str) -> Response:
        body = self._body_object(request)
        with self._lock:
            try:
                if "Id" in body or "id" in body:
                    raise RecordError(
                        "INVALID_FIELD_FOR_INSERT_UPDATE",
                        "Unable to create/update fields: Id. Please check the security settings "
                        "of this field and verify that it is read/write for your profile or "
                        "permission set.",
                        ["Id"],
                    )
                prepared = self._prepare_insert(obj, body, user)
            except RecordError as exc:
                raise exc.api_error() from None
            except _ParseError as exc:
                raise _json_parser_error(str(exc)) from None
            self._commit(prepared, user)
        return self._json(
            201, {"id": prepared.record["Id"], "success": True, "errors": []}, request
        )

    def _find_for_rest(self, obj: SObjectDef, record_id: str) -> dict[str, Any]:
        canonical = self._canonical_id(record_id)
        hit = self._locate(canonical) if canonical else None
        if hit is None or hit[0] != obj.name:
            raise _not_found()
        if hit[1].get("IsDeleted"):
            raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
        return hit[1]

    def _full_record(
        self, obj: SObjectDef, rec: Mapping[str, Any], version: str, request: Request
    ) -> dict[str, Any]:
        wanted = request.args.get("fields")
        fields: list[FieldDef]
        if wanted:
            fields = []
            for name in wanted.split(","):
                f = obj.field(name.strip())
                if f is None:
                    raise ApiError(
                        400,
                        "INVALID_FIELD",
                        f"No such column '{name.strip()}' on entity '{obj.name}'. If you are "
                        "attempting to use a custom field, be sure to append the '__c' after "
                        "the custom field name. " + _WSDL_HINT,
                    )
                fields.append(f)
        else:
            fields = list(obj.fields)
        return self._shape(obj, rec, version, fields)

    @staticmethod
    def _shape(
        obj: SObjectDef, rec: Mapping[str, Any], version: str, fields: Iterable[FieldDef]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attributes": {
                "type": obj.name,
                "url": f"/services/data/v{version}/sobjects/{obj.name}/{rec['Id']}",
            }
        }
        for f in fields:
            out[f.name] = (
                compound_address(f, rec) if f.type == "address" else to_wire(f, rec.get(f.name))
            )
        return out

    def _match_external(self, obj: SObjectDef, ext: FieldDef, value: str) -> list[dict[str, Any]]:
        if ext.name == "Id":
            canonical = self._canonical_id(value) if is_id(value) else None
            hit = self._locate(canonical) if canonical else None
            if hit and hit[0] == obj.name and not hit[1].get("IsDeleted"):
                return [hit[1]]
            return []
        wanted = value.casefold()  # external ids are case-insensitive unless flagged otherwise
        ids = self._value_index(obj, ext.name).get(wanted)
        if not ids:
            return []
        records = self._data[obj.name]
        matches: list[dict[str, Any]] = []
        stale: list[str] = []
        for record_id in ids:
            rec = records.get(record_id)
            current = rec.get(ext.name) if rec is not None else None
            if rec is None or not isinstance(current, str) or current.casefold() != wanted:
                stale.append(record_id)  # the value changed since it was indexed
            elif not rec.get("IsDeleted"):
                matches.append(rec)
        for record_id in stale:
            del ids[record_id]
        return matches

    def _value_index(self, obj: SObjectDef, field_name: str) -> dict[str, dict[str, None]]:
        """casefolded value → ids holding it, built on first use and kept current by
        :meth:`_derive` (upserts by external id at 1,000,000 records must not scan)."""
        per_object = self._value_indexes.setdefault(obj.name, {})
        index = per_object.get(field_name)
        if index is None:
            index = {}
            for record_id, rec in self._data[obj.name].items():
                current = rec.get(field_name)
                if isinstance(current, str):
                    index.setdefault(current.casefold(), {})[record_id] = None
            per_object[field_name] = index
        return index

    # -- describe

    def _describe_entry(self, obj: SObjectDef, version: str) -> dict[str, Any]:
        base = f"/services/data/v{version}/sobjects/{obj.name}"
        return {
            "activateable": False,
            "associateEntityType": None,
            "associateParentEntity": None,
            "createable": obj.createable,
            "custom": False,
            "customSetting": False,
            "deepCloneable": False,
            "deletable": obj.deletable,
            "deprecatedAndHidden": False,
            "feedEnabled": obj.name in {"Account", "Contact", "Lead", "Opportunity", "User"},
            "hasSubtypes": False,
            "isInterface": False,
            "isSubtype": False,
            "keyPrefix": obj.key_prefix,
            "label": obj.label,
            "labelPlural": obj.label_plural,
            "layoutable": True,
            "mergeable": obj.name in {"Account", "Contact", "Lead"},
            "mruEnabled": True,
            "name": obj.name,
            "queryable": True,
            "replicateable": True,
            "retrieveable": True,
            "searchable": obj.name != "CampaignMember",
            "triggerable": True,
            "undeletable": obj.deletable,
            "updateable": obj.updateable,
            "urls": {
                "compactLayouts": f"{base}/describe/compactLayouts",
                "rowTemplate": f"{base}/{{ID}}",
                "approvalLayouts": f"{base}/describe/approvalLayouts",
                "uiDetailTemplate": f"{self.instance_url}/{{ID}}",
                "uiEditTemplate": f"{self.instance_url}/{{ID}}/e",
                "defaultValues": f"{base}/defaultValues?recordTypeId&fields",
                "listviews": f"{base}/listviews",
                "describe": f"{base}/describe",
                "uiNewRecord": f"{self.instance_url}/{obj.key_prefix}/e",
                "quickActions": f"{base}/quickActions",
                "layouts": f"{base}/describe/layouts",
                "sobject": base,
            },
        }

    def _global_describe(self, version: str) -> dict[str, Any]:
        return {
            "encoding": "UTF-8",
            "maxBatchSize": 200,
            "sobjects": [self._describe_entry(o, version) for o in SOBJECTS.values()],
        }

    def _describe(self, obj: SObjectDef, version: str) -> dict[str, Any]:
        entry = self._describe_entry(obj, version)
        master_rt = id18("012000000000000")
        entry.update(
            {
                "actionOverrides": [],
                "childRelationships": child_relationships(obj.name),
                "compactLayoutable": True,
                "fields": [f.describe() for f in obj.fields],
                "listviewable": None,
                "lookupLayoutable": None,
                "namedLayoutInfos": [],
                "networkScopeFieldName": None,
                "recordTypeInfos": [
                    {
                        "active": True,
                        "available": True,
                        "defaultRecordTypeMapping": True,
                        "developerName": "Master",
                        "master": True,
                        "name": "Master",
                        "recordTypeId": master_rt,
                        "urls": {
                            "layout": f"/services/data/v{version}/sobjects/{obj.name}"
                            f"/describe/layouts/{master_rt}"
                        },
                    }
                ],
                "searchLayoutable": True,
                "sobjectDescribeOption": "FULL",
                "supportedScopes": [
                    {"label": "All " + obj.label_plural.lower(), "name": "everything"},
                    {"label": "My " + obj.label_plural.lower(), "name": "mine"},
                ],
            }
        )
        return dict(sorted(entry.items()))

    # -- getUpdated / getDeleted

    def _replication_window(
        self, request: Request, lookback: timedelta
    ) -> tuple[datetime, datetime]:
        def arg(name: str) -> datetime:
            raw = request.args.get(name)
            if not raw:
                raise ApiError(400, "MISSING_ARGUMENT", f"Missing the required parameter: {name}")
            try:
                # A literal '+' in an unencoded query string arrives as a space.
                return parse_datetime(raw.replace(" ", "+"))
            except ValueError:
                raise ApiError(
                    400, "INVALID_REPLICATION_DATE", f"Unable to parse {name}: {raw}"
                ) from None

        # Salesforce ignores the seconds of both bounds.
        start = _trunc_minute(arg("start"))
        end = _trunc_minute(arg("end"))
        now = self._now()
        if end - start < timedelta(minutes=1):
            raise ApiError(
                400,
                "INVALID_REPLICATION_DATE",
                "startDate must chronologically precede endDate by more than one minute",
            )
        if start < now - lookback:
            raise ApiError(
                400,
                "INVALID_REPLICATION_DATE",
                f"startDate cannot be more than {lookback.days} days ago",
            )
        return start, min(end, _trunc_minute(now))

    def _get_updated(self, obj: SObjectDef, request: Request) -> dict[str, Any]:
        start, end = self._replication_window(request, self.updated_lookback)
        with self._lock:
            ids = [
                r["Id"]
                for r in self._data[obj.name].values()
                if not r.get("IsDeleted") and start <= r["SystemModstamp"] < end
            ]
        if len(ids) > 600_000:
            raise ApiError(400, "EXCEEDED_ID_LIMIT", "ID limit exceeded")
        return {"ids": ids, "latestDateCovered": format_datetime(end)}

    def _get_deleted(self, obj: SObjectDef, request: Request) -> dict[str, Any]:
        start, end = self._replication_window(request, self.deleted_lookback)
        with self._lock:
            deleted = [
                (rid, when)
                for rid, when in self._deleted_at.items()
                if PREFIX_TO_SOBJECT.get(rid[:3]) == obj.name
            ]
        inside = sorted((w, rid) for rid, w in deleted if start <= w < end)
        earliest = min((w for _, w in deleted), default=end)
        return {
            "deletedRecords": [
                {"id": rid, "deletedDate": format_datetime(when)} for when, rid in inside
            ],
            "earliestDateAvailable": format_datetime(_trunc_minute(earliest)),
            "latestDateCovered": format_datetime(end),
        }

    # =========================================================================================
    # sObject Collections

    def _collections(
        self, request: Request, version: str, segments: list[str], user: str
    ) -> Response:
        if not segments:
            if request.method == "DELETE":
                return self._collection_delete(request, user)
            if request.method not in {"POST", "PATCH"}:
                raise self._method_not_allowed(request, "POST,PATCH,DELETE")
            return self._collection_save(request, user, upsert_field=None, upsert_obj=None)
        obj = sobject(segments[0])
        if obj is None:
            raise _not_found()
        if len(segments) == 1:
            self._allow(request, "GET", "POST")
            return self._collection_retrieve(request, version, obj)
        if len(segments) == 2:
            self._allow(request, "PATCH")
            ext = obj.field(segments[1])
            if ext is None or not (ext.external_id or ext.name == "Id"):
                raise ApiError(
                    400,
                    "INVALID_FIELD",
                    f"Field name provided, {segments[1]} is not an External ID or indexed field "
                    f"for {obj.name}",
                )
            return self._collection_save(request, user, upsert_field=ext, upsert_obj=obj)
        raise _not_found()

    def _collection_records(self, request: Request) -> tuple[bool, list[Any]]:
        body = self._body_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise _json_parser_error("Cannot deserialize the request body: expected 'records'")
        records = body["records"]
        if len(records) > MAX_COLLECTION_RECORDS:
            raise ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        return bool(body.get("allOrNone", False)), records

    def _collection_save(
        self,
        request: Request,
        user: str,
        *,
        upsert_field: FieldDef | None,
        upsert_obj: SObjectDef | None,
    ) -> Response:
        all_or_none, records = self._collection_records(request)
        typed: list[tuple[SObjectDef, dict[str, Any]]] = []
        for rec in records:
            attrs = rec.get("attributes") if isinstance(rec, dict) else None
            type_name = attrs.get("type") if isinstance(attrs, dict) else None
            if not isinstance(type_name, str) or not type_name:
                raise ApiError(400, "INVALID_TYPE", "Must send a concrete entity type.")
            obj = sobject(type_name)
            if obj is None:
                raise ApiError(400, "INVALID_TYPE", f"sObject type '{type_name}' is not supported.")
            if upsert_obj is not None and obj.name != upsert_obj.name:
                raise ApiError(
                    400, "INVALID_TYPE", "Upsert of mixed sObject types is not supported."
                )
            assert isinstance(rec, dict)
            typed.append((obj, rec))
        mode = "upsert" if upsert_field is not None else (
            "insert" if request.method == "POST" else "update"
        )  # fmt: skip

        results: list[dict[str, Any] | None] = [None] * len(typed)
        staged: list[tuple[int, _Prepared]] = []
        with self._lock:
            for position, (obj, rec) in enumerate(typed):
                try:
                    prepared = self._prepare_collection_item(obj, rec, user, mode, upsert_field)
                except RecordError as exc:
                    results[position] = {"success": False, "errors": [exc.result_error()]}
                    continue
                except _ParseError as exc:
                    raise _json_parser_error(str(exc)) from None
                if all_or_none:
                    staged.append((position, prepared))
                else:
                    self._commit(prepared, user)
                    results[position] = self._save_result(prepared, mode)
            failed = any(r is not None and not r["success"] for r in results)
            if all_or_none:
                if failed:
                    # Nothing is committed; records without their own error are "rolled back".
                    for position, _ in staged:
                        results[position] = {"success": False, "errors": [dict(_ROLLED_BACK)]}
                else:
                    for position, prepared in staged:
                        self._commit(prepared, user)
                        results[position] = self._save_result(prepared, mode)
        return self._json(200, results, request)

    def _prepare_collection_item(
        self,
        obj: SObjectDef,
        rec: dict[str, Any],
        user: str,
        mode: str,
        upsert_field: FieldDef | None,
    ) -> _Prepared:
        body = {k: v for k, v in rec.items() if k != "attributes"}
        given_id = body.pop("Id", None) or body.pop("id", None)
        if mode == "insert":
            if given_id:
                raise RecordError("INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
            return self._prepare_insert(obj, body, user)
        if mode == "update":
            if not given_id:
                raise RecordError("MISSING_ARGUMENT", "Id not specified in an update call", [])
            return self._prepare_update(obj, self._record_for_collection(obj, given_id), body, user)
        assert upsert_field is not None
        if upsert_field.name == "Id":
            key = given_id
        else:
            key = None
            for k, v in body.items():
                if k.lower() == upsert_field.name.lower():
                    key = v
        if key in (None, ""):
            raise RecordError(
                "MISSING_ARGUMENT", f"{upsert_field.name} not specified", [upsert_field.name]
            )
        matches = self._match_external(obj, upsert_field, str(key))
        if len(matches) > 1:
            raise RecordError(
                "DUPLICATE_EXTERNAL_ID",
                f"{upsert_field.label}: more than one record found for external id field: "
                + str([m["Id"] for m in matches]),
                [upsert_field.name],
            )
        if matches:
            return self._prepare_update(obj, matches[0], body, user)
        prepared = self._prepare_insert(obj, body, user)
        prepared.created = True
        return prepared

    def _record_for_collection(self, obj: SObjectDef, record_id: Any) -> dict[str, Any]:
        text_id = str(record_id)
        canonical = self._canonical_id(text_id) if is_id(text_id) else None
        # An 18-character id may come in any case (its suffix restores the case).
        if not is_id(text_id) or (canonical or text_id)[:3] != obj.key_prefix:
            raise RecordError(
                "MALFORMED_ID", f"{obj.label} ID: id value of incorrect type: {text_id}", ["Id"]
            )
        hit = self._locate(canonical) if canonical else None
        if hit is None:
            raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
        if hit[1].get("IsDeleted"):
            raise RecordError("ENTITY_IS_DELETED", "entity is deleted", [])
        return hit[1]

    @staticmethod
    def _save_result(prepared: _Prepared, mode: str) -> dict[str, Any]:
        result: dict[str, Any] = {"id": prepared.record["Id"], "success": True, "errors": []}
        if mode == "upsert":
            result["created"] = prepared.created
        return result

    def _collection_delete(self, request: Request, user: str) -> Response:
        ids = [i for i in request.args.get("ids", "").split(",") if i]
        if not ids:
            raise ApiError(400, "MISSING_ARGUMENT", "Missing the required parameter: ids")
        if len(ids) > MAX_COLLECTION_RECORDS:
            raise ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        all_or_none = request.args.get("allOrNone", "false").lower() == "true"
        results: list[dict[str, Any] | None] = [None] * len(ids)
        staged: list[tuple[int, _Prepared]] = []
        with self._lock:
            for position, record_id in enumerate(ids):
                prefix = PREFIX_TO_SOBJECT.get(record_id[:3])
                if not is_id(record_id) or prefix is None:
                    error = RecordError("MALFORMED_ID", f"malformed id {record_id}", [])
                    results[position] = {"success": False, "errors": [error.result_error()]}
                    continue
                obj = SOBJECTS[prefix]
                try:
                    rec = self._record_for_collection(obj, record_id)
                except RecordError as exc:
                    results[position] = {"success": False, "errors": [exc.result_error()]}
                    continue
                prepared = _Prepared(obj, rec, {}, "delete")
                if all_or_none:
                    staged.append((position, prepared))
                else:
                    self._commit(prepared, user)
                    results[position] = {"id": rec["Id"], "success": True, "errors": []}
            failed = any(r is not None for r in results)
            for position, prepared in staged:
                if failed:
                    results[position] = {"success": False, "errors": [dict(_ROLLED_BACK)]}
                else:
                    self._commit(prepared, user)
                    results[position] = {"id": prepared.record["Id"], "success": True, "errors": []}
        return self._json(200, results, request)

    def _collection_retrieve(self, request: Request, version: str, obj: SObjectDef) -> Response:
        if request.method == "POST":
            body = self._body_json(request)
            if not isinstance(body, dict):
                raise _json_parser_error("Cannot deserialize the request body")
            ids = [str(i) for i in body.get("ids") or []]
            names = [str(f) for f in body.get("fields") or []]
        else:
            ids = [i for i in request.args.get("ids", "").split(",") if i]
            names = [f for f in request.args.get("fields", "").split(",") if f]
        if not ids or not names:
            raise ApiError(400, "MISSING_ARGUMENT", "Both ids and fields are required")
        fields: list[FieldDef] = []
        for name in names:
            f = obj.field(name.strip())
            if f is None:
                raise ApiError(
                    400,
                    "INVALID_FIELD",
                    f"No such column '{name}' on entity '{obj.name}'. If you are attempting to "
                    "use a custom field, be sure to append the '__c' after the custom field "
                    "name. " + _WSDL_HINT,
                )
            fields.append(f)
        out: list[dict[str, Any] | None] = []
        with self._lock:
            self._ensure_rollups()
            for record_id in ids:
                canonical = self._canonical_id(record_id) if is_id(record_id) else None
                hit = self._locate(canonical) if canonical else None
                if hit is None or hit[0] != obj.name or hit[1].get("IsDeleted"):
                    out.append(None)
                else:
                    out.append(self._shape(obj, hit[1], version, fields))
        return self._json(200, out, request)

    # =========================================================================================
    # Writes: prepare (validate) then commit

    def _prepare_insert(self, obj: SObjectDef, body: Mapping[str, Any], user: str) -> _Prepared:
        if not obj.createable:
            raise RecordError(
                "INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object id", []
            )
        values = self._coerce_body(obj, body, creating=True)
        record: dict[str, Any] = {}
        for f in obj.fields:
            if f.type == "address":
                continue  # compound fields are computed on read, never stored
            if f.name in values:
                record[f.name] = values[f.name]
            elif f.type == "boolean":
                record[f.name] = bool(f.default_value)
            elif f.type == "picklist" and f.createable:
                record[f.name] = next((p.value for p in f.picklist if p.default), None)
            else:
                record[f.name] = None
        if record.get("OwnerId") is None and obj.field("OwnerId") is not None:
            record["OwnerId"] = user
        missing = [
            f.name for f in obj.fields if f.required_on_create and record.get(f.name) is None
        ]
        if missing:
            raise RecordError(
                "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            )  # fmt: skip
        self._object_rules(obj, record, None)
        return _Prepared(obj, record, values, "insert")

    def _prepare_update(
        self, obj: SObjectDef, current: dict[str, Any], body: Mapping[str, Any], user: str
    ) -> _Prepared:
        if obj.name == "Lead" and current.get("IsConverted"):
            raise RecordError("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
        body = {
            k: v
            for k, v in body.items()
            if not (k.lower() == "id" and isinstance(v, str) and self._same_id(v, current["Id"]))
        }
        values = self._coerce_body(obj, body, creating=False)
        nulled = [
            f.name
            for f in obj.fields
            if f.name in values and values[f.name] is None and not f.nillable
        ]
        if nulled:
            raise RecordError(
                "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(nulled)}]",
                nulled,
            )  # fmt: skip
        self._object_rules(obj, {**current, **values}, current)
        message = self._rejection(current["Id"])
        if message is not None:
            # Validation rules run after system validation (required fields, formats, lengths),
            # so a bad value still reports its own error first. A rule whose error shows at the
            # top of the page has no fields.
            raise RecordError("FIELD_CUSTOM_VALIDATION_EXCEPTION", message, [])
        return _Prepared(obj, current, values, "update")

    def _rejection(self, record_id: str) -> str | None:
        rejects = self.reject_record_ids
        if not rejects:
            return None
        message = rejects.get(record_id)
        return message if message is not None else rejects.get(record_id[:15])

    def _same_id(self, a: str, b: str) -> bool:
        return is_id(a) and self._canonical_id(a) == b

    def _coerce_body(
        self, obj: SObjectDef, body: Mapping[str, Any], *, creating: bool
    ) -> dict[str, Any]:
        unknown: list[str] = []
        readonly: list[str] = []
        pairs: list[tuple[FieldDef, Any]] = []
        for key, raw in body.items():
            if key == "attributes":
                continue
            f = obj.field(key)
            if f is None:
                unknown.append(key)
                continue
            if not (f.createable if creating else f.updateable):
                readonly.append(f.name)
                continue
            pairs.append((f, raw))
        if unknown:
            # Raised by Salesforce's JSON deserialiser: the single-record REST error has no
            # ``fields``; Collections results carry the field (contract §B6).
            raise RecordError(
                "INVALID_FIELD",
                f"No such column '{unknown[0]}' on sobject of type {obj.name}",
                [unknown[0]],
                rest_fields=False,
            )
        if readonly:
            # Single-record REST reports these with ``fields`` too.
            raise RecordError(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(readonly)}. Please check the "
                "security settings of this field and verify that it is read/write for your "
                "profile or permission set.",
                readonly,
            )
        values = {f.name: self._coerce_value(f, raw) for f, raw in pairs}
        for f, _ in pairs:
            self._validate_value(f, values[f.name])
        return values

    def _coerce_value(self, f: FieldDef, raw: Any) -> Any:
        """JSON value → stored Python value; wrong JSON types fail like Salesforce's parser."""
        if raw is None:
            return False if f.type == "boolean" else None
        if isinstance(raw, (dict, list)):
            raise _ParseError(
                f"Cannot deserialize instance of {f.type} from "
                f"{'START_OBJECT' if isinstance(raw, dict) else 'START_ARRAY'} value",
                f,
                raw,
            )
        kind = f.type
        try:
            if kind in TEXT_TYPES or kind in {"id", "reference"}:
                if isinstance(raw, bool):
                    raw = "true" if raw else "false"
                text_value = str(raw)
                # Salesforce stores the empty string as null.
                return text_value if text_value != "" else None
            if kind == "boolean":
                if isinstance(raw, bool):
                    return raw
                if isinstance(raw, str) and raw.lower() in {"true", "false"}:
                    return raw.lower() == "true"
                raise ValueError
            if kind == "int":
                if isinstance(raw, bool):
                    raise ValueError
                number = Decimal(str(raw))
                if number != number.to_integral_value():
                    raise ValueError
                return int(number)
            if kind in NUMBER_TYPES:
                if isinstance(raw, bool) or (isinstance(raw, str) and not raw.strip()):
                    raise ValueError
                number = Decimal(str(raw))
                if not number.is_finite():
                    raise ValueError
                return number
            if kind == "date":
                if not isinstance(raw, str):
                    raise ValueError
                return parse_date(raw)
            if kind == "datetime":
                if not isinstance(raw, str):
                    raise ValueError
                return parse_datetime(raw)
        except (ValueError, InvalidOperation):
            token = "VALUE_STRING" if isinstance(raw, str) else "VALUE_NUMBER"
            raise _ParseError(
                f"Cannot deserialize instance of {kind} from {token} value {raw} or request may "
                "be missing a required field at [line:1, column:1]",
                f,
                raw,
            ) from None
        raise _ParseError(f"Cannot deserialize field {f.name}", f, raw)

    def _validate_value(self, f: FieldDef, value: Any) -> None:
        """Field-level DML validation (after coercion); may canonicalise references."""
        if value is None:
            return
        if f.type in TEXT_TYPES and f.length and len(value) > f.length:
            raise RecordError(
                "STRING_TOO_LONG",
                f"{f.label}: data value too large: {value} (max length={f.length})",
                [f.name],
            )
        if f.type == "email" and not _EMAIL_RE.match(value):
            raise RecordError(
                "INVALID_EMAIL_ADDRESS", f"{f.label}: invalid email address: {value}", [f.name]
            )
        if f.type == "picklist" and f.restricted_picklist and value not in f.picklist_values():
            raise RecordError(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"{f.label}: bad value for restricted picklist field: {value}",
                [f.name],
            )
        if f.type == "multipicklist" and f.restricted_picklist:
            for part in value.split(";"):
                if part not in f.picklist_values():
                    raise RecordError(
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        f"{f.label}: bad value for restricted picklist field: {part}",
                        [f.name],
                    )
        if isinstance(value, Decimal) or f.type == "int":
            self._validate_number(f, value)
        if f.type == "reference" and isinstance(value, str):
            self._validate_reference(f, value)

    def _validate_number(self, f: FieldDef, value: Decimal | int) -> None:
        if f.type == "int":
            if f.digits and len(str(abs(int(value)))) > f.digits:
                raise RecordError(
                    "NUMBER_OUTSIDE_VALID_RANGE",
                    f"{f.label}: value outside of valid range on numeric field: {value}",
                    [f.name],
                )
            return
        assert isinstance(value, Decimal)
        integer_digits = f.precision - f.scale
        rounded = value.quantize(Decimal(1).scaleb(-f.scale), rounding=ROUND_HALF_UP)
        if f.precision and abs(rounded) >= Decimal(10) ** integer_digits:
            raise RecordError(
                "NUMBER_OUTSIDE_VALID_RANGE",
                f"{f.label}: value outside of valid range on numeric field: {value}",
                [f.name],
            )

    def _validate_reference(self, f: FieldDef, value: str) -> None:
        incorrect = RecordError(
            "MALFORMED_ID", f"{f.label}: id value of incorrect type: {value}", [f.name]
        )
        if not is_id(value):
            raise incorrect
        target = PREFIX_TO_SOBJECT.get(value[:3]) or FOREIGN_PREFIXES.get(value[:3])
        if target is None or target not in f.reference_to:
            raise incorrect
        if target in SOBJECTS:
            canonical = self._canonical_id(value)
            hit = self._locate(canonical) if canonical else None
            if hit is None:
                raise RecordError(
                    "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [f.name]
                )
            if hit[1].get("IsDeleted"):
                raise RecordError("ENTITY_IS_DELETED", "entity is deleted", [f.name])

    def _object_rules(
        self, obj: SObjectDef, merged: Mapping[str, Any], current: Mapping[str, Any] | None
    ) -> None:
        """Cross-field rules of particular objects."""
        if obj.name == "CampaignMember" and current is None:
            if not merged.get("LeadId") and not merged.get("ContactId"):
                raise RecordError(
                    "REQUIRED_FIELD_MISSING", "Required fields are missing: [LeadId]", ["LeadId"]
                )
            for member in self._data["CampaignMember"].values():
                if member.get("IsDeleted") or member.get("CampaignId") != self._canon(
                    merged.get("CampaignId")
                ):
                    continue
                same_lead = merged.get("LeadId") and member.get("LeadId") == self._canon(
                    merged.get("LeadId")
                )
                same_contact = merged.get("ContactId") and member.get("ContactId") == self._canon(
                    merged.get("ContactId")
                )
                if same_lead or same_contact:
                    raise RecordError("DUPLICATE_VALUE", "Already a campaign member.", [])
        if obj.name == "Event":
            start = merged.get("StartDateTime") or merged.get("ActivityDateTime")
            if merged.get("IsAllDayEvent"):
                if start is None and merged.get("ActivityDate") is None:
                    raise RecordError(
                        "REQUIRED_FIELD_MISSING",
                        "Required fields are missing: [ActivityDate]",
                        ["ActivityDate"],
                    )
            else:
                if start is None:
                    raise RecordError(
                        "REQUIRED_FIELD_MISSING",
                        "Required fields are missing: [ActivityDateTime]",
                        ["ActivityDateTime"],
                    )
                if merged.get("EndDateTime") is None and merged.get("DurationInMinutes") is None:
                    raise RecordError(
                        "REQUIRED_FIELD_MISSING",
                        "Required fields are missing: [DurationInMinutes]",
                        ["DurationInMinutes"],
                    )

    def _canon(self, value: Any) -> Any:
        if isinstance(value, str) and is_id(value):
            return self._canonical_id(value) or value
        return value

    def _commit(self, prepared: _Prepared, user: str) -> None:
        now = self._now()
        obj, rec = prepared.obj, prepared.record
        if prepared.kind == "delete":
            self._delete_many(obj, [rec], now, user)
            self._rollups_dirty = True
            return
        values = {k: self._storage_value(obj.field(k), v) for k, v in prepared.changes.items()}
        if prepared.kind == "insert":
            rec.update(values)
            self._serial += 1
            new_id = make_id(obj.key_prefix, self._serial)
            while self._locate(new_id) is not None:
                self._serial += 1
                new_id = make_id(obj.key_prefix, self._serial)
            rec.update(
                {
                    "Id": new_id,
                    "IsDeleted": False,
                    "CreatedDate": now,
                    "CreatedById": user,
                }
            )
            self._stamp(rec, now, user)
            self._store(obj, rec)
            self._derive(obj, rec, None)
        else:
            rec.update(values)
            self._stamp(rec, now, user)
            self._derive(obj, rec, set(values))
        if obj.name == "CampaignMember":
            self._rollups_dirty = True

    def _storage_value(self, f: FieldDef | None, value: Any) -> Any:
        if f is None or value is None:
            return value
        if isinstance(value, Decimal):
            rounded = value.quantize(Decimal(1).scaleb(-f.scale), rounding=ROUND_HALF_UP)
            return float(rounded)
        if f.type == "reference":
            return self._canonical_id(value) or value
        return value

    @staticmethod
    def _stamp(rec: dict[str, Any], now: datetime, user: str) -> None:
        rec["LastModifiedDate"] = now
        rec["SystemModstamp"] = now
        rec["LastModifiedById"] = user

    def _delete_many(
        self, obj: SObjectDef, recs: Iterable[dict[str, Any]], now: datetime, user: str
    ) -> None:
        """Soft-delete records and, recursively, their cascade-deleted children.

        One scan per cascading relationship for the whole set (not per record), so a Bulk
        delete of 10,000 leads scans the activities once rather than 10,000 times.
        """
        ids: set[str] = set()
        for rec in recs:
            if rec.get("IsDeleted"):
                continue
            rec["IsDeleted"] = True
            self._stamp(rec, now, user)
            self._deleted_at[rec["Id"]] = now
            ids.add(rec["Id"])
        if not ids:
            return
        for child_obj, ref in references_to(obj.name):
            if not ref.cascade_delete:
                continue
            children = [
                child
                for child in self._data[child_obj.name].values()
                if child.get(ref.name) in ids and not child.get("IsDeleted")
            ]
            if children:
                self._delete_many(child_obj, children, now, user)

    # -- derived fields

    def _derive(self, obj: SObjectDef, rec: dict[str, Any], changed: set[str] | None) -> None:
        """Keep emulator-maintained fields in step (compound Name, IsClosed, roll-ups...)."""
        name = obj.name
        indexes = self._value_indexes.get(name)
        if indexes:
            for field_name, index in indexes.items():
                if changed is None or field_name in changed:
                    current = rec.get(field_name)
                    if isinstance(current, str):
                        index.setdefault(current.casefold(), {})[rec["Id"]] = None

        def touched(*fields: str) -> bool:
            return changed is None or any(f in changed for f in fields)

        if name in {"Lead", "Contact", "User"} and touched("FirstName", "LastName"):
            if changed is not None or rec.get("Name") is None:
                rec["Name"] = _person_name(rec.get("FirstName"), rec.get("LastName"))
        elif name == "Task":
            rec["IsClosed"] = rec.get("Status") in CLOSED_TASK_STATUSES
            rec["IsHighPriority"] = rec.get("Priority") == "High"
            if rec["IsClosed"] and rec.get("CompletedDateTime") is None:
                rec["CompletedDateTime"] = rec.get("LastModifiedDate")
            elif not rec["IsClosed"] and changed is not None:
                rec["CompletedDateTime"] = None
            self._derive_activity_account(rec)
        elif name == "Event":
            self._derive_event_times(rec)
            self._derive_activity_account(rec)
        elif name == "Opportunity":
            stage = STAGE_INFO.get(rec.get("StageName") or "")
            if stage is not None:
                probability, closed, won, forecast = stage
                rec["IsClosed"], rec["IsWon"] = closed, won
                # A stage change resets probability / forecast category unless the same write
                # sets them explicitly.
                explicit = changed or set()
                stage_changed = "StageName" in explicit
                if rec.get("Probability") is None or (
                    stage_changed and "Probability" not in explicit
                ):
                    rec["Probability"] = float(probability)
                if rec.get("ForecastCategoryName") is None or (
                    stage_changed and "ForecastCategoryName" not in explicit
                ):
                    rec["ForecastCategoryName"] = forecast
        elif name == "CampaignMember":
            rec["Type"] = "Contact" if rec.get("ContactId") else "Lead"
            rec["LeadOrContactId"] = rec.get("ContactId") or rec.get("LeadId")
            responded = rec.get("Status") in RESPONDED_MEMBER_STATUSES
            rec["HasResponded"] = responded
            if responded and rec.get("FirstRespondedDate") is None:
                stamp = rec.get("LastModifiedDate") or self._now()
                rec["FirstRespondedDate"] = stamp.date()

    def _derive_activity_account(self, rec: dict[str, Any]) -> None:
        account = None
        what = rec.get("WhatId")
        who = rec.get("WhoId")
        if what and what.startswith("001"):
            account = what
        elif what and what.startswith("006"):
            hit = self._locate(what)
            account = hit[1].get("AccountId") if hit else None
        if account is None and who and who.startswith("003"):
            hit = self._locate(who)
            account = hit[1].get("AccountId") if hit else None
        rec["AccountId"] = account

    @staticmethod
    def _derive_event_times(rec: dict[str, Any]) -> None:
        start = rec.get("StartDateTime") or rec.get("ActivityDateTime")
        if start is None:
            return
        rec["StartDateTime"] = rec["ActivityDateTime"] = start
        rec["ActivityDate"] = start.date()
        end = rec.get("EndDateTime")
        duration = rec.get("DurationInMinutes")
        if end is not None:
            rec["DurationInMinutes"] = int((end - start).total_seconds() // 60)
        elif duration is not None:
            rec["EndDateTime"] = start + timedelta(minutes=int(duration))

    def _ensure_rollups(self) -> None:
        """Recompute Campaign roll-up counts if memberships changed since the last read."""
        if self._rollups_dirty:
            self._refresh_campaign_rollups()
            self._rollups_dirty = False

    def _refresh_campaign_rollups(self) -> None:
        counts: dict[str, Counter[str]] = {}
        leads = self._data["Lead"]
        for member in self._data["CampaignMember"].values():
            campaign = member.get("CampaignId")
            if member.get("IsDeleted") or not campaign:
                continue
            c = counts.setdefault(campaign, Counter())
            lead = leads.get(member.get("LeadId") or "")
            if member.get("ContactId"):
                c["NumberOfContacts"] += 1
            if member.get("LeadId"):
                c["NumberOfLeads"] += 1
                if lead is not None and lead.get("IsConverted"):
                    c["NumberOfConvertedLeads"] += 1
            if member.get("HasResponded"):
                c["NumberOfResponses"] += 1
        for campaign_id, campaign in self._data["Campaign"].items():
            c = counts.get(campaign_id, Counter())
            for key in (
                "NumberOfLeads",
                "NumberOfConvertedLeads",
                "NumberOfContacts",
                "NumberOfResponses",
            ):
                campaign[key] = c[key]

    # =========================================================================================
    # Bulk API 2.0 backend: salesforce_bulk runs the jobs; records go through the same
    # prepare / commit path as REST and Collections, so per-record errors are identical.

    @property
    def bulk_lock(self) -> threading.RLock:
        return self._lock

    def bulk_now(self) -> datetime:
        return self._now()

    def bulk_write(
        self,
        sobject_name: str,
        operation: str,
        external_id_field: str | None,
        rows: list[dict[str, str | None]],
        user: str,
    ) -> list[BulkOutcome]:
        """Apply one chunk of an ingest job (allOrNone=false: every row stands alone)."""
        obj = SOBJECTS[sobject_name]
        outcomes: list[BulkOutcome] = []
        with self._lock:
            if operation in {"delete", "hardDelete"}:
                doomed: list[dict[str, Any]] = []
                for body in rows:
                    record_id = body.get("Id") or ""
                    try:
                        if not record_id:
                            raise RecordError("MISSING_ARGUMENT", "Id not specified", [])
                        rec = self._record_for_collection(obj, record_id)
                    except RecordError as exc:
                        outcomes.append(_bulk_failure(record_id, exc))
                        continue
                    doomed.append(rec)
                    outcomes.append(BulkOutcome(True, rec["Id"], False))
                self._delete_many(obj, doomed, self._now(), user)
                self._rollups_dirty = True
                if operation == "hardDelete":
                    # Hard-deleted records skip the recycle bin: gone from queryAll too.
                    for rec in doomed:
                        self._data[obj.name].pop(rec["Id"], None)
                return outcomes
            ext = obj.field(external_id_field) if external_id_field else None
            for body in rows:
                given = body.get("Id") or ""
                try:
                    prepared = self._prepare_collection_item(obj, dict(body), user, operation, ext)
                except RecordError as exc:
                    outcomes.append(_bulk_failure(given, exc))
                    continue
                except _ParseError as exc:
                    # CSV has no JSON types: a value that does not convert fails its row only.
                    label = exc.field.label if exc.field is not None else "value"
                    error = RecordError(
                        "INVALID_TYPE_ON_FIELD_IN_RECORD",
                        f"{label}: value not of required type: {exc.raw}",
                        [exc.field.name] if exc.field is not None else [],
                    )
                    outcomes.append(_bulk_failure(given, error))
                    continue
                self._commit(prepared, user)
                created = prepared.kind == "insert"
                outcomes.append(BulkOutcome(True, prepared.record["Id"], created))
        return outcomes

    def bulk_compile(self, soql: str, version: str) -> Plan:
        """Compile the SOQL of a query job (errors are the REST query errors)."""
        with self._lock:
            try:
                return compile_query(soql, self._lookup, version, self._now())
            except SoqlError as exc:
                raise BulkApiError(400, exc.error_code, exc.message) from None

    def bulk_select(self, plan: Plan, *, include_deleted: bool) -> list[Mapping[str, Any]]:
        """References to the records a query job returns (a snapshot of ids, not copies)."""
        with self._lock:
            self._ensure_rollups()
            candidates = list(self._data[plan.sobject.name].values())
        return self._select(plan, candidates, include_deleted=include_deleted)

    # =========================================================================================
    # Store

    def _store(self, obj: SObjectDef, rec: dict[str, Any]) -> None:
        self._data[obj.name][rec["Id"]] = rec

    def _locate(self, record_id: str) -> tuple[str, dict[str, Any]] | None:
        """(sObject name, stored record) for an exact stored id; the key prefix names the
        sObject, so no per-record index is needed."""
        name = PREFIX_TO_SOBJECT.get(record_id[:3])
        if name is None:
            return None
        rec = self._data[name].get(record_id)
        return None if rec is None else (name, rec)

    def _canonical_id(self, value: str) -> str | None:
        """The stored id for a 15/18-character id in any case (None if unknown)."""
        name = PREFIX_TO_SOBJECT.get(value[:3]) or _PREFIX_ANY_CASE.get(value[:3].lower())
        if name is None or len(value) not in {15, 18} or not is_id(value):
            return None
        records = self._data[name]
        if value in records:
            return value
        # 15-character ids are case-sensitive; 18-character ones carry the case in the suffix.
        candidate = id18(value) if len(value) == 15 else restore_id_case(value)
        if candidate is not None and candidate in records:
            return candidate
        irregular = self._irregular_ids
        if irregular:
            return irregular.get(value[:15]) or (
                irregular.get(value.lower()) if len(value) == 18 else None
            )
        return None

    def _live_record(self, sobject_name: str, record_id: str) -> dict[str, Any]:
        canonical = self._canonical_id(record_id)
        hit = self._locate(canonical) if canonical else None
        if hit is None or hit[0] != sobject_name:
            raise KeyError(f"no {sobject_name} with id {record_id}")
        if hit[1].get("IsDeleted"):
            raise ValueError(f"{sobject_name} {record_id} is deleted")
        return hit[1]

    def _new_internal(
        self, sobject_name: str, values: Mapping[str, Any], now: datetime
    ) -> dict[str, Any]:
        """Create a record without DML validation (used by the conversion hook)."""
        obj = SOBJECTS[sobject_name]
        self._serial += 1
        rec: dict[str, Any] = {f.name: None for f in obj.fields if f.type != "address"}
        for f in obj.fields:
            if f.type == "boolean":
                rec[f.name] = bool(f.default_value)
        rec.update({k: v for k, v in values.items() if v is not None})
        user = self.integration_user_id
        rec.update(
            {
                "Id": make_id(obj.key_prefix, self._serial),
                "IsDeleted": False,
                "CreatedDate": now,
                "CreatedById": user,
            }
        )
        self._stamp(rec, now, user)
        self._store(obj, rec)
        self._derive(obj, rec, None)
        return rec

    def _object_or_raise(self, name: str) -> SObjectDef:
        obj = sobject(name)
        if obj is None:
            raise ValueError(f"unknown sObject {name!r}; modelled: {', '.join(SOBJECTS)}")
        return obj

    def _coerce_loaded(
        self, obj: SObjectDef, raw: Mapping[str, Any], now: datetime
    ) -> dict[str, Any]:
        loader = _loader(obj)
        rec = loader.template.copy()
        if raw.keys() <= loader.exact:
            # Fast path (the generator's records): copy in C, then fix the few fields that
            # need a default back or a conversion.
            rec.update(raw)
            for name, default in loader.defaults:
                if rec[name] is None:
                    rec[name] = default
            for name, kind in loader.converted:
                value = rec[name]
                if value is not None:
                    rec[name] = _LOAD_CONVERTERS[kind](value)
            for name in loader.text:
                value = rec[name]
                if value is not None and type(value) is not str:
                    rec[name] = str(value)
        else:
            self._coerce_loaded_slowly(loader, obj, raw, rec)
        record_id = rec["Id"]
        if not record_id:
            self._serial += 1
            rec["Id"] = make_id(obj.key_prefix, self._serial)
        else:
            if not is_id(record_id) or record_id[:3] != obj.key_prefix:
                raise ValueError(f"{record_id!r} is not a {obj.name} id (prefix {obj.key_prefix})")
            if len(record_id) == 15:
                rec["Id"] = id18(record_id)  # the API always speaks the 18-character form
            elif id18(record_id[:15]) != record_id:
                # A hand-made id with a wrong checksum: findable in any case all the same.
                self._irregular_ids[record_id[:15]] = record_id
                self._irregular_ids[record_id.lower()] = record_id
        user = self.integration_user_id
        rec["CreatedDate"] = rec["CreatedDate"] or now
        rec["LastModifiedDate"] = rec["LastModifiedDate"] or rec["CreatedDate"]
        rec["SystemModstamp"] = rec["SystemModstamp"] or rec["LastModifiedDate"]
        rec["CreatedById"] = rec["CreatedById"] or user
        rec["LastModifiedById"] = rec["LastModifiedById"] or rec["CreatedById"]
        if loader.has_owner and not rec["OwnerId"]:
            rec["OwnerId"] = user
        return rec

    @staticmethod
    def _coerce_loaded_slowly(
        loader: _Loader, obj: SObjectDef, raw: Mapping[str, Any], rec: dict[str, Any]
    ) -> None:
        """Field names in another case, ``attributes``, compound fields or unknown names."""
        resolve = loader.fields
        unknown: list[str] = []
        for key, value in raw.items():
            entry = resolve.get(key)
            if entry is None:
                entry = resolve.get(key.lower())
                if entry is None:
                    if key != "attributes":
                        unknown.append(key)
                    continue
            if value is None:
                continue  # the template holds the value of an omitted field
            name, kind = entry
            if kind == _LOAD_TEXT:
                rec[name] = value if type(value) is str else str(value)
            elif kind != _LOAD_SKIP:  # compound fields are computed on read, never stored
                rec[name] = _LOAD_CONVERTERS[kind](value)
        if unknown:
            raise ValueError(f"{obj.name} has no field(s) {', '.join(sorted(unknown))}")

    # -- request bodies

    @staticmethod
    def _body_json(request: Request) -> Any:
        raw = request.get_data()
        if not raw:
            raise _json_parser_error("No content to map due to end-of-input at [line:1, column:0]")
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            # Salesforce parses bodies with Jackson; mimic the shape of its messages.
            bad = exc.doc[exc.pos : exc.pos + 1] or "EOF"
            raise _json_parser_error(
                f"Unexpected character ('{bad}' (code {ord(bad[0])})): {exc.msg} "
                f"at [line:{exc.lineno}, column:{exc.colno}]"
            ) from None
        except UnicodeDecodeError:
            raise _json_parser_error("Invalid UTF-8 middle byte") from None

    def _body_object(self, request: Request) -> dict[str, Any]:
        body = self._body_json(request)
        if not isinstance(body, dict):
            raise _json_parser_error(
                "Cannot deserialize instance of sObject from START_ARRAY value"
            )
        return body

    def _now(self) -> datetime:
        # Salesforce stores datetimes with whole-second precision.
        return _utc(self.clock()).replace(microsecond=0)
