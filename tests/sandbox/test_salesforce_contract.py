"""Contract tests: the unmodified simple-salesforce client against the Salesforce sandbox.

Everything goes through the official client over real HTTPS (private CA), the way the worker
connects: OAuth client-credentials with ``domain="127.0.0.1:PORT/sf"`` and a session that trusts
the sandbox CA with ``trust_env = False`` (trip-wire 2: REQUESTS_CA_BUNDLE is set on these
machines and would otherwise win over ``session.verify``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import requests
from simple_salesforce.api import Salesforce, SFType
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)
from simple_salesforce.util import Usage

from connectors.sandbox.salesforce_app import SalesforceSandbox
from connectors.sandbox.salesforce_schema import make_id
from tests.sandbox.conftest import connect as connect_client
from tests.sandbox.conftest import serving

CLIENT_ID = "contract-client"
CLIENT_SECRET = "contract-secret"
LEAD_COUNT = 4500
BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)
OWNER_ID = make_id("005", 9000, pod="9z")


# ---------------------------------------------------------------------------------------------
# Fixtures


def connect(port: int, ca_path: Path, secret: str = CLIENT_SECRET) -> Salesforce:
    return connect_client(port, ca_path, CLIENT_ID, secret)


def lead_rows(count: int) -> list[dict[str, Any]]:
    """Leads in the generator's load format, one minute apart in SystemModstamp."""
    rows = []
    for i in range(count):
        stamp = BASE_TIME + timedelta(minutes=i)
        rows.append(
            {
                "Id": make_id("00Q", i + 1, pod="8x"),
                "FirstName": f"First{i}",
                "LastName": "O'Brien" if i == 7 else f"Last{i}",
                "Company": "under_score Ltd" if i == 8 else f"Company {i % 50}",
                "Email": f"lead{i}@example.com",
                "Status": "Working - Contacted" if i % 3 == 0 else "Open - Not Contacted",
                "LeadSource": "Web" if i % 2 == 0 else None,
                "OwnerId": OWNER_ID,
                "LeadSync_Score__c": float(i % 100),
                "CreatedDate": stamp,
                "LastModifiedDate": stamp,
                "SystemModstamp": stamp,
            }
        )
    return rows


def new_org(**options: Any) -> SalesforceSandbox:
    sandbox = SalesforceSandbox(CLIENT_ID, CLIENT_SECRET, **options)
    sandbox.load(
        "User",
        [
            {
                "Id": OWNER_ID,
                "Username": "owner@example.com",
                "FirstName": "Olivia",
                "LastName": "Owner",
                "Alias": "oowner",
                "Email": "owner@example.com",
            }
        ],
    )
    return sandbox


@pytest.fixture(scope="module")
def read_org(tls: tuple[Any, Path]) -> Iterator[tuple[SalesforceSandbox, Salesforce]]:
    """A read-only org with 4,500 leads shared by the query tests."""
    sandbox = new_org()
    sandbox.load("Lead", lead_rows(LEAD_COUNT))
    with serving(sandbox, tls) as port:
        yield sandbox, connect(port, tls[1])


@pytest.fixture()
def write_org(tls: tuple[Any, Path]) -> Iterator[tuple[SalesforceSandbox, Salesforce]]:
    """A fresh small org per test for tests that write."""
    sandbox = new_org()
    sandbox.load("Lead", lead_rows(250))
    with serving(sandbox, tls) as port:
        yield sandbox, connect(port, tls[1])


def sobj(sf: Salesforce, name: str) -> SFType:
    """``sf.Lead`` with its real type (``Salesforce.__getattr__`` is typed as a union)."""
    return cast(SFType, getattr(sf, name))


def sandbox_count(sf: Salesforce, soql: str) -> int:
    return sf.query(soql)["totalSize"]


def first_error(exc: pytest.ExceptionInfo[Any]) -> dict[str, Any]:
    content = exc.value.content
    assert isinstance(content, list), content  # REST errors are JSON arrays
    return content[0]


def error_code(exc: pytest.ExceptionInfo[Any]) -> str:
    return first_error(exc)["errorCode"]


