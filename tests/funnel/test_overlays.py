"""Regional overlays: loading, merging, what may be overridden, versions, and their effect on
scoring and stages."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from orchestration.funnel.definition import (
    DEFAULT_PATH,
    OVERRIDABLE,
    DefinitionError,
    DefinitionProblem,
    LeadDefinition,
    check_definition,
    is_overridable,
    load_definition,
    non_overridable_paths,
    parse_definition,
    validate_definition_dir,
)
from orchestration.funnel.scoring import score, split_by_region
from orchestration.funnel.stages import assign_stages
from tests.funnel.conftest import activities_at, scoring_leads

NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
REGIONS = DEFAULT_PATH.parent / "regions"


@pytest.fixture(scope="module")
def definition() -> LeadDefinition:
    return load_definition()


@pytest.fixture(scope="module")
def global_only() -> LeadDefinition:
    return parse_definition(DEFAULT_PATH.read_bytes(), source=str(DEFAULT_PATH))


def make_dir(tmp_path: Path, overlays: dict[str, str], global_text: str | None = None) -> Path:
    """A definition folder: the shipped global.yaml (or `global_text`) and the given overlays."""
    root = tmp_path / "lead_definition"
    (root / "regions").mkdir(parents=True)
    (root / "global.yaml").write_text(global_text or DEFAULT_PATH.read_text("utf-8"), "utf-8")
    for name, text in overlays.items():
        (root / "regions" / name).write_text(text, "utf-8")
    return root


def overlay_text(
    code: str = "jp", countries: str = "[JP]", locales: str = "[ja, en]", overrides: str = ""
) -> str:
    return f"region: {code}\ncountries: {countries}\nlocales: {locales}\noverrides:\n{overrides}"


def nested(path: str, value: str) -> str:
    """Indented YAML under `overrides:` setting the dotted path to value."""
    parts = path.split(".")
    lines = [
        "  " * (depth + 1) + f"{part}:" + (f" {value}" if depth == len(parts) - 1 else "")
        for depth, part in enumerate(parts)
    ]
    return "\n".join(lines) + "\n"


def problems_of(root: Path) -> list[DefinitionProblem]:
    problems = validate_definition_dir(root)
    assert problems, "expected problems"
    return problems


def line_of(text: str, fragment: str) -> int:
    return next(i for i, row in enumerate(text.splitlines(), 1) if fragment in row)


# --- the shipped overlays ---------------------------------------------------------------------


def test_shipped_overlays_load(definition: LeadDefinition) -> None:
    assert set(definition.regions) == {"jp", "us"}
    jp, us = definition.regions["jp"], definition.regions["us"]
    assert jp.countries == ["JP"] and jp.locales == ["ja", "en"]
    assert us.countries == ["US"] and us.locales == ["en"]
    assert jp.version == hashlib.sha256((REGIONS / "jp.yaml").read_bytes()).hexdigest()[:12]
    assert definition.file_versions == {
        "global.yaml": hashlib.sha256(DEFAULT_PATH.read_bytes()).hexdigest()[:12],
        "regions/jp.yaml": jp.version,
        "regions/us.yaml": us.version,
    }
    assert validate_definition_dir(DEFAULT_PATH.parent) == []
    assert check_definition(REGIONS / "jp.yaml")[0] is not None  # an overlay names its folder


def test_merge_overrides_only_what_the_overlay_sets(definition: LeadDefinition) -> None:
    jp = definition.for_region("jp")
    assert jp.region == "jp" and definition.region is None
    assert jp.version == definition.version  # the version of the whole set, recorded with runs
    assert jp.scoring.thresholds.mql_score_min == 90
    assert definition.scoring.thresholds.mql_score_min == 80
    ja = jp.scoring.fit.seniority["ja"]
    assert ja["課長"] == 18 and ja["次長"] == 18  # set by the overlay
    assert ja["代表取締役"] == 30  # kept from global: mappings merge key by key
    assert jp.scoring.fit.seniority["en"]["General Manager"] == 20
    assert jp.scoring.fit.seniority["en"]["CEO"] == 30
    assert "卸売業" in jp.scoring.fit.industries.values
    assert "Internet" not in jp.scoring.fit.industries.values  # a list replaces the global one
    assert jp.scoring.engagement.activities["trade_show_scan"].points == 1
    assert (
        jp.scoring.engagement.activities["page_view"]
        == (definition.scoring.engagement.activities["page_view"])
    )
    assert jp.sla.mql_to_sal_hours == 72 and jp.sla.breach_action == definition.sla.breach_action
    # Never regional: the same objects' values everywhere.
    assert jp.stages == definition.stages
    assert jp.backward_edges == definition.backward_edges
    assert jp.field_mappings == definition.field_mappings
    assert jp.writeback == definition.writeback
    assert jp.identity == definition.identity
    assert jp.regions == {}
    us = definition.for_region("us")
    assert us.scoring.thresholds.mql_score_min == 75 and us.sla.mql_to_sal_hours == 24
    assert us.scoring.engagement.activities["pricing_page_view"].points == 35


def test_for_region_is_cached_and_none_is_global(definition: LeadDefinition) -> None:
    assert definition.for_region("jp") is definition.for_region("jp")
    assert definition.for_region(None) is definition
    jp = definition.for_region("jp")
    assert jp.for_region("jp") is jp
    with pytest.raises(KeyError, match="xx"):
        definition.for_region("xx")


def test_region_of_country(definition: LeadDefinition) -> None:
    assert definition.region_of_country("JP") == "jp"
    assert definition.region_of_country(" jp ") == "jp"
    assert definition.region_of_country("US") == "us"
    assert definition.region_of_country("GB") is None
    assert definition.region_of_country(None) is None
    assert definition.region_of_country("") is None
    assert definition.country_regions() == {"JP": "jp", "US": "us"}


def test_recorded_content_holds_every_file(definition: LeadDefinition) -> None:
    content = definition.recorded_content()
    assert content.startswith(DEFAULT_PATH.read_text("utf-8"))
    assert "# ---- regions/jp.yaml ----\n" + (REGIONS / "jp.yaml").read_text("utf-8") in content
    assert "# ---- regions/us.yaml ----" in content
    # Without overlays the stored content is the global file, as before overlays existed.
    global_only = parse_definition(DEFAULT_PATH.read_bytes(), source=str(DEFAULT_PATH))
    assert global_only.recorded_content() == DEFAULT_PATH.read_text("utf-8")


# --- versions ---------------------------------------------------------------------------------


def test_version_changes_when_an_overlay_changes(tmp_path: Path) -> None:
    jp = (REGIONS / "jp.yaml").read_text("utf-8")
    root = make_dir(tmp_path, {"jp.yaml": jp})
    first = load_definition(root / "global.yaml")
    (root / "regions" / "jp.yaml").write_text(jp + "\n# a comment\n", "utf-8")
    second = load_definition(root / "global.yaml")
    assert first.version != second.version
    assert first.file_versions["global.yaml"] == second.file_versions["global.yaml"]
    assert first.file_versions["regions/jp.yaml"] != second.file_versions["regions/jp.yaml"]
    (root / "regions" / "us.yaml").write_text((REGIONS / "us.yaml").read_text("utf-8"), "utf-8")
    third = load_definition(root)
    assert third.version not in (first.version, second.version)
    assert set(third.file_versions) == {"global.yaml", "regions/jp.yaml", "regions/us.yaml"}


def test_without_overlays_the_version_is_the_global_files(tmp_path: Path) -> None:
    root = make_dir(tmp_path, {})
    definition = load_definition(root / "global.yaml")
    assert definition.version == hashlib.sha256(DEFAULT_PATH.read_bytes()).hexdigest()[:12]
    assert definition.regions == {}


def test_an_overlays_name_is_part_of_the_version(tmp_path: Path) -> None:
    text = overlay_text("jp")
    a = load_definition(make_dir(tmp_path / "a", {"jp.yaml": text}))
    b = load_definition(make_dir(tmp_path / "b", {"kr.yaml": text.replace("jp", "kr", 1)}))
    assert a.version != b.version


# --- what an overlay may change ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "reported"),
    [
        ("stages", "stages"),
        ("off_funnel_stages", "off_funnel_stages"),
        ("backward_edges.recycle.reasons", "backward_edges"),
        ("sales_reentry.min_stage", "sales_reentry"),
        ("field_mappings.hubspot:contacts.email", "field_mappings"),
        ("writeback.hubspot.object", "writeback"),
        ("sales_status.sgl_lead_sources", "sales_status"),
        ("identity.auto_merge_weight", "identity"),
        ("schema_version", "schema_version"),
        ("scoring.hand_raise.window_days", "scoring.hand_raise"),
        ("sla.breach_action", "sla.breach_action"),
        ("nurture.frequency_cap.max_sends", "nurture.frequency_cap"),
        ("nurture.exhausted_policy", "nurture.exhausted_policy"),
        (
            "scoring.engagement.activities.page_view.label",
            "scoring.engagement.activities.page_view.label",
        ),
        ("scoring.negatives.free_mail.domains", "scoring.negatives.free_mail.domains"),
    ],
)
def test_a_non_overridable_key_is_a_problem_with_file_line_and_key(
    tmp_path: Path, path: str, reported: str
) -> None:
    text = overlay_text(overrides=nested(path, "1"))
    root = make_dir(tmp_path, {"jp.yaml": text})
    [problem] = problems_of(root)
    assert problem.path == str(root / "regions" / "jp.yaml")
    assert problem.key == f"overrides.{reported}"
    # The line of the outermost key the overlay may not touch.
    assert problem.line == 4 + len(reported.split("."))
    assert "not overridable in a regional overlay" in problem.message
    assert "scoring.thresholds" in problem.message and "sla.mql_to_sal_hours" in problem.message
    assert str(problem).startswith(f"{root / 'regions' / 'jp.yaml'}:{problem.line}: overrides.")


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("scoring.thresholds.mql_score_min", "85", 85),
        ("scoring.temperature.hot_min", "85", 85),
        ("scoring.fit.seniority.ja.部長", "22", 22),
        ("scoring.fit.industries.values", "[製造業]", ["製造業"]),
        (
            "scoring.fit.employee_bands",
            "[{min: 1, points: 5}]",
            [{"min": 1, "max": None, "points": 5}],
        ),
        ("scoring.engagement.activities.page_view.points", "2", 2),
        ("scoring.engagement.activities.demo_request.half_life_days", "30", 30.0),
        ("scoring.negatives.competitor.domains", "[rival.example]", ["rival.example"]),
        ("scoring.negatives.inactivity.days", "120", 120),
        ("sla.mql_to_sal_hours", "12", 12),
        ("nurture.fallback_locale", "ja", "ja"),
    ],
)
def test_an_overridable_key_is_accepted_and_applied(
    tmp_path: Path, path: str, value: str, expected: object
) -> None:
    root = make_dir(tmp_path, {"jp.yaml": overlay_text(overrides=nested(path, value))})
    definition = load_definition(root)
    merged: Any = definition.for_region("jp").model_dump(by_alias=True)
    glob: Any = definition.model_dump(by_alias=True)
    for part in path.split("."):
        merged, glob = merged[part], glob.get(part) if isinstance(glob, dict) else None
    assert merged == expected
    assert glob != expected  # the overlay changed it


def test_overridable_is_one_list_of_paths() -> None:
    assert "scoring.thresholds" in OVERRIDABLE
    assert is_overridable(("scoring", "thresholds", "mql_score_min"))
    assert is_overridable(("scoring", "engagement", "activities", "bounce", "cap"))
    assert not is_overridable(("scoring",))
    assert not is_overridable(("stages",))
    tree = {"scoring": {"thresholds": {"x": 1}, "hand_raise": {}}, "stages": [], "sla": {}}
    assert non_overridable_paths(tree) == [("scoring", "hand_raise"), ("stages",)]


def test_definition_keys_at_the_top_of_an_overlay(tmp_path: Path) -> None:
    text = overlay_text() + "stages: []\nscoring:\n  thresholds: {mql_score_min: 70}\n"
    root = make_dir(tmp_path, {"jp.yaml": text})
    by_key = {p.key: p for p in problems_of(root)}
    assert set(by_key) == {"stages", "scoring"}
    assert "not overridable" in by_key["stages"].message
    assert by_key["stages"].line == line_of(text, "stages:")
    assert by_key["scoring"].message == "goes under overrides:"


def test_unknown_overlay_keys_and_bad_values(tmp_path: Path) -> None:
    text = "region: jp\ncountries: [jp, JPN]\nlocales: []\ncolour: red\noverrides: {}\n"
    root = make_dir(tmp_path, {"jp.yaml": text})
    keys = {(p.key, p.line) for p in problems_of(root)}
    assert ("countries.0", 2) in keys and ("countries.1", 2) in keys
    assert ("locales", 3) in keys
    assert ("colour", 4) in keys


# --- the merged result is validated as a whole, and points into the overlay -------------------


def test_merged_result_errors_point_at_the_overlay(tmp_path: Path) -> None:
    overrides = (
        "  scoring:\n"
        "    thresholds:\n"
        "      mql_score_min: high\n"
        "      mql_scor_min: 3\n"
        "    temperature:\n"
        "      warm_min: 95\n"
        "    engagement:\n"
        "      activities:\n"
        "        page_view: {points: 1, cap: -1}\n"
    )
    text = overlay_text(overrides=overrides)
    root = make_dir(tmp_path, {"jp.yaml": text})
    problems = problems_of(root)
    overlay = str(root / "regions" / "jp.yaml")
    assert all(p.path == overlay for p in problems)
    found = {p.key: p.line for p in problems}
    assert found["overrides.scoring.thresholds.mql_score_min"] == line_of(text, "mql_score_min")
    assert found["overrides.scoring.thresholds.mql_scor_min"] == line_of(text, "mql_scor_min")
    # A cross-check on a section: warm_min (from the overlay) against hot_min (from global).
    assert found["overrides.scoring.temperature"] == line_of(text, "temperature:")
    cap = "overrides.scoring.engagement.activities.page_view.cap"
    assert found[cap] == line_of(text, "page_view")


def test_merge_and_overridability_problems_come_together(tmp_path: Path) -> None:
    overrides = "  stages: []\n  scoring:\n    temperature: {warm_min: 95}\n"
    root = make_dir(tmp_path, {"jp.yaml": overlay_text(overrides=overrides)})
    keys = {p.key for p in problems_of(root)}
    assert keys == {"overrides.stages", "overrides.scoring.temperature"}


def test_every_problem_of_every_file(tmp_path: Path) -> None:
    broken_global = DEFAULT_PATH.read_text("utf-8").replace("mql_score_min:", "mql_scor_min:", 1)
    bad_jp = overlay_text(overrides="  stages: []\n")
    bad_us = overlay_text("us", "[US]", "[en]", "  writeback: {}\n")
    root = make_dir(tmp_path, {"jp.yaml": bad_jp, "us.yaml": bad_us}, global_text=broken_global)
    problems = problems_of(root)
    assert {Path(p.path).name for p in problems} == {"global.yaml", "jp.yaml", "us.yaml"}
    with pytest.raises(DefinitionError) as err:
        load_definition(root / "global.yaml")
    assert len(err.value.problems) == len(problems)


def test_region_must_match_its_file_name(tmp_path: Path) -> None:
    root = make_dir(tmp_path, {"japan.yaml": overlay_text("jp")})
    [problem] = problems_of(root)
    assert (problem.key, problem.line) == ("region", 1)
    assert "japan" in problem.message


def test_a_country_belongs_to_one_region(tmp_path: Path) -> None:
    root = make_dir(
        tmp_path,
        {"jp.yaml": overlay_text("jp"), "us.yaml": overlay_text("us", "[US, JP]", "[en]")},
    )
    [problem] = problems_of(root)
    assert problem.path.endswith("us.yaml") and problem.key == "countries.1"
    assert "'jp'" in problem.message


def test_a_locale_needs_seniority_keywords(tmp_path: Path) -> None:
    root = make_dir(tmp_path, {"kr.yaml": overlay_text("kr", "[KR]", "[ko, en]")})
    [problem] = problems_of(root)
    assert problem.key == "locales" and "ko" in problem.message
    fixed = overlay_text("kr", "[KR]", "[ko, en]", nested("scoring.fit.seniority.ko.부장", "20"))
    (root / "regions" / "kr.yaml").write_text(fixed, "utf-8")
    assert load_definition(root).for_region("kr").scoring.fit.seniority["ko"] == {"부장": 20}


def test_stray_yml_duplicate_keys_and_empty_overrides(tmp_path: Path) -> None:
    doubled = overlay_text(
        overrides="  sla:\n    mql_to_sal_hours: 1\n  sla:\n    sal_to_sql_hours: 2\n"
    )
    root = make_dir(tmp_path, {"jp.yaml": doubled, "us.yml": overlay_text("us")})
    problems = problems_of(root)
    assert {(p.key, p.line) for p in problems if p.path.endswith("jp.yaml")} == {
        ("overrides.sla", 7)
    }
    assert any(p.path.endswith("us.yml") for p in problems)
    empty = make_dir(tmp_path / "empty", {"jp.yaml": overlay_text()})
    assert load_definition(empty).for_region("jp").scoring == load_definition().scoring


# --- overlays take effect: scoring and stages --------------------------------------------------


def leads(*rows: dict[str, Any]) -> pl.DataFrame:
    return scoring_leads(
        *rows,
        defaults={"title": "Director", "employee_count": 600, "industry": "Financial Services"},
    )


def activities(*events: tuple[str, str, float]) -> pl.DataFrame:
    return activities_at(NOW, *events)


def by_id(frame: pl.DataFrame) -> dict[str, dict[str, Any]]:
    return {r["unified_id"]: r for r in frame.to_dicts()}


# Three people alike in every way but their country, each with one fresh pricing-page visit.
# Fit: 500-999 employees 20 + Director 20 + target industry 10 + target country 5 = 55.
SAME_PEOPLE = leads(
    {"unified_id": "jp", "country": "JP"},
    {"unified_id": "us", "country": "US"},
    {"unified_id": "gb", "country": "GB"},
)
SAME_ACTIVITIES = activities(
    ("jp", "pricing_page_view", 0), ("us", "pricing_page_view", 0), ("gb", "pricing_page_view", 0)
)


def test_same_activities_score_differently_by_region(
    definition: LeadDefinition, global_only: LeadDefinition
) -> None:
    out = by_id(score(SAME_PEOPLE, SAME_ACTIVITIES, definition, now=NOW))
    assert {k: r["fit_score"] for k, r in out.items()} == {"jp": 55, "us": 55, "gb": 55}
    # Global: pricing page 30 -> 85, hot at 80. JP: same points, but hot only from 90.
    # US: the pricing page is worth 35 -> 90, hot from 75.
    assert (out["gb"]["score"], out["gb"]["temperature"]) == (85, "hot")
    assert (out["jp"]["score"], out["jp"]["temperature"]) == (85, "warm")
    assert (out["us"]["score"], out["us"]["temperature"]) == (90, "hot")
    # Without the overlays all three would score like the GB lead.
    plain = by_id(score(SAME_PEOPLE, SAME_ACTIVITIES, global_only, now=NOW))
    assert {r["score"] for r in plain.values()} == {85}
    assert out["gb"] == plain["gb"]


def test_same_activities_give_different_mql_status_by_region(definition: LeadDefinition) -> None:
    scores = score(SAME_PEOPLE, SAME_ACTIVITIES, definition, now=NOW)
    stages, ledger = assign_stages(SAME_PEOPLE, scores, None, definition, now=NOW)
    stage = dict(zip(stages["unified_id"], stages["stage"], strict=True))
    assert stage == {"jp": "MAL", "us": "MQL", "gb": "MQL"}
    reasons = dict(zip(ledger["unified_id"], ledger["reason"], strict=True))
    assert reasons["us"] == "score 90 >= 75"
    assert reasons["gb"] == "score 85 >= 80"
    assert reasons["jp"] == "fit 55 >= 15"
    assert set(ledger["definition_version"]) == {definition.version}
    assert stages["unified_id"].to_list() == ["jp", "us", "gb"]  # input order kept


def test_leads_outside_every_region_score_exactly_as_global(
    definition: LeadDefinition, global_only: LeadDefinition
) -> None:
    countries = ["GB", "JP", None, "DE", "US", "SG", "jp", "FR"]
    people = leads(
        *[
            {
                "unified_id": f"u{i}",
                "country": c,
                "title": ["営業部長", "VP Sales", "課長", None][i % 4],
                "locale": ["ja", "en", None, "en"][i % 4],
                "employee_count": [30, 150, 600, 2000][i % 4],
            }
            for i, c in enumerate(countries * 5)
        ]
    )
    acts = activities(
        *[
            (f"u{i}", kind, age)
            for i in range(40)
            for kind, age in (("page_view", i % 9), ("trade_show_scan", 3))
        ]
    )
    regional = score(people, acts, definition, now=NOW)
    plain = score(people, acts, global_only, now=NOW)
    assert regional["unified_id"].to_list() == people["unified_id"].to_list()
    outside = pl.col("unified_id").is_in(
        people.filter(~pl.col("country").str.to_uppercase().is_in(["JP", "US"]).fill_null(False))[
            "unified_id"
        ].implode()
    )
    assert regional.filter(outside).equals(plain.filter(outside))
    assert not regional.filter(~outside).equals(plain.filter(~outside))
    stages_r, ledger_r = assign_stages(people, regional, None, definition, now=NOW)
    stages_p, ledger_p = assign_stages(people, plain, None, global_only, now=NOW)
    assert stages_r["unified_id"].to_list() == people["unified_id"].to_list()
    assert stages_r.filter(outside).equals(stages_p.filter(outside))
    keep = ["unified_id", "from_stage", "to_stage", "rule", "reason"]
    assert ledger_r.filter(outside).select(keep).equals(ledger_p.filter(outside).select(keep))


def test_a_regional_lead_without_locale_is_read_in_the_regions_language(
    definition: LeadDefinition,
) -> None:
    people = leads(
        {"unified_id": "jp", "country": "JP", "title": "営業部長", "locale": None},
        {"unified_id": "gb", "country": "GB", "title": "営業部長", "locale": None},
    )
    out = by_id(score(people, activities(), definition, now=NOW))
    # Same size, industry and country points; 部長 (+20) is found only where ja is read.
    assert out["jp"]["fit_score"] - out["gb"]["fit_score"] == 20
    assert "fit:seniority:部長" in out["jp"]["reasons"]


def test_regional_negatives_apply_in_stages(definition: LeadDefinition) -> None:
    # .ed.jp (Japanese schools) is a student domain in the JP overlay only.
    people = leads(
        {"unified_id": "jp", "country": "JP", "email_domain": "school.ed.jp"},
        {"unified_id": "gb", "country": "GB", "email_domain": "school.ed.jp"},
    )
    scores = score(people, activities(), definition, now=NOW)
    stages, ledger = assign_stages(people, scores, None, definition, now=NOW)
    stage = dict(zip(stages["unified_id"], stages["stage"], strict=True))
    assert stage == {"jp": "Disqualified", "gb": "MAL"}
    assert ledger.filter(pl.col("unified_id") == "jp")["reason"].item() == "student"


def test_split_by_region_keeps_a_single_ruleset_frame_whole(
    definition: LeadDefinition, global_only: LeadDefinition
) -> None:
    frame = leads({"unified_id": "a", "country": "GB"}, {"unified_id": "b", "country": None})
    [(rules, part)] = split_by_region(frame, definition)
    assert rules is definition and part is frame
    [(rules, part)] = split_by_region(leads({"unified_id": "a", "country": "JP"}), definition)
    assert rules.region == "jp"
    assert split_by_region(SAME_PEOPLE, global_only) == [(global_only, SAME_PEOPLE)]
    parts = split_by_region(SAME_PEOPLE, definition)
    assert sorted(str(r.region) for r, _ in parts) == ["None", "jp", "us"]
