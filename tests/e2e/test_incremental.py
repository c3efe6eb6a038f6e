"""An incremental sync redoes only what changed, and ends where a sync from scratch would.

After a first sync, the CRMs change as their users would change them (a new phone and title on
a HubSpot contact, a renamed Salesforce Account, a new title on a Lead, a logged call, a deleted
Lead). The next sync normalises only the person records pulled since (and the Contacts of the
renamed Account); every derived frame of normalisation then equals what a new state store gets
from the same CRMs in one full sync."""

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from connectors.hubspot import constants as hs_const
from connectors.salesforce import constants as sf_const
from connectors.sandbox.server import Sandboxes
from orchestration.defs import crm_pull, frames
from orchestration.runner import SyncSummary, run_sync
from orchestration.store import StateStore
from tests.e2e.conftest import db_url_in, worker_env

pytestmark = pytest.mark.e2e

NORMALIZED_FRAMES = ("leads_normalized", "quarantined", "activities_normalized", "outcomes")


@pytest.fixture(scope="module")
def box(backend: str) -> Iterator[Sandboxes]:
    with Sandboxes(size=150, seed=44) as sandboxes:
        yield sandboxes


def _change_the_crms(box: Sandboxes) -> dict[str, list[str]]:
    """Edits through the emulators' own write paths (the ones their APIs use), as CRM users
    make them. Returns the record ids touched, per kind of change."""
    hs, sf = box.hubspot, box.salesforce
    now = datetime.now(UTC)
    with hs._lock:
        contact = next(r for r in hs._stores["contacts"].records.values() if not r.archived)
        hs._apply(
            "contacts",
            contact,
            {"phone": "+81 90-1234-5678", "jobtitle": "営業部長"},
            int(now.timestamp() * 1000),
        )
        hs._version += 1
        # A first page view for a contact that had none: its page-view count row gives way.
        with_views = {e[2] for e in hs._events}  # rows of (at, id, contact id, ...)
        viewer = next(
            r
            for r in hs._stores["contacts"].records.values()
            if not r.archived and str(r.id) not in with_views and r.id != contact.id
        )
    hs.load(
        "web_events",
        [
            {
                "id": "00000000-0000-4000-a000-00000000beef",
                "occurredAt": now,
                "eventType": "e_visited_page",
                "objectId": str(viewer.id),
                "properties": {"hs_url": "https://example.com/pricing", "hs_title": "Pricing"},
            }
        ],
    )
    user = sf.integration_user_id
    with sf._lock:
        contacts = [c for c in sf._data["Contact"].values() if not c.get("IsDeleted")]
        account_id = str(next(c["AccountId"] for c in contacts if c.get("AccountId")))
        account = sf._data["Account"][account_id]
        sf._commit(
            sf._prepare_update(
                sf._object_or_raise("Account"), account, {"Name": "Renamed K.K."}, user
            ),
            user,
        )
        leads = [
            r
            for r in sf._data["Lead"].values()
            if not r.get("IsDeleted") and not r.get("IsConverted")
        ]
        titled, called = leads[0], leads[1]
        sf._commit(
            sf._prepare_update(sf._object_or_raise("Lead"), titled, {"Title": "CTO"}, user), user
        )
        call = {
            "WhoId": called["Id"],
            "Subject": "Call: pricing follow-up",
            "TaskSubtype": "Call",
            "Type": "Call",
            "Status": "Completed",
            "ActivityDate": now.date().isoformat(),
        }
        sf._commit(sf._prepare_insert(sf._object_or_raise("Task"), call, user), user)
        # A renamed Campaign: every member's activity row carries the name.
        # One whose members' responses are engagement (a webinar registration, a scan, ...).
        responded = {
            m.get("CampaignId")
            for m in sf._data["CampaignMember"].values()
            if str(m.get("Status", "")).lower() not in ("sent", "")
        }
        campaign = next(c for c in sf._data["Campaign"].values() if c["Id"] in responded)
        sf._commit(
            sf._prepare_update(
                sf._object_or_raise("Campaign"), campaign, {"Name": "春のウェビナー 2026"}, user
            ),
            user,
        )
    return {
        "hubspot_contact": [f"hubspot:contacts:{contact.id}"],
        "account_contacts": [
            f"salesforce:Contact:{c['Id']}" for c in contacts if c.get("AccountId") == account_id
        ],
        "lead": [f"salesforce:Lead:{titled['Id']}"],
        "called": [f"salesforce:Lead:{called['Id']}"],
        "viewer": [f"hubspot:contacts:{viewer.id}"],
    }


