"""Pull assets: each CRM object pulled incrementally from its stored cursor into the state store."""

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from connectors.hubspot import constants as hs_const
from connectors.ratelimit import BudgetExhausted
from connectors.salesforce import SalesforceConnector
from orchestration.defs.resources import (
    HubSpotResource,
    LeadDefinitionResource,
    SalesforceResource,
    StateStoreResource,
    SyncSettings,
)
from orchestration.funnel.definition import LeadDefinition
from orchestration.store import StateStore

# Fields read besides the definition's field mappings and write-back fields: identity links,
# activity signals and outcome columns the funnel needs.
HUBSPOT_PROPERTIES: dict[str, tuple[str, ...]] = {
    "contacts": (
        "mobilephone",
        "salesforceleadid",
        "salesforcecontactid",
        "hs_merged_object_ids",
        "hs_analytics_num_page_views",
        "hs_analytics_last_visit_timestamp",
        "recent_conversion_event_name",
        "recent_conversion_date",
        "first_conversion_event_name",
        "first_conversion_date",
        "num_conversion_events",
        "hs_lead_status",
        "associatedcompanyid",
    ),
    "companies": ("name", "domain", "industry", "numberofemployees", "country"),
    "emails": ("hs_timestamp", "hs_email_direction", "hs_email_subject", "hs_email_status"),
    "calls": ("hs_timestamp", "hs_call_title", "hs_call_direction", "hs_call_status"),
    "meetings": ("hs_timestamp", "hs_meeting_title", "hs_meeting_outcome"),
    "notes": ("hs_timestamp",),
}

SALESFORCE_FIELDS: dict[str, tuple[str, ...]] = {
    "Lead": (
        "MobilePhone",
        "ConvertedContactId",
        "ConvertedAccountId",
        "ConvertedOpportunityId",
        "ConvertedDate",
        "MasterRecordId",
    ),
    "Contact": ("AccountId", "MobilePhone", "Department", "MasterRecordId"),
    "Account": ("Name", "Website", "Industry", "NumberOfEmployees", "BillingCountry"),
    "Task": (
        "WhoId",
        "WhatId",
        "Subject",
        "TaskSubtype",
        "Type",
        "Status",
        "ActivityDate",
        "CreatedDate",
    ),
    "Event": ("WhoId", "WhatId", "Subject", "StartDateTime", "ActivityDateTime", "CreatedDate"),
    "Campaign": ("Name", "Type", "Status", "StartDate"),
    "CampaignMember": (
        "CampaignId",
        "LeadId",
        "ContactId",
        "Status",
        "HasResponded",
        "FirstRespondedDate",
        "CreatedDate",
    ),
    "Opportunity": ("Name", "AccountId", "StageName", "IsClosed", "IsWon", "Amount", "CloseDate"),
    "OpportunityContactRole": ("OpportunityId", "ContactId", "IsPrimary", "Role"),
}


def hubspot_properties(object_type: str, definition: LeadDefinition) -> list[str]:
    mapped = definition.field_mappings.get(f"hubspot:{object_type}", {})
    own = definition.writeback_fields("hubspot") if object_type == "contacts" else []
    return list(dict.fromkeys([*mapped, *HUBSPOT_PROPERTIES.get(object_type, ()), *own]))


def salesforce_fields(sobject: str, definition: LeadDefinition) -> list[str]:
    mapped = definition.field_mappings.get(f"salesforce:{sobject}", {})
    own = [
        row["field"]
        for row in definition.writeback_field_rows()
        if row["system"] == "salesforce" and row["object"] == sobject
    ]
    return list(dict.fromkeys([*mapped, *SALESFORCE_FIELDS.get(sobject, ()), *own]))


# Objects whose archived records are listed on every run: search never shows a delete, and a
# deleted contact must not stay a live lead.
ARCHIVE_CHECKED = frozenset({"contacts"})

# How each CRM marks a deleted record in its own payload (see StateStore.mark_deleted), so a delete
# seen only by id reads like one the pull delivered.
DELETED_FLAG: dict[str, tuple[str, Any]] = {
    "hubspot": ("archived", "true"),
    "salesforce": ("IsDeleted", True),
}

