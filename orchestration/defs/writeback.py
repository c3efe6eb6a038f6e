"""Write-back assets: plan the per-field diff for each CRM, check it, then apply it in batches."""

import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import polars as pl

from connectors.cost import write_calls
from connectors.hubspot.constants import BATCH_SIZE as HUBSPOT_BATCH_SIZE
from connectors.outcome import WriteOutcome
from connectors.salesforce.constants import COLLECTION_SIZE as SALESFORCE_COLLECTION_SIZE
from orchestration.defs import frames
from orchestration.defs.crm_pull import PULL_ASSET_KEYS
from orchestration.defs.resources import (
    DEFINITION_CODE_VERSION,
    HubSpotResource,
    LeadDefinitionResource,
    SalesforceResource,
    StateStoreResource,
    SyncSettings,
)
from orchestration.funnel import writeback
from orchestration.store import StateStore, tables

Update = tuple[str, dict[str, str]]

WRITTEN_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.String(),
    "field": pl.String(),
    "value": pl.String(),
}


@dg.asset(
    key=["writeback", "plan"],
    deps=[["nurture", "assignments"]],
    group_name="writeback",
    kinds={"polars"},
    code_version=DEFINITION_CODE_VERSION,
)
def writeback_plan(
    context: dg.AssetExecutionContext,
    state_store: StateStoreResource,
    lead_definition: LeadDefinitionResource,
) -> dg.MaterializeResult:
    """The per-field diff between what each CRM holds and what the lead definition says."""
    store = state_store.store()
    definition = lead_definition.definition()
    # The rendered bodies are most of the assignments' bytes: read only when a field carries them.
    carries_body = any(r["column"] == "next_body" for r in definition.writeback_field_rows())
    desired = (
        frames.read(store, "unified_leads", ["unified_id"])
        .join(frames.read(store, "stages"), on="unified_id", how="left")
        # Only the columns write-back can carry: the scores' reasons and contributions are JSON
        # that would be decoded for every lead for nothing.
        .join(
            frames.read(
                store,
                "scores",
                ["unified_id", "fit_score", "engagement_score", "score", "temperature"],
            ),
            on="unified_id",
            how="left",
        )
        .join(
            frames.read(
                store,
                "nurture_assignments",
                [
                    "unified_id",
                    "template_id",
                    "next_subject",
                    "next_content_url",
                    *(["body"] if carries_body else []),
                ],
            ).rename({"template_id": "next_template_id", "body": "next_body"}, strict=False),
            on="unified_id",
            how="left",
        )
        .with_columns(writeback.lifecycle_columns(definition))
    )
    targets = frames.read(store, "writeback_targets")
    # Only the objects leadsync writes to: re-reading every pulled source (page views included)
    # here would repeat the normalize step's I/O for nothing.
    fields: dict[tuple[str, str], set[str]] = defaultdict(set)
    for row in definition.writeback_field_rows():
        fields[(row["system"], row["object"])].add(row["field"])
    # Only the ids and leadsync's own fields of each record (a contact has dozens more).
    targets_raw = {
        f"{s}:{o}": store.source_snapshot(s, o, ["id", "hs_object_id", "Id", *sorted(f)]).records
        for (s, o), f in fields.items()
    }
    current = writeback.current_values(targets_raw, definition)
    # Writes a CRM committed without the answer reaching us (a kill mid-batch, a 504 after the
    # commit with the retries spent) are in the previous plan and in the CRM, not in the ledger.
    previous = frames.read(store, "writeback_plan")
    landed = writeback.landed_unledgered(previous, current, lambda ids: _ledger_rows(store, ids))
    _ledger(store, landed, _run_id(context))
    # The ledger is as long as everything leadsync ever wrote; the plan reads the rows of just
    # the records whose CRM-owned fields hold a value other than the desired one.
    plan = writeback.plan_writeback(
        desired, targets, current, lambda ids: _ledger_rows(store, ids), definition
    )
    frames.write(store, "writeback_plan", plan)
    return dg.MaterializeResult(metadata={**_plan_metadata(plan), "ledgered_late": len(landed)})


