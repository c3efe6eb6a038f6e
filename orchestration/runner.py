"""Run the sync job in process and summarise it from the assets' materialization metadata.

Shared by `leadsync sync`, `leadsync plan` and `leadsync demo`, and by the end-to-end tests, so the
summary users read is the one the tests assert on.
"""

import ctypes
import ctypes.util
import gc
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import dagster as dg

from orchestration.definitions import ALL_ASSETS, ALL_CHECKS, reconcile_job, sync_job
from orchestration.defs.reconcile import CHECK_NAME
from orchestration.defs.resources import SyncSettings, build_resources
from orchestration.observability import StepProgress, run_logger
from orchestration.store import DEFAULT_DB_URL, StateStore

PULL_ASSETS = {
    "hubspot": ("hubspot/contacts", "hubspot/companies", "hubspot/engagements"),
    "salesforce": (
        "salesforce/leads",
        "salesforce/contacts",
        "salesforce/tasks_events",
        "salesforce/opportunities",
    ),
}
WRITE_ASSETS = {"hubspot": "hubspot/writeback", "salesforce": "salesforce/writeback"}

# In process, every step shares one heap. Frames that a finished step left in reference cycles
# wait for Python's rare full collection, and glibc keeps freed pages inside its heap, so each
# step started on top of what the ones before it had left (the daemon's steps are processes of
# their own and give all of it back when they exit). Measured at 50,000 people: a collection
# freed up to 107 MiB at a step start, and trimming the heap up to 100 MiB more.
# A full collection costs time in proportion to the live objects (the end-to-end tests, with
# both sandboxes in their process, ran 2.5 times slower releasing after every step), so memory
# is released only after a step that left the process this much bigger than the last release.
RELEASE_AFTER_GROWTH_MIB = 256.0
try:
    _MALLOC_TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
except (OSError, AttributeError):  # not glibc: collecting garbage is all there is to do
    _MALLOC_TRIM = None
_PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / 2**20
_released_at_mib = 0.0


def _rss_mib() -> float | None:
    try:  # Linux; elsewhere the size is unknown and nothing is released
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE_MIB
    except OSError:
        return None


def release_memory() -> None:
    """Collect cyclic garbage and give glibc's free heap pages back to the system."""
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _release_if_grown() -> None:
    global _released_at_mib
    rss = _rss_mib()
    if rss is None:
        return
    if rss - _released_at_mib >= RELEASE_AFTER_GROWTH_MIB:
        release_memory()
        _released_at_mib = _rss_mib() or rss
    elif rss < _released_at_mib:  # given back since (polars' allocator purges on its own)
        _released_at_mib = rss


@dg.success_hook(name="release_memory_after_step")
def _release_after_success(context: dg.HookContext) -> None:
    _release_if_grown()


@dg.failure_hook(name="release_memory_after_failed_step")
def _release_after_failure(context: dg.HookContext) -> None:
    _release_if_grown()


@dataclass
class SyncSummary:
    """What one run did, in the users' terms."""

    records_pulled: dict[str, int] = field(default_factory=dict)
    records_by_object: dict[str, int] = field(default_factory=dict)  # "hubspot:contacts": n
    quarantined_records: int = 0
    unified_leads: int = 0
    merged_records: int = 0
    # How normalisation ran: "full" or "incremental", and how many person records it redid.
    normalize: dict[str, Any] = field(default_factory=dict)
    # How identity ran: "full" or "incremental", records matched, pairs waiting for a person.
    identity: dict[str, Any] = field(default_factory=dict)
    # Leads scored this run; the others kept their scores (same day, definition and inputs).
    leads_scored: int = 0
    leads_by_stage: dict[str, int] = field(default_factory=dict)
    templates_chosen: dict[str, int] = field(default_factory=dict)
    fields_planned: dict[str, int] = field(default_factory=dict)
    fields_written: dict[str, int] = field(default_factory=dict)
    rejected_rows: dict[str, int] = field(default_factory=dict)
    api_calls: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False
    success: bool = True
    # Why something was not done ("salesforce write-back held back: ..."), for the user to read.
    notes: list[str] = field(default_factory=list)
    # Asset checks that failed ("leads/stages:stage_ledger_is_lawful"); blocking ones stopped
    # everything downstream of their asset, write-back included.
    failed_checks: list[str] = field(default_factory=list)
    # The first records each CRM refused, with its reason (every one is in rejected_rows).
    rejections: dict[str, dict[str, str]] = field(default_factory=dict)
    # What the plan writes per CRM: "Object.field" -> values, and the fewest calls it costs.
    planned_by_field: dict[str, dict[str, int]] = field(default_factory=dict)
    write_calls_estimate: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def pulled(self, system: str) -> dict[str, int]:
        """Records pulled per object of one CRM ("contacts": n, "contacts:archived": n, ...)."""
        prefix = f"{system}:"
        return {
            k.removeprefix(prefix): n
            for k, n in self.records_by_object.items()
            if k.startswith(prefix)
        }


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    """Materialization metadata per asset key ("leads/unified"), as plain values."""
    out: dict[str, dict[str, Any]] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        out[materialization.asset_key.to_user_string()] = {
            key: value.value if isinstance(value, dg.MetadataValue) else value
            for key, value in materialization.metadata.items()
        }
    return out


