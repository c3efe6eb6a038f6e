"""Identity resolution quality: leadsync against splink 5 (DuckDB), side by side on one dataset.

Issue 5 asks, on the generator's ground truth (English and Japanese, hard negatives by
construction): pairwise and cluster precision of the auto-merge band >= 0.999 and recall >= 0.95,
and against splink on the same data equal or better F1 at equal or better precision, with the
time of both.

Both resolvers get the same canonical records (benchmarks/identity_data.py: generator ->
normalize_leads). leadsync's clustering is `identity.resolve`'s unified_id (records sharing one
are merged; review pairs are not). splink gets a model as strong as we can make it on the same
columns: blocking on email, name + company, phone, reading + domain, email local part + domain
and hard links; comparisons on email, names, reading, phone, company, domain and hard links with
term-frequency adjustments on names and companies; u by random sampling; m from the pairs every
CRM already asserts (hard links, shared email) through `estimate_m_from_pairwise_labels`, the
same labels leadsync learns its m from, which scored better here than EM (EM locks onto "same
company" on this data: `--splink-m em` to compare; both use no ground truth). Its pairwise
predictions are clustered with `cluster_pairwise_predictions_at_threshold` at (a) its best-F1
threshold and (b) the lowest threshold whose pairwise precision is at least leadsync's. The
thresholds are found with an exact sweep over the scored pairs (union-find, strongest first),
then splink clusters at them and both clusterings go through the same metrics
(benchmarks/identity_eval.py).

    .venv/bin/python -m benchmarks.identity_quality                # ~50,000 records
    .venv/bin/python -m benchmarks.identity_quality --records 200000
"""

import argparse
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from benchmarks import identity_data
from benchmarks.identity_eval import Evaluation, evaluate, format_evaluation, shared_evidence
from orchestration.funnel import identity
from orchestration.funnel.normalize import given_name_key_expr

TARGET_PRECISION = 0.999
TARGET_RECALL = 0.95
# Columns whose exact agreement the header counts over the true pairs (what is findable at all).
_EVIDENCE_COLUMNS = ("email", "phone", "name_key", "name_reading", "company_key", "company_domain")


def machine() -> str:
    """Cores and RAM of this machine, for the printout."""
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return f"{os.cpu_count()} cores, {pages / 2**30:.0f} GiB RAM"


def resolver_version() -> str:
    """Which resolver is in the tree: identity.py's content hash and API."""
    path = Path(identity.__file__)
    digest = hashlib.sha1(path.read_bytes()).hexdigest()[:12]
    return f"orchestration/funnel/identity.py sha1 {digest}"


# --------------------------------------------------------------------------------------------
# leadsync
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One resolver's clustering and what it cost."""

    name: str
    clusters: pl.DataFrame  # record_id, unified_id
    seconds: float
    evaluation: Evaluation
    detail: str = ""


def run_leadsync(data: identity_data.IdentityData, language: pl.DataFrame) -> Run:
    """`identity.resolve` on the records (already in memory), timed."""
    started = time.perf_counter()
    out = identity.resolve(data.records)
    seconds = time.perf_counter() - started
    bands = dict(out["band"].value_counts().sort("band").iter_rows())
    rules = (
        dict(out["rule"].fill_null("-").value_counts().sort("rule").iter_rows())
        if "rule" in out.columns
        else {}
    )
    clusters = out.select("record_id", "unified_id")
    result = evaluate(clusters, data.truth, language=language)
    detail = f"records by band {bands}" + (f", by rule {rules}" if rules else "")
    return Run("leadsync", clusters, seconds, result, detail)


# --------------------------------------------------------------------------------------------
# splink
# --------------------------------------------------------------------------------------------

# Shared phone lines (toll-free, representative numbers) are company evidence at most; a fair
# model should not treat them as a person's phone.
_SHARED_PHONE_TYPES = ("toll_free", "shared_cost", "premium_rate", "uan", "voip")


