"""Salesforce REST limits and names, in one place (see shared/reference/api_contract.md, Part B)."""

API_VERSION = "59.0"

REQUEST_TIMEOUT = (10.0, 120.0)  # (connect, read) seconds
RETRIES = 5
# Share of the org's daily API budget left untouched for its other integrations.
BUDGET_RESERVE = 0.05
BACKOFF_S = 0.5

COLLECTION_SIZE = 200  # sObject Collections take at most 200 records per call
IN_CLAUSE_SIZE = 200  # keep IN (...) lists well under SOQL's 100,000-character statement limit

# SystemModstamp can be set a moment before the transaction that changed the record commits, so an
# incremental pull starts a little before the stored high-water mark and dedupes by id.
PULL_OVERLAP_S = 60

# Request path fragment -> endpoint family, for counting calls (first match wins).
CALL_FAMILIES = (
    ("/oauth2/token", "login"),
    ("/composite/sobjects", "collections"),
    ("/describe", "describe"),
    ("/queryAll", "query"),
    ("/query", "query"),
    ("/jobs/", "bulk"),
    ("/sobjects/", "sobject"),
)
