"""Identity resolution v1: which lead records are the same person (precision first).

Rules, strongest first (shared/reference/entity_resolution_notes.md §5.2-5.3):

* tier 0, band "hard_link": a record's `linked_record_ids` (HubSpot's Salesforce ids and merged
  ids, Salesforce ConvertedContactId and MasterRecordId) are identity facts. Edges to records that
  are not in the input are ignored. Deleted records take part here, so a merge loser stays with its
  winner and its history is not orphaned.
* tier 1, band "email": records of live leads that share a normalised email (primary or secondary)
  are merged, unless the address is a role mailbox (info@, toiawase@...: shared, never a person)
  or the group's given names conflict. A conflict is two given names that differ after folding
  where neither is a prefix of the other (Rob / Robert is fine) and whose order-free full-name
  keys also differ (a first/last swap is not a conflict). A vetoed group is not merged by email at
  all; its members keep whatever other evidence they have.
* everything else is its own cluster, band "singleton".

A record's band says how it joined: "hard_link" if it has a hard link inside its cluster, else
"email" if it sits in a cluster of several records, else "singleton".

Clusters are connected components computed with min-label propagation plus pointer jumping over
polars joins (no graph library). Unified ids are stable: "UL-" + the first 12 hex digits of the
SHA-1 of the cluster's smallest record_id, except that an id from the `previous` identity frame is
kept by the cluster holding most of its members, so ids survive new members joining.
"""

import hashlib
from collections.abc import Mapping, Sequence

import polars as pl

from orchestration.funnel.model import IDENTITY_SCHEMA, empty_frame
from orchestration.funnel.normalize import (
    email_is_role_expr,
    given_name_key_expr,
    name_key_expr,
    normalize_email_expr,
)

BAND_HARD_LINK = "hard_link"
BAND_EMAIL = "email"
BAND_SINGLETON = "singleton"

# The columns resolve() reads; anything missing from the input is treated as null.
_INPUT_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.String(),
    "linked_record_ids": pl.List(pl.String()),
    "email": pl.String(),
    "secondary_emails": pl.List(pl.String()),
    "email_is_role": pl.Boolean(),
    "first_name": pl.String(),
    "last_name": pl.String(),
    "name_key": pl.String(),
    "is_deleted": pl.Boolean(),
}


def _as_frame(records: pl.DataFrame | Sequence[Mapping[str, object]]) -> pl.DataFrame:
    """Input records -> the columns resolve() needs, typed; missing columns are null."""
    if isinstance(records, pl.DataFrame):
        df = records
        missing = [c for c in _INPUT_SCHEMA if c not in df.columns]
        df = df.with_columns(pl.lit(None, dtype=_INPUT_SCHEMA[c]).alias(c) for c in missing)
        df = df.select(pl.col(c).cast(t) for c, t in _INPUT_SCHEMA.items())
    else:
        df = pl.from_dicts(
            [dict(r) for r in records], schema=_INPUT_SCHEMA, infer_schema_length=None
        )
    # Normalising again is idempotent, so callers may hand over raw emails and names too; the
    # role flag is recomputed where the caller did not provide it.
    return (
        df.filter(pl.col("record_id").is_not_null())
        .unique("record_id", keep="first", maintain_order=True)
        .with_columns(
            normalize_email_expr("email").alias("email"),
            pl.col("secondary_emails").list.eval(normalize_email_expr(pl.element())),
            pl.coalesce(pl.col("name_key"), name_key_expr("first_name", "last_name")).alias(
                "name_key"
            ),
            given_name_key_expr("first_name").alias("given_key"),
            pl.col("is_deleted").fill_null(False),
        )
    )


def _hard_edges(df: pl.DataFrame) -> pl.DataFrame:
    """(a, b) pairs from linked_record_ids where both records are present."""
    present = df.select(pl.col("record_id").alias("b"))
    return (
        df.select(pl.col("record_id").alias("a"), pl.col("linked_record_ids").alias("b"))
        .explode("b")
        .filter(pl.col("b").is_not_null() & (pl.col("a") != pl.col("b")))
        .join(present, on="b", how="semi")
        .unique()
    )


def _email_edges(df: pl.DataFrame) -> pl.DataFrame:
    """Star edges (record, smallest record of its email group) for non-vetoed email groups."""
    # Email is multi-valued (HubSpot additional emails): every address is evidence, except role
    # mailboxes. Deleted records only join through hard links, so stale data cannot veto or
    # bridge live records.
    addresses = (
        df.filter(~pl.col("is_deleted"))
        .select(
            "record_id",
            "given_key",
            "name_key",
            pl.concat_list(
                pl.concat_list("email").list.drop_nulls(),
                pl.col("secondary_emails").fill_null([]),
            ).alias("address"),
        )
        .explode("address")
        .filter(pl.col("address").is_not_null())
        .filter(~email_is_role_expr("address").fill_null(True))
        .unique(["record_id", "address"])
    )
    groups = (
        addresses.group_by("address")
        .agg(pl.col("record_id").n_unique().alias("n"))
        .filter(pl.col("n") > 1)
    )
    candidates = addresses.join(groups.select("address"), on="address", how="semi")

    names = (
        candidates.filter(pl.col("given_key").is_not_null())
        .select("address", "given_key", "name_key")
        .unique()
    )
    pairs = names.join(names, on="address", suffix="_o").filter(
        (pl.col("given_key") < pl.col("given_key_o"))
        & ~pl.col("given_key").str.starts_with(pl.col("given_key_o"))
        & ~pl.col("given_key_o").str.starts_with(pl.col("given_key"))
        & ~pl.col("name_key").eq_missing(pl.col("name_key_o"))
    )
    vetoed = pairs.select("address").unique()
    merged = candidates.join(vetoed, on="address", how="anti")
    return (
        merged.with_columns(pl.col("record_id").min().over("address").alias("b"))
        .select(pl.col("record_id").alias("a"), "b")
        .filter(pl.col("a") != pl.col("b"))
        .unique()
    )


