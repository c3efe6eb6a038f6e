"""Funnel metrics: leads per stage and the demand waterfall from the ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from orchestration.funnel.definition import ALL_STAGES, STAGE_ORDER
from orchestration.funnel.metrics import stage_counts, waterfall

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def test_stage_counts_in_order_with_zeros() -> None:
    stages = pl.DataFrame(
        {"unified_id": ["a", "b", "c", "d"], "stage": ["MQL", "Lead", "MQL", "Recycled"]}
    )
    out = stage_counts(stages)
    assert out["stage"].to_list() == list(ALL_STAGES)
    counts = dict(zip(out["stage"], out["leads"], strict=True))
    assert counts["Lead"] == 1 and counts["MQL"] == 2 and counts["Recycled"] == 1
    assert counts["SAL"] == 0 and counts["Customer"] == 0
    assert out["leads"].sum() == 4


def _ledger(*moves: tuple[str, str | None, str, str, int]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "unified_id": u,
                "from_stage": f,
                "to_stage": t,
                "rule": r,
                "at": T0 + timedelta(days=d),
            }
            for u, f, t, r, d in moves
        ],
        schema={
            "unified_id": pl.String,
            "from_stage": pl.String,
            "to_stage": pl.String,
            "rule": pl.String,
            "at": pl.Datetime("us", "UTC"),
        },
    )


def test_waterfall_counts_skipped_stages_and_sgl_from_sql() -> None:
    ledger = _ledger(
        ("a", None, "Lead", "new_lead", 0),
        ("a", "Lead", "MQL", "hand_raise", 1),  # skipped MAL: still counts as having passed it
        ("a", "MQL", "SAL", "sales_accepted", 2),
        ("b", None, "MAL", "fit_threshold", 0),
        ("b", "MAL", "MQL", "score_threshold", 3),
        ("b", "MQL", "Recycled", "recycle", 5),
        ("c", None, "Lead", "new_lead", 0),
        ("d", None, "SQL", "sgl", 0),  # sales-generated: from SQL on only
        ("d", "SQL", "Customer", "won_opportunity", 9),
        ("e", None, "Disqualified", "disqualify", 0),  # never in the funnel
    )
    out = waterfall(ledger)
    assert out["stage"].to_list() == list(STAGE_ORDER)
    reached = dict(zip(out["stage"], out["reached"], strict=True))
    assert reached == {
        "Lead": 3,
        "MAL": 2,
        "MQL": 2,
        "SAL": 1,
        "SQL": 1,
        "Opportunity": 1,
        "Customer": 1,
    }
    conv = dict(zip(out["stage"], out["conversion_from_previous"], strict=True))
    assert conv["Lead"] is None
    assert conv["MAL"] == pytest.approx(2 / 3)
    assert conv["SAL"] == pytest.approx(0.5)
    assert conv["SQL"] == pytest.approx(0.0)  # a stopped at SAL; d is an SGL, not a conversion
    assert conv["Opportunity"] == pytest.approx(1.0)


def test_waterfall_of_empty_ledger() -> None:
    out = waterfall(_ledger())
    assert out["reached"].to_list() == [0] * len(STAGE_ORDER)
    assert out["conversion_from_previous"].null_count() == len(STAGE_ORDER)
