"""Source snapshots: stored CRM records read back as one frame of strings, a batch at a time."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestration.store import StateStore
from orchestration.store import store as store_module
from tests.e2e.conftest import BACKENDS, fresh_pg_url

PULLED = datetime(2026, 11, 1, 9, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StateStore:
    if request.param == "postgresql":
        return StateStore(fresh_pg_url("snapshots"))
    return StateStore(f"sqlite:///{tmp_path / 'state.db'}")


def _save(store: StateStore, system: str, obj: str) -> None:
    """Read a snapshot and store it with its mark moved, as leads/normalized does."""
    snap = store.source_snapshot(system, obj)
    store.stage_source_snapshot(snap)
    store.advance_source_snapshots({snap.name: snap.pulled_through})


def _contacts(n: int, *, start: int = 0) -> list[dict[str, object]]:
    # Fields vary by record, as CRM payloads do: a field first seen late in the read must still
    # become a column, and the association list stays a list.
    records: list[dict[str, object]] = []
    for i in range(start, start + n):
        record: dict[str, object] = {"id": str(i), "email": f"p{i}@example.com", "_deleted": False}
        if i % 3 == 0:
            record["phone"] = f"+8190{i:08d}"
        if i == start + n - 1:
            record["zz_late_field"] = True
        if i % 4 == 0:
            record["contact_ids"] = [str(i + 100)]
        records.append(record)
    return records


def test_a_snapshot_read_in_batches_equals_one_read_whole(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.upsert_source_records("hubspot", "contacts", _contacts(11), pulled_at=PULLED)
    whole = store.source_snapshot("hubspot", "contacts")
    monkeypatch.setattr(store_module, "_DECODE_BATCH", 3)
    batched = store.source_snapshot("hubspot", "contacts")

    assert batched.keyed.equals(whole.keyed)
    assert batched.keyed.columns == whole.keyed.columns
    assert batched.keyed.height == 11
    assert batched.keyed["zz_late_field"].drop_nulls().to_list() == ["true"]
    associations = dict(batched.keyed.select("id", "contact_ids").iter_rows())
    assert associations["0"] == ["100"] and associations["4"] == ["104"]
    assert associations["1"] == [] and associations["9"] == []
    assert sorted(batched.changed.to_list()) == sorted(whole.changed.to_list())
    assert sorted(batched.edited.to_list()) == sorted(str(i) for i in range(11))
    assert batched.pulled_through == whole.pulled_through == PULLED


def test_a_batched_read_after_a_saved_snapshot_decodes_only_what_was_pulled_since(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "_DECODE_BATCH", 2)
    store.upsert_source_records("hubspot", "contacts", _contacts(5), pulled_at=PULLED)
    _save(store, "hubspot", "contacts")
    later = PULLED + timedelta(minutes=15)
    edited = [{**r, "email": "new@example.com"} for r in _contacts(2, start=3)]
    store.upsert_source_records(
        "hubspot", "contacts", [*edited, *_contacts(3, start=5)], pulled_at=later
    )

    snap = store.source_snapshot("hubspot", "contacts")
    assert sorted(snap.changed.to_list()) == ["3", "4", "5", "6", "7"]
    assert snap.keyed["id"].to_list() == [str(i) for i in range(8)]
    assert snap.keyed["email"].to_list()[3:5] == ["new@example.com", "new@example.com"]
    assert snap.pulled_through == later


def test_a_staged_snapshot_reads_the_same_until_its_mark_moves(store: StateStore) -> None:
    # leads/normalized stages each object's snapshot as soon as it has used it, and moves the
    # marks only once its results are stored: a step that fails in between must find the same
    # change on the next read.
    store.upsert_source_records("hubspot", "contacts", _contacts(4), pulled_at=PULLED)
    _save(store, "hubspot", "contacts")
    later = PULLED + timedelta(minutes=15)
    edited = [{**_contacts(1, start=2)[0], "email": "edited@example.com"}]
    store.upsert_source_records("hubspot", "contacts", edited, pulled_at=later)

    first = store.source_snapshot("hubspot", "contacts")
    assert first.read_from == PULLED and first.pulled_through == later
    store.stage_source_snapshot(first)
    # The step failed here: the next read decodes the same change over the staged records.
    again = store.source_snapshot("hubspot", "contacts")
    assert again.keyed.equals(first.keyed)
    assert again.edited.to_list() == first.edited.to_list() == ["2"]

    store.stage_source_snapshot(again)
    store.advance_source_snapshots({again.name: again.pulled_through})
    settled = store.source_snapshot("hubspot", "contacts")
    assert settled.changed.len() == 0 and settled.keyed.equals(first.keyed)
    assert settled.read_from == later


def test_unread_sources_are_the_objects_with_records_and_no_snapshot(store: StateStore) -> None:
    objects = [("hubspot", "contacts"), ("hubspot", "calls"), ("salesforce", "Lead")]
    assert store.unread_sources(objects) == []
    store.upsert_source_records("hubspot", "contacts", _contacts(2), pulled_at=PULLED)
    store.upsert_source_records("salesforce", "Lead", [{"id": "00Q1"}], pulled_at=PULLED)
    assert store.unread_sources(objects) == ["hubspot:contacts", "salesforce:Lead"]
    # Staged is not yet read: its mark has not moved past the first read.
    snap = store.source_snapshot("hubspot", "contacts")
    store.stage_source_snapshot(snap)
    assert store.unread_sources(objects) == ["hubspot:contacts", "salesforce:Lead"]
    store.advance_source_snapshots({snap.name: snap.pulled_through})
    assert store.unread_sources(objects) == ["salesforce:Lead"]
