"""Data-quality asset checks of the sync graph.

The checks that protect the CRMs are `blocking=True` on an asset upstream of `writeback/plan`: a
failure stops every downstream step of the run, so nothing is planned or written until someone
looks. The rejected-row checks on the write-back assets come after the write and only warn.
Besides these: `stage_ledger_is_lawful` (leads.py), `writeback_plan_is_safe` (writeback.py) and
`reconciled_with_crm` (reconcile.py, nightly).
"""

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from orchestration.defs import frames
from orchestration.defs.metadata import markdown_preview
from orchestration.defs.resources import CheckSettings, LeadDefinitionResource, StateStoreResource
from orchestration.funnel.definition import ALL_STAGES, LeadDefinition
from orchestration.funnel.nurture.lint import lint_templates
from orchestration.funnel.scoring import split_by_region

EXAMPLES = 10

UNIFIED = dg.AssetKey(["leads", "unified"])
NORMALIZED = dg.AssetKey(["leads", "normalized"])
SCORES = dg.AssetKey(["leads", "scores"])
NURTURE = dg.AssetKey(["nurture", "assignments"])
WRITEBACKS = {
    "hubspot": dg.AssetKey(["hubspot", "writeback"]),
    "salesforce": dg.AssetKey(["salesforce", "writeback"]),
}


