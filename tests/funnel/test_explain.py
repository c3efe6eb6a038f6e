"""explain: key lookup (email, record id, unified id), contributions, history, next content."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from orchestration.funnel.definition import load_definition
from orchestration.funnel.explain import Explanation, explain
from orchestration.funnel.model import ACTIVITY_SCHEMA, CANONICAL_LEAD_SCHEMA, IDENTITY_SCHEMA
from orchestration.funnel.nurture.render import RENDER_COLUMNS
from orchestration.funnel.nurture.select import ASSIGNMENT_SCHEMA
from orchestration.funnel.scoring import SCORE_SCHEMA, score
from orchestration.funnel.stages import LEDGER_SCHEMA, STAGES_SCHEMA
from orchestration.funnel.unify import GOLDEN_SCHEMA

T0 = datetime(2025, 6, 1, tzinfo=UTC)


def frame(rows: list[dict[str, Any]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame([{c: r.get(c) for c in schema} for r in rows], schema=schema)


def contributions(*items: tuple[str, float, float]) -> str:
    return json.dumps(
        [
            {"rule": r, "points": p, "decayed": d, "age_days": None, "half_life_days": None}
            for r, p, d in items
        ]
    )


@pytest.fixture
def frames() -> dict[str, pl.DataFrame]:
    leads = frame(
        [
            {
                "record_id": "hubspot:contacts:1",
                "source_system": "hubspot",
                "source_object": "contacts",
                "email": "taro@acme.co.jp",
            },
            {
                "record_id": "salesforce:Lead:00Q1",
                "source_system": "salesforce",
                "source_object": "Lead",
                "email": "t.yamada@acme.co.jp",
            },
            # One address, two people: the older lead and the newer one share it.
            {"record_id": "hubspot:contacts:2", "source_system": "hubspot", "email": "x@b.com"},
            {"record_id": "hubspot:contacts:3", "source_system": "hubspot", "email": "x@b.com"},
        ],
        CANONICAL_LEAD_SCHEMA,
    )
    identity = frame(
        [
            {"record_id": "hubspot:contacts:1", "unified_id": "UL-a", "band": "auto_merge"},
            {"record_id": "salesforce:Lead:00Q1", "unified_id": "UL-a", "band": "auto_merge"},
            {"record_id": "hubspot:contacts:2", "unified_id": "UL-old", "band": "keep_apart"},
            {"record_id": "hubspot:contacts:3", "unified_id": "UL-new", "band": "keep_apart"},
        ],
        IDENTITY_SCHEMA,
    )
    unified = frame(
        [
            {
                "unified_id": "UL-a",
                "email": "taro@acme.co.jp",
                "secondary_emails": ["t.yamada@acme.co.jp"],
                "first_name": "太郎",
                "last_name": "山田",
                "locale": "ja",
                "company": "Acme",
                "country": "JP",
                "record_ids": ["hubspot:contacts:1", "salesforce:Lead:00Q1"],
                "updated_at": T0,
            },
            {"unified_id": "UL-old", "email": "x@b.com", "updated_at": T0},
            {"unified_id": "UL-new", "email": "x@b.com", "updated_at": T0 + timedelta(days=1)},
        ],
        GOLDEN_SCHEMA,
    )
    scores = frame(
        [
            {
                "unified_id": "UL-a",
                "fit_score": 40,
                "engagement_score": 37,
                "score": 77,
                "temperature": "hot",
                "contributions": contributions(
                    ("fit:industry", 10, 10),
                    ("engagement:demo_request", 60, 30.0),
                    ("fit:seniority:部長", 30, 30),
                    ("engagement:email_open", 10, 7.0),
                ),
            }
        ],
        SCORE_SCHEMA,
    )
    stages = frame([{"unified_id": "UL-a", "stage": "MQL", "stage_entered_at": T0}], STAGES_SCHEMA)
    ledger = frame(
        [
            # Appended out of time order on purpose: history comes back oldest first.
            {"unified_id": "UL-a", "from_stage": "MAL", "to_stage": "MQL", "rule": "mql",
             "reason": "hand_raise", "definition_version": "v2", "at": T0},
            {"unified_id": "UL-a", "from_stage": None, "to_stage": "Lead", "rule": "first_seen",
             "definition_version": "v1", "at": T0 - timedelta(days=9)},
            {"unified_id": "UL-a", "from_stage": "Lead", "to_stage": "MAL", "rule": "mal",
             "reason": "fit 40 >= 30", "definition_version": "v1", "at": T0 - timedelta(days=5)},
            {"unified_id": "UL-old", "from_stage": None, "to_stage": "Lead", "at": T0},
        ],
        LEDGER_SCHEMA,
    )  # fmt: skip
    assignments = frame(
        [
            {
                "unified_id": "UL-a",
                "template_id": "mql-demo-ja",
                "next_subject": "デモのご案内",
                "reason": "stage MQL, priority 10",
                "status": "assigned",
            },
            {"unified_id": "UL-new", "status": "exhausted", "reason": "no template left"},
        ],
        {**ASSIGNMENT_SCHEMA, **RENDER_COLUMNS},
    )
    return {
        "leads": leads,
        "identity": identity,
        "unified": unified,
        "scores": scores,
        "stages": stages,
        "ledger": ledger,
        "assignments": assignments,
    }


def run(key: str, frames: dict[str, pl.DataFrame]) -> Explanation | None:
    return explain(key, **frames, country_regions={"JP": "jp"})


@pytest.mark.parametrize(
    "key",
    [
        "taro@acme.co.jp",
        "  TARO@ACME.CO.JP ",
        "ｔａｒｏ＠ａｃｍｅ．ｃｏ．ｊｐ",  # full-width, as typed on a Japanese keyboard
        "taro+newsletter@acme.co.jp",
        "t.yamada@acme.co.jp",  # a member record's (secondary) address
    ],
)
def test_email_lookup_normalises_the_key(key: str, frames: dict[str, pl.DataFrame]) -> None:
    found = run(key, frames)
    assert found is not None
    assert (found.unified_id, found.matched_by) == ("UL-a", "email")
    assert found.name == "山田 太郎"  # family name first in Japanese
    assert (found.company, found.country, found.region) == ("Acme", "JP", "jp")


def test_record_id_and_unified_id_lookup(frames: dict[str, pl.DataFrame]) -> None:
    by_record = run("salesforce:Lead:00Q1", frames)
    by_uid = run("UL-a", frames)
    assert by_record is not None and by_uid is not None
    assert by_record.matched_by == "record_id" and by_uid.matched_by == "unified_id"
    assert by_record.to_dict() | {"matched_by": ""} == by_uid.to_dict() | {"matched_by": ""}
    members = [(m.record_id, m.system, m.object, m.email) for m in by_uid.members]
    assert members == [
        ("hubspot:contacts:1", "hubspot", "contacts", "taro@acme.co.jp"),
        ("salesforce:Lead:00Q1", "salesforce", "Lead", "t.yamada@acme.co.jp"),
    ]


def test_contributions_by_decayed_amount(frames: dict[str, pl.DataFrame]) -> None:
    found = run("UL-a", frames)
    assert found is not None
    assert [c.source for c in found.contributions] == [
        "engagement:demo_request",  # 30.0 now, ties broken by name
        "fit:seniority:部長",
        "fit:industry",
        "engagement:email_open",
    ]
    demo = found.contributions[0]
    assert (demo.points, demo.decayed) == (60, 30.0)
    assert (found.score, found.temperature) == (77, "hot")


def test_history_oldest_first_and_next_content(frames: dict[str, pl.DataFrame]) -> None:
    found = run("UL-a", frames)
    assert found is not None
    assert [(t.from_stage, t.to_stage) for t in found.history] == [
        (None, "Lead"),
        ("Lead", "MAL"),
        ("MAL", "MQL"),
    ]
    assert [t.definition_version for t in found.history] == ["v1", "v1", "v2"]
    assert found.stage == "MQL"
    assert found.next_content is not None
    assert found.next_content.template_id == "mql-demo-ja"
    assert found.next_content.subject == "デモのご案内"
    assert found.next_content.why == "stage MQL, priority 10"
    out = found.to_dict()
    json.dumps(out)  # JSON-ready
    assert out["history"][0]["at"] == (T0 - timedelta(days=9)).isoformat()


def test_a_shared_email_explains_the_most_recent_lead(frames: dict[str, pl.DataFrame]) -> None:
    found = run("X@b.com", frames)
    assert found is not None
    assert found.unified_id == "UL-new"
    assert found.other_matches == ("UL-old",)
    assert found.next_content is not None and found.next_content.status == "exhausted"
    assert found.next_content.template_id is None
    assert found.score is None and found.contributions == ()  # not scored yet


@pytest.mark.parametrize(
    "key", ["nobody@example.com", "hubspot:contacts:999", "UL-missing", "", "not an email"]
)
def test_unknown_key_is_none(key: str, frames: dict[str, pl.DataFrame]) -> None:
    assert run(key, frames) is None


def test_old_scores_fall_back_to_reasons(frames: dict[str, pl.DataFrame]) -> None:
    frames["scores"] = frames["scores"].with_columns(
        pl.lit(None, dtype=pl.String).alias("contributions"),
        pl.lit('[{"rule":"fit:industry","points":10}]').alias("reasons"),
    )
    found = run("UL-a", frames)
    assert found is not None
    assert [(c.source, c.decayed, c.points) for c in found.contributions] == [
        ("fit:industry", 10.0, None)
    ]


def test_scoring_contributions_add_up_to_the_score() -> None:
    """The numbers scoring keeps explain the score: decayed amounts sum to it, caps included."""
    now = datetime(2025, 6, 30, tzinfo=UTC)
    definition = load_definition()
    leads = pl.DataFrame(
        {
            "unified_id": ["busy", "quiet"],
            "title": ["VP Sales", None],
            "employee_count": [2000, None],
            "industry": [None, None],
            "country": ["US", None],
            "locale": ["en", "en"],
            "email_domain": ["acme.com", "gmail.com"],
            "email_is_free": [False, True],
        },
        schema_overrides={"industry": pl.String, "employee_count": pl.Int64},
    )
    kinds = ["demo_request", "quote_request", "contact_request", "webinar_attendance"] * 5
    acts = pl.DataFrame(
        [
            {
                "activity_id": f"a{i}",
                "record_id": "r",
                "source_system": "hubspot",
                "activity_type": kind,
                "occurred_at": now - timedelta(days=i * 3),
                "detail": None,
                "unified_id": "busy",
            }
            for i, kind in enumerate(kinds)
        ],
        schema={**ACTIVITY_SCHEMA, "unified_id": pl.String()},
    )
    out = score(leads, acts, definition, now=now)
    for row in out.to_dicts():
        items = json.loads(row["contributions"])
        assert abs(sum(c["decayed"] for c in items) - row["score"]) <= 0.5 + 0.01 * len(items)
        decayed = [abs(c["decayed"]) for c in items]
        assert decayed == sorted(decayed, reverse=True)
    busy = {c["rule"]: c for c in json.loads(out.row(0, named=True)["contributions"])}
    demo = busy["engagement:demo_request"]
    assert demo["events"] == 5 and demo["age_days"] == 0.0 and demo["half_life_days"] > 0
    assert demo["points"] > demo["decayed"] > 0  # earned more than counts now
    # So many hand-raises go over the engagement total cap; the cap shows as its own line.
    assert busy["engagement:total_cap"]["decayed"] < 0
