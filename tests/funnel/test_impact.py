"""`definition impact`: what a proposed definition would change, by region, before publishing."""

from datetime import UTC, datetime

import polars as pl

from orchestration.funnel.definition import load_definition
from orchestration.funnel.impact import IMPACT_SCHEMA, definition_impact
from tests.funnel.conftest import activities_at, scoring_leads

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def _leads() -> pl.DataFrame:
    # A busy US manager, a busy Japanese manager, and a quiet lead in Germany.
    return scoring_leads(
        {"unified_id": "UL-us", "country": "US", "locale": "en", "title": "Marketing Manager"},
        {"unified_id": "UL-jp", "country": "JP", "locale": "ja", "title": "マーケティング部 課長"},
        {"unified_id": "UL-de", "country": "DE", "locale": "en", "title": "Engineer"},
        defaults={"employee_count": 800, "industry": "Computer Software"},
    )


def _activities() -> pl.DataFrame:
    kinds = ["pricing_page_view", "webinar_attendance", "content_download"]
    return activities_at(
        NOW, *[(uid, kind, 2 + i) for uid in ("UL-us", "UL-jp") for i, kind in enumerate(kinds)]
    )


def test_the_same_definition_changes_nothing() -> None:
    definition = load_definition()
    impact = definition_impact(_leads(), _activities(), None, definition, definition, now=NOW)
    assert impact.by_region.schema == pl.Schema(IMPACT_SCHEMA)
    assert impact.totals() == {
        "leads": 3,
        "stage_changes": 0,
        "band_changes": 0,
        "become_mql": 0,
        "stop_being_mql": 0,
    }
    assert impact.changed.height == 0


def test_a_higher_global_mql_bar_is_counted_by_region() -> None:
    current = load_definition()
    before = definition_impact(_leads(), _activities(), None, current, current, now=NOW)
    scoring = current.scoring.model_copy(
        update={"thresholds": current.scoring.thresholds.model_copy(update={"mql_score_min": 999})}
    )
    proposed = current.model_copy(update={"scoring": scoring, "regions": {}})
    impact = definition_impact(_leads(), _activities(), None, current, proposed, now=NOW)
    lost = impact.totals()["stop_being_mql"]
    # Whoever was an MQL by score is no longer one; nobody becomes one.
    was_mql = impact.changed.filter(pl.col("stage") == "MQL").height
    assert lost == was_mql and lost >= 1
    assert impact.totals()["become_mql"] == 0
    assert set(impact.by_region["region"].to_list()) == {"global"}  # overlays removed
    assert before.totals()["stage_changes"] == 0
    assert impact.stage_moves.filter(pl.col("from_stage") == "MQL")["leads"].sum() == lost
