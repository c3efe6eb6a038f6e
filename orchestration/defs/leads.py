"""Lead assets: normalise, resolve identity, build golden records and timelines, score, stage."""

import hashlib
import json
import uuid
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from types import ModuleType

import dagster as dg
import polars as pl

from orchestration.defs import frames
from orchestration.defs.metadata import markdown_preview
from orchestration.defs.resources import (
    DEFINITION_CODE_VERSION,
    LeadDefinitionResource,
    StateStoreResource,
)
from orchestration.funnel import definition as definition_code
from orchestration.funnel import identity, model, normalize, quality, scoring, stages, unify
from orchestration.funnel.definition import LeadDefinition
from orchestration.store import SOURCE_ID, SourceSnapshot, StateStore, tables

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


# Quarantined records named one by one in the run log; the rest are counted (all are stored).
_QUARANTINE_LOGGED = 20


def source_snapshot(store: StateStore, key: str) -> SourceSnapshot:
    """One stored CRM object ("<system>:<object>"), with what was pulled since the last
    normalisation."""
    system, obj = key.split(":", 1)
    return store.source_snapshot(system, obj)


def code_basis(*modules: ModuleType, extra: object = None) -> str:
    """A digest of the modules' source (and `extra`, as JSON): what a step's stored results were
    computed by besides its inputs. A step redoes everything when its basis changed."""
    digest = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode())
    for module in modules:
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()[:16]


def normalize_basis(definition: LeadDefinition) -> str:
    """What normalised records depend on besides the records: the field mappings, the
    normalising code and the libraries whose data decide phones and romaji. When it changes,
    every record is normalised again."""
    libraries = {name: version(name) for name in ("phonenumbers", "pykakasi")}
    return code_basis(normalize, model, quality, extra=[definition.field_mappings, libraries])


def _same_basis(store: StateStore, name: str, basis: str) -> bool:
    """Whether a step's stored results were made on `basis` (see `_save_basis`)."""
    return store.read_frame(name).to_dicts() == [{"basis": basis}]


def _save_basis(store: StateStore, name: str, basis: str) -> None:
    """Record the basis a step's results were just stored on (after the results themselves)."""
    store.replace_frame(name, pl.DataFrame([{"basis": basis}]))


def _people_to_normalize(
    snaps: dict[str, SourceSnapshot], raw: dict[str, pl.DataFrame]
) -> dict[str, pl.DataFrame]:
    """The raw frames with the person objects cut down to the records whose normalised form may
    have changed: the ones edited since (not echoes of leadsync's write-back, which touch only
    fields normalisation does not read), and the Contacts of an Account edited since (a Contact
    takes its company from its Account)."""
    raw = dict(raw)
    for key in normalize.LEAD_SOURCES:
        snap = snaps.get(key)
        if snap is None or snap.keyed.is_empty():
            continue
        touched = pl.col(SOURCE_ID).is_in(snap.edited.implode())
        accounts = snaps.get("salesforce:Account")
        if key == "salesforce:Contact" and accounts is not None and "AccountId" in snap.keyed:
            touched = touched | pl.col("AccountId").is_in(accounts.edited.implode())
        raw[key] = snap.keyed.filter(touched).drop(SOURCE_ID)
    return raw


# Objects whose records become activity rows (besides HubSpot contacts' conversion and page-view
# properties). An edited Campaign makes its members' rows again: its name and type are in them.
_ACTIVITY_OBJECTS = (
    "hubspot:emails",
    "hubspot:calls",
    "hubspot:meetings",
    "hubspot:web_events",
    "salesforce:Task",
    "salesforce:Event",
    "salesforce:CampaignMember",
)


# Objects read, used and let go of one at a time, activities being most of the stored records:
# at a million people, holding every object's snapshot at once took several GiB. Notes are
# read only to keep their snapshot current (a rep's note is no evidence of engagement).
_STREAMED = (*_ACTIVITY_OBJECTS, "hubspot:notes")
_KEPT = tuple(f"{s}:{o}" for s, o in RAW_SOURCES if f"{s}:{o}" not in _STREAMED)


def _stage(store: StateStore, snap: SourceSnapshot, marks: dict[str, datetime | None]) -> None:
    """Store a snapshot's records now and remember its mark, moved once the results are stored."""
    store.stage_source_snapshot(snap)
    marks[snap.name] = snap.pulled_through


