"""Reconciliation finds exactly what the store missed behind its cursor, and nothing pending."""

from datetime import UTC, datetime, timedelta

import polars as pl

from orchestration.funnel.reconcile import compare_inventories

T0 = datetime(2026, 11, 1, tzinfo=UTC)
CURSOR = T0 + timedelta(days=1)


def _crm(rows: list[tuple[str, datetime]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["source_id", "modified_at"], orient="row")


def _store(rows: list[tuple[str, datetime | None, bool]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["source_id", "crm_modified_at", "is_deleted"], orient="row")


def test_in_sync_object_has_no_gap() -> None:
    crm = _crm([("1", T0), ("2", T0 + timedelta(hours=1))])
    store = _store([("1", T0, False), ("2", T0 + timedelta(hours=1), False), ("9", T0, True)])
    result = compare_inventories(crm, store, CURSOR)
    assert (result.missing, result.stale, result.ghosts, result.pending) == ([], [], [], 0)
    assert (result.crm_records, result.stored_live_records) == (2, 2)


def test_changes_behind_the_cursor_are_gaps_and_later_ones_pending() -> None:
    crm = _crm(
        [
            ("missing", T0),  # never stored though older than the cursor
            ("stale", T0 + timedelta(hours=2)),  # changed behind the cursor, store has older copy
            ("undeleted", T0 + timedelta(hours=3)),  # stored as deleted, alive in the CRM
            ("new", CURSOR + timedelta(minutes=5)),  # created after the last pull: pending
            ("fresh", CURSOR + timedelta(minutes=1)),  # changed after the last pull: pending
            ("same", T0),
        ]
    )
    store = _store(
        [
            ("stale", T0, False),
            ("undeleted", T0, True),
            ("fresh", T0, False),
            ("same", T0, False),
            ("ghost", T0, False),  # alive in the store, gone from the CRM
        ]
    )
    result = compare_inventories(crm, store, CURSOR)
    assert result.missing == ["missing", "undeleted"]
    assert result.stale == ["stale"]
    assert result.ghosts == ["ghost"]
    assert result.pending == 2
    assert result.to_fetch == ["missing", "undeleted", "stale"]


def test_store_newer_than_crm_is_not_a_gap() -> None:
    # An echo of our own write keeps the stamp we saw; a CRM copy older than it is no change.
    crm = _crm([("1", T0)])
    store = _store([("1", T0 + timedelta(seconds=1), False)])
    assert compare_inventories(crm, store, CURSOR).stale == []


def test_never_pulled_object_reports_everything_pending() -> None:
    crm = _crm([("1", T0), ("2", T0)])
    result = compare_inventories(crm, _store([]), None)
    assert result.missing == [] and result.pending == 2
