"""How fast the HubSpot sandbox serves a full contact pull through the official client.

Issue 3 asks that, with limits off, a full pull of 1,000,000 HubSpot contacts completes in minutes.
This loads N generated contacts into the emulator (limits off), serves it on loopback and pulls
every contact with leadsync's own connector (list endpoint, 100 per page, the properties a sync
asks for), then prints time, throughput and peak memory.

    .venv/bin/python benchmarks/sandbox_pull.py --contacts 1000000
"""

import argparse
import resource
import time

from connectors.hubspot import HubSpotConnector
from connectors.sandbox.generator import iter_generate
from connectors.sandbox.hubspot_app import HubSpotSandbox
from connectors.sandbox.server import serve
from orchestration.defs.crm_pull import hubspot_properties
from orchestration.funnel.definition import load_definition

TOKEN = "pat-bench"


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--contacts", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()

    sandbox = HubSpotSandbox(
        TOKEN, ten_second_limit=None, daily_limit=None, search_per_second_limit=None
    )
    started = time.perf_counter()
    loaded = 0
    # About 70% of generated people have a HubSpot contact; ask for a little more than needed.
    for chunk in iter_generate(int(args.contacts / 0.68) + 100, args.seed):
        contacts = chunk.hubspot.get("contacts", [])[: args.contacts - loaded]
        sandbox.load("contacts", contacts)
        loaded += len(contacts)
        if loaded >= args.contacts:
            break
    load_s = time.perf_counter() - started

    server = serve(sandbox)
    # Limits off on both sides: this measures the sandbox and the client, not HubSpot's pacing.
    connector = HubSpotConnector(
        TOKEN, f"http://127.0.0.1:{server.server_port}", burst_limit=None, search_limit=None
    )
    properties = hubspot_properties("contacts", load_definition())

    started = time.perf_counter()
    pulled = sum(len(page) for page in connector.pull("contacts", properties, None))
    pull_s = time.perf_counter() - started
    server.shutdown()

    calls = connector.calls.total
    print("benchmark: sandbox_pull (HubSpot contacts, limits off, official client, loopback)")
    print(f"contacts loaded     {loaded:>12,}   in {load_s:8.1f} s")
    print(f"contacts pulled     {pulled:>12,}   in {pull_s:8.1f} s  ({pulled / pull_s:,.0f}/s)")
    print(f"list calls          {calls:>12,}   ({calls / pull_s:,.1f} calls/s, 100 per page)")
    print(f"properties asked    {len(properties):>12}")
    print(f"peak RSS            {_peak_rss_mib():>12,.0f} MiB (emulator and client, one process)")
    assert pulled == loaded, f"pulled {pulled} of {loaded}"


if __name__ == "__main__":
    main()