def _all_activities(
    store: StateStore, people: dict[str, SourceSnapshot], marks: dict[str, datetime | None]
) -> pl.DataFrame:
    """Every activity row, made object by object (each snapshot staged and let go of before the
    next is read), then the rows HubSpot contacts carry as properties."""
    parts: list[pl.DataFrame] = []
    with_events = pl.Series("objectId", [], pl.String())
    for key in _STREAMED:
        snap = source_snapshot(store, key)
        raw = {key: snap.records}
        if key == "salesforce:CampaignMember":
            raw["salesforce:Campaign"] = people["salesforce:Campaign"].records
        if key == "hubspot:web_events" and "objectId" in snap.keyed:
            with_events = snap.keyed["objectId"].unique()
        parts.append(normalize.normalize_activities(raw))
        _stage(store, snap, marks)
        del snap, raw
    contacts = {"hubspot:contacts": people["hubspot:contacts"].records}
    parts.append(normalize.normalize_activities(contacts, event_contacts=with_events))
    return normalize.combine_activities(parts)


def _activities_to_normalize(
    store: StateStore, people: dict[str, SourceSnapshot], marks: dict[str, datetime | None]
) -> tuple[dict[str, pl.DataFrame], pl.Series, pl.Series]:
    """The records whose activity rows may have changed (edited ones; the members of an edited
    Campaign; a contact whose page views are edited, since its page-view count row depends on
    whether it has events), the "system:object:id" of each, and every contact with page-view
    events. Each activity object's snapshot is staged and let go of before the next is read."""
    # Members' rows carry their Campaign's name and type: every Campaign is read with them.
    raw: dict[str, pl.DataFrame] = {"salesforce:Campaign": people["salesforce:Campaign"].records}
    origins: list[pl.Series] = []

    def pick(key: str, chosen: pl.DataFrame) -> None:
        raw[key] = chosen.drop(SOURCE_ID)
        origins.append((f"{key}:" + chosen[SOURCE_ID]).alias("origin"))

    with_events = pl.Series("objectId", [], pl.String())
    new_views = pl.Series("objectId", [], pl.String())
    for key in _STREAMED:
        snap = source_snapshot(store, key)
        if key in _ACTIVITY_OBJECTS and not snap.keyed.is_empty():
            picked = pl.col(SOURCE_ID).is_in(snap.edited.implode())
            if key == "hubspot:web_events" and "objectId" in snap.keyed:
                with_events = snap.keyed["objectId"].unique()
                new_views = snap.keyed.filter(picked)["objectId"]
            if key == "salesforce:CampaignMember" and "CampaignId" in snap.keyed:
                edited_campaigns = people["salesforce:Campaign"].edited
                picked = picked | pl.col("CampaignId").is_in(edited_campaigns.implode())
            pick(key, snap.keyed.filter(picked))
        _stage(store, snap, marks)
        del snap
    contacts = people["hubspot:contacts"]
    if not contacts.keyed.is_empty():
        picked = pl.col(SOURCE_ID).is_in(contacts.edited.implode()) | pl.col(SOURCE_ID).is_in(
            new_views.implode()
        )
        pick("hubspot:contacts", contacts.keyed.filter(picked))
    origin = pl.concat(origins) if origins else pl.Series("origin", [], pl.String())
    return raw, origin, with_events


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
    context: dg.AssetExecutionContext,
    state_store: StateStoreResource,
    lead_definition: LeadDefinitionResource,
) -> dg.MaterializeResult:
    """Every CRM person record mapped to the canonical lead model, normalised and checked."""
    store = state_store.store()
    definition = lead_definition.definition()
    basis = normalize_basis(definition)
    previous = frames.read(store, "leads_normalized")
    # Person records are normalised again only when they (or their Account) were edited since:
    # phones, romaji and company keys cost per record. Anything that changes the result for
    # every record (mappings, the normaliser's code, an object never read before) normalises
    # them all again.
    incremental = (
        previous.height > 0
        and _same_basis(store, "normalize_basis", basis)
        and not store.unread_sources(RAW_SOURCES)
    )
    # The person-side objects stay read through the step; activity objects are streamed.
    snaps = {key: source_snapshot(store, key) for key in _KEPT}
    raw = {key: snap.records for key, snap in snaps.items()}
    marks: dict[str, datetime | None] = {}
    # Name part -> romaji from earlier runs: pykakasi's dictionaries load only for a new part.
    romaji = dict(frames.read(store, "romaji_parts").iter_rows()) if incremental else {}
    mapped = normalize.normalize_leads(
        _people_to_normalize(snaps, raw) if incremental else raw,
        definition.field_mappings,
        romaji=romaji,
    )
    # A record that cannot be trusted waits in quarantine with its reason; the run goes on.
    fresh, rejected = quality.quarantine(mapped)
    if incremental:
        redone = mapped.select("record_id")
        fresh = pl.concat([previous.join(redone, on="record_id", how="anti"), fresh])
        rejected = pl.concat(
            [frames.read(store, "quarantined").join(redone, on="record_id", how="anti"), rejected]
        )
    leads = normalize.merged_away_are_deleted(fresh).sort("record_id")
    quarantined = rejected.sort("record_id")
    # Named in the run log for whoever fixes the CRM (the log redacts the addresses themselves).
    for row in quarantined.head(_QUARANTINE_LOGGED).iter_rows(named=True):
        context.log.warning(f"quarantined {row['record_id']}: {row['field']}: {row['reason']}")
    if len(quarantined) > _QUARANTINE_LOGGED:
        context.log.warning(f"... and {len(quarantined) - _QUARANTINE_LOGGED} more in quarantine")
    frames.write(store, "leads_normalized", leads)
    frames.write(store, "quarantined", quarantined)
    frames.write(
        store,
        "romaji_parts",
        pl.DataFrame(
            {"part": list(romaji), "romaji": list(romaji.values())},
            schema=frames.FRAME_SCHEMAS["romaji_parts"],
        ),
    )
    frames.write(store, "outcomes", normalize.normalize_outcomes(raw))
    if incremental:
        changed_raw, origins, with_events = _activities_to_normalize(store, snaps, marks)
        activities = normalize.update_activities(
            frames.read(store, "activities_normalized"), changed_raw, origins, with_events
        )
    else:
        activities = _all_activities(store, snaps, marks)
    frames.write(store, "activities_normalized", activities)
    for snap in snaps.values():
        _stage(store, snap, marks)
    _save_basis(store, "normalize_basis", basis)
    # Only now that the results are stored: a failed run leaves the change for the next one
    # (the staged snapshots are read again from their old marks, to the same records).
    store.advance_source_snapshots(marks)
    by_system = leads.group_by("source_system").len().sort("source_system")
    return dg.MaterializeResult(
        metadata={
            "mode": "incremental" if incremental else "full",
            "records_normalized": mapped.height,
            "records": len(leads),
            "records_by_system": {r["source_system"]: r["len"] for r in by_system.to_dicts()},
            "quarantined": len(quarantined),
            "quarantine_preview": markdown_preview(quarantined.head(10)),
            "preview": markdown_preview(
                leads.select("record_id", "company_key", "country", "locale").head(10)
            ),
        }
    )


