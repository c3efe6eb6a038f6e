"""What a lead-definition change would do before it is published.

`definition_impact` scores and stages the same unified leads and activities under the current
and a proposed definition (same clock, same stored stages) and counts, per region, the leads
whose stage, temperature band or MQL status would change. Nothing is written: the ledger only
ever records what a published definition did.
"""

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from orchestration.funnel.definition import LeadDefinition
from orchestration.funnel.scoring import region_expr, score
from orchestration.funnel.stages import STAGE_ORDER, assign_stages

# Stages at or past MQL: the lead is (or was made) marketing-qualified and handed to sales.
MQL_OR_BEYOND: tuple[str, ...] = STAGE_ORDER[STAGE_ORDER.index("MQL") :]

IMPACT_SCHEMA: dict[str, pl.DataType] = {
    "region": pl.String(),
    "leads": pl.Int64(),
    "stage_changes": pl.Int64(),
    "band_changes": pl.Int64(),
    "become_mql": pl.Int64(),
    "stop_being_mql": pl.Int64(),
}


@dataclass(frozen=True)
class Impact:
    """Per-region counts (IMPACT_SCHEMA), the stage moves (from, to, leads) and every changed
    lead (unified_id, region, stage and temperature before and after)."""

    by_region: pl.DataFrame
    stage_moves: pl.DataFrame
    changed: pl.DataFrame

    def totals(self) -> dict[str, int]:
        """The by-region counts summed."""
        sums = self.by_region.drop("region").sum()
        return {c: int(sums[c][0] or 0) for c in sums.columns}


def _outcome(
    unified: pl.DataFrame,
    activities: pl.DataFrame,
    previous: pl.DataFrame | None,
    definition: LeadDefinition,
    now: datetime,
) -> pl.DataFrame:
    scores = score(unified, activities, definition, now=now)
    staged, _ = assign_stages(unified, scores, previous, definition, now=now)
    return staged.select("unified_id", "stage").join(
        scores.select("unified_id", "temperature"), on="unified_id", how="left"
    )


def definition_impact(
    unified: pl.DataFrame,
    activities: pl.DataFrame,
    previous: pl.DataFrame | None,
    current: LeadDefinition,
    proposed: LeadDefinition,
    *,
    now: datetime,
) -> Impact:
    """Leads that would change stage, temperature band or MQL status under `proposed`."""
    before = _outcome(unified, activities, previous, current, now)
    after = _outcome(unified, activities, previous, proposed, now)
    # Regions as the proposed definition draws them: a new overlay is part of the change.
    regions = unified.select(
        "unified_id", region_expr(proposed).fill_null("global").alias("region")
    ).unique("unified_id")
    both = (
        before.join(after, on="unified_id", suffix="_after")
        .join(regions, on="unified_id", how="left")
        .with_columns(
            pl.col("region").fill_null("global"),
            pl.col("stage").is_in(MQL_OR_BEYOND).alias("mql"),
            pl.col("stage_after").is_in(MQL_OR_BEYOND).alias("mql_after"),
        )
        .with_columns(
            (pl.col("stage") != pl.col("stage_after")).alias("stage_changed"),
            ~pl.col("temperature").eq_missing(pl.col("temperature_after")).alias("band_changed"),
        )
    )
    by_region = (
        both.group_by("region")
        .agg(
            pl.len().cast(pl.Int64).alias("leads"),
            pl.col("stage_changed").sum().cast(pl.Int64).alias("stage_changes"),
            pl.col("band_changed").sum().cast(pl.Int64).alias("band_changes"),
            (~pl.col("mql") & pl.col("mql_after")).sum().cast(pl.Int64).alias("become_mql"),
            (pl.col("mql") & ~pl.col("mql_after")).sum().cast(pl.Int64).alias("stop_being_mql"),
        )
        .select(list(IMPACT_SCHEMA))
        .sort("region")
    )
    moves = (
        both.filter(pl.col("stage_changed"))
        .group_by(pl.col("stage").alias("from_stage"), pl.col("stage_after").alias("to_stage"))
        .len()
        .rename({"len": "leads"})
        .sort("leads", "from_stage", "to_stage", descending=[True, False, False])
    )
    changed = both.filter(pl.col("stage_changed") | pl.col("band_changed")).select(
        "unified_id", "region", "stage", "stage_after", "temperature", "temperature_after"
    )
    return Impact(by_region=by_region, stage_moves=moves, changed=changed.sort("unified_id"))