# A completed pull's cursor is the newest stamp it saw or, when later, the moment its query
# started less this margin. Every record stamped before that moment less the CRM's indexing lag
# was visible to the query, and the connector starts the next window that lag before the cursor
# (hubspot SEARCH_OVERLAP_S, salesforce PULL_OVERLAP_S); the margin covers a CRM clock running
# behind ours. With the newest stamp alone, the last minutes of changes before it (typically the
# previous run's own write-back) were read again by every run until something newer came.
CURSOR_CLOCK_MARGIN = timedelta(seconds=60)


def cursor_after(high_water: datetime | None, started: datetime) -> datetime:
    """Where the next incremental pull of an object starts, after a complete pull that began at
    `started` and saw modification stamps up to `high_water`."""
    safe = started - CURSOR_CLOCK_MARGIN
    return safe if high_water is None else max(high_water, safe)


# getDeleted keeps its own cursor per object, stored beside the pull's under this suffix.
DELETES_CURSOR_SUFFIX = "#deleted"

# Stamps every write moves, ours included (see StateStore.upsert_source_records).
STAMP_FIELDS = frozenset(
    {
        "lastmodifieddate",
        "hs_lastmodifieddate",
        "SystemModstamp",
        "LastModifiedDate",
        "LastModifiedById",
    }
)


def _store_pages(
    store: StateStore,
    system: str,
    obj: str,
    pages: Iterable[list[dict[str, Any]]],
    definition: LeadDefinition,
) -> tuple[int, int, datetime | None, bool]:
    """Store every page; returns (records, echoes of our writes, high-water mark, stopped early
    because the daily budget reached its reserve)."""
    pulled_at = datetime.now(UTC)
    echo_fields = frozenset(definition.writeback_fields(system))
    count, echoes, high_water = 0, 0, None
    try:
        for page in pages:
            echoes += store.upsert_source_records(
                system,
                obj,
                page,
                pulled_at=pulled_at,
                echo_fields=echo_fields,
                stamp_fields=STAMP_FIELDS,
            )
            count += len(page)
            for record in page:
                modified = record.get("_modified_at")
                if modified is not None and (high_water is None or modified > high_water):
                    high_water = modified
    except BudgetExhausted:
        return count, echoes, high_water, True
    return count, echoes, high_water, False


def _pull_hubspot(
    context: dg.AssetExecutionContext,
    hubspot: HubSpotResource,
    state_store: StateStoreResource,
    lead_definition: LeadDefinitionResource,
    settings: SyncSettings,
    object_types: tuple[str, ...],
    *,
    with_contacts: bool = False,
) -> dg.MaterializeResult:
    connector, store = hubspot.connector(), state_store.store()
    definition = lead_definition.definition()
    pulled: dict[str, int] = {}
    deleted: dict[str, int] = {}
    echoes = 0
    stopped = False
    for object_type in object_types:
        since = None if settings.full else store.get_cursor("hubspot", object_type)
        started = datetime.now(UTC)
        pages = connector.pull(
            object_type,
            hubspot_properties(object_type, definition),
            since,
            with_contacts=with_contacts,
        )
        pulled[object_type], echo, high_water, stopped = _store_pages(
            store, "hubspot", object_type, pages, definition
        )
        echoes += echo
        if stopped:
            # An incremental pull runs oldest change first, so what was stored is a safe place to
            # resume from; a first load lists by id and must start over.
            if since is not None:
                store.set_cursor("hubspot", object_type, high_water)
            context.log.warning(f"hubspot {object_type}: stopped for the daily budget")
            break
        if object_type in ARCHIVE_CHECKED:
            archived = connector.pull_archived(
                object_type, hubspot_properties(object_type, definition)
            )
            deleted[object_type], _, _, stopped = _store_pages(
                store, "hubspot", object_type, archived, definition
            )
        # Events are filtered on when they happened, not when HubSpot stored them: their
        # cursor stays the newest time seen.
        events = object_type in hs_const.EVENT_TYPES
        store.set_cursor(
            "hubspot", object_type, high_water if events else cursor_after(high_water, started)
        )
        if stopped:
            break
        context.log.info(f"hubspot {object_type}: {pulled[object_type]} records since {since}")
    return dg.MaterializeResult(
        metadata={
            "records_pulled": sum(pulled.values()),
            "records_by_object": pulled,
            "archived_seen": deleted,
            "stopped_for_budget": stopped,
            "echoes_of_our_writes": echoes,
            "api_calls": hubspot.calls_since_last_report(),
        }
    )


