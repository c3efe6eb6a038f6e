"""The HubSpot connector's reconciliation reads (inventory, fetch) and its search past the result
cap when more records share one modified time than a search window holds."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests

from connectors.hubspot import HubSpotConnector
from connectors.hubspot import constants as c
from connectors.sandbox import hubspot_app
from connectors.sandbox.server import Sandboxes

SIZE = 300


@pytest.fixture(scope="module")
def box() -> Iterator[Sandboxes]:
    with Sandboxes(size=SIZE, seed=5) as sandboxes:
        yield sandboxes


@pytest.fixture(scope="module")
def hubspot(box: Sandboxes) -> HubSpotConnector:
    env = box.env()
    return HubSpotConnector(env["HUBSPOT_ACCESS_TOKEN"], env["HUBSPOT_BASE_URL"])


def _api(box: Sandboxes, method: str, path: str, **kwargs: object) -> requests.Response:
    token = box.env()["HUBSPOT_ACCESS_TOKEN"]
    return requests.request(
        method,
        f"{box.hubspot_url}{path}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
        **kwargs,  # type: ignore[arg-type]
    )


def _calls(connector: HubSpotConnector, family: str) -> int:
    return connector.calls.snapshot().get(family, 0)


def test_inventory_lists_every_live_record_at_its_pulled_modified_time(
    box: Sandboxes, hubspot: HubSpotConnector
) -> None:
    victim = box.hubspot.records("contacts")[-1]["id"]
    assert _api(box, "DELETE", f"/crm/v3/objects/contacts/{victim}").status_code == 204
    live = {r["id"]: r["updatedAt"] for r in box.hubspot.records("contacts")}

    before = _calls(hubspot, "list")
    inventory = hubspot.inventory("contacts")
    assert inventory == live
    assert victim not in inventory
    # 100 per page, the list endpoint's maximum.
    assert _calls(hubspot, "list") - before == -(-len(live) // 100)

    # The same instant as pull's `_modified_at`, on the list path and on the search path.
    pulled = [r for page in hubspot.pull("contacts", ["email"], None) for r in page]
    assert {r["id"]: r["_modified_at"] for r in pulled} == inventory
    changed = sorted(inventory, key=int)[:3]
    outcomes = hubspot.batch_update("contacts", [(i, {"jobtitle": "CFO"}) for i in changed])
    assert all(o.ok for o in outcomes)
    since = max(inventory.values()) + timedelta(seconds=1)
    searched = {r["id"]: r for page in hubspot.pull("contacts", ["email"], since) for r in page}
    after = hubspot.inventory("contacts")
    assert set(changed) <= set(searched)
    assert all(searched[i]["_modified_at"] == after[i] != inventory[i] for i in changed)


def test_fetch_returns_exactly_the_live_asked_ids(
    box: Sandboxes, hubspot: HubSpotConnector
) -> None:
    live = [r["id"] for r in box.hubspot.records("contacts")][:150]
    archived, loser, winner = live[10], live[20], live[21]
    assert _api(box, "DELETE", f"/crm/v3/objects/contacts/{archived}").status_code == 204
    merge = {"primaryObjectId": winner, "objectIdToMerge": loser}
    assert _api(box, "POST", "/crm/v3/objects/contacts/merge", json=merge).status_code == 200
    stored = {r["id"]: r for r in box.hubspot.records("contacts")}

    asked = [*live, "999999999", live[0]]  # a never-existing id and a repeat
    before = _calls(hubspot, "batch_read")
    records = hubspot.fetch("contacts", ["email", "jobtitle"], asked)
    assert [r["id"] for r in records] == [i for i in live if i not in (archived, loser)]
    # 151 distinct ids, 100 per batch read.
    assert _calls(hubspot, "batch_read") - before == 2
    for r in records:
        assert r["email"] == stored[r["id"]]["properties"].get("email")
        assert r["_modified_at"] == stored[r["id"]]["updatedAt"]
        assert r["archived"] == "false" and r["_deleted"] is False

    # Batch read answers a merged-away id with the survivor: it is never returned in its place.
    assert hubspot.fetch("contacts", ["email"], [loser]) == []
    assert [r["id"] for r in hubspot.fetch("contacts", ["email"], [loser, winner])] == [winner]


class _Clock:
    """The sandbox's clock: real time, or a frozen instant while `frozen` is set."""

    def __init__(self) -> None:
        self.frozen: datetime | None = None

    def __call__(self) -> datetime:
        return self.frozen or datetime.now(UTC)


def test_search_pages_through_one_instant_shared_past_the_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A cap of 60 and pages of 20 stand in for 10,000 and 200; the sandbox refuses to page past
    # its (shrunk) cap just as HubSpot does, so an overshoot fails the pull.
    monkeypatch.setattr(c, "SEARCH_RESULT_CAP", 60)
    monkeypatch.setattr(c, "SEARCH_PAGE_SIZE", 20)
    monkeypatch.setattr(hubspot_app, "_SEARCH_WINDOW", 60)
    clock = _Clock()
    options: dict[str, object] = {"clock": clock, "search_per_second_limit": None}
    with Sandboxes(size=SIZE, seed=6, hubspot_options=options) as sandboxes:
        env = sandboxes.env()
        connector = HubSpotConnector(
            env["HUBSPOT_ACCESS_TOKEN"], env["HUBSPOT_BASE_URL"], search_limit=None
        )
        ids = [r["id"] for r in sandboxes.hubspot.records("contacts")]
        early, tied, late = ids[:10], ids[10:140], ids[140:145]
        # Long after every seeded change, with milliseconds: the instant must round-trip exactly.
        instant = datetime(2027, 1, 4, 9, 30, 15, 123_000, tzinfo=UTC)
        for group, moment in (
            (early, instant - timedelta(seconds=1)),
            (tied, instant),  # two batch updates, one modified time
            (late, instant + timedelta(seconds=1)),
        ):
            clock.frozen = moment
            outcomes = connector.batch_update("contacts", [(i, {"jobtitle": "VP"}) for i in group])
            assert all(o.ok for o in outcomes)
        clock.frozen = None

        pages = list(connector.pull("contacts", ["jobtitle"], instant - timedelta(seconds=1)))
        records = [r for page in pages for r in page]
        assert sorted(r["id"] for r in records) == sorted([*early, *tied, *late])
        assert all(r["jobtitle"] == "VP" for r in records)
        assert {r["_modified_at"] for r in records if r["id"] in tied} == {instant}
        # Window from the cursor: 10 early + 50 tied, capped after 3 pages. Window at the instant:
        # 60 tied, capped after 3 pages, all on one instant. The instant by id: 130 tied in
        # windows of 60, 60 and 10 (3 + 3 + 1 pages). After the instant: 5 late, 1 page.
        assert _calls(connector, "search") == 3 + 3 + (3 + 3 + 1) + 1
        assert sandboxes.hubspot.call_counts()["search"] == 14
