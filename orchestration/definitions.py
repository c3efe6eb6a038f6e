"""The Dagster entry point: the sync graph's assets, checks, jobs, schedules, sensors, resources."""

import dagster as dg

from orchestration.defs.checks import QUALITY_CHECKS
from orchestration.defs.crm_pull import PULL_ASSETS
from orchestration.defs.executors import STEP_EXECUTOR
from orchestration.defs.leads import LEAD_ASSETS, LEAD_CHECKS
from orchestration.defs.nurture import nurture_assignments
from orchestration.defs.reconcile import RECONCILE_CHECKS, reconcile_job, reconcile_schedule
from orchestration.defs.reports import reports_funnel
from orchestration.defs.resources import build_resources
from orchestration.defs.sensors import SENSORS, renurture_job
from orchestration.defs.writeback import WRITEBACK_ASSETS, WRITEBACK_CHECKS

ALL_ASSETS = [*PULL_ASSETS, *LEAD_ASSETS, nurture_assignments, *WRITEBACK_ASSETS, reports_funnel]
ALL_CHECKS = [*LEAD_CHECKS, *QUALITY_CHECKS, *WRITEBACK_CHECKS, *RECONCILE_CHECKS]

sync_job = dg.define_asset_job(
    "sync_job",
    executor_def=STEP_EXECUTOR,
    # Reconciliation lists every id of every object: nightly (reconcile_job), not every 15 min.
    selection=dg.AssetSelection.all() - dg.AssetSelection.checks(*RECONCILE_CHECKS),
    description="Pull both CRMs incrementally, resolve, score, stage, nurture and write back.",
)

# Every 15 minutes: pulls are incremental, so a quiet interval costs a handful of API calls.
sync_schedule = dg.ScheduleDefinition(
    name="sync_every_15_minutes",
    job=sync_job,
    cron_schedule="*/15 * * * *",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)


def build_definitions() -> dg.Definitions:
    """Definitions bound to the current environment (read when called, not at import)."""
    return dg.Definitions(
        assets=ALL_ASSETS,
        asset_checks=ALL_CHECKS,
        jobs=[sync_job, reconcile_job, renurture_job],
        schedules=[sync_schedule, reconcile_schedule],
        sensors=SENSORS,
        resources=build_resources(),
    )


defs = build_definitions()
