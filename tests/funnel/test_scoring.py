"""Scoring: fit points, decayed and capped engagement, negatives, temperature, hand-raise."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from orchestration.funnel.definition import LeadDefinition, load_definition
from orchestration.funnel.scoring import SCORE_SCHEMA, input_fingerprints, score, update_scores
from tests.funnel.conftest import activities_at, scoring_leads

NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def definition() -> LeadDefinition:
    return load_definition()


def leads(*rows: dict[str, Any]) -> pl.DataFrame:
    return scoring_leads(*rows)


def activities(*events: tuple[str, str, float]) -> pl.DataFrame:
    return activities_at(NOW, *events)


def one(frame: pl.DataFrame, uid: str) -> dict[str, Any]:
    return frame.filter(pl.col("unified_id") == uid).row(0, named=True)


NO_ACTIVITY = activities()


def test_output_schema(definition: LeadDefinition) -> None:
    out = score(leads({"unified_id": "u"}), NO_ACTIVITY, definition, now=NOW)
    assert out.schema == pl.Schema(SCORE_SCHEMA)
    assert one(out, "u")["reasons"] == "[]"


def test_bucho_at_500_person_target_industry_jp_company(definition: LeadDefinition) -> None:
    lead = {
        "unified_id": "u1",
        "title": "営業部 部長",
        "employee_count": 500,
        "industry": "Manufacturing",
        "country": "JP",
        "locale": "ja",
    }
    row = one(score(leads(lead), NO_ACTIVITY, definition, now=NOW), "u1")
    # 500-999 employees 20 + 部長 20 + target industry 10 + target country 5 (global.yaml).
    assert row["fit_score"] == 55
    assert row["engagement_score"] == 0
    assert row["score"] == 55
    assert row["temperature"] == "warm"
    rules = {r["rule"]: r["points"] for r in json.loads(row["reasons"])}
    assert rules["fit:seniority:部長"] == 20
    assert rules["fit:employees:500-999"] == 20


@pytest.mark.parametrize(
    ("title", "locale", "points"),
    [
        ("営業本部長", "ja", 25),  # the stronger keyword wins over the 部長 inside it
        ("代表取締役社長", "ja", 30),
        ("Marketing Director", "ja", 20),  # ja lead with an English title: en fallback
        ("vice president, sales", "en", 25),  # case-insensitive
        ("Headquarters liaison", "en", 0),  # "Head" needs a word boundary
        ("Engineering Manager", "en", 15),
        ("Marketing Intern", "en", -10),  # a negative keyword always wins
        (None, "en", 0),
    ],
)
def test_seniority_keywords(
    definition: LeadDefinition, title: str | None, locale: str, points: int
) -> None:
    out = score(
        leads({"unified_id": "u", "title": title, "locale": locale}),
        NO_ACTIVITY,
        definition,
        now=NOW,
    )
    assert one(out, "u")["fit_score"] == points


def test_event_at_half_life_counts_half(definition: LeadDefinition) -> None:
    # content_download: 10 points, global half-life 30 days.
    acts = activities(("new", "content_download", 0), ("old", "content_download", 30))
    out = score(leads({"unified_id": "new"}, {"unified_id": "old"}), acts, definition, now=NOW)
    assert one(out, "new")["engagement_score"] == 10
    assert one(out, "old")["engagement_score"] == 5


def test_per_type_half_life(definition: LeadDefinition) -> None:
    # pricing_page_view: 30 points with its own 21-day half-life.
    out = score(
        leads({"unified_id": "u"}), activities(("u", "pricing_page_view", 21)), definition, now=NOW
    )
    assert one(out, "u")["engagement_score"] == 15


def test_caps_per_type_and_total(definition: LeadDefinition) -> None:
    downloads = [("u", "content_download", 0)] * 10  # 100 raw, capped at 30
    busy = [("b", "pricing_page_view", 0)] * 5 + [("b", "webinar_attendance", 0)] * 5
    out = score(
        leads({"unified_id": "u"}, {"unified_id": "b"}),
        activities(*downloads, *busy),
        definition,
        now=NOW,
    )
    assert one(out, "u")["engagement_score"] == 30
    assert one(out, "b")["engagement_score"] == definition.scoring.engagement.total_cap == 100


def test_engagement_floored_at_zero_then_negatives(definition: LeadDefinition) -> None:
    out = score(
        leads(
            {"unified_id": "unsub"},
            {"unified_id": "rival", "email_domain": "sales.competitor-crm.example"},
            {"unified_id": "gmail", "email_is_free": True},
            {"unified_id": "student", "email_domain": "u-tokyo.ac.jp"},
        ),
        activities(("unsub", "unsubscribe", 0), ("rival", "content_download", 0)),
        definition,
        now=NOW,
    )
    assert one(out, "unsub")["engagement_score"] == 0
    assert one(out, "unsub")["score"] == 0
    assert one(out, "rival")["score"] == 10 - 100
    assert one(out, "gmail")["score"] == -10
    assert one(out, "student")["score"] == -30


def test_inactivity_penalty_only_after_activity(definition: LeadDefinition) -> None:
    out = score(
        leads({"unified_id": "quiet"}, {"unified_id": "never"}),
        activities(("quiet", "page_view", 120)),
        definition,
        now=NOW,
    )
    assert one(out, "quiet")["score"] == -10  # page view decayed to ~0, then -10
    assert one(out, "never")["score"] == 0


def test_future_events_are_ignored(definition: LeadDefinition) -> None:
    out = score(
        leads({"unified_id": "u"}), activities(("u", "quote_request", -1)), definition, now=NOW
    )
    row = one(out, "u")
    assert row["engagement_score"] == 0
    assert row["hand_raise"] is False
    assert row["last_activity_at"] is None


def test_hand_raise_window(definition: LeadDefinition) -> None:
    acts = activities(("recent", "demo_request", 10), ("stale", "contact_request", 200))
    out = score(leads({"unified_id": "recent"}, {"unified_id": "stale"}), acts, definition, now=NOW)
    recent = one(out, "recent")
    assert recent["hand_raise"] is True
    assert recent["last_hand_raise_at"] == NOW - timedelta(days=10)
    assert recent["last_activity_at"] == NOW - timedelta(days=10)
    assert one(out, "stale")["hand_raise"] is False


def test_temperature_bands(definition: LeadDefinition) -> None:
    out = score(
        leads({"unified_id": "cold"}, {"unified_id": "warm"}, {"unified_id": "hot"}),
        activities(
            ("warm", "pricing_page_view", 0),
            ("hot", "quote_request", 0),
        ),
        definition,
        now=NOW,
    )
    assert one(out, "cold")["temperature"] == "cold"  # 0
    assert one(out, "warm")["temperature"] == "warm"  # 30
    assert one(out, "hot")["temperature"] == "hot"  # 80


def test_reasons_top_five_by_absolute_points(definition: LeadDefinition) -> None:
    lead = {
        "unified_id": "u",
        "title": "CEO",
        "employee_count": 2000,
        "industry": "computer software",
        "country": "us",
        "email_is_free": True,
    }
    acts = activities(("u", "quote_request", 0), ("u", "page_view", 0), ("u", "email_open", 0))
    reasons = json.loads(one(score(leads(lead), acts, definition, now=NOW), "u")["reasons"])
    assert len(reasons) == 5
    points = [abs(r["points"]) for r in reasons]
    assert points == sorted(points, reverse=True)
    assert reasons[0] == {"rule": "engagement:quote_request", "points": 80}
    assert {"rule", "points"} == set(reasons[0])


def test_activities_of_other_leads_are_ignored(definition: LeadDefinition) -> None:
    out = score(
        leads({"unified_id": "u"}), activities(("other", "quote_request", 0)), definition, now=NOW
    )
    assert out.height == 1
    assert one(out, "u")["engagement_score"] == 0


def test_an_activity_since_the_decay_instant_counts_at_once_at_full_weight(
    definition: LeadDefinition,
) -> None:
    day_start = NOW.replace(hour=0)
    # Made at 10:00, two hours before the run, ten hours after the day's decay instant.
    acts = activities(("u", "contact_request", 2 / 24))
    as_of_day = one(
        score(leads({"unified_id": "u"}), acts, definition, now=NOW, decay_from=day_start), "u"
    )
    assert as_of_day["engagement_score"] == 50  # not decayed, not left for tomorrow
    assert as_of_day["hand_raise"] is True
    # Scored at the day's start itself, the same activity is not there yet.
    assert (
        one(score(leads({"unified_id": "u"}), acts, definition, now=day_start), "u")[
            "engagement_score"
        ]
        == 0
    )


def test_update_scores_equals_a_full_scoring_and_scores_only_changed_leads(
    definition: LeadDefinition,
) -> None:
    day_start = NOW.replace(hour=0)
    before_leads = leads(
        *({"unified_id": f"u{i}", "title": "Manager", "employee_count": 50 * i} for i in range(6))
    )
    before_acts = activities(
        ("u0", "form_submission", 3), ("u1", "email_click", 10), ("u2", "webinar_attendance", 1)
    )
    kwargs = {"now": NOW, "decay_from": day_start}
    previous = score(before_leads, before_acts, definition, **kwargs)
    previous_prints = input_fingerprints(before_leads, before_acts, NOW)

    # u1 gets a new title, u2 a new activity; u5 is gone (merged away) and u6 is new.
    after_leads = pl.concat(
        [
            before_leads.filter(~pl.col("unified_id").is_in(["u1", "u5"])),
            leads({"unified_id": "u1", "title": "Director"}, {"unified_id": "u6"}),
        ]
    )
    after_acts = pl.concat([before_acts, activities(("u2", "form_submission", 0.1))])
    prints = input_fingerprints(after_leads, after_acts, NOW)
    updated, rescored = update_scores(
        previous, previous_prints, prints, after_leads, after_acts, definition, **kwargs
    )

    assert rescored == 3  # u1, u2 and u6
    assert updated.equals(score(after_leads, after_acts, definition, **kwargs))
    assert updated["unified_id"].to_list() == after_leads["unified_id"].to_list()
    # Nothing changed: nothing is scored again, and the result is the same.
    again, none = update_scores(
        updated, prints, prints, after_leads, after_acts, definition, **kwargs
    )
    assert none == 0
    assert again.equals(updated)


def test_an_activity_dated_after_the_run_changes_the_fingerprint_when_its_time_comes() -> None:
    lead = leads({"unified_id": "u"})
    acts = activities(("u", "form_submission", -1))  # stamped a day ahead of the run
    assert input_fingerprints(lead, acts, NOW).equals(input_fingerprints(lead, NO_ACTIVITY, NOW))
    later = NOW + timedelta(days=2)
    assert not input_fingerprints(lead, acts, later).equals(
        input_fingerprints(lead, NO_ACTIVITY, later)
    )
