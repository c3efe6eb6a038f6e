"""Nurture: the starter templates, next-content selection and sandboxed rendering."""

from __future__ import annotations

import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from orchestration.funnel.definition import ALL_STAGES, LeadDefinition, load_definition
from orchestration.funnel.nurture import (
    Links,
    NurtureContext,
    Template,
    TemplateError,
    assignment_changes,
    load_templates,
    make_environment,
    render_assignments,
    select_next,
)
from orchestration.funnel.nurture.render import render
from orchestration.funnel.nurture.select import ASSIGNMENT_SCHEMA
from orchestration.funnel.nurture.templates import stale_translations

ROOT = Path(__file__).resolve().parents[2] / "nurture_templates"
NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
NURTURE_STAGES = [s for s in ALL_STAGES if s != "Disqualified"]
LINKS = {"unsubscribe_url": "https://example.com/u?t=1&x=2", "content_url": "https://example.com/c"}


@pytest.fixture(scope="module")
def definition() -> LeadDefinition:
    return load_definition()


@pytest.fixture(scope="module")
def starter() -> list[Template]:
    return load_templates(ROOT)


@pytest.fixture(scope="module")
def env() -> SandboxedEnvironment:
    return make_environment(ROOT)


def tmpl(tid: str, stages: list[str], locale: str = "en", **meta: Any) -> Template:
    return Template(
        id=tid,
        stages=stages,
        locale=locale,
        subject=meta.pop("subject", tid),
        version=meta.pop("version", 1),
        body="",
        path=Path(f"{tid}.txt.j2"),
        name=f"{tid}.txt.j2",
        ext="txt",
        **meta,
    )


def leads(*rows: dict[str, Any]) -> pl.DataFrame:
    base = {
        "stage": "MQL",
        "score": 50,
        "locale": "en",
        "industry": None,
        "country": None,
        "opted_out": False,
        "do_not_contact": False,
        "bounced": False,
    }
    return pl.DataFrame(
        [base | r for r in rows],
        schema={
            "unified_id": pl.String,
            "stage": pl.String,
            "score": pl.Int64,
            "locale": pl.String,
            "industry": pl.String,
            "country": pl.String,
            "opted_out": pl.Boolean,
            "do_not_contact": pl.Boolean,
            "bounced": pl.Boolean,
        },
    )


def history(*rows: tuple[str, str, float]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"unified_id": u, "template_id": t, "sent_at": NOW - timedelta(days=d)}
            for u, t, d in rows
        ],
        schema={
            "unified_id": pl.String,
            "template_id": pl.String,
            "sent_at": pl.Datetime("us", "UTC"),
        },
    )


def picks(frame: pl.DataFrame) -> dict[str, tuple[str | None, str]]:
    return {r["unified_id"]: (r["template_id"], r["status"]) for r in frame.iter_rows(named=True)}


def context(stage: str, locale: str, **lead: str) -> NurtureContext:
    return NurtureContext.model_validate(
        {
            "lead": {
                "first_name": "Taro",
                "last_name": "山田",
                "company": "Acme",
                "title": "部長",
                "locale": locale,
            }
            | lead,
            "stage": stage,
            "score": 42,
            "temperature": "warm",
            "links": LINKS,
        }
    )


# --- the starter set ---------------------------------------------------------------------------


def test_starter_set_covers_every_stage_in_both_locales(starter: list[Template]) -> None:
    for locale in ("en", "ja"):
        for stage in NURTURE_STAGES:
            found = [t for t in starter if t.locale == locale and stage in t.stages]
            assert found, f"no {locale} template for {stage}"
        assert any(t.is_evergreen for t in starter if t.locale == locale)
    ja = [t for t in starter if t.locale == "ja"]
    assert all(t.translation_of for t in ja)
    assert stale_translations(starter) == []
    assert len({t.id for t in starter}) == len(starter)


