"""Front matter rules beyond stage and score: wait-after triggers, sequence, region and persona."""

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from orchestration.funnel.definition import LeadDefinition, load_definition
from orchestration.funnel.nurture import Template, TemplateError, load_templates, select_next
from orchestration.funnel.nurture.lint import lint_templates
from orchestration.funnel.nurture.templates import TemplateMeta

ROOT = Path(__file__).resolve().parents[2] / "nurture_templates"
NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def definition() -> LeadDefinition:
    return load_definition()


def tmpl(tid: str, **meta: Any) -> Template:
    return Template(
        id=tid,
        stages=meta.pop("stages", ["MAL"]),
        locale="en",
        subject=tid,
        version=1,
        body="",
        path=Path(f"{tid}.txt.j2"),
        name=f"{tid}.txt.j2",
        ext="txt",
        **meta,
    )


def leads(*rows: dict[str, Any]) -> pl.DataFrame:
    base = {"stage": "MAL", "score": 20, "locale": "en", "country": None, "title": None}
    schema = {"unified_id": pl.String(), "stage": pl.String(), "score": pl.Int64()}
    schema |= {"locale": pl.String(), "country": pl.String(), "title": pl.String()}
    return pl.DataFrame([base | r for r in rows], schema=schema)


def activity(uid: str, kind: str, days_ago: float) -> dict[str, Any]:
    return {"unified_id": uid, "activity_type": kind, "occurred_at": NOW - timedelta(days=days_ago)}


def picks(out: pl.DataFrame) -> dict[str, str | None]:
    return dict(zip(out["unified_id"], out["template_id"], strict=True))


def test_wait_after_fires_a_week_after_the_download(definition: LeadDefinition) -> None:
    catalogue = [
        tmpl("know-how", priority=50),
        tmpl("webinar", priority=60, wait_after={"activity": "content_download", "days": 7}),
    ]
    acts = pl.DataFrame(
        [
            activity("week", "content_download", 8),
            activity("fresh", "content_download", 2),
            activity("viewer", "page_view", 30),
            # A download logged in the future (clock skew) does not count yet.
            activity("skew", "content_download", -10),
        ]
    )
    uids = ["week", "fresh", "viewer", "none", "skew"]
    rows = leads(*({"unified_id": u} for u in uids))
    out = select_next(rows, catalogue, None, definition, now=NOW, activities=acts)
    assert picks(out) == {
        "week": "webinar",
        "fresh": "know-how",
        "viewer": "know-how",
        "none": "know-how",
        "skew": "know-how",
    }
    reason = out.filter(pl.col("unified_id") == "week")["reason"][0]
    assert reason == "stage MAL priority 60; 7 days after content_download"
    # Without the timeline no trigger holds.
    assert set(picks(select_next(rows, catalogue, None, definition, now=NOW)).values()) == {
        "know-how"
    }


def test_sequence_goes_in_order_before_unsequenced(definition: LeadDefinition) -> None:
    catalogue = [
        tmpl("loud", priority=99),
        tmpl("step-2", sequence=2, priority=10),
        tmpl("step-1", sequence=1),
    ]
    history = pl.DataFrame(
        [{"unified_id": "b", "template_id": "step-1", "sent_at": NOW - timedelta(days=30)}]
    )
    history = history.with_columns(pl.col("sent_at").dt.cast_time_unit("us"))
    out = select_next(
        leads({"unified_id": "a"}, {"unified_id": "b"}), catalogue, history, definition, now=NOW
    )
    assert picks(out) == {"a": "step-1", "b": "step-2"}
    assert out["reason"].to_list() == [
        "stage MAL sequence 1 priority 0",
        "stage MAL sequence 2 priority 10",
    ]


def test_region_and_title_conditions(definition: LeadDefinition) -> None:
    assert definition.region_of_country("JP") == "jp"
    catalogue = [
        tmpl("general"),
        tmpl("japan", priority=10, conditions={"regions": ["jp"]}),
        tmpl("rest", priority=10, conditions={"regions": ["global"]}),
        tmpl("execs", priority=20, conditions={"titles": ["部長", "Director"]}),
    ]
    out = select_next(
        leads(
            {"unified_id": "jp", "country": "JP", "title": "Manager"},
            {"unified_id": "fr", "country": "FR"},
            {"unified_id": "boss", "country": "JP", "title": "営業部 部長"},
            {"unified_id": "dir", "country": "FR", "title": "Marketing director"},
        ),
        catalogue,
        None,
        definition,
        now=NOW,
    )
    assert picks(out) == {"jp": "japan", "fr": "rest", "boss": "execs", "dir": "execs"}
    reasons = dict(zip(out["unified_id"], out["reason"], strict=True))
    assert reasons["jp"] == "stage MAL priority 10; matched region"
    assert reasons["boss"] == "stage MAL priority 20; matched title"


def test_front_matter_rejects_unknown_trigger_and_bad_sequence() -> None:
    base = {"id": "x", "stages": ["MAL"], "locale": "en", "subject": "s", "version": 1}
    TemplateMeta.model_validate({**base, "wait_after": {"activity": "content_download", "days": 7}})
    for bad in (
        {"wait_after": {"activity": "downloaded", "days": 7}},
        {"wait_after": {"activity": "content_download", "days": -1}},
        {"wait_after": {"activity": "content_download"}},
        {"sequence": 0},
        {"conditions": {"regions": ["JP"]}},
        {"conditions": {"personas": ["cfo"]}},
    ):
        with pytest.raises(ValueError):
            TemplateMeta.model_validate({**base, **bad})


def test_lint_names_trigger_and_region_problems(tmp_path: Path) -> None:
    root = tmp_path / "nurture_templates"
    shutil.copytree(ROOT, root)
    target = root / "en" / "MAL" / "mal-webinar-after-download.html.j2"
    text = target.read_text(encoding="utf-8")
    target.write_text(text.replace("content_download", "download", 1), encoding="utf-8")
    other = root / "en" / "MAL" / "mal-alignment-know-how.html.j2"
    other.write_text(
        other.read_text(encoding="utf-8").replace(
            "active: true", "conditions:\n  regions: [emea]\nactive: true", 1
        ),
        encoding="utf-8",
    )
    stages = ["Lead", "MAL"]
    problems = [p for p in lint_templates(root, stages=stages) if p.severity == "error"]
    by_path = {p.path: p for p in problems}
    assert set(by_path) == {
        "en/MAL/mal-webinar-after-download.html.j2",
        "en/MAL/mal-alignment-know-how.html.j2",
        # Its translation now points at a template that no longer loads.
        "ja/MAL/mal-webinar-after-download-ja.html.j2",
    }
    trigger = by_path["en/MAL/mal-webinar-after-download.html.j2"]
    assert trigger.code == "front-matter" and "unknown activity 'download'" in trigger.message
    assert trigger.line == 9  # the wait_after key
    region = by_path["en/MAL/mal-alignment-know-how.html.j2"]
    assert "['emea']" in region.message and region.line is not None
    with pytest.raises(TemplateError):
        load_templates(root)


def test_starter_set_has_a_triggered_template_in_en_and_ja() -> None:
    triggered = {t.id: t for t in load_templates(ROOT) if t.wait_after is not None}
    assert set(triggered) >= {"mal-webinar-after-download", "mal-webinar-after-download-ja"}
    for t in triggered.values():
        assert t.wait_after is not None
        assert (t.wait_after.activity, t.wait_after.days) == ("content_download", 7)
