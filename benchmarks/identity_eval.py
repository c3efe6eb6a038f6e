"""Identity-resolution quality against ground truth: pairwise and cluster precision/recall.

A clustering is a frame (record_id, unified_id); truth is (record_id, person_id). Two records are
a *predicted pair* when they share a unified_id and a *true pair* when they share a person_id.

* pairwise: precision = true predicted pairs / predicted pairs, recall = true predicted pairs /
  true pairs, F1 their harmonic mean. Pair counts come from group sizes (n choose 2 per cluster,
  per person, per (cluster, person)), never from materialised pairs, so 1M records take a second.
* cluster: precision = share of predicted clusters of two or more records whose records are all one
  person; recall = share of people with two or more records whose records all sit in one
  predicted cluster. Both are strict: one wrong edge spoils a whole cluster (notes §5.4).
* by language: the same pair counts for pairs whose records are both "ja", both "en", or "mixed"
  (one of each), so false merges and misses can be traced to the Japanese or English rules.

Records are the truth's records: one missing from the prediction counts as its own singleton,
prediction rows for records without truth are ignored (and counted).
"""

from dataclasses import dataclass, field

import polars as pl

_UNKNOWN = "unknown"
_MIXED = "mixed"


def _ratio(numerator: int, denominator: int) -> float:
    # An empty denominator means nothing could go wrong: precision of no merges is perfect.
    return numerator / denominator if denominator else 1.0


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _pairs(frame: pl.DataFrame, keys: list[str]) -> int:
    """Sum over groups of `keys` of n choose 2."""
    if frame.height == 0:
        return 0
    sizes = frame.group_by(keys).len()
    return int((sizes["len"] * (sizes["len"] - 1) // 2).sum())


@dataclass(frozen=True)
class PairCounts:
    """Pair counts of one slice (all pairs, or the pairs of one language combination)."""

    predicted: int  # pairs of records in one predicted cluster
    true: int  # pairs of records of one person
    correct: int  # pairs that are both

    @property
    def false_merges(self) -> int:
        return self.predicted - self.correct

    @property
    def missed(self) -> int:
        return self.true - self.correct

    @property
    def precision(self) -> float:
        return _ratio(self.correct, self.predicted)

    @property
    def recall(self) -> float:
        return _ratio(self.correct, self.true)

    @property
    def f1(self) -> float:
        return _f1(self.precision, self.recall)


@dataclass(frozen=True)
class ClusterCounts:
    """Strict cluster-level counts (only groups of two or more records count)."""

    predicted: int  # predicted clusters with >= 2 records
    pure: int  # ... whose records are all one person
    true: int  # people with >= 2 records
    complete: int  # ... whose records all sit in one predicted cluster

    @property
    def precision(self) -> float:
        return _ratio(self.pure, self.predicted)

    @property
    def recall(self) -> float:
        return _ratio(self.complete, self.true)


@dataclass(frozen=True)
class Evaluation:
    """Everything `evaluate` measures; `by_language` keys are "ja", "en", "mixed" (and "unknown"
    for records without a language)."""

    records: int
    pairwise: PairCounts
    cluster: ClusterCounts
    by_language: dict[str, PairCounts] = field(default_factory=dict)
    # Clusters with records of several people / people split over clusters, by the language of
    # their records ("mixed" when both occur).
    impure_clusters_by_language: dict[str, int] = field(default_factory=dict)
    split_people_by_language: dict[str, int] = field(default_factory=dict)
    missing_predictions: int = 0  # truth records absent from the prediction (taken as singletons)
    ignored_predictions: int = 0  # predicted records without truth


def _joined(
    predicted: pl.DataFrame, truth: pl.DataFrame, language: pl.DataFrame | None
) -> pl.DataFrame:
    """(record_id, cluster, person, language) over the truth's records."""
    pred = predicted.select(
        pl.col("record_id").cast(pl.String), pl.col("unified_id").cast(pl.String).alias("cluster")
    ).unique("record_id", keep="first")
    frame = truth.select(
        pl.col("record_id").cast(pl.String), pl.col("person_id").cast(pl.String).alias("person")
    ).join(pred, on="record_id", how="left")
    # A record the resolver did not return stands alone; its record_id cannot collide with a
    # unified_id because of the prefix.
    frame = frame.with_columns(
        pl.coalesce("cluster", pl.lit("\x00missing:") + pl.col("record_id")).alias("cluster")
    )
    if language is None:
        return frame.with_columns(pl.lit(_UNKNOWN).alias("language"))
    lang = language.select(
        pl.col("record_id").cast(pl.String), pl.col("language").cast(pl.String)
    ).unique("record_id", keep="first")
    return frame.join(lang, on="record_id", how="left").with_columns(
        pl.col("language").fill_null(_UNKNOWN)
    )


def _group_language(frame: pl.DataFrame, key: str) -> pl.DataFrame:
    """(key, language) for groups of >= 2 records: their one language, or "mixed"."""
    return (
        frame.group_by(key)
        .agg(pl.len().alias("n"), pl.col("language").unique().alias("languages"))
        .filter(pl.col("n") > 1)
        .select(
            key,
            pl.when(pl.col("languages").list.len() == 1)
            .then(pl.col("languages").list.first())
            .otherwise(pl.lit(_MIXED))
            .alias("language"),
        )
    )


def evaluate(
    predicted: pl.DataFrame,
    truth: pl.DataFrame,
    *,
    language: pl.DataFrame | None = None,
) -> Evaluation:
    """Quality of a clustering (`record_id`, `unified_id`) against truth (`record_id`,
    `person_id`); `language` (`record_id`, `language`) adds the per-language breakdown."""
    frame = _joined(predicted, truth, language)
    missing = frame.filter(pl.col("cluster").str.starts_with("\x00missing:")).height
    ignored = predicted.join(truth, on="record_id", how="anti").height

    pairwise = PairCounts(
        predicted=_pairs(frame, ["cluster"]),
        true=_pairs(frame, ["person"]),
        correct=_pairs(frame, ["cluster", "person"]),
    )

    by_cluster = frame.group_by("cluster").agg(
        pl.len().alias("n"), pl.col("person").n_unique().alias("people")
    )
    by_person = frame.group_by("person").agg(
        pl.len().alias("n"), pl.col("cluster").n_unique().alias("clusters")
    )
    multi_clusters = by_cluster.filter(pl.col("n") > 1)
    multi_people = by_person.filter(pl.col("n") > 1)
    cluster = ClusterCounts(
        predicted=multi_clusters.height,
        pure=multi_clusters.filter(pl.col("people") == 1).height,
        true=multi_people.height,
        complete=multi_people.filter(pl.col("clusters") == 1).height,
    )

    # Pairs inside one language: the same counts restricted to records of that language. Mixed
    # pairs are what is left of the totals.
    by_language: dict[str, PairCounts] = {}
    languages = sorted(frame["language"].unique().to_list())
    for lang in languages:
        part = frame.filter(pl.col("language") == lang)
        by_language[lang] = PairCounts(
            predicted=_pairs(part, ["cluster"]),
            true=_pairs(part, ["person"]),
            correct=_pairs(part, ["cluster", "person"]),
        )
    if len(languages) > 1:
        by_language[_MIXED] = PairCounts(
            predicted=pairwise.predicted - sum(c.predicted for c in by_language.values()),
            true=pairwise.true - sum(c.true for c in by_language.values()),
            correct=pairwise.correct - sum(c.correct for c in by_language.values()),
        )

    impure = multi_clusters.filter(pl.col("people") > 1).select("cluster")
    split = multi_people.filter(pl.col("clusters") > 1).select("person")
    impure_lang = _group_language(frame.join(impure, on="cluster", how="semi"), "cluster")
    split_lang = _group_language(frame.join(split, on="person", how="semi"), "person")
    return Evaluation(
        records=frame.height,
        pairwise=pairwise,
        cluster=cluster,
        by_language=by_language,
        impure_clusters_by_language=dict(
            impure_lang["language"].value_counts().sort("language").iter_rows()
        ),
        split_people_by_language=dict(
            split_lang["language"].value_counts().sort("language").iter_rows()
        ),
        missing_predictions=missing,
        ignored_predictions=ignored,
    )


def _examples(
    frame: pl.DataFrame, records: pl.DataFrame, group: str, other: str, limit: int
) -> pl.DataFrame:
    """The records of up to `limit` `group`s (clusters or people) spread over several `other`s."""
    spread = (
        frame.group_by(group)
        .agg(pl.col(other).n_unique().alias("n"))
        .filter(pl.col("n") > 1)
        .sort(group)
        .head(limit)
    )
    return (
        frame.join(spread.select(group), on=group, how="semi")
        .join(records, on="record_id", how="left")
        .sort(group, other, "record_id")
    )


def false_merge_examples(
    predicted: pl.DataFrame, truth: pl.DataFrame, records: pl.DataFrame, *, limit: int = 5
) -> pl.DataFrame:
    """Up to `limit` predicted clusters that hold several people, with their records' columns
    (for eyeballing why they merged)."""
    return _examples(_joined(predicted, truth, None), records, "cluster", "person", limit)


def missed_examples(
    predicted: pl.DataFrame, truth: pl.DataFrame, records: pl.DataFrame, *, limit: int = 5
) -> pl.DataFrame:
    """Up to `limit` people whose records are split over several predicted clusters."""
    return _examples(_joined(predicted, truth, None), records, "person", "cluster", limit)


def format_evaluation(name: str, result: Evaluation, seconds: float | None = None) -> list[str]:
    """Human-readable lines for a benchmark printout."""
    p, c = result.pairwise, result.cluster
    timing = f" in {seconds:.2f} s" if seconds is not None else ""
    lines = [
        f"{name}{timing}: pairwise P {p.precision:.4f} R {p.recall:.4f} F1 {p.f1:.4f} "
        f"({p.correct:,} of {p.predicted:,} predicted pairs correct, {p.true:,} true pairs); "
        f"cluster P {c.precision:.4f} ({c.pure:,}/{c.predicted:,}) "
        f"R {c.recall:.4f} ({c.complete:,}/{c.true:,})"
    ]
    for lang, counts in result.by_language.items():
        lines.append(
            f"    {lang:<7} pairs: P {counts.precision:.4f} R {counts.recall:.4f}  "
            f"false merges {counts.false_merges:,}, missed {counts.missed:,} "
            f"(of {counts.true:,} true)"
        )
    if result.impure_clusters_by_language or result.split_people_by_language:
        lines.append(
            f"    impure clusters by language {result.impure_clusters_by_language}, "
            f"split people by language {result.split_people_by_language}"
        )
    if result.missing_predictions or result.ignored_predictions:
        lines.append(
            f"    {result.missing_predictions:,} truth records missing from the prediction, "
            f"{result.ignored_predictions:,} predicted records without truth"
        )
    return lines


def shared_evidence(
    truth: pl.DataFrame, records: pl.DataFrame, columns: list[str]
) -> dict[str, int]:
    """How many true pairs agree exactly on each of `columns` (both non-null), are hard-linked
    (one lists the other in `linked_record_ids`), agree on any of these, or on none: the recall
    a resolver can reach without fuzzy evidence. Materialises the true pairs only (people have
    a handful of records each, so this stays small at 1M records)."""
    present = [c for c in columns if c in records.columns]
    features = records.select("record_id", *present, "linked_record_ids")
    pairs = (
        truth.select("record_id", "person_id")
        .join(truth.select("record_id", "person_id"), on="person_id", suffix="_r")
        .filter(pl.col("record_id") < pl.col("record_id_r"))
        .join(features, on="record_id")
        .join(features, left_on="record_id_r", right_on="record_id", suffix="_r")
    )
    agree = {c: (pl.col(c) == pl.col(f"{c}_r")).fill_null(False) for c in present}
    agree["hard_link"] = pl.col("linked_record_ids").list.contains(pl.col("record_id_r")).fill_null(
        False
    ) | pl.col("linked_record_ids_r").list.contains(pl.col("record_id")).fill_null(False)
    flags = pairs.select(**agree)
    counts = {name: int(flags[name].sum()) for name in agree}
    any_flag = flags.select(pl.any_horizontal(pl.all()).alias("any"))["any"]
    counts["any"] = int(any_flag.sum())
    counts["none"] = flags.height - counts["any"]
    counts["pairs"] = flags.height
    return counts
