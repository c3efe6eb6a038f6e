"""Salesforce REST limits and names, in one place (see shared/reference/api_contract.md, Part B)."""

API_VERSION = "59.0"

REQUEST_TIMEOUT = (10.0, 120.0)  # (connect, read) seconds
# urllib3 retries of one request: 5 tries at 0, 1, 2, 4, 8 s (BACKOFF_S doubling from the second,
# each capped at BACKOFF_MAX_S) plus up to BACKOFF_JITTER_S of random jitter per try, so a request
# gives up after about 20 s of waiting: long enough to ride out a pod failover or a dropped
# connection, short enough that a broken org fails the run instead of hanging a Dagster step.
RETRIES = 5
BACKOFF_S = 0.5
BACKOFF_MAX_S = 10.0
# Several Dagster steps share one org: jitter keeps their retries from arriving in lockstep on a
# server that is just recovering.
BACKOFF_JITTER_S = 1.0
# Share of the org's daily API budget left untouched for its other integrations.
BUDGET_RESERVE = 0.05

COLLECTION_SIZE = 200  # sObject Collections take at most 200 records per call
IN_CLAUSE_SIZE = 200  # keep IN (...) lists well under SOQL's 100,000-character statement limit
# A REST query page holds at most 2,000 rows (queryMore locators hand out the rest).
REST_QUERY_PAGE_SIZE = 2_000

# SystemModstamp can be set a moment before the transaction that changed the record commits, so an
# incremental pull starts a little before the stored high-water mark and dedupes by id.
PULL_OVERLAP_S = 60

# ---- Bulk API 2.0 --------------------------------------------------------------------------

# A first load switches from REST paging to a Bulk 2.0 query job at this many rows. REST costs
# one call per 2,000 rows (10,000 rows = 5 calls); a query job costs a create, two or more
# status polls and one call per result page of up to BULK_QUERY_PAGE_SIZE rows (about 4 calls
# for anything up to 50,000 rows) and takes one of the org's 10,000 daily query jobs. Below
# 10,000 rows REST is as cheap and has no job latency; above it Bulk wins by more every 2,000
# rows (100,000 rows: 50 REST calls against 5), and a long REST scan also risks its queryMore
# locator expiring (about 15 minutes idle).
BULK_QUERY_THRESHOLD = 10_000
# Rows per Bulk query result page (maxRecords). simple-salesforce's default too: one page of
# typical lead rows is tens of MB of CSV, which the worker parses and stores page by page.
BULK_QUERY_PAGE_SIZE = 50_000
# A write-back switches from sObject Collections (200 records per call) to one Bulk 2.0 ingest
# job at this many records. The job costs about as much as 10 Collections calls (create, upload,
# close, polls, job info, result downloads) and takes one of the 15,000 daily Bulk batches that
# other integrations share, and its results come back asynchronously; Collections answer at once
# and stop cleanly call by call at the budget reserve. From 2,000 records on, Bulk costs fewer
# calls (10,000 records: 50 Collections calls against about 10).
BULK_INGEST_THRESHOLD = 2_000
# simple-salesforce sleeps `wait` seconds before the first status poll (default 5) and then polls
# at `wait` plus a growing delay capped near 2 s. Small jobs are done within a second or two, so
# 1 s keeps a job's latency low without spending calls on polls that can only say InProgress.
BULK_POLL_WAIT_S = 1
# Calls to keep in the budget before starting a Bulk job: simple-salesforce polls inside the job
# where the worker cannot stop it at the reserve, so a job starts only when the budget above the
# reserve covers its fixed calls (about 6) plus a minute of polling at ~2 s (about 25). Below
# that, REST pages and Collections calls make progress and stop cleanly call by call.
BULK_JOB_CALL_ALLOWANCE = 30
# Compound fields (address, geolocation) and base64 cannot be selected by a Bulk query: a pull
# selecting one stays on REST.
BULK_QUERY_UNSUPPORTED_TYPES = frozenset({"address", "location", "base64"})
# Bulk CSV: an empty cell leaves a field unchanged; this token sets it to null.
BULK_NULL = "#N/A"

# ---- getDeleted ------------------------------------------------------------------------------

# Salesforce answers getDeleted for the last 15 days only (400 INVALID_REPLICATION_DATE before).
DELETED_LOOKBACK_DAYS = 15
# Stay this far inside the 15 days: Salesforce truncates the start to the minute (moving it
# earlier) and its clock may run ahead of ours.
DELETED_LOOKBACK_MARGIN_S = 5 * 60
# Start a little before `since`: a delete is stamped when its transaction starts and may commit
# after a previous call's end; seeing one twice is harmless.
DELETED_OVERLAP_S = 120
# Salesforce wants start to precede end by more than a minute after truncating both to whole
# minutes; two minutes before truncation always leaves more than one after it.
DELETED_MIN_WINDOW_S = 120

# Request path fragment -> endpoint family, for counting calls (first match wins: Bulk query jobs
# live under /jobs/query, so /jobs/ must be tried before /query).
CALL_FAMILIES = (
    ("/oauth2/token", "login"),
    ("/jobs/", "bulk"),
    ("/composite/sobjects", "collections"),
    ("/describe", "describe"),
    ("/queryAll", "query"),
    ("/query", "query"),
    ("/deleted/", "deleted"),
    ("/updated/", "updated"),
    ("/sobjects/", "sobject"),
)
