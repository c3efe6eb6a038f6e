"""The Salesforce connector's large-volume and reconciliation paths against the sandbox: Bulk API
2.0 first loads (record for record what REST gives), getDeleted with its 15-day window, the
inventory and fetch reads a reconciliation uses, Bulk API 2.0 write-backs and the retry policy."""

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import requests
from simple_salesforce.api import Salesforce, SFType
from simple_salesforce.bulk2 import SFBulk2Handler
from simple_salesforce.exceptions import SalesforceRefusedRequest

from connectors.salesforce import DeletedRecords, SalesforceConnector
from connectors.salesforce import constants as c
from connectors.sandbox.salesforce_schema import make_id
from connectors.sandbox.server import Sandboxes
from tests.connectors.conftest import salesforce_connector

SIZE = 300
COMPOUND = ("address", "location")  # not selectable through Bulk: compared separately


@pytest.fixture(scope="module")
def box() -> Iterator[Sandboxes]:
    with Sandboxes(size=SIZE, seed=13) as sandboxes:
        yield sandboxes


def _connect(box: Sandboxes, **options: Any) -> SalesforceConnector:
    # wait=0: the sandbox finishes a job on its first poll, so tests do not sleep for it.
    options.setdefault("bulk_poll_wait_s", 0)
    return salesforce_connector(box, **options)


def _admin(box: Sandboxes) -> Salesforce:
    """A plain simple-salesforce client, for what an admin or another integration does."""
    env = box.env()
    session = requests.Session()
    session.verify = env["LEADSYNC_CA_BUNDLE"]
    session.trust_env = False
    return Salesforce(
        consumer_key=env["SALESFORCE_CLIENT_ID"],
        consumer_secret=env["SALESFORCE_CLIENT_SECRET"],
        domain=env["SALESFORCE_DOMAIN"],
        session=session,
    )


