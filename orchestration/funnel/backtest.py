"""Backtest a lead definition: does its score rank the people who went on to buy?

Given scored unified leads and what really happened to the person behind each one (from the sandbox
generator's outcome truth), this reports, for one definition:

* conversion to opportunity and to a win per temperature band (cold / warm / hot, as the
  definition under test draws them), and per score decile;
* the AUC of the score for "became an opportunity" and for "won": the probability that a random
  converting lead outscores a random non-converting one (0.5 = no better than chance).

`compare` puts two backtests side by side (current vs proposed definition) with the deltas, so a
rule change shows its effect on both the band conversion and the AUC before it is published.

Decisions (and why):

* **Leakage.** In the generator, a person's outcome is drawn from their fit and their *marketing*
  behaviour (hand-raises, webinars, pricing-page visits, recency); the *sales* activity is drawn
  from the outcome: reps work a lead because it qualified, and meetings are only ever logged for
  SQL / opportunity / customer / lost people. Scoring at `now` with those activities would reward
  the score for seeing the outcome's own footprint. So the backtest scores with every
  SALES_SIDE_TYPES activity removed (sales emails, replies to them, calls, meetings), and keeps
  every marketing activity up to `now`. A time cutoff was the alternative, but the outcome truth
  carries no opportunity date (people only in HubSpot have no Opportunity record at all), and a
  global cutoff would also cut the hand-raises that cause the outcome. Fit fields (title, size,
  industry, country) are not outcome-driven in the generator; CRM status fields are not scored.
* **Scores come from the real scoring code** (`scoring.score`) with the definition under test;
  nothing here re-implements a rule.
* **Lead → person.** Each unified lead takes the person who owns most of its records (by the
  generator's identity truth); a tie goes to the smallest person id, so the result is stable. A
  false merge therefore carries its majority person's outcome, and its minority records' people
  are not double counted through it. A person split over several unified leads (a missed merge)
  counts once per lead: each lead is scored and worked on its own, which is what sales sees.
  `person_share` (the majority's share of the lead's records) shows how clean the mapping was.
* **Bands.** Temperature bands are the definition's own (they are what sales acts on). The finer
  view is deciles of the score rather than fixed 20-point bands: a proposed definition that
  rescales points (doubling a weight) would move every lead across fixed bands and make the
  side-by-side meaningless, while "the top tenth of leads by score" is the same population size
  under either definition. Ties stay together: a group of equal scores goes wholly into the decile
  its first member falls in, so deciles can be unequal or empty (empty ones are not listed), and
  each row shows its score range.
* **AUC** is the rank (Mann-Whitney U) statistic with average ranks, so tied scores count half.
  All-positive or all-negative outcomes have no AUC (None).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
from polars.dataframe.group_by import GroupBy

from orchestration.funnel.definition import LeadDefinition
from orchestration.funnel.scoring import score

# One-to-one sales activity: logged because a rep works the lead, i.e. a consequence of it
# qualifying rather than a signal of intent that marketing could have scored beforehand.
SALES_SIDE_TYPES: tuple[str, ...] = ("sales_email", "email_reply", "sales_call", "meeting")

BANDS: tuple[str, ...] = ("cold", "warm", "hot")
DECILES = 10

BAND_SCHEMA: dict[str, pl.DataType] = {
    "band": pl.String(),  # the temperature under the lead's own (regional) rules
    "leads": pl.Int64(),
    "opportunities": pl.Int64(),
    "opportunity_rate": pl.Float64(),
    "wins": pl.Int64(),
    "win_rate": pl.Float64(),
}

DECILE_SCHEMA: dict[str, pl.DataType] = {
    "decile": pl.Int64(),  # 1 = lowest scores, 10 = highest
    "score_min": pl.Int64(),
    "score_max": pl.Int64(),
    "leads": pl.Int64(),
    "opportunities": pl.Int64(),
    "opportunity_rate": pl.Float64(),
    "wins": pl.Int64(),
    "win_rate": pl.Float64(),
}

# `lead_persons`: one row per unified lead.
LEAD_PERSON_SCHEMA: dict[str, pl.DataType] = {
    "unified_id": pl.String(),
    "person_id": pl.String(),
    "records": pl.Int64(),  # the lead's records that have a truth row
    "person_share": pl.Float64(),  # the majority person's share of them
}

# What `backtest` needs per unified lead besides its score.
LEAD_OUTCOME_SCHEMA: dict[str, pl.DataType] = {
    "unified_id": pl.String(),
    "person_id": pl.String(),
    "became_opportunity": pl.Boolean(),
    "won": pl.Boolean(),
}


@dataclass(frozen=True)
class Backtest:
    """One definition's backtest: per band (BAND_SCHEMA) and per decile (DECILE_SCHEMA)
    conversion, the AUC of the score for opportunity and for win (None when undefined) and the
    counts behind them. `unmatched` is the scored leads that had no outcome (left out)."""

    version: str
    leads: int
    opportunities: int
    wins: int
    auc_opportunity: float | None
    auc_win: float | None
    bands: pl.DataFrame
    deciles: pl.DataFrame
    unmatched: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain JSON-ready values."""
        return {
            "version": self.version,
            "leads": self.leads,
            "opportunities": self.opportunities,
            "wins": self.wins,
            "auc_opportunity": self.auc_opportunity,
            "auc_win": self.auc_win,
            "unmatched": self.unmatched,
            "bands": self.bands.to_dicts(),
            "deciles": self.deciles.to_dicts(),
        }