def splink_input(records: pl.DataFrame) -> pl.DataFrame:
    """The canonical columns splink compares, prepared as well as leadsync's own are: role
    mailboxes are no person's address, shared phone lines no person's phone, hard links become
    a list of record ids (a record's own id plus the ids it links to). Columns that the canonical
    schema may not have yet are derived or left out (checked at run time)."""
    cols = set(records.columns)

    def col(name: str, fallback: pl.Expr | None = None) -> pl.Expr:
        if name in cols:
            return pl.col(name)
        return fallback if fallback is not None else pl.lit(None, dtype=pl.String)

    email = pl.when(~col("email_is_role", pl.lit(False)).fill_null(False)).then(col("email"))
    phone = col("phone")
    if "phone_type" in cols:
        phone = pl.when(~pl.col("phone_type").is_in(_SHARED_PHONE_TYPES).fill_null(False)).then(
            phone
        )
    company_domain = (
        col("company_domain")
        if "company_domain" in cols
        else pl.when(~col("email_is_free", pl.lit(True)).fill_null(True)).then(col("email_domain"))
    )
    exprs = [
        pl.col("record_id").alias("unique_id"),
        email.alias("email"),
        email.str.split("@").list.first().alias("email_local"),
        col("name_key").alias("name_key"),
        col("given_key", given_name_key_expr("first_name")).alias("given_key"),
        col("family_key", given_name_key_expr("last_name")).alias("family_key"),
        phone.alias("phone"),
        col("company_key").alias("company_key"),
        company_domain.alias("company_domain"),
        pl.concat_list(
            pl.col("record_id"),
            pl.col("linked_record_ids").fill_null(pl.lit([], pl.List(pl.String))),
        ).alias("link_ids"),
    ]
    if "name_reading" in cols:
        exprs.append(pl.col("name_reading"))
    return records.select(exprs)


def splink_settings(columns: list[str]) -> Any:
    """A dedupe model over the prepared columns (see module docstring)."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    has_reading = "name_reading" in columns
    blocking: list[Any] = [
        block_on("email"),
        block_on("name_key", "company_key"),
        block_on("phone"),
        block_on("email_local", "company_domain"),
        block_on("link_ids", arrays_to_explode=["link_ids"]),
    ]
    if has_reading:
        blocking.insert(3, block_on("name_reading", "company_domain"))
    comparisons: list[Any] = [
        cl.CustomComparison(
            [
                cll.NullLevel("email"),
                cll.ExactMatchLevel("email"),
                cll.ExactMatchLevel("email_local").configure(
                    label_for_charts="Exact match on local part"
                ),
                cll.JaroWinklerLevel("email_local", 0.9),
                cll.ElseLevel(),
            ],
            output_column_name="email",
        ),
        cl.JaroWinklerAtThresholds("name_key", [0.92, 0.8]).configure(
            term_frequency_adjustments=True
        ),
        cl.JaroWinklerAtThresholds("given_key", [0.9]),
        cl.JaroWinklerAtThresholds("family_key", [0.9]),
        cl.ExactMatch("phone"),
        cl.JaroWinklerAtThresholds("company_key", [0.9, 0.8]).configure(
            term_frequency_adjustments=True
        ),
        cl.ExactMatch("company_domain"),
        cl.CustomComparison(
            [
                # A record's own id is always in its list: length 1 means it links nowhere, so
                # the comparison says nothing (null) unless one side has links.
                cll.CustomLevel(
                    "len(link_ids_l) = 1 AND len(link_ids_r) = 1", "Neither record has links"
                ).configure(is_null_level=True),
                cll.ArrayIntersectLevel("link_ids", 1).configure(
                    label_for_charts="Hard link (CRM ids say same person)"
                ),
                cll.ElseLevel(),
            ],
            output_column_name="link_ids",
        ),
    ]
    if has_reading:
        comparisons.append(cl.ExactMatch("name_reading"))
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        blocking_rules_to_generate_predictions=blocking,
        comparisons=comparisons,
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
    )


@dataclass(frozen=True)
class SweepPoint:
    """Pairwise counts of the clustering made by every edge at or above `weight`."""

    weight: float
    predicted: int
    correct: int


def sweep(edges: pl.DataFrame, truth: pl.DataFrame) -> list[SweepPoint]:
    """Exact pairwise counts of threshold clustering at every distinct edge weight.

    Edges (`unique_id_l`, `unique_id_r`, `match_weight`) are applied strongest first with a
    union-find; merging clusters A and B adds |A|·|B| predicted pairs, of which Σ_p A[p]·B[p]
    are correct (per person p). Per-cluster person counts merge small into large, so this is
    near-linear in the edges; one pass gives every threshold's clustering quality."""
    ids = truth.select("record_id", "person_id").with_row_index("i")
    index = dict(zip(ids["record_id"].to_list(), ids["i"].to_list(), strict=True))
    person_codes = ids["person_id"].cast(pl.Categorical).to_physical().to_list()
    ordered = edges.sort("match_weight", descending=True)
    lefts = [index.get(x, -1) for x in ordered["unique_id_l"].to_list()]
    rights = [index.get(x, -1) for x in ordered["unique_id_r"].to_list()]
    weights = ordered["match_weight"].to_list()

    parent = list(range(len(person_codes)))
    size = [1] * len(person_codes)
    people: list[dict[int, int] | None] = [None] * len(person_codes)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def counts(root: int) -> dict[int, int]:
        found = people[root]
        if found is None:
            found = {person_codes[root]: 1}
            people[root] = found
        return found

    points: list[SweepPoint] = []
    predicted = correct = 0
    for k, (a, b, w) in enumerate(zip(lefts, rights, weights, strict=True)):
        if a >= 0 and b >= 0:
            ra, rb = find(a), find(b)
            if ra != rb:
                if size[ra] < size[rb]:
                    ra, rb = rb, ra
                big, small = counts(ra), counts(rb)
                predicted += size[ra] * size[rb]
                for person, n in small.items():
                    mine = big.get(person)
                    if mine:
                        correct += mine * n
                    big[person] = (mine or 0) + n
                parent[rb] = ra
                size[ra] += size[rb]
                people[rb] = None
        # One point per distinct weight: the clustering at threshold w includes all ties.
        if k + 1 == len(weights) or weights[k + 1] != w:
            points.append(SweepPoint(w, predicted, correct))
    return points


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(frozen=True)
class SplinkOutcome:
    best_f1: Run
    at_precision: Run | None  # None when no threshold reaches the precision asked for
    best_f1_weight: float
    at_precision_weight: float | None
    max_precision: float  # the best pairwise precision any threshold reaches (with recall > 0)
    train_seconds: float
    predict_seconds: float
    cluster_seconds: float
    scored_pairs: int
    model: str


