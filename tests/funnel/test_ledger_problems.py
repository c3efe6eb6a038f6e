"""The stage ledger's lawfulness: only declared moves, and an unbroken chain per lead."""

import polars as pl

from orchestration.funnel.definition import load_definition
from orchestration.funnel.stages import LEDGER_SCHEMA, ledger_problems


def _ledger(rows: list[tuple[str, str | None, str, str]]) -> pl.DataFrame:
    base = {c: None for c in LEDGER_SCHEMA}
    return pl.DataFrame(
        [
            {**base, "unified_id": u, "from_stage": f, "to_stage": t, "rule": r, "id": i}
            for i, (u, f, t, r) in enumerate(rows)
        ],
        schema={"id": pl.Int64(), **LEDGER_SCHEMA},
    )


def test_a_lawful_history_has_no_problems() -> None:
    ledger = _ledger(
        [
            ("UL-1", None, "Lead", "first_seen"),
            ("UL-1", "Lead", "MQL", "score"),
            ("UL-1", "MQL", "Recycled", "recycle"),
            ("UL-1", "Recycled", "MQL", "reopen"),
            ("UL-2", None, "SQL", "sgl"),
        ]
    )
    assert ledger_problems(ledger, load_definition()).height == 0


def test_an_undeclared_regression_and_a_broken_chain_are_named() -> None:
    ledger = _ledger(
        [
            ("UL-1", None, "Lead", "first_seen"),
            ("UL-1", "Lead", "SQL", "sales_status"),
            ("UL-1", "SQL", "MQL", "score"),  # backwards, not along a declared edge
            ("UL-2", None, "MQL", "first_seen"),
            ("UL-2", "SAL", "SQL", "sales_status"),  # UL-2 never was SAL
        ]
    )
    problems = ledger_problems(ledger, load_definition())
    assert problems.select("unified_id", "from_stage", "to_stage", "problem").rows() == [
        ("UL-1", "SQL", "MQL", "illegal_transition"),
        ("UL-2", "SAL", "SQL", "broken_chain"),
    ]


def test_a_returning_unified_id_continues_its_history() -> None:
    from datetime import UTC, datetime

    from orchestration.funnel.stages import STAGES_SCHEMA, previous_with_history

    at = datetime(2026, 11, 1, tzinfo=UTC)
    stored = pl.DataFrame(
        {"unified_id": ["UL-1"], "stage": ["MQL"], "stage_entered_at": [at]}
    ).with_columns(pl.col("stage_entered_at").cast(STAGES_SCHEMA["stage_entered_at"]))
    ledger = _ledger(
        [
            ("UL-1", None, "MQL", "score"),
            ("UL-2", None, "Lead", "first_seen"),  # merged away since, now back
            ("UL-2", "Lead", "SAL", "sales_accepted"),
        ]
    ).with_columns(pl.lit(at).alias("at"))
    out = previous_with_history(stored, ledger).sort("unified_id")
    assert out.select("unified_id", "stage").rows() == [("UL-1", "MQL"), ("UL-2", "SAL")]
