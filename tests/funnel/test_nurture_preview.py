"""The preview gallery's samples, masking and files (the browser test is tests/e2e)."""

from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from orchestration.cli import app
from orchestration.funnel.definition import LeadDefinition, load_definition
from orchestration.funnel.nurture.preview import (
    GLOBAL_REGION,
    MASKED,
    PREVIEW_STAGES,
    build_gallery,
    samples_for,
    samples_from_leads,
    synthetic_samples,
)
from orchestration.funnel.nurture.templates import load_templates

ROOT = Path(__file__).resolve().parents[2] / "nurture_templates"


@pytest.fixture(scope="module")
def definition() -> LeadDefinition:
    return load_definition()


def test_synthetic_samples_cover_every_stage_and_region(definition: LeadDefinition) -> None:
    samples = synthetic_samples(definition)
    regions = [GLOBAL_REGION, *sorted(definition.regions)]
    assert {(s.stage, s.region) for s in samples} == {
        (stage, region) for stage in PREVIEW_STAGES for region in regions
    }
    jp = next(s for s in samples if s.region == "jp")
    assert (jp.locale, jp.country) == ("ja", "JP")
    assert len({s.sample_id for s in samples}) == len(samples)


def test_real_leads_are_masked_and_fill_their_cells(definition: LeadDefinition) -> None:
    leads = pl.DataFrame(
        {
            "unified_id": ["u2", "u1", "u3"],
            "stage": ["MQL", "MQL", "SQL"],
            "score": [90, 85, 100],
            "temperature": ["hot", "hot", "hot"],
            "locale": ["ja", "ja", "en"],
            "country": ["JP", "JP", None],
            "first_name": ["二郎", "太郎", "Grace"],
            "last_name": ["鈴木", "佐藤", "Hopper"],
            "company": ["株式会社B", "株式会社A", "Navy"],
            "title": ["部長", "課長", "Admiral"],
            "email": ["jiro@b.example", "taro@a.example", "grace@navy.example"],
        }
    )
    samples = samples_from_leads(leads, definition)
    real = {(s.stage, s.region): s for s in samples if s.source == MASKED}
    assert set(real) == {("MQL", "jp"), ("SQL", GLOBAL_REGION)}
    taro = real[("MQL", "jp")]  # the lowest unified_id of its cell
    assert (taro.first_name, taro.last_name, taro.company) == ("太.", "佐.", "株式会社A")
    assert real[("SQL", GLOBAL_REGION)].last_name == "H."
    # Every other cell is still covered, synthetically; no email reaches a sample.
    assert len(samples) == len(synthetic_samples(definition))
    assert not any("@" in str(vars(s)) for s in samples)


def test_samples_for_follows_locale_fallback(definition: LeadDefinition) -> None:
    templates = {t.id: t for t in load_templates(ROOT)}
    samples = synthetic_samples(definition)
    ja = samples_for(templates["mql-case-study-ja"], samples, "en")
    assert [(s.stage, s.region) for s in ja] == [("MQL", "jp")]
    en = samples_for(templates["mql-case-study"], samples, "en")
    assert {s.region for s in en} == {GLOBAL_REGION, *definition.regions}
    evergreen = samples_for(templates["evergreen-monthly-digest"], samples, "en")
    assert len(evergreen) == 1 + len(definition.regions)


def test_gallery_files_and_errors(tmp_path: Path, definition: LeadDefinition) -> None:
    templates = load_templates(ROOT)
    gallery = build_gallery(templates, ROOT, tmp_path / "out", definition)
    assert not gallery.errors
    index = gallery.index.read_text(encoding="utf-8")
    for t in templates:
        assert f'data-template-id="{t.id}"' in index
    for r in gallery.renders:
        assert (gallery.index.parent / r.path).is_file()
    # A stale page from an earlier gallery is removed.
    stale = tmp_path / "out" / "renders" / "gone" / "x.html"
    stale.parent.mkdir()
    stale.write_text("old")
    build_gallery(templates, ROOT, tmp_path / "out", definition)
    assert not stale.exists()


def test_cli_preview_writes_gallery_and_fails_on_render_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADSYNC_DB_URL", f"sqlite:///{tmp_path / 'state.db'}")
    runner = CliRunner()
    out = tmp_path / "gallery"
    result = runner.invoke(app, ["templates", "preview", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "0 error(s)" in result.output and (out / "index.html").is_file()

    broken = tmp_path / "templates"
    (broken / "en" / "Lead").mkdir(parents=True)
    (broken / "en" / "Lead" / "oops.txt.j2").write_text(
        "---\nid: oops\nstages: [Lead]\nlocale: en\nsubject: s\nversion: 1\n---\n"
        "{{ lead.first_name | nosuchfilter }}\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["templates", "preview", str(broken), "--out", str(out)])
    assert result.exit_code == 1
    assert "oops" in result.output