def tier01_labels(records: pl.DataFrame) -> pl.DataFrame:
    """Pairs every CRM already asserts (the labels leadsync's own m comes from): hard links
    between present records, and records sharing a non-role email (star pairs to the group's
    smallest record_id)."""
    present = records.select(pl.col("record_id").alias("r"))
    hard = (
        records.select(pl.col("record_id").alias("l"), pl.col("linked_record_ids").alias("r"))
        .explode("r")
        .drop_nulls()
        .join(present, on="r", how="semi")
    )
    email = (
        records.filter(pl.col("email").is_not_null() & ~pl.col("email_is_role").fill_null(False))
        .select("record_id", pl.col("record_id").min().over("email").alias("l"))
        .filter(pl.col("record_id") != pl.col("l"))
        .select("l", pl.col("record_id").alias("r"))
    )
    return (
        pl.concat([hard, email])
        .unique()
        .select(
            pl.col("l").alias("unique_id_l"),
            pl.col("r").alias("unique_id_r"),
            pl.lit("records").alias("source_dataset_l"),
            pl.lit("records").alias("source_dataset_r"),
        )
    )


EM_RULES: tuple[tuple[str, ...], ...] = (("email",), ("name_key", "company_key"), ("phone",))


def run_splink(
    data: identity_data.IdentityData,
    language: pl.DataFrame,
    min_precision: float,
    *,
    m_from: str = "labels",
    u_max_pairs: float = 1e7,
) -> SplinkOutcome:
    """Train splink on the records, predict, sweep thresholds, cluster at the chosen ones.

    `m_from`: "em" (expectation maximisation blocked on EM_RULES) or "labels"
    (`estimate_m_from_pairwise_labels` on the tier 0/1 pairs, as leadsync learns its m)."""
    import duckdb
    from splink import DuckDBAPI, Linker, block_on

    prepared = splink_input(data.records)
    started = time.perf_counter()
    con = duckdb.connect()
    # Everything splink needs is built in; never reach for the network (operations notes).
    con.execute("SET autoinstall_known_extensions=false")
    db_api = DuckDBAPI(con)
    table = db_api.register(prepared.to_arrow(), table_name="records")
    # ERROR: splink warns about levels EM never observed; that is expected and only noise here.
    linker = Linker(table, splink_settings(prepared.columns), log_level=logging.ERROR)
    training = linker.training
    # Deterministic rules set the prior: email equality and hard links find most true pairs.
    training.estimate_probability_two_random_records_match(
        [block_on("email"), block_on("link_ids", arrays_to_explode=["link_ids"])], recall=0.7
    )
    training.estimate_u_using_random_sampling(max_pairs=u_max_pairs, seed=1)
    if m_from == "labels":
        labels = db_api.register(tier01_labels(data.records).to_arrow(), table_name="labels")
        training.estimate_m_from_pairwise_labels(labels)
        how_m = "m from the tier 0/1 pairs (hard links, shared email) as pairwise labels"
    else:
        for rule in EM_RULES:
            training.estimate_parameters_using_expectation_maximisation(
                block_on(*rule), estimate_without_term_frequencies=True
            )
        how_m = f"m by EM blocked on {[' & '.join(r) for r in EM_RULES]}"
    train_seconds = time.perf_counter() - started

    started = time.perf_counter()
    # Pairs below 1% match probability can never help a clustering's precision; leaving them out
    # keeps the sweep small.
    predictions = linker.inference.predict(threshold_match_probability=0.01)
    scored = pl.from_arrow(
        predictions.as_duckdbpyrelation()
        .select("unique_id_l, unique_id_r, match_weight")
        .to_arrow_table()
    )
    assert isinstance(scored, pl.DataFrame)
    predict_seconds = time.perf_counter() - started

    points = sweep(scored, data.truth)
    true_pairs = _true_pairs(data.truth)
    best = max(points, key=lambda p: _f1(_p(p), p.correct / true_pairs))
    reaching = [p for p in points if p.correct and _p(p) >= min_precision]
    lowest = min(reaching, key=lambda p: p.weight) if reaching else None
    max_precision = max((_p(p) for p in points if p.correct), default=1.0)

    def cluster_at(weight: float, name: str) -> tuple[Run, float]:
        # Cluster exactly the edges at or above `weight`: a probability threshold would lose the
        # distinction between weights above ~50, where match_probability rounds to 1.0.
        begun = time.perf_counter()
        edges = predictions.query_sql(f"SELECT * FROM {{this}} WHERE match_weight >= {weight!r}")
        clustered = linker.clustering.cluster_pairwise_predictions_at_threshold(edges)
        frame = pl.from_arrow(
            clustered.as_duckdbpyrelation().select("unique_id, cluster_id").to_arrow_table()
        )
        seconds = time.perf_counter() - begun
        assert isinstance(frame, pl.DataFrame)
        clusters = frame.select(
            pl.col("unique_id").alias("record_id"),
            pl.col("cluster_id").cast(pl.String).alias("unified_id"),
        )
        result = evaluate(clusters, data.truth, language=language)
        detail = f"threshold match_weight >= {weight:.2f}"
        return Run(name, clusters, seconds, result, detail), seconds

    label = f"splink {m_from}"
    best_run, cluster_seconds = cluster_at(best.weight, f"{label}, best F1")
    at_run = None
    if lowest is not None:
        at_run, _ = cluster_at(lowest.weight, f"{label}, P >= leadsync's")
    model = _describe_model(linker, how_m, u_max_pairs)
    con.close()
    return SplinkOutcome(
        best_f1=best_run,
        at_precision=at_run,
        best_f1_weight=best.weight,
        at_precision_weight=lowest.weight if lowest else None,
        max_precision=max_precision,
        train_seconds=train_seconds,
        predict_seconds=predict_seconds,
        cluster_seconds=cluster_seconds,
        scored_pairs=scored.height,
        model=model,
    )