def test_every_starter_template_renders_for_every_stage(
    starter: list[Template], env: SandboxedEnvironment
) -> None:
    for template in starter:
        for stage in NURTURE_STAGES:
            for locale in ("en", "ja"):  # a lead of either locale
                out = render(template, context(stage, locale), env)
                assert out.subject and "\n" not in out.subject
                assert LINKS["content_url"] in out.body, template.id
                if template.ext == "html":
                    assert "https://example.com/u?t=1&amp;x=2" in out.body, template.id
                else:
                    assert LINKS["unsubscribe_url"] in out.body, template.id
                if locale != template.locale:
                    continue  # renders; in production lead.locale is the content's locale
                if locale == "ja":
                    assert "山田 様" in out.body
                    assert (
                        "お世話になっております" in out.body or "ありがとうございます" in out.body
                    )
                else:
                    assert "Hi Taro," in out.body


def test_blank_names_get_a_polite_fallback(
    starter: list[Template], env: SandboxedEnvironment
) -> None:
    ja = next(t for t in starter if t.id == "lead-data-checklist-ja")
    body = render(ja, context("Lead", "ja", last_name="", company=""), env).body
    assert body.startswith("ご担当者様")
    en = next(t for t in starter if t.id == "lead-data-checklist")
    assert render(en, context("Lead", "en", first_name=""), env).body.startswith("Hello,")


# --- template loading -------------------------------------------------------------------------


def _write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


GOOD = "---\nid: t1\nstages: [MQL]\nlocale: en\nsubject: Hi\nversion: 1\n---\nBody {{ stage }}\n"


def test_load_templates_reads_front_matter(tmp_path: Path) -> None:
    _write(tmp_path, "en/MQL/t1.txt.j2", GOOD)
    _write(tmp_path, "_layout/base.txt.j2", "not a template {{ x }}")
    [t] = load_templates(tmp_path)
    assert (t.id, t.stages, t.locale, t.channel, t.ext, t.name) == (
        "t1",
        ["MQL"],
        "en",
        "email",
        "txt",
        "en/MQL/t1.txt.j2",
    )
    assert t.cooldown_days is None and t.active and t.priority == 0
    env = make_environment(tmp_path)
    assert render(t, context("MQL", "en"), env).body == "Body MQL\n"


@pytest.mark.parametrize(
    ("rel", "text", "message"),
    [
        ("en/MQL/t1.txt.j2", GOOD.replace("subject: Hi", "subjct: Hi"), "subjct"),
        ("en/MQL/t2.txt.j2", GOOD, "does not match the file name"),
        ("ja/MQL/t1.txt.j2", GOOD, "locale"),
        ("en/SAL/t1.txt.j2", GOOD, "do not include its directory"),
        ("en/MQL/t1.txt.j2", GOOD.replace("[MQL]", "[MQL, Nope]"), "unknown stages"),
        ("en/MQL/t1.md.j2", GOOD, "file name"),
        ("en/MQL/t1.txt.j2", "no front matter\n", "front matter"),
        (
            "en/MQL/t1.txt.j2",
            GOOD.replace("version: 1\n", "version: 1\ntranslation_of: x\n"),
            "translation_of",
        ),
    ],
)
def test_bad_templates_name_the_file(tmp_path: Path, rel: str, text: str, message: str) -> None:
    _write(tmp_path, rel, text)
    with pytest.raises(TemplateError) as err:
        load_templates(tmp_path)
    assert Path(rel).name in str(err.value)
    assert message in str(err.value)


def test_duplicate_ids_are_rejected(tmp_path: Path) -> None:
    _write(tmp_path, "en/MQL/t1.txt.j2", GOOD)
    _write(tmp_path, "en/MQL/t1.html.j2", GOOD)
    with pytest.raises(TemplateError, match="duplicate id"):
        load_templates(tmp_path)


# --- rendering ----------------------------------------------------------------------------------


def test_html_escapes_lead_markup_and_txt_does_not(tmp_path: Path) -> None:
    body = GOOD.replace("subject: Hi", "subject: 'Hi {{ lead.first_name }}'").replace(
        "Body {{ stage }}", "{{ lead.first_name }}"
    )
    _write(tmp_path, "en/MQL/h.html.j2", body.replace("id: t1", "id: h"))
    _write(tmp_path, "en/MQL/p.txt.j2", body.replace("id: t1", "id: p"))
    env = make_environment(tmp_path)
    by_id = {t.id: t for t in load_templates(tmp_path)}
    ctx = context("MQL", "en", first_name="<script>alert(1)</script>")
    html = render(by_id["h"], ctx, env)
    assert "<script>" not in html.body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html.body
    assert html.subject == "Hi <script>alert(1)</script>"  # a header, not HTML
    assert "<script>alert(1)</script>" in render(by_id["p"], ctx, env).body


