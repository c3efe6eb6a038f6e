"""The canonical lead and activity model: column names and polars dtypes shared by every step.

Frames move between steps as polars DataFrames with exactly these columns, so each step can be
tested on its own and the state store can persist them without knowing the domain.
"""

import polars as pl

UTC_TS = pl.Datetime("us", "UTC")

# Which CRM a record came from.
HUBSPOT = "hubspot"
SALESFORCE = "salesforce"

# One row per source record (a HubSpot contact, a Salesforce Lead or Contact), after field mapping
# and normalisation. `record_id` is "<system>:<object>:<source id>", e.g. "hubspot:contacts:1001",
# "salesforce:Lead:00Q000000000001AAA".
CANONICAL_LEAD_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.String(),
    "source_system": pl.String(),
    "source_object": pl.String(),
    "source_id": pl.String(),
    # identity evidence
    "email": pl.String(),  # normalised primary email (NFKC, lower case, +tag stripped)
    "email_raw": pl.String(),
    "secondary_emails": pl.List(pl.String()),
    "email_domain": pl.String(),
    "email_is_role": pl.Boolean(),  # info@, sales@, toiawase@ ...: never person evidence
    "email_is_free": pl.Boolean(),  # gmail.com, yahoo.co.jp ...: never company evidence
    "first_name": pl.String(),
    "last_name": pl.String(),
    "name_key": pl.String(),  # order-free, honorific-free, itaiji-folded person key
    "company": pl.String(),  # as entered (NFKC)
    "company_key": pl.String(),  # legal designators stripped, folded
    "phone": pl.String(),  # E.164
    # firmographics and persona
    "title": pl.String(),
    "industry": pl.String(),
    "employee_count": pl.Int64(),
    "country": pl.String(),  # ISO 3166-1 alpha-2
    "locale": pl.String(),  # "en" | "ja"
    # origin, ownership, consent
    "lead_source": pl.String(),
    "owner_id": pl.String(),
    "opted_out": pl.Boolean(),
    "do_not_contact": pl.Boolean(),
    "bounced": pl.Boolean(),
    # CRM status as the CRMs hold it
    "sf_status": pl.String(),
    "sf_is_converted": pl.Boolean(),
    "hs_lifecyclestage": pl.String(),
    # cross-system hard links (tier 0 identity evidence)
    "linked_record_ids": pl.List(pl.String()),  # record_ids this record says it is the same as
    "created_at": UTC_TS,
    "updated_at": UTC_TS,
    "is_deleted": pl.Boolean(),
}

# One row per activity, attached to the source record it was logged against.
ACTIVITY_SCHEMA: dict[str, pl.DataType] = {
    "activity_id": pl.String(),  # "<system>:<object>:<source id>[:<n>]"
    "record_id": pl.String(),  # the canonical lead record it belongs to
    "source_system": pl.String(),
    "activity_type": pl.String(),  # one of ACTIVITY_TYPES
    "occurred_at": UTC_TS,
    "detail": pl.String(),  # subject, campaign or form name
}

ACTIVITY_TYPES: tuple[str, ...] = (
    "page_view",
    "pricing_page_view",
    "content_download",
    "form_submission",
    "newsletter_signup",
    "webinar_registration",
    "webinar_attendance",
    "email_open",
    "email_click",
    "email_reply",
    "sales_email",
    "trade_show_scan",
    "contact_request",
    "demo_request",
    "quote_request",
    "sales_call",
    "meeting",
    "unsubscribe",
    "bounce",
)

# One row per record: which unified lead it belongs to and how the decision was made.
IDENTITY_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.String(),
    "unified_id": pl.String(),
    "band": pl.String(),  # "hard_link" | "email" | "singleton" (later: "auto_merge", "review")
}


def empty_frame(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """An empty frame with the given schema, for steps that received nothing."""
    return pl.DataFrame(schema=schema)
