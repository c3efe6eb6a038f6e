"""Funnel metrics (v1, thin): leads per stage and the demand waterfall from the stage ledger.

The waterfall counts, for each forward stage, how many leads ever reached it, and the conversion
from the stage before. A lead that skipped a stage (a hand-raise goes from Lead straight to MQL)
counts as having passed through it, because the waterfall measures progress, not the number of
ledger rows. Sales-generated leads (ledger rule "sgl") enter at SQL and count from SQL on only, so
they do not inflate the marketing stages' conversion rates; SQL's conversion counts only leads
that came up from SAL, so SGLs never push a rate above 100%.
"""

from __future__ import annotations

import polars as pl

from orchestration.funnel.definition import ALL_STAGES, STAGE_ORDER

_RANK = {stage: i for i, stage in enumerate(STAGE_ORDER)}


def stage_counts(stages: pl.DataFrame) -> pl.DataFrame:
    """Leads per stage (stage, leads), every stage in lifecycle order, zeros included.

    Forward stages come first in STAGE_ORDER, then Recycled and Disqualified.
    """
    counts = stages.group_by("stage").agg(pl.col("unified_id").n_unique().alias("leads"))
    return (
        pl.DataFrame({"stage": list(ALL_STAGES)}, schema={"stage": pl.String()})
        .join(counts, on="stage", how="left", maintain_order="left")
        .with_columns(pl.col("leads").fill_null(0).cast(pl.Int64))
    )


def waterfall(ledger: pl.DataFrame) -> pl.DataFrame:
    """Demand waterfall from the ledger: (stage, reached, conversion_from_previous).

    `conversion_from_previous` is the share of leads that reached the previous stage and went on
    to this one; null for Lead or when nobody reached the previous stage.
    """
    rank = pl.col("to_stage").replace_strict(_RANK, default=None, return_dtype=pl.Int64)
    per_lead = (
        ledger.sort("at")
        .group_by("unified_id")
        .agg(
            rank.max().alias("max_rank"),
            # Entry rank: SQL for sales-generated leads, otherwise the top of the funnel.
            pl.when((pl.col("rule") == "sgl").any())
            .then(pl.lit(_RANK["SQL"]))
            .otherwise(pl.lit(0))
            .alias("entry_rank"),
        )
        .filter(pl.col("max_rank").is_not_null())
    )
    stages = pl.DataFrame(
        {"stage": list(STAGE_ORDER), "rank": list(range(len(STAGE_ORDER)))},
        schema={"stage": pl.String(), "rank": pl.Int64()},
    )
    # reached: got to the stage (from below, or entered at it); advanced: got to it from the
    # previous stage, the numerator of that stage's conversion (SGLs never "advance" into SQL).
    rank, max_rank, entry = pl.col("rank"), pl.col("max_rank"), pl.col("entry_rank")
    counts = (
        stages.join(per_lead, how="cross")
        .group_by("stage")
        .agg(
            ((max_rank >= rank) & (entry <= rank)).sum().alias("reached"),
            ((max_rank >= rank) & (entry <= rank - 1)).sum().alias("advanced"),
        )
    )
    out = (
        stages.join(counts, on="stage", how="left", maintain_order="left")
        .with_columns(
            pl.col("reached").fill_null(0).cast(pl.Int64),
            pl.col("advanced").fill_null(0).cast(pl.Int64),
        )
        .with_columns(
            pl.when(pl.col("reached").shift(1) > 0)
            .then(pl.col("advanced") / pl.col("reached").shift(1))
            .otherwise(None)
            .cast(pl.Float64)
            .alias("conversion_from_previous")
        )
    )
    return out.select("stage", "reached", "conversion_from_previous")