def _p(point: SweepPoint) -> float:
    return point.correct / point.predicted if point.predicted else 1.0


def _true_pairs(truth: pl.DataFrame) -> int:
    sizes = truth.group_by("person_id").len()["len"]
    return int((sizes * (sizes - 1) // 2).sum())


def _describe_model(linker: Any, how_m: str, u_max_pairs: float) -> str:
    settings = linker.misc.save_model_to_json()
    comparisons = [c["output_column_name"] for c in settings["comparisons"]]
    tf = [
        c["output_column_name"]
        for c in settings["comparisons"]
        if any(level.get("tf_adjustment_column") for level in c["comparison_levels"])
    ]
    rules = [
        r["blocking_rule"] if isinstance(r, dict) else str(r)
        for r in settings["blocking_rules_to_generate_predictions"]
    ]
    return (
        f"comparisons {comparisons}; TF adjustments on {tf}; blocking {rules}; "
        f"u by random sampling ({u_max_pairs:.0e} pairs); {how_m}; "
        f"prior P(match) {settings['probability_two_random_records_match']:.2e}"
    )


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _row(run: Run) -> str:
    p, c = run.evaluation.pairwise, run.evaluation.cluster
    return (
        f"| {run.name} | {run.seconds:.1f} | {p.precision:.4f} | {p.recall:.4f} | {p.f1:.4f} | "
        f"{c.precision:.4f} | {c.recall:.4f} |"
    )


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=identity_data.DEFAULT_SEED)
    parser.add_argument("--no-splink", action="store_true", help="leadsync only (quick check)")
    parser.add_argument(
        "--splink-m",
        choices=("em", "labels"),
        default="labels",
        help="how splink learns m: the tier 0/1 pairs as labels (default, its best) or EM",
    )
    args = parser.parse_args()

    print(f"benchmark: identity_quality ({machine()}) {datetime.now():%F %H:%M}")
    started = time.perf_counter()
    data = identity_data.load_records(args.records, args.seed)
    facts = identity_data.describe(data)
    print(
        f"data: {facts['records']:,} records of {facts['people']:,} people "
        f"({facts.get('locale_ja', 0):,} ja, {facts.get('locale_en', 0):,} en), "
        f"{facts['true_pairs']:,} true pairs, seed {args.seed}, "
        f"ready in {time.perf_counter() - started:.1f} s (cached after the first run)"
    )
    evidence = shared_evidence(data.truth, data.records, list(_EVIDENCE_COLUMNS))
    shares = ", ".join(
        f"{k} {v / max(evidence['pairs'], 1):.1%}" for k, v in evidence.items() if k != "pairs"
    )
    print(f"true pairs agreeing exactly on: {shares}")
    language = data.records.select("record_id", pl.col("locale").alias("language"))
    print(f"resolver: {resolver_version()}")

    ours = run_leadsync(data, language)
    for line in format_evaluation("leadsync resolve", ours.evaluation, ours.seconds):
        print(line)
    print(f"    {ours.detail}")
    runs = [ours]
    splink: SplinkOutcome | None = None
    if not args.no_splink:
        splink = run_splink(
            data, language, ours.evaluation.pairwise.precision, m_from=args.splink_m
        )
        total = splink.train_seconds + splink.predict_seconds + splink.cluster_seconds
        print(
            f"splink: {total:.1f} s (training {splink.train_seconds:.1f} s, predict "
            f"{splink.predict_seconds:.1f} s for {splink.scored_pairs:,} pairs >= 1%, "
            f"clustering {splink.cluster_seconds:.1f} s)"
        )
        print(f"    model: {splink.model}")
        for run in (splink.best_f1, splink.at_precision):
            if run is None:
                continue
            run = Run(run.name, run.clusters, total, run.evaluation, run.detail)
            runs.append(run)
            for line in format_evaluation(run.name, run.evaluation):
                print(line)
            print(f"    {run.detail}")
        if splink.at_precision is None:
            print(
                "splink reaches no threshold with pairwise precision >= leadsync's "
                f"({ours.evaluation.pairwise.precision:.4f}); "
                f"its best is {splink.max_precision:.4f}"
            )

    print()
    print("| resolver | seconds | pairwise P | pairwise R | F1 | cluster P | cluster R |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        print(_row(run))
    print()
    p, c = ours.evaluation.pairwise, ours.evaluation.cluster
    checks = [
        (f"pairwise precision >= {TARGET_PRECISION}", p.precision >= TARGET_PRECISION),
        (f"cluster precision >= {TARGET_PRECISION}", c.precision >= TARGET_PRECISION),
        (f"pairwise recall >= {TARGET_RECALL}", p.recall >= TARGET_RECALL),
        (f"cluster recall >= {TARGET_RECALL}", c.recall >= TARGET_RECALL),
    ]
    if splink is not None:
        if splink.at_precision is not None:
            theirs = splink.at_precision.evaluation.pairwise.f1
            checks.append(
                (f"F1 >= splink's at >= precision ({p.f1:.4f} vs {theirs:.4f})", p.f1 >= theirs)
            )
        else:
            checks.append(("F1 >= splink's at >= precision (splink cannot reach it)", True))
    for name, ok in checks:
        print(f"target {name:<58} {_verdict(ok)}")


if __name__ == "__main__":
    main()
