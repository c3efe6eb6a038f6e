"""HubSpot CRM v3 limits and names, in one place (see shared/reference/api_contract.md, Part A)."""

DEFAULT_BASE_URL = "https://api.hubapi.com"

LIST_PAGE_SIZE = 100  # GET /crm/v3/objects/{type}: 100 max (50 with propertiesWithHistory)
SEARCH_PAGE_SIZE = 200  # POST .../search: 200 max per page
SEARCH_RESULT_CAP = 10_000  # search answers 400 once after + limit passes 10,000: re-window first
BATCH_SIZE = 100  # every object batch endpoint takes at most 100 inputs
ASSOCIATION_BATCH_SIZE = 100  # v4 association batch read; HubSpot's documented cap is higher

# Burst limit of a Professional private app is 190 requests per 10 s; search has its own bucket of
# 5 requests per second per account. Stay a little under both so no 429 is ever provoked.
BURST_LIMIT = (170, 10.0)
SEARCH_LIMIT = (4, 1.0)

# Share of the portal's daily budget left untouched for its other integrations.
BUDGET_RESERVE = 0.05

REQUEST_TIMEOUT = (10.0, 60.0)  # (connect, read) seconds; urllib3 retries a timed-out call

# Retries (urllib3 Retry, applied inside the client to every call, POSTs included). urllib3 sleeps
# nothing before the first retry, then factor * 2**(n-1): 1, 2, 4, 8 s here. Together they outlast
# HubSpot's 10-second burst window, and `total` keeps a dead portal from holding a run for long.
RETRY_TOTAL = 5
# 423 Locked (a record busy with a concurrent fast upsert) and 477 Migration in Progress (sent with
# Retry-After while a portal moves data centres) are transient too.
RETRY_STATUSES = (423, 429, 477, 500, 502, 503, 504)
RETRY_BACKOFF_FACTOR = 0.5
# Up to this many random seconds added to each backoff after the first (immediate) retry, so
# parallel steps that hit the same 429 (the limits are per app and per account, not per process)
# do not retry in lockstep.
RETRY_BACKOFF_JITTER = 1.0
RETRY_BACKOFF_MAX = 30.0  # seconds; no single backoff sleeps longer
# Retry-After is honoured as sent, up to this many seconds (urllib3 would wait up to 6 hours).
# HubSpot does not document it on 429s; a much longer one (a daily limit, a migration) should fail
# the call within minutes rather than hold a worker until it passes.
RETRY_AFTER_MAX = 60

# Search results lag writes by "a few moments": incremental windows start this far before the
# stored cursor.
SEARCH_OVERLAP_S = 120

# Contacts call their modified-time property `lastmodifieddate`; every other object
# `hs_lastmodifieddate` (trip-wire 14).
MODIFIED_PROPERTY = {"contacts": "lastmodifieddate"}
DEFAULT_MODIFIED_PROPERTY = "hs_lastmodifieddate"

# Every object's id as a property: searchable (GT), sortable, and the smallest thing a list page
# can be asked for (HubSpot adds the created and modified dates to every record anyway).
ID_PROPERTY = "hs_object_id"

ENGAGEMENT_TYPES = ("emails", "calls", "meetings", "notes")

# Timeline events read through the Events API (/events/v3/events), by the name leadsync stores them
# under. Page views are how pricing-page visits become visible per event.
EVENT_TYPES = {"web_events": "e_visited_page"}
EVENTS_PAGE_SIZE = 100

# The property group leadsync's own properties go to when the definition names none.
PROPERTY_GROUP = "leadsync"
