"""How close leadsync's HubSpot pacing runs to the allowed rate without provoking a 429.

The sandboxes run the `realistic` fault profile with HubSpot's Professional limits (190 requests per
10 s, 5 searches per second). leadsync's connector pulls every contact, company, engagement and page
view as a first sync would; the fault injector counts every response by status. Prints the 429
count (the goal is zero) and the achieved request rate as a share of the allowed one.

    .venv/bin/python benchmarks/pacing_realistic.py --size 5000
"""

import argparse
import time

from connectors.hubspot import HubSpotConnector
from connectors.sandbox.server import Sandboxes
from orchestration.defs.crm_pull import hubspot_properties
from orchestration.funnel.definition import load_definition

ALLOWED_PER_S = 190 / 10  # HubSpot Professional private app burst limit
OBJECTS = ("contacts", "companies", "emails", "calls", "meetings", "notes", "web_events")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size", type=int, default=5000)
    args = parser.parse_args()
    definition = load_definition()
    with Sandboxes(size=args.size, seed=9, fault_profile="realistic", fault_seed=1) as box:
        env = box.env()
        connector = HubSpotConnector(env["HUBSPOT_ACCESS_TOKEN"], env["HUBSPOT_BASE_URL"])
        box.hubspot_faults.reset_counts()
        started = time.perf_counter()
        records = 0
        for object_type in OBJECTS:
            pages = connector.pull(
                object_type,
                hubspot_properties(object_type, definition),
                None,
                with_contacts=object_type in ("emails", "calls", "meetings", "notes"),
            )
            records += sum(len(page) for page in pages)
        elapsed = time.perf_counter() - started
        statuses = box.hubspot_faults.counts_by_status()
        faults = box.hubspot_faults.faults_injected()
    calls = sum(statuses.values())
    rate = calls / elapsed
    print(
        "benchmark: pacing_realistic (HubSpot first pull, realistic profile, Professional limits)"
    )
    print(f"people in sandbox   {args.size:>10,}")
    print(f"records pulled      {records:>10,}   in {elapsed:6.1f} s")
    print(f"requests            {calls:>10,}   ({rate:.1f}/s of {ALLOWED_PER_S:.0f}/s allowed)")
    print(f"share of allowed    {rate / ALLOWED_PER_S:>10.0%}")
    print(f"429 responses       {statuses.get(429, 0):>10}")
    print(f"statuses            {dict(sorted(statuses.items()))}")
    print(f"faults injected     { {k: v for k, v in faults.items() if v} }")


if __name__ == "__main__":
    main()