# ---------------------------------------------------------------------------------------------
# OAuth


def test_client_credentials_login_and_bad_secret(tls: tuple[Any, Path]) -> None:
    sandbox = new_org()
    with serving(sandbox, tls) as port:
        sf = connect(port, tls[1])
        assert sf.session_id.startswith("00D")
        assert sf.sf_instance == f"127.0.0.1:{port}"
        assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 0

        with pytest.raises(SalesforceAuthenticationFailed) as bad_secret:
            connect(port, tls[1], secret="wrong")
        assert bad_secret.value.code == "invalid_client"
        assert bad_secret.value.auth_message == "invalid client credentials"

        session = requests.Session()
        session.verify = str(tls[1])
        session.trust_env = False
        with pytest.raises(SalesforceAuthenticationFailed) as bad_id:
            Salesforce(
                consumer_key="nobody",
                consumer_secret=CLIENT_SECRET,
                domain=f"127.0.0.1:{port}/sf",
                session=session,
            )
        assert bad_id.value.code == "invalid_client_id"
        assert sandbox.call_counts()["oauth"] == 3


def test_password_grant(tls: tuple[Any, Path]) -> None:
    sandbox = new_org()
    sandbox.logins["owner@example.com"] = "pw"
    with serving(sandbox, tls) as port:

        def login(password: str) -> Salesforce:
            session = requests.Session()
            session.verify = str(tls[1])
            session.trust_env = False
            return Salesforce(
                username="owner@example.com",
                password=password,
                consumer_key=CLIENT_ID,
                consumer_secret=CLIENT_SECRET,
                domain=f"127.0.0.1:{port}/sf",
                session=session,
            )

        sf = login("pw")
        assert sf.query(f"SELECT Id, Name FROM User WHERE Id = '{OWNER_ID}'")["totalSize"] == 1
        with pytest.raises(SalesforceAuthenticationFailed) as refused:
            login("wrong")
        assert (refused.value.code, refused.value.auth_message) == (
            "invalid_grant",
            "authentication failure",
        )


def test_expired_session_triggers_relogin(tls: tuple[Any, Path]) -> None:
    sandbox = new_org(session_lifetime_s=0.3)
    sandbox.load("Lead", lead_rows(3))
    with serving(sandbox, tls) as port:
        sf = connect(port, tls[1])
        first_token = sf.session_id
        time.sleep(0.45)
        assert sf.query("SELECT Id FROM Lead")["totalSize"] == 3
        assert sf.session_id != first_token
        counts = sandbox.call_counts()
        assert counts["oauth"] == 2  # initial login + automatic refresh after the 401
        assert counts["query"] == 2  # the rejected attempt + the retry


