"""Golden records: one unified lead per identity cluster, and the CRM records to write back to.

Survivorship (per field; entity_resolution_notes.md §5.5), all computed by sorting the members
and taking the first non-null value per cluster:

* record order for "most recent": live records before deleted ones, then `updated_at` descending
  (nulls last), then `record_id` (so ties are deterministic).
* `owner_id`, `sf_status`: Salesforce is the system of record for sales: a Salesforce Contact over
  a Salesforce Lead over HubSpot, then the order above. HubSpot's owner is only a fallback when no
  Salesforce record has one (the id spaces differ; consumers writing to Salesforce should read the
  owner from a Salesforce target).
* `hs_lifecyclestage`: HubSpot records first, then the order above.
* consent (`opted_out`, `do_not_contact`, `bounced`): the most restrictive wins: True if any
  member, deleted or not, says True; a merge never re-opens a channel.
* `sf_is_converted`: True if any member Lead is converted.
* `email`: a non-role address of the most recent live record (role mailboxes only when nothing
  else exists); `secondary_emails` are all other distinct addresses of all members;
  `email_domain` / `email_is_free` describe the chosen address.
* `first_name` + `last_name`: taken together from the most recent record that has a name, so
  first and last name never come from two records that disagree on the order.
* `company` (and `company_key` derived from it), `phone`, `title`, `industry`, `employee_count`,
  `country`, `locale`, `lead_source`: most recent non-null in the order above.
* `created_at` = min, `updated_at` = max; `is_deleted` = every member is deleted.
* `has_open_opportunity` / `has_won_opportunity` from the outcomes of any member.
"""

import polars as pl

from orchestration.funnel.model import UTC_TS
from orchestration.funnel.normalize import (
    company_key_expr,
    email_domain_expr,
    email_is_free_expr,
    email_is_role_expr,
)

GOLDEN_SCHEMA: dict[str, pl.DataType] = {
    "unified_id": pl.String(),
    "email": pl.String(),
    "secondary_emails": pl.List(pl.String()),
    "email_domain": pl.String(),
    "email_is_free": pl.Boolean(),
    "first_name": pl.String(),
    "last_name": pl.String(),
    "company": pl.String(),
    "company_key": pl.String(),
    "phone": pl.String(),
    "title": pl.String(),
    "industry": pl.String(),
    "employee_count": pl.Int64(),
    "country": pl.String(),
    "locale": pl.String(),
    "lead_source": pl.String(),
    "owner_id": pl.String(),
    "opted_out": pl.Boolean(),
    "do_not_contact": pl.Boolean(),
    "bounced": pl.Boolean(),
    "sf_status": pl.String(),
    "sf_is_converted": pl.Boolean(),
    "hs_lifecyclestage": pl.String(),
    "created_at": UTC_TS,
    "updated_at": UTC_TS,
    "record_ids": pl.List(pl.String()),
    "record_count": pl.Int64(),
    "has_open_opportunity": pl.Boolean(),
    "has_won_opportunity": pl.Boolean(),
    "is_deleted": pl.Boolean(),
}

TARGET_SCHEMA: dict[str, pl.DataType] = {
    "unified_id": pl.String(),
    "record_id": pl.String(),
    "source_system": pl.String(),
    "source_object": pl.String(),
    "source_id": pl.String(),
    "sf_is_converted": pl.Boolean(),
    "is_deleted": pl.Boolean(),
}

_MOST_RECENT_FIELDS = (
    "company",
    "phone",
    "title",
    "industry",
    "employee_count",
    "country",
    "locale",
    "lead_source",
)
_CONSENT_FIELDS = ("opted_out", "do_not_contact", "bounced")

# The frame sort used by every "first non-null" pick: live first, newest first, then record_id.
_RECENT_KEYS = ["_deleted", "updated_at", "record_id"]
_RECENT_DESC = [False, True, False]


def _members(leads: pl.DataFrame, identity: pl.DataFrame) -> pl.DataFrame:
    """Leads with their unified_id (records without an identity row are left out)."""
    return leads.join(identity.select("record_id", "unified_id"), on="record_id", how="inner")


def _first_by(
    members: pl.DataFrame, rank: pl.Expr | None, columns: list[str], *, where: pl.Expr | None = None
) -> pl.DataFrame:
    """Per unified_id, the first non-null value of each column in (rank, recency) order."""
    frame = members if where is None else members.filter(where)
    keys = ([rank.alias("_rank")] if rank is not None else []) + [pl.col(k) for k in _RECENT_KEYS]
    desc = ([False] if rank is not None else []) + _RECENT_DESC
    ordered = frame.sort(keys, descending=desc, nulls_last=True)
    # group_by keeps the frame's row order inside each group, so first() honours the sort.
    return ordered.group_by("unified_id").agg(
        pl.col(c).drop_nulls().first().alias(c) for c in columns
    )


