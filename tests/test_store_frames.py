"""Reading a derived frame back: all columns, or only the ones a caller needs."""

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from orchestration.store import StateStore

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
