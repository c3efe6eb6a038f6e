"""The Salesforce connector: login, incremental SOQL pulls, Bulk API 2.0 first loads, getDeleted,
reconciliation reads and sObject Collections / Bulk API 2.0 writes.

The only module (with its package) that imports simple-salesforce. Records come out as flat dicts:
every selected field with the types REST JSON gives (also when read through Bulk CSV), `id`,
`_modified_at` (tz-aware UTC datetime) and `_deleted`.
"""

import csv
import io
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import requests
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from simple_salesforce.api import Salesforce
from simple_salesforce.bulk2 import SFBulk2Type
from simple_salesforce.exceptions import SalesforceError, SalesforceOperationError
from simple_salesforce.format import format_soql
from urllib3.util.retry import Retry

from connectors.outcome import WriteOutcome
from connectors.ratelimit import BudgetExhausted, CallCounter, DailyBudget
from connectors.salesforce import constants as c

log = logging.getLogger(__name__)

# A Salesforce id: 15 case-sensitive characters, or 18 with the case-checksum suffix.
_ID_RE = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")


class SalesforceConfigError(RuntimeError):
    """The org is missing something leadsync needs (named in the message)."""


@dataclass(frozen=True)
class DeletedRecords:
    """What getDeleted said for one window.

    `records` are (id, deletedDate) pairs; `latest_covered` is where the next call should start
    from (Salesforce's latestDateCovered); `complete` is False when the window had to start later
    than asked (deletes older than 15 days are gone from getDeleted) or the sObject does not
    support replication: deletes may have been missed and a reconciliation must cover them.
    """

    records: list[tuple[str, datetime]]
    latest_covered: datetime
    complete: bool


def parse_sf_datetime(value: str | None) -> datetime | None:
    """Salesforce writes `2024-01-01T00:00:00.000+0000`; Python wants the offset with a colon."""
    if not value:
        return None
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(UTC)


