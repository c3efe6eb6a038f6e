"""Two workers on one PostgreSQL database at once do not corrupt the state store or the CRMs.

Two `leadsync sync` processes start together against one fresh database (so they also race to
create its schema) and one pair of sandboxes. The store's run lock serialises them: one syncs,
the other waits for it and then re-syncs, planning nothing. The end state must be exactly that of
the same two syncs run one after the other on fresh sandboxes of the same seed: the same derived
frames, stage ledger (no transition twice), write-back ledger, raw records and CRM values, and
no CRM field written twice.
"""

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from connectors.sandbox.server import Sandboxes
from orchestration.runner import run_sync
from tests.e2e.conftest import fresh_pg_url, within_one_utc_day, worker_env
from tests.e2e.test_convergence import (
    Commit,
    CrmState,
    WriteTaps,
    assert_same_store,
    leadsync_state,
    store_contents,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SIZE = 150
SEED = 29
WORKER_TIMEOUT_S = 180.0
# Both scenarios take ~35 s here; a CI run that crossed midnight UTC between them once compared
# a second sync that re-scored the next day against one that had not.
SCENARIOS_S = 300.0


@dataclass
class Ended:
    """Where a scenario ended: the runs' summaries, the store, the CRMs, what the CRMs committed."""

    summaries: list[dict[str, Any]]
    store: dict[str, pl.DataFrame]
    crm: CrmState
    commits: list[Commit]


def _triples(commits: list[Commit]) -> Counter[tuple[str, str, str | None]]:
    return Counter((c.record_id, c.field, c.value) for c in commits)


@pytest.fixture(scope="module")
def one_day() -> None:
    within_one_utc_day(SCENARIOS_S)


@pytest.fixture(scope="module")
def sequential(one_day: None) -> Ended:
    """The reference: the same two syncs, one after the other, in process."""
    db_url = fresh_pg_url("sequential")
    with Sandboxes(size=SIZE, seed=SEED) as box, worker_env(box, db_url, write_mode="live"):
        taps = WriteTaps(box)
        summaries = [run_sync().to_dict(), run_sync().to_dict()]
        return Ended(summaries, store_contents(db_url), leadsync_state(box), taps.commits())


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "orchestration.cli", "sync", "--json"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
        )


@pytest.fixture(scope="module")
def overlapping(tmp_path_factory: pytest.TempPathFactory, one_day: None) -> Iterator[Ended]:
    db_url = fresh_pg_url("overlapping")
    tmp = tmp_path_factory.mktemp("overlapping")
    with Sandboxes(size=SIZE, seed=SEED) as box:
        taps = WriteTaps(box)
        # The sandboxes run as threads of this process; the workers reach them over HTTP(S).
        env = {**os.environ, **box.env(), "LEADSYNC_DB_URL": db_url, "LEADSYNC_WRITE_MODE": "live"}
        workers = [_worker(env, tmp / f"worker{n}.log") for n in (1, 2)]
        summaries = []
        for n, worker in enumerate(workers, start=1):
            try:
                out, _ = worker.communicate(timeout=WORKER_TIMEOUT_S)
            finally:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
            log = (tmp / f"worker{n}.log").read_text("utf-8", errors="replace")
            assert worker.returncode == 0, f"worker {n} failed: {log[-3000:]}"
            lines = [line for line in out.decode().splitlines() if line.startswith("{")]
            assert lines, f"worker {n} printed no summary: {out.decode()[-2000:]} {log[-2000:]}"
            summaries.append(json.loads(lines[-1]))
        yield Ended(summaries, store_contents(db_url), leadsync_state(box), taps.commits())


def test_both_workers_succeed_and_the_second_waits_for_the_first(overlapping: Ended) -> None:
    assert all(s["success"] for s in overlapping.summaries)
    waited = [s for s in overlapping.summaries if any("waited" in n for n in s["notes"])]
    ran_first = [s for s in overlapping.summaries if s not in waited]
    # They really overlapped: exactly one had to wait for the run lock.
    assert len(waited) == 1 and len(ran_first) == 1, [s["notes"] for s in overlapping.summaries]
    first, second = ran_first[0], waited[0]
    assert sum(first["fields_written"].values()) > 0
    assert first["fields_written"] == first["fields_planned"]
    # The waiting worker started from the first one's results: nothing left to plan or write.
    assert sum(second["fields_planned"].values()) == 0
    assert sum(second["fields_written"].values()) == 0


def test_the_summaries_match_two_sequential_syncs(overlapping: Ended, sequential: Ended) -> None:
    shown = ("unified_leads", "merged_records", "leads_by_stage")
    shown += ("fields_planned", "fields_written")
    ordered = sorted(overlapping.summaries, key=lambda s: -sum(s["fields_written"].values()))
    for actual, expected in zip(ordered, sequential.summaries, strict=True):
        assert {k: actual[k] for k in shown} == {k: expected[k] for k in shown}


def test_the_store_equals_two_sequential_syncs(overlapping: Ended, sequential: Ended) -> None:
    assert_same_store(overlapping.store, sequential.store)
    ledger = overlapping.store["stage_ledger"]
    # No transition was recorded twice (each lead moves at most once per stage pair here).
    assert ledger.n_unique() == len(ledger) > 0
    assert len(overlapping.store["writeback_ledger"]) > 0


def test_no_crm_field_was_written_twice(overlapping: Ended, sequential: Ended) -> None:
    written = _triples(overlapping.commits)
    assert written, "nothing reached the CRMs"
    assert [t for t, n in written.items() if n > 1] == []
    assert written == _triples(sequential.commits)
    assert overlapping.crm == sequential.crm


def test_a_comparison_waits_out_midnight(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.e2e import conftest

    def at(hour: int, minute: int, second: int) -> type[datetime]:
        class Clock(datetime):
            @classmethod
            def now(cls, tz: tzinfo | None = None) -> "Clock":
                return cls(2026, 11, 21, hour, minute, second, tzinfo=UTC)

        return Clock

    slept: list[float] = []
    monkeypatch.setattr(conftest.time, "sleep", slept.append)
    monkeypatch.setattr(conftest, "datetime", at(12, 0, 0))
    assert within_one_utc_day(SCENARIOS_S) == 0.0
    monkeypatch.setattr(conftest, "datetime", at(23, 58, 30))
    assert within_one_utc_day(SCENARIOS_S) == 91.0
    assert slept == [91.0]