def test_starter_html_escapes_lead_data(starter: list[Template], env: SandboxedEnvironment) -> None:
    t = next(t for t in starter if t.id == "mql-case-study")
    out = render(t, context("MQL", "en", first_name="<script>x</script>", company="<b>"), env)
    assert "<script>x</script>" not in out.body and "&lt;script&gt;" in out.body


def test_subject_is_folded_to_one_line(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "en/MQL/t1.txt.j2",
        GOOD.replace("subject: Hi", "subject: 'Hi {{ lead.company }}'"),
    )
    [t] = load_templates(tmp_path)
    out = render(
        t, context("MQL", "en", company="Evil\r\nBcc: x@example.com"), make_environment(tmp_path)
    )
    assert out.subject == "Hi Evil Bcc: x@example.com"


def test_unknown_variable_raises(tmp_path: Path) -> None:
    _write(tmp_path, "en/MQL/t1.txt.j2", GOOD.replace("{{ stage }}", "{{ lead.nickname }}"))
    [t] = load_templates(tmp_path)
    with pytest.raises(UndefinedError):
        render(t, context("MQL", "en"), make_environment(tmp_path))


def test_sandbox_blocks_escape_payload(tmp_path: Path) -> None:
    payload = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    _write(tmp_path, "en/MQL/t1.txt.j2", GOOD.replace("{{ stage }}", payload))
    [t] = load_templates(tmp_path)
    env = make_environment(tmp_path)
    with pytest.raises(SecurityError):
        render(t, context("MQL", "en"), env)
    with pytest.raises(SecurityError):
        env.from_string(payload).render()


def test_render_error_line_numbers_match_the_file(tmp_path: Path) -> None:
    _write(tmp_path, "en/MQL/t1.txt.j2", GOOD.replace("Body {{ stage }}\n", "ok\n{{ nope }}\n"))
    [t] = load_templates(tmp_path)
    with pytest.raises(UndefinedError) as err:
        render(t, context("MQL", "en"), make_environment(tmp_path))
    frames = traceback.extract_tb(err.value.__traceback__)
    lines = [f.lineno for f in frames if f.filename.endswith("t1.txt.j2")]
    assert lines and lines[-1] == 9  # 7 lines of front matter, "ok", then the bad line


LEAD_ROWS = pl.DataFrame(
    {
        "unified_id": ["a", "b", "c"],
        "first_name": ["花子", None, "Ann"],
        "last_name": ["佐藤", None, "Lee"],
        "company": ["株式会社テスト", None, "<Acme>"],
        "title": [None, None, None],
        "stage": ["MQL", "Lead", "MQL"],
        "score": [85, 0, 40],
        "temperature": ["hot", "cold", "warm"],
    }
)


def test_render_assignments_adds_subject_and_body(
    starter: list[Template], env: SandboxedEnvironment, definition: LeadDefinition
) -> None:
    chosen = select_next(
        leads(
            {"unified_id": "a", "locale": "ja"},
            {"unified_id": "b", "opted_out": True},
            {"unified_id": "c"},
        ),
        starter,
        None,
        definition,
        now=NOW,
    )
    out = render_assignments(chosen, LEAD_ROWS, starter, env)
    assert out["unified_id"].to_list() == ["a", "b", "c"]
    assert out.columns == [
        *chosen.columns,
        "next_subject",
        "next_content_url",
        "body",
        "render_error",
        "render_key",
    ]
    a, b, c = out.iter_rows(named=True)
    assert a["next_subject"].startswith("【導入事例】") and "佐藤 様" in a["body"]
    assert "https://www.example.com/ja/resources/mql-case-study-ja" in a["body"]
    # the link write-back carries is the one the body links to
    assert a["next_content_url"] == "https://www.example.com/ja/resources/mql-case-study-ja"
    assert b["status"] == "suppressed" and b["body"] is None and b["render_error"] is None
    assert c["next_subject"] == "How a team like <Acme> halved lead response time"
    assert "Hi Ann," in c["body"] and "<Acme>" not in c["body"]