def run_sync(
    *,
    dry_run: bool | None = None,
    full: bool = False,
    instance: dg.DagsterInstance | None = None,
    resources: dict[str, Any] | None = None,
    log_level: str = "WARNING",
    on_step: Callable[[str, str], None] | None = None,
) -> SyncSummary:
    """Materialize the whole sync graph once against whatever the environment points at.

    `on_step(step_key, event)` hears every step start and end (for a progress bar)."""
    write_mode = "dry_run" if dry_run else os.environ.get("LEADSYNC_WRITE_MODE", "live")
    settings = SyncSettings(write_mode=write_mode, full_refresh="true" if full else "false")
    settings.dry_run  # noqa: B018 - validates LEADSYNC_WRITE_MODE before any work starts
    bound = {**build_resources(), "settings": settings, **(resources or {})}
    with _run_lock(bound) as waited:
        result = _execute("sync_job", bound, instance, log_level, on_step)
    summary = summarise(result, dry_run=settings.dry_run)
    if waited >= 1:
        summary.notes.append(f"waited {waited:.0f} s for another run on this state store")
    return summary


def sync_step_count() -> int:
    """Steps a sync run executes: one per asset and per separately defined check."""
    from orchestration.definitions import defs

    return len(defs.resolve_job_def("sync_job").nodes)


@contextmanager
def _run_lock(resources: dict[str, Any]) -> Iterator[float]:
    """One sync or reconcile at a time per state store (see `StateStore.run_lock`): a second
    worker waits up to LEADSYNC_RUN_LOCK_TIMEOUT_S (default 30 minutes), then fails with
    `RunLockTimeout`. Yields the seconds it waited."""
    url = getattr(resources.get("state_store"), "db_url", None) or DEFAULT_DB_URL
    if isinstance(url, dg.EnvVar):
        url = url.get_value() or DEFAULT_DB_URL
    timeout_s = float(os.environ.get("LEADSYNC_RUN_LOCK_TIMEOUT_S") or 1800)
    with StateStore(url).run_lock(timeout_s=timeout_s) as waited:
        yield waited


