"""End to end: the whole Dagster graph, in process, against both sandboxes served over HTTP(S)."""

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from connectors.sandbox.server import Sandboxes
from orchestration.funnel.definition import load_definition
from orchestration.runner import SyncSummary, run_sync, sync_step_count
from orchestration.store import StateStore, tables
from tests.e2e.conftest import db_url_in

pytestmark = pytest.mark.e2e

SIZE = 400
SEED = 11
# Steps after which the first live run released memory (orchestration.runner.release_memory).
RELEASED: list[str] = []


@pytest.fixture(scope="module")
def sandboxes(backend: str) -> Iterator[Sandboxes]:  # fresh CRMs for each backend's runs
    with Sandboxes(size=SIZE, seed=SEED) as box:
        yield box


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory, backend: str) -> str:
    return db_url_in(tmp_path_factory, backend=backend)


@pytest.fixture(scope="module")
def runs(
    sandboxes: Sandboxes, db_url: str
) -> Iterator[tuple[SyncSummary, SyncSummary, SyncSummary]]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in sandboxes.env().items():
            mp.setenv(key, value)
        mp.setenv("LEADSYNC_DB_URL", db_url)
        mp.setenv("LEADSYNC_WRITE_MODE", "live")
        dry = run_sync(dry_run=True)
        RELEASED.clear()
        with pytest.MonkeyPatch.context() as counting:
            release = lambda: RELEASED.append("step")  # noqa: E731
            counting.setattr("orchestration.runner.release_memory", release)
            # Released after any growth at all: every step (the data here is small).
            counting.setattr("orchestration.runner.RELEASE_AFTER_GROWTH_MIB", float("-inf"))
            first = run_sync()
        second = run_sync()
        yield dry, first, second


def test_dry_run_plans_but_writes_nothing(runs: tuple[SyncSummary, ...]) -> None:
    dry, first, _ = runs
    assert dry.success and dry.dry_run
    assert sum(dry.fields_written.values()) == 0
    assert dry.fields_planned["hubspot"] > 0 and dry.fields_planned["salesforce"] > 0
    # The live run right after plans the same work: the dry run changed nothing in either CRM.
    assert first.fields_planned == dry.fields_planned


def test_first_run_pulls_everything_and_writes_the_plan(
    sandboxes: Sandboxes, runs: tuple[SyncSummary, ...]
) -> None:
    dry, first, _ = runs
    # HubSpot tasks are sales to-dos, not engagement evidence, and marketing email events live in
    # an API the sandbox does not serve yet: leadsync pulls everything else.
    pulled = {"contacts", "companies", "emails", "calls", "meetings", "notes", "web_events"}
    hubspot_records = sum(len(v) for k, v in sandboxes.dataset.hubspot.items() if k in pulled)
    salesforce_records = sum(len(v) for v in sandboxes.dataset.salesforce.values() if v)
    assert dry.records_pulled["hubspot"] == hubspot_records
    # Users are not pulled; every other seeded Salesforce object is.
    users = len(sandboxes.dataset.salesforce.get("User", []))
    assert dry.records_pulled["salesforce"] == salesforce_records - users
    assert first.fields_written == first.fields_planned
    assert first.rejected_rows == {"hubspot": 0, "salesforce": 0}
    people = {row.person_id for row in sandboxes.dataset.truth}
    # Precision first: never fewer unified leads than people (no false merges at this size)...
    assert first.unified_leads >= len(people)
    # ...and the duplicates the generator planted are mostly found.
    assert first.merged_records > 0
    assert sum(first.leads_by_stage.values()) == first.unified_leads


def test_crm_state_after_the_first_run(sandboxes: Sandboxes, runs: tuple[SyncSummary, ...]) -> None:
    contacts = sandboxes.hubspot.records("contacts")
    staged = [c for c in contacts if c["properties"].get("leadsync_stage")]
    assert len(staged) == len(contacts)
    leads = sandboxes.salesforce.records("Lead")
    open_leads = [lead for lead in leads if not lead.get("IsConverted")]
    assert all(lead.get("LeadSync_Stage__c") for lead in open_leads)
    # Converted leads are read-only in Salesforce and are never written.
    assert all(not lead.get("LeadSync_Stage__c") for lead in leads if lead.get("IsConverted"))
    # A HubSpot contact hard-linked to a Salesforce lead carries the same unified id.
    by_id = {lead["Id"]: lead for lead in open_leads}
    linked = [
        (c, by_id[c["properties"]["salesforceleadid"]])
        for c in contacts
        if c["properties"].get("salesforceleadid") in by_id
    ]
    assert linked, "the generator seeds hard-linked people"
    for contact, lead in linked:
        assert contact["properties"]["leadsync_unified_id"] == lead["LeadSync_Unified_Id__c"]
        assert contact["properties"]["leadsync_stage"] == lead["LeadSync_Stage__c"]


def test_second_run_writes_nothing(sandboxes: Sandboxes, runs: tuple[SyncSummary, ...]) -> None:
    full, _, second = runs
    assert second.success
    assert second.fields_written == {"hubspot": 0, "salesforce": 0}
    assert second.fields_planned == {"hubspot": 0, "salesforce": 0}
    # Incremental: what the first run wrote comes back (its writes moved the modified dates), the
    # rest of either CRM does not.
    contacts = len(sandboxes.dataset.hubspot["contacts"])
    assert contacts <= second.records_pulled["hubspot"] < full.records_pulled["hubspot"]
    assert second.records_pulled["salesforce"] < full.records_pulled["salesforce"]
    # What comes back is the echo of leadsync's own write-back: no person record is normalised
    # again for it.
    assert second.normalize == {"mode": "incremental", "records_normalized": 0}


def test_the_definition_version_is_recorded_with_the_runs(
    runs: tuple[SyncSummary, ...], db_url: str
) -> None:
    with StateStore(db_url).engine.connect() as conn:
        versions = conn.execute(sa.select(tables.definition_versions.c.version)).scalars().all()
        used_by = conn.execute(sa.select(tables.definition_runs.c.version)).scalars().all()
    assert versions == [load_definition().version]
    assert list(used_by) == list(versions) * len(runs)


def test_memory_is_released_after_every_step(runs: tuple[SyncSummary, ...]) -> None:
    assert runs[1].success
    assert len(RELEASED) == sync_step_count()
