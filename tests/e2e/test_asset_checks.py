"""End to end: every data-quality asset check passes on a clean sandbox run, and the blocking ones
fail on a corrupted input and stop write-back in the same run."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from connectors.hubspot.client import HubSpotConnector
from connectors.sandbox.server import HUBSPOT_TOKEN, Sandboxes
from orchestration.definitions import ALL_ASSETS, ALL_CHECKS, sync_job
from orchestration.defs import frames
from orchestration.defs.checks import QUALITY_CHECKS
from orchestration.defs.resources import DEFAULT_TEMPLATES_DIR, SyncSettings, build_resources
from orchestration.funnel import scoring
from orchestration.runner import SyncSummary, summarise
from orchestration.store import StateStore
from tests.e2e.conftest import worker_env

pytestmark = pytest.mark.e2e

WRITE_STEPS = {"writeback/plan", "hubspot/writeback", "salesforce/writeback"}
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
def box() -> Iterator[Sandboxes]:
    # Each test gets CRMs nobody wrote to, so a blocked run had something to write.
    with Sandboxes(size=150, seed=31) as sandboxes:
        yield sandboxes


def sync(write_mode: str) -> tuple[dg.ExecuteInProcessResult, SyncSummary]:
    """The sync job in process, as `run_sync` runs it, with the result for its check evaluations."""
    settings = SyncSettings(write_mode=write_mode, full_refresh="false")
    defs = dg.Definitions(
        assets=ALL_ASSETS,
        asset_checks=ALL_CHECKS,
        jobs=[sync_job],
        resources={**build_resources(), "settings": settings},
    )
    result = defs.resolve_job_def("sync_job").execute_in_process(
        run_config=QUIET, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    return result, summarise(result, dry_run=write_mode == "dry_run")


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {
        f"{e.asset_key.to_user_string()}:{e.check_name}": e.passed
        for e in result.get_asset_check_evaluations()
    }


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {
        e.materialization.asset_key.to_user_string()
        for e in result.get_asset_materialization_events()
    }


def assert_write_back_stopped(result: dg.ExecuteInProcessResult, summary: SyncSummary) -> None:
    assert not materialized(result) & WRITE_STEPS
    assert sum(summary.fields_planned.values()) == 0
    assert sum(summary.fields_written.values()) == 0


def test_every_check_passes_on_a_clean_run(box: Sandboxes, db_url: str) -> None:
    with worker_env(box, db_url, write_mode="live"):
        result, summary = sync("live")
    checks = evaluations(result)
    expected = {
        f"{key.asset_key.to_user_string()}:{key.name}"
        for check in QUALITY_CHECKS
        for key in check.check_keys
    }
    assert expected | {"leads/stages:stage_ledger_is_lawful"} <= set(checks)
    assert all(checks.values()), checks
    assert summary.success and summary.failed_checks == []
    assert sum(summary.fields_written.values()) > 0


def test_a_record_in_two_leads_blocks_write_back(box: Sandboxes, db_url: str) -> None:
    with worker_env(box, db_url, write_mode="live"):
        first, planned = sync("dry_run")
        assert first.success and sum(planned.fields_planned.values()) > 0
        # One source record also filed under another person's unified id: the next incremental
        # identity run carries it on, and the golden records and targets would be crossed.
        store = StateStore(db_url)
        identity = frames.read(store, "identity")
        other = identity["unified_id"][-1]
        crossed = identity.head(1).with_columns(pl.lit(other).alias("unified_id"))
        frames.write(store, "identity", pl.concat([identity, crossed]))
        result, summary = sync("live")
    assert "leads/unified:unified_ids_are_unique" in summary.failed_checks
    assert_write_back_stopped(result, summary)


def test_a_broken_template_blocks_write_back(box: Sandboxes, db_url: str, tmp_path: Path) -> None:
    templates = tmp_path / "nurture_templates"
    shutil.copytree(DEFAULT_TEMPLATES_DIR, templates)
    # Every email goes through the shared layouts: a field the context does not have fails lint
    # (unknown-variable) and every render (StrictUndefined).
    for layout in (templates / "_layout").glob("*.j2"):
        layout.write_text(layout.read_text() + "{{ lead.no_such_field }}\n")
    with worker_env(box, db_url, write_mode="live", LEADSYNC_TEMPLATES_DIR=str(templates)):
        result, summary = sync("live")
    assert "nurture/assignments:templates_lint_clean" in summary.failed_checks
    assert "nurture/assignments:every_lead_has_content" in summary.failed_checks
    assert_write_back_stopped(result, summary)


def test_a_score_out_of_range_blocks_write_back(
    box: Sandboxes, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_score = scoring.score

    def broken(*args: object, **kwargs: object) -> pl.DataFrame:
        # A scoring regression: one lead's engagement escapes the definition's total cap.
        scores = real_score(*args, **kwargs)  # type: ignore[arg-type]
        first = pl.int_range(pl.len()) == 0
        return scores.with_columns(
            pl.when(first)
            .then(pl.col("engagement_score") + 1000)
            .otherwise(pl.col("engagement_score"))
        )

    monkeypatch.setattr(scoring, "score", broken)
    with worker_env(box, db_url, write_mode="live"):
        result, summary = sync("live")
    assert summary.failed_checks == ["leads/scores:scores_within_range"]
    assert_write_back_stopped(result, summary)


def test_a_quarantine_rate_over_the_limit_blocks_write_back(box: Sandboxes, db_url: str) -> None:
    # An import blanks a handful of HubSpot contacts: nothing identifies them, so they wait in
    # quarantine.
    hubspot = HubSpotConnector(HUBSPOT_TOKEN, box.hubspot_url)
    blank = {"email": "", "firstname": "", "lastname": ""}
    mangled = [(str(c["id"]), blank) for c in box.hubspot.records("contacts")]
    assert all(o.ok for o in hubspot.batch_update("contacts", mangled[:5]))
    # 5 of some 300 records: under the 5% default, over the limit LEADSYNC_MAX_REJECTED_RATE sets.
    with worker_env(box, db_url, write_mode="live"):
        _, fine = sync("dry_run")
    assert fine.quarantined_records == 5 and fine.failed_checks == []
    with worker_env(box, db_url, write_mode="live", LEADSYNC_MAX_REJECTED_RATE="0.01"):
        result, summary = sync("live")
    assert summary.failed_checks == ["leads/normalized:quarantine_rate_is_low"]
    assert_write_back_stopped(result, summary)