def test_render_assignments_renders_only_changes(
    starter: list[Template], env: SandboxedEnvironment, definition: LeadDefinition
) -> None:
    calls: list[str] = []

    def links(uid: str, template: Template) -> Links:
        calls.append(uid)
        return Links(**LINKS)

    rows = leads({"unified_id": "a", "locale": "ja"}, {"unified_id": "c"})
    first = render_assignments(
        select_next(rows, starter, None, definition, now=NOW), LEAD_ROWS, starter, env, links=links
    )
    assert sorted(calls) == ["a", "c"]
    calls.clear()
    moved = rows.with_columns(
        pl.when(pl.col("unified_id") == "c").then(pl.lit("SAL")).otherwise("stage").alias("stage")
    )
    second = render_assignments(
        select_next(moved, starter, None, definition, now=NOW),
        LEAD_ROWS,
        starter,
        env,
        links=links,
        previous=first,
    )
    assert calls == ["c"]
    assert second.row(0, named=True)["body"] == first.row(0, named=True)["body"]
    assert second.row(1, named=True)["template_id"] == "sal-comparison-guide"


def test_render_assignments_reports_errors_per_lead(
    starter: list[Template], env: SandboxedEnvironment
) -> None:
    assignments = pl.DataFrame(
        {"unified_id": ["a", "c"], "template_id": ["gone", "mql-case-study"]},
    ).with_columns(
        pl.lit(1, dtype=pl.Int64).alias("template_version"),
        pl.lit("en").alias("locale"),
        pl.lit("assigned").alias("status"),
    )
    out = render_assignments(assignments, LEAD_ROWS, starter, env)
    assert "unknown template" in out.row(0, named=True)["render_error"]
    assert out.row(1, named=True)["render_error"] is None


# --- selection ----------------------------------------------------------------------------------


def test_selection_per_stage_and_locale_with_en_fallback(
    starter: list[Template], definition: LeadDefinition
) -> None:
    out = select_next(
        leads(
            {"unified_id": "ja", "locale": "ja"},
            {"unified_id": "en"},
            {"unified_id": "de", "locale": "de"},
            {"unified_id": "ja_sal", "locale": "ja", "stage": "SAL"},
            {"unified_id": "none", "locale": None, "stage": "Customer"},
        ),
        starter,
        None,
        definition,
        now=NOW,
    )
    assert out.schema == pl.Schema(ASSIGNMENT_SCHEMA)
    assert out["unified_id"].to_list() == ["ja", "en", "de", "ja_sal", "none"]
    assert picks(out) == {
        "ja": ("mql-case-study-ja", "assigned"),
        "en": ("mql-case-study", "assigned"),
        "de": ("mql-case-study", "assigned"),
        "ja_sal": ("sal-comparison-guide-ja", "assigned"),
        "none": ("customer-onboarding", "assigned"),
    }
    de = out.filter(pl.col("unified_id") == "de").row(0, named=True)
    assert de["locale"] == "en" and "fallback" in de["reason"]
    assert set(out["due_at"]) == {NOW}


def test_fallback_to_en_when_locale_lacks_the_stage(definition: LeadDefinition) -> None:
    templates = [
        tmpl("ja-lead", ["Lead"], "ja"),
        tmpl("en-mql", ["MQL"]),
        tmpl("en-lead", ["Lead"]),
    ]
    out = select_next(
        leads(
            {"unified_id": "a", "locale": "ja"},
            {"unified_id": "b", "locale": "ja", "stage": "Lead"},
        ),
        templates,
        None,
        definition,
        now=NOW,
    )
    assert picks(out) == {"a": ("en-mql", "assigned"), "b": ("ja-lead", "assigned")}