def _components(nodes: pl.Series, edges: pl.DataFrame) -> pl.DataFrame:
    """Connected components: (record_id, label) with label = smallest record_id in the component.

    Min-label propagation over the undirected edges, with pointer jumping (label := label of the
    label) so long chains converge in a logarithmic number of rounds.
    """
    labels = pl.DataFrame({"record_id": nodes}).with_columns(pl.col("record_id").alias("label"))
    if edges.height == 0:
        return labels
    both = pl.concat(
        [edges.select("a", "b"), edges.select(pl.col("b").alias("a"), pl.col("a").alias("b"))]
    ).unique()
    while True:
        neighbour_min = (
            both.join(labels, left_on="b", right_on="record_id")
            .group_by("a")
            .agg(pl.col("label").min().alias("n_label"))
        )
        step = (
            labels.join(neighbour_min, left_on="record_id", right_on="a", how="left")
            .with_columns(pl.min_horizontal("label", "n_label").alias("label"))
            .drop("n_label")
        )
        # The label's own root may already be smaller; adopt it too (pointer jumping).
        jumped = (
            step.join(
                step.select(pl.col("record_id").alias("label"), pl.col("label").alias("root")),
                on="label",
                how="left",
            )
            .with_columns(pl.min_horizontal("label", "root").alias("label"))
            .drop("root")
        )
        changed = (
            jumped.join(labels, on="record_id", suffix="_old")
            .filter(pl.col("label") != pl.col("label_old"))
            .height
        )
        labels = jumped
        if changed == 0:
            return labels


def _fresh_id(record_id: str, attempt: int = 0) -> str:
    seed = record_id if attempt == 0 else f"{record_id}#{attempt}"
    return "UL-" + hashlib.sha1(seed.encode("utf-8")).hexdigest()[:12]


def _assign_ids(labels: pl.DataFrame, previous: pl.DataFrame | None) -> pl.DataFrame:
    """(label) -> unified_id, keeping previous ids where the previous frame allows."""
    clusters = labels.select("label").unique().sort("label")
    kept = pl.DataFrame(schema={"label": pl.String, "unified_id": pl.String})
    if previous is not None and previous.height > 0:
        prev = previous.select("record_id", pl.col("unified_id").alias("prev_id")).filter(
            pl.col("prev_id").is_not_null()
        )
        votes = (
            labels.join(prev, on="record_id", how="inner")
            .group_by("label", "prev_id")
            .agg(pl.len().alias("votes"))
        )
        # Each cluster's candidate: the previous id most of its members held (ties: smallest).
        best = (
            votes.sort(["label", "votes", "prev_id"], descending=[False, True, False])
            .group_by("label", maintain_order=True)
            .first()
        )
        # A previous id that is now best for several clusters (its cluster split) stays with the
        # cluster holding most of its members (ties: smallest label); the others get fresh ids.
        kept = (
            best.sort(["prev_id", "votes", "label"], descending=[False, True, False])
            .group_by("prev_id", maintain_order=True)
            .first()
            .select("label", pl.col("prev_id").alias("unified_id"))
        )
    fresh_labels = clusters.join(kept, on="label", how="anti")["label"].to_list()
    # hashlib is the one per-value Python step here: SHA-1 has no polars expression. It runs once
    # per new cluster, not per record.
    taken = set(kept["unified_id"].to_list())
    fresh_ids: list[str] = []
    for label in fresh_labels:
        attempt, uid = 0, _fresh_id(label)
        # A fresh id must not reuse a kept one (e.g. the split-off part of a cluster whose id was
        # derived from the very record that left it).
        while uid in taken:
            attempt += 1
            uid = _fresh_id(label, attempt)
        taken.add(uid)
        fresh_ids.append(uid)
    fresh = pl.DataFrame(
        {"label": fresh_labels, "unified_id": fresh_ids},
        schema={"label": pl.String, "unified_id": pl.String},
    )
    return pl.concat([kept, fresh])


def resolve(
    records: pl.DataFrame | Sequence[Mapping[str, object]],
    previous: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Canonical lead records -> IDENTITY_SCHEMA (record_id, unified_id, band), one row per record.

    `records` is a CANONICAL_LEAD_SCHEMA frame or a list of dicts with `record_id` and any
    canonical fields; `previous` is an earlier output of this function, used to keep ids stable.
    """
    df = _as_frame(records)
    if df.height == 0:
        return empty_frame(IDENTITY_SCHEMA)

    hard = _hard_edges(df)
    email = _email_edges(df)
    labels = _components(df["record_id"], pl.concat([hard, email]))

    hard_members = pl.concat([hard["a"], hard["b"]]).unique()
    sizes = labels.group_by("label").agg(pl.len().alias("size"))
    ids = _assign_ids(labels, previous)
    return (
        labels.join(sizes, on="label")
        .join(ids, on="label")
        .with_columns(
            pl.when(pl.col("record_id").is_in(hard_members.implode()))
            .then(pl.lit(BAND_HARD_LINK))
            .when(pl.col("size") > 1)
            .then(pl.lit(BAND_EMAIL))
            .otherwise(pl.lit(BAND_SINGLETON))
            .alias("band")
        )
        .select(pl.col(c).cast(t) for c, t in IDENTITY_SCHEMA.items())
        .sort("record_id")
    )
