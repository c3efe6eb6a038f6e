"""Contract tests for the HubSpot emulator, driven only through the official client.

Every request goes through `hubspot-api-client==12.0.0` against the emulator served in-process by
werkzeug, so what passes here is what the worker will see. Raw bodies (for schema validation)
come from the same client with `_preload_content=False`; error bodies from `ApiException.body`.
"""

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hubspot import HubSpot
from hubspot.crm.associations.v4 import AssociationSpec
from hubspot.crm.contacts import (
    ApiException,
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchInputSimplePublicObjectId,
    BatchReadInputSimplePublicObjectId,
    PublicObjectSearchRequest,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.contacts.exceptions import NotFoundException
from hubspot.crm.contacts.exceptions import UnauthorizedException as ContactsUnauthorized
from hubspot.crm.objects import ApiException as ObjectsApiException
from hubspot.crm.properties import ApiException as PropertiesApiException
from hubspot.crm.properties import PropertyCreate, PropertyGroupCreate
from werkzeug.serving import BaseWSGIServer, make_server

from connectors.sandbox.hubspot_app import HubSpotSandbox

TOKEN = "pat-sandbox-leadsync"
SPECS = Path("/work/shared/reference/hubspot-openapi")
BASE = datetime(2024, 1, 1, tzinfo=UTC)
# Contact properties docs/sandbox-data.md says the worker relies on.
CONTRACT_CONTACT_PROPERTIES = (
    "email",
    "hs_additional_emails",
    "firstname",
    "lastname",
    "company",
    "jobtitle",
    "industry",
    "numemployees",
    "phone",
    "mobilephone",
    "country",
    "state",
    "city",
    "zip",
    "address",
    "hs_language",
    "lifecyclestage",
    "hs_lead_status",
    "hubspot_owner_id",
    "hs_email_optout",
    "hs_email_bounce",
    "hs_analytics_source",
    "hs_analytics_num_page_views",
    "hs_analytics_last_visit_timestamp",
    "recent_conversion_event_name",
    "recent_conversion_date",
    "first_conversion_event_name",
    "first_conversion_date",
    "num_conversion_events",
    "salesforceleadid",
    "salesforcecontactid",
    "hs_merged_object_ids",
)


# ------------------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------------------


class FakeClock:
    """Settable clock so modified-date assertions are exact."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class ServerTime:
    """WSGI middleware adding up the time the app spends per request."""

    def __init__(self, app: HubSpotSandbox) -> None:
        self.app = app
        self.seconds = 0.0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        started = time.perf_counter()
        try:
            return list(self.app(environ, start_response))
        finally:
            with self._lock:
                self.seconds += time.perf_counter() - started


@dataclass
class Hub:
    """A served sandbox plus cached API objects (each `client.crm...api` access builds a new
    ApiClient and connection pool, so they are fetched once)."""

    sandbox: HubSpotSandbox
    timer: ServerTime
    client: HubSpot
    contacts: Any = field(init=False)
    contacts_batch: Any = field(init=False)
    contacts_search: Any = field(init=False)
    companies: Any = field(init=False)
    objects: Any = field(init=False)
    objects_search: Any = field(init=False)
    properties: Any = field(init=False)
    groups: Any = field(init=False)
    assoc_batch: Any = field(init=False)
    assoc_basic: Any = field(init=False)

    def __post_init__(self) -> None:
        crm = self.client.crm
        self.contacts = crm.contacts.basic_api
        self.contacts_batch = crm.contacts.batch_api
        self.contacts_search = crm.contacts.search_api
        self.companies = crm.companies.basic_api
        self.objects = crm.objects.basic_api
        self.objects_search = crm.objects.search_api
        self.properties = crm.properties.core_api
        self.groups = crm.properties.groups_api
        self.assoc_batch = crm.associations.v4.batch_api
        self.assoc_basic = crm.associations.v4.basic_api


@pytest.fixture
def serve() -> Iterator[Callable[..., Hub]]:
    servers: list[BaseWSGIServer] = []

    def start(token: str = TOKEN, **options: Any) -> Hub:
        for key in ("ten_second_limit", "daily_limit", "search_per_second_limit"):
            options.setdefault(key, None)
        sandbox = HubSpotSandbox(**options)
        timer = ServerTime(sandbox)
        server = make_server("127.0.0.1", 0, timer, threaded=True)
        servers.append(server)
        threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
        client = HubSpot(access_token=token, host=f"http://127.0.0.1:{server.server_port}")
        return Hub(sandbox, timer, client)

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def hub(serve: Callable[..., Hub]) -> Hub:
    return serve()


def contacts(n: int, *, start_id: int = 1001, step_minutes: int = 1) -> list[dict[str, Any]]:
    return [
        {
            "id": str(start_id + i),
            "properties": {
                "email": f"person{i}@example.com",
                "firstname": f"First{i}",
                "lastname": f"Last{i}",
                "lifecyclestage": "lead" if i % 2 else "subscriber",
                "hs_lead_status": None,
                "jobtitle": "Head of Marketing" if i % 3 == 0 else "Engineer",
            },
            "createdAt": BASE + timedelta(minutes=i * step_minutes),
            "updatedAt": BASE + timedelta(days=1, minutes=i * step_minutes),
        }
        for i in range(n)
    ]


def error_body(exc: Any) -> dict[str, Any]:
    raw = exc.body
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def header(exc: Any, name: str) -> str:
    headers = exc.headers
    assert headers is not None
    return headers[name]


def raw_json(response: Any) -> dict[str, Any]:
    return json.loads(response.data)


_SCHEMA_CACHE: dict[str, dict[str, Any]] = {}


def validate(spec_file: str, component: str, body: Any) -> None:
    """Validate a response body against a component schema of the official OpenAPI spec."""
    if spec_file not in _SCHEMA_CACHE:
        _SCHEMA_CACHE[spec_file] = json.loads((SPECS / spec_file).read_text())
    schema = {
        "$ref": f"#/components/schemas/{component}",
        "components": _SCHEMA_CACHE[spec_file]["components"],
    }
    jsonschema.Draft202012Validator(schema).validate(body)


# ------------------------------------------------------------------------------------------------
# List / read
# ------------------------------------------------------------------------------------------------


def test_list_paging_visits_every_record_once_and_last_page_omits_paging(hub: Hub) -> None:
    hub.sandbox.load("contacts", contacts(2345))
    seen: list[str] = []
    pages = 0
    after: str | None = None
    hub.timer.seconds = 0.0
    while True:
        page = hub.contacts.get_page(limit=100, after=after, properties=["email"], archived=False)
        pages += 1
        seen.extend(r.id for r in page.results)
        if page.paging is None:
            break
        after = page.paging.next.after
    assert pages == 24
    assert len(seen) == 2345
    assert len(set(seen)) == 2345
    assert seen == [str(1001 + i) for i in range(2345)]  # stable numeric id order
    assert hub.timer.seconds < 1.0, f"server spent {hub.timer.seconds:.2f}s on 24 pages"
    assert hub.sandbox.call_counts()["list"] == 24


def test_list_cursor_is_a_bisect_and_archived_pages_do_not_scan(hub: Hub) -> None:
    hub.sandbox.load(
        "contacts",
        [{"id": str(i), "properties": {"email": f"c{i}@x.io"}} for i in range(1, 100_001)],
    )
    hub.contacts.archive("99990")
    hub.contacts.archive("99995")
    deep = hub.contacts.get_page(limit=100, after="99950", properties=["email"])
    assert [r.id for r in deep.results][:3] == ["99950", "99951", "99952"]
    assert len(deep.results) == 49 and deep.paging is None
    hub.timer.seconds = 0.0
    pages = [hub.contacts.get_page(limit=100, archived=True) for _ in range(30)]
    assert [r.id for r in pages[-1].results] == ["99990", "99995"]
    # Archived records have their own sorted id list, so an archived page is a bisect and a
    # slice; skipping over 100,000 live records cost ~9 ms a page (0.27 s here) before.
    assert hub.timer.seconds < 0.1, f"server spent {hub.timer.seconds:.2f}s on 30 pages"


def test_compact_storage_keeps_absent_and_null_properties_apart(hub: Hub) -> None:
    hub.sandbox.load(
        "contacts",
        [
            {"id": "1", "properties": {"email": None, "firstname": "A"}},
            {"id": "2", "properties": {"firstname": "B"}},
        ],
    )
    hub.contacts.update("2", SimplePublicObjectInput(properties={"jobtitle": "CTO"}))
    hub.contacts.update("2", SimplePublicObjectInput(properties={"firstname": ""}))
    first, second = (r["properties"] for r in hub.sandbox.records("contacts"))
    assert first["email"] is None and "jobtitle" not in first
    assert "email" not in second
    assert (second["jobtitle"], second["firstname"]) == ("CTO", None)
    page = hub.contacts.get_page(properties=["email", "jobtitle", "firstname"])
    assert [r.properties["jobtitle"] for r in page.results] == [None, "CTO"]
    assert [r.properties["email"] for r in page.results] == [None, None]


def test_list_raw_shape_matches_spec_and_last_page_has_no_paging_key(hub: Hub) -> None:
    hub.sandbox.load("companies", [{"id": "2001", "properties": {"name": "Acme"}}])
    hub.sandbox.load(
        "contacts",
        [{**c, "associations": {"companies": ["2001"]}} for c in contacts(3)],
    )
    first = raw_json(
        hub.contacts.get_page(limit=2, associations=["companies"], _preload_content=False)
    )
    validate(
        "contacts.json", "CollectionResponseSimplePublicObjectWithAssociationsForwardPaging", first
    )
    assert first["paging"]["next"]["after"] == "1003"
    record = first["results"][0]
    # Default properties for contacts plus the three always-present ones, alphabetically.
    assert list(record["properties"]) == [
        "createdate",
        "email",
        "firstname",
        "hs_object_id",
        "lastmodifieddate",
        "lastname",
    ]
    assert record["createdAt"] == "2024-01-01T00:00:00.000Z"
    assert record["updatedAt"] == "2024-01-02T00:00:00.000Z"
    assert record["properties"]["lastmodifieddate"] == "2024-01-02T00:00:00.000Z"
    assert record["associations"]["companies"]["results"] == [
        {"id": "2001", "type": "contact_to_company"},
        {"id": "2001", "type": "contact_to_company_unlabeled"},
    ]
    last = raw_json(hub.contacts.get_page(limit=2, after="1003", _preload_content=False))
    assert "paging" not in last
    assert [r["id"] for r in last["results"]] == ["1003"]


def test_list_accepts_comma_separated_params_and_case_insensitive_archived(hub: Hub) -> None:
    hub.sandbox.load("contacts", contacts(4))
    # A list element with commas goes out as `properties=email,jobtitle`.
    page = hub.contacts.get_page(properties=["email,jobtitle"])
    assert set(page.results[0].properties) == {
        "createdate",
        "email",
        "hs_object_id",
        "jobtitle",
        "lastmodifieddate",
    }
    hub.contacts.archive("1002")
    archived = hub.contacts.get_page(archived=True)  # sent as `archived=True`
    assert [r.id for r in archived.results] == ["1002"]
    assert archived.results[0].archived is True
    assert archived.results[0].archived_at is not None
    live = hub.contacts.get_page(archived=False)
    assert [r.id for r in live.results] == ["1001", "1003", "1004"]
    with pytest.raises(ApiException) as too_big:
        hub.contacts.get_page(limit=101)
    assert too_big.value.status == 400


def test_default_properties_per_object_type(hub: Hub) -> None:
    hub.sandbox.load(
        "companies", [{"id": "2001", "properties": {"name": "Acme", "domain": "a.co"}}]
    )
    hub.sandbox.load(
        "emails",
        [{"id": "3001", "properties": {"hs_timestamp": "2024-03-01T10:00:00.000Z"}}],
    )
    company = hub.companies.get_by_id("2001")
    assert set(company.properties) == {
        "createdate",
        "domain",
        "hs_lastmodifieddate",
        "hs_object_id",
        "name",
    }
    email = hub.objects.get_by_id("emails", "3001")
    assert set(email.properties) == {"hs_createdate", "hs_lastmodifieddate", "hs_object_id"}


def test_get_by_id_email_id_property_and_404(hub: Hub) -> None:
    hub.sandbox.load("contacts", contacts(3))
    by_email = hub.contacts.get_by_id("PERSON2@example.com", id_property="email")
    assert by_email.id == "1003"
    requested = hub.contacts.get_by_id("1001", properties=["lifecyclestage", "hs_lead_status"])
    assert requested.properties["lifecyclestage"] == "subscriber"
    assert requested.properties["hs_lead_status"] is None  # requested-but-empty → null
    with pytest.raises(NotFoundException) as missing:
        hub.contacts.get_by_id("999999")
    assert missing.value.status == 404
    assert error_body(missing.value)["category"] == "OBJECT_NOT_FOUND"
    assert header(missing.value, "X-HubSpot-Correlation-Id")


# ------------------------------------------------------------------------------------------------
# Writes
# ------------------------------------------------------------------------------------------------


def test_create_returns_model_on_201_and_conflicts_on_existing_email(
    serve: Callable[..., Hub],
) -> None:
    clock = FakeClock(BASE + timedelta(days=30))
    hub = serve(clock=clock)
    hub.sandbox.load("contacts", contacts(2))
    created = hub.contacts.create(
        SimplePublicObjectInputForCreate(properties={"email": "new@example.com", "firstname": "N"})
    )
    assert created is not None  # a 200 would have deserialised to None (trip-wire 8)
    assert int(created.id) > 1002  # new ids go above the largest loaded id
    assert created.properties["email"] == "new@example.com"
    assert created.created_at == clock.now
    with pytest.raises(ApiException) as conflict:
        hub.contacts.create(
            SimplePublicObjectInputForCreate(properties={"email": "person1@example.com"})
        )
    assert conflict.value.status == 409
    body = error_body(conflict.value)
    assert body["category"] == "CONFLICT"
    assert body["message"] == "Contact already exists. Existing ID: 1002"
    validate("contacts.json", "Error", body)


def test_update_bumps_modified_date_on_every_write_and_empty_string_clears(
    serve: Callable[..., Hub],
) -> None:
    clock = FakeClock(BASE + timedelta(days=10))
    hub = serve(clock=clock)
    hub.sandbox.load("contacts", contacts(1))
    clock.now = BASE + timedelta(days=11, milliseconds=123)
    # Same value as stored: HubSpot still bumps lastmodifieddate/updatedAt.
    updated = hub.contacts.update(
        "1001", SimplePublicObjectInput(properties={"firstname": "First0"})
    )
    assert updated.updated_at == clock.now
    assert updated.properties["lastmodifieddate"] == "2024-01-12T00:00:00.123Z"
    hub.contacts.update("1001", SimplePublicObjectInput(properties={"jobtitle": ""}))
    assert hub.sandbox.records("contacts")[0]["properties"]["jobtitle"] is None
    history = hub.contacts.get_by_id("1001", properties_with_history=["firstname"])
    assert [h.value for h in history.properties_with_history["firstname"]] == ["First0", "First0"]
    with pytest.raises(ApiException) as empty:
        hub.contacts.update("1001", SimplePublicObjectInput(properties={}))
    assert empty.value.status == 400


def test_read_only_and_unknown_properties_are_rejected(hub: Hub) -> None:
    hub.sandbox.load("contacts", contacts(1))
    with pytest.raises(ApiException) as read_only:
        hub.contacts.update("1001", SimplePublicObjectInput(properties={"createdate": "1"}))
    body = error_body(read_only.value)
    assert read_only.value.status == 400
    assert body["category"] == "VALIDATION_ERROR"
    assert body["errors"][0]["code"] == "READ_ONLY_VALUE"
    with pytest.raises(ApiException) as unknown:
        hub.contacts.update("1001", SimplePublicObjectInput(properties={"no_such_thing": "x"}))
    assert error_body(unknown.value)["errors"][0]["code"] == "PROPERTY_DOESNT_EXIST"


def test_engagement_create_requires_hs_timestamp_and_links_associations(hub: Hub) -> None:
    hub.sandbox.load("contacts", contacts(1))
    with pytest.raises(ObjectsApiException) as missing:  # each API package has its own class
        hub.objects.create("notes", {"properties": {"hs_note_body": "hi"}})
    assert missing.value.status == 400
    note = hub.objects.create(
        "notes",
        {
            "properties": {"hs_note_body": "hi", "hs_timestamp": "1717000000000"},
            "associations": [
                {
                    "to": {"id": "1001"},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}],
                }
            ],
        },
    )
    assert note.properties["hs_timestamp"] == "2024-05-29T16:26:40.000Z"  # epoch-ms normalised
    page = hub.assoc_basic.get_page("contacts", "1001", "notes")
    assert page.results[0].to_object_id == note.id
    assert page.results[0].association_types[0].type_id == 201


# ------------------------------------------------------------------------------------------------
# Batch
# ------------------------------------------------------------------------------------------------


def test_batch_update_100_ok_and_101_is_400(hub: Hub) -> None:
    hub.sandbox.load("contacts", contacts(101))
    inputs = [{"id": str(1001 + i), "properties": {"jobtitle": "CMO"}} for i in range(101)]
    ok = hub.contacts_batch.update(BatchInputSimplePublicObjectBatchInput(inputs=inputs[:100]))
    assert type(ok).__name__ == "BatchResponseSimplePublicObject"
    assert ok.status == "COMPLETE"
    assert len(ok.results) == 100
    with pytest.raises(ApiException) as too_many:
        hub.contacts_batch.update(BatchInputSimplePublicObjectBatchInput(inputs=inputs))
    assert too_many.value.status == 400
    assert error_body(too_many.value)["category"] == "VALIDATION_ERROR"
    titles = {r["properties"]["jobtitle"] for r in hub.sandbox.records("contacts")[:100]}
    assert titles == {"CMO"}
    assert hub.sandbox.call_counts()["batch_update"] == 2


def test_batch_update_partial_207_and_whole_call_400_on_bad_property(hub: Hub) -> None:
    hub.sandbox.load("contacts", contacts(2))
    partial = hub.contacts_batch.update(
        BatchInputSimplePublicObjectBatchInput(
            inputs=[
                {"id": "1001", "properties": {"jobtitle": "CEO"}},
                {"id": "424242", "properties": {"jobtitle": "CEO"}},
            ]
        )
    )
    assert type(partial).__name__ == "BatchResponseSimplePublicObjectWithErrors"
    assert partial.num_errors == 1
    assert partial.errors[0].category == "OBJECT_NOT_FOUND"
    assert partial.errors[0].context == {"ids": ["424242"]}
    assert [r.id for r in partial.results] == ["1001"]
    with pytest.raises(ApiException) as invalid:
        hub.contacts_batch.update(
            BatchInputSimplePublicObjectBatchInput(
                inputs=[
                    {"id": "1001", "properties": {"jobtitle": "CTO"}},
                    {"id": "1002", "properties": {"lifecyclestage": "not-a-stage"}},
                ]
            )
        )
    assert invalid.value.status == 400
    assert error_body(invalid.value)["errors"][0]["code"] == "INVALID_OPTION"
    # Nothing from the rejected call was written.
    assert hub.sandbox.records("contacts")[0]["properties"]["jobtitle"] == "CEO"


def test_rejected_record_ids_fail_alone_in_batches_and_whole_in_a_single_patch(hub: Hub) -> None:
    hub.sandbox.load("contacts", contacts(3))
    hub.sandbox.reject_record_ids["1002"] = "Blocked by a validation rule"
    raw = hub.contacts_batch.update_with_http_info(
        BatchInputSimplePublicObjectBatchInput(
            inputs=[{"id": str(i), "properties": {"jobtitle": "CEO"}} for i in (1001, 1002, 1003)]
        ),
        _preload_content=False,
    )
    assert raw.status == 207
    payload = raw_json(raw)
    validate("contacts.json", "BatchResponseSimplePublicObjectWithErrors", payload)
    assert [r["id"] for r in payload["results"]] == ["1001", "1003"]
    assert payload["numErrors"] == 1
    error = payload["errors"][0]
    assert error["category"] == "VALIDATION_ERROR"
    assert error["context"] == {"ids": ["1002"]}
    assert error["message"] == "Blocked by a validation rule"
    titles = {r["id"]: r["properties"]["jobtitle"] for r in hub.sandbox.records("contacts")}
    assert titles == {"1001": "CEO", "1002": "Engineer", "1003": "CEO"}

    # Upsert by email: the rejection names the record (1002 is person1@...); the error reports
    # the id the caller sent, and the other input is still created.
    upsert = hub.contacts_batch.upsert(
        BatchInputSimplePublicObjectBatchInputUpsert(
            inputs=[
                {"id": "person1@example.com", "idProperty": "email", "properties": {"city": "X"}},
                {"id": "new@example.com", "idProperty": "email", "properties": {"city": "Y"}},
            ]
        )
    )
    assert type(upsert).__name__ == "BatchResponseSimplePublicUpsertObjectWithErrors"
    assert [r.new for r in upsert.results] == [True]
    assert upsert.errors[0].context == {"ids": ["person1@example.com"]}

    # Create: the input's objectWriteTraceId names it.
    hub.sandbox.reject_record_ids["trace-2"] = "No duplicates"
    created = hub.contacts_batch.create(
        BatchInputSimplePublicObjectBatchInputForCreate(
            inputs=[
                {"properties": {"email": "a@x.io"}, "objectWriteTraceId": "trace-1"},
                {"properties": {"email": "b@x.io"}, "objectWriteTraceId": "trace-2"},
            ]
        )
    )
    assert [r.properties["email"] for r in created.results] == ["a@x.io"]
    assert created.errors[0].context == {"ids": ["trace-2"]}
    assert "b@x.io" not in {r["properties"].get("email") for r in hub.sandbox.records("contacts")}

    with pytest.raises(ApiException) as single:
        hub.contacts.update("1002", SimplePublicObjectInput(properties={"jobtitle": "CTO"}))
    assert single.value.status == 400
    body = error_body(single.value)
    assert (body["category"], body["message"]) == (
        "VALIDATION_ERROR",
        "Blocked by a validation rule",
    )
    validate("contacts.json", "Error", body)
    hub.sandbox.reject_record_ids.clear()
    hub.contacts.update("1002", SimplePublicObjectInput(properties={"jobtitle": "CTO"}))


def test_batch_read_207_matches_spec(hub: Hub) -> None:
    hub.sandbox.load("contacts", contacts(2))
    body = BatchReadInputSimplePublicObjectId(
        inputs=[{"id": "1001"}, {"id": "99"}], properties=["email"], properties_with_history=[]
    )
    parsed = hub.contacts_batch.read(body)
    assert type(parsed).__name__ == "BatchResponseSimplePublicObjectWithErrors"
    assert parsed.num_errors == 1
    raw = hub.contacts_batch.read_with_http_info(body, _preload_content=False)
    assert raw.status == 207
    payload = raw_json(raw)
    validate("contacts.json", "BatchResponseSimplePublicObjectWithErrors", payload)
    assert payload["errors"][0]["context"] == {"ids": ["99"]}
    assert payload["errors"][0]["message"].startswith("Could not get some CONTACT objects")


def test_batch_archive_hides_records_from_list_and_search(hub: Hub) -> None:
    hub.sandbox.load("contacts", contacts(3))
    hub.contacts_batch.archive(BatchInputSimplePublicObjectId(inputs=[{"id": "1002"}]))
    assert [r.id for r in hub.contacts.get_page().results] == ["1001", "1003"]
    found = hub.contacts_search.do_search(PublicObjectSearchRequest(limit=10))
    assert found.total == 2


# ------------------------------------------------------------------------------------------------
# Search
# ------------------------------------------------------------------------------------------------


def search(hub: Hub, **body: Any) -> Any:
    return hub.contacts_search.do_search(PublicObjectSearchRequest(**body))


def test_search_filters_sort_and_total(hub: Hub) -> None:
    hub.sandbox.load("contacts", contacts(300))
    cutoff = int((BASE + timedelta(days=1, minutes=100)).timestamp() * 1000)
    window = search(
        hub,
        filter_groups=[
            {
                "filters": [
                    {"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(cutoff)}
                ]
            }
        ],
        sorts=[{"propertyName": "lastmodifieddate", "direction": "DESCENDING"}],
        properties=["email"],
        limit=200,
    )
    assert window.total == 200
    assert len(window.results) == 200
    assert window.paging is None
    assert window.results[0].id == "1300"
    assert window.results[-1].id == "1101"
    assert set(window.results[0].properties) == {
        "createdate",
        "email",
        "hs_object_id",
        "lastmodifieddate",
    }
    # ISO operands are compared as instants too; BETWEEN is inclusive; groups are OR-ed.
    iso = search(
        hub,
        filter_groups=[
            {
                "filters": [
                    {
                        "propertyName": "createdate",
                        "operator": "BETWEEN",
                        "value": "2024-01-01T00:10:00Z",
                        "highValue": "2024-01-01T00:12:00.000Z",
                    }
                ]
            },
            {
                "filters": [
                    {"propertyName": "email", "operator": "EQ", "value": "PERSON50@example.com"}
                ]
            },
        ],
    )
    assert [r.id for r in iso.results] == ["1011", "1012", "1013", "1051"]
    tokens = search(
        hub,
        filter_groups=[
            {
                "filters": [
                    {"propertyName": "jobtitle", "operator": "CONTAINS_TOKEN", "value": "market*"},
                    {"propertyName": "lifecyclestage", "operator": "IN", "values": ["lead"]},
                    {"propertyName": "hs_lead_status", "operator": "NOT_HAS_PROPERTY"},
                ]
            }
        ],
        limit=0,
    )
    assert tokens.total == 50  # i % 3 == 0 and i odd → i ≡ 3 (mod 6)
    paged = search(hub, limit=100, after="200")
    assert paged.paging is None
    assert paged.results[0].id == "1201"  # default order: creation, oldest first
    bare_sort = search(hub, sorts=["-hs_object_id"], limit=1)
    assert bare_sort.results[0].id == "1300"


def test_search_limits_and_raw_shape(hub: Hub) -> None:
    hub.sandbox.load("contacts", contacts(5))
    data, status, headers = hub.contacts_search.do_search_with_http_info(
        PublicObjectSearchRequest(limit=2, properties=["email"]), _return_http_data_only=False
    )
    assert status == 200
    assert data.paging.next.after == "2"
    assert not any(h.lower().startswith("x-hubspot-ratelimit") for h in headers)
    raw = raw_json(
        hub.contacts_search.do_search(
            PublicObjectSearchRequest(limit=2, properties=["email"]), _preload_content=False
        )
    )
    validate("contacts.json", "CollectionResponseWithTotalSimplePublicObject", raw)
    assert raw["total"] == 5

    def status_of(**body: Any) -> int:
        with pytest.raises(ApiException) as exc:
            search(hub, **body)
        assert error_body(exc.value)["category"] == "VALIDATION_ERROR"
        return int(exc.value.status or 0)

    assert status_of(limit=201) == 400
    assert status_of(limit=200, after="9801") == 400  # would page past 10,000
    assert search(hub, limit=200, after="9800").results == []
    one = {"propertyName": "email", "operator": "HAS_PROPERTY"}
    assert status_of(filter_groups=[{"filters": [one] * 7}]) == 400  # > 6 per group
    assert status_of(filter_groups=[{"filters": [one]}] * 6) == 400  # > 5 groups
    assert status_of(filter_groups=[{"filters": [one] * 6}] * 3 + [{"filters": [one]}]) == 400
    assert search(hub, filter_groups=[{"filters": [one] * 6}] * 3).total == 5  # exactly 18
    assert status_of(query="x" * 3000) == 400  # body over 3,000 characters
    assert status_of(after="abc") == 400


def test_search_index_lag(serve: Callable[..., Hub]) -> None:
    hub = serve(search_index_lag=0.3)
    created = hub.contacts.create(SimplePublicObjectInputForCreate(properties={"email": "l@x.io"}))
    assert search(hub).total == 0
    hub.contacts.get_by_id(created.id)  # reads are immediately consistent
    time.sleep(0.35)
    assert search(hub).total == 1


# ------------------------------------------------------------------------------------------------
# Properties
# ------------------------------------------------------------------------------------------------


def test_property_create_201_then_409_and_enumeration_validation(hub: Hub) -> None:
    hub.sandbox.load("contacts", contacts(1))
    group = hub.groups.create("contacts", PropertyGroupCreate(name="leadsync", label="LeadSync"))
    assert group.name == "leadsync"
    spec = PropertyCreate(
        name="leadsync_temperature",
        label="Temperature",
        type="enumeration",
        field_type="select",
        group_name="leadsync",
        options=[
            {"label": "Hot", "value": "hot", "hidden": False, "displayOrder": 0},
            {"label": "Cold", "value": "cold", "hidden": False, "displayOrder": 1},
        ],
    )
    raw = raw_json(hub.properties.create("contacts", spec, _preload_content=False))
    validate("properties.json", "Property", raw)
    assert raw["modificationMetadata"]["readOnlyValue"] is False
    with pytest.raises(PropertiesApiException) as exists:
        hub.properties.create("contacts", spec)
    assert exists.value.status == 409
    with pytest.raises(PropertiesApiException) as no_group:
        hub.properties.create(
            "contacts",
            PropertyCreate(
                name="x1", label="X", type="string", field_type="text", group_name="nope"
            ),
        )
    assert no_group.value.status == 400
    with pytest.raises(PropertiesApiException) as incomplete:
        hub.properties.create("contacts", {"name": "x2", "label": "X"})
    assert incomplete.value.status == 400

    ok = hub.contacts.update(
        "1001", SimplePublicObjectInput(properties={"leadsync_temperature": "hot"})
    )
    assert ok.properties["leadsync_temperature"] == "hot"
    with pytest.raises(ApiException) as bad:
        hub.contacts.update(
            "1001", SimplePublicObjectInput(properties={"leadsync_temperature": "HOT"})
        )
    body = error_body(bad.value)
    assert bad.value.status == 400
    assert body["category"] == "VALIDATION_ERROR"
    assert body["message"].startswith("Property values were not valid: [")
    assert json.loads(body["message"].split(": ", 1)[1])[0]["error"] == "INVALID_OPTION"
    assert body["errors"][0]["code"] == "INVALID_OPTION"
    validate("contacts.json", "Error", body)


def test_property_catalogue_covers_the_data_contract(hub: Hub) -> None:
    everything = {p.name: p for p in hub.properties.get_all("contacts").results}
    for name in CONTRACT_CONTACT_PROPERTIES:
        assert name in everything, name
    for name in ("hs_object_id", "createdate", "lastmodifieddate", "hs_merged_object_ids"):
        assert everything[name].modification_metadata.read_only_value is True
    assert [o.value for o in everything["numemployees"].options][-1] == "1000+"
    emails = {p.name for p in hub.properties.get_all("emails").results}
    assert {"hs_timestamp", "hs_email_direction", "hs_email_subject", "hs_email_status"} <= emails
    status = hub.properties.get_by_name("tasks", "hs_task_status")
    assert "COMPLETED" in [o.value for o in status.options]


# ------------------------------------------------------------------------------------------------
# Associations v4
# ------------------------------------------------------------------------------------------------


def test_v4_batch_read_results_and_207(hub: Hub) -> None:
    hub.sandbox.load("contacts", contacts(2))
    hub.sandbox.load(
        "emails",
        [
            {
                "id": "5001",
                "properties": {"hs_timestamp": "2024-02-01T00:00:00.000Z"},
                "associations": {"contacts": ["1001"]},
            },
            {
                "id": "5002",
                "properties": {"hs_timestamp": "2024-02-02T00:00:00.000Z"},
                "associations": {"contacts": ["1001"]},
            },
        ],
    )
    result = hub.assoc_batch.get_page("contacts", "emails", {"inputs": [{"id": "1001"}]})
    assert type(result).__name__ == "BatchResponsePublicAssociationMultiWithLabel"
    assert [t.to_object_id for t in result.results[0].to] == ["5001", "5002"]
    assert result.results[0].to[0].association_types[0].type_id == 197
    raw = raw_json(
        hub.assoc_batch.get_page(
            "emails",
            "contacts",
            {"inputs": [{"id": "5001"}, {"id": "777"}]},
            _preload_content=False,
        )
    )
    # toObjectId is a JSON number on the wire (the spec says string; the client coerces).
    assert raw["results"] == [
        {
            "from": {"id": "5001"},
            "to": [
                {
                    "toObjectId": 1001,
                    "associationTypes": [
                        {"category": "HUBSPOT_DEFINED", "typeId": 198, "label": None}
                    ],
                }
            ],
        }
    ]
    assert raw["numErrors"] == 1


# ------------------------------------------------------------------------------------------------
# Auth and rate limits
# ------------------------------------------------------------------------------------------------


def test_bad_token_is_unauthorized(serve: Callable[..., Hub]) -> None:
    hub = serve(token="pat-wrong")
    with pytest.raises(ContactsUnauthorized) as denied:
        hub.contacts.get_page()
    body = error_body(denied.value)
    assert denied.value.status == 401
    assert body["category"] == "INVALID_AUTHENTICATION"
    assert body["message"].startswith("Authentication credentials not found.")
    validate("contacts.json", "Error", body)
    assert hub.sandbox.call_counts()["unauthorized"] == 1


def test_rate_limit_headers_and_ten_secondly_429(serve: Callable[..., Hub]) -> None:
    hub = serve(ten_second_limit=3, daily_limit=1000)
    _, status, headers = hub.contacts.get_page_with_http_info(_return_http_data_only=False)
    assert status == 200
    assert headers["X-HubSpot-RateLimit-Max"] == "3"
    assert headers["X-HubSpot-RateLimit-Remaining"] == "2"
    assert headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert headers["X-HubSpot-RateLimit-Daily"] == "1000"
    assert headers["X-HubSpot-RateLimit-Daily-Remaining"] == "999"
    hub.contacts.get_page()
    hub.contacts.get_page()
    with pytest.raises(ApiException) as limited:
        hub.contacts.get_page()
    assert limited.value.status == 429
    assert type(limited.value) is ApiException  # 429 has no subclass (trip-wire 10)
    body = error_body(limited.value)
    assert body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert body["errorType"] == "RATE_LIMIT"
    assert body["message"] == "You have reached your ten_secondly_rolling limit."
    assert body["groupName"].endswith(":1234567")
    assert body["correlationId"]
    assert header(limited.value, "X-HubSpot-RateLimit-Remaining") == "0"
    assert hub.sandbox.call_counts()["rate_limited"] == 1


def test_search_bucket_and_daily_429(serve: Callable[..., Hub]) -> None:
    hub = serve(ten_second_limit=2, search_per_second_limit=2, daily_limit=5)
    # Search is exempt from the 10-second window but has its own per-second bucket.
    search(hub)
    search(hub)
    with pytest.raises(ApiException) as secondly:
        search(hub)
    assert secondly.value.status == 429
    assert error_body(secondly.value)["policyName"] == "SECONDLY"
    hub.contacts.get_page()
    hub.contacts.get_page()
    with pytest.raises(ApiException) as burst:
        hub.contacts.get_page()
    assert error_body(burst.value)["policyName"] == "TEN_SECONDLY_ROLLING"
    time.sleep(1.05)
    search(hub)  # fifth accepted request of the day
    with pytest.raises(ApiException) as daily:
        search(hub)
    body = error_body(daily.value)
    assert body["policyName"] == "DAILY"
    assert body["message"] == "You have reached your daily limit."
    counts = hub.sandbox.call_counts()
    assert counts["search"] == 5
    assert counts["total"] == 8
    hub.sandbox.reset_call_counts()
    assert hub.sandbox.call_counts() == {"total": 0}


def test_unknown_route_is_hubspot_shaped_404(hub: Hub) -> None:
    with pytest.raises(ObjectsApiException) as missing:
        hub.objects.get_page("contacts/1/nothing/here")
    assert missing.value.status == 404
    body = error_body(missing.value)
    assert body["status"] == "error"
    assert body["correlationId"] == header(missing.value, "X-HubSpot-Correlation-Id")


def test_events_pages_walk_the_window_in_order_with_and_without_filters(hub: Hub) -> None:
    # 250 page views of three contacts, one a minute; the official client pages them.
    t0 = datetime(2026, 10, 1, tzinfo=UTC)
    hub.sandbox.load(
        "web_events",
        [
            {
                "id": f"ev{i:04d}",
                "objectId": str(1001 + i % 3),
                "eventType": "e_visited_page",
                "occurredAt": (t0 + timedelta(minutes=i)).isoformat(),
                "properties": {"hs_url": f"https://example.com/p{i}"},
            }
            for i in range(250)
        ],
    )
    events = hub.client.events.events_api

    def walk(**kwargs: Any) -> list[str]:
        seen: list[str] = []
        after: str | None = None
        while True:
            # The generated client types its result as a union of every response type.
            page: Any = events.get_page(object_type="contact", limit=100, after=after, **kwargs)
            seen += [e.id for e in page.results]
            if page.paging is None:
                return seen
            after = page.paging.next.after

    everything = [f"ev{i:04d}" for i in range(250)]
    assert walk() == everything
    assert walk(sort=["DESCENDING"]) == everything[::-1]
    one = walk(object_id=1002)
    assert one == [f"ev{i:04d}" for i in range(250) if i % 3 == 1] and len(one) == 83
    window = walk(occurred_after=t0 + timedelta(minutes=99, seconds=30))
    assert window == everything[100:]
    # The event type filter, as leadsync's pull sends it: the pages resume where the last one
    # stopped scanning (a page used to skip every earlier match again: quadratic in a full pull).
    assert walk(event_type="e_visited_page") == everything
    assert walk(event_type="e_visited_page", object_id=1002) == one
    assert walk(event_type="e_other") == []


def test_primary_company_moves_and_both_sides_keep_their_labels(hub: Hub) -> None:
    hub.sandbox.load("contacts", contacts(1))
    hub.sandbox.load(
        "companies",
        [
            {"id": str(5001 + i), "properties": {"name": f"Firm {i}"}, "createdAt": BASE}
            for i in range(2)
        ],
    )
    # The first company of a contact becomes its primary.
    hub.assoc_basic.create_default("contacts", "1001", "companies", "5001")
    primary = AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=1)
    hub.assoc_basic.create("contacts", "1001", "companies", "5002", [primary])

    def types(from_ot: str, from_id: str, to_ot: str) -> dict[str, set[int]]:
        page = hub.assoc_basic.get_page(from_ot, from_id, to_ot)
        return {r.to_object_id: {t.type_id for t in r.association_types} for r in page.results}

    # A new primary demotes the old one on both sides; the unlabeled type stays.
    assert types("contacts", "1001", "companies") == {"5001": {279}, "5002": {1, 279}}
    assert types("companies", "5001", "contacts") == {"1001": {280}}
    assert types("companies", "5002", "contacts") == {"1001": {2, 280}}
    contact = hub.contacts.get_by_id("1001", properties=["associatedcompanyid"])
    assert contact.properties["associatedcompanyid"] == "5002"
    hub.assoc_basic.archive("contacts", "1001", "companies", "5002")
    assert types("contacts", "1001", "companies") == {"5001": {279}}
    assert types("companies", "5002", "contacts") == {}