def test_unknown_token_is_a_json_array_401(tls: tuple[Any, Path]) -> None:
    sandbox = new_org()
    with serving(sandbox, tls) as port:
        session = requests.Session()
        session.verify = str(tls[1])
        session.trust_env = False
        reply = session.get(
            f"https://127.0.0.1:{port}/services/data/v59.0/limits/",
            headers={"Authorization": "Bearer nope"},
        )
        assert reply.status_code == 401
        assert reply.headers["Sforce-Limit-Info"] == "api-usage=0/100000"
        assert reply.json() == [
            {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
        ]


# ---------------------------------------------------------------------------------------------
# SOQL


def test_query_all_pages_through_4500_leads(
    read_org: tuple[SalesforceSandbox, Salesforce],
) -> None:
    sandbox, sf = read_org
    sandbox.reset_call_counts()
    first = sf.query("SELECT Id, Email FROM Lead")
    assert first["totalSize"] == LEAD_COUNT
    assert first["done"] is False
    assert len(first["records"]) == 2000
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    assert first["nextRecordsUrl"].endswith("-2000")
    assert first["records"][0]["attributes"] == {
        "type": "Lead",
        "url": f"/services/data/v59.0/sobjects/Lead/{first['records'][0]['Id']}",
    }
    assert list(first["records"][0]) == ["attributes", "Id", "Email"]

    sandbox.reset_call_counts()
    result = sf.query_all("SELECT Id FROM Lead ORDER BY SystemModstamp")
    assert result["totalSize"] == LEAD_COUNT
    assert len({r["Id"] for r in result["records"]}) == LEAD_COUNT
    counts = sandbox.call_counts()
    assert counts["query"] == 1
    assert counts["query_more"] == 2  # 2,000 + 2,000 + 500
    assert counts["total"] == 3

    small = sf.query("SELECT Id FROM Lead", headers={"Sforce-Query-Options": "batchSize=500"})
    assert len(small["records"]) == 500
    assert small["nextRecordsUrl"].endswith("-500")
    assert sf.api_usage["api-usage"].total == 100_000


def test_where_filters_and_ordering(read_org: tuple[SalesforceSandbox, Salesforce]) -> None:
    _, sf = read_org
    count = lambda q: sf.query(q)["totalSize"]  # noqa: E731

    # SystemModstamp windows: datetime literals with Z, offsets and milliseconds.
    assert count("SELECT Id FROM Lead WHERE SystemModstamp > 2024-01-01T01:00:00Z") == 4439
    assert count("SELECT Id FROM Lead WHERE SystemModstamp >= 2024-01-01T09:00:00+09:00") == 4500
    assert count("SELECT Id FROM Lead WHERE SystemModstamp < 2024-01-01T00:10:00.000Z") == 10
    assert (
        count(
            "SELECT Id FROM Lead WHERE SystemModstamp >= 2024-01-01T00:10:00Z "
            "AND SystemModstamp < 2024-01-01T00:20:00Z"
        )
        == 10
    )
    assert count("SELECT Id FROM Lead WHERE CreatedDate = 2024-01-02T00:00:00Z") == 1

    lead_id = make_id("00Q", 42, pod="8x")
    assert count(f"SELECT Id FROM Lead WHERE Id = '{lead_id}'") == 1
    assert count(f"SELECT Id FROM Lead WHERE Id = '{lead_id[:15]}'") == 1  # 15-char ids work
    ids = ", ".join(f"'{make_id('00Q', n, pod='8x')}'" for n in (1, 2, 3))
    assert count(f"SELECT Id FROM Lead WHERE Id IN ({ids})") == 3
    assert count(f"SELECT Id FROM Lead WHERE Id NOT IN ({ids})") == LEAD_COUNT - 3

    # Escaped quote, LIKE wildcards and the escaped underscore.
    assert count("SELECT Id FROM Lead WHERE LastName = 'O\\'Brien'") == 1
    assert count("SELECT Id FROM Lead WHERE LastName LIKE 'o\\'b%'") == 1  # case-insensitive
    assert count("SELECT Id FROM Lead WHERE Company LIKE 'under\\_score%'") == 1
    assert count("SELECT Id FROM Lead WHERE Company LIKE 'under_score%'") == 1
    assert count("SELECT Id FROM Lead WHERE Email LIKE 'lead1%@example.com'") == 1111

    # Null semantics: != matches nulls, = null matches them only.
    assert count("SELECT Id FROM Lead WHERE LeadSource = null") == 2250
    assert count("SELECT Id FROM Lead WHERE LeadSource != 'Web'") == 2250
    assert count("SELECT Id FROM Lead WHERE NOT (LeadSource = 'Web' OR IsConverted = true)") == 2250
    assert count("SELECT Id FROM Lead WHERE IsConverted = false AND LeadSync_Score__c >= 90") == 450
    assert count("SELECT COUNT() FROM Lead WHERE Status IN ('Working - Contacted')") == 1500

    page = sf.query(
        "SELECT Id, LeadSync_Score__c, Owner.Name FROM Lead "
        "ORDER BY LeadSync_Score__c DESC, SystemModstamp ASC LIMIT 3 OFFSET 1"
    )
    assert page["totalSize"] == 3
    assert [r["LeadSync_Score__c"] for r in page["records"]] == [99.0, 99.0, 99.0]
    assert page["records"][0]["Id"] == make_id("00Q", 200, pod="8x")
    assert page["records"][0]["Owner"] == {
        "attributes": {"type": "Name", "url": f"/services/data/v59.0/sobjects/User/{OWNER_ID}"},
        "Name": "Olivia Owner",
    }
    nulls_last = sf.query("SELECT LeadSource FROM Lead ORDER BY LeadSource DESC NULLS LAST LIMIT 1")
    assert nulls_last["records"][0]["LeadSource"] == "Web"
    nulls_first = sf.query("SELECT LeadSource FROM Lead ORDER BY LeadSource LIMIT 1")
    assert nulls_first["records"][0]["LeadSource"] is None

    record = sf.query(f"SELECT SystemModstamp, Name FROM Lead WHERE Id = '{lead_id}'")["records"][0]
    assert record["SystemModstamp"] == "2024-01-01T00:41:00.000+0000"
    assert record["Name"] == "First41 Last41"


def test_query_errors_are_salesforce_shaped(
    read_org: tuple[SalesforceSandbox, Salesforce],
) -> None:
    _, sf = read_org
    with pytest.raises(SalesforceMalformedRequest) as unknown_field:
        sf.query("SELECT Foo FROM Lead")
    assert error_code(unknown_field) == "INVALID_FIELD"
    assert first_error(unknown_field)["message"] == (
        "\nSELECT Foo FROM Lead\n       ^\nERROR at Row:1:Column:8\n"
        "No such column 'Foo' on entity 'Lead'. If you are attempting to use a custom field, be "
        "sure to append the '__c' after the custom field name. Please reference your WSDL or the "
        "describe call for the appropriate names."
    )

    with pytest.raises(SalesforceMalformedRequest) as eof:
        sf.query("SELECT Id FROM Lead WHERE")
    assert error_code(eof) == "MALFORMED_QUERY"
    assert first_error(eof)["message"] == (
        "\nSELECT Id FROM Lead WHERE\n                         ^\n"
        "ERROR at Row:1:Column:26\nunexpected token: '<EOF>'"
    )

    with pytest.raises(SalesforceMalformedRequest) as mixed:
        sf.query("SELECT Id FROM Lead WHERE IsDeleted = false AND Email = null OR Phone = null")
    assert error_code(mixed) == "MALFORMED_QUERY"  # AND/OR mix needs parentheses

    with pytest.raises(SalesforceMalformedRequest) as unknown_type:
        sf.query("SELECT Id FROM Leed")
    assert error_code(unknown_type) == "INVALID_TYPE"
    assert "sObject type 'Leed' is not supported." in first_error(unknown_type)["message"]

    with pytest.raises(SalesforceMalformedRequest) as quoted_datetime:
        sf.query("SELECT Id FROM Lead WHERE SystemModstamp > '2024-01-01T00:00:00Z'")
    assert error_code(quoted_datetime) == "MALFORMED_QUERY"
    assert "must be of type dateTime" in first_error(quoted_datetime)["message"]

    with pytest.raises(SalesforceMalformedRequest) as bad_id:
        sf.query("SELECT Id FROM Lead WHERE Id = 'abc'")
    assert error_code(bad_id) == "INVALID_QUERY_FILTER_OPERATOR"

    with pytest.raises(SalesforceMalformedRequest) as bad_locator:
        sf.query_more("01gXXXXXXXXXXXXXXX-2000")
    assert error_code(bad_locator) == "INVALID_QUERY_LOCATOR"


# ---------------------------------------------------------------------------------------------
# Writes


def test_crud_and_validation(write_org: tuple[SalesforceSandbox, Salesforce]) -> None:
    sandbox, sf = write_org
    created = sobj(sf, "Lead").create(
        {"LastName": "Yamada", "FirstName": "太郎", "Company": "Acme"}
    )
    assert created["success"] is True and created["errors"] == []
    lead = sobj(sf, "Lead").get(created["id"])
    assert lead["Status"] == "Open - Not Contacted"  # picklist default
    assert lead["Name"] == "Yamada 太郎"  # family name first for Japanese names
    assert lead["OwnerId"] == sandbox.integration_user_id
    assert lead["IsDeleted"] is False

    before = sandbox.records("Lead")[0]
    assert sobj(sf, "Lead").update(before["Id"], {"LeadSync_Stage__c": "MQL"}) == 204
    after = next(r for r in sandbox.records("Lead") if r["Id"] == before["Id"])
    assert after["LeadSync_Stage__c"] == "MQL"
    assert after["SystemModstamp"] > before["SystemModstamp"]
    assert after["LastModifiedDate"] == after["SystemModstamp"]

    with pytest.raises(SalesforceMalformedRequest) as missing:
        sobj(sf, "Lead").create({"FirstName": "No"})
    assert error_code(missing) == "REQUIRED_FIELD_MISSING"
    assert first_error(missing)["fields"] == ["LastName", "Company"]

    with pytest.raises(SalesforceMalformedRequest) as unknown:
        sobj(sf, "Lead").update(before["Id"], {"Foo__c": 1})
    assert unknown.value.content == [
        {"message": "No such column 'Foo__c' on sobject of type Lead", "errorCode": "INVALID_FIELD"}
    ]

    with pytest.raises(SalesforceMalformedRequest) as readonly:
        sobj(sf, "Lead").update(before["Id"], {"Name": "X", "IsConverted": True})
    assert error_code(readonly) == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert first_error(readonly)["fields"] == ["Name", "IsConverted"]

    with pytest.raises(SalesforceMalformedRequest) as picklist:
        sobj(sf, "Lead").update(before["Id"], {"LeadSync_Temperature__c": "boiling"})
    assert picklist.value.content == [
        {
            "message": "LeadSync Temperature: bad value for restricted picklist field: boiling",
            "errorCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            "fields": ["LeadSync_Temperature__c"],
        }
    ]

    with pytest.raises(SalesforceMalformedRequest) as too_big:
        sobj(sf, "Lead").update(before["Id"], {"LeadSync_Score__c": 100000})
    assert error_code(too_big) == "NUMBER_OUTSIDE_VALID_RANGE"

    # Delete: gone from query, visible to queryAll, 404 ENTITY_IS_DELETED on GET.
    assert sobj(sf, "Lead").delete(created["id"]) == 204
    soql = f"SELECT Id, IsDeleted FROM Lead WHERE Id = '{created['id']}'"
    assert sf.query(soql)["totalSize"] == 0
    deleted = sf.query_all(soql, include_deleted=True)["records"]
    assert [r["IsDeleted"] for r in deleted] == [True]
    with pytest.raises(SalesforceResourceNotFound) as gone:
        sobj(sf, "Lead").get(created["id"])
    assert error_code(gone) == "ENTITY_IS_DELETED"
    with pytest.raises(SalesforceResourceNotFound) as never:
        sobj(sf, "Lead").get(make_id("00Q", 999_999, pod="8x"))
    assert error_code(never) == "NOT_FOUND"

    # getUpdated / getDeleted only cover whole minutes up to "now": move the org clock on.
    start = datetime.now(UTC) - timedelta(minutes=5)
    sandbox.clock = lambda: datetime.now(UTC) + timedelta(minutes=2)
    end = datetime.now(UTC) + timedelta(minutes=2)
    deleted_ids = [d["id"] for d in sobj(sf, "Lead").deleted(start, end)["deletedRecords"]]
    assert deleted_ids == [created["id"]]
    updated = sobj(sf, "Lead").updated(start, end)
    assert before["Id"] in updated["ids"] and created["id"] not in updated["ids"]
    assert updated["latestDateCovered"].endswith(":00.000+0000")
    with pytest.raises(SalesforceMalformedRequest) as too_old:
        sobj(sf, "Lead").updated(start - timedelta(days=31), end)
    assert error_code(too_old) == "INVALID_REPLICATION_DATE"


def test_upsert_by_external_id(write_org: tuple[SalesforceSandbox, Salesforce]) -> None:
    _, sf = write_org
    body = {"LastName": "Suzuki", "Company": "Acme"}
    assert sobj(sf, "Lead").upsert("LeadSync_Unified_Id__c/u-1 x", body) == 201  # sent as u-1%20x
    assert sobj(sf, "Lead").upsert("LeadSync_Unified_Id__c/U-1 X", {"Title": "CTO"}) == 200
    assert sandbox_count(sf, "SELECT COUNT() FROM Lead WHERE LeadSync_Unified_Id__c != null") == 1
    assert sobj(sf, "Lead").upsert("LeadSync_Unified_Id__c/u-2", body) == 201
    found = sobj(sf, "Lead").get_by_custom_id("LeadSync_Unified_Id__c", "u-2")
    assert found["LastName"] == "Suzuki"
    # get_by_custom_id quote_plus-encodes (space -> '+'), and Salesforce reads '+' in a path as
    # a literal plus (simple-salesforce issue #801): ids with spaces are not found.
    with pytest.raises(SalesforceResourceNotFound):
        sobj(sf, "Lead").get_by_custom_id("LeadSync_Unified_Id__c", "u-1 x")
    with pytest.raises(SalesforceResourceNotFound) as not_external:
        sobj(sf, "Lead").upsert("Title/x", body)
    assert error_code(not_external) == "NOT_FOUND"


def test_collections_update_partial_success(
    write_org: tuple[SalesforceSandbox, Salesforce],
) -> None:
    sandbox, sf = write_org
    leads = sandbox.records("Lead")[:200]
    records = [
        {"attributes": {"type": "Lead"}, "Id": r["Id"], "LeadSync_Temperature__c": "hot"}
        for r in leads
    ]
    records[57]["LeadSync_Temperature__c"] = "lukewarm"
    sandbox.reset_call_counts()
    results = sf.restful(
        "composite/sobjects", method="PATCH", json={"allOrNone": False, "records": records}
    )
    assert sandbox.call_counts() == {"collections": 1, "total": 1}
    assert isinstance(results, list) and len(results) == 200
    assert sum(r["success"] for r in results) == 199
    assert results[0] == {"id": leads[0]["Id"], "success": True, "errors": []}
    assert results[57] == {
        "success": False,
        "errors": [
            {
                "statusCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                "message": "LeadSync Temperature: bad value for restricted picklist field: "
                "lukewarm",
                "fields": ["LeadSync_Temperature__c"],
            }
        ],
    }
    temperatures = {r["Id"]: r["LeadSync_Temperature__c"] for r in sandbox.records("Lead")}
    assert sum(1 for t in temperatures.values() if t == "hot") == 199

    # allOrNone: one bad record rolls everyone back.
    records[57]["LeadSync_Temperature__c"] = "lukewarm"
    for record in records:
        if record is not records[57]:
            record["LeadSync_Temperature__c"] = "cold"
    results = sf.restful(
        "composite/sobjects", method="PATCH", json={"allOrNone": True, "records": records}
    )
    assert results is not None and not any(r["success"] for r in results)
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert results[57]["errors"][0]["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert "cold" not in {r["LeadSync_Temperature__c"] for r in sandbox.records("Lead")}

    created = sf.restful(
        "composite/sobjects",
        method="POST",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Lead"}, "LastName": "New", "Company": "Co"},
                {"attributes": {"type": "Contact"}, "LastName": "Person"},
                {"attributes": {"type": "Lead"}, "FirstName": "NoLastName"},
            ],
        },
    )
    assert created is not None
    assert [r["success"] for r in created] == [True, True, False]
    assert created[0]["id"].startswith("00Q") and created[1]["id"].startswith("003")
    assert created[2]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"


