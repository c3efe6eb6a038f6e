"""End to end: the funnel report after a dry-run sync, from the asset and from the CLI."""

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from typer.testing import CliRunner

from connectors.sandbox.server import Sandboxes
from orchestration.cli import app
from orchestration.defs import frames
from orchestration.defs.reports import reports_funnel
from orchestration.defs.resources import LeadDefinitionResource, StateStoreResource
from orchestration.funnel.stages import LEDGER_SCHEMA
from orchestration.runner import run_sync
from orchestration.store import StateStore, tables
from tests.e2e.conftest import worker_env

pytestmark = pytest.mark.e2e

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
cli = CliRunner()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StateStore, Path]]:
    tmp = Path(tmp_path_factory.mktemp("report"))
    db_url = f"sqlite:///{tmp / 'state.db'}"
    reports = {"LEADSYNC_REPORTS_DIR": str(tmp / "reports")}
    with Sandboxes(size=200, seed=11) as box, worker_env(box, db_url, **reports):
        assert run_sync().success
        yield StateStore(db_url), tmp / "reports"


def _entered(store: StateStore) -> int:
    """Unified leads that entered the funnel at its top: a forward stage, not sales-generated."""
    ledger = store.read_table(tables.stage_ledger, LEDGER_SCHEMA)
    unified = frames.read(store, "unified_leads").select("unified_id")
    per_lead = (
        ledger.join(unified, on="unified_id", how="semi")
        .group_by("unified_id")
        .agg(
            pl.col("to_stage").is_in(["Recycled", "Disqualified"]).not_().any().alias("forward"),
            (pl.col("rule") == "sgl").any().alias("sgl"),
        )
    )
    return per_lead.filter(pl.col("forward") & ~pl.col("sgl")).height


def _lead_row(markdown: str) -> int:
    match = re.search(r"^\| Lead \(Inquiry\) \| (\d+) \|", markdown, re.MULTILINE)
    assert match, markdown
    return int(match.group(1))


def test_the_sync_writes_the_report_files(env: tuple[StateStore, Path]) -> None:
    store, reports = env
    assert (reports / "funnel.png").read_bytes().startswith(PNG_SIGNATURE)
    markdown = (reports / "funnel.md").read_text(encoding="utf-8")
    assert _lead_row(markdown) == _entered(store) > 0
    stored = frames.read(store, "report_funnel")
    assert stored["reached"][0] == _entered(store)


def test_asset_metadata_has_tables_bottleneck_and_chart(env: tuple[StateStore, Path]) -> None:
    store, reports = env
    result = dg.materialize(
        [reports_funnel],
        resources={
            "state_store": StateStoreResource(db_url=str(store.engine.url)),
            "lead_definition": LeadDefinitionResource(),
        },
    )
    assert result.success
    (event,) = result.asset_materializations_for_node("reports__funnel")
    meta = event.metadata
    waterfall = meta["waterfall"].value
    assert isinstance(waterfall, str)
    assert _lead_row(waterfall) == _entered(store)
    for cut in ("region", "origin", "lead_source", "cohort"):
        assert f"waterfall_by_{cut}" in meta
    bottleneck = meta["bottleneck"].value
    assert isinstance(bottleneck, str) and bottleneck.startswith(("Bottleneck:", "No bottleneck"))
    chart = meta["chart"].value
    assert isinstance(chart, str)
    match = re.fullmatch(r"!\[funnel\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", chart)
    assert match
    assert base64.b64decode(match.group(1)).startswith(PNG_SIGNATURE)
    # Nothing moved since the sync drew it: the same chart, not drawn again.
    assert meta["chart_redrawn"].value is False
    assert base64.b64decode(match.group(1)) == (reports / "funnel.png").read_bytes()


def test_cli_report_funnel(env: tuple[StateStore, Path], tmp_path: Path) -> None:
    store, _ = env
    out = tmp_path / "out"
    shown = cli.invoke(app, ["report", "funnel", "--out", str(out)])
    assert shown.exit_code == 0, shown.output
    assert "Lead (Inquiry)" in shown.output and "ottleneck" in shown.output
    assert (out / "funnel.png").read_bytes().startswith(PNG_SIGNATURE)
    assert _lead_row((out / "funnel.md").read_text(encoding="utf-8")) == _entered(store)

    as_json = cli.invoke(app, ["report", "funnel", "--json", "--out", str(out)])
    assert as_json.exit_code == 0, as_json.output
    payload = json.loads(as_json.output)
    assert payload["overall"][0]["stage"] == "Lead"
    assert payload["overall"][0]["reached"] == _entered(store)
    assert {r["segment"] for r in payload["by_origin"]} <= {"marketing", "sgl"}
    assert payload["bottleneck"] and Path(payload["png"]).exists()
