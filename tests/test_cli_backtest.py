"""`leadsync definition backtest`: the current definition alone, and current vs a proposed one."""

import json
from pathlib import Path

from typer.testing import CliRunner

from orchestration.cli import app
from tests.funnel.test_backtest import zero_engagement_definition

runner = CliRunner()


def test_definition_backtest_prints_bands_deciles_and_auc() -> None:
    result = runner.invoke(app, ["definition", "backtest", "--size", "600"])
    assert result.exit_code == 0, result.output
    assert "600 generated people (seed 7)" in result.output
    for text in ("by band", "by decile", "hot", "AUC: opportunity"):
        assert text in result.output


def test_definition_backtest_compares_a_proposed_folder_as_json(tmp_path: Path) -> None:
    folder = zero_engagement_definition(tmp_path / "proposed").parent
    result = runner.invoke(
        app, ["definition", "backtest", str(folder), "--size", "600", "--seed", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["data"]["people"] == 600 and out["data"]["seed"] == 3
    assert out["current"]["version"] != out["proposed"]["version"]
    assert [b["band"] for b in out["bands"]] == ["cold", "warm", "hot"]
    auc = {row["metric"]: row for row in out["auc"]}
    # Without engagement points the score ranks future opportunities worse.
    assert auc["opportunity"]["delta"] < 0
    assert auc["opportunity"]["proposed"] < auc["opportunity"]["current"]


def test_definition_backtest_side_by_side_table_and_a_broken_proposal(tmp_path: Path) -> None:
    folder = zero_engagement_definition(tmp_path / "proposed").parent
    result = runner.invoke(app, ["definition", "backtest", str(folder), "--size", "400"])
    assert result.exit_code == 0, result.output
    assert "->" in result.output and "Δ" in result.output and "AUC" in result.output
    broken = tmp_path / "broken.yaml"
    broken.write_text("schema_version: 1\n", encoding="utf-8")
    result = runner.invoke(app, ["definition", "backtest", str(broken), "--size", "100"])
    assert result.exit_code == 1
