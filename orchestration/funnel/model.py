"""The canonical lead and activity model: column names and polars dtypes shared by every step.

Frames move between steps as polars DataFrames with exactly these columns, so each step can be
tested on its own and the state store can persist them without knowing the domain.
"""

import polars as pl

UTC_TS = pl.Datetime("us", "UTC")

# Which CRM a record came from.
HUBSPOT = "hubspot"
SALESFORCE = "salesforce"

# The BANT(C) criteria in their customary order, and the canonical column of each.
BANT_CRITERIA: tuple[str, ...] = ("budget", "authority", "need", "timeline", "competitor")
BANT_COLUMNS: tuple[str, ...] = tuple(f"bant_{c}" for c in BANT_CRITERIA)

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
    "given_key": pl.String(),  # first_name folded like a name_key part (as typed: may be swapped)
    "family_key": pl.String(),  # last_name folded the same way
    "name_reading": pl.String(),  # order-free hiragana key from the kana (フリガナ) fields, or null
    "name_romaji": pl.String(),  # order-free Hepburn key (from the reading, else the name)
    "company": pl.String(),  # as entered (NFKC)
    "company_key": pl.String(),  # legal designators stripped, folded
    "company_domain": pl.String(),  # non-free-mail email domain, else the Account's website host
    "source_account_id": pl.String(),  # a Salesforce Contact's AccountId (null otherwise)
    "phone": pl.String(),  # E.164; mobile preferred, never toll-free/shared-cost if another exists
    "phone_type": pl.String(),  # mobile|fixed|toll_free|shared_cost|voip|other (phonenumbers)
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
    # BANT(C): the checkboxes sales ticks on a Salesforce Lead as each criterion is confirmed
    # (Budget, Authority, Need, Timeline, Competitor known). Null where the org has no such field.
    **{c: pl.Boolean() for c in BANT_COLUMNS},
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
    "band": pl.String(),  # "auto_merge" | "review" | "keep_apart"
    "rule": pl.String(),  # strongest link into its cluster: hard_link, user, email, probabilistic
}

# The merge log: one row per pair identity resolution linked, held for review or kept apart by a
# veto, with the comparison levels and Fellegi-Sunter weights behind the decision.
IDENTITY_PAIR_SCHEMA: dict[str, pl.DataType] = {
    "record_a": pl.String(),
    "record_b": pl.String(),
    "rule": pl.String(),  # hard_link | user | email | probabilistic
    "band": pl.String(),  # auto_merge | review | keep_apart
    "applied": pl.Boolean(),  # the edge joins the two records' cluster
    "match_weight": pl.Float64(),  # sum of the partial weights (log2 Bayes factor)
    "email_level": pl.String(),
    "name_level": pl.String(),
    "company_level": pl.String(),
    "phone_level": pl.String(),
    # same | common (many of the firm's records hold it) | diff | null; corroborates name and
    # firm, never weighed
    "title_level": pl.String(),
    "w_email": pl.Float64(),
    "w_name": pl.Float64(),
    "w_company": pl.Float64(),
    "w_phone": pl.Float64(),
    "veto": pl.String(),  # why the pair must stay apart, if it must
    "blocked_by": pl.String(),  # the blocking rule that proposed the pair
}


def empty_frame(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """An empty frame with the given schema, for steps that received nothing."""
    return pl.DataFrame(schema=schema)