def test_rejected_record_fails_alone(write_org: tuple[SalesforceSandbox, Salesforce]) -> None:
    sandbox, sf = write_org
    rejected, neighbour = (r["Id"] for r in sandbox.records("Lead")[:2])
    sandbox.reject_record_ids[rejected] = "Owner is on leave"  # what fault profiles set

    with pytest.raises(SalesforceMalformedRequest) as refused:
        sobj(sf, "Lead").update(rejected, {"Title": "x"})
    assert refused.value.content == [
        {
            "message": "Owner is on leave",
            "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            "fields": [],
        }
    ]
    assert sobj(sf, "Lead").update(neighbour, {"Title": "x"}) == 204
    # System validation runs before validation rules: a bad value reports its own error.
    with pytest.raises(SalesforceMalformedRequest) as picklist:
        sobj(sf, "Lead").update(rejected, {"LeadSync_Temperature__c": "boiling"})
    assert error_code(picklist) == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    # 18-character ids are accepted in any case (the suffix encodes the case).
    assert sobj(sf, "Lead").get(neighbour.lower())["Title"] == "x"
    assert sobj(sf, "Lead").get(rejected)["Title"] is None

    sandbox.reject_record_ids.clear()
    assert sobj(sf, "Lead").update(rejected, {"Title": "y"}) == 204


