"""Lead assets: normalise, resolve identity, build golden records and timelines, score, stage."""

import uuid
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl

from orchestration.defs import frames
from orchestration.defs.metadata import markdown_preview
from orchestration.defs.resources import LeadDefinitionResource, StateStoreResource
from orchestration.funnel import identity, normalize, quality, scoring, stages, unify
from orchestration.store import StateStore, tables

RAW_SOURCES = (
    ("hubspot", "contacts"),
    ("hubspot", "companies"),
    ("hubspot", "emails"),
    ("hubspot", "calls"),
    ("hubspot", "meetings"),
    ("hubspot", "notes"),
    ("hubspot", "web_events"),
    ("salesforce", "Lead"),
    ("salesforce", "Contact"),
    ("salesforce", "Account"),
    ("salesforce", "Task"),
    ("salesforce", "Event"),
    ("salesforce", "Campaign"),
    ("salesforce", "CampaignMember"),
    ("salesforce", "Opportunity"),
    ("salesforce", "OpportunityContactRole"),
)


def raw_frames(store: StateStore) -> dict[str, pl.DataFrame]:
    """Every stored CRM object as a frame of strings, keyed "<system>:<object>"."""
    return {f"{s}:{o}": store.source_frame(s, o) for s, o in RAW_SOURCES}


_LEADS = {"group_name": "leads", "kinds": {"polars", "sqlite"}}


@dg.asset(
    key=["leads", "normalized"],
    deps=[
        ["hubspot", "contacts"],
        ["hubspot", "companies"],
        ["hubspot", "engagements"],
        ["salesforce", "leads"],
        ["salesforce", "contacts"],
        ["salesforce", "tasks_events"],
        ["salesforce", "opportunities"],
    ],
    **_LEADS,
)
def leads_normalized(
    state_store: StateStoreResource, lead_definition: LeadDefinitionResource
) -> dg.MaterializeResult:
    """Every CRM person record mapped to the canonical lead model, normalised and checked."""
    store = state_store.store()
    raw = raw_frames(store)
    mapped = normalize.normalize_leads(raw, lead_definition.definition().field_mappings)
    # A record that cannot be trusted waits in quarantine with its reason; the run goes on.
    leads, quarantined = quality.quarantine(mapped)
    frames.write(store, "leads_normalized", leads)
    frames.write(store, "quarantined", quarantined)
    frames.write(store, "activities_normalized", normalize.normalize_activities(raw))
    frames.write(store, "outcomes", normalize.normalize_outcomes(raw))
    by_system = leads.group_by("source_system").len().sort("source_system")
    return dg.MaterializeResult(
        metadata={
            "records": len(leads),
            "records_by_system": {r["source_system"]: r["len"] for r in by_system.to_dicts()},
            "quarantined": len(quarantined),
            "quarantine_preview": markdown_preview(quarantined.head(10)),
            "preview": markdown_preview(
                leads.select("record_id", "company_key", "country", "locale").head(10)
            ),
        }
    )


@dg.asset(key=["leads", "identity"], deps=[["leads", "normalized"]], **_LEADS)
def leads_identity(state_store: StateStoreResource) -> dg.MaterializeResult:
    """Which records are one person: stable unified ids with the decision band of each link."""
    store = state_store.store()
    leads = frames.read(store, "leads_normalized")
    previous = frames.read(store, "identity")
    resolved = identity.resolve(leads, previous if len(previous) else None)
    frames.write(store, "identity", resolved)
    unified = resolved["unified_id"].n_unique()
    bands = resolved.group_by("band").len().sort("band")
    return dg.MaterializeResult(
        metadata={
            "records": len(resolved),
            "unified_leads": unified,
            "merged_records": len(resolved) - unified,
            "bands": {r["band"]: r["len"] for r in bands.to_dicts()},
        }
    )


