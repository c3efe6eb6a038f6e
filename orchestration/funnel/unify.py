"""Golden records: one unified lead per identity cluster, and the CRM records to write back to.

Survivorship (per field; entity_resolution_notes.md §5.5), all computed by sorting the members
(by a field-specific rank first where one is given) and taking the first non-null value per
cluster:

* record order for "most recent": live records before deleted ones, then `updated_at` descending
  (nulls last), then `record_id` (so ties are deterministic).
* `owner_id`, `sf_status`: Salesforce is the system of record for sales: a Salesforce Contact over
  a Salesforce Lead over HubSpot, then the order above. HubSpot's owner is only a fallback when no
  Salesforce record has one (the id spaces differ; consumers writing to Salesforce should read the
  owner from a Salesforce target). `owner_source` names the kind of record the owner came from
  ("salesforce:Lead", "salesforce:Contact", "hubspot:contacts"): only a Lead's owner can be a
  queue, so only a Lead's owner says whether sales accepted it (stages, owner acceptance).
* `hs_lifecyclestage`: HubSpot records first, then the order above.
* consent (`opted_out`, `do_not_contact`, `bounced`): the most restrictive wins: True if any
  member, deleted or not, says True; a merge never re-opens a channel.
* `sf_is_converted`: True if any member Lead is converted.
* BANT(C) (`bant_budget`, `bant_authority`, `bant_need`, `bant_timeline`, `bant_competitor`):
  a criterion is confirmed if any live Salesforce record of the person has it ticked. Sales ticks
  a box once it learnt the answer and the answer does not belong to one record: a person whose
  older Lead says Need and whose newer one says Timeline has both confirmed. Deleted records (merge
  losers) do not count, because the merge winner carries what sales kept; HubSpot has no such
  fields. False when no record says so (an org without the fields reads as nothing confirmed).
* `email`: a non-role address of the most recent live record (role mailboxes only when nothing
  else exists); `secondary_emails` are all other distinct addresses of all members;
  `email_domain` / `email_is_free` describe the chosen address.
* `first_name` + `last_name`: taken together from one record, so first and last name never come
  from two records that disagree on the order: the most complete name first (both parts over
  one), among those a record with a kana reading (`name_reading`: whoever typed the reading
  usually typed the name with care, and it is the record a salutation can be checked against),
  then the order above.
* `phone`: a mobile number over a fixed (or VoIP/other) one, and a toll-free or shared-cost
  company line (0120, 0800, 0570) only when no member has anything else; then the order above.
* `company` (and `company_key` derived from it): an Account-backed Salesforce Contact (the
  company is the Account's name) over HubSpot over free text (a Lead's Company field); then the
  order above.
* `title`, `industry`, `employee_count`, `country`, `locale`, `lead_source`: most recent non-null
  in the order above.
* `created_at` = min, `updated_at` = max; `is_deleted` = every member is deleted.
* `has_open_opportunity` / `has_won_opportunity` from the outcomes of any member.

`provenance` records where each surviving value came from: for every field in PROVENANCE_FIELDS
the record_id that supplied it (null when the value is null); for the consent flags,
`sf_is_converted` and the BANT(C) flags the sorted record_ids of every member that set them.
"""

import polars as pl

from orchestration.funnel.model import BANT_COLUMNS, UTC_TS
from orchestration.funnel.normalize import (
    company_key_expr,
    email_domain_expr,
    email_is_free_expr,
    email_is_role_expr,
    phone_rank_expr,
)

