"""A daily API budget that runs out mid-sync: the run stops cleanly at the reserve with its
cursors saved, writes nothing from a half-pulled view, and the next run (budget refilled) resumes
where it stopped and ends exactly where an uninterrupted sync would."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.sandbox.server import Sandboxes
from orchestration.defs.crm_pull import SALESFORCE_FIELDS
from orchestration.runner import run_sync
from orchestration.store import StateStore

pytestmark = pytest.mark.e2e

# About half of what a first Salesforce pull needs (login, then a describe and a query per
# object): the budget's 5% reserve is reached part-way through the pull assets.
TIGHT_BUDGET = 12
SALESFORCE_OBJECTS = tuple(SALESFORCE_FIELDS)  # every object leadsync reads


@pytest.fixture(scope="module")
def box() -> Iterator[Sandboxes]:
    with Sandboxes(
        size=120, seed=53, salesforce_options={"daily_api_limit": TIGHT_BUDGET}
    ) as sandboxes:
        yield sandboxes


def test_budget_stop_is_clean_and_the_next_run_resumes(
    box: Sandboxes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in box.env().items():
        monkeypatch.setenv(key, value)
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("LEADSYNC_DB_URL", db_url)
    monkeypatch.setenv("LEADSYNC_WRITE_MODE", "live")

    stopped = run_sync()
    assert stopped.success  # a budget stop is not a failure
    store = StateStore(db_url)
    done = [o for o in SALESFORCE_OBJECTS if store.get_cursor("salesforce", o) is not None]
    assert 0 < len(done) < len(SALESFORCE_OBJECTS), done
    # Nothing is written from a view with half of Salesforce missing, to either CRM.
    assert stopped.fields_written == {"hubspot": 0, "salesforce": 0}
    assert stopped.fields_planned["hubspot"] > 0
    assert any("held back" in note for note in stopped.notes), stopped.notes
    assert any("stopped at the daily API budget" in note for note in stopped.notes)
    # The org's budget was never overrun: the sandbox refused no request for it.
    assert box.salesforce_faults.faults_injected().get("budget_exhausted", 0) == 0

    box.salesforce.daily_api_limit = 100_000  # the rolling 24 hours moved on
    resumed = run_sync()
    assert resumed.success
    assert all(store.get_cursor("salesforce", o) is not None for o in SALESFORCE_OBJECTS)
    for sobject in ("Lead", "Contact", "Task"):
        live = {r["Id"] for r in box.salesforce.records(sobject)}
        stored = store.source_inventory("salesforce", sobject)
        assert live <= set(stored["source_id"].to_list()), sobject
    assert resumed.fields_written == resumed.fields_planned
    assert resumed.fields_written["salesforce"] > 0

    quiet = run_sync()
    assert quiet.fields_planned == {"hubspot": 0, "salesforce": 0}