def test_collections_reject_more_than_200_records(
    write_org: tuple[SalesforceSandbox, Salesforce],
) -> None:
    sandbox, sf = write_org
    records = [
        {"attributes": {"type": "Lead"}, "Id": r["Id"], "Title": "x"}
        for r in sandbox.records("Lead")[:201]
    ]
    with pytest.raises(SalesforceMalformedRequest) as too_many:
        sf.restful("composite/sobjects", method="PATCH", json={"records": records})
    assert too_many.value.status == 400
    assert too_many.value.content == [
        {
            "message": "record limit reached. cannot submit more than 200 records into this call",
            "errorCode": "EXCEEDED_ID_LIMIT",
        }
    ]
    assert all(r.get("Title") is None for r in sandbox.records("Lead"))


def test_converted_lead_is_read_only(write_org: tuple[SalesforceSandbox, Salesforce]) -> None:
    sandbox, sf = write_org
    lead_id = sandbox.records("Lead")[3]["Id"]
    converted = sandbox.convert_lead(lead_id)
    assert converted["IsConverted"] is True
    assert converted["Status"] == "Closed - Converted"
    assert converted["ConvertedContactId"].startswith("003")
    assert converted["ConvertedAccountId"].startswith("001")
    assert converted["ConvertedDate"] == datetime.now(UTC).date()

    with pytest.raises(SalesforceMalformedRequest) as refused:
        sobj(sf, "Lead").update(lead_id, {"LeadSync_Stage__c": "SQL"})
    assert refused.value.content == [
        {
            "message": "cannot reference converted lead",
            "errorCode": "CANNOT_UPDATE_CONVERTED_LEAD",
            "fields": [],
        }
    ]
    results = sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={"records": [{"attributes": {"type": "Lead"}, "Id": lead_id, "Title": "x"}]},
    )
    assert results == [
        {
            "success": False,
            "errors": [
                {
                    "statusCode": "CANNOT_UPDATE_CONVERTED_LEAD",
                    "message": "cannot reference converted lead",
                    "fields": [],
                }
            ],
        }
    ]
    contact = sobj(sf, "Contact").get(converted["ConvertedContactId"])
    assert contact["Email"] == "lead3@example.com"
    assert sf.query("SELECT COUNT() FROM Lead WHERE IsConverted = true")["totalSize"] == 1


