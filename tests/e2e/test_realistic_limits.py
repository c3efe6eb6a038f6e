"""A full sync against the sandboxes' `realistic` profile, which enforces HubSpot's Professional
limits (190 requests per 10 s, 5 searches per second) and Salesforce's budget: the connectors'
pacing keeps every request under them, so not one 429 comes back. (How close the pacing runs to
the allowed rate is a benchmark figure: benchmarks/sync_api_cost.py.)"""

from pathlib import Path

import pytest

from connectors.sandbox.server import Sandboxes
from orchestration.runner import run_sync

pytestmark = pytest.mark.e2e


def test_full_sync_under_realistic_limits_receives_no_429(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Sandboxes(size=2000, seed=61, fault_profile="realistic", fault_seed=3) as box:
        for key, value in box.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("LEADSYNC_DB_URL", f"sqlite:///{tmp_path / 'state.db'}")
        first = run_sync()
        second = run_sync()  # incremental: search, with its own per-second limit
        hubspot = box.hubspot.call_counts()
        statuses = box.hubspot_faults.counts_by_status()
    assert first.success and second.success
    assert first.fields_written == first.fields_planned
    assert hubspot["search"] > 0 and hubspot["total"] > 190  # more than one 10-second window allows
    assert hubspot.get("rate_limited", 0) == 0
    assert statuses.get(429, 0) == 0
