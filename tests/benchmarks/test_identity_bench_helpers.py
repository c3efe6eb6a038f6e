"""The identity benchmarks' data conversion and splink threshold sweep, on small inputs."""

import random

import polars as pl
import pytest

from benchmarks.identity_data import IdentityData, raw_person_frames, split_newest, trim
from benchmarks.identity_eval import evaluate
from benchmarks.identity_quality import sweep
from connectors.sandbox.generator import generate
from orchestration.funnel.model import CANONICAL_LEAD_SCHEMA
from orchestration.funnel.normalize import DEFAULT_LEAD_MAPPINGS, normalize_leads


@pytest.fixture(scope="module")
def small() -> IdentityData:
    dataset = generate(300, 11)
    leads = normalize_leads(
        raw_person_frames(dataset.hubspot, dataset.salesforce), DEFAULT_LEAD_MAPPINGS
    )
    truth = pl.DataFrame(
        {
            "record_id": [row.key for row in dataset.truth],
            "person_id": [row.person_id for row in dataset.truth],
        }
    )
    return IdentityData(leads, truth, 300, 11)


def test_every_person_record_is_normalised_once(small: IdentityData) -> None:
    assert small.records.schema == pl.Schema(CANONICAL_LEAD_SCHEMA)
    assert sorted(small.records["record_id"]) == sorted(small.truth["record_id"])
    assert set(small.records["locale"]) == {"en", "ja"}
    # Contacts take their company from their Account; hard links survive the conversion.
    contacts = small.records.filter(pl.col("source_object") == "Contact")
    assert contacts["company"].null_count() < contacts.height
    assert small.records["linked_record_ids"].list.len().sum() > 0


def test_trim_and_split_keep_truth_aligned(small: IdentityData) -> None:
    cut = trim(small, 200)
    assert cut.records.height == cut.truth.height == 200
    assert set(cut.records["record_id"]) == set(cut.truth["record_id"])
    base, new = split_newest(small, 50)
    assert (base.records.height, new.records.height) == (small.records.height - 50, 50)
    newest_stored = base.records.select(pl.col("created_at").max()).item()
    assert new.records.filter(pl.col("created_at") < newest_stored).is_empty()
    assert set(new.truth["record_id"]) == set(new.records["record_id"])


def _components(records: list[str], edges: list[tuple[str, str]]) -> pl.DataFrame:
    parent = {r: r for r in records}

    def find(x: str) -> str:
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in edges:
        parent[find(a)] = find(b)
    return pl.DataFrame({"record_id": records, "unified_id": [find(r) for r in records]})


def test_sweep_matches_clustering_at_every_threshold() -> None:
    rng = random.Random(3)
    records = [f"r{i}" for i in range(40)]
    truth = pl.DataFrame(
        {"record_id": records, "person_id": [f"p{rng.randint(0, 15)}" for _ in records]}
    )
    edges = pl.DataFrame(
        [(rng.choice(records), rng.choice(records), float(rng.randint(-3, 10))) for _ in range(60)],
        schema={"unique_id_l": pl.String, "unique_id_r": pl.String, "match_weight": pl.Float64},
        orient="row",
    )
    points = sweep(edges, truth)
    assert [p.weight for p in points] == sorted(set(edges["match_weight"]), reverse=True)
    for point in points:
        kept = edges.filter(pl.col("match_weight") >= point.weight)
        clusters = _components(
            records, list(zip(kept["unique_id_l"], kept["unique_id_r"], strict=True))
        )
        counts = evaluate(clusters, truth).pairwise
        assert (point.predicted, point.correct) == (counts.predicted, counts.correct)