# ---------------------------------------------------------------------------------------------
# Describe, limits


def test_describe_comes_from_the_field_table(
    read_org: tuple[SalesforceSandbox, Salesforce],
) -> None:
    _, sf = read_org
    described = sf.describe()
    assert described is not None
    names = {o["name"] for o in described["sobjects"]}
    assert {"Lead", "Contact", "Task", "Event", "CampaignMember", "OpportunityContactRole"} <= names

    lead = sobj(sf, "Lead").describe()
    assert lead["keyPrefix"] == "00Q"
    fields = {f["name"]: f for f in lead["fields"]}
    stage = fields["LeadSync_Stage__c"]
    assert stage["custom"] is True and stage["type"] == "picklist"
    assert stage["restrictedPicklist"] is True
    assert [p["value"] for p in stage["picklistValues"]] == [
        "Lead", "MAL", "MQL", "SAL", "SQL", "Opportunity", "Customer", "Recycled", "Disqualified",
    ]  # fmt: skip
    assert fields["LeadSync_Unified_Id__c"]["length"] == 64
    assert fields["LeadSync_Score__c"]["precision"] == 5
    assert fields["LeadSync_Synced_At__c"]["type"] == "datetime"
    assert fields["SystemModstamp"]["updateable"] is False
    assert fields["Name"]["createable"] is False
    assert fields["LastName"]["nillable"] is False
    status_default = [p for p in fields["Status"]["picklistValues"] if p["defaultValue"]]
    assert [p["value"] for p in status_default] == ["Open - Not Contacted"]
    assert {f["name"] for f in sobj(sf, "Contact").describe()["fields"]} >= {
        "LeadSync_Temperature__c",
        "LeadSync_Next_Content_Subject__c",
    }
    assert sobj(sf, "Lead").metadata()["objectDescribe"]["name"] == "Lead"
    assert sf.limits()["DailyApiRequests"]["Max"] == 100_000