def identity_settings(definition: LeadDefinition) -> identity.IdentitySettings:
    """The lead definition's identity rules for the resolver."""
    rules = definition.identity
    return identity.IdentitySettings(
        auto_merge_weight=rules.auto_merge_weight,
        review_weight=rules.review_weight,
        max_merge_share=rules.max_merge_share,
        max_block_size=rules.max_block_size,
        title_merge_weight=rules.title_merge_weight,
    )


def identity_decisions(store: StateStore) -> pl.DataFrame:
    """Every decision people took on pairs (`leadsync review`, `leadsync unmerge`), oldest first."""
    return store.read_table(tables.identity_decisions, identity.DECISION_SCHEMA).sort("decided_at")


def _stored_graph(
    store: StateStore, settings: identity.IdentitySettings
) -> identity.IdentityGraph | None:
    records = frames.read(store, "identity_records")
    params = frames.read(store, "identity_params")
    if records.height == 0 or params.height == 0:
        return None
    return identity.restore_graph(
        frames.read(store, "identity"),
        frames.read(store, "identity_pairs"),
        records,
        params,
        settings,
    )


@dg.asset(key=["leads", "identity"], deps=[["leads", "normalized"]], **_LEADS)
def leads_identity(
    context: dg.AssetExecutionContext,
    state_store: StateStoreResource,
    lead_definition: LeadDefinitionResource,
) -> dg.MaterializeResult:
    """Which records are one person: stable unified ids, the decision band and the merge log."""
    store = state_store.store()
    settings = identity_settings(lead_definition.definition())
    leads = frames.read(store, "leads_normalized")
    decisions = identity_decisions(store)
    graph = _stored_graph(store, settings)
    # Incremental when nothing but records changed since the stored graph: the same settings and
    # decisions, no record gone. Anything else re-resolves everything (ids stay stable).
    same_rules = store.read_frame("identity_settings").to_dicts() == [
        {**settings.__dict__, "decisions": decisions.height}
    ]
    try:
        if (
            graph is not None
            and same_rules
            and graph.records.join(leads, on="record_id", how="anti").height == 0
        ):
            changed = identity.changed_records(graph, leads)
            result = identity.update(graph, changed, settings=settings, decisions=decisions)
            mode, touched = "incremental", changed.height
        else:
            previous = frames.read(store, "identity")
            result = identity.build(
                leads,
                settings=settings,
                decisions=decisions,
                previous=previous if previous.height else None,
            )
            mode, touched = "full", leads.height
    except identity.MergeGuardError as exc:
        raise dg.Failure(
            description=str(exc),
            metadata={"share": exc.share, "limit": exc.limit, "newly_merged": exc.merged},
        ) from exc
    frames.write(store, "identity", result.assignments)
    frames.write(store, "identity_pairs", result.pairs)
    frames.write(store, "identity_records", result.records)
    frames.write(store, "identity_params", result.params.to_rows())
    store.replace_frame(
        "identity_settings",
        pl.DataFrame([{**settings.__dict__, "decisions": decisions.height}]),
    )
    resolved = result.assignments
    unified = resolved["unified_id"].n_unique()
    bands = resolved.group_by("band").len().sort("band")
    rules = resolved.group_by("rule").len().drop_nulls().sort("rule")
    pairs = result.pairs
    review = pairs.filter(pl.col("band") == identity.BAND_REVIEW)
    vetoes = pairs.group_by("veto").len().drop_nulls().sort("veto")
    context.log.info(
        "identity: %s run over %d record(s), %d newly merged, %d pair(s) wait for review",
        mode,
        touched,
        result.newly_merged,
        review.height,
    )
    return dg.MaterializeResult(
        metadata={
            "mode": mode,
            "records_matched": touched,
            "records": len(resolved),
            "unified_leads": unified,
            "merged_records": len(resolved) - unified,
            "newly_merged": result.newly_merged,
            "bands": {r["band"]: r["len"] for r in bands.to_dicts()},
            "rules": {r["rule"]: r["len"] for r in rules.to_dicts()},
            "vetoes": {r["veto"]: r["len"] for r in vetoes.to_dicts()},
            "review_pairs": review.height,
            "decisions": decisions.height,
            "review_preview": markdown_preview(
                review.sort("match_weight", descending=True)
                .select("record_a", "record_b", "match_weight", "name_level", "company_level")
                .head(10)
            ),
        }
    )


