"""Bulk API 2.0 contract tests: the unmodified ``sf.bulk2`` client against the Salesforce sandbox.

Everything goes through simple-salesforce 1.12.10 over real HTTPS, connected the way the worker
connects (OAuth client-credentials, ``domain="127.0.0.1:PORT/sf"``, a session trusting the
sandbox CA with ``trust_env = False``). ``wait=0.1``: the client sleeps ``wait`` before its first
poll (trip-wire 7), and the sandbox answers ``InProgress`` once before ``JobComplete``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from simple_salesforce.api import Salesforce
from simple_salesforce.bulk2 import Operation, SFBulk2Handler, SFBulk2Type
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceOperationError

from connectors.sandbox.salesforce_app import SalesforceSandbox
from connectors.sandbox.salesforce_schema import make_id
from tests.sandbox.conftest import connect, serving

CLIENT_ID = "bulk-client"
CLIENT_SECRET = "bulk-secret"
BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)
#: The client annotates ``wait`` as int but only sleeps it; the worker passes 0.1.
WAIT = cast(int, 0.1)


# ---------------------------------------------------------------------------------------------
# Fixtures


@contextmanager
def serving_client(sandbox: SalesforceSandbox, tls: tuple[Any, Path]) -> Iterator[Salesforce]:
    with serving(sandbox, tls) as port:
        yield connect(port, tls[1], CLIENT_ID, CLIENT_SECRET)


def lead_rows(count: int, pod: str = "8x") -> list[dict[str, Any]]:
    rows = []
    for i in range(count):
        stamp = BASE_TIME + timedelta(seconds=i)
        rows.append(
            {
                "Id": make_id("00Q", i + 1, pod=pod),
                "FirstName": f"First{i}",
                "LastName": f"Last{i}",
                "Company": f"Company {i % 7}",
                "Email": f"lead{i}@example.com",
                "Title": "CTO" if i % 2 else None,
                "CreatedDate": stamp,
                "LastModifiedDate": stamp,
                "SystemModstamp": stamp,
            }
        )
    return rows


@pytest.fixture()
def org(tls: tuple[Any, Path]) -> Iterator[tuple[SalesforceSandbox, Salesforce]]:
    sandbox = SalesforceSandbox(CLIENT_ID, CLIENT_SECRET)
    sandbox.load("Lead", lead_rows(300))
    with serving_client(sandbox, tls) as sf:
        yield sandbox, sf


def bulk_lead(sf: Salesforce) -> SFBulk2Type:
    """``sf.bulk2.Lead`` with its real type (``__getattr__`` is typed as a union)."""
    return cast(SFBulk2Type, cast(SFBulk2Handler, sf.bulk2).Lead)


def job_of(result: Mapping[str, Any]) -> str:
    """The job id of an ingest result (the client types the whole dict as ``Dict[str, int]``)."""
    return cast(str, result["job_id"])


def query_csv(bulk: SFBulk2Type, soql: str, *, include_deleted: bool = False) -> str:
    """All result pages of a Bulk query job, joined (each page repeats the header)."""
    if include_deleted:
        pages = list(bulk.query_all(soql, wait=WAIT))
    else:
        pages = [cast(str, page) for page in bulk.query(soql, wait=WAIT)]
    assert len(pages) == 1
    return pages[0]


def error_content(exc: pytest.ExceptionInfo[Any]) -> list[dict[str, Any]]:
    content = exc.value.content
    assert isinstance(content, list)
    return content


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def leads_by_id(sandbox: SalesforceSandbox) -> dict[str, dict[str, Any]]:
    return {r["Id"]: r for r in sandbox.records("Lead")}


# ---------------------------------------------------------------------------------------------
# Ingest


def test_insert_500_with_three_invalid(org: tuple[SalesforceSandbox, Salesforce]) -> None:
    sandbox, sf = org
    records = [
        {"LastName": f"Bulk{i}", "Company": "Acme", "Email": f"bulk{i}@example.com"}
        for i in range(500)
    ]
    for bad in (7, 250, 499):
        del records[bad]["LastName"]
    sandbox.reset_call_counts()

    [result] = bulk_lead(sf).insert(records=records, wait=WAIT)

    assert result["numberRecordsProcessed"] == 500
    assert result["numberRecordsFailed"] == 3
    assert result["numberRecordsTotal"] == 500
    job_id = job_of(result)
    assert job_id.startswith("750")
    assert len(sandbox.records("Lead")) == 300 + 497

    failed_text = bulk_lead(sf).get_failed_records(job_id)
    assert failed_text.splitlines()[0].startswith('"sf__Id","sf__Error",')
    failed = csv_rows(failed_text)
    assert sorted(r["Email"] for r in failed) == [
        "bulk250@example.com",
        "bulk499@example.com",
        "bulk7@example.com",
    ]
    assert {r["sf__Error"] for r in failed} == {
        "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --"
    }
    assert {r["sf__Id"] for r in failed} == {""}  # inserts that failed have no id

    succeeded = csv_rows(bulk_lead(sf).get_successful_records(job_id))
    assert len(succeeded) == 497
    assert {r["sf__Created"] for r in succeeded} == {"true"}
    stored = leads_by_id(sandbox)
    first = succeeded[0]
    assert stored[first["sf__Id"]]["LastName"] == first["LastName"]
    assert stored[first["sf__Id"]]["Status"] == "Open - Not Contacted"  # picklist default

    # The client asks for unprocessedRecords (the docs say unprocessedrecords): header only.
    unprocessed = bulk_lead(sf).get_unprocessed_records(job_id)
    assert csv_rows(unprocessed) == []
    assert set(unprocessed.strip().split(",")) == {"LastName", "Company", "Email"}

    counts = sandbox.call_counts()
    # create, upload, close, >=2 polls (InProgress then JobComplete), final get, 3 result GETs
    assert counts["bulk_ingest"] >= 9
    assert counts["total"] == counts["bulk_ingest"]


def test_update_parses_by_header_and_na_sets_null(
    org: tuple[SalesforceSandbox, Salesforce], tmp_path: Path
) -> None:
    sandbox, sf = org
    leads = sandbox.records("Lead")[:4]
    before = {r["Id"]: r for r in leads}
    # An unusual column order written by hand, as the client's set() ordering would.
    path = tmp_path / "update.csv"
    path.write_text(
        "LeadSync_Stage__c,Title,Id,LeadSync_Score__c\n"
        f"MQL,#N/A,{leads[0]['Id']},42\n"
        f"SQL,,{leads[1]['Id']},\n"  # empty cells: leave Title and Score unchanged
        f",VP Sales,{leads[2]['Id'].lower()},7.5\n"  # 18-char ids work in any case
        f"Nonsense,,{leads[3]['Id']},\n",
        encoding="utf-8",
    )
    [result] = bulk_lead(sf).update(csv_file=str(path), wait=WAIT)
    assert result["numberRecordsProcessed"] == 4
    assert result["numberRecordsFailed"] == 1

    after = leads_by_id(sandbox)
    first, second, third = (after[r["Id"]] for r in leads[:3])
    assert first["LeadSync_Stage__c"] == "MQL"
    assert first["Title"] is None  # #N/A sets null
    assert first["LeadSync_Score__c"] == 42.0
    assert second["LeadSync_Stage__c"] == "SQL"
    assert second["Title"] == before[leads[1]["Id"]]["Title"]  # empty cell: unchanged
    assert third["Title"] == "VP Sales" and third["LeadSync_Score__c"] == 8.0  # scale 0 rounds
    assert third["LeadSync_Stage__c"] is None
    assert first["SystemModstamp"] > before[leads[0]["Id"]]["SystemModstamp"]

    failed = csv_rows(bulk_lead(sf).get_failed_records(job_of(result)))
    assert failed == [
        {
            "sf__Id": leads[3]["Id"],
            "sf__Error": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST:LeadSync Stage: bad value for "
            "restricted picklist field: Nonsense:LeadSync_Stage__c --",
            "LeadSync_Stage__c": "Nonsense",
            "Title": "",
            "Id": leads[3]["Id"],
            "LeadSync_Score__c": "",
        }
    ]
    succeeded = csv_rows(bulk_lead(sf).get_successful_records(job_of(result)))
    assert [r["sf__Created"] for r in succeeded] == ["false"] * 3

    # records= input: the client derives the header from a set(), so its order is random.
    records = [
        {"Id": r["Id"], "LeadSync_Temperature__c": "hot", "Title": "#N/A", "Company": "Initech"}
        for r in leads[:3]
    ]
    [again] = bulk_lead(sf).update(records=records, wait=WAIT)
    assert again["numberRecordsFailed"] == 0
    after = leads_by_id(sandbox)
    assert {after[r["Id"]]["LeadSync_Temperature__c"] for r in leads[:3]} == {"hot"}
    assert {after[r["Id"]]["Title"] for r in leads[:3]} == {None}
    assert {after[r["Id"]]["Company"] for r in leads[:3]} == {"Initech"}


def test_upsert_delete_and_bad_values(org: tuple[SalesforceSandbox, Salesforce]) -> None:
    sandbox, sf = org
    records = [
        {"LeadSync_Unified_Id__c": "u-1", "LastName": "Upsert", "Company": "A"},
        {"LeadSync_Unified_Id__c": "u-2", "LastName": "Upsert", "Company": "B"},
    ]
    [created] = bulk_lead(sf).upsert(
        records=records, external_id_field="LeadSync_Unified_Id__c", wait=WAIT
    )
    assert created["numberRecordsFailed"] == 0
    ok = csv_rows(bulk_lead(sf).get_successful_records(job_of(created)))
    assert {r["sf__Created"] for r in ok} == {"true"}

    records = [
        {"LeadSync_Unified_Id__c": "U-1", "Title": "Matched case-insensitively"},
        {"LeadSync_Unified_Id__c": "u-3", "LastName": "New", "Company": "C"},
        {
            "LeadSync_Unified_Id__c": "u-4",
            "LastName": "Bad",
            "Company": "D",
            "NumberOfEmployees": "x",
        },
    ]
    [second] = bulk_lead(sf).upsert(
        records=records, external_id_field="LeadSync_Unified_Id__c", wait=WAIT
    )
    assert second["numberRecordsFailed"] == 1
    ok = csv_rows(bulk_lead(sf).get_successful_records(job_of(second)))
    assert sorted((r["LeadSync_Unified_Id__c"], r["sf__Created"]) for r in ok) == [
        ("U-1", "false"),
        ("u-3", "true"),
    ]
    [bad] = csv_rows(bulk_lead(sf).get_failed_records(job_of(second)))
    assert bad["sf__Error"] == (
        "INVALID_TYPE_ON_FIELD_IN_RECORD:Employees: value not of required type: x:"
        "NumberOfEmployees --"
    )
    by_key = {r["LeadSync_Unified_Id__c"]: r for r in sandbox.records("Lead")}
    assert by_key["U-1"]["Title"] == "Matched case-insensitively"  # the key is rewritten too

    # delete then queryAll: deleted rows are only visible to queryAll.
    doomed = [{"Id": by_key["U-1"]["Id"]}, {"Id": by_key["u-2"]["Id"]}]
    [deleted] = bulk_lead(sf).delete(records=doomed, wait=WAIT)
    assert deleted["numberRecordsFailed"] == 0
    [again] = bulk_lead(sf).delete(records=doomed[:1], wait=WAIT)
    [gone] = csv_rows(bulk_lead(sf).get_failed_records(job_of(again)))
    assert gone["sf__Error"] == "ENTITY_IS_DELETED:entity is deleted:--"
    soql = "SELECT Id, IsDeleted FROM Lead WHERE LeadSync_Unified_Id__c LIKE 'u-%'"  # any case
    live = query_csv(bulk_lead(sf), soql)
    everything = query_csv(bulk_lead(sf), soql, include_deleted=True)
    assert [r["Id"] for r in csv_rows(live)] == [by_key["u-3"]["Id"]]
    all_rows = csv_rows(everything)
    assert sorted(r["IsDeleted"] for r in all_rows) == ["false", "true", "true"]

    # hard delete: gone from queryAll as well.
    [hard] = bulk_lead(sf).hard_delete(records=[{"Id": by_key["u-3"]["Id"]}], wait=WAIT)
    assert hard["numberRecordsFailed"] == 0
    assert len(csv_rows(query_csv(bulk_lead(sf), soql, include_deleted=True))) == 2


def test_job_states_and_failed_job(org: tuple[SalesforceSandbox, Salesforce]) -> None:
    sandbox, sf = org
    client = bulk_lead(sf)._client  # the official client's own job calls, one at a time
    job = client.create_job(Operation.update)
    assert job["state"] == "Open"
    assert job["contentUrl"].endswith("/batches")
    lead_id = sandbox.records("Lead")[0]["Id"]
    client.upload_job_data(job["id"], f"Title,Id\nCEO,{lead_id}\n")  # raises unless 201
    assert client.close_job(job["id"])["state"] == "UploadComplete"
    states = [client.get_job(job["id"], False)["state"] for _ in range(3)]
    assert states == ["InProgress", "JobComplete", "JobComplete"]
    info = client.get_job(job["id"], False)
    assert info["jobType"] == "V2Ingest"
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (1, 0)
    assert leads_by_id(sandbox)[lead_id]["Title"] == "CEO"

    # An unknown column fails the whole job; the client raises SalesforceOperationError.
    with pytest.raises(SalesforceOperationError, match="Field name not found : Foo__c"):
        bulk_lead(sf).update(records=[{"Id": lead_id, "Foo__c": "x"}], wait=WAIT)

    # Aborted before processing: every row stays unprocessed.
    job = client.create_job(Operation.update)
    client.upload_job_data(job["id"], f"Title,Id\nCOO,{lead_id}\n")
    assert client.abort_job(job["id"], False)["state"] == "Aborted"
    assert client.get_job(job["id"], False)["state"] == "Aborted"
    assert csv_rows(bulk_lead(sf).get_unprocessed_records(job["id"])) == [
        {"Title": "COO", "Id": lead_id}
    ]
    assert leads_by_id(sandbox)[lead_id]["Title"] == "CEO"

    # DELETE answers 204 (simple-salesforce's delete_job then chokes on .json(): client bug).
    reply = sf.session.delete(
        f"{sf.bulk2_url}ingest/{job['id']}", headers={"Authorization": f"Bearer {sf.session_id}"}
    )
    assert reply.status_code == 204
    listing = sf.session.get(
        f"{sf.bulk2_url}ingest", headers={"Authorization": f"Bearer {sf.session_id}"}
    ).json()
    assert listing["done"] is True
    assert job["id"] not in {j["id"] for j in listing["records"]}


# ---------------------------------------------------------------------------------------------
# Query


def test_query_12000_in_three_pages(tls: tuple[Any, Path]) -> None:
    sandbox = SalesforceSandbox(CLIENT_ID, CLIENT_SECRET)
    sandbox.load("Lead", lead_rows(12_000, pod="7y"))
    with serving_client(sandbox, tls) as sf:
        soql = "SELECT Id, Name, Owner.Name, SystemModstamp, IsDeleted FROM Lead ORDER BY Id"
        pages = [cast(str, p) for p in bulk_lead(sf).query(soql, max_records=5000, wait=WAIT)]
        assert len(pages) == 3
        parsed = [csv_rows(page) for page in pages]
        assert [len(p) for p in parsed] == [5000, 5000, 2000]
        for page in pages:  # header on every page, every value quoted
            assert page.splitlines()[0] == '"Id","Name","Owner.Name","SystemModstamp","IsDeleted"'
        first = pages[0].splitlines()[1]
        assert first == (
            f'"{make_id("00Q", 1, pod="7y")}","First0 Last0","LeadSync Integration",'
            '"2024-01-01T00:00:00.000Z","false"'
        )
        ids = [row["Id"] for page in parsed for row in page]
        assert len(set(ids)) == 12_000 and ids == sorted(ids)

        # The raw protocol: Sforce-NumberOfRecords always, Sforce-Locator "null" at the end.
        client = bulk_lead(sf)._client
        job = client.create_job(Operation.query, query=soql)
        assert job["state"] == "UploadComplete"  # JSON although the client sent Accept: text/csv
        client.wait_for_job(job["id"], True, WAIT)
        page = client.get_query_results(job["id"], "", 11_999)
        assert page.get("number_of_records") == 11_999
        locator = page.get("locator")
        assert locator
        last = client.get_query_results(job["id"], locator, 11_999)
        assert (last.get("number_of_records"), last.get("locator")) == (1, "")
        info = client.get_job(job["id"], True)
        assert (info["jobType"], info["numberRecordsProcessed"]) == ("V2Query", 12_000)


def test_query_job_errors(org: tuple[SalesforceSandbox, Salesforce]) -> None:
    _, sf = org
    with pytest.raises(SalesforceMalformedRequest) as bad_field:
        next(bulk_lead(sf).query("SELECT Foo FROM Lead", wait=WAIT))
    assert error_content(bad_field)[0]["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceMalformedRequest) as compound:
        next(bulk_lead(sf).query("SELECT Id, Address FROM Lead", wait=WAIT))
    assert error_content(compound) == [
        {"errorCode": "API_ERROR", "message": "Selecting compound data not supported in Bulk Query"}
    ]
    with pytest.raises(SalesforceMalformedRequest) as aggregate:
        next(bulk_lead(sf).query("SELECT COUNT() FROM Lead", wait=WAIT))
    assert aggregate.value.status == 400


# ---------------------------------------------------------------------------------------------
# Fault injection and limits


def test_reject_record_ids_collections_and_bulk(org: tuple[SalesforceSandbox, Salesforce]) -> None:
    sandbox, sf = org
    leads = sandbox.records("Lead")[:5]
    sandbox.reject_record_ids[leads[1]["Id"]] = "Blocked by the sandbox rule"
    sandbox.reject_record_ids[leads[3]["Id"]] = "Region is closed"

    results = sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Lead"}, "Id": r["Id"], "LeadSync_Stage__c": "MQL"}
                for r in leads
            ],
        },
    )
    assert results is not None
    assert [r["success"] for r in results] == [True, False, True, False, True]
    assert results[1]["errors"] == [
        {
            "statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            "message": "Blocked by the sandbox rule",
            "fields": [],
        }
    ]

    records = [{"Id": r["Id"], "LeadSync_Stage__c": "SQL"} for r in leads]
    [result] = bulk_lead(sf).update(records=records, wait=WAIT)
    assert result["numberRecordsFailed"] == 2
    failed = csv_rows(bulk_lead(sf).get_failed_records(job_of(result)))
    assert {r["sf__Id"]: r["sf__Error"] for r in failed} == {
        leads[1]["Id"]: "FIELD_CUSTOM_VALIDATION_EXCEPTION:Blocked by the sandbox rule:--",
        leads[3]["Id"]: "FIELD_CUSTOM_VALIDATION_EXCEPTION:Region is closed:--",
    }
    stages = {r["Id"]: r["LeadSync_Stage__c"] for r in sandbox.records("Lead")}
    assert [stages[r["Id"]] for r in leads] == ["SQL", None, "SQL", None, "SQL"]

    sandbox.reject_record_ids.clear()
    [clean] = bulk_lead(sf).update(records=records, wait=WAIT)
    assert clean["numberRecordsFailed"] == 0


def test_limits_count_bulk_batches_and_query_jobs(tls: tuple[Any, Path]) -> None:
    sandbox = SalesforceSandbox(CLIENT_ID, CLIENT_SECRET, daily_bulk_query_job_limit=2)
    sandbox.load("Lead", lead_rows(20))
    with serving_client(sandbox, tls) as sf:
        limits = sf.limits()
        assert limits["DailyBulkApiBatches"] == {"Max": 15000, "Remaining": 15000}
        assert limits["DailyBulkV2QueryJobs"] == {"Max": 2, "Remaining": 2}

        records = [{"LastName": f"L{i}", "Company": "Co"} for i in range(10_001)]
        bulk_lead(sf).insert(records=records, wait=WAIT)  # one job, 10,001 rows: 2 batches
        bulk_lead(sf).insert(records=records[:5], wait=WAIT)  # 1 batch
        query_csv(bulk_lead(sf), "SELECT Id FROM Lead")
        limits = sf.limits()
        assert limits["DailyBulkApiBatches"]["Remaining"] == 15000 - 3
        assert limits["DailyBulkV2QueryJobs"]["Remaining"] == 1

        query_csv(bulk_lead(sf), "SELECT Id FROM Lead")
        with pytest.raises(SalesforceMalformedRequest) as exhausted:
            query_csv(bulk_lead(sf), "SELECT Id FROM Lead")
        assert error_content(exhausted) == [
            {
                "errorCode": "LIMIT_EXCEEDED",
                "message": "Max bulk v2 query jobs (2) per 24 hrs has been reached",
            }
        ]
        assert sf.limits()["DailyBulkV2QueryJobs"] == {"Max": 2, "Remaining": 0}
