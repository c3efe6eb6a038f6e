"""The recall ceiling of identity resolution at precision 0.999 on the generator's truth.

Issue 5 asks for recall >= 0.95 at precision >= 0.999. This measures how much recall any
resolver can reach at that precision when it decides a pair by what the records say about it:
an oracle that holds the truth sorts every class of pairs (one class per combination of the
comparison levels below) by its share of true pairs and merges whole classes, purest first,
while the merged pairs stay at least 0.999 precise. No rule over these comparisons can do
better, because a rule cannot tell apart two pairs of one class.

The oracle is generous on purpose, so its figure is an upper bound:
- It sees the resolver's comparison levels (email, name, company, phone, job title), its vetoes,
  hard links, plus how common the name is and how big the firm is in the data, the evidence
  that could still tell a person from a namesake.
- It picks classes with the truth in hand (a resolver has to learn them), down to classes of one
  or two pairs.
- Its candidate pairs are every pair of records that share a name key, a romaji or kana
  reading, an address, a local part, a number, or a surname or given name at one firm. A class
  is judged only by the false pairs in that set. Pairs that share none of these stay out of it,
  and they are false far more often than true.
- The last column closes the merged pairs transitively. That can only add pairs, false ones too.

    .venv/bin/python -m benchmarks.identity_ceiling               # 50,000 records
"""

import argparse
import time
from datetime import datetime

import polars as pl

from benchmarks import identity_data
from benchmarks.identity_eval import evaluate
from benchmarks.identity_quality import TARGET_PRECISION, machine, resolver_version
from orchestration.funnel import identity

# Keys whose sharing makes two records a candidate pair (a superset of the resolver's blocking).
_CANDIDATE_KEYS: tuple[tuple[str, ...], ...] = (
    ("name_key",),
    ("name_romaji",),
    ("name_reading",),
    ("email",),
    ("email_local",),
    ("phone",),
    ("family_key", "company_key"),
    ("given_key", "company_key"),
    ("family_key", "company_domain"),
)
# A key shared by more records than this (a switchboard, "info") pairs everyone with everyone;
# such pairs are all false and would only lower every class's precision, so they stay out.
_MAX_GROUP = 1_000


def _bucket(count: pl.Expr, edges: tuple[int, ...]) -> pl.Expr:
    """'<=e' for the first edge the count is within, '>last' above them all, null for null."""
    expr = pl.when(count.is_null()).then(pl.lit(None, dtype=pl.String))
    for edge in edges:
        expr = expr.when(count <= edge).then(pl.lit(f"<={edge}"))
    return expr.otherwise(pl.lit(f">{edges[-1]}"))


def candidate_pairs(df: pl.DataFrame) -> pl.DataFrame:
    """(a, b) index pairs, a < b, of records sharing any candidate key."""
    parts = []
    for key in _CANDIDATE_KEYS:
        keyed = df.filter(pl.all_horizontal(pl.col(c).is_not_null() for c in key))
        if key == ("email_local",):
            keyed = keyed.filter(pl.col("email_local").str.len_chars() >= 4)
        groups = keyed.group_by(key).len().filter(pl.col("len").is_between(2, _MAX_GROUP))
        members = keyed.join(groups, on=list(key), how="semi").select("_i", *key)
        parts.append(
            members.join(members.rename({"_i": "b"}), on=list(key))
            .filter(pl.col("_i") < pl.col("b"))
            .select(pl.col("_i").alias("a"), "b")
        )
    return pl.concat(parts).unique()


