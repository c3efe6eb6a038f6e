"""The whole-sync scale benchmark's helpers, at a tiny size: the change step changes about 1% of
the people, and the incremental sync that follows pulls only what changed (plus the echoes of the
full sync's own write-back, which it recognises as such)."""

from pathlib import Path

import pytest

from benchmarks import sync_scale as bench

pytestmark = pytest.mark.e2e

PEOPLE = 300


def test_a_one_percent_change_is_all_the_incremental_sync_pulls(tmp_path: Path) -> None:
    with bench.ScaleSandboxes(size=PEOPLE, seed=8, change_share=0.01, change_seed=3) as box:
        assert box.counts["people"] == PEOPLE
        db_url = f"sqlite:///{tmp_path / 'state.db'}"
        full = bench.run_worker(box, db_url, tmp_path, "full", 8 * 1024, in_process=True)
        changed = box.apply_change()
        incremental = bench.run_worker(
            box, db_url, tmp_path, "incremental", 8 * 1024, in_process=True
        )
        chosen_people = box.people_chosen
        # Limits off: nothing injected, nothing refused for a rate.
        assert not any(box.hubspot_faults.faults_injected().values())
        assert not any(box.salesforce_faults.faults_injected().values())
    assert "rate_limited" not in full["calls"]["hubspot"]

    # About 1% of the people (a seeded draw: 3 of 300 expected), every record of theirs changed
    # that a CRM user can edit, with one new activity per changed record.
    assert 1 <= chosen_people <= 8
    person_objects = ("hubspot.contacts", "salesforce.Lead", "salesforce.Contact")
    person_records = sum(n for k, n in changed.items() if k in person_objects)
    assert chosen_people <= person_records <= 3 * chosen_people
    assert changed.get("hubspot.web_events", 0) == changed.get("hubspot.contacts", 0)
    assert changed.get("salesforce.Task", 0) == changed.get("salesforce.Lead", 0) + changed.get(
        "salesforce.Contact", 0
    )

    assert full["summary"]["success"] and incremental["summary"]["success"]
    # Each step's own peak RSS, the run's peak the highest of them (or above, between steps).
    peaks = full["step_peaks_mib"]
    assert {"leads__normalized", "leads__identity", "writeback__plan"} <= set(peaks)
    assert 0 < max(peaks.values()) <= full["peak_mib"]
    full_pulled = sum(full["summary"]["records_pulled"].values())
    pulled = sum(incremental["summary"]["records_pulled"].values())
    assert full_pulled > 20 * PEOPLE * 0.5
    # Beyond the echoes of the full sync's write-back, the incremental sync pulls exactly the
    # changed records and the new activities: not everyone.
    assert pulled - incremental["echoes"] == sum(changed.values())
    # What it writes back is the changed people's leads, not everyone's.
    written = sum(incremental["summary"]["fields_written"].values())
    assert 0 < written < sum(full["summary"]["fields_written"].values()) * 0.1
    # And its API calls are a fraction of the full sync's.
    assert bench.total_calls(incremental) < bench.total_calls(full)
