"""The connectors against the sandboxes: incremental pulls, batched writes, per-record outcomes."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests

from connectors.hubspot import HubSpotConnector
from connectors.salesforce import SalesforceConfigError, SalesforceConnector
from connectors.sandbox.server import Sandboxes
from tests.connectors.conftest import salesforce_connector

SIZE = 300


@pytest.fixture(scope="module")
def box() -> Iterator[Sandboxes]:
    with Sandboxes(size=SIZE, seed=5) as sandboxes:
        yield sandboxes


@pytest.fixture(scope="module")
def hubspot(box: Sandboxes) -> HubSpotConnector:
    env = box.env()
    return HubSpotConnector(env["HUBSPOT_ACCESS_TOKEN"], env["HUBSPOT_BASE_URL"])


@pytest.fixture(scope="module")
def salesforce(box: Sandboxes) -> SalesforceConnector:
    return salesforce_connector(box)


def _flatten(pages: Iterator[list[dict]]) -> list[dict]:
    return [record for page in pages for record in page]


def test_hubspot_full_pull_pages_through_every_contact_once(
    box: Sandboxes, hubspot: HubSpotConnector
) -> None:
    before = hubspot.calls.snapshot().get("list", 0)
    records = _flatten(hubspot.pull("contacts", ["email", "firstname"], None))
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == len(box.dataset.hubspot["contacts"])
    # 100 per page is the list endpoint's maximum: no call is wasted on small pages.
    pages = hubspot.calls.snapshot()["list"] - before
    assert pages == -(-len(ids) // 100)
    assert all(r["_modified_at"].tzinfo is not None for r in records)


def test_hubspot_engagements_carry_their_contacts(
    box: Sandboxes, hubspot: HubSpotConnector
) -> None:
    emails = _flatten(hubspot.pull("emails", ["hs_timestamp"], None, with_contacts=True))
    assert emails and all(r["contact_ids"] for r in emails)
    expected = {
        r["id"]: sorted(r["associations"]["contacts"]) for r in box.dataset.hubspot["emails"]
    }
    assert {r["id"]: sorted(r["contact_ids"]) for r in emails} == expected


def test_hubspot_incremental_pull_returns_only_changes(
    box: Sandboxes, hubspot: HubSpotConnector
) -> None:
    records = _flatten(hubspot.pull("contacts", ["email"], None))
    cursor = max(r["_modified_at"] for r in records)
    changed = [r["id"] for r in records[:7]]
    outcomes = hubspot.batch_update("contacts", [(rid, {"jobtitle": "CMO"}) for rid in changed])
    assert all(o.ok for o in outcomes)
    since = _flatten(hubspot.pull("contacts", ["email", "jobtitle"], cursor + timedelta(seconds=1)))
    # The overlap window may bring a few unchanged records too; every change must be there.
    assert set(changed) <= {r["id"] for r in since}
    assert len(since) < len(records)
    assert all(r["jobtitle"] == "CMO" for r in since if r["id"] in changed)


def test_hubspot_one_bad_record_never_fails_its_batch(
    box: Sandboxes, hubspot: HubSpotConnector
) -> None:
    ids = [c["id"] for c in box.dataset.hubspot["contacts"][:150]]
    updates = [(rid, {"jobtitle": "Director"}) for rid in ids]
    updates[42] = (updates[42][0], {"not_a_property_anywhere": "x"})
    outcomes = hubspot.batch_update("contacts", updates)
    assert len(outcomes) == 150
    failed = [o for o in outcomes if not o.ok]
    assert [o.record_id for o in failed] == [ids[42]]
    assert failed[0].error


def test_hubspot_creates_missing_properties_once(hubspot: HubSpotConnector) -> None:
    spec = [
        {
            "name": "leadsync_test_temperature",
            "label": "Temperature",
            "type": "enumeration",
            "fieldType": "select",
            "options": [{"label": "Hot", "value": "hot"}, {"label": "Cold", "value": "cold"}],
        }
    ]
    assert hubspot.ensure_properties("contacts", spec) == ["leadsync_test_temperature"]
    assert hubspot.ensure_properties("contacts", spec) == []


def test_salesforce_incremental_pull_and_deleted_records(
    box: Sandboxes, salesforce: SalesforceConnector
) -> None:
    leads = _flatten(salesforce.pull("Lead", ["Email", "Status"], None))
    seeded = box.dataset.salesforce["Lead"]
    assert len(leads) == len(seeded)  # queryAll: merge losers (IsDeleted) included
    assert {r["Id"] for r in leads if r["_deleted"]} == {
        r["Id"] for r in seeded if r.get("IsDeleted")
    }
    cursor = max(r["_modified_at"] for r in leads)
    assert _flatten(salesforce.pull("Lead", ["Email"], cursor + timedelta(hours=1))) == []


def test_salesforce_collections_keep_per_record_outcomes(
    box: Sandboxes, salesforce: SalesforceConnector
) -> None:
    leads = box.salesforce.records("Lead")
    open_ids = [r["Id"] for r in leads if not r.get("IsConverted")][:5]
    converted = [r["Id"] for r in leads if r.get("IsConverted")][:1]
    assert converted, "the generator seeds converted leads"
    updates = [(rid, {"LeadSync_Stage__c": "MQL"}) for rid in [*open_ids, *converted]]
    outcomes = salesforce.update("Lead", updates)
    assert [o.ok for o in outcomes] == [True] * 5 + [False]
    assert "CANNOT_UPDATE_CONVERTED_LEAD" in (outcomes[-1].error or "")
    after = {r["Id"]: r for r in box.salesforce.records("Lead")}
    assert all(after[rid]["LeadSync_Stage__c"] == "MQL" for rid in open_ids)
    recent = datetime.now(UTC) - timedelta(minutes=5)
    pulled = _flatten(salesforce.pull("Lead", ["LeadSync_Stage__c"], recent))
    assert set(open_ids) <= {r["Id"] for r in pulled}


def test_salesforce_missing_custom_field_is_named_before_any_write(
    salesforce: SalesforceConnector,
) -> None:
    with pytest.raises(SalesforceConfigError, match="Nonexistent_Field__c"):
        salesforce.update("Lead", [("00Q000000000001AAA", {"Nonexistent_Field__c": "x"})])


def test_salesforce_values_are_escaped_in_soql(salesforce: SalesforceConnector) -> None:
    # A quote in data cannot end the string literal and widen the query.
    hostile = "x' OR Email != '"
    assert salesforce.query_ids("Lead", "Email", [hostile]) == []


def test_hubspot_archived_contacts_are_listed_as_deleted(
    box: Sandboxes, hubspot: HubSpotConnector
) -> None:
    victim = box.dataset.hubspot["contacts"][-1]["id"]
    response = requests.delete(
        f"{box.hubspot_url}/crm/v3/objects/contacts/{victim}",
        headers={"Authorization": f"Bearer {box.env()['HUBSPOT_ACCESS_TOKEN']}"},
        timeout=10,
    )
    assert response.status_code == 204
    archived = _flatten(hubspot.pull_archived("contacts", ["email"]))
    assert [r["id"] for r in archived] == [victim]
    assert archived[0]["archived"] == "true" and archived[0]["_deleted"] is True
    live = _flatten(hubspot.pull("contacts", ["email"], None))
    assert victim not in {r["id"] for r in live}


def test_salesforce_writes_stop_cleanly_at_the_budget_reserve() -> None:
    with Sandboxes(size=1200, seed=8, salesforce_options={"daily_api_limit": 100}) as sandboxes:
        env = sandboxes.env()
        # A 90% reserve of a 100-request budget: the connector may spend about 10 requests.
        connector = SalesforceConnector(
            env["SALESFORCE_DOMAIN"],
            client_id=env["SALESFORCE_CLIENT_ID"],
            client_secret=env["SALESFORCE_CLIENT_SECRET"],
            ca_bundle=env["LEADSYNC_CA_BUNDLE"],
            reserve_fraction=0.9,
        )
        leads = sandboxes.salesforce.records("Lead")
        open_ids = [r["Id"] for r in leads if not r.get("IsConverted")][:200]
        assert len(open_ids) == 200
        updates = [(rid, {"LeadSync_Stage__c": "MAL"}) for rid in open_ids] * 20
        outcomes = connector.update("Lead", updates)
        # Whole collections calls only, every attempted record written, the rest left planned.
        assert 0 < len(outcomes) < len(updates)
        assert len(outcomes) % 200 == 0 and all(o.ok for o in outcomes)
        remaining = connector.budget.remaining
        assert remaining is not None and remaining <= 90
        # Stopped before the CRM ever had to refuse a request.
        assert 403 not in sandboxes.salesforce_faults.counts_by_status()