@dataclass(frozen=True)
class Comparison:
    """Two backtests on the same leads and outcomes, and their differences: `bands` and `deciles`
    hold each metric as `<metric>_current`, `<metric>_proposed` and `<metric>_delta` (proposed
    minus current); `auc` has one row per outcome (metric, current, proposed, delta)."""

    current: Backtest
    proposed: Backtest
    bands: pl.DataFrame
    deciles: pl.DataFrame
    auc: pl.DataFrame

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain JSON-ready values."""
        return {
            "current": self.current.to_dict(),
            "proposed": self.proposed.to_dict(),
            "auc": self.auc.to_dicts(),
            "bands": self.bands.to_dicts(),
            "deciles": self.deciles.to_dicts(),
        }


# --------------------------------------------------------------------------------------------
# Leads, people and outcomes
# --------------------------------------------------------------------------------------------


def lead_persons(identity: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """Each unified lead's person: the one owning most of its records (LEAD_PERSON_SCHEMA).

    `identity` has record_id and unified_id (identity resolution's assignments); `truth` has
    record_id and person_id. Records without a truth row are ignored; a lead with none is absent.
    A tie between people goes to the smallest person_id."""
    counts = (
        identity.select("record_id", "unified_id")
        .join(truth.select("record_id", "person_id"), on="record_id", how="inner")
        .group_by("unified_id", "person_id")
        .agg(pl.len().cast(pl.Int64).alias("n"))
    )
    return (
        counts.sort(["unified_id", "n", "person_id"], descending=[False, True, False])
        .group_by("unified_id", maintain_order=True)
        .agg(
            pl.col("person_id").first(),
            pl.col("n").sum().alias("records"),
            (pl.col("n").first() / pl.col("n").sum()).alias("person_share"),
        )
        .select([pl.col(c).cast(dt) for c, dt in LEAD_PERSON_SCHEMA.items()])
    )


def lead_outcomes(persons: pl.DataFrame, outcomes: pl.DataFrame) -> pl.DataFrame:
    """Unified leads (`lead_persons`) joined to their person's outcome (person_id,
    became_opportunity, won) -> LEAD_OUTCOME_SCHEMA. A person without an outcome row counts as
    neither an opportunity nor a win."""
    joined = persons.join(
        outcomes.select("person_id", "became_opportunity", "won"), on="person_id", how="left"
    )
    return joined.select(
        pl.col("unified_id").cast(pl.String),
        pl.col("person_id").cast(pl.String),
        pl.col("became_opportunity").fill_null(False).cast(pl.Boolean),
        pl.col("won").fill_null(False).cast(pl.Boolean),
    )


def marketing_activities(activities: pl.DataFrame) -> pl.DataFrame:
    """The timeline without SALES_SIDE_TYPES: what the backtest scores (see the module notes)."""
    return activities.filter(~pl.col("activity_type").is_in(SALES_SIDE_TYPES))


def score_for_backtest(
    unified: pl.DataFrame,
    activities: pl.DataFrame,
    definition: LeadDefinition,
    *,
    now: datetime,
) -> pl.DataFrame:
    """`scoring.score` under `definition` at `now`, without the sales-side activities.

    Returns unified_id, score and temperature (one row per unified lead)."""
    scored = score(unified, marketing_activities(activities), definition, now=now)
    return scored.select("unified_id", "score", "temperature")


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def auc(frame: pl.DataFrame, score_col: str, label_col: str) -> float | None:
    """Area under the ROC curve of `score_col` for the boolean `label_col`, by the rank
    (Mann-Whitney U) formula: (sum of the positives' ranks - n1(n1+1)/2) / (n1 * n0), with
    average ranks so that a positive and a negative with equal scores count half. None when
    there are no positives or no negatives (or no rows)."""
    stats = frame.select(
        pl.col(score_col).rank("average").alias("rank"), pl.col(label_col).cast(pl.Boolean)
    ).select(
        pl.col(label_col).sum().cast(pl.Float64).alias("pos"),
        (~pl.col(label_col)).sum().cast(pl.Float64).alias("neg"),
        pl.col("rank").filter(pl.col(label_col)).sum().cast(pl.Float64).alias("rank_sum"),
    )
    pos, neg, rank_sum = stats.row(0)
    if not pos or not neg:
        return None
    return float((rank_sum - pos * (pos + 1) / 2) / (pos * neg))


def _conversion(grouped: GroupBy) -> pl.DataFrame:
    return grouped.agg(
        pl.len().cast(pl.Int64).alias("leads"),
        pl.col("became_opportunity").sum().cast(pl.Int64).alias("opportunities"),
        pl.col("became_opportunity").mean().cast(pl.Float64).alias("opportunity_rate"),
        pl.col("won").sum().cast(pl.Int64).alias("wins"),
        pl.col("won").mean().cast(pl.Float64).alias("win_rate"),
        pl.col("score").min().cast(pl.Int64).alias("score_min"),
        pl.col("score").max().cast(pl.Int64).alias("score_max"),
    )


def decile_expr(score_col: str = "score") -> pl.Expr:
    """Each row's score decile (1 lowest .. 10 highest) by its tie group's first rank, so equal
    scores always share a decile."""
    first_rank = pl.col(score_col).rank("min").cast(pl.Int64)
    return (((first_rank - 1) * DECILES) // pl.len() + 1).cast(pl.Int64)


def backtest(scored: pl.DataFrame, outcomes: pl.DataFrame, definition: LeadDefinition) -> Backtest:
    """Conversion per band and decile, and AUC, of `scored` (unified_id, score, temperature: the
    output of `score_for_backtest` under `definition`) against `outcomes` (unified_id,
    became_opportunity, won: LEAD_OUTCOME_SCHEMA). Leads without an outcome are left out and
    counted as `unmatched`. `definition` is the one `scored` was scored under (its version labels
    the result)."""
    frame = scored.select("unified_id", "score", "temperature").join(
        outcomes.select("unified_id", "became_opportunity", "won"), on="unified_id", how="inner"
    )
    unmatched = scored.height - frame.height
    # Every band is listed, an empty one with zero leads, so two definitions line up row by row.
    # The thresholds are not shown: a regional overlay may draw them differently.
    bands = (
        pl.DataFrame({"band": list(BANDS)}, schema={"band": pl.String()})
        .join(
            _conversion(frame.group_by(pl.col("temperature").alias("band"))),
            on="band",
            how="left",
        )
        .with_columns(pl.col("leads", "opportunities", "wins").fill_null(0))
        .select(list(BAND_SCHEMA))
    )
    deciles = (
        _conversion(frame.with_columns(decile_expr().alias("decile")).group_by("decile"))
        .select(list(DECILE_SCHEMA))
        .sort("decile")
    )
    return Backtest(
        version=definition.version,
        leads=frame.height,
        opportunities=int(frame["became_opportunity"].sum()),
        wins=int(frame["won"].sum()),
        auc_opportunity=auc(frame, "score", "became_opportunity"),
        auc_win=auc(frame, "score", "won"),
        bands=bands.cast(BAND_SCHEMA),  # type: ignore[arg-type]
        deciles=deciles.cast(DECILE_SCHEMA),  # type: ignore[arg-type]
        unmatched=unmatched,
    )


def _side_by_side(current: pl.DataFrame, proposed: pl.DataFrame, key: str) -> pl.DataFrame:
    metrics = [c for c in current.columns if c != key]
    both = current.join(proposed, on=key, how="full", coalesce=True, suffix="_proposed")
    columns: list[pl.Expr] = [pl.col(key)]
    for m in metrics:
        cur, pro = pl.col(m), pl.col(f"{m}_proposed")
        columns += [cur.alias(f"{m}_current"), pro.alias(f"{m}_proposed")]
        if m not in ("score_min", "score_max"):
            columns.append((pro - cur).alias(f"{m}_delta"))
    return both.select(columns)


def compare(current: Backtest, proposed: Backtest) -> Comparison:
    """`current` and `proposed` side by side, with proposed-minus-current deltas."""
    aucs = pl.DataFrame(
        {
            "metric": ["opportunity", "win"],
            "current": [current.auc_opportunity, current.auc_win],
            "proposed": [proposed.auc_opportunity, proposed.auc_win],
        },
        schema={"metric": pl.String(), "current": pl.Float64(), "proposed": pl.Float64()},
    ).with_columns((pl.col("proposed") - pl.col("current")).alias("delta"))
    bands = _side_by_side(current.bands, proposed.bands, "band")
    order = {b: i for i, b in enumerate(BANDS)}
    bands = bands.sort(pl.col("band").replace_strict(order, default=len(BANDS)))
    deciles = _side_by_side(current.deciles, proposed.deciles, "decile").sort("decile")
    return Comparison(current, proposed, bands=bands, deciles=deciles, auc=aucs)