def test_priority_order_ties_by_id_and_already_sent_skipped(definition: LeadDefinition) -> None:
    templates = [
        tmpl("b-high", ["MQL"], priority=50),
        tmpl("a-high", ["MQL"], priority=50),
        tmpl("low", ["MQL"], priority=10),
        tmpl("top-inactive", ["MQL"], priority=99, active=False),
    ]
    out = select_next(
        leads({"unified_id": "fresh"}, {"unified_id": "sent1"}, {"unified_id": "sent2"}),
        templates,
        history(("sent1", "a-high", 30), ("sent2", "a-high", 30), ("sent2", "b-high", 20)),
        definition,
        now=NOW,
    )
    assert picks(out) == {
        "fresh": ("a-high", "assigned"),
        "sent1": ("b-high", "assigned"),
        "sent2": ("low", "assigned"),
    }


def test_score_window_and_conditions(starter: list[Template], definition: LeadDefinition) -> None:
    templates = [
        tmpl("hot-only", ["MQL"], priority=90, score_min=80),
        tmpl("jp-only", ["MQL"], priority=80, conditions={"countries": ["jp"]}),
        tmpl("any", ["MQL"], priority=10),
    ]
    out = select_next(
        leads(
            {"unified_id": "hot", "score": 85},
            {"unified_id": "jp", "country": "JP"},
            {"unified_id": "us", "country": "US"},
        ),
        templates,
        None,
        definition,
        now=NOW,
    )
    assert picks(out) == {
        "hot": ("hot-only", "assigned"),
        "jp": ("jp-only", "assigned"),
        "us": ("any", "assigned"),
    }
    # Starter set: the manufacturing story goes to manufacturers only (any spelling).
    out = select_next(
        leads(
            {"unified_id": "m", "industry": "MANUFACTURING"},
            {"unified_id": "m_ja", "industry": "製造業", "locale": "ja"},
            {"unified_id": "x", "industry": "Retail"},
        ),
        starter,
        None,
        definition,
        now=NOW,
    )
    assert picks(out) == {
        "m": ("mql-manufacturing-case-study", "assigned"),
        "m_ja": ("mql-manufacturing-case-study-ja", "assigned"),
        "x": ("mql-case-study", "assigned"),
    }


def test_exhausted_gets_evergreen_or_pause(definition: LeadDefinition) -> None:
    templates = [
        tmpl("only", ["MQL"]),
        tmpl("digest", ["any"]),
        tmpl("digest-2", ["any"], priority=5),
    ]
    hist = history(("done", "only", 40), ("done2", "only", 40), ("done2", "digest-2", 35))
    out = select_next(
        leads({"unified_id": "done"}, {"unified_id": "done2"}), templates, hist, definition, now=NOW
    )
    assert picks(out) == {"done": ("digest-2", "exhausted"), "done2": ("digest", "exhausted")}
    paused_def = definition.model_copy(
        update={"nurture": definition.nurture.model_copy(update={"exhausted_policy": "pause"})}
    )
    out = select_next(leads({"unified_id": "done"}), templates, hist, paused_def, now=NOW)
    row = out.row(0, named=True)
    assert (row["template_id"], row["status"], row["reason"]) == (
        None,
        "exhausted",
        "exhausted: paused",
    )


def test_suppressed_leads_get_no_template(
    starter: list[Template], definition: LeadDefinition
) -> None:
    out = select_next(
        leads(
            {"unified_id": "optout", "opted_out": True},
            {"unified_id": "dnc", "do_not_contact": True},
            {"unified_id": "bounce", "bounced": True},
            {"unified_id": "dq", "stage": "Disqualified"},
            {"unified_id": "ok"},
        ),
        starter,
        None,
        definition,
        now=NOW,
    )
    got = picks(out)
    assert got.pop("ok") == ("mql-case-study", "assigned")
    assert got == {k: (None, "suppressed") for k in ("optout", "dnc", "bounce", "dq")}
    assert out.filter(pl.col("unified_id") == "optout")["reason"][0] == "suppressed: opted out"


