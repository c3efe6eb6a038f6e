"""A record a CRM refuses is kept with the CRM's reason, does not fail its batch's neighbours, and
is written on a later run once the CRM accepts it."""

from pathlib import Path

import pytest

from connectors.sandbox.server import Sandboxes
from orchestration.runner import run_sync
from orchestration.store import StateStore, tables

pytestmark = pytest.mark.e2e


def test_refused_records_are_kept_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Sandboxes(size=120, seed=31) as box:
        for key, value in box.env().items():
            monkeypatch.setenv(key, value)
        db_url = f"sqlite:///{tmp_path / 'state.db'}"
        monkeypatch.setenv("LEADSYNC_DB_URL", db_url)
        contact = box.dataset.hubspot["contacts"][0]["id"]
        lead = next(
            r["Id"]
            for r in box.dataset.salesforce["Lead"]
            if not r.get("IsConverted") and not r.get("IsDeleted")
        )
        box.hubspot_faults.reject_records([contact], "Stage changes are locked for this contact")
        box.salesforce_faults.reject_records([lead], "Validation rule: region is required")

        first = run_sync()
        assert first.rejected_rows == {"hubspot": 1, "salesforce": 1}
        # The run summary (what `leadsync sync` prints) names each refused record and the reason.
        assert "locked" in first.rejections["hubspot"][str(contact)]
        assert "region is required" in first.rejections["salesforce"][lead]
        # Every other planned field landed.
        assert sum(first.fields_written.values()) < sum(first.fields_planned.values())
        with StateStore(db_url).engine.connect() as conn:
            reasons = {
                (row.system, row.reason) for row in conn.execute(tables.rejected_rows.select())
            }
        assert any(s == "hubspot" and "locked" in r for s, r in reasons)
        assert any(s == "salesforce" and "region is required" in r for s, r in reasons)

        box.hubspot_faults.clear_rejections()
        box.salesforce_faults.clear_rejections()
        second = run_sync()
        assert second.rejected_rows == {"hubspot": 0, "salesforce": 0}
        assert second.fields_written["hubspot"] > 0 and second.fields_written["salesforce"] > 0
        contact_now = next(c for c in box.hubspot.records("contacts") if c["id"] == contact)
        assert contact_now["properties"].get("leadsync_stage")
        third = run_sync()
        assert third.fields_written == {"hubspot": 0, "salesforce": 0}
