"""End to end: `leadsync definition impact` against a store a sync filled; writes nothing."""

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connectors.sandbox.server import Sandboxes
from orchestration.cli import app
from orchestration.defs import frames
from orchestration.funnel.definition import DEFAULT_PATH
from orchestration.runner import run_sync
from orchestration.store import StateStore
from tests.e2e.conftest import db_url_in, worker_env

pytestmark = pytest.mark.e2e

cli = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StateStore]:
    url = db_url_in(tmp_path_factory)
    with Sandboxes(size=200, seed=41) as box, worker_env(box, url):
        assert run_sync().success
        yield StateStore(url)


def _proposal(tmp_path: Path, old: str, new: str) -> Path:
    folder = tmp_path / "proposal"
    shutil.copytree(DEFAULT_PATH.parent, folder)
    path = folder / "global.yaml"
    text = path.read_text("utf-8")
    assert old in text
    path.write_text(text.replace(old, new), "utf-8")
    return folder


def test_the_published_definition_changes_nothing(store: StateStore) -> None:
    result = cli.invoke(app, ["definition", "impact", str(DEFAULT_PATH), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["current_version"] == report["proposed_version"]
    assert report["totals"]["stage_changes"] == 0
    assert report["totals"]["leads"] == frames.read(store, "unified_leads").height


def test_a_lower_mal_bar_shows_up_before_it_is_published(store: StateStore, tmp_path: Path) -> None:
    stages_before = frames.read(store, "stages")
    proposal = _proposal(tmp_path, "mal_fit_min: 10", "mal_fit_min: 0")
    result = cli.invoke(app, ["definition", "impact", str(proposal), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["current_version"] != report["proposed_version"]
    moves = {(m["from_stage"], m["to_stage"]): m["leads"] for m in report["stage_moves"]}
    # Only leads outside the jp/us overlays follow the global bar, and only Lead -> MAL moves.
    assert moves and set(moves) == {("Lead", "MAL")}
    assert report["totals"]["stage_changes"] == sum(moves.values())
    by_region = {r["region"]: r for r in report["by_region"]}
    assert by_region["global"]["stage_changes"] == report["totals"]["stage_changes"]
    # Nothing was written: the stored stages are as they were.
    assert frames.read(store, "stages").equals(stages_before)
