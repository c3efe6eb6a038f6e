"""End to end: an SLA clock that runs out recycles the lead and flags the breach in both CRMs,
and the CRMs' own lifecycle fields follow the ledger."""

from collections.abc import Iterator
from datetime import timedelta

import polars as pl
import pytest

from connectors.sandbox.server import Sandboxes
from orchestration.defs import frames
from orchestration.funnel.definition import load_definition
from orchestration.funnel.stages import LEDGER_SCHEMA
from orchestration.runner import run_sync
from orchestration.store import StateStore, tables
from tests.e2e.conftest import db_url_in, worker_env

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[tuple[Sandboxes, str]]:
    url = db_url_in(tmp_path_factory, backend=backend)
    with Sandboxes(size=300, seed=11) as box, worker_env(box, url, write_mode="live"):
        yield box, url


def _crm_fields(box: Sandboxes, record_ids: list[str]) -> dict[str, dict[str, object]]:
    wanted = set(record_ids)
    out: dict[str, dict[str, object]] = {}
    for r in box.hubspot.records("contacts"):
        rid = f"hubspot:contacts:{r['id']}"
        if rid in wanted:
            out[rid] = dict(r["properties"])
    for obj in ("Lead", "Contact"):
        for r in box.salesforce.records(obj):
            rid = f"salesforce:{obj}:{r['Id']}"
            if rid in wanted:
                out[rid] = dict(r)
    return out


def test_sla_breach_recycles_and_is_flagged_in_both_crms(env: tuple[Sandboxes, str]) -> None:
    box, url = env
    first = run_sync()
    assert first.success and first.failed_checks == []
    store = StateStore(url)
    staged = frames.read(store, "stages")
    mqls = staged.filter(pl.col("stage") == "MQL")
    assert len(mqls) > 0
    # Every clock started at this first run, and none has run out.
    assert set(mqls["sla_status"]) == {"on_track"}
    assert set(staged.filter(pl.col("stage") == "Lead")["sla_status"]) == {"none"}

    # Let three days pass for the MQLs: past the 48 h global clock (72 h in jp, 24 h in us).
    aged = staged.with_columns(
        pl.when(pl.col("stage") == "MQL")
        .then(pl.col("stage_entered_at") - timedelta(hours=73))
        .otherwise(pl.col("stage_entered_at"))
        .alias("stage_entered_at")
    )
    frames.write(store, "stages", aged)
    second = run_sync()
    assert second.success and second.failed_checks == []

    ledger = store.read_table(tables.stage_ledger, LEDGER_SCHEMA)
    breaches = ledger.filter(pl.col("reason") == "sla_breach")
    # Only leads sales had not accepted meanwhile were recycled, every one from MQL.
    assert len(breaches) > 0
    assert set(breaches["from_stage"]) == {"MQL"} and set(breaches["to_stage"]) == {"Recycled"}
    assert set(breaches["unified_id"]) <= set(mqls["unified_id"])
    after = frames.read(store, "stages").join(breaches.select("unified_id"), on="unified_id")
    assert set(after["stage"]) == {"Recycled"} and set(after["sla_status"]) == {"breached"}

    # Both CRMs carry the flag on every record of those leads; the lifecycle fields followed.
    targets = (
        frames.read(store, "writeback_targets")
        .join(breaches.select("unified_id"), on="unified_id")
        .filter(~pl.col("is_deleted").fill_null(False))  # deleted records take no writes
    )
    crm = _crm_fields(box, targets["record_id"].to_list())
    definition = load_definition()
    nurturing = next(
        s.salesforce_lead_status for s in definition.off_funnel_stages if s.name == "Recycled"
    )
    order = definition.writeback.lifecycle.hubspot_order
    checked = {"hubspot": 0, "Lead": 0, "Contact": 0}
    for rid, fields in crm.items():
        if rid.startswith("hubspot:"):
            assert fields["leadsync_sla_status"] == "breached", rid
            assert fields["leadsync_stage"] == "Recycled", rid
            # lifecyclestage went forward to MQL (or stood further on) on the first run and
            # stays there: HubSpot never moves it back without a clear, so leadsync does not try
            assert order.index(str(fields["lifecyclestage"])) >= order.index(
                "marketingqualifiedlead"
            ), rid
            checked["hubspot"] += 1
        elif fields.get("IsConverted"):
            continue  # Salesforce refuses updates to a converted lead; its Contact carries it
        else:
            obj = rid.split(":")[1]
            assert fields["LeadSync_SLA_Status__c"] == "breached", rid
            if obj == "Lead":
                assert fields["Status"] == nurturing, rid
            checked[obj] += 1
    assert checked["hubspot"] > 0 and checked["Lead"] + checked["Contact"] > 0

    # A third run changes nothing: the recycled leads stay put and nothing is written again.
    third = run_sync()
    assert third.success
    again = store.read_table(tables.stage_ledger, LEDGER_SCHEMA)
    assert len(again.filter(pl.col("reason") == "sla_breach")) == len(breaches)
    assert sum(third.fields_planned.values()) == 0
