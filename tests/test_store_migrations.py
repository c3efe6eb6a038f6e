"""A state store made by an older leadsync is brought to the current schema in place."""

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from orchestration.store import StateStore, tables


def test_v1_store_gains_crm_stamp_and_keeps_its_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v1.db'}"
    engine = sa.create_engine(url)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    with engine.begin() as conn:
        # The v1 shape of source_records (no crm_modified_at) and its version row.
        conn.exec_driver_sql(
            "CREATE TABLE source_records (system VARCHAR(16), object VARCHAR(64), "
            "source_id VARCHAR(64), payload TEXT NOT NULL, modified_at DATETIME, "
            "is_deleted BOOLEAN NOT NULL, pulled_at DATETIME NOT NULL, "
            "PRIMARY KEY (system, object, source_id))"
        )
        conn.exec_driver_sql(
            "INSERT INTO source_records VALUES ('hubspot', 'contacts', '1', '{}', "
            "'2026-11-01 00:00:00', 0, '2026-11-01 00:00:00')"
        )
        conn.exec_driver_sql(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at DATETIME)"
        )
        conn.exec_driver_sql("INSERT INTO schema_version VALUES (1, '2026-11-01 00:00:00')")
    engine.dispose()

    store = StateStore(url)
    columns = {c["name"] for c in sa.inspect(store.engine).get_columns("source_records")}
    assert "crm_modified_at" in columns
    with store.engine.connect() as conn:
        versions = [v for (v,) in conn.execute(sa.select(tables.schema_version.c.version))]
    assert versions == [1, tables.SCHEMA_VERSION]
    # The old row is still there; its CRM stamp falls back to the stored one.
    inventory = store.source_inventory("hubspot", "contacts")
    assert inventory["source_id"].to_list() == ["1"]
    assert inventory["crm_modified_at"].to_list() == [now]
    StateStore(url)  # a second open applies nothing twice
    with store.engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(tables.schema_version)).scalar()
            == 2
        )