def _records(pages: Iterator[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [record for page in pages for record in page]


def _strict(record: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """Values with their types: 5 == 5.0 and True == 1 in Python, but not for a consumer."""
    return {key: (type(value).__name__, value) for key, value in record.items()}


def _open_leads(box: Sandboxes) -> list[str]:
    return sorted(r["Id"] for r in box.salesforce.records("Lead") if not r.get("IsConverted"))


def _plain_fields(connector: SalesforceConnector, sobject: str) -> list[str]:
    return [n for n, f in connector.fields(sobject).items() if f["type"] not in COMPOUND]


# ---- Bulk API 2.0 query ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def varied_values(box: Sandboxes) -> None:
    """Values of every type the seed leaves empty: currency, doubles, a datetime with
    milliseconds, text with a line break, quotes, a comma and Japanese."""
    connector = _connect(box)
    text = 'Met at Expo,\n"VIP" 東京本社'
    leads = _open_leads(box)[10:14]
    outcomes = connector.update(
        "Lead",
        [
            (
                leads[0],
                {
                    "AnnualRevenue": "1250000.5",
                    "LeadSync_Score__c": "87",
                    "LeadSync_Synced_At__c": "2024-03-01T09:15:30.250Z",
                    "Description": text,
                    "Website": "https://example.jp/a?b=1,2",
                },
            ),
            (leads[1], {"AnnualRevenue": "3000000", "NumberOfEmployees": "1200"}),
        ],
    )
    assert all(o.ok for o in outcomes)
    contact = box.salesforce.records("Contact")[0]["Id"]
    task = box.salesforce.records("Task")[0]["Id"]
    assert all(o.ok for o in connector.update("Contact", [(contact, {"Description": text})]))
    assert all(o.ok for o in connector.update("Task", [(task, {"Description": text})]))


@pytest.mark.usefixtures("varied_values")
@pytest.mark.parametrize("sobject", ["Lead", "Contact", "Task"])
def test_bulk_first_load_equals_the_rest_pull_field_for_field(box: Sandboxes, sobject: str) -> None:
    rest = _connect(box)  # the default threshold: these objects stay on REST
    bulk = _connect(box, bulk_query_threshold=1)
    fields = _plain_fields(rest, sobject)
    by_rest = {r["id"]: _strict(r) for r in _records(rest.pull(sobject, fields, None))}
    by_bulk = {r["id"]: _strict(r) for r in _records(bulk.pull(sobject, fields, None))}

    assert rest.calls.snapshot().get("bulk", 0) == 0
    assert {r["Id"] for r in box.salesforce.records(sobject)} <= by_rest.keys()
    assert by_bulk == by_rest
    # The values compared really cover the types: numbers, booleans, datetimes, multi-line text.
    types = {t for record in by_bulk.values() for t, v in record.values() if v is not None}
    assert {"str", "bool", "datetime"} <= types
    if sobject == "Lead":
        assert {"int", "float"} <= types
    # The first REST page (its totalSize decides), then one job: create, two polls, one page.
    assert bulk.calls.snapshot()["query"] == 1
    assert bulk.calls.snapshot()["bulk"] == 4


def test_bulk_first_load_costs_fewer_calls_than_rest_paging() -> None:
    with Sandboxes(size=20, seed=3) as box:
        seed = box.dataset.salesforce["Task"][0]
        extra = [
            {**seed, "Id": make_id("00T", 900_000 + i), "Subject": f"Call {i}"}
            for i in range(c.BULK_QUERY_THRESHOLD + 2_000)
        ]
        box.salesforce.load("Task", extra)
        fields = ["Subject", "Status", "WhoId", "ActivityDate"]

        bulk = _connect(box)  # default threshold: the count decides
        pulled = _records(bulk.pull("Task", fields, None))
        rest = _connect(box, bulk_query_threshold=10**9)
        assert len(_records(rest.pull("Task", fields, None))) == len(pulled)

    rest_pages = math.ceil(len(pulled) / c.REST_QUERY_PAGE_SIZE)
    assert len(pulled) >= c.BULK_QUERY_THRESHOLD
    # Exactly the 2,000-row pages: the size comes with the first one, no COUNT() is spent.
    assert rest.calls.snapshot()["query"] == rest_pages
    spent = bulk.calls.snapshot()
    # The first REST page (whose totalSize decides) + create, 2 polls, one 50,000-row page.
    assert spent["query"] + spent["bulk"] == 5
    assert spent["query"] + spent["bulk"] < rest_pages


def test_compound_fields_keep_a_first_load_on_rest(box: Sandboxes) -> None:
    connector = _connect(box, bulk_query_threshold=1)
    records = _records(connector.pull("Lead", ["Email", "Address"], None))
    assert any(isinstance(r["Address"], dict) for r in records)  # REST's nested address
    assert connector.calls.snapshot().get("bulk", 0) == 0


def test_incremental_pulls_never_count_or_use_bulk(box: Sandboxes) -> None:
    connector = _connect(box, bulk_query_threshold=1)
    since = datetime.now(UTC) - timedelta(days=3650)
    assert _records(connector.pull("Lead", ["Email"], since))
    assert connector.calls.snapshot()["query"] == 1
    assert connector.calls.snapshot().get("bulk", 0) == 0


# ---- getDeleted -----------------------------------------------------------------------------


def test_get_deleted_sees_soft_and_hard_deletes(box: Sandboxes) -> None:
    admin = _admin(box)
    soft, hard = _open_leads(box)[-2:]
    since = datetime.now(UTC) - timedelta(minutes=10)
    # getDeleted covers whole minutes up to now: let the deletes happen three minutes ago.
    original = box.salesforce.clock
    box.salesforce.clock = lambda: datetime.now(UTC) - timedelta(minutes=3)
    try:
        assert cast(SFType, admin.Lead).delete(soft) == 204
        bulk2 = cast(SFBulk2Handler, admin.bulk2)
        [job] = bulk2.Lead.hard_delete(records=[{"Id": hard}], wait=0)
        assert job["numberRecordsProcessed"] == 1 and job["numberRecordsFailed"] == 0
    finally:
        box.salesforce.clock = original

    connector = _connect(box)
    result = connector.deleted_since("Lead", since)
    assert isinstance(result, DeletedRecords) and result.complete
    deleted = dict(result.records)
    assert {soft, hard} <= deleted.keys()
    three_minutes_ago = datetime.now(UTC) - timedelta(minutes=3)
    assert all(abs(deleted[i] - three_minutes_ago) < timedelta(minutes=1) for i in (soft, hard))
    assert since < result.latest_covered <= datetime.now(UTC)
    assert connector.calls.snapshot()["deleted"] == 1

    # queryAll still shows the soft delete (flagged); the hard delete is gone from it.
    fetched = {r["id"]: r for r in connector.fetch("Lead", ["Email"], [soft, hard])}
    assert list(fetched) == [soft]
    assert fetched[soft]["_deleted"] is True
    everything = {r["id"] for r in _records(connector.pull("Lead", ["Email"], None))}
    assert soft in everything and hard not in everything


def test_get_deleted_clamps_to_the_15_day_window(box: Sandboxes) -> None:
    connector = _connect(box)
    old = connector.deleted_since("Lead", datetime.now(UTC) - timedelta(days=40))
    assert old.complete is False  # deletes older than 15 days may have been missed
    assert old.latest_covered <= datetime.now(UTC)
    edge = datetime.now(UTC) - timedelta(days=c.DELETED_LOOKBACK_DAYS)
    assert connector.deleted_since("Lead", edge).complete is False
    # A since in the last minute (or a little ahead of the org's clock) widens the window.
    for since in (datetime.now(UTC), datetime.now(UTC) + timedelta(seconds=30)):
        recent = connector.deleted_since("Lead", since)
        assert recent.complete is True
    assert connector.calls.snapshot()["deleted"] == 4


def test_get_deleted_skips_objects_without_replication(
    box: Sandboxes, monkeypatch: pytest.MonkeyPatch
) -> None:
    connector = _connect(box)
    assert connector.supports_get_deleted("Lead")  # describe: replicateable
    described = {**connector.describe("Lead"), "replicateable": False}
    monkeypatch.setattr(connector, "describe", lambda sobject: described)
    since = datetime.now(UTC) - timedelta(hours=1)
    skipped = connector.deleted_since("Lead", since)
    assert skipped == DeletedRecords([], since, complete=False)
    assert connector.calls.snapshot().get("deleted", 0) == 0


# ---- reconciliation reads -------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [c.BULK_QUERY_THRESHOLD, 1])
def test_inventory_lists_every_live_record(box: Sandboxes, threshold: int) -> None:
    connector = _connect(box, bulk_query_threshold=threshold)
    for sobject in ("Lead", "Task"):
        live = {r["Id"]: r["SystemModstamp"] for r in box.salesforce.records(sobject)}
        assert connector.inventory(sobject) == live
    assert (connector.calls.snapshot().get("bulk", 0) > 0) == (threshold == 1)


def test_fetch_returns_current_versions_in_pull_shape(box: Sandboxes) -> None:
    victim = box.salesforce.records("Task")[-1]["Id"]
    assert cast(SFType, _admin(box).Task).delete(victim) == 204
    connector = _connect(box)
    fields = ["Subject", "Status", "WhoId"]
    pulled = {r["id"]: r for r in _records(connector.pull("Task", fields, None))}
    deleted = [rid for rid, r in pulled.items() if r["_deleted"]]
    live = [rid for rid, r in pulled.items() if not r["_deleted"]]
    assert victim in deleted and len(live) > c.IN_CLAUSE_SIZE
    gone = make_id("00T", 987_654)  # a well-formed id the org never had
    wanted = [*live, *deleted, gone, live[0]]
    before = connector.calls.snapshot()["query"]

    fetched = connector.fetch("Task", fields, wanted)

    assert sorted(r["id"] for r in fetched) == sorted([*live, *deleted])
    assert all(r == pulled[r["id"]] for r in fetched)
    assert {r["id"] for r in fetched if r["_deleted"]} == set(deleted)
    # IN lists of IN_CLAUSE_SIZE ids, each list one query (the repeated id asked once).
    calls = connector.calls.snapshot()["query"] - before
    assert calls == math.ceil((len(live) + len(deleted) + 1) / c.IN_CLAUSE_SIZE)


def test_fetch_leaves_out_ids_that_cannot_exist(box: Sandboxes) -> None:
    # A malformed id would fail its whole IN list; a quote could not widen the query anyway.
    connector = _connect(box)
    lead = _open_leads(box)[0]
    fetched = connector.fetch("Lead", ["Email"], ["x' OR Id != '", "", lead, "00Q"])
    assert [r["id"] for r in fetched] == [lead]
    assert connector.fetch("Lead", ["Email"], ["x' OR Id != '"]) == []
    assert connector.calls.snapshot()["query"] == 1


# ---- Bulk API 2.0 ingest --------------------------------------------------------------------


def test_bulk_update_writes_clears_and_reports_rejections(box: Sandboxes) -> None:
    connector = _connect(box, bulk_ingest_threshold=5)
    leads = _open_leads(box)[:6]
    converted = next(r["Id"] for r in box.salesforce.records("Lead") if r.get("IsConverted"))
    before = {r["Id"]: r for r in box.salesforce.records("Lead")}
    assert before[leads[2]]["Title"]  # the clear below has something to clear
    updates: list[tuple[str, dict[str, str]]] = [
        (leads[0], {"LeadSync_Stage__c": "MQL", "LeadSync_Score__c": "72"}),
        (leads[1], {"Title": "Head of IT, APAC", "HasOptedOutOfEmail": "true"}),
        (leads[2], {"Title": ""}),  # clear: #N/A in Bulk CSV
        (leads[3], {"LeadSync_Stage__c": "SQL"}),  # rejected by a validation rule
        (converted, {"LeadSync_Stage__c": "MQL"}),  # converted leads are read-only
        (leads[4], {"LeadSync_Next_Content__c": "webinar-jp"}),
        (leads[0], {"LeadSync_Temperature__c": "hot"}),  # same record again: merged
    ]
    box.salesforce_faults.reject_records([leads[3]], reason="Blocked by test")
    try:
        outcomes = connector.update("Lead", updates)
    finally:
        box.salesforce_faults.clear_rejections()

    assert [o.record_id for o in outcomes] == [rid for rid, _ in updates]
    assert [o.ok for o in outcomes] == [True, True, True, False, False, True, True]
    assert outcomes[3].error == "FIELD_CUSTOM_VALIDATION_EXCEPTION: Blocked by test"
    assert "CANNOT_UPDATE_CONVERTED_LEAD" in (outcomes[4].error or "")

    after = {r["Id"]: r for r in box.salesforce.records("Lead")}
    assert after[leads[0]]["LeadSync_Stage__c"] == "MQL"
    assert after[leads[0]]["LeadSync_Score__c"] == 72
    assert after[leads[0]]["LeadSync_Temperature__c"] == "hot"
    assert after[leads[1]]["Title"] == "Head of IT, APAC"
    assert after[leads[1]]["HasOptedOutOfEmail"] is True
    assert after[leads[2]]["Title"] is None
    assert after[leads[4]]["LeadSync_Next_Content__c"] == "webinar-jp"
    # Cells a record did not name were left as they were (an empty cell means unchanged).
    assert after[leads[1]]["LeadSync_Stage__c"] == before[leads[1]]["LeadSync_Stage__c"]
    assert after[leads[2]]["Company"] == before[leads[2]]["Company"]
    assert after[leads[4]]["Title"] == before[leads[4]]["Title"]
    assert after[leads[3]]["LeadSync_Stage__c"] == before[leads[3]]["LeadSync_Stage__c"]

    spent = connector.calls.snapshot()
    assert spent.get("collections", 0) == 0
    # create, upload, close, two polls, job info, successful and failed results
    assert spent["bulk"] == 8


def test_small_write_backs_stay_on_collections(box: Sandboxes) -> None:
    connector = _connect(box)
    leads = _open_leads(box)[20:23]
    outcomes = connector.update("Lead", [(rid, {"LeadSync_Stage__c": "MAL"}) for rid in leads])
    assert [o.ok for o in outcomes] == [True] * 3
    assert connector.calls.snapshot()["collections"] == 1
    assert connector.calls.snapshot().get("bulk", 0) == 0


def test_bulk_update_needs_budget_for_the_whole_job(box: Sandboxes) -> None:
    connector = _connect(box, bulk_ingest_threshold=2)
    leads = _open_leads(box)[30:33]
    connector.fields("Lead")
    # What the org reported last: a few calls above the reserve, fewer than a job may take.
    limit = 10_000
    spare = c.BULK_JOB_CALL_ALLOWANCE - 5
    connector.budget.update(int(limit * (1 - c.BUDGET_RESERVE)) - spare, limit)
    outcomes = connector.update("Lead", [(rid, {"LeadSync_Stage__c": "SAL"}) for rid in leads])
    assert [o.ok for o in outcomes] == [True] * 3
    assert connector.calls.snapshot()["collections"] == 1
    assert connector.calls.snapshot().get("bulk", 0) == 0


# ---- retries --------------------------------------------------------------------------------


def test_transient_server_errors_are_retried(box: Sandboxes) -> None:
    connector = _connect(box)
    faults = box.salesforce_faults
    before = faults.counts_by_status().get(503, 0)
    faults.script("server_error", times=2, path=r"/query", status=503)
    assert connector.count("Lead") == len(box.salesforce.records("Lead"))
    assert faults.counts_by_status().get(503, 0) - before == 2
    assert connector.calls.snapshot()["query"] == 1  # one call for the caller, retried inside


def test_request_limit_exceeded_is_not_retried(box: Sandboxes) -> None:
    connector = _connect(box)
    faults = box.salesforce_faults
    connector.fields("Lead")
    before = dict(faults.counts_by_status())
    faults.script("budget_exhausted", times=1, path=r"/query")
    with pytest.raises(SalesforceRefusedRequest):
        connector.count("Lead")
    after = faults.counts_by_status()
    assert after.get(403, 0) - before.get(403, 0) == 1
    assert sum(after.values()) - sum(before.values()) == 1  # no second attempt
