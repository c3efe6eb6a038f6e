"""The recall-ceiling oracle (benchmarks/identity_ceiling.py) on hand-made pairs."""

import polars as pl

from benchmarks.identity_ceiling import CLASS_COLUMNS, candidate_pairs, oracle


def _pairs(level: str, true: int, false: int, start: int) -> list[dict[str, object]]:
    base = dict.fromkeys(CLASS_COLUMNS, None) | {"vetoed": False, "hard_link": False}
    rows = [{**base, "name": level, "true": i < true} for i in range(true + false)]
    return [{**r, "a": start + i, "b": start + i + 1} for i, r in enumerate(rows)]


def test_the_oracle_takes_the_purest_classes_while_precision_holds() -> None:
    # 100 pure pairs, then 50 true with 1 false (150/151 = 0.9934), then half false.
    classed = pl.DataFrame(
        _pairs("exact", 100, 0, 0) + _pairs("close", 50, 1, 1_000) + _pairs("diff", 10, 10, 2_000)
    )
    classes, merged = oracle(classed, 0.99)
    assert classes.filter("taken")["name"].to_list() == ["exact", "close"]
    assert (int(merged["true"].sum()), int((~merged["true"]).sum())) == (150, 1)
    # At 0.999 the impure class is one false pair too many.
    _, strict = oracle(classed, 0.999)
    assert strict.height == 100


def test_candidates_share_a_key_and_skip_short_local_parts() -> None:
    df = pl.DataFrame(
        {
            "_i": [0, 1, 2, 3],
            "name_key": ["a b", "a c", None, None],
            "name_romaji": [None] * 4,
            "name_reading": [None] * 4,
            "email": [None] * 4,
            "email_local": ["anna", "anna", "bo", "bo"],
            "phone": [None, None, "+1", "+2"],
            "family_key": [None] * 4,
            "given_key": [None] * 4,
            "company_key": [None] * 4,
            "company_domain": [None] * 4,
        },
        schema_overrides={"_i": pl.UInt32},
    ).with_columns(pl.exclude("_i").cast(pl.String))
    pairs = candidate_pairs(df).sort("a")
    # 0-1 by the local part; 2-3 share only a two-letter one, too short to mean anything.
    assert pairs.rows() == [(0, 1)]
