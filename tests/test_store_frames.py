"""Reading a derived frame back: all columns, or only the ones a caller needs."""

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from orchestration.funnel.stages import LEDGER_SCHEMA
from orchestration.store import StateStore, tables
from orchestration.store import store as store_module

SCHEMA: dict[str, pl.DataType] = {
    "unified_id": pl.String(),
    "tags": pl.List(pl.String()),
    "score": pl.Int64(),
    "added_later": pl.String(),
}


def test_read_only_the_columns_asked_for(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    # Stored before `added_later` existed.
    store.replace_frame(
        "f", pl.DataFrame({"unified_id": ["a", "b"], "tags": [["x"], None], "score": [1, 2]})
    )
    whole = store.read_frame("f", SCHEMA)
    assert whole.columns == list(SCHEMA) and whole["tags"].to_list() == [["x"], None]
    some = store.read_frame("f", SCHEMA, ["score", "unified_id"])
    assert some.columns == ["score", "unified_id"]
    assert some.rows() == [(1, "a"), (2, "b")]
    assert some.schema == pl.Schema({"score": pl.Int64(), "unified_id": pl.String()})
    # A column the stored frame predates reads as nulls, as it does when reading everything.
    late = store.read_frame("f", SCHEMA, ["unified_id", "added_later"])
    assert late["added_later"].to_list() == [None, None]
    only_late = store.read_frame("f", SCHEMA, ["added_later"])
    assert only_late.height == 2 and only_late["added_later"].null_count() == 2
    # Before the first write: empty, with the asked-for columns.
    assert store.read_frame("g", SCHEMA, ["score"]).schema == pl.Schema({"score": pl.Int64()})


def test_a_frame_kept_as_a_table_by_an_older_store_is_read_then_replaced(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    # How stores before schema version 3 kept a frame: a table, lists as JSON text.
    with store.engine.begin() as conn:
        conn.exec_driver_sql('CREATE TABLE "f" (unified_id TEXT, tags TEXT, score BIGINT)')
        conn.exec_driver_sql("""INSERT INTO "f" VALUES ('a', '["x"]', 1), ('b', NULL, 2)""")
    legacy = store.read_frame("f", SCHEMA, ["unified_id", "tags", "score"])
    assert legacy.rows() == [("a", ["x"], 1), ("b", None, 2)]
    store.replace_frame("f", legacy.with_columns(pl.col("score") * 10))
    assert not sa.inspect(store.engine).has_table("f")
    assert store.read_frame("f", SCHEMA, ["score", "tags"]).rows() == [(10, ["x"]), (20, None)]


def test_frames_keep_their_dtypes(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    schema = {
        "at": pl.Datetime("us", "UTC"),
        "why": pl.List(pl.Struct({"rule": pl.String(), "points": pl.Float64()})),
    }
    frame = pl.DataFrame(
        {"at": [datetime(2026, 1, 2, 3, tzinfo=UTC)], "why": [[{"rule": "r", "points": 1.5}]]},
        schema=schema,
    )
    store.replace_frame("g", frame)
    assert store.read_frame("g", schema).equals(frame)
    assert store.read_frame("g", schema).schema == frame.schema


def test_an_append_only_table_is_read_through_a_copy_extended_with_new_rows(
    tmp_path: Path,
) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    schema = {**LEDGER_SCHEMA, "run_id": pl.String()}
    at = datetime(2026, 11, 21, tzinfo=UTC)

    def row(uid: str, to: str) -> dict[str, object]:
        return {
            "unified_id": uid,
            "from_stage": None,
            "to_stage": to,
            "rule": "r",
            "reason": None,
            "definition_version": "v1",
            "at": at,
            "run_id": "run",
        }

    store.append(tables.stage_ledger, [row("u1", "lead"), row("u2", "mql")])
    assert store.read_appended(tables.stage_ledger, schema).equals(
        store.read_table(tables.stage_ledger, schema)
    )
    store.append(tables.stage_ledger, [row("u1", "mql")])
    again = store.read_appended(tables.stage_ledger, schema)
    assert again["to_stage"].to_list() == ["lead", "mql", "mql"]
    assert again.equals(store.read_table(tables.stage_ledger, schema))
    # The copy holds every row now: the next read asks the table only for rows past it.
    assert store.read_frame("table:stage_ledger")["id"].to_list() == [1, 2, 3]


def test_a_table_read_in_batches_equals_one_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The write-back ledger holds millions of rows at scale: tables become frames a batch at a
    # time. Batches must not change what is read, with or without a filter.
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    schema = {
        "system": pl.String(),
        "record_id": pl.String(),
        "field": pl.String(),
        "value": pl.String(),
        "written_at": pl.Datetime("us", "UTC"),
    }
    at = datetime(2026, 11, 21, 9, tzinfo=UTC)
    store.upsert(
        tables.writeback_ledger,
        [
            {
                "system": "hubspot",
                "record_id": f"hubspot:contacts:{i}",
                "field": "leadsync_stage",
                "value": None if i % 5 == 0 else f"v{i}",
                "written_at": at,
                "run_id": "run",
            }
            for i in range(23)
        ],
        ["system", "record_id", "field"],
    )
    wanted = [f"hubspot:contacts:{i}" for i in range(0, 23, 2)]
    whole = store.read_table(tables.writeback_ledger, schema)
    some = store.read_table(tables.writeback_ledger, schema, where=("record_id", wanted))
    monkeypatch.setattr(store_module, "_DECODE_BATCH", 4)
    monkeypatch.setattr(store_module, "_CHUNK", 3)
    assert store.read_table(tables.writeback_ledger, schema).equals(whole)
    batched = store.read_table(tables.writeback_ledger, schema, where=("record_id", wanted))
    assert batched.sort("record_id").equals(some.sort("record_id"))
    assert whole.height == 23 and some.height == 12
    assert whole["written_at"].to_list() == [at] * 23
    assert store.read_table(
        tables.writeback_ledger, schema, where=("record_id", ["none"])
    ).schema == pl.Schema(schema)