def soql_datetime(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rest_datetime(value: datetime) -> str:
    """A datetime as REST JSON writes it: milliseconds and `+0000`."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


class SalesforceConnector:
    """Talks to one Salesforce org (or the sandbox) through simple-salesforce."""

    def __init__(
        self,
        domain: str,
        *,
        client_id: str = "",
        client_secret: str = "",
        username: str = "",
        password: str = "",
        security_token: str = "",
        ca_bundle: str = "",
        api_version: str = c.API_VERSION,
        reserve_fraction: float = c.BUDGET_RESERVE,
        bulk_query_threshold: int = c.BULK_QUERY_THRESHOLD,
        bulk_ingest_threshold: int = c.BULK_INGEST_THRESHOLD,
        bulk_poll_wait_s: int = c.BULK_POLL_WAIT_S,
    ) -> None:
        self.calls = CallCounter()
        self.budget = DailyBudget("salesforce", reserve_fraction=reserve_fraction)
        self.bulk_query_threshold = bulk_query_threshold
        self.bulk_ingest_threshold = bulk_ingest_threshold
        self.bulk_poll_wait_s = bulk_poll_wait_s
        session = requests.Session()
        if ca_bundle:
            # REQUESTS_CA_BUNDLE in the environment silently beats session.verify unless the
            # session stops reading the environment (trip-wire 2).
            session.verify = ca_bundle
            session.trust_env = False
        session.hooks["response"].append(self._count)
        # simple-salesforce retries nothing but an expired session: transient 5xx, dropped
        # connections and timeouts are retried here with capped exponential backoff and jitter
        # (constants.py has the schedule). Salesforce sends no 429s; its 403
        # REQUEST_LIMIT_EXCEEDED is a budget (or the concurrent long-request cap), which an
        # immediate retry only spends further, so 403 is deliberately not in the list.
        adapter = _TimeoutAdapter(
            max_retries=Retry(
                total=c.RETRIES,
                status_forcelist=(500, 502, 503, 504),
                allowed_methods=None,
                backoff_factor=c.BACKOFF_S,
                backoff_max=c.BACKOFF_MAX_S,
                backoff_jitter=c.BACKOFF_JITTER_S,
                respect_retry_after_header=True,
                raise_on_status=False,
            )
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        # Client credentials when there is no username; username + password (+ token) otherwise,
        # through the connected app when its key is given too.
        self._sf = Salesforce(
            domain=domain,
            session=session,
            version=api_version,
            username=username or None,
            password=password or None,
            security_token=security_token or None,
            consumer_key=client_id or None,
            consumer_secret=client_secret or None,
        )
        self._describe: dict[str, dict[str, Any]] = {}
        self._fields: dict[str, dict[str, dict[str, Any]]] = {}
        # (sObject, field) pairs already reported missing, so each is logged once per connector.
        self._reported_missing: set[tuple[str, str]] = set()

    def _count(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        path = response.request.path_url if response.request else ""
        family = next((f for key, f in c.CALL_FAMILIES if key in path), "other")
        self.calls.add(family)
        # Every REST response reports the org's rolling 24-hour usage: "api-usage=18/15000".
        info = response.headers.get("Sforce-Limit-Info", "")
        for part in info.split(","):
            name, _, value = part.strip().partition("=")
            if name == "api-usage" and "/" in value:
                used, limit = value.split("/", 1)
                if used.isdigit() and limit.isdigit():
                    self.budget.update(int(used), int(limit))

    # ---- metadata --------------------------------------------------------------------------

    def describe(self, sobject: str) -> dict[str, Any]:
        """The sObject's describe, cached for the connector's life."""
        if sobject not in self._describe:
            # A describe spends the daily budget like any other call.
            self.budget.check()
            described = getattr(self._sf, sobject).describe()
            self._describe[sobject] = described
            self._fields[sobject] = {f["name"]: f for f in described["fields"]}
        return self._describe[sobject]

    def fields(self, sobject: str) -> dict[str, dict[str, Any]]:
        """Field name -> describe entry, cached for the connector's life."""
        self.describe(sobject)
        return self._fields[sobject]

    def missing_fields(self, sobject: str, wanted: Sequence[str]) -> list[str]:
        have = self.fields(sobject)
        return [f for f in wanted if f not in have]

    def supports_get_deleted(self, sobject: str) -> bool:
        """getDeleted (and getUpdated) work only on sObjects describe marks `replicateable`."""
        return bool(self.describe(sobject).get("replicateable", False))

    def _selected(self, sobject: str, fields: Sequence[str]) -> list[str]:
        """The fields to SELECT: those asked for that the describe lists. SOQL fails the whole
        query (INVALID_FIELD) on one unknown field, and mapped custom fields such as the kana
        (フリガナ) fields exist only in orgs whose admins added them, so a missing field is left
        out with a warning and its canonical column stays null."""
        have = self.fields(sobject)
        missing = [
            f
            for f in dict.fromkeys(fields)
            if f not in have and (sobject, f) not in self._reported_missing
        ]
        if missing:
            self._reported_missing.update((sobject, f) for f in missing)
            log.warning(
                "salesforce %s: the org's describe does not list %s; pulling without them "
                "(the org lacks these fields, or the integration user cannot see them)",
                sobject,
                ", ".join(missing),
            )
        wanted = dict.fromkeys(["Id", *fields, "SystemModstamp", "IsDeleted"])
        return [f for f in wanted if f in have]

    # ---- pull ------------------------------------------------------------------------------

    def pull(
        self, sobject: str, fields: Sequence[str], since: datetime | None
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield pages of records changed since `since`, deleted ones included (queryAll).

        A first load (`since` None) of at least `bulk_query_threshold` rows runs as one Bulk API
        2.0 queryAll job; its CSV values come out typed exactly as REST JSON would give them.
        """
        selected = self._selected(sobject, fields)
        soql = f"SELECT {', '.join(selected)} FROM {sobject}"
        if since is not None:
            start = since - timedelta(seconds=c.PULL_OVERLAP_S)
            soql += f" WHERE SystemModstamp >= {soql_datetime(start)}"
        # Oldest change first, through Bulk too: a pull stopped for the budget leaves a cursor
        # the next run can resume from.
        soql += " ORDER BY SystemModstamp ASC"
        if since is None:
            yield from self._rest_or_bulk(sobject, soql, selected)
        else:
            yield from self._rest_pages(soql, include_deleted=True)

    def _rest_or_bulk(
        self, sobject: str, soql: str, selected: Sequence[str]
    ) -> Iterator[list[dict[str, Any]]]:
        """Read everything through queryAll: REST paging for small objects, one Bulk job for
        large ones. The first REST page reports the whole result's size (`totalSize`), so the
        choice costs no separate COUNT() call: a small object is simply paged on, a large one
        wastes that one page and switches to Bulk, saving totalSize / 2,000 calls."""
        self.budget.check()
        first = self._sf.query(soql, include_deleted=True)
        if int(first["totalSize"]) >= self.bulk_query_threshold and self._bulk_query_allowed(
            sobject, selected
        ):
            yield from self._bulk_pages(sobject, soql, selected, include_deleted=True)
        else:
            yield from self._rest_pages(soql, include_deleted=True, first=first)

    def _rest_pages(
        self, soql: str, *, include_deleted: bool, first: dict[str, Any] | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        if first is None:
            self.budget.check()
        result = (
            first if first is not None else self._sf.query(soql, include_deleted=include_deleted)
        )
        while True:
            yield [self._flatten(r) for r in result["records"]]
            if result.get("done", True):
                return
            self.budget.check()
            result = self._sf.query_more(result["nextRecordsUrl"], identifier_is_url=True)

    def count(self, sobject: str, *, include_deleted: bool = False) -> int:
        """`SELECT COUNT() FROM sobject`: one call whatever the count (queryAll with
        `include_deleted`, so the recycle bin counts too)."""
        self.budget.check()
        result = self._sf.query(f"SELECT COUNT() FROM {sobject}", include_deleted=include_deleted)
        return int(result["totalSize"])

    def _bulk_query_allowed(self, sobject: str, selected: Sequence[str]) -> bool:
        """Whether a Bulk query job may run this read: Bulk cannot select compound or base64
        fields, and a job polls inside simple-salesforce where the budget reserve cannot stop it."""
        have = self.fields(sobject)
        if any(have[f]["type"] in c.BULK_QUERY_UNSUPPORTED_TYPES for f in selected):
            return False
        return self._budget_covers(c.BULK_JOB_CALL_ALLOWANCE)

    def _bulk_pages(
        self, sobject: str, soql: str, selected: Sequence[str], *, include_deleted: bool
    ) -> Iterator[list[dict[str, Any]]]:
        have = self.fields(sobject)
        types = {f: str(have[f]["type"]) for f in selected}
        bulk = self._bulk2(sobject)
        self.budget.check()
        # The generator creates the job and polls it on its first step, then fetches one result
        # page (up to BULK_QUERY_PAGE_SIZE rows, `Sforce-Locator` chained) per step.
        pages: Iterator[str | int]
        if include_deleted:
            pages = bulk.query_all(
                soql, max_records=c.BULK_QUERY_PAGE_SIZE, wait=self.bulk_poll_wait_s
            )
        else:
            pages = bulk.query(soql, max_records=c.BULK_QUERY_PAGE_SIZE, wait=self.bulk_poll_wait_s)
        try:
            for page in pages:
                yield [self._flatten(r) for r in _rest_rows(str(page), types)]
                self.budget.check()
        except SalesforceOperationError as exc:
            raise RuntimeError(f"Salesforce Bulk query job on {sobject} failed: {exc}") from exc

    @staticmethod
    def _flatten(record: Mapping[str, Any]) -> dict[str, Any]:
        flat = {k: v for k, v in record.items() if k != "attributes"}
        flat["id"] = record["Id"]
        flat["_modified_at"] = parse_sf_datetime(record.get("SystemModstamp"))
        flat["_deleted"] = bool(record.get("IsDeleted", False))
        return flat

    def query_ids(self, sobject: str, field: str, values: Sequence[str]) -> list[dict[str, Any]]:
        """Records whose `field` is one of `values` (values escaped, never pasted into SOQL)."""
        out: list[dict[str, Any]] = []
        for i in range(0, len(values), c.IN_CLAUSE_SIZE):
            chunk = list(values[i : i + c.IN_CLAUSE_SIZE])
            soql = format_soql(f"SELECT Id FROM {sobject} WHERE {field} IN {{}}", chunk)
            out.extend(self._sf.query_all(soql)["records"])
        return out

    # ---- deletes and reconciliation --------------------------------------------------------

    def deleted_since(self, sobject: str, since: datetime) -> DeletedRecords:
        """Records deleted since `since` (getDeleted), hard deletes and purged rows included:
        queryAll stops showing those, getDeleted keeps them for 15 days."""
        now = datetime.now(UTC)
        if not self.supports_get_deleted(sobject):
            log.info("salesforce %s is not replicateable: getDeleted skipped", sobject)
            return DeletedRecords([], since, complete=False)
        earliest = now - timedelta(
            days=c.DELETED_LOOKBACK_DAYS, seconds=-c.DELETED_LOOKBACK_MARGIN_S
        )
        start = max(since - timedelta(seconds=c.DELETED_OVERLAP_S), earliest)
        complete = start <= since
        if not complete:
            log.warning(
                "salesforce %s: deletes before %s are past getDeleted's %d days; "
                "a reconciliation must cover them",
                sobject,
                start.isoformat(),
                c.DELETED_LOOKBACK_DAYS,
            )
        # Too short a window is refused (INVALID_REPLICATION_DATE): widen it backwards.
        start = min(start, now - timedelta(seconds=c.DELETED_MIN_WINDOW_S))
        self.budget.check()
        result = getattr(self._sf, sobject).deleted(start, now)
        records: list[tuple[str, datetime]] = []
        for item in result.get("deletedRecords") or []:
            when = parse_sf_datetime(item.get("deletedDate"))
            if when is not None:
                records.append((str(item["id"]), when))
        latest = parse_sf_datetime(result.get("latestDateCovered")) or start
        return DeletedRecords(records, latest, complete)

    def inventory(self, sobject: str) -> dict[str, datetime]:
        """Id -> SystemModstamp of every live (not deleted) record, for reconciliation.

        queryAll filtered on IsDeleted = false rather than query: query also hides archived
        activities (closed Tasks and Events older than a year), which are live records.
        """
        selected = ["Id", "SystemModstamp"]
        soql = f"SELECT {', '.join(selected)} FROM {sobject} WHERE IsDeleted = false"
        out: dict[str, datetime] = {}
        for page in self._rest_or_bulk(sobject, soql, selected):
            for record in page:
                if record["_modified_at"] is not None:
                    out[record["id"]] = record["_modified_at"]
        return out

    def fetch(
        self, sobject: str, fields: Sequence[str], ids: Sequence[str]
    ) -> list[dict[str, Any]]:
        """The current version of each of `ids` in the flat shape `pull` gives (deleted ones with
        `_deleted` True); ids Salesforce no longer has at all are absent."""
        select = f"SELECT {', '.join(self._selected(sobject, fields))} FROM {sobject}"
        # One malformed id fails its whole IN list (INVALID_QUERY_FILTER_OPERATOR), and it cannot
        # name a record anyway: leave such ids out, as absent.
        unique = [i for i in dict.fromkeys(ids) if _ID_RE.fullmatch(i)]
        out: list[dict[str, Any]] = []
        for i in range(0, len(unique), c.IN_CLAUSE_SIZE):
            chunk = unique[i : i + c.IN_CLAUSE_SIZE]
            soql = format_soql(select + " WHERE Id IN {}", chunk)
            for page in self._rest_pages(soql, include_deleted=True):
                out.extend(page)
        return out

    # ---- write -----------------------------------------------------------------------------

    def update(
        self, sobject: str, updates: Sequence[tuple[str, Mapping[str, str]]]
    ) -> list[WriteOutcome]:
        """Update records: sObject Collections, 200 per call, allOrNone=false; from
        `bulk_ingest_threshold` records on, one Bulk API 2.0 job. Stops before the daily
        budget's reserve; only attempted records get an outcome."""
        fields = self.fields(sobject)
        missing = sorted({f for _, values in updates for f in values if f not in fields})
        if missing:
            raise SalesforceConfigError(
                f"Salesforce {sobject} lacks the custom field(s) {', '.join(missing)}; "
                "create them in Setup (see docs/crm-setup.md) before writing back"
            )
        if len(updates) >= self.bulk_ingest_threshold and self._budget_covers(
            c.BULK_JOB_CALL_ALLOWANCE
        ):
            return self._bulk_update(sobject, updates, fields)
        return self._collections_update(sobject, updates, fields)

    def _collections_update(
        self,
        sobject: str,
        updates: Sequence[tuple[str, Mapping[str, str]]],
        fields: Mapping[str, Mapping[str, Any]],
    ) -> list[WriteOutcome]:
        outcomes: list[WriteOutcome] = []
        for i in range(0, len(updates), c.COLLECTION_SIZE):
            chunk = updates[i : i + c.COLLECTION_SIZE]
            records = [
                {
                    "attributes": {"type": sobject},
                    "Id": rid,
                    **{f: _typed(v, fields[f]["type"]) for f, v in values.items()},
                }
                for rid, values in chunk
            ]
            try:
                self.budget.check()
            except BudgetExhausted:
                break  # records not attempted get no outcome and stay planned for the next run
            try:
                results = self._sf.restful(
                    "composite/sobjects",
                    method="PATCH",
                    json={"allOrNone": False, "records": records},
                )
            except SalesforceError as exc:
                raise RuntimeError(
                    f"Salesforce rejected a collections call: {exc.content}"
                ) from exc
            for (rid, _), result in zip(chunk, results or [], strict=True):
                if result.get("success"):
                    outcomes.append(WriteOutcome(rid, True))
                else:
                    reason = "; ".join(
                        f"{e.get('statusCode')}: {e.get('message')}"
                        for e in result.get("errors", [])
                    )
                    outcomes.append(WriteOutcome(rid, False, reason))
        return outcomes

    def _bulk_update(
        self,
        sobject: str,
        updates: Sequence[tuple[str, Mapping[str, str]]],
        fields: Mapping[str, Mapping[str, Any]],
    ) -> list[WriteOutcome]:
        # A Bulk job applies its rows in parallel chunks in no set order, so two rows for one
        # record could land either way round: merge them (later values win, as consecutive
        # Collections calls would apply them) and give every input the merged row's outcome.
        merged: dict[str, dict[str, str]] = {}
        for rid, values in updates:
            row = merged.setdefault(rid, {})
            row.update({f: _bulk_cell(v, fields[f]["type"]) for f, v in values.items()})
        # Rows may name different fields: the CSV header is their union and a row's missing
        # cells are written empty, which Bulk reads as "leave unchanged".
        rows = [{"Id": rid, **values} for rid, values in merged.items()]
        try:
            self.budget.check()
        except BudgetExhausted:
            return []  # nothing attempted: every record stays planned for the next run
        bulk = self._bulk2(sobject)
        try:
            jobs = bulk.update(records=rows, wait=self.bulk_poll_wait_s)
        except (SalesforceError, SalesforceOperationError) as exc:
            raise RuntimeError(f"Salesforce Bulk update job on {sobject} failed: {exc}") from exc
        results: dict[str, WriteOutcome] = {}
        for job in jobs:
            # simple-salesforce runs one job per ~100 MB of CSV; each reports on its own rows.
            job_id = str(job["job_id"])
            failed = int(job["numberRecordsFailed"])
            processed = int(job["numberRecordsProcessed"])
            if processed > failed:
                for row in _csv_dicts(bulk.get_successful_records(job_id)):
                    rid = row.get("Id") or row.get("sf__Id", "")
                    results[rid] = WriteOutcome(rid, True)
            if failed:
                for row in _csv_dicts(bulk.get_failed_records(job_id)):
                    rid = row.get("Id") or row.get("sf__Id", "")
                    results[rid] = WriteOutcome(rid, False, _bulk_error(row.get("sf__Error", "")))
            unprocessed = int(job["numberRecordsTotal"]) - processed
            if unprocessed > 0:
                # Rows Salesforce never reached (a job aborted or timed out part-way) get no
                # outcome and stay planned for the next run.
                log.warning(
                    "salesforce %s bulk job %s left %d records unprocessed",
                    sobject,
                    job_id,
                    unprocessed,
                )
        return [results[rid] for rid, _ in updates if rid in results]

    # ---- helpers ---------------------------------------------------------------------------

    def _bulk2(self, sobject: str) -> SFBulk2Type:
        # A new handler each time: it copies the session id when built, and simple-salesforce
        # may have logged in again since.
        bulk: SFBulk2Type = getattr(self._sf.bulk2, sobject)
        return bulk

    def _budget_covers(self, calls: int) -> bool:
        """Whether `calls` more requests fit above the budget's reserve (True while unknown)."""
        budget = self.budget
        remaining, limit = budget.remaining, budget.limit
        if remaining is None or limit is None:
            return True
        return remaining - limit * budget.reserve_fraction >= calls


class _TimeoutAdapter(HTTPAdapter):
    """Gives every request a timeout: simple-salesforce passes none, so a stall would hang."""

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = c.REQUEST_TIMEOUT
        return super().send(request, **kwargs)


def _typed(value: str, sf_type: str) -> Any:
    """Our plan carries strings; Collections wants JSON numbers and booleans for those types."""
    if value == "":
        return None
    if sf_type in ("double", "currency", "percent"):
        number = float(value)
        return int(number) if number.is_integer() else number
    if sf_type == "int":
        return int(float(value))
    if sf_type == "boolean":
        return value.lower() == "true"
    return value


def _bulk_cell(value: str, sf_type: str) -> str:
    """A plan value as a Bulk CSV cell: the same conversions as `_typed`, as text, and an empty
    value (clear the field) as #N/A, because an empty cell would leave the field unchanged."""
    typed = _typed(value, sf_type)
    if typed is None:
        return c.BULK_NULL
    if isinstance(typed, bool):
        return "true" if typed else "false"
    if sf_type in ("double", "currency", "percent"):
        # Plain decimal text, exactly as given: str(float) could write 1e+16 or round it.
        return format(Decimal(value.strip()), "f")
    return str(typed)


def _bulk_error(text: str) -> str:
    """Bulk's `sf__Error` (`CODE:message:Field1,Field2 --`) in the Collections form
    `CODE: message`, so a rejected row reads the same whichever path wrote it."""
    code, sep, rest = text.partition(":")
    if not sep or not code.isupper():
        return text
    rest = rest.strip()
    if rest.endswith("--"):
        rest = rest[:-2].rstrip()
        message, _, _ = rest.rpartition(":")
        rest = message if message else rest.rstrip(":")
    return f"{code}: {rest}"


def _csv_dicts(text: str) -> Iterator[dict[str, str]]:
    # newline="" keeps line breaks inside quoted values (Descriptions, addresses) intact.
    yield from csv.DictReader(io.StringIO(text, newline=""))


def _rest_rows(text: str, types: Mapping[str, str]) -> Iterable[dict[str, Any]]:
    """Rows of a Bulk query CSV page with each value as REST JSON gives it."""
    for row in _csv_dicts(text):
        yield {name: _rest_value(value, types.get(name, "string")) for name, value in row.items()}


def _rest_value(text: str, sf_type: str) -> Any:
    """One Bulk CSV value -> the REST JSON value: CSV has no null (empty is null) and no types."""
    if text == "":
        return None
    if sf_type == "boolean":
        return text.lower() == "true"
    if sf_type == "int":
        return int(float(text))
    if sf_type in ("double", "currency", "percent"):
        # REST JSON writes these as doubles (5.0, 1.5E7), which json reads as float.
        return float(text)
    if sf_type == "datetime":
        # Bulk writes 2024-01-17T19:55:04.000Z, REST 2024-01-17T19:55:04.000+0000.
        return rest_datetime(datetime.fromisoformat(text))
    return text  # text, picklists, ids, dates (2024-01-17 in both) and times as they are
