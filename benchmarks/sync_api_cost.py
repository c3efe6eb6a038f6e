"""What a whole sync costs in API calls against the fewest its page and batch sizes allow, with
the sandboxes in the `realistic` profile (HubSpot Professional limits enforced, occasional 5xx,
slow and dropped responses).

Prints, per CRM and endpoint family, the calls of a first full sync against the minimum
(`connectors.cost`), the 429s received (the goal is zero), the achieved HubSpot request rate while
its pull steps ran as a share of the allowed one, and the calls of a quiet re-sync.

    .venv/bin/python benchmarks/sync_api_cost.py --size 2000
"""

import argparse
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path

import dagster as dg

from connectors.cost import minimum_first_sync_calls
from connectors.sandbox.server import Sandboxes
from orchestration.defs import frames
from orchestration.funnel.writeback import records_per_object
from orchestration.runner import run_sync
from orchestration.store import StateStore

ALLOWED_PER_S = 190 / 10  # HubSpot Professional private app burst limit
HUBSPOT_PULL_STEPS = ("hubspot__contacts", "hubspot__companies", "hubspot__engagements")


def _step_seconds(instance: dg.DagsterInstance) -> dict[str, float]:
    """Wall time of each step of the instance's latest run, from its event log."""
    run = instance.get_runs(limit=1)[0]
    started: dict[str, float] = {}
    spent: dict[str, float] = {}
    for entry in instance.all_logs(run.run_id):
        event = entry.dagster_event
        if event is None or entry.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            started[entry.step_key] = entry.timestamp
        elif event.event_type_value == "STEP_SUCCESS" and entry.step_key in started:
            spent[entry.step_key] = entry.timestamp - started[entry.step_key]
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size", type=int, default=2000)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        Sandboxes(size=args.size, seed=13, fault_profile="realistic", fault_seed=2) as box,
    ):
        os.environ.update(box.env())
        db_url = f"sqlite:///{Path(tmp) / 'state.db'}"
        os.environ["LEADSYNC_DB_URL"] = db_url
        instance = dg.DagsterInstance.ephemeral()
        box.hubspot.reset_call_counts()
        box.salesforce.reset_call_counts()
        started = time.perf_counter()
        first = run_sync(instance=instance)
        elapsed = time.perf_counter() - started
        steps = _step_seconds(instance)
        hubspot, salesforce = box.hubspot.call_counts(), box.salesforce.call_counts()
        statuses = box.hubspot_faults.counts_by_status()
        plan = frames.read(StateStore(db_url), "writeback_plan")
        box.hubspot.reset_call_counts()
        box.salesforce.reset_call_counts()
        quiet = run_sync()
        quiet_calls = (box.hubspot.call_counts(), box.salesforce.call_counts())
        faults = {
            k: v
            for k, v in (
                box.hubspot_faults.faults_injected() | box.salesforce_faults.faults_injected()
            ).items()
            if v
        }

    print(f"benchmark: sync_api_cost ({args.size:,} people, realistic profile) {datetime.now():%F}")
    print(f"first sync          {elapsed:8.1f} s, success={first.success}")
    for system, counts in (("hubspot", hubspot), ("salesforce", salesforce)):
        minimum = minimum_first_sync_calls(
            system, first.pulled(system), records_per_object(plan, system)
        )
        # The sandbox counts a query's follow-on pages (nextRecordsUrl) apart.
        if system == "salesforce":
            counts = {**counts, "query": counts.get("query", 0) + counts.get("query_more", 0)}
        for family, floor in minimum.items():
            spent = counts.get(family, 0)
            ratio = f"{spent / floor:.2f}x" if floor else "-"
            print(f"  {system:<10} {family:<13} {spent:>7,} calls, minimum {floor:>7,}  ({ratio})")
        other = {
            k: v for k, v in counts.items() if k not in minimum and k not in ("total", "query_more")
        }
        print(f"  {system:<10} metadata/other {other}")
    pull_seconds = sum(steps.get(s, 0.0) for s in HUBSPOT_PULL_STEPS)
    pull_calls = hubspot.get("list", 0) + hubspot.get("events", 0) + hubspot.get("search", 0)
    if pull_seconds:
        rate = pull_calls / pull_seconds
        print(
            f"HubSpot pull rate   {rate:8.1f}/s of {ALLOWED_PER_S:.0f}/s allowed "
            f"({rate / ALLOWED_PER_S:.0%}) over {pull_seconds:.1f} s of pull steps"
        )
    print(f"429 responses       {statuses.get(429, 0):>8}")
    print(f"faults absorbed     {faults}")
    print(
        f"quiet re-sync       writes planned {sum(quiet.fields_planned.values())}, "
        f"hubspot {quiet_calls[0]}, salesforce {quiet_calls[1]}"
    )


if __name__ == "__main__":
    main()
