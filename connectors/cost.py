"""The fewest API calls a sync can spend, from the page and batch sizes of each CRM's endpoints.

Used to report how close a run came to that floor (`benchmarks/sync_api_cost.py`, the API-cost
test) and to estimate what a planned write-back will cost.
"""

import math
from collections.abc import Mapping

from connectors.hubspot import constants as hs
from connectors.salesforce import constants as sf


def _pages(records: int, page_size: int) -> int:
    # An empty object still costs the one call that finds it empty.
    return max(1, math.ceil(records / page_size))


def minimum_first_sync_calls(
    system: str, pulled: Mapping[str, int], to_write: Mapping[str, int]
) -> dict[str, int]:
    """Fewest calls per endpoint family for a first (full) sync of `system`.

    `pulled`: records per object as the run reports them ("contacts": n, "contacts:archived": n,
    "web_events": n for HubSpot; "Lead": n for Salesforce). `to_write`: records to update per
    object. Metadata calls (login, describe, property bootstrap) are not included: they do not
    grow with the data.
    """
    if system == "hubspot":
        writes = sum(math.ceil(n / hs.BATCH_SIZE) for n in to_write.values())
    else:
        writes = sum(
            math.ceil(n / sf.COLLECTION_SIZE)
            for n in to_write.values()
            if n < sf.BULK_INGEST_THRESHOLD
        )
    if system == "hubspot":
        listed = sum(
            _pages(n, hs.LIST_PAGE_SIZE) for obj, n in pulled.items() if obj not in hs.EVENT_TYPES
        )
        events = sum(
            _pages(n, hs.EVENTS_PAGE_SIZE) for obj, n in pulled.items() if obj in hs.EVENT_TYPES
        )
        return {"list": listed, "events": events, "batch_update": writes}
    if system == "salesforce":
        # Below the Bulk threshold a REST page holds 2,000 rows; above it one Bulk job costs its
        # creation, polls and 50,000-row result pages instead.
        query = sum(
            _pages(n, sf.REST_QUERY_PAGE_SIZE)
            for n in pulled.values()
            if n < sf.BULK_QUERY_THRESHOLD
        )
        bulk = sum(
            1 + 1 + _pages(n, sf.BULK_QUERY_PAGE_SIZE)  # create, one poll at best, result pages
            for n in pulled.values()
            if n >= sf.BULK_QUERY_THRESHOLD
        )
        # A Bulk ingest job at its leanest: create, upload, close, one poll, successful results.
        ingest = sum(5 for n in to_write.values() if n >= sf.BULK_INGEST_THRESHOLD)
        return {"query": query, "bulk": bulk, "collections": writes, "bulk_ingest": ingest}
    raise ValueError(f"unknown system {system!r}")


def write_calls(system: str, to_write: Mapping[str, int]) -> int:
    """Fewest calls to update `to_write` records per object in `system` (what a plan costs):
    HubSpot batch updates of 100; Salesforce Collections of 200, or one Bulk ingest job (about 5
    calls) for an object at or above the Bulk threshold."""
    floor = minimum_first_sync_calls(system, {}, to_write)
    if system == "hubspot":
        return floor["batch_update"]
    return floor["collections"] + floor["bulk_ingest"]
