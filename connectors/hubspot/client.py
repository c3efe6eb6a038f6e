"""The HubSpot connector: incremental pulls, reconciliation reads, property bootstrap and batched
writes.

The only module (with its package) that imports hubspot-api-client. Records come out as flat dicts:
`id`, every requested property, `archived`, `_modified_at` (a tz-aware datetime) and `_deleted`;
engagements also carry `contact_ids`.
"""

import json
import logging
from collections.abc import Generator, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from hubspot import HubSpot
from hubspot.crm.associations.v4 import (
    BatchInputPublicFetchAssociationsBatchRequest,
    PublicFetchAssociationsBatchRequest,
)
from hubspot.crm.objects import (
    BatchInputSimplePublicObjectBatchInput,
    BatchReadInputSimplePublicObjectId,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInput,
    SimplePublicObjectId,
)
from hubspot.crm.properties import OptionInput, PropertyCreate, PropertyGroupCreate
from urllib3.util.retry import Retry

from connectors.hubspot import constants as c
from connectors.outcome import WriteOutcome
from connectors.ratelimit import BudgetExhausted, CallCounter, DailyBudget, SlidingWindowLimiter

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _status(exc: Exception) -> int | None:
    # Each HubSpot API package has its own ApiException class (trip-wire 10): match by attribute.
    return getattr(exc, "status", None)