BANT_FIELDS = (
    "BANT_Budget__c",
    "BANT_Authority__c",
    "BANT_Need__c",
    "BANT_Timeline__c",
    "BANT_Competitor__c",
)


def test_lead_has_the_bant_checkboxes_and_may_wait_in_a_queue(
    write_org: tuple[SalesforceSandbox, Salesforce],
) -> None:
    _, sf = write_org
    fields = {f["name"]: f for f in sobj(sf, "Lead").describe()["fields"]}
    for name in BANT_FIELDS:
        f = fields[name]
        assert (f["type"], f["custom"], f["nillable"]) == ("boolean", True, False), name
        assert f["defaultValue"] is False and f["updateable"] is True
    assert "BANT_Need__c" not in {f["name"] for f in sobj(sf, "Contact").describe()["fields"]}
    assert {"Group", "User"} <= set(fields["OwnerId"]["referenceTo"])

    queue = make_id("00G", 1, pod="8x")
    created = sobj(sf, "Lead").create(
        {"LastName": "Queued", "Company": "Acme", "OwnerId": queue, "BANT_Need__c": True}
    )
    lead_id = created["id"]
    rows = sf.query(
        "SELECT OwnerId, BANT_Need__c, BANT_Timeline__c FROM Lead WHERE Id = '" + lead_id + "'"
    )["records"]
    assert (rows[0]["OwnerId"], rows[0]["BANT_Need__c"], rows[0]["BANT_Timeline__c"]) == (
        queue,
        True,
        False,  # a checkbox not sent is unticked, never null
    )
    # The queue's Accept button: a user takes ownership.
    sobj(sf, "Lead").update(lead_id, {"OwnerId": OWNER_ID, "BANT_Timeline__c": True})
    rows = sf.query("SELECT OwnerId, BANT_Timeline__c FROM Lead WHERE Id = '" + lead_id + "'")
    assert (rows["records"][0]["OwnerId"], rows["records"][0]["BANT_Timeline__c"]) == (
        OWNER_ID,
        True,
    )
    # A queue cannot own a Contact.
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sobj(sf, "Contact").create({"LastName": "Nobody", "OwnerId": queue})
    assert error_code(exc) == "MALFORMED_ID"


