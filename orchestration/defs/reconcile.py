"""Reconciliation: one asset check per pull asset compares ids and stamps with the CRM, re-fetches
what the store missed and fails loudly when it found a gap. Run nightly by `reconcile_job`."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import polars as pl

from orchestration.defs.crm_pull import (
    DELETED_FLAG,
    STAMP_FIELDS,
    hubspot_properties,
    salesforce_fields,
)
from orchestration.defs.resources import (
    HubSpotResource,
    LeadDefinitionResource,
    SalesforceResource,
    StateStoreResource,
)
from orchestration.funnel.definition import LeadDefinition
from orchestration.funnel.reconcile import Reconciliation, compare_inventories
from orchestration.store import StateStore


@dataclass(frozen=True)
class ReconciledObject:
    system: str
    name: str
    # Whether the incremental pull itself sees this object's deletes (HubSpot's archived listing
    # for contacts; Salesforce's queryAll and getDeleted). Where it cannot (HubSpot companies and
    # engagements: search never returns archived records), a record the nightly reconcile finds
    # gone is the expected way its delete arrives, healed but not a gap.
    pull_sees_deletes: bool


# Page views come from HubSpot's Events API: immutable, ordered by occurrence and never deleted,
# with no listing of ids to compare against; they are not reconciled.
RECONCILED: dict[dg.AssetKey, tuple[ReconciledObject, ...]] = {
    dg.AssetKey(["hubspot", "contacts"]): (ReconciledObject("hubspot", "contacts", True),),
    dg.AssetKey(["hubspot", "companies"]): (ReconciledObject("hubspot", "companies", False),),
    dg.AssetKey(["hubspot", "engagements"]): tuple(
        ReconciledObject("hubspot", name, False)
        for name in ("emails", "calls", "meetings", "notes")
    ),
    dg.AssetKey(["salesforce", "leads"]): (ReconciledObject("salesforce", "Lead", True),),
    dg.AssetKey(["salesforce", "contacts"]): tuple(
        ReconciledObject("salesforce", name, True) for name in ("Contact", "Account")
    ),
    dg.AssetKey(["salesforce", "tasks_events"]): tuple(
        ReconciledObject("salesforce", name, True)
        for name in ("Task", "Event", "Campaign", "CampaignMember")
    ),
    dg.AssetKey(["salesforce", "opportunities"]): tuple(
        ReconciledObject("salesforce", name, True)
        for name in ("Opportunity", "OpportunityContactRole")
    ),
}

CHECK_NAME = "reconciled_with_crm"
SAMPLE_IDS = 10


@dataclass(frozen=True)
class ObjectReport:
    obj: ReconciledObject
    result: Reconciliation
    fetched: int
    deleted: int

    @property
    def gaps(self) -> int:
        ghosts = len(self.result.ghosts) if self.obj.pull_sees_deletes else 0
        return len(self.result.missing) + len(self.result.stale) + ghosts

    def metadata(self) -> dict[str, Any]:
        r = self.result
        return {
            "crm_records": r.crm_records,
            "stored_live_records": r.stored_live_records,
            "missing": len(r.missing),
            "stale": len(r.stale),
            "gone_from_crm": len(r.ghosts),
            "pending_for_next_pull": r.pending,
            "refetched": self.fetched,
            "marked_deleted": self.deleted,
            "gaps": self.gaps,
            "sample_ids": [*r.missing, *r.stale, *r.ghosts][:SAMPLE_IDS],
        }


def reconcile_object(
    obj: ReconciledObject,
    hubspot: HubSpotResource,
    salesforce: SalesforceResource,
    store: StateStore,
    definition: LeadDefinition,
) -> ObjectReport:
    """Compare one object with its CRM, re-fetch what the store missed, mark what is gone."""
    if obj.system == "hubspot":
        hs = hubspot.connector()
        inventory = hs.inventory(obj.name)
        fields = hubspot_properties(obj.name, definition)
    else:
        sf = salesforce.connector()
        inventory = sf.inventory(obj.name)
        fields = salesforce_fields(obj.name, definition)
    crm = pl.DataFrame(
        {"source_id": list(inventory), "modified_at": list(inventory.values())},
        schema={"source_id": pl.String(), "modified_at": pl.Datetime("us", "UTC")},
    )
    result = compare_inventories(
        crm, store.source_inventory(obj.system, obj.name), store.get_cursor(obj.system, obj.name)
    )
    now = datetime.now(UTC)
    fetched = 0
    if result.to_fetch:
        if obj.system == "hubspot":
            records = hubspot.connector().fetch(
                obj.name,
                fields,
                result.to_fetch,
                with_contacts=obj.name != "contacts" and obj.name != "companies",
            )
        else:
            records = salesforce.connector().fetch(obj.name, fields, result.to_fetch)
        store.upsert_source_records(
            obj.system,
            obj.name,
            records,
            pulled_at=now,
            echo_fields=frozenset(definition.writeback_fields(obj.system)),
            stamp_fields=STAMP_FIELDS,
        )
        fetched = len(records)
    deleted = (
        store.mark_deleted(obj.system, obj.name, result.ghosts, DELETED_FLAG[obj.system], at=now)
        if result.ghosts
        else 0
    )
    return ObjectReport(obj, result, fetched, deleted)


def _specs(system: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            CHECK_NAME,
            asset=key,
            description="Ids and stamps match the CRM: nothing changed behind the cursor unseen.",
        )
        for key in RECONCILED
        if key.path[0] == system
    ]


def _reconciliation(system: str, crm: str) -> dg.AssetChecksDefinition:
    """The reconciliation check of one CRM's pulled objects, in that CRM's concurrency pool: a
    nightly reconciliation and a sync never call one CRM at once beyond the pool's limit."""

    @dg.multi_asset_check(
        specs=_specs(system),
        can_subset=True,
        pool=f"{system}_api",
        name=f"{system}_reconciliation",
        description=f"Compare each pulled {crm} object with {crm}, heal the store and fail on "
        "any gap.",
    )
    def check(
        context: dg.AssetCheckExecutionContext,
        hubspot: HubSpotResource,
        salesforce: SalesforceResource,
        state_store: StateStoreResource,
        lead_definition: LeadDefinitionResource,
    ) -> Iterator[dg.AssetCheckResult]:
        store, definition = state_store.store(), lead_definition.definition()
        for check_key in context.selected_asset_check_keys:
            reports = [
                reconcile_object(obj, hubspot, salesforce, store, definition)
                for obj in RECONCILED[check_key.asset_key]
            ]
            gaps = sum(r.gaps for r in reports)
            if gaps:
                context.log.error(
                    f"{check_key.asset_key.to_user_string()}: {gaps} record(s) the incremental "
                    "pull had missed; re-fetched and stored, they flow downstream on the next sync"
                )
            yield dg.AssetCheckResult(
                asset_key=check_key.asset_key,
                check_name=CHECK_NAME,
                passed=gaps == 0,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "gaps": gaps,
                    "api_calls": hubspot.calls_since_last_report()
                    + salesforce.calls_since_last_report(),
                    **{f"{r.obj.system}:{r.obj.name}": r.metadata() for r in reports},
                },
            )

    return check


hubspot_reconciliation = _reconciliation("hubspot", "HubSpot")
salesforce_reconciliation = _reconciliation("salesforce", "Salesforce")


RECONCILE_CHECKS = [hubspot_reconciliation, salesforce_reconciliation]

reconcile_job = dg.define_asset_job(
    "reconcile_job",
    selection=dg.AssetSelection.checks(*RECONCILE_CHECKS),
    description="Compare every pulled object with its CRM by id and stamp; heal and report gaps.",
)

# At night, when nobody waits on the API budget: an inventory costs one call per 100 HubSpot
# records and a handful of Bulk API calls per Salesforce object.
reconcile_schedule = dg.ScheduleDefinition(
    name="reconcile_nightly",
    job=reconcile_job,
    cron_schedule="0 3 * * *",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