@pytest.fixture(scope="module")
def runs(
    box: Sandboxes, backend: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[SyncSummary, SyncSummary, dict[str, list[str]], str, str, int]:
    # Dry runs: no write-back, so the CRMs hold exactly what the users changed and a new store
    # sees the same records the old one does.
    db_url = db_url_in(tmp_path_factory, "incremental", backend)
    with worker_env(box, db_url):
        day_before = datetime.now(UTC).date()
        first = run_sync()
        changed = _change_the_crms(box)
        second = run_sync()
        # Scores decay by the UTC day: a midnight between the syncs scores everyone again.
        days = len({day_before, datetime.now(UTC).date()})
    scratch_url = db_url_in(tmp_path_factory, "scratch", backend)
    with worker_env(box, scratch_url):
        assert run_sync().normalize["mode"] == "full"
    return first, second, changed, db_url, scratch_url, days


def test_the_first_sync_normalises_everything(runs: tuple) -> None:
    first, *_ = runs
    assert first.success
    assert first.normalize["mode"] == "full"
    assert first.normalize["records_normalized"] == sum(
        n
        for key, n in first.records_by_object.items()
        if key.count(":") == 1
        and key in ("hubspot:contacts", "salesforce:Lead", "salesforce:Contact")
    )


def test_the_next_sync_normalises_only_the_changed_people(runs: tuple) -> None:
    _, second, changed, db_url, *_ = runs
    assert second.success
    assert second.normalize["mode"] == "incremental"
    expected = {
        rid for kind in ("hubspot_contact", "account_contacts", "lead") for rid in changed[kind]
    }
    assert len(changed["account_contacts"]) >= 1
    # The changed contact, the Lead with the new title, the renamed Account's Contacts; the Lead
    # with the new call changed no field of its own, so it is not normalised again.
    assert second.normalize["records_normalized"] == len(expected)
    leads = frames.read(StateStore(db_url), "leads_normalized")
    contact = leads.filter(pl.col("record_id") == changed["hubspot_contact"][0])
    assert contact["phone"].to_list() == ["+819012345678"]
    renamed = leads.filter(pl.col("record_id").is_in(changed["account_contacts"]))
    assert set(renamed["company"].to_list()) == {"Renamed K.K."}
    acts = frames.read(StateStore(db_url), "activities_normalized")
    viewer = acts.filter(pl.col("record_id") == changed["viewer"][0])
    assert "pricing_page_view" in viewer["activity_type"].to_list()
    assert not viewer["activity_id"].str.ends_with(":page_views").any()
    assert acts.filter(pl.col("detail") == "春のウェビナー 2026").height > 0


def test_what_it_normalised_equals_a_sync_from_scratch(runs: tuple) -> None:
    *_, db_url, scratch_url, _ = runs
    for name in NORMALIZED_FRAMES:
        kept = frames.read(StateStore(db_url), name)
        scratch = frames.read(StateStore(scratch_url), name)
        key = [c for c in ("record_id", "activity_id", "opportunity_id", "field") if c in kept]
        assert kept.height == scratch.height > 0 or name == "quarantined", name
        assert kept.sort(key).equals(scratch.sort(key)), name


def test_it_scores_again_only_the_leads_whose_fields_or_activities_changed(runs: tuple) -> None:
    first, second, changed, db_url, scratch_url, days = runs
    if days > 1:
        pytest.skip("midnight (UTC) fell between the syncs: the second one scored everyone")
    store = StateStore(db_url)
    ident = frames.read(store, "identity")
    # A new title (the HubSpot contact, the Lead), a logged call, a first page view. The renamed
    # Account and Campaign change nothing scoring reads.
    touched = [
        *changed["hubspot_contact"],
        *changed["lead"],
        *changed["called"],
        *changed["viewer"],
    ]
    expected = ident.filter(pl.col("record_id").is_in(touched))["unified_id"].n_unique()
    assert first.leads_scored == first.unified_leads
    assert second.leads_scored == expected >= 3
    # The same scores as one scoring of everything on the same day.
    scratch_store = StateStore(scratch_url)
    if not store.read_frame("scores_basis").equals(scratch_store.read_frame("scores_basis")):
        pytest.skip("midnight (UTC) fell between the two syncs: their decay days differ")
    kept, scratch = frames.read(store, "scores"), frames.read(scratch_store, "scores")
    assert kept.height == second.unified_leads
    assert kept.sort("unified_id").equals(scratch.sort("unified_id"))


def test_a_quiet_crm_is_not_read_again(
    backend: str, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CRMs' indexing lag and the clock margin shrunk to a second, so the test need not wait
    # minutes for the pulls' overlap windows to pass.
    monkeypatch.setattr(hs_const, "SEARCH_OVERLAP_S", 1)
    monkeypatch.setattr(sf_const, "PULL_OVERLAP_S", 1)
    monkeypatch.setattr(crm_pull, "CURSOR_CLOCK_MARGIN", timedelta(seconds=1))
    with Sandboxes(size=60, seed=45) as box:
        db_url = db_url_in(tmp_path_factory, "quiet", backend)
        with worker_env(box, db_url, write_mode="live"):
            first = run_sync()
            # The next scheduled run, once the overlap has passed since the write-back: it reads
            # the first run's write-back back, once.
            time.sleep(2.5)
            echoes = run_sync()
            quiet = run_sync()
    assert first.success and echoes.success and quiet.success
    assert sum(first.fields_written.values()) > 0
    assert sum(echoes.records_pulled.values()) > 0
    # Page views are filtered on when they happened: the newest second of them is read again.
    read_again = {k: n for k, n in quiet.records_by_object.items() if "web_events" not in k}
    assert read_again and set(read_again.values()) == {0}, read_again


def test_the_cursor_is_the_newest_stamp_or_the_safe_moment_before_the_query() -> None:
    started = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    margin = crm_pull.CURSOR_CLOCK_MARGIN
    assert crm_pull.cursor_after(None, started) == started - margin
    older = started - timedelta(hours=1)
    assert crm_pull.cursor_after(older, started) == started - margin
    # A CRM clock ahead of ours: never behind what the pull saw.
    ahead = started + timedelta(seconds=5)
    assert crm_pull.cursor_after(ahead, started) == ahead
