"""The sync job on Dagster's Celery executor: its steps go through a broker to Celery workers.

For teams that outgrow one machine (docs/deploy.md, "Beyond one machine"). The assets, checks,
resources and selection are those of `orchestration.definitions`; only the executor differs. The
broker and the result backend come from the run config (`celery_run_config`: URLs read from
LEADSYNC_CELERY_BROKER_URL and LEADSYNC_CELERY_BACKEND_URL), and every worker must run with the
same environment as the run (CRM credentials, LEADSYNC_DB_URL, DAGSTER_HOME, those two URLs):
each step is reconstructed and executed inside a worker, which resolves the resources' EnvVars
from its own environment. The state store and Dagster's instance must be reachable from every
worker, which on more than one machine means PostgreSQL.

`tests/e2e/test_celery.py` runs it on two workers and a Redis broker and compares the result with
the in-process run.
"""

from typing import Any

import dagster as dg
from dagster_celery import celery_executor

from orchestration.definitions import ALL_ASSETS, ALL_CHECKS, sync_job
from orchestration.defs.resources import build_resources
from orchestration.observability import run_logger

JOB_NAME = "sync_job"

# The multiprocess `sync_job` with only the executor swapped: same name, selection and
# description, so runs, pools and asset lineage look the same in the UI.
celery_sync_job = dg.define_asset_job(
    JOB_NAME,
    executor_def=celery_executor,
    selection=sync_job.selection,
    description=sync_job.description,
)


def build_celery_definitions() -> dg.Definitions:
    """Definitions bound to the current environment (read when called, not at import)."""
    return dg.Definitions(
        assets=ALL_ASSETS,
        asset_checks=ALL_CHECKS,
        jobs=[celery_sync_job],
        resources=build_resources(),
        # The same redacted, structured run logger as `leadsync sync`: the workers' logs then
        # carry no token and no email address either (orchestration/observability.py).
        loggers={"leadsync": run_logger},
    )


def celery_sync_job_def() -> dg.JobDefinition:
    """The resolved job, for `dg.reconstructable`: the run's process and every Celery worker
    call this to rebuild the job from this module, each with its own environment."""
    return build_celery_definitions().resolve_job_def(JOB_NAME)


# The broker's and the result backend's URLs, read from the environment of the run's process
# and of each worker: a URL carries the broker's password, and run config is stored in the
# instance and shown in the UI (docs/deploy.md, "Secrets").
BROKER_URL_ENV = "LEADSYNC_CELERY_BROKER_URL"
BACKEND_URL_ENV = "LEADSYNC_CELERY_BACKEND_URL"


def celery_run_config(
    *, config_source: dict[str, Any] | None = None, log_level: str = "WARNING"
) -> dict[str, Any]:
    """Run config for the Celery `sync_job`. Its `execution` block is also what
    `dagster-celery worker start -y` reads, so workers and runs share one YAML file;
    `config_source` holds further Celery settings, given to runs and workers alike."""
    execution: dict[str, Any] = {
        "broker": {"env": BROKER_URL_ENV},
        "backend": {"env": BACKEND_URL_ENV},
    }
    if config_source:
        execution["config_source"] = config_source
    return {
        "execution": {"config": execution},
        "loggers": {"leadsync": {"config": {"log_level": log_level}}},
    }


defs = build_celery_definitions()