def test_daily_limit_refuses_requests(tls: tuple[Any, Path]) -> None:
    sandbox = new_org(daily_api_limit=3)
    with serving(sandbox, tls) as port:
        sf = connect(port, tls[1])  # OAuth does not count against the API limit
        for _ in range(3):
            sf.query("SELECT COUNT() FROM Lead")
        assert sf.api_usage["api-usage"] == Usage(used=3, total=3)
        with pytest.raises(SalesforceRefusedRequest) as refused:
            sf.query("SELECT COUNT() FROM Lead")
        assert refused.value.status == 403
        assert refused.value.content == [
            {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
        ]


def test_narrow_records_share_their_field_names() -> None:
    # Memory at a million people: a Task keeps its values, not its own table of 25 field names.
    sandbox = SalesforceSandbox("id", "secret")
    sandbox.load("Task", [{"Id": make_id("00T", i), "Subject": f"Call {i}"} for i in range(3)])
    stored = list(sandbox._data["Task"].values())
    assert [r["Subject"] for r in stored] == ["Call 0", "Call 1", "Call 2"]
    assert all(sys.getsizeof(r) < sys.getsizeof(dict(r)) / 2 for r in stored)
    # Still an ordinary dict to everything that reads it, edits included.
    stored[0]["Subject"] = "Edited"
    assert sandbox.records("Task")[0]["Subject"] == "Edited"
