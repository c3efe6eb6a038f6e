"""Record-level checks before identity: a record that cannot be trusted is quarantined, with the
field and the reason, instead of failing the run or silently reaching a CRM."""

import polars as pl

REJECTION_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.String(),
    "field": pl.String(),
    "reason": pl.String(),
}

# Deliberately loose: CRMs hold addresses RFC 5322 allows and simple patterns reject; this only
# catches values that are plainly not an address (no @, no dot in the domain, spaces).
_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s.]+$"


def quarantine(leads: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split canonical lead records into (usable, rejected) by the rules below."""
    # A value the normaliser could not make an address of (it leaves `email` null) is as bad as
    # one it kept: the person typed something, and dropping it silently would lose it.
    typed = pl.col("email_raw").is_not_null() & (pl.col("email_raw") != "")
    email_bad = (pl.col("email").is_not_null() & ~pl.col("email").str.contains(_EMAIL)) | (
        typed & pl.col("email").is_null()
    )
    nameless = pl.col("last_name").is_null() & pl.col("first_name").is_null()
    rules = [
        (
            "email",
            email_bad,
            pl.format("not an email address: {}", pl.col("email_raw")),
        ),
        (
            "email",
            pl.col("email").is_null() & nameless,
            pl.lit("no email and no name: nothing identifies a person"),
        ),
        ("created_at", pl.col("created_at").is_null(), pl.lit("no creation time")),
    ]
    rejected = pl.concat(
        [
            leads.filter(condition).select(
                "record_id", pl.lit(field).alias("field"), reason.alias("reason")
            )
            for field, condition, reason in rules
        ],
        how="vertical",
    ).unique(["record_id"], keep="first", maintain_order=True)
    # Deleted records are history (merge losers): keep them for hard links whatever they hold.
    rejected = rejected.join(
        leads.filter(pl.col("is_deleted")).select("record_id"), on="record_id", how="anti"
    )
    usable = leads.join(rejected.select("record_id"), on="record_id", how="anti")
    return usable, rejected.cast(REJECTION_SCHEMA)  # type: ignore[arg-type]
