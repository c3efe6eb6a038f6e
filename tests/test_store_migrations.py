"""Versioned migrations: a state store made by an older leadsync is brought to the current schema
in place, on SQLite and on PostgreSQL, and workers opening a store at once migrate it once."""

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from orchestration.store import StateStore, tables
from tests.e2e.conftest import BACKENDS, fresh_pg_url

# The v1 shape of source_records (no crm_modified_at) and its version row, per dialect.
V1_SQL = {
    "sqlite": (
        "CREATE TABLE source_records (system VARCHAR(16), object VARCHAR(64), "
        "source_id VARCHAR(64), payload TEXT NOT NULL, modified_at DATETIME, "
        "is_deleted BOOLEAN NOT NULL, pulled_at DATETIME NOT NULL, "
        "PRIMARY KEY (system, object, source_id))",
        "INSERT INTO source_records VALUES ('hubspot', 'contacts', '1', '{}', "
        "'2026-11-01 00:00:00', 0, '2026-11-01 00:00:00')",
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at DATETIME)",
        "INSERT INTO schema_version VALUES (1, '2026-11-01 00:00:00')",
    ),
    "postgresql": (
        "CREATE TABLE source_records (system VARCHAR(16), object VARCHAR(64), "
        "source_id VARCHAR(64), payload TEXT NOT NULL, modified_at TIMESTAMP WITH TIME ZONE, "
        "is_deleted BOOLEAN NOT NULL, pulled_at TIMESTAMP WITH TIME ZONE NOT NULL, "
        "PRIMARY KEY (system, object, source_id))",
        "INSERT INTO source_records VALUES ('hubspot', 'contacts', '1', '{}', "
        "'2026-11-01 00:00:00+00', false, '2026-11-01 00:00:00+00')",
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
        "applied_at TIMESTAMP WITH TIME ZONE)",
        "INSERT INTO schema_version VALUES (1, '2026-11-01 00:00:00+00')",
    ),
}


@pytest.fixture(params=BACKENDS)
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return fresh_pg_url("migrations")
    return f"sqlite:///{tmp_path / 'state.db'}"


def _versions(store: StateStore) -> list[int]:
    with store.engine.connect() as conn:
        return [v for (v,) in conn.execute(sa.select(tables.schema_version.c.version))]


def test_v1_store_gains_crm_stamp_and_change_time_and_keeps_its_rows(fresh_url: str) -> None:
    engine = sa.create_engine(fresh_url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        for statement in V1_SQL[engine.dialect.name]:
            conn.exec_driver_sql(statement)
    engine.dispose()
    now = datetime(2026, 11, 1, tzinfo=UTC)

    store = StateStore(fresh_url)
    columns = {c["name"] for c in sa.inspect(store.engine).get_columns("source_records")}
    assert {"crm_modified_at", "changed_at"} <= columns
    assert _versions(store) == [1, 2, 3] and tables.SCHEMA_VERSION == 3
    # The old row is still there; its CRM stamp falls back to the stored one.
    inventory = store.source_inventory("hubspot", "contacts")
    assert inventory["source_id"].to_list() == ["1"]
    assert inventory["crm_modified_at"].to_list() == [now]
    # Without a change time it counts as edited: the first normalisation after the upgrade
    # reads it like any record it has not seen.
    assert store.source_snapshot("hubspot", "contacts").edited.to_list() == ["1"]
    StateStore(fresh_url)  # a second open applies nothing twice
    assert _versions(store) == [1, 2, 3]


def test_workers_opening_a_new_store_at_once_create_it_once(fresh_url: str) -> None:
    # Without the migration lock, concurrent CREATE TABLEs collide on PostgreSQL's catalog and
    # both workers record a version row.
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_store() -> None:
        start.wait()
        try:
            StateStore(fresh_url)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert _versions(StateStore(fresh_url)) == [tables.SCHEMA_VERSION]
