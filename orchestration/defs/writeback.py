"""Write-back assets: plan the per-field diff for each CRM, check it, then apply it in batches."""

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import polars as pl

from connectors.outcome import WriteOutcome
from orchestration.defs import frames
from orchestration.defs.resources import (
    HubSpotResource,
    LeadDefinitionResource,
    SalesforceResource,
    StateStoreResource,
    SyncSettings,
)
from orchestration.funnel import writeback
from orchestration.store import StateStore, tables

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
)
def writeback_plan(
    state_store: StateStoreResource, lead_definition: LeadDefinitionResource
) -> dg.MaterializeResult:
    """The per-field diff between what each CRM holds and what the lead definition says."""
    store = state_store.store()
    definition = lead_definition.definition()
    desired = (
        frames.read(store, "unified_leads")
        .select("unified_id")
        .join(frames.read(store, "stages"), on="unified_id", how="left")
        .join(frames.read(store, "scores"), on="unified_id", how="left")
        .join(
            frames.read(store, "nurture_assignments").select(
                "unified_id",
                pl.col("template_id").alias("next_template_id"),
                "next_subject",
            ),
            on="unified_id",
            how="left",
        )
    )
    targets = frames.read(store, "writeback_targets")
    # Only the objects leadsync writes to: re-reading every pulled source (page views included)
    # here would repeat the normalize step's I/O for nothing.
    objects = {(row["system"], row["object"]) for row in definition.writeback_field_rows()}
    targets_raw = {f"{s}:{o}": store.source_frame(s, o) for s, o in objects}
    current = writeback.current_values(targets_raw, definition)
    last_written = store.read_table(tables.writeback_ledger, WRITTEN_SCHEMA)
    plan = writeback.plan_writeback(desired, targets, current, last_written, definition)
    frames.write(store, "writeback_plan", plan)
    return dg.MaterializeResult(metadata=_plan_metadata(plan))


def _plan_metadata(plan: pl.DataFrame) -> dict[str, Any]:
    per_system: dict[str, dict[str, int]] = {}
    for system in ("hubspot", "salesforce"):
        rows = plan.filter(pl.col("system") == system)
        per_system[system] = {"fields": len(rows), "records": rows["record_id"].n_unique()}
    return {
        "fields_planned": len(plan),
        "planned_by_system": per_system,
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


def _updates(plan: pl.DataFrame, system: str) -> dict[str, list[tuple[str, dict[str, str]]]]:
    """Plan rows of one CRM grouped into per-record updates, keyed by object type."""
    grouped: dict[str, dict[str, dict[str, str]]] = defaultdict(dict)
    for row in plan.filter(pl.col("system") == system).iter_rows(named=True):
        grouped[row["object"]].setdefault(row["source_id"], {})[row["field"]] = row["new_value"]
    return {obj: list(records.items()) for obj, records in grouped.items()}


def _record_outcomes(
    store: StateStore,
    system: str,
    plan: pl.DataFrame,
    outcomes: Sequence[WriteOutcome],
    run_id: str,
) -> dict[str, int]:
    """Ledger every written field; keep every refused record with the CRM's reason. A planned
    record without an outcome was not attempted (the budget ran low): it stays planned."""
    now = datetime.now(UTC)
    rows = plan.filter(pl.col("system") == system)
    succeeded = [o.record_id for o in outcomes if o.ok]
    failed = {o.record_id: o.error or "" for o in outcomes if not o.ok}
    ok = rows.filter(pl.col("source_id").is_in(succeeded))
    store.upsert(
        tables.writeback_ledger,
        [
            {
                "system": system,
                "record_id": r["record_id"],
                "field": r["field"],
                "value": r["new_value"],
                "written_at": now,
                "run_id": run_id,
            }
            for r in ok.iter_rows(named=True)
        ],
        ["system", "record_id", "field"],
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
    planned_records = rows["source_id"].n_unique()
    return {
        "fields_written": len(ok),
        "records_written": len(set(succeeded)),
        "rejected_records": len(failed),
        "not_attempted_records": planned_records - len(set(succeeded)) - len(failed),
    }


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
    connector = hubspot.connector()
    created: list[str] = []
    outcomes: list[WriteOutcome] = []
    for object_type, batch in updates.items():
        created += connector.ensure_properties(
            object_type, lead_definition.definition().hubspot_property_definitions()
        )
        outcomes += connector.batch_update(object_type, batch)
    counts = _record_outcomes(store, "hubspot", plan, outcomes, _run_id(context))
    return dg.MaterializeResult(
        metadata={
            **counts,
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
    connector = salesforce.connector()
    outcomes: list[WriteOutcome] = []
    for sobject, batch in updates.items():
        outcomes += connector.update(sobject, batch)
    counts = _record_outcomes(store, "salesforce", plan, outcomes, _run_id(context))
    return dg.MaterializeResult(
        metadata={
            **counts,
            "api_calls": salesforce.calls_since_last_report(),
        }
    )


def _dry_run_result(updates: dict[str, list[tuple[str, dict[str, str]]]]) -> dg.MaterializeResult:
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
