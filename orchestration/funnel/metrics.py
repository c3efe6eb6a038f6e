"""Funnel metrics: leads per stage, the demand waterfall, and the funnel report built on it.

The waterfall counts, for each forward stage, how many leads ever reached it, and the conversion
from the stage before. A lead that skipped a stage (a hand-raise goes from Lead straight to MQL)
counts as having passed through it, because the waterfall measures progress, not the number of
ledger rows. Sales-generated leads (ledger rule "sgl") enter at SQL and count from SQL on only, so
they do not inflate the marketing stages' conversion rates; SQL's conversion counts only leads
that came up from SAL, so SGLs never push a rate above 100%.

`funnel_report` cuts the same waterfall by region (the overlay covering the lead's country,
"global" when none), by origin (marketing-generated vs SGL), by `lead_source` and by monthly cohort
(the UTC month of the lead's first ledger row), and adds per stage:

* `median_days_in_stage`: the median of completed stays, a stay being the time from a ledger row
  entering the stage to the lead's next ledger row; leads still in the stage are `in_stage_now`
  with `median_days_waiting` (up to `now`);
* `recycled` / `disqualified`: leads that left the stage for Recycled / Disqualified.

The report covers the leads of the ledger that are still unified leads (an id merged into another
no longer counts, so one person never counts twice). The bottleneck is the stage transition
(previous stage → stage) with the lowest conversion among those whose previous stage was reached
by at least `min_volume` leads (20 by default, so a handful of leads cannot name one); ties go to
the earlier transition. Recent cohorts have not had time to convert, so read the rate by cohort.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise

import polars as pl

from orchestration.funnel.definition import ALL_STAGES, STAGE_ORDER, LeadDefinition

__all__ = [
    "BOTTLENECK_MIN_VOLUME",
    "DISPLAY_NAMES",
    "STAGE_REPORT_SCHEMA",
    "Bottleneck",
    "FunnelReport",
    "funnel_report",
    "stage_counts",
    "waterfall",
]

_RANK = {stage: i for i, stage in enumerate(STAGE_ORDER)}
_DAY_US = 86_400 * 1_000_000

# A transition needs this many leads at its previous stage before it can be named the bottleneck.
BOTTLENECK_MIN_VOLUME = 20
# The waterfall's names for the ledger's first and last stage.
DISPLAY_NAMES: dict[str, str] = {"Lead": "Inquiry", "Customer": "Won"}
GLOBAL_REGION = "global"
NO_SOURCE = "(none)"

STAGE_REPORT_SCHEMA: dict[str, pl.DataType] = {
    "stage": pl.String(),
    "reached": pl.Int64(),
    "conversion_from_previous": pl.Float64(),
    "median_days_in_stage": pl.Float64(),
    "in_stage_now": pl.Int64(),
    "median_days_waiting": pl.Float64(),
    "recycled": pl.Int64(),
    "disqualified": pl.Int64(),
}

SEGMENT_SCHEMA: dict[str, pl.DataType] = {
    "segment": pl.String(),
    "stage": pl.String(),
    "reached": pl.Int64(),
    "conversion_from_previous": pl.Float64(),
}


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


def _per_lead(ledger: pl.DataFrame) -> pl.DataFrame:
    """(unified_id, max_rank, entry_rank, entered_at) of each lead that reached a forward stage."""
    rank = pl.col("to_stage").replace_strict(_RANK, default=None, return_dtype=pl.Int64)
    return (
        ledger.sort("at")
        .group_by("unified_id")
        .agg(
            rank.max().alias("max_rank"),
            # Entry rank: SQL for sales-generated leads, otherwise the top of the funnel.
            pl.when((pl.col("rule") == "sgl").any())
            .then(pl.lit(_RANK["SQL"]))
            .otherwise(pl.lit(0))
            .alias("entry_rank"),
            pl.col("at").min().alias("entered_at"),
        )
        .filter(pl.col("max_rank").is_not_null())
    )


def _waterfall_by(per_lead: pl.DataFrame, key: str | None) -> pl.DataFrame:
    """The waterfall of each `key` value (or of everyone): [key,] stage, reached, advanced,
    conversion_from_previous; every stage in order for every key value."""
    stages = pl.DataFrame(
        {"stage": list(STAGE_ORDER), "rank": list(range(len(STAGE_ORDER)))},
        schema={"stage": pl.String(), "rank": pl.Int64()},
    )
    keys = [key] if key else []
    if key:
        values = per_lead.select(pl.col(key).unique().sort())
        grid = values.join(stages, how="cross")
    else:
        grid = stages
    # reached: got to the stage (from below, or entered at it); advanced: got to it from the
    # previous stage, the numerator of that stage's conversion (SGLs never "advance" into SQL).
    rank, max_rank, entry = pl.col("rank"), pl.col("max_rank"), pl.col("entry_rank")
    counts = (
        stages.join(per_lead, how="cross")
        .group_by([*keys, "stage"])
        .agg(
            ((max_rank >= rank) & (entry <= rank)).sum().alias("reached"),
            ((max_rank >= rank) & (entry <= rank - 1)).sum().alias("advanced"),
        )
    )
    previous = pl.col("reached").shift(1).over(keys) if keys else pl.col("reached").shift(1)
    return (
        grid.join(counts, on=[*keys, "stage"], how="left", maintain_order="left")
        .with_columns(
            pl.col("reached").fill_null(0).cast(pl.Int64),
            pl.col("advanced").fill_null(0).cast(pl.Int64),
        )
        .with_columns(
            pl.when(previous > 0)
            .then(pl.col("advanced") / previous)
            .otherwise(None)
            .cast(pl.Float64)
            .alias("conversion_from_previous")
        )
        .drop("rank")
    )


def waterfall(ledger: pl.DataFrame) -> pl.DataFrame:
    """Demand waterfall from the ledger: (stage, reached, conversion_from_previous).

    `conversion_from_previous` is the share of leads that reached the previous stage and went on
    to this one; null for Lead or when nobody reached the previous stage.
    """
    return _waterfall_by(_per_lead(ledger), None).select(
        "stage", "reached", "conversion_from_previous"
    )


@dataclass(frozen=True)
class Bottleneck:
    """The weakest stage transition: `from_stage` → `stage` converts `conversion`."""

    from_stage: str
    stage: str
    conversion: float
    advanced: int
    at_previous: int
    min_volume: int

    def sentence(self) -> str:
        return (
            f"Bottleneck: {_label(self.from_stage)} → {_label(self.stage)} converts "
            f"{self.conversion:.1%} ({self.advanced} of the {self.at_previous} leads that reached "
            f"{_label(self.from_stage)}), the lowest of the transitions with at least "
            f"{self.min_volume} leads."
        )


@dataclass(frozen=True)
class FunnelReport:
    """The funnel report: the waterfall overall and per cut, the flows out, the bottleneck.

    `overall` has STAGE_REPORT_SCHEMA; each cut has SEGMENT_SCHEMA (segment = the region, origin,
    lead source or "YYYY-MM" cohort), every forward stage in order per segment.
    """

    generated_at: datetime
    leads: int
    overall: pl.DataFrame
    by_region: pl.DataFrame
    by_origin: pl.DataFrame
    by_lead_source: pl.DataFrame
    by_cohort: pl.DataFrame
    flows: dict[str, int]
    bottleneck: Bottleneck | None
    min_volume: int

    def bottleneck_sentence(self) -> str:
        if self.bottleneck is not None:
            return self.bottleneck.sentence()
        return (
            f"No bottleneck named: no stage transition had at least {self.min_volume} leads at "
            "its previous stage."
        )

    def cuts(self) -> dict[str, pl.DataFrame]:
        """The segmented waterfalls by name, in report order."""
        return {
            "region": self.by_region,
            "origin": self.by_origin,
            "lead_source": self.by_lead_source,
            "cohort": self.by_cohort,
        }


def _label(stage: str) -> str:
    return DISPLAY_NAMES.get(stage, stage)


def _stays(ledger: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """Per stage: median days of completed stays, leads in it now and their median wait."""
    days = (pl.col("until") - pl.col("at")).dt.total_microseconds() / _DAY_US
    rows = ledger.sort("unified_id", "at").with_columns(
        pl.col("at").shift(-1).over("unified_id").alias("next_at")
    )
    done = (
        rows.filter(pl.col("next_at").is_not_null())
        .with_columns(pl.col("next_at").alias("until"))
        .group_by(pl.col("to_stage").alias("stage"))
        .agg(days.median().alias("median_days_in_stage"))
    )
    waiting = (
        rows.filter(pl.col("next_at").is_null())
        .with_columns(pl.lit(now, dtype=pl.Datetime("us", "UTC")).alias("until"))
        .group_by(pl.col("to_stage").alias("stage"))
        .agg(
            pl.col("unified_id").n_unique().cast(pl.Int64).alias("in_stage_now"),
            days.median().alias("median_days_waiting"),
        )
    )
    return done.join(waiting, on="stage", how="full", coalesce=True)


def _exits(ledger: pl.DataFrame) -> pl.DataFrame:
    """Per stage: leads that left it for Recycled and for Disqualified."""
    return (
        ledger.filter(pl.col("from_stage").is_not_null())
        .group_by(pl.col("from_stage").alias("stage"))
        .agg(
            pl.col("unified_id")
            .filter(pl.col("to_stage") == "Recycled")
            .n_unique()
            .cast(pl.Int64)
            .alias("recycled"),
            pl.col("unified_id")
            .filter(pl.col("to_stage") == "Disqualified")
            .n_unique()
            .cast(pl.Int64)
            .alias("disqualified"),
        )
    )


def _bottleneck(overall: pl.DataFrame, min_volume: int) -> Bottleneck | None:
    best: Bottleneck | None = None
    rows = overall.to_dicts()
    for prev, row in pairwise(rows):
        conversion = row["conversion_from_previous"]
        if conversion is None or prev["reached"] < min_volume:
            continue
        if best is None or conversion < best.conversion:
            best = Bottleneck(
                from_stage=prev["stage"],
                stage=row["stage"],
                conversion=conversion,
                advanced=row["advanced"],
                at_previous=prev["reached"],
                min_volume=min_volume,
            )
    return best


def _segments(per_lead: pl.DataFrame, key: str) -> pl.DataFrame:
    out = _waterfall_by(per_lead, key).rename({key: "segment"})
    return out.select(
        pl.col("segment").cast(pl.String), "stage", "reached", "conversion_from_previous"
    )


def funnel_report(
    ledger: pl.DataFrame,
    unified: pl.DataFrame,
    definition: LeadDefinition,
    now: datetime,
    *,
    min_volume: int = BOTTLENECK_MIN_VOLUME,
) -> FunnelReport:
    """The funnel report of the stage ledger over the current unified leads (see module doc).

    `ledger` has LEDGER_SCHEMA's unified_id, from_stage, to_stage, rule and at; `unified` needs
    unified_id and may carry country and lead_source (missing ones read as null).
    """
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    leads = unified.select(
        pl.col("unified_id").cast(pl.String),
        (pl.col("country") if "country" in unified.columns else pl.lit(None))
        .cast(pl.String)
        .alias("country"),
        (pl.col("lead_source") if "lead_source" in unified.columns else pl.lit(None))
        .cast(pl.String)
        .alias("lead_source"),
    ).unique("unified_id", keep="first", maintain_order=True)
    ledger = ledger.join(leads.select("unified_id"), on="unified_id", how="semi")

    regions = definition.country_regions()
    region = (
        pl.col("country")
        .str.strip_chars()
        .str.to_uppercase()
        .replace_strict(regions, default=None, return_dtype=pl.String)
        if regions
        else pl.lit(None, dtype=pl.String)
    )
    per_lead = (
        _per_lead(ledger)
        .join(leads, on="unified_id", how="left")
        .with_columns(
            region.fill_null(GLOBAL_REGION).alias("region"),
            pl.when(pl.col("entry_rank") == _RANK["SQL"])
            .then(pl.lit("sgl"))
            .otherwise(pl.lit("marketing"))
            .alias("origin"),
            pl.col("lead_source").fill_null(NO_SOURCE),
            pl.col("entered_at").dt.strftime("%Y-%m").alias("cohort"),
        )
    )

    base = _waterfall_by(per_lead, None)
    overall = (
        base.join(_stays(ledger, now), on="stage", how="left", maintain_order="left")
        .join(_exits(ledger), on="stage", how="left", maintain_order="left")
        .with_columns(
            pl.col("in_stage_now", "recycled", "disqualified").fill_null(0).cast(pl.Int64)
        )
    )
    bottleneck = _bottleneck(overall, min_volume)
    rules = ledger.group_by("rule").agg(pl.col("unified_id").n_unique().alias("n"))
    by_rule = dict(zip(rules["rule"].to_list(), rules["n"].to_list(), strict=True))
    origins = per_lead["origin"].value_counts()
    by_origin = dict(zip(origins["origin"].to_list(), origins["count"].to_list(), strict=True))
    flows = {
        "marketing_generated": int(by_origin.get("marketing", 0)),
        "sales_generated": int(by_origin.get("sgl", 0)),
        "recycled": int(by_rule.get("recycle", 0)),
        "reopened": int(by_rule.get("reopen", 0)),
        "disqualified": int(by_rule.get("disqualify", 0)),
        "sales_reentry": int(by_rule.get("sales_reentry", 0)),
    }
    return FunnelReport(
        generated_at=now,
        leads=per_lead.height,
        overall=overall.select(list(STAGE_REPORT_SCHEMA)).cast(pl.Schema(STAGE_REPORT_SCHEMA)),
        by_region=_segments(per_lead, "region"),
        by_origin=_segments(per_lead, "origin"),
        by_lead_source=_segments(per_lead, "lead_source"),
        by_cohort=_segments(per_lead, "cohort"),
        flows=flows,
        bottleneck=bottleneck,
        min_volume=min_volume,
    )