def golden_records(
    leads: pl.DataFrame, identity: pl.DataFrame, outcomes: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Canonical leads + identity (+ opportunity outcomes) -> one GOLDEN_SCHEMA row per unified_id.

    Survivorship rules are in the module docstring.
    """
    members = _members(leads, identity).with_columns(
        pl.col("is_deleted").fill_null(False).alias("_deleted")
    )
    if members.height == 0:
        return pl.DataFrame(schema=GOLDEN_SCHEMA)

    base = members.group_by("unified_id").agg(
        pl.col("record_id").sort().alias("record_ids"),
        pl.len().alias("record_count"),
        *(pl.col(c).fill_null(False).any().alias(c) for c in _CONSENT_FIELDS),
        pl.col("sf_is_converted").fill_null(False).any().alias("sf_is_converted"),
        pl.col("created_at").min().alias("created_at"),
        pl.col("updated_at").max().alias("updated_at"),
        pl.col("_deleted").all().alias("is_deleted"),
    )
    general = _first_by(members, None, list(_MOST_RECENT_FIELDS))

    salesforce_rank = (
        pl.when(pl.col("source_object") == "Contact")
        .then(0)
        .when(pl.col("source_system") == "salesforce")
        .then(1)
        .otherwise(2)
    )
    sales = _first_by(members, salesforce_rank, ["owner_id", "sf_status"])
    hubspot_rank = pl.when(pl.col("source_system") == "hubspot").then(0).otherwise(1)
    lifecycle = _first_by(members, hubspot_rank, ["hs_lifecyclestage"])

    # Names travel as a pair from one record.
    names = _first_by(
        members.with_columns(pl.struct("first_name", "last_name").alias("_name")),
        None,
        ["_name"],
        where=pl.col("first_name").is_not_null() | pl.col("last_name").is_not_null(),
    ).unnest("_name")

    role = email_is_role_expr("email").fill_null(False)
    primary = _first_by(members, role, ["email"], where=pl.col("email").is_not_null())
    all_emails = (
        members.select(
            "unified_id",
            pl.concat_list(
                pl.concat_list("email").list.drop_nulls(),
                pl.col("secondary_emails").fill_null([]),
            ).alias("address"),
        )
        .explode("address")
        .filter(pl.col("address").is_not_null())
        .group_by("unified_id")
        .agg(pl.col("address").unique().sort().alias("_all_emails"))
    )

    golden = (
        base.join(general, on="unified_id", how="left")
        .join(sales, on="unified_id", how="left")
        .join(lifecycle, on="unified_id", how="left")
        .join(names, on="unified_id", how="left")
        .join(primary, on="unified_id", how="left")
        .join(all_emails, on="unified_id", how="left")
        .with_columns(
            pl.col("_all_emails")
            .fill_null([])
            .list.set_difference(pl.concat_list("email").list.drop_nulls())
            .list.sort()
            .alias("secondary_emails"),
            email_domain_expr("email").alias("email_domain"),
            email_is_free_expr("email").alias("email_is_free"),
            company_key_expr("company").alias("company_key"),
        )
    )
    golden = _with_opportunity_flags(golden, outcomes)
    return golden.select(pl.col(c).cast(t) for c, t in GOLDEN_SCHEMA.items()).sort("unified_id")


def _with_opportunity_flags(golden: pl.DataFrame, outcomes: pl.DataFrame | None) -> pl.DataFrame:
    flags = pl.DataFrame(
        schema={
            "unified_id": pl.String,
            "has_open_opportunity": pl.Boolean,
            "has_won_opportunity": pl.Boolean,
        }
    )
    if outcomes is not None and outcomes.height > 0:
        record_to_unified = golden.select("unified_id", "record_ids").explode("record_ids")
        flags = (
            outcomes.join(record_to_unified, left_on="record_id", right_on="record_ids")
            .group_by("unified_id")
            .agg(
                (~pl.col("is_closed").fill_null(False)).any().alias("has_open_opportunity"),
                pl.col("is_won").fill_null(False).any().alias("has_won_opportunity"),
            )
        )
    return golden.join(flags, on="unified_id", how="left").with_columns(
        pl.col("has_open_opportunity").fill_null(False),
        pl.col("has_won_opportunity").fill_null(False),
    )


def targets(leads: pl.DataFrame, identity: pl.DataFrame) -> pl.DataFrame:
    """The CRM records each unified lead's status is written to -> TARGET_SCHEMA.

    Only live records: deleted ones cannot be updated, and converted Salesforce Leads are
    excluded because Salesforce rejects writes to them (their Contact carries the status).
    """
    members = _members(leads, identity)
    converted_lead = (
        (pl.col("source_system") == "salesforce")
        & (pl.col("source_object") == "Lead")
        & pl.col("sf_is_converted").fill_null(False)
    )
    return (
        members.filter(~pl.col("is_deleted").fill_null(False) & ~converted_lead)
        .select(pl.col(c).cast(t) for c, t in TARGET_SCHEMA.items())
        .sort("unified_id", "record_id")
    )