def classed_pairs(data: identity_data.IdentityData) -> tuple[pl.DataFrame, int, pl.DataFrame]:
    """Candidate pairs with their class columns and truth; the number of true pairs; the
    matching frame (for record ids)."""
    df = identity._as_frame(data.records)
    df = identity._with_flags(df)
    hard = identity._hard_edges(df)
    email, _shared = identity._email_edges(df)
    params = identity.estimate_params(df, pl.concat([hard, email]).unique())
    df = identity._with_features(df, params)
    live = ~pl.col("is_deleted")
    name_n = df.filter(live).group_by("name_key").len("name_n")
    firm_n = df.filter(live).group_by("company_key").len("firm_n")
    df = df.join(name_n, on="name_key", how="left").join(firm_n, on="company_key", how="left")

    pairs = pl.concat([candidate_pairs(df.filter(live)), hard.select("a", "b")]).unique()
    compared = identity._vetoes(identity._compare(identity._pair_frame(df, pairs)))
    side = df.select("_i", "name_n", "firm_n", "record_id").join(
        data.truth, on="record_id", how="left"
    )
    classed = (
        compared.select(
            "a",
            "b",
            *identity.LEVELS,
            "title",
            pl.col("veto").is_not_null().alias("vetoed"),
        )
        .join(side.rename({"_i": "a"}), on="a", how="left")
        .join(side.rename({"_i": "b"}), on="b", how="left", suffix="_b")
        .join(hard.select("a", "b", pl.lit(True).alias("hard_link")), on=["a", "b"], how="left")
        .select(
            "a",
            "b",
            *identity.LEVELS,
            "title",
            "vetoed",
            pl.col("hard_link").fill_null(False),
            # The rarer side's name: a name only one of them holds says nothing more.
            _bucket(pl.min_horizontal("name_n", "name_n_b"), (2, 5, 20)).alias("name_rarity"),
            _bucket(pl.col("firm_n"), (5, 50)).alias("firm_size"),
            (pl.col("person_id") == pl.col("person_id_b")).alias("true"),
        )
    )
    truth_sizes = data.truth.group_by("person_id").len()
    true_pairs = int((truth_sizes["len"] * (truth_sizes["len"] - 1) // 2).sum())
    return classed, true_pairs, df.select("_i", "record_id")


CLASS_COLUMNS = (*identity.LEVELS, "title", "vetoed", "hard_link", "name_rarity", "firm_size")


def oracle(classed: pl.DataFrame, precision: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Classes (with true, false and cumulative counts) purest first, and the merged pairs:
    the longest run of classes whose pairs together stay at least `precision` precise."""
    classes = (
        classed.group_by(CLASS_COLUMNS)
        .agg(pl.col("true").sum().alias("tp"), (~pl.col("true")).sum().alias("fp"))
        .with_columns((pl.col("tp") / (pl.col("tp") + pl.col("fp"))).alias("purity"))
        .sort(["purity", "tp"], descending=True)
        .with_columns(
            pl.col("tp").cum_sum().alias("cum_tp"), pl.col("fp").cum_sum().alias("cum_fp")
        )
        .with_columns(
            (pl.col("cum_tp") / (pl.col("cum_tp") + pl.col("cum_fp"))).alias("cum_precision")
        )
    )
    # Purity falls down the list, so the cumulative precision only falls: the classes that
    # keep it are a prefix.
    cut = classes.filter(pl.col("cum_precision") >= precision).height
    taken = classes.head(cut).select(CLASS_COLUMNS)
    merged = classed.join(taken, on=list(CLASS_COLUMNS), how="semi", nulls_equal=True)
    return classes.with_row_index("rank").with_columns(
        (pl.col("rank") < cut).alias("taken")
    ), merged


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=identity_data.DEFAULT_SEED)
    args = parser.parse_args()

    print(f"benchmark: identity_ceiling ({machine()}) {datetime.now():%F %H:%M}")
    print(f"resolver: {resolver_version()}")
    started = time.perf_counter()
    data = identity_data.load_records(args.records, args.seed)
    classed, true_pairs, ids = classed_pairs(data)
    classes, merged = oracle(classed, TARGET_PRECISION)
    tp, fp = int(merged["true"].sum()), int((~merged["true"]).sum())
    found = int(classed["true"].sum())
    print(
        f"{data.records.height:,} records, {true_pairs:,} true pairs; {classed.height:,} "
        f"candidate pairs in {classes.height:,} classes hold {found:,} of the true pairs "
        f"({found / true_pairs:.1%}); {time.perf_counter() - started:.1f} s"
    )

    labels = identity._components(ids.height, merged.select("a", "b"))
    clusters = ids.join(labels, on="_i").select(
        "record_id", pl.col("label").cast(pl.String).alias("unified_id")
    )
    closed = evaluate(clusters, data.truth)
    resolved = evaluate(identity.resolve(data.records), data.truth)
    print()
    print("| | pairwise P | pairwise R | cluster P | cluster R |")
    print("|---|---|---|---|---|")
    print(
        f"| ceiling: the oracle's classes at P >= {TARGET_PRECISION} | {tp / max(tp + fp, 1):.4f} "
        f"| {tp / true_pairs:.4f} | | |"
    )
    print(
        f"| the same pairs closed transitively | {closed.pairwise.precision:.4f} "
        f"| {closed.pairwise.recall:.4f} | {closed.cluster.precision:.4f} "
        f"| {closed.cluster.recall:.4f} |"
    )
    print(
        f"| leadsync `resolve` | {resolved.pairwise.precision:.4f} "
        f"| {resolved.pairwise.recall:.4f} | {resolved.cluster.precision:.4f} "
        f"| {resolved.cluster.recall:.4f} |"
    )
    print()
    print("Largest classes the oracle must leave apart (true pairs, false pairs):")
    left = classes.filter(~pl.col("taken") & (pl.col("tp") > 0)).sort("tp", descending=True)
    for row in left.head(12).iter_rows(named=True):
        what = ", ".join(f"{c}={row[c]}" for c in CLASS_COLUMNS)
        print(f"  {row['tp']:>6,} true, {row['fp']:>8,} false: {what}")
    missed = true_pairs - tp
    print(
        f"true pairs out of reach at P >= {TARGET_PRECISION}: {missed:,} "
        f"({missed / true_pairs:.1%}); in no candidate pair at all: {true_pairs - found:,}"
    )


if __name__ == "__main__":
    main()