def _pull_salesforce(
    context: dg.AssetExecutionContext,
    salesforce: SalesforceResource,
    state_store: StateStoreResource,
    lead_definition: LeadDefinitionResource,
    settings: SyncSettings,
    sobjects: tuple[str, ...],
) -> dg.MaterializeResult:
    connector, store = salesforce.connector(), state_store.store()
    definition = lead_definition.definition()
    pulled: dict[str, int] = {}
    echoes = 0
    stopped = False
    deleted: dict[str, int] = {}
    for sobject in sobjects:
        since = None if settings.full else store.get_cursor("salesforce", sobject)
        started = datetime.now(UTC)
        pages: Iterator[list[dict[str, Any]]] = connector.pull(
            sobject, salesforce_fields(sobject, definition), since
        )
        pulled[sobject], echo, high_water, stopped = _store_pages(
            store, "salesforce", sobject, pages, definition
        )
        echoes += echo
        # SOQL pulls run oldest SystemModstamp first: even a pull stopped for the budget leaves a
        # cursor the next run can resume from.
        store.set_cursor(
            "salesforce", sobject, high_water if stopped else cursor_after(high_water, started)
        )
        if stopped:
            context.log.warning(f"salesforce {sobject}: stopped for the daily budget")
            break
        try:
            deleted[sobject] = _apply_deletes(context, connector, store, sobject, since, started)
        except BudgetExhausted:
            stopped = True
            context.log.warning(f"salesforce {sobject}: stopped for the daily budget")
            break
        context.log.info(f"salesforce {sobject}: {pulled[sobject]} records since {since}")
    return dg.MaterializeResult(
        metadata={
            "records_pulled": sum(pulled.values()),
            "records_by_object": pulled,
            "hard_deletes_seen": deleted,
            "echoes_of_our_writes": echoes,
            "stopped_for_budget": stopped,
            "api_calls": salesforce.calls_since_last_report(),
        }
    )


def _apply_deletes(
    context: dg.AssetExecutionContext,
    connector: SalesforceConnector,
    store: StateStore,
    sobject: str,
    since: datetime | None,
    started: datetime,
) -> int:
    """Mark what getDeleted reports as deleted. queryAll shows soft deletes while they sit in the
    recycle bin; a hard delete or an emptied bin shows only here. Returns records marked."""
    key = f"{sobject}{DELETES_CURSOR_SUFFIX}"
    deletes_since = store.get_cursor("salesforce", key)
    if since is None or deletes_since is None:
        # A first load saw every record that exists: deletes matter from now on.
        store.set_cursor("salesforce", key, started)
        return 0
    found = connector.deleted_since(sobject, deletes_since)
    if not found.complete:
        context.log.warning(
            f"salesforce {sobject}: deletes since {deletes_since.isoformat()} are not all "
            "available (past Salesforce's 15-day window, or the object does not replicate); "
            "the nightly reconciliation finds the rest"
        )
    marked = store.mark_deleted(
        "salesforce",
        sobject,
        [record_id for record_id, _ in found.records],
        DELETED_FLAG["salesforce"],
        at=started,
    )
    store.set_cursor("salesforce", key, found.latest_covered)
    return marked


_HS = {"group_name": "hubspot", "kinds": {"hubspot"}, "pool": "hubspot_api"}
_SF = {"group_name": "salesforce", "kinds": {"salesforce"}, "pool": "salesforce_api"}


