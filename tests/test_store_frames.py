"""Reading a derived frame back: all columns, or only the ones a caller needs."""

from pathlib import Path

import polars as pl

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