def _ledger_rows(store: StateStore, record_ids: pl.Series) -> pl.DataFrame:
    """What leadsync last wrote to these records: (record_id, field, value)."""
    return store.read_table(
        tables.writeback_ledger,
        WRITTEN_SCHEMA,
        where=("record_id", record_ids.drop_nulls().to_list()),
    )


def _plan_metadata(plan: pl.DataFrame) -> dict[str, Any]:
    per_system: dict[str, dict[str, int]] = {}
    # "Object.field" -> values to write, per CRM, and the calls the plan costs at the least.
    by_field: dict[str, dict[str, int]] = {}
    calls: dict[str, int] = {}
    for system in ("hubspot", "salesforce"):
        rows = plan.filter(pl.col("system") == system)
        per_system[system] = {"fields": len(rows), "records": rows["record_id"].n_unique()}
        counts = rows.group_by("object", "field").len().sort("object", "field")
        by_field[system] = {f"{r['object']}.{r['field']}": r["len"] for r in counts.to_dicts()}
        calls[system] = write_calls(system, writeback.records_per_object(plan, system))
    return {
        "fields_planned": len(plan),
        "planned_by_system": per_system,
        "planned_by_field": by_field,
        "write_calls_estimate": calls,
        "fields_by_name": {
            r["field"]: r["len"] for r in plan.group_by("field").len().sort("field").to_dicts()
        },
    }


@dg.asset_check(asset=writeback_plan, blocking=True)
def writeback_plan_is_safe(
    state_store: StateStoreResource, lead_definition: LeadDefinitionResource
) -> dg.AssetCheckResult:
    """Blocks write-back if the plan would blank a field, touch a field leadsync does not own, or
    write one field twice."""
    plan = frames.read(state_store.store(), "writeback_plan")
    definition = lead_definition.definition()
    owned = {
        system: set(definition.writeback_fields(system)) for system in ("hubspot", "salesforce")
    }
    blanks = plan.filter(pl.col("new_value").is_null() | (pl.col("new_value") == "")).height
    foreign = sum(
        plan.filter((pl.col("system") == s) & ~pl.col("field").is_in(sorted(f))).height
        for s, f in owned.items()
    )
    duplicates = len(plan) - plan.unique(["system", "record_id", "field"]).height
    return dg.AssetCheckResult(
        passed=blanks == 0 and foreign == 0 and duplicates == 0,
        metadata={"blank_values": blanks, "foreign_fields": foreign, "duplicates": duplicates},
    )


def _updates(plan: pl.DataFrame, system: str) -> dict[str, list[Update]]:
    """Plan rows of one CRM grouped into per-record updates, keyed by object type."""
    grouped: dict[str, dict[str, dict[str, str]]] = defaultdict(dict)
    for row in plan.filter(pl.col("system") == system).iter_rows(named=True):
        grouped[row["object"]].setdefault(row["source_id"], {})[row["field"]] = row["new_value"]
    return {obj: list(records.items()) for obj, records in grouped.items()}


def _ledger(
    store: StateStore, written: pl.DataFrame, run_id: str, now: datetime | None = None
) -> None:
    """Record (system, record_id, field, value) rows as what leadsync last wrote."""
    at = now or datetime.now(UTC)
    store.upsert(
        tables.writeback_ledger,
        [{**r, "written_at": at, "run_id": run_id} for r in written.iter_rows(named=True)],
        ["system", "record_id", "field"],
    )


