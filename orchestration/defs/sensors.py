"""Sensors: re-run nurture and write-back when templates or the lead definition change, and
alert on failed runs (a webhook when LEADSYNC_ALERT_WEBHOOK_URL is set, the log otherwise)."""

import os
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import requests

from orchestration.defs.checks import QUALITY_CHECKS
from orchestration.defs.executors import STEP_EXECUTOR
from orchestration.defs.leads import LEAD_CHECKS
from orchestration.defs.resources import LeadDefinitionResource
from orchestration.defs.writeback import WRITEBACK_CHECKS

SCORES = dg.AssetKey(["leads", "scores"])
STAGES = dg.AssetKey(["leads", "stages"])
NURTURE = dg.AssetKey(["nurture", "assignments"])
WRITEBACK = [
    dg.AssetKey(["writeback", "plan"]),
    dg.AssetKey(["hubspot", "writeback"]),
    dg.AssetKey(["salesforce", "writeback"]),
]
# A template change touches only what nurture renders; a definition change also re-scores and
# re-stages (its thresholds, bands and mappings), so those run first.
AFTER_TEMPLATE_CHANGE = [NURTURE, *WRITEBACK]
AFTER_DEFINITION_CHANGE = [SCORES, STAGES, NURTURE, *WRITEBACK]

renurture_job = dg.define_asset_job(
    "renurture_job",
    executor_def=STEP_EXECUTOR,
    selection=dg.AssetSelection.assets(*AFTER_DEFINITION_CHANGE),
    description="Re-score, re-stage, re-nurture and write back from the stored pulls (no pull).",
)


def checks_of(keys: list[dg.AssetKey]) -> list[dg.AssetCheckKey]:
    """The asset checks guarding `keys`: a sub-selected run must still run the blocking ones."""
    checks = [*LEAD_CHECKS, *QUALITY_CHECKS, *WRITEBACK_CHECKS]
    return [ck for c in checks for ck in c.check_keys if ck.asset_key in keys]


def change_cursor(definition_version: str, templates_version: str) -> str:
    """The sensor's cursor: both versions (each a content hash), so it can tell which changed."""
    return f"definition={definition_version};templates={templates_version}"


def _parse_cursor(cursor: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in cursor.split(";") if "=" in part)


@dg.sensor(
    job=renurture_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Re-runs nurture and write-back when nurture_templates/ or the definition change.",
)
def definition_or_templates_changed(
    context: dg.SensorEvaluationContext, lead_definition: LeadDefinitionResource
) -> dg.SensorResult | dg.SkipReason:
    """Launch `renurture_job` once per change of the templates or the lead definition."""
    definition_version, templates_version = lead_definition.versions()
    cursor = change_cursor(definition_version, templates_version)
    if context.cursor is None:
        # The first evaluation only learns where things stand: the sync job already ran (or will
        # run) with these files, so there is nothing to redo.
        return dg.SensorResult(skip_reason=f"remembering {cursor}", cursor=cursor)
    if context.cursor == cursor:
        return dg.SkipReason(f"unchanged: {cursor}")
    before = _parse_cursor(context.cursor)
    definition_changed = before.get("definition") != definition_version
    keys = AFTER_DEFINITION_CHANGE if definition_changed else AFTER_TEMPLATE_CHANGE
    changed = [
        name
        for name, now in (("definition", definition_version), ("templates", templates_version))
        if before.get(name) != now
    ]
    context.log.info(f"{' and '.join(changed)} changed: {context.cursor} -> {cursor}")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                asset_selection=keys,
                asset_check_keys=checks_of(keys),
                tags={
                    "leadsync/changed": ",".join(changed),
                    "leadsync/definition_version": definition_version,
                    "leadsync/templates_version": templates_version,
                },
            )
        ],
        cursor=cursor,
    )


ALERT_WEBHOOK_ENV = "LEADSYNC_ALERT_WEBHOOK_URL"
ALERT_TIMEOUT_SECONDS = 10


def alert_payload(context: dg.RunFailureSensorContext) -> dict[str, Any]:
    """What the webhook receives: job, run id and the failed steps' names. Never the error text:
    a CRM's error message or an exception can quote a lead's email or a request's token."""
    run = context.dagster_run
    steps = sorted(
        {e.step_key for e in context.get_step_failure_events() if e.step_key is not None}
    )
    return {
        "text": f"leadsync: run {run.run_id} of {run.job_name} failed"
        + (f" at {', '.join(steps)}" if steps else ""),
        "job": run.job_name,
        "run_id": run.run_id,
        "status": "FAILURE",
        "failed_steps": steps,
        "failed_at": datetime.now(UTC).isoformat(),
    }


@dg.run_failure_sensor(
    name="alert_on_run_failure",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=f"Posts failed runs to the webhook in {ALERT_WEBHOOK_ENV}; logs them otherwise.",
)
def alert_on_run_failure(context: dg.RunFailureSensorContext) -> None:
    """The alerting hook: a failed run of any job of this code location."""
    payload = alert_payload(context)
    url = os.environ.get(ALERT_WEBHOOK_ENV, "").strip()
    if not url:
        context.log.warning(f"{payload['text']} (set {ALERT_WEBHOOK_ENV} to be alerted)")
        return
    # The URL itself is a secret for most chat webhooks: it is never logged, and neither is an
    # exception's text (requests quotes the URL in it).
    try:
        response = requests.post(url, json=payload, timeout=ALERT_TIMEOUT_SECONDS)
        response.raise_for_status()
    except requests.RequestException as exc:
        status = getattr(exc.response, "status_code", None)
        context.log.error(
            f"alert webhook failed ({type(exc).__name__}{f', HTTP {status}' if status else ''})"
            f" for: {payload['text']}"
        )
        return
    context.log.info(f"alerted: {payload['text']}")


SENSORS = [definition_or_templates_changed, alert_on_run_failure]