@dg.asset(key=["leads", "unified"], deps=[["leads", "identity"]], **_LEADS)
def leads_unified(state_store: StateStoreResource) -> dg.MaterializeResult:
    """One golden record per unified lead, each field chosen by survivorship rules."""
    store = state_store.store()
    leads = frames.read(store, "leads_normalized")
    ident = frames.read(store, "identity")
    outcomes = frames.read(store, "outcomes")
    golden = unify.golden_records(leads, ident, outcomes)
    frames.write(store, "unified_leads", golden)
    frames.write(store, "writeback_targets", unify.targets(leads, ident))
    live = golden.filter(~pl.col("is_deleted"))
    return dg.MaterializeResult(
        metadata={
            "unified_leads": len(live),
            "multi_record_leads": live.filter(pl.col("record_count") > 1).height,
            "by_locale": {
                r["locale"]: r["len"]
                for r in live.group_by("locale").len().sort("locale").to_dicts()
            },
        }
    )


@dg.asset(
    key=["leads", "activities"], deps=[["leads", "normalized"], ["leads", "identity"]], **_LEADS
)
def leads_activities(state_store: StateStoreResource) -> dg.MaterializeResult:
    """One activity timeline per unified lead across both CRMs."""
    store = state_store.store()
    acts = frames.read(store, "activities_normalized")
    ident = frames.read(store, "identity")
    timeline = acts.join(ident.select("record_id", "unified_id"), on="record_id", how="inner")
    frames.write(store, "activities", timeline)
    by_type = timeline.group_by("activity_type").len().sort("len", descending=True)
    return dg.MaterializeResult(
        metadata={
            "activities": len(timeline),
            "unattached": len(acts) - len(timeline),
            "by_type": {r["activity_type"]: r["len"] for r in by_type.to_dicts()},
        }
    )


@dg.asset(key=["leads", "scores"], deps=[["leads", "unified"], ["leads", "activities"]], **_LEADS)
def leads_scores(
    state_store: StateStoreResource, lead_definition: LeadDefinitionResource
) -> dg.MaterializeResult:
    """Fit and engagement scores with decay, temperature and the reasons behind each score."""
    store = state_store.store()
    unified = frames.read(store, "unified_leads")
    acts = frames.read(store, "activities")
    # Scores are as of the start of the day: decay moves daily, so two runs on one day agree and a
    # re-run never rewrites a CRM field for a rounding flicker.
    as_of = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    scores = scoring.score(unified, acts, lead_definition.definition(), now=as_of)
    frames.write(store, "scores", scores)
    temps = scores.group_by("temperature").len().sort("temperature")
    return dg.MaterializeResult(
        metadata={
            "scored_leads": len(scores),
            "mean_score": float(scores["score"].mean() or 0.0),  # type: ignore[arg-type]
            "by_temperature": {r["temperature"]: r["len"] for r in temps.to_dicts()},
        }
    )


@dg.asset(key=["leads", "stages"], deps=[["leads", "scores"]], **_LEADS)
def leads_stages(
    context: dg.AssetExecutionContext,
    state_store: StateStoreResource,
    lead_definition: LeadDefinitionResource,
) -> dg.MaterializeResult:
    """Each unified lead's lifecycle stage; every transition appended to the stage ledger."""
    store = state_store.store()
    definition = lead_definition.definition()
    run_id = context.run_id if context.run else str(uuid.uuid4())
    # Every version of the definition is kept with the runs that staged leads by it.
    store.record_definition(
        definition.version, Path(lead_definition.definition_path).read_text("utf-8"), run_id
    )
    unified = frames.read(store, "unified_leads")
    scores = frames.read(store, "scores")
    previous = frames.read(store, "stages")
    current, ledger = stages.assign_stages(
        unified, scores, previous if len(previous) else None, definition, now=datetime.now(UTC)
    )
    frames.write(store, "stages", current)
    store.append(tables.stage_ledger, [{**row, "run_id": run_id} for row in ledger.to_dicts()])
    counts = current.group_by("stage").len()
    order = {s: i for i, s in enumerate(stages.STAGE_ORDER)}
    return dg.MaterializeResult(
        metadata={
            "leads_by_stage": {
                r["stage"]: r["len"]
                for r in sorted(counts.to_dicts(), key=lambda r: order.get(r["stage"], 99))
            },
            "transitions": len(ledger),
            "definition_version": definition.version,
        }
    )


LEAD_ASSETS = [
    leads_normalized,
    leads_identity,
    leads_unified,
    leads_activities,
    leads_scores,
    leads_stages,
]
