"""Funnel metrics: leads per stage, the waterfall and the funnel report from the ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from orchestration.funnel.definition import ALL_STAGES, STAGE_ORDER, LeadDefinition, load_definition
from orchestration.funnel.metrics import STAGE_REPORT_SCHEMA, funnel_report, stage_counts, waterfall
from orchestration.reports.funnel import (
    chart_digest,
    markdown_tables,
    render_funnel_markdown,
    render_funnel_png,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_stage_counts_in_order_with_zeros() -> None:
    stages = pl.DataFrame(
        {"unified_id": ["a", "b", "c", "d"], "stage": ["MQL", "Lead", "MQL", "Recycled"]}
    )
    out = stage_counts(stages)
    assert out["stage"].to_list() == list(ALL_STAGES)
    counts = dict(zip(out["stage"], out["leads"], strict=True))
    assert counts["Lead"] == 1 and counts["MQL"] == 2 and counts["Recycled"] == 1
    assert counts["SAL"] == 0 and counts["Customer"] == 0
    assert out["leads"].sum() == 4


def _ledger(*moves: tuple[str, str | None, str, str, int]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "unified_id": u,
                "from_stage": f,
                "to_stage": t,
                "rule": r,
                "at": T0 + timedelta(days=d),
            }
            for u, f, t, r, d in moves
        ],
        schema={
            "unified_id": pl.String,
            "from_stage": pl.String,
            "to_stage": pl.String,
            "rule": pl.String,
            "at": pl.Datetime("us", "UTC"),
        },
    )


def test_waterfall_counts_skipped_stages_and_sgl_from_sql() -> None:
    ledger = _ledger(
        ("a", None, "Lead", "new_lead", 0),
        ("a", "Lead", "MQL", "hand_raise", 1),  # skipped MAL: still counts as having passed it
        ("a", "MQL", "SAL", "sales_accepted", 2),
        ("b", None, "MAL", "fit_threshold", 0),
        ("b", "MAL", "MQL", "score_threshold", 3),
        ("b", "MQL", "Recycled", "recycle", 5),
        ("c", None, "Lead", "new_lead", 0),
        ("d", None, "SQL", "sgl", 0),  # sales-generated: from SQL on only
        ("d", "SQL", "Customer", "won_opportunity", 9),
        ("e", None, "Disqualified", "disqualify", 0),  # never in the funnel
    )
    out = waterfall(ledger)
    assert out["stage"].to_list() == list(STAGE_ORDER)
    reached = dict(zip(out["stage"], out["reached"], strict=True))
    assert reached == {
        "Lead": 3,
        "MAL": 2,
        "MQL": 2,
        "SAL": 1,
        "SQL": 1,
        "Opportunity": 1,
        "Customer": 1,
    }
    conv = dict(zip(out["stage"], out["conversion_from_previous"], strict=True))
    assert conv["Lead"] is None
    assert conv["MAL"] == pytest.approx(2 / 3)
    assert conv["SAL"] == pytest.approx(0.5)
    assert conv["SQL"] == pytest.approx(0.0)  # a stopped at SAL; d is an SGL, not a conversion
    assert conv["Opportunity"] == pytest.approx(1.0)


def test_waterfall_of_empty_ledger() -> None:
    out = waterfall(_ledger())
    assert out["reached"].to_list() == [0] * len(STAGE_ORDER)
    assert out["conversion_from_previous"].null_count() == len(STAGE_ORDER)


# --- the funnel report -----------------------------------------------------------------------

NOW = T0 + timedelta(days=100)


@pytest.fixture(scope="module")
def definition() -> LeadDefinition:
    return load_definition()


def _unified(*leads: tuple[str, str | None, str | None]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"unified_id": u, "country": c, "lead_source": s} for u, c, s in leads],
        schema={"unified_id": pl.String, "country": pl.String, "lead_source": pl.String},
    )


def _by(frame: pl.DataFrame, segment: str) -> dict[str, int]:
    part = frame.filter(pl.col("segment") == segment)
    return dict(zip(part["stage"], part["reached"], strict=True))


def _mass_ledger(prefix: str, stops: dict[str, int], day: int = 0) -> list[tuple]:
    """`stops[stage]` leads that went Lead → ... → stage, one stage per day from `day`."""
    moves: list[tuple] = []
    i = 0
    for top, n in stops.items():
        for _ in range(n):
            uid, previous = f"{prefix}{i}", None
            for k, stage in enumerate(STAGE_ORDER[: STAGE_ORDER.index(top) + 1]):
                moves.append((uid, previous, stage, "x", day + k))
                previous = stage
            i += 1
    return moves


def test_report_cuts_by_region_origin_source_and_cohort(definition: LeadDefinition) -> None:
    ledger = _ledger(
        ("a", None, "Lead", "new_lead", 0),
        ("a", "Lead", "MQL", "hand_raise", 4),
        ("a", "MQL", "SAL", "sales_accepted", 10),
        ("b", None, "MAL", "fit_threshold", 40),  # entered in February
        ("b", "MAL", "MQL", "score_threshold", 42),
        ("b", "MQL", "Recycled", "recycle", 50),
        ("b", "Recycled", "MQL", "reopen", 60),
        ("c", None, "Lead", "new_lead", 0),
        ("c", "Lead", "Disqualified", "disqualify", 2),
        ("d", None, "SQL", "sgl", 1),  # sales-generated: from SQL on only
        ("d", "SQL", "Customer", "won_opportunity", 9),
        ("gone", None, "Lead", "new_lead", 0),  # merged away: no longer a unified lead
    )
    unified = _unified(
        ("a", "JP", "Webinar"),
        ("b", "us ", "Website"),
        ("c", "DE", None),
        ("d", None, "Partner Referral"),
    )
    report = funnel_report(ledger, unified, definition, NOW)
    assert report.leads == 4
    assert report.overall.columns == list(STAGE_REPORT_SCHEMA)
    assert waterfall(ledger.filter(pl.col("unified_id") != "gone"))["reached"].to_list() == (
        report.overall["reached"].to_list()
    )
    assert _by(report.by_region, "jp")["SAL"] == 1
    assert _by(report.by_region, "us")["MQL"] == 1
    # No overlay covers DE, and d has no country: both follow the global rules.
    assert _by(report.by_region, "global") == {
        "Lead": 1,
        "MAL": 0,
        "MQL": 0,
        "SAL": 0,
        "SQL": 1,
        "Opportunity": 1,
        "Customer": 1,
    }
    assert _by(report.by_origin, "sgl")["Lead"] == 0
    assert _by(report.by_origin, "sgl")["SQL"] == 1
    assert _by(report.by_origin, "marketing")["Lead"] == 3
    assert _by(report.by_lead_source, "(none)")["Lead"] == 1
    assert _by(report.by_lead_source, "Webinar")["SAL"] == 1
    assert _by(report.by_cohort, "2025-01")["Lead"] == 2  # a and c; d is an SGL
    assert _by(report.by_cohort, "2025-02")["Lead"] == 1
    assert report.flows == {
        "marketing_generated": 3,
        "sales_generated": 1,
        "recycled": 1,
        "reopened": 1,
        "disqualified": 1,
        "sales_reentry": 0,
    }
    rows = {r["stage"]: r for r in report.overall.to_dicts()}
    assert rows["MQL"]["recycled"] == 1
    assert rows["Lead"]["disqualified"] == 1
    assert rows["SAL"]["in_stage_now"] == 1
    assert rows["SAL"]["median_days_waiting"] == pytest.approx(90.0)
    # No transition has 20 leads: the report says so rather than naming one.
    assert report.bottleneck is None
    assert "No bottleneck" in report.bottleneck_sentence()


def test_median_days_in_stage_from_consecutive_entries(definition: LeadDefinition) -> None:
    ledger = _ledger(
        ("a", None, "Lead", "new_lead", 0),
        ("a", "Lead", "MQL", "hand_raise", 2),  # 2 days as Lead
        ("a", "MQL", "SAL", "sales_accepted", 5),  # 3 days as MQL
        ("b", None, "Lead", "new_lead", 0),
        ("b", "Lead", "MQL", "score_threshold", 4),  # 4 days as Lead
        ("b", "MQL", "SAL", "sales_accepted", 14),  # 10 days as MQL
        ("c", None, "Lead", "new_lead", 0),
        ("c", "Lead", "MAL", "fit_threshold", 9),  # 9 days as Lead
    )
    unified = _unified(("a", None, None), ("b", None, None), ("c", None, None))
    rows = {
        r["stage"]: r for r in funnel_report(ledger, unified, definition, NOW).overall.to_dicts()
    }
    assert rows["Lead"]["median_days_in_stage"] == pytest.approx(4.0)
    assert rows["MQL"]["median_days_in_stage"] == pytest.approx(6.5)
    assert rows["SAL"]["median_days_in_stage"] is None  # nobody has left SAL yet
    assert rows["SAL"]["in_stage_now"] == 2
    assert rows["MAL"]["median_days_waiting"] == pytest.approx(91.0)


def test_bottleneck_is_the_weakest_transition_with_volume(definition: LeadDefinition) -> None:
    # 100 inquiries: 80 reach MAL, 60 MQL, 12 SAL (20%), 10 SQL, 3 Opportunity, none won.
    # Opportunity → Won converts worst (0/3) but has only 3 leads, under the 20-lead floor.
    stops = {"Lead": 20, "MAL": 20, "MQL": 48, "SAL": 2, "SQL": 7, "Opportunity": 3}
    ledger = _ledger(*_mass_ledger("m", stops))
    unified = _unified(*((f"m{i}", "JP", "Web") for i in range(100)))
    report = funnel_report(ledger, unified, definition, NOW)
    overall = report.overall
    conv = dict(zip(overall["stage"], overall["conversion_from_previous"], strict=True))
    assert conv["SAL"] == pytest.approx(0.2)
    assert conv["Customer"] == pytest.approx(0.0)
    assert report.bottleneck is not None
    assert (report.bottleneck.from_stage, report.bottleneck.stage) == ("MQL", "SAL")
    assert report.bottleneck.advanced == 12 and report.bottleneck.at_previous == 60
    assert report.bottleneck_sentence().startswith(
        "Bottleneck: MQL → SAL converts 20.0% (12 of the 60 leads that reached MQL)"
    )
    # A floor of 3 lets the small Opportunity → Won transition be named.
    low = funnel_report(ledger, unified, definition, NOW, min_volume=3).bottleneck
    assert low is not None and (low.from_stage, low.stage) == ("Opportunity", "Customer")
    assert "Opportunity → Won converts 0.0%" in low.sentence()
    # With a floor of 100, only Lead → MAL qualifies.
    high = funnel_report(ledger, unified, definition, NOW, min_volume=100).bottleneck
    assert high is not None and (high.from_stage, high.stage) == ("Lead", "MAL")


def test_report_of_empty_ledger(definition: LeadDefinition) -> None:
    report = funnel_report(_ledger(), _unified(), definition, NOW)
    assert report.leads == 0
    assert report.overall["reached"].to_list() == [0] * len(STAGE_ORDER)
    assert report.by_region.is_empty() and report.bottleneck is None
    assert render_funnel_png(report).startswith(PNG_SIGNATURE)


def test_markdown_and_png(definition: LeadDefinition) -> None:
    stops = {"Lead": 5, "MQL": 20, "SAL": 3}
    ledger = _ledger(*_mass_ledger("j", stops), *_mass_ledger("u", stops, day=40))
    unified = _unified(
        *((f"j{i}", "JP", "Web|site") for i in range(28)),
        *((f"u{i}", "US", None) for i in range(28)),
    )
    report = funnel_report(ledger, unified, definition, NOW)
    tables = markdown_tables(report)
    assert list(tables) == ["overall", "region", "origin", "lead_source", "cohort"]
    assert "| Lead (Inquiry) | 56 |" in tables["overall"]
    assert "| Customer (Won) | 0 |" in tables["overall"]
    assert "| jp | 28 |" in tables["region"] and "| us | 28 |" in tables["region"]
    assert "Web\\|site" in tables["lead_source"]  # a pipe cannot break the table
    assert "| 2025-02 | 28 |" in tables["cohort"]
    doc = render_funnel_markdown(report)
    assert report.bottleneck_sentence() in doc and "![funnel](funnel.png)" in doc
    png = render_funnel_png(report)
    assert png.startswith(PNG_SIGNATURE) and len(png) > 5_000


def test_the_chart_digest_moves_with_the_figures_drawn(definition: LeadDefinition) -> None:
    stops = {"Lead": 5, "MQL": 20, "SAL": 3}
    unified = _unified(*((f"j{i}", "JP", None) for i in range(28)))
    report = funnel_report(_ledger(*_mass_ledger("j", stops)), unified, definition, NOW)
    again = funnel_report(_ledger(*_mass_ledger("j", stops)), unified, definition, NOW)
    moved = funnel_report(
        _ledger(*_mass_ledger("j", {**stops, "Lead": 4, "SAL": 4})), unified, definition, NOW
    )
    assert chart_digest(report) == chart_digest(again)
    assert render_funnel_png(report) == render_funnel_png(again)  # equal digests, equal bytes
    assert chart_digest(report) != chart_digest(moved)