def _epoch_ms(moment: datetime) -> int:
    # Exact integer milliseconds: `int(ts.timestamp() * 1000)` can land one ms low through float
    # rounding, which an EQ filter on an instant would silently turn into no match at all.
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _body(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return str(body or exc)


def _missing_ids(exc: Exception) -> list[str]:
    """The ids an OBJECT_NOT_FOUND error body names in its `context.ids` (none otherwise)."""
    try:
        body = json.loads(_body(exc))
    except ValueError:
        return []
    if not isinstance(body, dict) or body.get("category") != "OBJECT_NOT_FOUND":
        return []
    ids = (body.get("context") or {}).get("ids")
    return [str(i) for i in ids] if isinstance(ids, list) else []


class HubSpotConnector:
    """Talks to one HubSpot portal (or the sandbox) through the official client."""

    def __init__(
        self,
        access_token: str,
        base_url: str = c.DEFAULT_BASE_URL,
        *,
        burst_limit: tuple[int, float] | None = c.BURST_LIMIT,
        search_limit: tuple[int, float] | None = c.SEARCH_LIMIT,
        reserve_fraction: float = c.BUDGET_RESERVE,
    ) -> None:
        """`burst_limit` / `search_limit` are (calls, seconds); None paces nothing (a sandbox
        with its limits off)."""
        # urllib3 retries nothing on POST by default (trip-wire 11): search and batch are POSTs, so
        # allow every method and let 429/5xx be retried with jittered, capped backoff, honouring
        # Retry-After (up to its own cap). The numbers and their reasons are in constants.py.
        retry = Retry(
            total=c.RETRY_TOTAL,
            status_forcelist=c.RETRY_STATUSES,
            allowed_methods=None,
            backoff_factor=c.RETRY_BACKOFF_FACTOR,
            backoff_jitter=c.RETRY_BACKOFF_JITTER,
            backoff_max=c.RETRY_BACKOFF_MAX,
            respect_retry_after_header=True,
            retry_after_max=c.RETRY_AFTER_MAX,
            raise_on_status=False,
        )
        self._client = HubSpot(access_token=access_token, host=base_url.rstrip("/"), retry=retry)
        # Every `client.crm.objects.basic_api` access builds a new ApiClient and connection pool
        # (trip-wire 16): build each API object once.
        self._basic = self._client.crm.objects.basic_api
        self._search = self._client.crm.objects.search_api
        self._batch = self._client.crm.objects.batch_api
        self._properties = self._client.crm.properties.core_api
        self._groups = self._client.crm.properties.groups_api
        self._assoc = self._client.crm.associations.v4.batch_api
        self._events = self._client.events.events_api
        self._burst = SlidingWindowLimiter(*burst_limit) if burst_limit else None
        self._search_limit = SlidingWindowLimiter(*search_limit) if search_limit else None
        self.calls = CallCounter()
        self.budget = DailyBudget("hubspot", reserve_fraction=reserve_fraction)

    def _call(self, family: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self.budget.check()
        limiter = self._search_limit if family == "search" else self._burst
        if limiter is not None:
            limiter.acquire()
        self.calls.add(family)
        # The client sets no timeout of its own: a stalled connection would hang the run forever.
        result = fn(*args, _request_timeout=c.REQUEST_TIMEOUT, **kwargs)
        self._read_budget(fn)
        return result

    def _read_budget(self, fn: Any) -> None:
        # The daily headers come on non-search responses of private-app calls (not for OAuth
        # apps, and never on search): read them from the API object's last response.
        response = getattr(
            getattr(getattr(fn, "__self__", None), "api_client", None), "last_response", None
        )
        if response is None:
            return
        limit = response.getheader("X-HubSpot-RateLimit-Daily")
        remaining = response.getheader("X-HubSpot-RateLimit-Daily-Remaining")
        if limit and remaining and limit.isdigit() and remaining.isdigit():
            self.budget.update(int(limit) - int(remaining), int(limit))

    # ---- pull ------------------------------------------------------------------------------

    def pull(
        self,
        object_type: str,
        properties: Sequence[str],
        since: datetime | None,
        *,
        with_contacts: bool = False,
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield pages of records changed since `since` (everything when None)."""
        if object_type in c.EVENT_TYPES:
            yield from self._events_since(c.EVENT_TYPES[object_type], since)
        elif since is None:
            yield from self._list_all(object_type, properties, with_contacts)
        else:
            for page in self._search_since(object_type, properties, since):
                if with_contacts and page:
                    contacts = self._contacts_of(object_type, [r["id"] for r in page])
                    for r in page:
                        r["contact_ids"] = contacts.get(r["id"], [])
                yield page

    def pull_archived(
        self, object_type: str, properties: Sequence[str]
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield pages of archived (deleted) records. Search never returns them, so an incremental
        pull cannot see a delete: this listing is how a deleted record stops being alive."""
        yield from self._list_all(object_type, properties, False, archived=True)

    # ---- reconciliation --------------------------------------------------------------------

    def inventory(self, object_type: str) -> dict[str, datetime]:
        """id -> `updatedAt` of every live (not archived) record, for the nightly reconcile. The
        times equal the `_modified_at` that `pull` gives the same record versions."""
        self._require_crm_object(object_type)
        out: dict[str, datetime] = {}
        # The list endpoint, not search: it has no 10,000-result cap, no 5/s search bucket and
        # never lags writes. Asking for the id alone keeps each page small: HubSpot always adds
        # the created and modified dates, and an empty `properties` would bring the object's
        # default properties (a contact's name and email) instead.
        for page in self._list_all(object_type, [c.ID_PROPERTY], False):
            for record in page:
                if not record["_deleted"]:
                    out[record["id"]] = record["_modified_at"]
        return out

    def fetch(
        self,
        object_type: str,
        properties: Sequence[str],
        ids: Sequence[str],
        *,
        with_contacts: bool = False,
    ) -> list[dict[str, Any]]:
        """The current versions of `ids` (batch read, 100 ids a call), flat like `pull`'s records,
        in the order asked. Ids HubSpot no longer has (deleted, archived or merged away) are
        absent; every record is keyed by its own id, never by an id that resolved to it.
        `with_contacts` adds `contact_ids` as `pull` does for engagements."""
        self._require_crm_object(object_type)
        # HubSpot ids are digit strings: anything else cannot exist and is not worth a slot in a
        # batch. Duplicates are asked once.
        wanted = list(dict.fromkeys(str(i) for i in ids if str(i).isdigit()))
        found: dict[str, dict[str, Any]] = {}
        for i in range(0, len(wanted), c.BATCH_SIZE):
            chunk = wanted[i : i + c.BATCH_SIZE]
            asked = set(chunk)
            for record in self._read_chunk(object_type, properties, chunk):
                # Batch read resolves a merged-away contact id to the surviving record and
                # reports no error for it: the survivor comes back under its own id. Keep it only
                # when it was asked for itself, so it can never stand in for the id merged away.
                if record["id"] in asked and not record["_deleted"]:
                    found[record["id"]] = record
        records = [found[i] for i in wanted if i in found]
        if with_contacts and records:
            contacts = self._contacts_of(object_type, [r["id"] for r in records])
            for r in records:
                r["contact_ids"] = contacts.get(r["id"], [])
        return records

    def _read_chunk(
        self, object_type: str, properties: Sequence[str], chunk: Sequence[str]
    ) -> list[dict[str, Any]]:
        body = BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id=x) for x in chunk],
            properties=list(properties),
            # Required by the spec, even when empty.
            properties_with_history=[],
        )
        try:
            resp = self._call("batch_read", self._batch.read, object_type, body, archived=False)
        except Exception as exc:  # each API package raises its own ApiException class
            # Unknown ids come back as a 207 whose OBJECT_NOT_FOUND error lists them beside the
            # found records. Should a call where no id is found answer 404 with that same error
            # instead, none exist. Any other failure (a 404 naming no ids is a wrong route, not
            # a deletion) is raised: read as "all absent" it would look like a mass delete.
            if _status(exc) == 404 and _missing_ids(exc):
                return []
            raise
        # A 207's `errors` name only the ids that were not found: their absence says it all.
        return [self._flatten(obj) for obj in resp.results or []]

    @staticmethod
    def _require_crm_object(object_type: str) -> None:
        if object_type in c.EVENT_TYPES:
            raise ValueError(f"{object_type} are timeline events, not CRM objects with ids")

    def _list_all(
        self,
        object_type: str,
        properties: Sequence[str],
        with_contacts: bool,
        *,
        archived: bool = False,
    ) -> Iterator[list[dict[str, Any]]]:
        after: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "limit": c.LIST_PAGE_SIZE,
                # a str would be split into characters (trip-wire 9)
                "properties": list(properties),
                "archived": archived,
            }
            if with_contacts:
                kwargs["associations"] = ["contacts"]
            if after:
                kwargs["after"] = after
            page = self._call("list", self._basic.get_page, object_type, **kwargs)
            records = []
            for obj in page.results or []:
                record = self._flatten(obj)
                if with_contacts:
                    assoc = (obj.associations or {}).get("contacts")
                    ids = {a.id for a in (assoc.results if assoc else [])}
                    record["contact_ids"] = sorted(ids, key=int)
                records.append(record)
            yield records
            if page.paging is None or page.paging.next is None:
                return
            after = page.paging.next.after

    def _search_since(
        self, object_type: str, properties: Sequence[str], since: datetime
    ) -> Iterator[list[dict[str, Any]]]:
        prop = c.MODIFIED_PROPERTY.get(object_type, c.DEFAULT_MODIFIED_PROPERTY)
        start = since - timedelta(seconds=c.SEARCH_OVERLAP_S)
        operator = "GTE"
        seen: set[str] = set()
        while True:
            window = [Filter(property_name=prop, operator=operator, value=str(_epoch_ms(start)))]
            capped, newest, _ = yield from self._search_window(
                object_type, window, prop, properties, seen
            )
            if not capped:
                return
            if newest is not None and newest > start:
                # Past 10,000 results search refuses to page: open a new window at the newest
                # timestamp seen. Records sharing that instant come again and are deduped by id.
                start, operator = newest, "GTE"
                continue
            # The whole capped window sat on the instant `start`: more records share it than one
            # window can hold, so re-windowing on time cannot advance. Page through that instant
            # by id instead, then go on strictly after it.
            yield from self._search_instant(object_type, prop, start, properties, seen)
            operator = "GT"

    def _search_instant(
        self,
        object_type: str,
        prop: str,
        instant: datetime,
        properties: Sequence[str],
        seen: set[str],
    ) -> Iterator[list[dict[str, Any]]]:
        """Every record whose modified time is exactly `instant`, by ascending id. Search allows
        one sort only, so the id order (not the time order) is what makes a cursor possible."""
        last_id: int | None = None
        while True:
            filters = [Filter(property_name=prop, operator="EQ", value=str(_epoch_ms(instant)))]
            if last_id is not None:
                filters.append(
                    Filter(property_name=c.ID_PROPERTY, operator="GT", value=str(last_id))
                )
            capped, _, largest = yield from self._search_window(
                object_type, filters, c.ID_PROPERTY, properties, seen
            )
            if not capped or largest is None:
                return
            last_id = largest

    def _search_window(
        self,
        object_type: str,
        filters: list[Filter],
        sort_by: str,
        properties: Sequence[str],
        seen: set[str],
    ) -> Generator[list[dict[str, Any]], None, tuple[bool, datetime | None, int | None]]:
        """Page one search query, ascending by `sort_by`, as far as the result cap allows; yield
        the records not in `seen` (adding them). Returns (stopped at the cap, newest modified
        time, largest id) over every result of the window, repeats included."""
        after = 0
        newest: datetime | None = None
        largest: int | None = None
        while True:
            request = PublicObjectSearchRequest(
                filter_groups=[FilterGroup(filters=filters)],
                sorts=[{"propertyName": sort_by, "direction": "ASCENDING"}],  # type: ignore[list-item]
                properties=list(properties),
                limit=c.SEARCH_PAGE_SIZE,
                after=str(after),
            )
            page = self._call("search", self._search.do_search, object_type, request)
            records = []
            for obj in page.results or []:
                record = self._flatten(obj)
                modified = record["_modified_at"]
                if newest is None or modified > newest:
                    newest = modified
                if largest is None or int(record["id"]) > largest:
                    largest = int(record["id"])
                if record["id"] not in seen:
                    seen.add(record["id"])
                    records.append(record)
            if records:
                yield records
            if page.paging is None or page.paging.next is None:
                return False, newest, largest
            after = int(page.paging.next.after)
            if after + c.SEARCH_PAGE_SIZE > c.SEARCH_RESULT_CAP:
                return True, newest, largest

    def _events_since(
        self, event_type: str, since: datetime | None
    ) -> Iterator[list[dict[str, Any]]]:
        """Contact timeline events (page views) from the Events API, oldest first."""
        after: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "object_type": "contact",
                "event_type": event_type,
                "limit": c.EVENTS_PAGE_SIZE,
                "sort": ["ASCENDING"],
            }
            if since is not None:
                kwargs["occurred_after"] = since - timedelta(seconds=c.SEARCH_OVERLAP_S)
            if after:
                kwargs["after"] = after
            page = self._call("events", self._events.get_page, **kwargs)
            yield [
                {
                    "id": str(e.id),
                    "objectId": str(e.object_id),
                    "eventType": e.event_type,
                    "occurredAt": e.occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    **(e.properties or {}),
                    "_modified_at": e.occurred_at,
                    "_deleted": False,
                }
                for e in page.results or []
            ]
            if page.paging is None or page.paging.next is None:
                return
            after = page.paging.next.after

    def _contacts_of(self, object_type: str, ids: Sequence[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for i in range(0, len(ids), c.ASSOCIATION_BATCH_SIZE):
            chunk = ids[i : i + c.ASSOCIATION_BATCH_SIZE]
            body = BatchInputPublicFetchAssociationsBatchRequest(
                inputs=[PublicFetchAssociationsBatchRequest(id=x) for x in chunk]
            )
            resp = self._call("associations", self._assoc.get_page, object_type, "contacts", body)
            for result in resp.results or []:
                out[str(result._from.id)] = sorted(
                    (str(t.to_object_id) for t in result.to or []), key=int
                )
        return out

    @staticmethod
    def _flatten(obj: Any) -> dict[str, Any]:
        record: dict[str, Any] = {"id": str(obj.id)}
        record.update(obj.properties or {})
        archived = bool(getattr(obj, "archived", False))
        record["archived"] = "true" if archived else "false"
        record["_modified_at"] = obj.updated_at
        record["_deleted"] = archived
        return record

    # ---- properties ------------------------------------------------------------------------

    def ensure_properties(
        self, object_type: str, definitions: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        """Create the missing custom properties (and their group); returns the names created."""
        existing = self._call("properties", self._properties.get_all, object_type)
        names = {p.name for p in existing.results or []}
        missing = [d for d in definitions if d["name"] not in names]
        if not missing:
            return []
        wanted_groups = {d.get("groupName") or c.PROPERTY_GROUP for d in missing}
        groups = self._call("properties", self._groups.get_all, object_type)
        for group in wanted_groups - {g.name for g in groups.results or []}:
            self._create_once(
                self._groups.create, object_type, PropertyGroupCreate(name=group, label=group)
            )
        for d in missing:
            options = [
                OptionInput(label=o["label"], value=o["value"], display_order=i, hidden=False)
                for i, o in enumerate(d.get("options") or [])
            ]
            spec = PropertyCreate(
                name=d["name"],
                label=d["label"],
                type=d["type"],
                field_type=d["fieldType"],
                group_name=d.get("groupName") or c.PROPERTY_GROUP,
                description=d.get("description"),
                options=options or None,
            )
            self._create_once(self._properties.create, object_type, spec)
            log.info("created HubSpot %s property %s", object_type, d["name"])
        return [d["name"] for d in missing]

    def _create_once(self, create: Any, object_type: str, spec: Any) -> None:
        """Create a property or group. A create HubSpot committed but answered with a gateway
        error is retried by urllib3 and then meets 409: if the name is now listed, that was our
        own create. A name taken by an archived property is not: that is raised, for a person."""
        try:
            self._call("properties", create, object_type, spec)
        except Exception as exc:  # each API package raises its own ApiException class
            if _status(exc) != 409:
                raise
            if create == self._properties.create:
                listed = self._call("properties", self._properties.get_all, object_type)
            else:
                listed = self._call("properties", self._groups.get_all, object_type)
            if spec.name not in {p.name for p in listed.results or []}:
                raise
            log.info("HubSpot %s %s already existed (a retried create)", object_type, spec.name)

    # ---- write -----------------------------------------------------------------------------

    def batch_update(
        self, object_type: str, updates: Sequence[tuple[str, Mapping[str, str]]]
    ) -> list[WriteOutcome]:
        """Update records in batches of 100; one bad record never fails its neighbours. Stops
        before the daily budget's reserve; only attempted records get an outcome."""
        outcomes: list[WriteOutcome] = []
        for i in range(0, len(updates), c.BATCH_SIZE):
            try:
                outcomes.extend(self._update_chunk(object_type, updates[i : i + c.BATCH_SIZE]))
            except BudgetExhausted:
                # Records not attempted get no outcome: they stay in the plan for the next run.
                break
        return outcomes

    def _update_chunk(
        self, object_type: str, chunk: Sequence[tuple[str, Mapping[str, str]]]
    ) -> list[WriteOutcome]:
        body = BatchInputSimplePublicObjectBatchInput(
            inputs=[SimplePublicObjectBatchInput(id=rid, properties=dict(p)) for rid, p in chunk]
        )
        try:
            resp = self._call("batch_update", self._batch.update, object_type, body)
        except Exception as exc:  # each API package raises its own ApiException class
            status = _status(exc)
            if status is None or status >= 500 or status == 429:
                raise
            if len(chunk) == 1:
                return [WriteOutcome(chunk[0][0], False, f"HTTP {status}: {_body(exc)}")]
            # A validation error rejects the whole call: split it to isolate the bad record(s).
            mid = len(chunk) // 2
            return self._update_chunk(object_type, chunk[:mid]) + self._update_chunk(
                object_type, chunk[mid:]
            )
        failed: dict[str, str] = {}
        for err in getattr(resp, "errors", None) or []:
            for rid in (err.context or {}).get("ids", []):
                failed[str(rid)] = f"{err.category}: {err.message}"
        return [WriteOutcome(rid, rid not in failed, failed.get(rid)) for rid, _ in chunk]
