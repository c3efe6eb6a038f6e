"""Reconciliation: what the state store missed, found by comparing ids and stamps with a CRM.

An incremental pull sees what changed after its cursor. A record changed *behind* the cursor (a
backdated import, a search index that lagged past the overlap, a bug) or deleted where the pull
cannot see deletes is a silent gap. Comparing the CRM's ids and modified stamps with the store's
finds every one of them; what changed at or after the cursor is not a gap, the next pull brings it.
"""

from dataclasses import dataclass, field
from datetime import datetime

import polars as pl

CRM_INVENTORY_SCHEMA: dict[str, pl.DataType] = {
    "source_id": pl.String(),
    "modified_at": pl.Datetime("us", "UTC"),
}
STORE_INVENTORY_SCHEMA: dict[str, pl.DataType] = {
    "source_id": pl.String(),
    "crm_modified_at": pl.Datetime("us", "UTC"),
    "is_deleted": pl.Boolean(),
}


@dataclass(frozen=True)
class Reconciliation:
    """The difference between one CRM object and its stored copy."""

    crm_records: int
    stored_live_records: int
    missing: list[str] = field(default_factory=list)  # live in the CRM, absent or dead in store
    stale: list[str] = field(default_factory=list)  # the CRM's copy is newer than the stored one
    ghosts: list[str] = field(default_factory=list)  # live in store, gone from the CRM
    pending: int = 0  # changed at or after the cursor: the next incremental pull brings them

    @property
    def to_fetch(self) -> list[str]:
        return [*self.missing, *self.stale]


def compare_inventories(
    crm: pl.DataFrame, stored: pl.DataFrame, cursor: datetime | None
) -> Reconciliation:
    """Compare a CRM inventory (`source_id`, `modified_at`) with the store's (`source_id`,
    `crm_modified_at`, `is_deleted`). Records the CRM changed at or after `cursor` are pending,
    not gaps; without a cursor the object was never pulled and everything is pending."""
    crm = crm.select(CRM_INVENTORY_SCHEMA.keys()).cast(pl.Schema(CRM_INVENTORY_SCHEMA))
    stored = stored.select(STORE_INVENTORY_SCHEMA.keys()).cast(pl.Schema(STORE_INVENTORY_SCHEMA))
    live = stored.filter(~pl.col("is_deleted"))
    joined = crm.join(stored, on="source_id", how="left")
    behind = pl.lit(False) if cursor is None else pl.col("modified_at") < pl.lit(cursor)
    differs = (
        pl.col("crm_modified_at").is_null()
        | pl.col("is_deleted").fill_null(True)
        | (pl.col("modified_at") > pl.col("crm_modified_at"))
    )
    changed = joined.filter(differs)
    gaps = changed.filter(behind)
    absent = pl.col("crm_modified_at").is_null() | pl.col("is_deleted").fill_null(True)
    ghosts = live.join(crm, on="source_id", how="anti")
    return Reconciliation(
        crm_records=crm.height,
        stored_live_records=live.height,
        missing=sorted(gaps.filter(absent)["source_id"].to_list()),
        stale=sorted(gaps.filter(~absent)["source_id"].to_list()),
        ghosts=sorted(ghosts["source_id"].to_list()),
        pending=changed.height - gaps.height,
    )
