"""API cost of a sync, counted by the sandboxes themselves (what reached the service):

* a first full sync spends exactly the minimum number of calls its page and batch sizes allow
  (HubSpot lists 100 per page, Salesforce queries 2,000 per page, HubSpot batch updates 100 and
  Salesforce Collections 200 records per call), plus a fixed set of metadata calls;
* a re-sync with nothing to write makes zero write calls and only cursor reads.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.cost import minimum_first_sync_calls
from connectors.sandbox.server import Sandboxes
from orchestration.defs import frames
from orchestration.defs.crm_pull import SALESFORCE_FIELDS
from orchestration.funnel.writeback import records_per_object
from orchestration.runner import SyncSummary, run_sync
from orchestration.store import StateStore

pytestmark = pytest.mark.e2e

HUBSPOT_LISTED = ("contacts", "companies", "emails", "calls", "meetings", "notes")
SALESFORCE_PULLED = tuple(SALESFORCE_FIELDS)  # every object leadsync reads
HUBSPOT_WRITE_FAMILIES = {"batch_update", "batch_create", "batch_upsert", "update", "create"}
SALESFORCE_WRITE_FAMILIES = {"collections", "sobject", "bulk_ingest"}


@pytest.fixture(scope="module")
def box() -> Iterator[Sandboxes]:
    with Sandboxes(size=250, seed=47) as sandboxes:
        yield sandboxes


@pytest.fixture(scope="module")
def runs(
    box: Sandboxes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, dict[str, int]], ...]]:
    db_url = f"sqlite:///{Path(tmp_path_factory.mktemp('calls')) / 'state.db'}"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in box.env().items():
            mp.setenv(key, value)
        mp.setenv("LEADSYNC_DB_URL", db_url)
        mp.setenv("LEADSYNC_WRITE_MODE", "live")
        out = []
        for _ in range(2):
            box.hubspot.reset_call_counts()
            box.salesforce.reset_call_counts()
            summary = run_sync()
            plan = frames.read(StateStore(db_url), "writeback_plan")
            out.append(
                (
                    summary,
                    plan,
                    box.hubspot.call_counts(),
                    box.salesforce.call_counts(),
                )
            )
        yield tuple(out)


def test_first_sync_spends_exactly_the_minimum(runs: tuple) -> None:
    summary, plan, hubspot, salesforce = runs[0]
    assert isinstance(summary, SyncSummary) and summary.success
    hs_pulled = summary.pulled("hubspot")
    assert set(hs_pulled) == {*HUBSPOT_LISTED, "contacts:archived", "web_events"}
    minimum = minimum_first_sync_calls("hubspot", hs_pulled, records_per_object(plan, "hubspot"))
    assert hubspot["list"] == minimum["list"]
    assert hubspot["events"] == minimum["events"]
    assert hubspot["batch_update"] == minimum["batch_update"] > 0
    # What `leadsync plan` prints: per field, and the estimate the run then spent exactly.
    assert summary.write_calls_estimate["hubspot"] == hubspot["batch_update"]
    for system in ("hubspot", "salesforce"):
        assert sum(summary.planned_by_field[system].values()) == summary.fields_planned[system]
    assert summary.planned_by_field["hubspot"]["contacts.leadsync_stage"] > 0
    # No search on a first load (the list endpoint has no 10,000 cap and 100-record pages) and no
    # separate association reads: engagements bring their contacts inline.
    assert "search" not in hubspot
    assert not any(k.startswith("associations") for k in hubspot)

    sf_pulled = summary.pulled("salesforce")
    assert set(sf_pulled) == set(SALESFORCE_PULLED)
    minimum = minimum_first_sync_calls(
        "salesforce", sf_pulled, records_per_object(plan, "salesforce")
    )
    assert minimum["bulk"] == 0  # this size stays under the Bulk threshold
    # The sandbox counts a query's follow-on pages (nextRecordsUrl) apart.
    assert salesforce["query"] + salesforce.get("query_more", 0) == minimum["query"]
    assert salesforce["collections"] == minimum["collections"] > 0
    assert summary.write_calls_estimate["salesforce"] == salesforce["collections"]
    # Fixed metadata cost: one login, one describe per object read or written.
    assert salesforce["oauth"] == 1
    assert salesforce["describe"] == len(SALESFORCE_PULLED)
    assert "deleted" not in salesforce  # a first load sees every record that exists


def test_quiet_resync_makes_no_write_and_only_cursor_reads(runs: tuple) -> None:
    summary, plan, hubspot, salesforce = runs[1]
    assert summary.success and plan.height == 0
    assert sum(summary.fields_written.values()) == 0
    assert not HUBSPOT_WRITE_FAMILIES & hubspot.keys()
    assert not SALESFORCE_WRITE_FAMILIES & salesforce.keys()
    # One search window per object (what changed since the cursor: our own echoes), the archived
    # contacts listing, the page-view cursor, and the echoes' engagement associations.
    assert hubspot["search"] == len(HUBSPOT_LISTED)
    assert hubspot["list"] == 1 and hubspot["events"] == 1
    assert set(hubspot) <= {"search", "list", "events", "associations_batch_read", "total"}
    # One incremental query and one getDeleted per object, after login and describe.
    assert salesforce["query"] == len(SALESFORCE_PULLED)
    assert salesforce["deleted"] == len(SALESFORCE_PULLED)
    assert set(salesforce) <= {"oauth", "describe", "query", "deleted", "total"}