# Fields whose surviving value comes from one record: provenance holds that record's id.
PROVENANCE_FIELDS: tuple[str, ...] = (
    "email",
    "first_name",
    "last_name",
    "company",
    "phone",
    "title",
    "industry",
    "employee_count",
    "country",
    "locale",
    "lead_source",
    "owner_id",
    "sf_status",
    "hs_lifecyclestage",
    "created_at",
    "updated_at",
)
# Flags any member can set (the most restrictive wins): provenance lists every record that did.
PROVENANCE_LIST_FIELDS: tuple[str, ...] = (
    "opted_out",
    "do_not_contact",
    "bounced",
    "sf_is_converted",
    *BANT_COLUMNS,
)
PROVENANCE_DTYPE = pl.Struct(
    {
        **{f: pl.String() for f in PROVENANCE_FIELDS},
        **{f: pl.List(pl.String()) for f in PROVENANCE_LIST_FIELDS},
    }
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
    "owner_source": pl.String(),  # "<system>:<object>" of the record owner_id came from
    "opted_out": pl.Boolean(),
    "do_not_contact": pl.Boolean(),
    "bounced": pl.Boolean(),
    "sf_status": pl.String(),
    "sf_is_converted": pl.Boolean(),
    "hs_lifecyclestage": pl.String(),
    **{c: pl.Boolean() for c in BANT_COLUMNS},
    "created_at": UTC_TS,
    "updated_at": UTC_TS,
    "record_ids": pl.List(pl.String()),
    "record_count": pl.Int64(),
    "has_open_opportunity": pl.Boolean(),
    "has_won_opportunity": pl.Boolean(),
    "is_deleted": pl.Boolean(),
    "provenance": PROVENANCE_DTYPE,  # field -> the record_id(s) its value came from
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
    """Per unified_id, the first non-null value of each column in (rank, recency) order, and in
    `_src_<column>` the record_id it came from."""
    frame = members if where is None else members.filter(where)
    keys = ([rank.alias("_rank")] if rank is not None else []) + [pl.col(k) for k in _RECENT_KEYS]
    desc = ([False] if rank is not None else []) + _RECENT_DESC
    ordered = frame.sort(keys, descending=desc, nulls_last=True)
    # group_by keeps the frame's row order inside each group, so first() honours the sort.
    return ordered.group_by("unified_id").agg(
        *(pl.col(c).drop_nulls().first().alias(c) for c in columns),
        *(
            pl.col("record_id").filter(pl.col(c).is_not_null()).first().alias(f"_src_{c}")
            for c in columns
        ),
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
    # Frames persisted before these columns existed read as if they were all null.
    members = members.with_columns(
        *(
            pl.lit(None, dtype=pl.String).alias(c)
            for c in ("phone_type", "name_reading", "source_account_id")
            if c not in members.columns
        ),
        *(
            pl.lit(None, dtype=pl.Boolean).alias(c)
            for c in BANT_COLUMNS
            if c not in members.columns
        ),
    )
    # What a live Salesforce record confirms (see the BANT(C) rule in the module docstring).
    live_salesforce = ~pl.col("_deleted") & (pl.col("source_system") == "salesforce")
    if members.height == 0:
        return pl.DataFrame(schema=GOLDEN_SCHEMA)

    base = members.group_by("unified_id").agg(
        pl.col("record_id").sort().alias("record_ids"),
        pl.len().alias("record_count"),
        *(pl.col(c).fill_null(False).any().alias(c) for c in _CONSENT_FIELDS),
        pl.col("sf_is_converted").fill_null(False).any().alias("sf_is_converted"),
        *((pl.col(c).fill_null(False) & live_salesforce).any().alias(c) for c in BANT_COLUMNS),
        pl.col("created_at").min().alias("created_at"),
        pl.col("updated_at").max().alias("updated_at"),
        pl.col("_deleted").all().alias("is_deleted"),
        *(
            pl.col("record_id").filter(pl.col(c).fill_null(False)).sort().alias(f"_src_{c}")
            for c in PROVENANCE_LIST_FIELDS
            if c not in BANT_COLUMNS
        ),
        *(
            pl.col("record_id")
            .filter(pl.col(c).fill_null(False) & live_salesforce)
            .sort()
            .alias(f"_src_{c}")
            for c in BANT_COLUMNS
        ),
        # Ties (two records created in the same instant) go to the smallest record_id.
        pl.col("record_id")
        .filter(pl.col("created_at") == pl.col("created_at").min())
        .min()
        .alias("_src_created_at"),
        pl.col("record_id")
        .filter(pl.col("updated_at") == pl.col("updated_at").max())
        .min()
        .alias("_src_updated_at"),
    )
    general = _first_by(members, None, list(_MOST_RECENT_FIELDS))
    phone = _first_by(members, phone_rank_expr("phone_type"), ["phone"])
    # The company as an Account names it beats HubSpot's property, which beats a Lead's free text.
    company_rank = (
        pl.when(
            (pl.col("source_system") == "salesforce")
            & (pl.col("source_object") == "Contact")
            & pl.col("source_account_id").is_not_null()
        )
        .then(0)
        .when(pl.col("source_system") == "hubspot")
        .then(1)
        .otherwise(2)
    )
    company = _first_by(members, company_rank, ["company"])

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

    # Names travel as a pair from one record: both parts over one, then a record with a reading.
    name_rank = (pl.col("first_name").is_null() | pl.col("last_name").is_null()).cast(
        pl.Int8
    ) * 2 + pl.col("name_reading").is_null().cast(pl.Int8)
    names = (
        _first_by(
            members.with_columns(pl.struct("first_name", "last_name").alias("_name")),
            name_rank,
            ["_name"],
            where=pl.col("first_name").is_not_null() | pl.col("last_name").is_not_null(),
        )
        .unnest("_name")
        .with_columns(
            pl.when(pl.col(c).is_not_null()).then(pl.col("_src__name")).alias(f"_src_{c}")
            for c in ("first_name", "last_name")
        )
        .drop("_src__name")
    )

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
        .join(phone, on="unified_id", how="left")
        .join(company, on="unified_id", how="left")
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
            pl.col("_src_owner_id").str.extract(r"^([^:]+:[^:]+):", 1).alias("owner_source"),
            pl.struct(
                *(pl.col(f"_src_{f}").alias(f) for f in PROVENANCE_FIELDS),
                *(pl.col(f"_src_{f}").alias(f) for f in PROVENANCE_LIST_FIELDS),
            ).alias("provenance"),
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


# --------------------------------------------------------------------------------------------
# Incremental: golden records again only for the unified leads whose members changed
# --------------------------------------------------------------------------------------------

FINGERPRINT_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.String(),
    "unified_id": pl.String(),
    "fingerprint": pl.UInt64(),
}
_SEED = 20261121


def member_fingerprints(
    leads: pl.DataFrame, identity: pl.DataFrame, outcomes: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Per member record of a unified lead: its unified id and a hash of all survivorship reads
    from it (its canonical row and its opportunities). polars does not promise one hash across its
    versions: after an upgrade every golden record is made once more, nothing worse."""
    rows = leads.select("record_id", pl.struct(pl.all()).hash(_SEED).alias("_row"))
    prints = identity.select("record_id", "unified_id").join(rows, on="record_id", how="inner")
    if outcomes is not None and outcomes.height > 0:
        opportunities = outcomes.group_by("record_id").agg(
            pl.struct(pl.all().exclude("record_id")).hash(_SEED).sort().hash(_SEED).alias("_opp")
        )
        prints = prints.join(opportunities, on="record_id", how="left")
    else:
        prints = prints.with_columns(pl.lit(None, dtype=pl.UInt64).alias("_opp"))
    return prints.select(
        "record_id", "unified_id", pl.struct("_row", "_opp").hash(_SEED).alias("fingerprint")
    )


def update_golden_records(
    previous: pl.DataFrame,
    previous_prints: pl.DataFrame,
    prints: pl.DataFrame,
    leads: pl.DataFrame,
    identity: pl.DataFrame,
    outcomes: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, int]:
    """`previous` golden records with those of every unified lead that gained, lost or changed a
    member since `previous_prints` made again (and those left without members dropped). Returns
    the golden records and how many unified leads were made again."""
    keys = ["record_id", "unified_id", "fingerprint"]
    touched = pl.concat(
        [
            prints.join(previous_prints, on=keys, how="anti").select("unified_id"),
            previous_prints.join(prints, on=keys, how="anti").select("unified_id"),
        ]
    ).unique()
    members = identity.join(touched, on="unified_id", how="semi")
    records = members.select("record_id")
    fresh = golden_records(
        leads.join(records, on="record_id", how="semi"),
        members,
        None if outcomes is None else outcomes.join(records, on="record_id", how="semi"),
    )
    kept = previous.join(touched, on="unified_id", how="anti")
    return pl.concat([kept, fresh]).sort("unified_id"), touched.height
