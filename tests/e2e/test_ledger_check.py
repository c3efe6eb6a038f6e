"""End to end: the blocking stage-ledger check passes on lawful runs and stops write-back when
the ledger holds a move the lifecycle does not allow."""

from collections.abc import Iterator
from datetime import UTC, datetime

import polars as pl
import pytest

from connectors.sandbox.server import Sandboxes
from orchestration.defs import frames
from orchestration.funnel.stages import LEDGER_SCHEMA
from orchestration.runner import run_sync
from orchestration.store import StateStore, tables
from tests.e2e.conftest import db_url_in, worker_env

pytestmark = pytest.mark.e2e

CHECK = "leads/stages:stage_ledger_is_lawful"


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = db_url_in(tmp_path_factory)
    with Sandboxes(size=150, seed=31) as box, worker_env(box, url):
        yield url


def test_a_lawful_run_passes_and_an_illegal_regression_blocks_write_back(db_url: str) -> None:
    first = run_sync()
    assert first.success
    assert first.failed_checks == []
    assert sum(first.fields_planned.values()) > 0

    # Someone (a bad rule, a hand edit) records a move back from MAL to Lead: no declared edge.
    store = StateStore(db_url)
    ledger = store.read_table(tables.stage_ledger, LEDGER_SCHEMA)
    staged = frames.read(store, "stages").filter(pl.col("stage") == "MAL")
    uid = staged["unified_id"][0]
    assert ledger.filter(pl.col("unified_id") == uid)["to_stage"].to_list()[-1] == "MAL"
    store.append(
        tables.stage_ledger,
        [
            {
                "unified_id": uid,
                "from_stage": "MAL",
                "to_stage": "Lead",
                "rule": "hand_edit",
                "reason": None,
                "definition_version": "test",
                "at": datetime.now(UTC),
            }
        ],
    )
    blocked = run_sync()
    assert CHECK in blocked.failed_checks
    # Blocking: nothing downstream of the stages ran, so nothing was planned or written.
    assert sum(blocked.fields_planned.values()) == 0
    assert sum(blocked.fields_written.values()) == 0
