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
