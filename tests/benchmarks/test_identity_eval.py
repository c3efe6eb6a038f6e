"""The identity benchmark's metrics on hand-made clusterings (benchmarks/identity_eval.py)."""

import random
from itertools import combinations

import polars as pl
import pytest

from benchmarks.identity_eval import (
    evaluate,
    false_merge_examples,
    missed_examples,
    shared_evidence,
)

# Person A has three records (ja), B two (en), C one (en), D two (one ja, one en).
TRUTH = pl.DataFrame(
    {
        "record_id": ["a1", "a2", "a3", "b1", "b2", "c1", "d1", "d2"],
        "person_id": ["A", "A", "A", "B", "B", "C", "D", "D"],
    }
)
LANGUAGE = pl.DataFrame(
    {
        "record_id": ["a1", "a2", "a3", "b1", "b2", "c1", "d1", "d2"],
        "language": ["ja", "ja", "ja", "en", "en", "en", "ja", "en"],
    }
)
# X wrongly merges b1 into two of A's records; a3 and b2 are left alone; D is found.
PREDICTED = pl.DataFrame(
    {
        "record_id": ["a1", "a2", "b1", "a3", "b2", "c1", "d1", "d2"],
        "unified_id": ["X", "X", "X", "Y", "Z", "W", "V", "V"],
    }
)


def test_pairwise_counts_precision_recall_f1() -> None:
    result = evaluate(PREDICTED, TRUTH)
    p = result.pairwise
    # Predicted pairs: X has 3, V 1. True pairs: A 3, B 1, D 1. Correct: a1-a2 and d1-d2.
    assert (p.predicted, p.true, p.correct) == (4, 5, 2)
    assert (p.false_merges, p.missed) == (2, 3)
    assert p.precision == pytest.approx(0.5)
    assert p.recall == pytest.approx(0.4)
    assert p.f1 == pytest.approx(2 * 0.5 * 0.4 / 0.9)
    assert result.records == 8


def test_cluster_precision_and_recall_are_strict() -> None:
    c = evaluate(PREDICTED, TRUTH).cluster
    # Multi-record clusters X (two people) and V (pure); people A and B are split, D is whole.
    assert (c.predicted, c.pure, c.true, c.complete) == (2, 1, 3, 1)
    assert c.precision == pytest.approx(0.5)
    assert c.recall == pytest.approx(1 / 3)


def test_breakdown_by_language() -> None:
    result = evaluate(PREDICTED, TRUTH, language=LANGUAGE)
    ja, en, mixed = (result.by_language[k] for k in ("ja", "en", "mixed"))
    assert (ja.predicted, ja.true, ja.correct) == (1, 3, 1)  # a1-a2 found, a3 missed twice
    assert (en.predicted, en.true, en.correct) == (0, 1, 0)  # b1-b2 missed
    assert (mixed.predicted, mixed.true, mixed.correct) == (3, 1, 1)  # a-b false, d1-d2 found
    assert (mixed.false_merges, ja.missed, en.missed) == (2, 2, 1)
    assert result.impure_clusters_by_language == {"mixed": 1}
    assert result.split_people_by_language == {"en": 1, "ja": 1}


def test_perfect_and_all_singletons() -> None:
    perfect = evaluate(TRUTH.rename({"person_id": "unified_id"}), TRUTH)
    assert perfect.pairwise.precision == perfect.pairwise.recall == perfect.pairwise.f1 == 1.0
    assert perfect.cluster.precision == perfect.cluster.recall == 1.0
    singletons = evaluate(TRUTH.select("record_id", unified_id=pl.col("record_id")), TRUTH)
    assert singletons.pairwise.predicted == 0
    assert singletons.pairwise.precision == 1.0  # nothing merged, nothing merged wrongly
    assert singletons.pairwise.recall == 0.0 and singletons.pairwise.f1 == 0.0
    assert singletons.cluster.predicted == 0 and singletons.cluster.recall == 0.0


def test_missing_and_unknown_records() -> None:
    # d2 is not returned (a singleton); "zz" has no truth (ignored).
    predicted = pl.concat(
        [
            PREDICTED.filter(pl.col("record_id") != "d2"),
            pl.DataFrame({"record_id": ["zz"], "unified_id": ["V"]}),
        ]
    )
    result = evaluate(predicted, TRUTH)
    assert (result.missing_predictions, result.ignored_predictions) == (1, 1)
    assert (result.pairwise.predicted, result.pairwise.correct) == (3, 1)
    assert result.cluster.complete == 0


def test_matches_brute_force_pairs_on_random_clusterings() -> None:
    rng = random.Random(7)
    for _ in range(20):
        n = rng.randint(1, 60)
        ids = [f"r{i}" for i in range(n)]
        truth = pl.DataFrame(
            {"record_id": ids, "person_id": [f"p{rng.randint(0, n // 2)}" for _ in ids]}
        )
        predicted = pl.DataFrame(
            {"record_id": ids, "unified_id": [f"u{rng.randint(0, n // 2)}" for _ in ids]}
        )
        person = dict(truth.iter_rows())
        cluster = dict(predicted.iter_rows())
        true_pairs = {(a, b) for a, b in combinations(ids, 2) if person[a] == person[b]}
        predicted_pairs = {(a, b) for a, b in combinations(ids, 2) if cluster[a] == cluster[b]}
        p = evaluate(predicted, truth).pairwise
        assert (p.predicted, p.true, p.correct) == (
            len(predicted_pairs),
            len(true_pairs),
            len(true_pairs & predicted_pairs),
        )


def test_examples_show_the_offending_groups() -> None:
    records = TRUTH.select("record_id", name=pl.col("record_id").str.to_uppercase())
    merges = false_merge_examples(PREDICTED, TRUTH, records)
    assert set(merges["record_id"]) == {"a1", "a2", "b1"}
    assert "name" in merges.columns
    missed = missed_examples(PREDICTED, TRUTH, records)
    assert set(missed["person"]) == {"A", "B"}


def test_shared_evidence_counts_true_pairs_by_agreeing_column() -> None:
    records = pl.DataFrame(
        {
            "record_id": ["a1", "a2", "a3", "b1", "b2"],
            "email": ["a@x.jp", "a@x.jp", None, "b@y.com", "c@y.com"],
            "phone": [None, None, None, "+1", "+1"],
            "linked_record_ids": [[], ["a3"], [], [], []],
        }
    )
    truth = pl.DataFrame(
        {"record_id": ["a1", "a2", "a3", "b1", "b2"], "person_id": ["A", "A", "A", "B", "B"]}
    )
    counts = shared_evidence(truth, records, ["email", "phone", "not_a_column"])
    # Pairs a1-a2 (email), a1-a3 (nothing), a2-a3 (hard link), b1-b2 (phone).
    assert counts == {
        "email": 1,
        "phone": 1,
        "hard_link": 1,
        "any": 3,
        "none": 1,
        "pairs": 4,
    }