@dg.asset(key=["leads", "unified"], deps=[["leads", "identity"]], **_LEADS)
def leads_unified(state_store: StateStoreResource) -> dg.MaterializeResult:
    """One golden record per unified lead, each field chosen by survivorship rules."""
    store = state_store.store()
    leads = frames.read(store, "leads_normalized")
    ident = frames.read(store, "identity")
    outcomes = frames.read(store, "outcomes")
    prints = unify.member_fingerprints(leads, ident, outcomes)
    previous = frames.read(store, "unified_leads")
    basis = code_basis(unify, model)
    # Survivorship runs again only for the unified leads whose members changed.
    if previous.height and _same_basis(store, "unified_basis", basis):
        golden, remade = unify.update_golden_records(
            previous, frames.read(store, "unified_members"), prints, leads, ident, outcomes
        )
    else:
        golden = unify.golden_records(leads, ident, outcomes)
        remade = golden.height
    frames.write(store, "unified_leads", golden)
    frames.write(store, "unified_members", prints)
    _save_basis(store, "unified_basis", basis)
    frames.write(store, "writeback_targets", unify.targets(leads, ident))
    live = golden.filter(~pl.col("is_deleted"))
    return dg.MaterializeResult(
        metadata={
            "unified_leads_remade": remade,
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


@dg.asset(
    key=["leads", "scores"],
    deps=[["leads", "unified"], ["leads", "activities"]],
    code_version=DEFINITION_CODE_VERSION,
    **_LEADS,
)
def leads_scores(
    state_store: StateStoreResource, lead_definition: LeadDefinitionResource
) -> dg.MaterializeResult:
    """Fit and engagement scores with decay, temperature and the reasons behind each score."""
    store = state_store.store()
    definition = lead_definition.definition()
    unified = frames.read(store, "unified_leads", list(scoring.LEAD_INPUT_SCHEMA))
    acts = frames.read(store, "activities", ["unified_id", "activity_type", "occurred_at"])
    now = datetime.now(UTC)
    # Decay is measured from the start of the day: scores move once a day, two runs on one day
    # agree and a re-run never rewrites a CRM field for a rounding flicker. An activity since
    # then counts at once, at full weight.
    decay_from = now.replace(hour=0, minute=0, second=0, microsecond=0)
    prints = scoring.input_fingerprints(unified, acts, now)
    # Within one day and one definition a lead's score changes only with its own fields or
    # activities: only those leads are scored again.
    basis = code_basis(scoring, definition_code, extra=[definition.version, decay_from.isoformat()])
    previous = frames.read(store, "scores")
    if previous.height and _same_basis(store, "scores_basis", basis):
        scores, rescored = scoring.update_scores(
            previous,
            frames.read(store, "score_inputs"),
            prints,
            unified,
            acts,
            definition,
            now=now,
            decay_from=decay_from,
        )
    else:
        scores = scoring.score(unified, acts, definition, now=now, decay_from=decay_from)
        rescored = scores.height
    frames.write(store, "scores", scores)
    frames.write(store, "score_inputs", prints)
    _save_basis(store, "scores_basis", basis)
    temps = scores.group_by("temperature").len().sort("temperature")
    return dg.MaterializeResult(
        metadata={
            "scored_leads": len(scores),
            "scored_this_run": rescored,
            "mean_score": float(scores["score"].mean() or 0.0),  # type: ignore[arg-type]
            "by_temperature": {r["temperature"]: r["len"] for r in temps.to_dicts()},
        }
    )


@dg.asset(
    key=["leads", "stages"],
    deps=[["leads", "scores"]],
    code_version=DEFINITION_CODE_VERSION,
    **_LEADS,
)
def leads_stages(
    context: dg.AssetExecutionContext,
    state_store: StateStoreResource,
    lead_definition: LeadDefinitionResource,
) -> dg.MaterializeResult:
    """Each unified lead's lifecycle stage; every transition appended to the stage ledger."""
    store = state_store.store()
    definition = lead_definition.definition()
    run_id = context.run_id if context.run else str(uuid.uuid4())
    # Every version of the definition (the global file and its regional overlays, as loaded) is
    # kept with the runs that staged leads by it.
    store.record_definition(definition.version, definition.recorded_content(), run_id)
    unified = frames.read(store, "unified_leads", stages.LEAD_COLUMNS)
    scores = frames.read(store, "scores", list(stages.SCORE_INPUT))
    previous = stages.previous_with_history(
        frames.read(store, "stages"), store.read_appended(tables.stage_ledger, stages.LEDGER_SCHEMA)
    )
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


@dg.asset_check(asset=dg.AssetKey(["leads", "stages"]), blocking=True)
def stage_ledger_is_lawful(
    state_store: StateStoreResource, lead_definition: LeadDefinitionResource
) -> dg.AssetCheckResult:
    """Blocks write-back if the stage ledger holds a move the lifecycle does not allow."""
    ledger = state_store.store().read_appended(
        tables.stage_ledger, {"id": pl.Int64(), **stages.LEDGER_SCHEMA}
    )
    problems = stages.ledger_problems(ledger, lead_definition.definition())
    counts = problems.group_by("problem").len().sort("problem")
    return dg.AssetCheckResult(
        passed=problems.height == 0,
        metadata={
            "ledger_rows": ledger.height,
            "problems": {r["problem"]: r["len"] for r in counts.to_dicts()},
            "examples": markdown_preview(
                problems.select("unified_id", "from_stage", "to_stage", "rule", "problem").head(10)
            ),
        },
    )


LEAD_ASSETS = [
    leads_normalized,
    leads_identity,
    leads_unified,
    leads_activities,
    leads_scores,
    leads_stages,
]

LEAD_CHECKS = [stage_ledger_is_lawful]