def _duplicates(frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Rows of `frame` whose `keys` occur more than once, with how often."""
    return frame.group_by(keys).len().filter(pl.col("len") > 1).sort("len", descending=True)


@dg.asset_check(asset=UNIFIED, blocking=True)
def unified_ids_are_unique(state_store: StateStoreResource) -> dg.AssetCheckResult:
    """Blocks write-back unless each unified id, source record and CRM target is one lead's."""
    store = state_store.store()
    # Two golden records under one id, or one record in two leads, would push one person's status
    # to another person's CRM record; so would a CRM record targeted by two unified leads.
    golden = _duplicates(frames.read(store, "unified_leads", ["unified_id"]), ["unified_id"])
    records = _duplicates(frames.read(store, "identity", ["record_id"]), ["record_id"])
    target_key = ["source_system", "source_object", "source_id"]
    targets = _duplicates(frames.read(store, "writeback_targets", target_key), target_key)
    return dg.AssetCheckResult(
        passed=golden.is_empty() and records.is_empty() and targets.is_empty(),
        metadata={
            "duplicate_unified_ids": golden.height,
            "records_in_two_leads": records.height,
            "crm_records_targeted_twice": targets.height,
            "examples": markdown_preview(golden.head(EXAMPLES)),
        },
    )


def score_bounds(definition: LeadDefinition) -> dict[str, tuple[int, int]]:
    """The (lowest, highest) fit, engagement and total score the definition's rules can give."""
    rules = definition.scoring

    def span(points: Iterable[int]) -> tuple[int, int]:
        values = [0, *points]  # every rule may also not apply
        return min(values), max(values)

    size = span(band.points for band in rules.fit.employee_bands)
    seniority = span(p for keywords in rules.fit.seniority.values() for p in keywords.values())
    industry = span([rules.fit.industries.points])
    country = span([rules.fit.countries.points])
    fit = tuple(sum(part[i] for part in (size, seniority, industry, country)) for i in (0, 1))
    negatives = [
        span([rules.negatives.competitor.points]),
        span([rules.negatives.free_mail.points]),
        span([rules.negatives.student.points]),
        span([rules.negatives.inactivity.points]),
    ]
    cap = rules.engagement.total_cap
    low = fit[0] + sum(n[0] for n in negatives)
    high = fit[1] + cap + sum(n[1] for n in negatives)
    return {"fit_score": (fit[0], fit[1]), "engagement_score": (0, cap), "score": (low, high)}


def _score_problems(scores: pl.DataFrame, definition: LeadDefinition) -> pl.DataFrame:
    """Scored leads outside their region's bounds, or whose temperature its bands disagree with."""
    problems: list[pl.DataFrame] = []
    for rules, part in split_by_region(scores, definition):
        bounds = score_bounds(rules)
        temp = rules.scoring.temperature
        expected = (
            pl.when(pl.col("score") >= temp.hot_min)
            .then(pl.lit("hot"))
            .when(pl.col("score") >= temp.warm_min)
            .then(pl.lit("warm"))
            .otherwise(pl.lit("cold"))
        )
        out_of_range = [
            pl.col(c).is_null() | (pl.col(c) < lo) | (pl.col(c) > hi)
            for c, (lo, hi) in bounds.items()
        ]
        problem = (
            pl.when(out_of_range[0])
            .then(pl.lit("fit_score out of range"))
            .when(out_of_range[1])
            .then(pl.lit("engagement_score out of range"))
            .when(out_of_range[2])
            .then(pl.lit("score out of range"))
            .when(pl.col("temperature").is_null() | (pl.col("temperature") != expected))
            .then(pl.lit("temperature disagrees with the bands"))
        )
        problems.append(
            part.select(
                "unified_id", "fit_score", "engagement_score", "score", "temperature"
            ).with_columns(
                problem.alias("problem"), pl.lit(rules.region or "global").alias("rules")
            )
        )
    return pl.concat(problems).filter(pl.col("problem").is_not_null())


@dg.asset_check(asset=SCORES, blocking=True)
def scores_within_range(
    state_store: StateStoreResource, lead_definition: LeadDefinitionResource
) -> dg.AssetCheckResult:
    """Blocks write-back if a score lies outside what the definition allows or a temperature
    disagrees with its bands."""
    store = state_store.store()
    definition = lead_definition.definition()
    # Each lead's region (from its country) decides which bands and caps apply to it.
    scores = frames.read(
        store, "scores", ["unified_id", "fit_score", "engagement_score", "score", "temperature"]
    ).join(
        frames.read(store, "unified_leads", ["unified_id", "country"]),
        on="unified_id",
        how="left",
    )
    problems = _score_problems(scores, definition)
    counts = problems.group_by("problem").len().sort("problem")
    return dg.AssetCheckResult(
        passed=problems.is_empty(),
        metadata={
            "scored_leads": scores.height,
            "bounds": {k: list(v) for k, v in score_bounds(definition).items()},
            "problems": {r["problem"]: r["len"] for r in counts.to_dicts()},
            "examples": markdown_preview(problems.head(EXAMPLES)),
        },
    )


@dg.asset_check(asset=NURTURE, blocking=True)
def every_lead_has_content(state_store: StateStoreResource) -> dg.AssetCheckResult:
    """Blocks write-back unless every live lead has rendered content or an explicit status."""
    store = state_store.store()
    live = frames.read(store, "unified_leads", ["unified_id", "is_deleted"]).filter(
        ~pl.col("is_deleted").fill_null(False)
    )
    assignments = frames.read(
        store,
        "nurture_assignments",
        ["unified_id", "template_id", "next_subject", "render_error", "status", "reason"],
    )
    missing = live.select("unified_id").join(assignments, on="unified_id", how="anti")
    assigned = pl.col("status") == "assigned"
    broken = assignments.filter(
        (
            assigned
            & (
                pl.col("template_id").is_null()
                | pl.col("next_subject").is_null()
                | pl.col("render_error").is_not_null()
            )
        )
        | (~assigned & ~pl.col("status").is_in(["exhausted", "suppressed"]))
        | (~assigned & pl.col("reason").is_null())
        | pl.col("status").is_null()
    )
    statuses = assignments.group_by("status").len().sort("status")
    return dg.AssetCheckResult(
        passed=missing.is_empty() and broken.is_empty(),
        metadata={
            "live_leads": live.height,
            "without_assignment": missing.height,
            "broken_assignments": broken.height,
            "by_status": {str(r["status"]): r["len"] for r in statuses.to_dicts()},
            # Template and reason only: a rendered body or subject may carry a person's name.
            "examples": markdown_preview(
                broken.select("unified_id", "template_id", "status", "reason").head(EXAMPLES)
            ),
        },
    )


@dg.asset_check(asset=NURTURE, blocking=True)
def templates_lint_clean(lead_definition: LeadDefinitionResource) -> dg.AssetCheckResult:
    """Blocks write-back while `leadsync templates lint` finds an error in the templates."""
    definition = lead_definition.definition()
    # The stages `leadsync templates lint` requires content for: disqualified leads get none.
    stages = [s for s in ALL_STAGES if s != "Disqualified"]
    problems = lint_templates(
        Path(lead_definition.templates_dir), stages=stages, regions=sorted(definition.regions)
    )
    errors = [p for p in problems if p.severity == "error"]
    return dg.AssetCheckResult(
        passed=not errors,
        metadata={
            "templates_dir": dg.MetadataValue.path(lead_definition.templates_dir),
            "errors": len(errors),
            "warnings": len(problems) - len(errors),
            "problems": dg.MetadataValue.md("\n".join(f"- `{p}`" for p in problems[:50])),
        },
    )


def _rate(rejected: int, total: int) -> float:
    return rejected / total if total else 0.0


def _this_run_metadata(context: dg.AssetCheckExecutionContext, key: dg.AssetKey) -> dict[str, Any]:
    """The metadata `key` was materialized with in this run, as plain values ({} if it was not)."""
    event = context.instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None or event.run_id != context.run.run_id:
        return {}
    return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}


