"""Dagster's own instance on PostgreSQL (deploy/dagster.postgres.yaml, dagster-postgres): the sync
job runs against it, with the state store on PostgreSQL too, and its run and events land in the
database."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.sandbox.server import Sandboxes
from orchestration.runner import run_sync
from tests.e2e.conftest import fresh_pg_url, worker_env

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dagster_db(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dg.DagsterInstance, str]]:
    # dagster-postgres needs psycopg2 (it fails on psycopg 3; docs/deploy.md).
    url = sa.make_url(fresh_pg_url("dagster")).set(drivername="postgresql+psycopg2")
    dagster_url = url.render_as_string(hide_password=False)
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(ROOT / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_PG_URL", dagster_url)
        instance = dg.DagsterInstance.from_config(str(home))
        try:
            yield instance, dagster_url
        finally:
            instance.dispose()


def test_the_sync_job_runs_on_a_postgres_instance(
    dagster_db: tuple[dg.DagsterInstance, str],
) -> None:
    instance, dagster_url = dagster_db
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    with Sandboxes(size=60, seed=7) as box, worker_env(box, fresh_pg_url("state")):
        summary = run_sync(instance=instance)
    assert summary.success, summary.notes
    assert summary.unified_leads > 0

    # The run and its events are in PostgreSQL, not in a temporary SQLite file.
    engine = sa.create_engine(dagster_url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        runs = conn.exec_driver_sql("SELECT run_id, status FROM runs").fetchall()
        assert [status for _, status in runs] == ["SUCCESS"]
        materialized = conn.exec_driver_sql(
            "SELECT count(*) FROM event_logs WHERE run_id = %(r)s "
            "AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            {"r": runs[0][0]},
        ).scalar()
    engine.dispose()
    assert materialized and materialized >= 10
    # ...and the instance reads them back.
    record = instance.get_run_record_by_id(runs[0][0])
    assert record is not None and record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