def _record_outcomes(
    store: StateStore,
    system: str,
    plan: pl.DataFrame,
    outcomes: Sequence[WriteOutcome],
    run_id: str,
) -> None:
    """Ledger every written field; keep every refused record with the CRM's reason."""
    now = datetime.now(UTC)
    rows = plan.filter(pl.col("system") == system)
    succeeded = [o.record_id for o in outcomes if o.ok]
    failed = {o.record_id: o.error or "" for o in outcomes if not o.ok}
    ok = rows.filter(pl.col("source_id").is_in(succeeded))
    _ledger(
        store,
        ok.select("system", "record_id", "field", pl.col("new_value").alias("value")),
        run_id,
        now,
    )
    rejected = rows.filter(pl.col("source_id").is_in(list(failed)))
    store.append(
        tables.rejected_rows,
        [
            {
                "stage": "writeback",
                "system": system,
                "record_id": r["record_id"],
                "field": r["field"],
                "reason": failed[r["source_id"]],
                "at": now,
                "run_id": run_id,
            }
            for r in rejected.iter_rows(named=True)
        ],
    )


REJECTIONS_SHOWN = 20


def _rejections(outcomes: Sequence[WriteOutcome]) -> dict[str, str]:
    """Record id -> the CRM's reason, for the first refused records (all are in rejected_rows)."""
    refused = [(o.record_id, o.error or "") for o in outcomes if not o.ok]
    return dict(refused[:REJECTIONS_SHOWN])


def _outcome_counts(
    system: str, plan: pl.DataFrame, outcomes: Sequence[WriteOutcome]
) -> dict[str, int]:
    """A planned record without an outcome was not attempted (the budget ran low): it stays
    planned."""
    rows = plan.filter(pl.col("system") == system)
    succeeded = {o.record_id for o in outcomes if o.ok}
    failed = {o.record_id for o in outcomes if not o.ok}
    return {
        "fields_written": rows.filter(pl.col("source_id").is_in(list(succeeded))).height,
        "records_written": len(succeeded),
        "rejected_records": len(failed),
        "not_attempted_records": rows["source_id"].n_unique() - len(succeeded) - len(failed),
    }


def _write_batches(
    store: StateStore,
    system: str,
    plan: pl.DataFrame,
    run_id: str,
    updates: dict[str, list[Update]],
    batch_size: Callable[[int], int],
    write: Callable[[str, list[Update]], list[WriteOutcome]],
    prepare: Callable[[str], object] = lambda _obj: None,
) -> list[WriteOutcome]:
    """Send the updates one CRM batch per call (`batch_size(records of the object)`) and ledger
    each batch as soon as the CRM answers: a crash, a kill or a failing later batch must not lose
    the record of what already landed (the next plan would find those fields current and never
    ledger them)."""
    outcomes: list[WriteOutcome] = []
    for obj, records in updates.items():
        prepare(obj)
        size = max(1, batch_size(len(records)))
        for start in range(0, len(records), size):
            chunk = records[start : start + size]
            done = write(obj, chunk)
            _record_outcomes(store, system, plan, done, run_id)
            outcomes += done
            if len(done) < len(chunk):
                return outcomes  # the budget ran low: the rest stays planned for the next run
    return outcomes


def _run_id(context: dg.AssetExecutionContext) -> str:
    return context.run_id if context.run else str(uuid.uuid4())


@dg.asset(
    key=["hubspot", "writeback"],
    deps=[["writeback", "plan"]],
    group_name="writeback",
    kinds={"hubspot"},
    pool="hubspot_api",
)
def hubspot_writeback(
    context: dg.AssetExecutionContext,
    hubspot: HubSpotResource,
    state_store: StateStoreResource,
    lead_definition: LeadDefinitionResource,
    settings: SyncSettings,
) -> dg.MaterializeResult:
    """The plan's HubSpot fields written in batches of 100; refused records kept with the reason."""
    store = state_store.store()
    plan = frames.read(store, "writeback_plan")
    updates = _updates(plan, "hubspot")
    if settings.dry_run:
        return _dry_run_result(updates)
    if stopped := _pulls_stopped_for_budget(context):
        return _held_back_result(updates, stopped)
    connector = hubspot.connector()
    created: list[str] = []

    def prepare(object_type: str) -> None:
        created.extend(
            connector.ensure_properties(
                object_type, lead_definition.definition().hubspot_property_definitions()
            )
        )

    outcomes = _write_batches(
        store,
        "hubspot",
        plan,
        _run_id(context),
        updates,
        lambda _records: HUBSPOT_BATCH_SIZE,
        connector.batch_update,
        prepare,
    )
    return dg.MaterializeResult(
        metadata={
            **_outcome_counts("hubspot", plan, outcomes),
            "rejections": _rejections(outcomes),
            "properties_created": created,
            "api_calls": hubspot.calls_since_last_report(),
        }
    )


