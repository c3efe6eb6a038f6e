"""The `leadsync` command as users call it."""

from pathlib import Path

from typer.testing import CliRunner

from orchestration.cli import app
from orchestration.funnel.definition import DEFAULT_PATH

runner = CliRunner()


def test_definition_validate_accepts_the_shipped_definition() -> None:
    result = runner.invoke(app, ["definition", "validate"])
    assert result.exit_code == 0, result.output
    assert "ok:" in result.output and "global.yaml" in result.output


def test_definition_validate_names_file_line_and_key_and_fails(tmp_path: Path) -> None:
    bad = tmp_path / "global.yaml"
    text = DEFAULT_PATH.read_text("utf-8").replace("mql_score_min:", "mql_scor_min:", 1)
    bad.write_text(text, "utf-8")
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "mql_scor_min:" in row)
    result = runner.invoke(app, ["definition", "validate", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:{line}: scoring.thresholds.mql_scor_min:" in result.output.replace("\n", "")


def test_definition_validate_lists_the_regions_and_their_countries() -> None:
    result = runner.invoke(app, ["definition", "validate"])
    assert result.exit_code == 0, result.output
    assert "region jp: countries JP; locales ja, en" in result.output
    assert "region us: countries US" in result.output


def _definition_folder(tmp_path: Path) -> Path:
    import shutil

    root = tmp_path / "lead_definition"
    shutil.copytree(DEFAULT_PATH.parent, root)
    return root


def test_definition_validate_names_a_bad_overlays_file_line_and_key(tmp_path: Path) -> None:
    root = _definition_folder(tmp_path)
    jp = root / "regions" / "jp.yaml"
    text = jp.read_text("utf-8").replace("overrides:\n", "overrides:\n  stages: []\n", 1)
    text = text.replace("      mql_score_min: 90", "      mql_score_min: ninety", 1)
    jp.write_text(text, "utf-8")
    us = root / "regions" / "us.yaml"
    us.write_text(us.read_text("utf-8").replace("countries: [US]", "countries: [US, JP]"), "utf-8")
    rows = text.splitlines()
    stages_line = next(i for i, row in enumerate(rows, 1) if "stages: []" in row)
    mql_line = next(i for i, row in enumerate(rows, 1) if "mql_score_min: ninety" in row)
    for target in (root, root / "global.yaml", jp):  # the folder, the global file, an overlay
        result = runner.invoke(app, ["definition", "validate", str(target)])
        assert result.exit_code == 1
        out = result.output.replace("\n", "")
        assert f"{jp}:{stages_line}: overrides.stages: not overridable in a regional overlay" in out
        assert f"{jp}:{mql_line}: overrides.scoring.thresholds.mql_score_min:" in out
        assert f"{us}:" in out and ": countries.1: JP already belongs to region 'jp'" in out
        assert "3 problem(s) in 2 file(s)" in out


def test_templates_lint_passes_on_the_starter_set_and_fails_on_a_broken_one(
    tmp_path: Path,
) -> None:
    import shutil

    ok = runner.invoke(app, ["templates", "lint"])
    assert ok.exit_code == 0, ok.output
    assert "0 error(s)" in ok.output
    root = tmp_path / "nurture_templates"
    shutil.copytree(DEFAULT_PATH.parents[1] / "nurture_templates", root)
    victim = next(root.glob("en/MQL/*.j2"))
    victim.write_text(victim.read_text("utf-8") + "\n{% if %}\n", "utf-8")
    broken = runner.invoke(app, ["templates", "lint", str(root)])
    assert broken.exit_code == 1
    assert "[syntax]" in broken.output and victim.name in broken.output.replace("\n", "")
