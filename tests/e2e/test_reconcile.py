"""Reconciliation end to end: after a clean sync it finds nothing; after changes the incremental
pull cannot see (a change stamped behind the cursor, a record the store lost, a record deleted
without trace) it fails loudly, heals the store, and passes on the next run."""

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa

from connectors.sandbox.server import Sandboxes
from orchestration.runner import ReconcileSummary, run_reconcile, run_sync
from orchestration.store import StateStore, tables
from tests.e2e.conftest import db_url_in

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def box(backend: str) -> Iterator[Sandboxes]:  # fresh CRMs for each backend's runs
    with Sandboxes(size=120, seed=31) as sandboxes:
        yield sandboxes


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory, backend: str) -> str:
    return db_url_in(tmp_path_factory, "reconcile", backend)


@pytest.fixture(scope="module")
def env(box: Sandboxes, db_url: str) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in box.env().items():
            mp.setenv(key, value)
        mp.setenv("LEADSYNC_DB_URL", db_url)
        mp.setenv("LEADSYNC_WRITE_MODE", "live")
        yield


def _payload(store: StateStore, system: str, obj: str, source_id: str) -> dict | None:
    t = tables.source_records
    with store.engine.connect() as conn:
        row = conn.execute(
            sa.select(t.c.payload, t.c.is_deleted).where(
                t.c.system == system, t.c.object == obj, t.c.source_id == source_id
            )
        ).first()
    if row is None:
        return None
    return {**json.loads(row[0]), "_is_deleted": bool(row[1])}


def test_reconciliation_finds_heals_and_then_passes(box: Sandboxes, db_url: str, env: None) -> None:
    first = run_sync()
    assert first.success
    clean = run_reconcile()
    assert clean.success
    assert clean.total_gaps == 0, clean.gaps
    # Every reconciled object was compared, and the counts agree with the CRMs.
    assert clean.objects["hubspot:contacts"]["crm_records"] == len(box.hubspot.records("contacts"))
    assert clean.objects["salesforce:Lead"]["crm_records"] == len(box.salesforce.records("Lead"))
    assert clean.objects["salesforce:Lead"]["stored_live_records"] == len(
        box.salesforce.records("Lead")
    )

    store = StateStore(db_url)
    # Accounts and companies are never written back, so their stamps sit well behind the
    # cursors: exactly where an incremental pull cannot look.
    # 1. A Salesforce account changed with a stamp behind the cursor (a backdated import).
    account = box.salesforce.records("Account")[0]
    sf = box.salesforce
    with sf._lock:  # the test plays a CRM change no API call can make
        stored = sf._data["Account"][account["Id"]]
        stored["Industry"] = "Reconciliation"
        stored["SystemModstamp"] = stored["SystemModstamp"] + timedelta(seconds=1)
    # 2. A HubSpot company the store lost.
    company_id = str(box.hubspot.records("companies")[0]["id"])
    # 3. A Salesforce contact alive in the store that the org no longer has at all.
    t = tables.source_records
    with store.engine.begin() as conn:
        conn.execute(
            t.delete().where(
                t.c.system == "hubspot", t.c.object == "companies", t.c.source_id == company_id
            )
        )
        ghost = conn.execute(
            sa.select(t).where(t.c.system == "salesforce", t.c.object == "Contact").limit(1)
        ).first()
        assert ghost is not None
        conn.execute(
            t.insert().values(
                **{**ghost._asdict(), "source_id": "003GHOST0000000AAA", "is_deleted": False}
            )
        )

    found: ReconcileSummary = run_reconcile()
    assert found.success  # the run ran; the failed checks are the loud part
    assert found.gaps["hubspot/companies"] == 1
    assert found.gaps["salesforce/contacts"] == 2
    assert found.total_gaps == 3
    assert found.objects["salesforce:Account"]["stale"] == 1
    assert found.objects["hubspot:companies"]["missing"] == 1
    assert found.objects["salesforce:Contact"]["gone_from_crm"] == 1

    healed = _payload(store, "salesforce", "Account", account["Id"])
    assert healed is not None and healed["Industry"] == "Reconciliation"
    restored = _payload(store, "hubspot", "companies", company_id)
    assert restored is not None and not restored["_is_deleted"]
    gone = _payload(store, "salesforce", "Contact", "003GHOST0000000AAA")
    assert gone is not None and gone["_is_deleted"] and gone["IsDeleted"] is True

    again = run_reconcile()
    assert again.total_gaps == 0, again.gaps