@dg.asset_check(asset=NORMALIZED, blocking=True)
def quarantine_rate_is_low(
    context: dg.AssetCheckExecutionContext,
    state_store: StateStoreResource,
    check_settings: CheckSettings,
) -> dg.AssetCheckResult:
    """Blocks write-back when more of the pulled records than the limit wait in quarantine."""
    # A jump in quarantined records means the input broke (a renamed CRM field, a mapping gone
    # wrong): leads staged from what is left would be written to both CRMs as if complete.
    quarantined = frames.read(state_store.store(), "quarantined")
    held = quarantined["record_id"].n_unique()
    kept = int(_this_run_metadata(context, NORMALIZED).get("records", 0))
    limit = check_settings.rejected_rate_limit
    rate = _rate(held, kept + held)
    # By field, not by reason: a reason quotes the offending value (an address, say).
    fields = quarantined.group_by("field").len().sort("len", descending=True)
    return dg.AssetCheckResult(
        passed=rate <= limit,
        metadata={
            "quarantined_records": held,
            "records": kept + held,
            "rate": round(rate, 4),
            "limit": limit,
            "by_field": {str(r["field"]): r["len"] for r in fields.to_dicts()},
        },
    )


def _writeback_rate_check(system: str) -> dg.AssetChecksDefinition:
    key = WRITEBACKS[system]

    @dg.asset_check(
        asset=key,
        name="rejected_rate_is_low",
        description=f"Warns when {system} refused more of this run's records than the limit.",
    )
    def check(
        context: dg.AssetCheckExecutionContext, check_settings: CheckSettings
    ) -> dg.AssetCheckResult:
        # The write already happened: this is the alarm for the refused ones, kept with the
        # CRM's reason in rejected_rows and retried by the next run.
        meta = _this_run_metadata(context, key)
        written = int(meta.get("records_written", 0))
        rejected = int(meta.get("rejected_records", 0))
        limit = check_settings.rejected_rate_limit
        rate = _rate(rejected, written + rejected)
        return dg.AssetCheckResult(
            passed=rate <= limit,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "records_attempted": written + rejected,
                "rejected_records": rejected,
                "rate": round(rate, 4),
                "limit": limit,
            },
        )

    return check


hubspot_rejected_rate = _writeback_rate_check("hubspot")
salesforce_rejected_rate = _writeback_rate_check("salesforce")

QUALITY_CHECKS = [
    unified_ids_are_unique,
    scores_within_range,
    every_lead_has_content,
    templates_lint_clean,
    quarantine_rate_is_low,
    hubspot_rejected_rate,
    salesforce_rejected_rate,
]
