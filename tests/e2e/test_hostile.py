"""The whole graph against sandboxes in the `hostile` fault profile: 5xx, 429 bursts, slow
responses, dropped connections and expiring Salesforce sessions. The sync must still finish, write
every planned field once, and leave nothing to write on the next run."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.sandbox.server import Sandboxes
from orchestration.runner import run_sync

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def hostile() -> Iterator[Sandboxes]:
    with Sandboxes(size=150, seed=23, fault_profile="hostile", fault_seed=4) as box:
        yield box


def test_sync_survives_hostile_sandboxes(
    hostile: Sandboxes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in hostile.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("LEADSYNC_DB_URL", f"sqlite:///{tmp_path / 'state.db'}")
    first = run_sync()
    second = run_sync()

    injected = {
        kind: hostile.hubspot_faults.faults_injected().get(kind, 0)
        + hostile.salesforce_faults.faults_injected().get(kind, 0)
        for kind in ("server_error", "rate_limit", "drop", "expired_session", "slow")
    }
    assert sum(injected.values()) > 0, "the hostile profile injected nothing"
    assert first.success and second.success
    assert first.fields_written == first.fields_planned
    assert first.fields_written["hubspot"] > 0 and first.fields_written["salesforce"] > 0
    assert second.fields_written == {"hubspot": 0, "salesforce": 0}
    contacts = hostile.hubspot.records("contacts")
    assert all(c["properties"].get("leadsync_stage") for c in contacts)