@dg.asset(key=["hubspot", "contacts"], **_HS)
def hubspot_contacts(
    context: dg.AssetExecutionContext,
    hubspot: HubSpotResource,
    state_store: StateStoreResource,
    lead_definition: LeadDefinitionResource,
    settings: SyncSettings,
) -> dg.MaterializeResult:
    """HubSpot contacts changed since the last pull."""
    return _pull_hubspot(context, hubspot, state_store, lead_definition, settings, ("contacts",))


@dg.asset(key=["hubspot", "companies"], **_HS)
def hubspot_companies(
    context: dg.AssetExecutionContext,
    hubspot: HubSpotResource,
    state_store: StateStoreResource,
    lead_definition: LeadDefinitionResource,
    settings: SyncSettings,
) -> dg.MaterializeResult:
    """HubSpot companies changed since the last pull."""
    return _pull_hubspot(context, hubspot, state_store, lead_definition, settings, ("companies",))


@dg.asset(key=["hubspot", "engagements"], **_HS)
def hubspot_engagements(
    context: dg.AssetExecutionContext,
    hubspot: HubSpotResource,
    state_store: StateStoreResource,
    lead_definition: LeadDefinitionResource,
    settings: SyncSettings,
) -> dg.MaterializeResult:
    """HubSpot emails, calls, meetings, notes and page views of contacts, since the last pull."""
    return _pull_hubspot(
        context,
        hubspot,
        state_store,
        lead_definition,
        settings,
        ("emails", "calls", "meetings", "notes", "web_events"),
        with_contacts=True,
    )


@dg.asset(key=["salesforce", "leads"], **_SF)
def salesforce_leads(
    context: dg.AssetExecutionContext,
    salesforce: SalesforceResource,
    state_store: StateStoreResource,
    lead_definition: LeadDefinitionResource,
    settings: SyncSettings,
) -> dg.MaterializeResult:
    """Salesforce Leads (deleted and converted ones included) changed since the last pull."""
    return _pull_salesforce(context, salesforce, state_store, lead_definition, settings, ("Lead",))


@dg.asset(key=["salesforce", "contacts"], **_SF)
def salesforce_contacts(
    context: dg.AssetExecutionContext,
    salesforce: SalesforceResource,
    state_store: StateStoreResource,
    lead_definition: LeadDefinitionResource,
    settings: SyncSettings,
) -> dg.MaterializeResult:
    """Salesforce Contacts and their Accounts changed since the last pull."""
    return _pull_salesforce(
        context, salesforce, state_store, lead_definition, settings, ("Contact", "Account")
    )


@dg.asset(key=["salesforce", "tasks_events"], **_SF)
def salesforce_tasks_events(
    context: dg.AssetExecutionContext,
    salesforce: SalesforceResource,
    state_store: StateStoreResource,
    lead_definition: LeadDefinitionResource,
    settings: SyncSettings,
) -> dg.MaterializeResult:
    """Salesforce Tasks, Events and campaign responses changed since the last pull."""
    return _pull_salesforce(
        context,
        salesforce,
        state_store,
        lead_definition,
        settings,
        ("Task", "Event", "Campaign", "CampaignMember"),
    )


@dg.asset(key=["salesforce", "opportunities"], **_SF)
def salesforce_opportunities(
    context: dg.AssetExecutionContext,
    salesforce: SalesforceResource,
    state_store: StateStoreResource,
    lead_definition: LeadDefinitionResource,
    settings: SyncSettings,
) -> dg.MaterializeResult:
    """Salesforce Opportunities and their contact roles changed since the last pull."""
    return _pull_salesforce(
        context,
        salesforce,
        state_store,
        lead_definition,
        settings,
        ("Opportunity", "OpportunityContactRole"),
    )


# The pull assets' keys, for code that reads their materializations (write-back's budget guard).
PULL_ASSET_KEYS = [
    dg.AssetKey(["hubspot", name]) for name in ("contacts", "companies", "engagements")
] + [
    dg.AssetKey(["salesforce", name])
    for name in ("leads", "contacts", "tasks_events", "opportunities")
]

PULL_ASSETS = [
    hubspot_contacts,
    hubspot_companies,
    hubspot_engagements,
    salesforce_leads,
    salesforce_contacts,
    salesforce_tasks_events,
    salesforce_opportunities,
]