def _execute(
    job_name: str,
    resources: dict[str, Any],
    instance: dg.DagsterInstance | None,
    log_level: str,
    on_step: Callable[[str, str], None] | None = None,
) -> dg.ExecuteInProcessResult:
    defs = dg.Definitions(
        assets=ALL_ASSETS,
        asset_checks=ALL_CHECKS,
        jobs=[sync_job, reconcile_job],
        resources=resources,
        loggers={"leadsync": run_logger},
    )
    job = defs.resolve_job_def(job_name).with_hooks(
        {_release_after_success, _release_after_failure}
    )
    # leadsync's run logger instead of Dagster's console logger: the run's events go through the
    # same redacted, structured handler as everything else (orchestration/observability.py).
    run_config = {"loggers": {"leadsync": {"config": {"log_level": log_level}}}}
    progress = StepProgress(on_step) if on_step else None
    run_log = logging.getLogger("leadsync.run")
    if progress:
        run_log.addHandler(progress)
    try:
        # raise_on_error=False: a failed step (one CRM's write-back, say) must not stop the
        # steps that do not depend on it (the other CRM's write-back); the summary reports it.
        return job.execute_in_process(
            run_config=run_config,
            instance=instance or dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
    finally:
        if progress:
            run_log.removeHandler(progress)


@dataclass
class ReconcileSummary:
    """What a reconciliation found per pulled asset: gaps (missed changes) and what it healed."""

    gaps: dict[str, int] = field(default_factory=dict)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    success: bool = True

    @property
    def total_gaps(self) -> int:
        return sum(self.gaps.values())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_gaps": self.total_gaps}


def run_reconcile(
    *,
    instance: dg.DagsterInstance | None = None,
    resources: dict[str, Any] | None = None,
    log_level: str = "WARNING",
) -> ReconcileSummary:
    """Compare every pulled object with its CRM now; heals the store, reports every gap."""
    bound = {**build_resources(), **(resources or {})}
    with _run_lock(bound):
        result = _execute("reconcile_job", bound, instance, log_level)
    summary = ReconcileSummary(success=result.success)
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.check_name != CHECK_NAME:
            continue
        key = evaluation.asset_key.to_user_string()
        meta: dict[str, Any] = {
            k: v.value if isinstance(v, dg.MetadataValue) else v
            for k, v in evaluation.metadata.items()
        }
        summary.gaps[key] = int(meta.get("gaps", 0))
        summary.objects.update({k: v for k, v in meta.items() if isinstance(v, dict)})
    return summary


def summarise(result: dg.ExecuteInProcessResult, *, dry_run: bool) -> SyncSummary:
    summary = SyncSummary(dry_run=dry_run, success=result.success)
    meta = _metadata(result)
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
            summary.failed_checks.append(name)
            summary.notes.append(f"check failed: {name}")
    calls: Counter[str] = Counter()
    for system, keys in PULL_ASSETS.items():
        for key in keys:
            summary.records_pulled[system] = summary.records_pulled.get(system, 0) + int(
                meta.get(key, {}).get("records_pulled", 0)
            )
            calls[system] += int(meta.get(key, {}).get("api_calls", 0))
            for obj, n in dict(meta.get(key, {}).get("records_by_object", {})).items():
                summary.records_by_object[f"{system}:{obj}"] = int(n)
            for obj, n in dict(meta.get(key, {}).get("archived_seen", {})).items():
                summary.records_by_object[f"{system}:{obj}:archived"] = int(n)
            if meta.get(key, {}).get("stopped_for_budget"):
                summary.notes.append(f"{key}: stopped at the daily API budget's reserve")
    summary.quarantined_records = int(meta.get("leads/normalized", {}).get("quarantined", 0))
    normalized = meta.get("leads/normalized", {})
    summary.normalize = {
        k: normalized[k] for k in ("mode", "records_normalized") if k in normalized
    }
    ident = meta.get("leads/identity", {})
    summary.merged_records = int(ident.get("merged_records", 0))
    shown = ("mode", "records_matched", "newly_merged", "review_pairs")
    summary.identity = {k: ident[k] for k in shown if k in ident}
    summary.unified_leads = int(meta.get("leads/unified", {}).get("unified_leads", 0))
    summary.leads_scored = int(meta.get("leads/scores", {}).get("scored_this_run", 0))
    summary.leads_by_stage = dict(meta.get("leads/stages", {}).get("leads_by_stage", {}))
    summary.templates_chosen = dict(meta.get("nurture/assignments", {}).get("templates_chosen", {}))
    plan_meta = meta.get("writeback/plan", {})
    planned = plan_meta.get("planned_by_system", {})
    summary.planned_by_field = {
        system: {k: int(n) for k, n in dict(fields).items()}
        for system, fields in dict(plan_meta.get("planned_by_field", {})).items()
    }
    summary.write_calls_estimate = {
        system: int(n) for system, n in dict(plan_meta.get("write_calls_estimate", {})).items()
    }
    for system, key in WRITE_ASSETS.items():
        written = meta.get(key, {})
        summary.fields_planned[system] = int(planned.get(system, {}).get("fields", 0))
        summary.fields_written[system] = int(written.get("fields_written", 0))
        summary.rejected_rows[system] = int(written.get("rejected_records", 0))
        if written.get("rejections"):
            summary.rejections[system] = dict(written["rejections"])
        if written.get("held_back_because"):
            summary.notes.append(f"{system} write-back held back: {written['held_back_because']}")
        calls[system] += int(written.get("api_calls", 0))
    summary.api_calls = dict(calls)
    return summary