def test_cooldown_and_frequency_cap_set_due_at(definition: LeadDefinition) -> None:
    templates = [tmpl("a", ["MQL"], cooldown_days=10), tmpl("b", ["MQL"], priority=-1)]
    out = select_next(
        leads({"unified_id": "recent"}, {"unified_id": "busy"}, {"unified_id": "long_ago"}),
        templates,
        history(
            ("recent", "x", 3),  # a send 3 days ago: 10-day cooldown → due in 7 days
            ("busy", "a", 2),  # cap 2 per 7 days; b's own cooldown: default 7 days
            ("busy", "y", 1),
            ("long_ago", "x", 60),
        ),
        definition,
        now=NOW,
    )
    due = dict(zip(out["unified_id"], out["due_at"], strict=True))
    assert due["recent"] == NOW + timedelta(days=7)
    # busy: last send 1 day ago + 7-day default cooldown = 6 days; cap releases at 2+... = 5 days.
    assert due["busy"] == NOW + timedelta(days=6)
    assert due["long_ago"] == NOW
    tight = definition.model_copy(
        update={
            "nurture": definition.nurture.model_copy(
                update={
                    "default_cooldown_days": 0,
                    "frequency_cap": definition.nurture.frequency_cap.model_copy(
                        update={"max_sends": 2, "per_days": 7}
                    ),
                }
            )
        }
    )
    busy = history(("busy", "a", 2), ("busy", "y", 1))
    out = select_next(leads({"unified_id": "busy"}), [tmpl("b", ["MQL"])], busy, tight, now=NOW)
    assert out["due_at"][0] == NOW + timedelta(days=5)  # the older of the 2 sends + 7 days


def test_assignment_changes(starter: list[Template], definition: LeadDefinition) -> None:
    first = select_next(
        leads({"unified_id": "a"}, {"unified_id": "b"}), starter, None, definition, now=NOW
    )
    assert assignment_changes(first, None).height == 2
    assert assignment_changes(first, first).is_empty()
    second = select_next(
        leads({"unified_id": "a"}, {"unified_id": "b", "stage": "SAL"}),
        starter,
        None,
        definition,
        now=NOW,
    )
    assert assignment_changes(second, first)["unified_id"].to_list() == ["b"]


def test_a_regional_fallback_locale_applies_to_that_region_only(tmp_path: Path) -> None:
    # A jp overlay whose fallback is Japanese: a JP lead reading a locale nobody wrote content
    # for (zh) gets ja content; a US lead in the same locale gets the global fallback (en).
    import shutil

    from orchestration.funnel.definition import DEFAULT_PATH

    folder = tmp_path / "definition"
    shutil.copytree(DEFAULT_PATH.parent, folder)
    jp = folder / "regions" / "jp.yaml"
    text = jp.read_text("utf-8")
    assert "fallback_locale: en" in text
    jp.write_text(text.replace("fallback_locale: en", "fallback_locale: ja"), "utf-8")
    definition = load_definition(folder / "global.yaml")
    templates = [tmpl("en-mql", ["MQL"]), tmpl("ja-mql", ["MQL"], locale="ja")]
    chosen = select_next(
        leads(
            {"unified_id": "UL-jp", "locale": "zh", "country": "JP"},
            {"unified_id": "UL-us", "locale": "zh", "country": "US"},
        ),
        templates,
        None,
        definition,
        now=NOW,
    )
    assert picks(chosen) == {"UL-jp": ("ja-mql", "assigned"), "UL-us": ("en-mql", "assigned")}


def test_moving_the_site_re_renders_with_the_new_links(
    starter: list[Template], definition: LeadDefinition, env: SandboxedEnvironment
) -> None:
    from orchestration.funnel.nurture.render import links_for

    chosen = select_next(leads({"unified_id": "c"}), starter, None, definition, now=NOW)
    first = render_assignments(chosen, LEAD_ROWS, starter, env)
    same = render_assignments(chosen, LEAD_ROWS, starter, env, previous=first)
    assert same["render_key"].to_list() == first["render_key"].to_list()
    moved = render_assignments(
        chosen,
        LEAD_ROWS,
        starter,
        env,
        links=links_for("https://leads.example.jp/"),
        previous=first,
    )
    assert moved["render_key"][0] != first["render_key"][0]
    assert moved["next_content_url"][0].startswith("https://leads.example.jp/en/resources/")
    assert "https://leads.example.jp/email/unsubscribe?lead=c" in moved["body"][0]