@dg.asset(
    key=["salesforce", "writeback"],
    deps=[["writeback", "plan"]],
    group_name="writeback",
    kinds={"salesforce"},
    pool="salesforce_api",
)
def salesforce_writeback(
    context: dg.AssetExecutionContext,
    salesforce: SalesforceResource,
    state_store: StateStoreResource,
    settings: SyncSettings,
) -> dg.MaterializeResult:
    """The plan's Salesforce fields written through sObject Collections, 200 records per call."""
    store = state_store.store()
    plan = frames.read(store, "writeback_plan")
    updates = _updates(plan, "salesforce")
    if settings.dry_run:
        return _dry_run_result(updates)
    if stopped := _pulls_stopped_for_budget(context):
        return _held_back_result(updates, stopped)
    connector = salesforce.connector()
    outcomes = _write_batches(
        store,
        "salesforce",
        plan,
        _run_id(context),
        updates,
        # From the Bulk threshold on, the connector sends one Bulk API 2.0 job for them all.
        lambda records: (
            records if records >= connector.bulk_ingest_threshold else SALESFORCE_COLLECTION_SIZE
        ),
        connector.update,
    )
    return dg.MaterializeResult(
        metadata={
            **_outcome_counts("salesforce", plan, outcomes),
            "rejections": _rejections(outcomes),
            "api_calls": salesforce.calls_since_last_report(),
        }
    )


def _pulls_stopped_for_budget(context: dg.AssetExecutionContext) -> list[str]:
    """Pull assets whose latest materialization stopped at a daily budget's reserve: until they
    finish, the store holds a partial view of that CRM."""
    stopped = []
    for key in PULL_ASSET_KEYS:
        event = context.instance.get_latest_materialization_event(key)
        materialization = event.asset_materialization if event else None
        flag = materialization.metadata.get("stopped_for_budget") if materialization else None
        if isinstance(flag, dg.BoolMetadataValue) and flag.value:
            stopped.append(key.to_user_string())
    return stopped


def _held_back_result(updates: dict[str, list[Update]], stopped: list[str]) -> dg.MaterializeResult:
    # Stages and scores computed from half a CRM would write wrong values to both; the plan stays
    # and the next run, with the pulls complete, writes it.
    records = [u for batch in updates.values() for u in batch]
    return dg.MaterializeResult(
        metadata={
            "held_back_because": f"pull stopped for the daily budget: {', '.join(stopped)}",
            "fields_written": 0,
            "fields_planned": sum(len(fields) for _, fields in records),
            "records_planned": len(records),
            "api_calls": 0,
        }
    )


def _dry_run_result(updates: dict[str, list[Update]]) -> dg.MaterializeResult:
    records: Sequence[tuple[str, dict[str, str]]] = [u for b in updates.values() for u in b]
    return dg.MaterializeResult(
        metadata={
            "dry_run": True,
            "fields_written": 0,
            "fields_planned": sum(len(fields) for _, fields in records),
            "records_planned": len(records),
            "api_calls": 0,
        }
    )


WRITEBACK_ASSETS = [writeback_plan, hubspot_writeback, salesforce_writeback]
WRITEBACK_CHECKS = [writeback_plan_is_safe]
