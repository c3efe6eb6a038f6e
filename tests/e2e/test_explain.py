"""End to end: `leadsync explain` on a lead a dry-run sync scored, staged and assigned content."""

import json
from collections.abc import Iterator

import polars as pl
import pytest
from typer.testing import CliRunner

from connectors.sandbox.server import Sandboxes
from orchestration.cli import app
from orchestration.defs import frames
from orchestration.runner import run_sync
from orchestration.store import StateStore
from tests.e2e.conftest import db_url_in, worker_env

pytestmark = pytest.mark.e2e

cli = CliRunner()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StateStore]:
    db_url = db_url_in(tmp_path_factory)
    with Sandboxes(size=200, seed=31) as box, worker_env(box, db_url):
        assert run_sync().success
        yield StateStore(db_url)


def _engaged_lead(store: StateStore) -> dict[str, object]:
    """A lead with an email and engagement, whose email no other unified lead has."""
    unified = frames.read(store, "unified_leads")
    unique = unified.filter(pl.col("email").is_not_null() & pl.col("email").is_unique())
    scored = frames.read(store, "scores").filter(pl.col("engagement_score") > 0)
    return (
        unique.join(scored, on="unified_id")
        .sort("score", "unified_id", descending=[True, False])
        .row(0, named=True)
    )


def test_explain_an_email_as_json(env: StateStore) -> None:
    lead = _engaged_lead(env)
    # Typed carelessly: upper case and a +tag still find the lead.
    local, domain = str(lead["email"]).split("@")
    key = f"{local.upper()}+crm@{domain}"
    result = cli.invoke(app, ["explain", key, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["matched_by"] == "email"
    uid = out["unified_id"]
    # Another lead can hold this address as a member's or a secondary email.
    assert lead["unified_id"] in [uid, *out["other_matches"]]
    assert {
        "name",
        "company",
        "email",
        "country",
        "region",
        "members",
        "contributions",
        "history",
        "next_content",
    } <= set(out)
    assert out["members"] and all(m["system"] in {"hubspot", "salesforce"} for m in out["members"])

    stored = frames.read(env, "scores").filter(pl.col("unified_id") == uid).row(0, named=True)
    assert (out["score"], out["fit_score"], out["temperature"]) == (
        stored["score"],
        stored["fit_score"],
        stored["temperature"],
    )
    contributions = out["contributions"]
    assert contributions
    assert {"source", "points", "decayed", "age_days", "half_life_days", "events"} <= set(
        contributions[0]
    )
    total = sum(c["decayed"] for c in contributions)
    assert abs(total - stored["score"]) <= 0.5 + 0.01 * len(contributions)
    decayed = [abs(c["decayed"]) for c in contributions]
    assert decayed == sorted(decayed, reverse=True)
    for c in contributions:
        if c["source"].startswith("engagement:") and c["events"]:
            assert c["half_life_days"] > 0 and c["age_days"] >= 0
            assert abs(c["decayed"]) <= abs(c["points"]) + 1e-9  # decay only takes away

    history = out["history"]
    assert history and history[0]["from_stage"] is None
    assert history[-1]["to_stage"] == out["stage"]
    assert [h["at"] for h in history] == sorted(h["at"] for h in history)
    assert all(h["definition_version"] for h in history)
    assert out["next_content"]["status"] in {"assigned", "exhausted", "suppressed"}
    if out["next_content"]["status"] == "assigned":
        assert out["next_content"]["template_id"] and out["next_content"]["why"]


def test_explain_by_record_id_prints_tables(env: StateStore) -> None:
    lead = _engaged_lead(env)
    record_id = frames.read(env, "identity").filter(pl.col("unified_id") == lead["unified_id"])[
        "record_id"
    ][0]
    result = cli.invoke(app, ["explain", record_id])
    assert result.exit_code == 0, result.output
    assert str(lead["unified_id"]) in result.output
    for heading in ("contributions", "stage history", "next content"):
        assert heading in result.output


def test_explain_an_unknown_key_fails(env: StateStore) -> None:
    result = cli.invoke(app, ["explain", "nobody@nowhere.invalid"])
    assert result.exit_code == 1
    assert "no lead matches" in result.output
