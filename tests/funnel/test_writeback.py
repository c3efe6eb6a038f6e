"""Write-back plan: only changed fields, canonical comparison, never blank, idempotent."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from orchestration.funnel.definition import LeadDefinition, load_definition
from orchestration.funnel.writeback import (
    PLAN_SCHEMA,
    apply_plan,
    current_values,
    landed_unledgered,
    lifecycle_columns,
    plan_writeback,
)


@pytest.fixture(scope="module")
def definition() -> LeadDefinition:
    return load_definition()


DESIRED_SCHEMA = {
    "unified_id": pl.String,
    "stage": pl.String,
    "fit_score": pl.Int64,
    "engagement_score": pl.Int64,
    "score": pl.Int64,
    "temperature": pl.String,
    "next_template_id": pl.String,
    "next_subject": pl.String,
}


def desired(*rows: dict[str, Any]) -> pl.DataFrame:
    base = {
        "stage": "MQL",
        "fit_score": 30,
        "engagement_score": 12,
        "score": 42,
        "temperature": "warm",
        "next_template_id": "mql-case-study",
        "next_subject": "A story",
    }
    return pl.DataFrame([base | r for r in rows], schema=DESIRED_SCHEMA)


TARGETS = pl.DataFrame(
    {
        "unified_id": ["U1", "U1", "U2"],
        "record_id": ["hubspot:contacts:1001", "salesforce:Lead:00Q1", "salesforce:Contact:0031"],
        "source_system": ["hubspot", "salesforce", "salesforce"],
        "source_object": ["contacts", "Lead", "Contact"],
        "source_id": ["1001", "00Q1", "0031"],
    }
)

HS_VALUES = {
    "leadsync_unified_id": "U1",
    "leadsync_stage": "MQL",
    "leadsync_fit_score": "30",
    "leadsync_engagement_score": "12",
    "leadsync_score": "42.0",  # HubSpot hands numbers back with decimals
    "leadsync_temperature": "warm",
    "leadsync_next_content": "mql-case-study",
    "leadsync_next_content_subject": "A story",
}
SF_VALUES = {
    "LeadSync_Unified_Id__c": "U1",
    "LeadSync_Stage__c": "MQL",
    "LeadSync_Fit_Score__c": "30",
    "LeadSync_Engagement_Score__c": "12",
    "LeadSync_Score__c": "42",
    "LeadSync_Temperature__c": "warm",
    "LeadSync_Next_Content__c": "mql-case-study",
    "LeadSync_Next_Content_Subject__c": "A story",
}


def current(overrides: dict[tuple[str, str], str | None] | None = None) -> pl.DataFrame:
    rows = [("hubspot:contacts:1001", f, v) for f, v in HS_VALUES.items()]
    rows += [("salesforce:Lead:00Q1", f, v) for f, v in SF_VALUES.items()]
    rows += [("salesforce:Contact:0031", f, v.replace("U1", "U2")) for f, v in SF_VALUES.items()]
    values = {(r, f): v for r, f, v in rows} | (overrides or {})
    return pl.DataFrame(
        [{"record_id": r, "field": f, "value": v} for (r, f), v in values.items()],
        schema={"record_id": pl.String, "field": pl.String, "value": pl.String},
    )


def both() -> pl.DataFrame:
    return desired({"unified_id": "U1"}, {"unified_id": "U2"})


def test_in_sync_means_empty_plan(definition: LeadDefinition) -> None:
    plan = plan_writeback(both(), TARGETS, current(), None, definition)
    assert plan.schema == pl.Schema(PLAN_SCHEMA)
    assert plan.is_empty()  # 42 vs "42.0" is no change


def test_plan_contains_only_changed_fields(definition: LeadDefinition) -> None:
    want = desired({"unified_id": "U1", "stage": "SAL", "score": 85}, {"unified_id": "U2"})
    plan = plan_writeback(want, TARGETS, current(), None, definition)
    assert plan.select("record_id", "field", "current_value", "new_value").rows() == [
        ("hubspot:contacts:1001", "leadsync_score", "42.0", "85"),
        ("hubspot:contacts:1001", "leadsync_stage", "MQL", "SAL"),
        ("salesforce:Lead:00Q1", "LeadSync_Score__c", "42", "85"),
        ("salesforce:Lead:00Q1", "LeadSync_Stage__c", "MQL", "SAL"),
    ]
    assert set(plan["system"]) == {"hubspot", "salesforce"}
    assert plan.filter(pl.col("system") == "salesforce")["object"].unique().to_list() == ["Lead"]
    assert plan.filter(pl.col("system") == "hubspot")["source_id"].unique().to_list() == ["1001"]


def test_missing_fields_in_crm_are_filled(definition: LeadDefinition) -> None:
    cur = current().filter(pl.col("record_id") != "salesforce:Contact:0031")
    plan = plan_writeback(both(), TARGETS, cur, None, definition)
    assert plan.height == 8
    assert set(plan["record_id"]) == {"salesforce:Contact:0031"}
    assert plan["current_value"].null_count() == 8
    assert dict(zip(plan["field"], plan["new_value"], strict=True))["LeadSync_Score__c"] == "42"


def test_never_replace_a_value_with_a_blank(definition: LeadDefinition) -> None:
    want = desired(
        {"unified_id": "U1", "next_template_id": None, "next_subject": ""}, {"unified_id": "U2"}
    )
    assert plan_writeback(want, TARGETS, current(), None, definition).is_empty()


def test_none_equals_empty_string(definition: LeadDefinition) -> None:
    cur = current({("salesforce:Contact:0031", "LeadSync_Next_Content_Subject__c"): ""})
    want = desired({"unified_id": "U1"}, {"unified_id": "U2", "next_subject": None})
    assert plan_writeback(want, TARGETS, cur, None, definition).is_empty()


def test_number_forms_compare_equal(definition: LeadDefinition) -> None:
    cur = current(
        {
            ("salesforce:Lead:00Q1", "LeadSync_Fit_Score__c"): " 30.00 ",
            ("hubspot:contacts:1001", "leadsync_fit_score"): "30",
        }
    )
    want = both().with_columns(pl.col("fit_score").cast(pl.Float64))
    assert plan_writeback(want, TARGETS, cur, None, definition).is_empty()


def test_second_plan_after_applying_is_empty(definition: LeadDefinition) -> None:
    want = desired(
        {"unified_id": "U1", "stage": "SQL", "temperature": "hot", "next_subject": "Demo"},
        {"unified_id": "U2", "score": 7},
    )
    cur = current({("salesforce:Contact:0031", "LeadSync_Temperature__c"): None})
    plan = plan_writeback(want, TARGETS, cur, None, definition)
    assert plan.height == 8  # 3 fields × 2 U1 records + score and temperature of U2's contact
    after = apply_plan(cur, plan)
    assert plan_writeback(want, TARGETS, after, after, definition).is_empty()


def test_human_edit_of_leadsync_owned_field_is_overwritten(definition: LeadDefinition) -> None:
    cur = current({("salesforce:Lead:00Q1", "LeadSync_Stage__c"): "SQL"})
    last = current()  # we last wrote MQL; a person changed it to SQL
    plan = plan_writeback(both(), TARGETS, cur, last, definition)
    assert plan.select("field", "current_value", "new_value").rows() == [
        ("LeadSync_Stage__c", "SQL", "MQL")
    ]


def _salesforce_stage_owned_by_crm(definition: LeadDefinition) -> LeadDefinition:
    """The definition with LeadSync_Stage__c owned by the CRM (leadsync writes it only while the
    CRM still holds what leadsync last wrote)."""
    sf = definition.writeback.salesforce
    fields = dict(sf.fields)
    fields["LeadSync_Stage__c"] = fields["LeadSync_Stage__c"].model_copy(update={"owner": "crm"})
    crm_owned = definition.model_copy(
        update={
            "writeback": definition.writeback.model_copy(
                update={"salesforce": sf.model_copy(update={"fields": fields})}
            )
        }
    )
    return crm_owned


def test_crm_owned_field_edited_by_a_person_is_left_alone(definition: LeadDefinition) -> None:
    crm_owned = _salesforce_stage_owned_by_crm(definition)
    want = desired({"unified_id": "U1", "stage": "SAL"}, {"unified_id": "U2", "stage": "SAL"})
    cur = current({("salesforce:Lead:00Q1", "LeadSync_Stage__c"): "SQL"})  # edited by a person
    last = current()  # we last wrote MQL everywhere
    plan = plan_writeback(want, TARGETS, cur, last, crm_owned)
    stage_rows = plan.filter(pl.col("field").str.to_lowercase() == "leadsync_stage__c")
    # Lead 00Q1: the person's SQL stands; Contact 0031 still holds our MQL, so it is updated.
    assert stage_rows["record_id"].to_list() == ["salesforce:Contact:0031"]
    assert plan.filter(pl.col("field") == "leadsync_stage")["new_value"].to_list() == ["SAL"]


def test_the_ledger_is_asked_only_for_crm_owned_fields_that_hold_a_value(
    definition: LeadDefinition,
) -> None:
    crm_owned = _salesforce_stage_owned_by_crm(definition)
    want = desired({"unified_id": "U1", "stage": "SAL"}, {"unified_id": "U2", "stage": "SAL"})
    cur = current({("salesforce:Lead:00Q1", "LeadSync_Stage__c"): "SQL"})
    asked: list[list[str]] = []

    def last_written(ids: pl.Series) -> pl.DataFrame:
        asked.append(sorted(ids.to_list()))
        return current().filter(pl.col("record_id").is_in(ids.implode()))

    plan = plan_writeback(want, TARGETS, cur, last_written, crm_owned)
    # The HubSpot stage differs too, but leadsync owns it there: no ledger read for it.
    assert asked == [["salesforce:Contact:0031", "salesforce:Lead:00Q1"]]
    assert plan.equals(plan_writeback(want, TARGETS, cur, current(), crm_owned))


def test_current_values_from_raw_pulls(definition: LeadDefinition) -> None:
    raw = {
        "hubspot:contacts": pl.DataFrame(
            {"id": ["1001"], "email": ["a@example.com"], "leadsync_stage": ["MQL"]}
        ),
        "salesforce:Lead": pl.DataFrame(
            {"Id": ["00Q1"], "LeadSync_Score__c": ["42.0"], "LeadSync_Stage__c": [None]},
            schema={
                "Id": pl.String,
                "LeadSync_Score__c": pl.String,
                "LeadSync_Stage__c": pl.String,
            },
        ),
        "salesforce:Account": pl.DataFrame({"Id": ["001A"]}),
    }
    cur = current_values(raw, definition)
    assert cur.columns == ["record_id", "field", "value"]
    # 11 fields × (1 contact + 1 lead): leadsync's 10, plus lifecyclestage on the contact and
    # Status on the lead; the Account is not a target
    assert cur.height == 22
    values = {(r, f): v for r, f, v in cur.iter_rows()}
    assert values[("hubspot:contacts:1001", "leadsync_stage")] == "MQL"
    assert values[("hubspot:contacts:1001", "leadsync_score")] is None  # not pulled → missing
    assert values[("salesforce:Lead:00Q1", "LeadSync_Score__c")] == "42.0"
    plan = plan_writeback(desired({"unified_id": "U1"}), TARGETS.head(2), cur, None, definition)
    # Only the stage on HubSpot and the score on Salesforce already hold the desired value.
    assert plan.height == 14


def test_deleted_and_converted_leads_are_not_targets(definition: LeadDefinition) -> None:
    targets = TARGETS.with_columns(
        pl.Series("sf_is_converted", [False, True, True]),
        pl.Series("is_deleted", [True, False, False]),
    )
    cur = current().filter(pl.lit(False))  # the CRMs hold nothing yet
    plan = plan_writeback(both(), targets, cur, None, definition)
    # HubSpot 1001 is deleted, Lead 00Q1 is converted; Contact 0031 (converted too) is written.
    assert set(plan["record_id"]) == {"salesforce:Contact:0031"}


def test_a_write_the_crm_committed_unanswered_is_ledgered_once() -> None:
    previous = pl.DataFrame(
        {
            "system": ["hubspot", "hubspot", "hubspot"],
            "record_id": ["hubspot:contacts:1", "hubspot:contacts:2", "hubspot:contacts:3"],
            "field": ["leadsync_stage"] * 3,
            "new_value": ["MQL", "SAL", "MAL"],
        }
    )
    values = {"record_id": ["hubspot:contacts:1", "hubspot:contacts:2", "hubspot:contacts:3"]}
    # 1 landed (the answer was lost), 2 never reached the CRM, 3 landed and was ledgered.
    current = pl.DataFrame({**values, "field": ["leadsync_stage"] * 3, "value": ["MQL", "", "MAL"]})
    ledger = pl.DataFrame(
        {"record_id": ["hubspot:contacts:3"], "field": ["leadsync_stage"], "value": ["MAL"]}
    )
    landed = landed_unledgered(previous, current, ledger)
    assert landed.select("record_id", "value").rows() == [("hubspot:contacts:1", "MQL")]
    assert landed_unledgered(previous.clear(), current, ledger).is_empty()
    # The ledger asked a batch at a time: the same answer, and only held values are asked for.
    asked: list[list[str]] = []

    def ledger_of(ids: pl.Series) -> pl.DataFrame:
        asked.append(ids.to_list())
        return ledger.filter(pl.col("record_id").is_in(ids.implode()))

    assert landed_unledgered(previous, current, ledger_of, batch_records=1).equals(landed)
    assert sorted(i for ids in asked for i in ids) == ["hubspot:contacts:1", "hubspot:contacts:3"]


def test_landed_writes_do_not_depend_on_the_batch_size() -> None:
    # 30 records of two fields; every third landed unanswered, the CRM holds other values too.
    ids = [f"salesforce:Lead:00Q{i:03d}" for i in range(30) for _ in range(2)]
    fields = ["leadsync_stage", "leadsync_score"] * 30
    planned = [f"v{i}" for i in range(60)]
    previous = pl.DataFrame(
        {"system": ["salesforce"] * 60, "record_id": ids, "field": fields, "new_value": planned}
    )
    held = [v if i % 3 == 0 else "other" for i, v in enumerate(planned)]
    current = pl.DataFrame({"record_id": ids, "field": fields, "value": held}).reverse()
    whole = landed_unledgered(previous, current, None, batch_records=1_000)
    assert whole["value"].to_list() == [f"v{i}" for i in range(0, 60, 3)]
    for size in (1, 2, 7):
        assert landed_unledgered(previous, current, None, batch_records=size).equals(whole)


# --- the CRMs' own lifecycle fields follow the ledger ----------------------------------------


def _lifecycle_plan(
    definition: LeadDefinition, stage: str, hubspot_now: str | None, status_now: str | None
) -> dict[str, str]:
    want = desired({"unified_id": "U1", "stage": stage}).with_columns(lifecycle_columns(definition))
    cur = current(
        {
            ("hubspot:contacts:1001", "leadsync_stage"): stage,
            ("salesforce:Lead:00Q1", "LeadSync_Stage__c"): stage,
            ("hubspot:contacts:1001", "lifecyclestage"): hubspot_now,
            ("salesforce:Lead:00Q1", "Status"): status_now,
        }
    )
    plan = plan_writeback(want, TARGETS.head(2), cur, None, definition)
    return {f: v for f, v in zip(plan["field"], plan["new_value"], strict=True)}


def test_lifecycle_fields_follow_the_stage(definition: LeadDefinition) -> None:
    assert definition.writeback.lifecycle.hubspot_lifecyclestage
    # An SGL at SQL whose lead still says "Open": both CRMs are told.
    assert _lifecycle_plan(definition, "SQL", "lead", "Open - Not Contacted") == {
        "lifecyclestage": "salesqualifiedlead",
        "Status": "Qualified",
    }
    # A competitor disqualified from MQL.
    assert _lifecycle_plan(definition, "Disqualified", "marketingqualifiedlead", "Open") == {
        "lifecyclestage": "other",
        "Status": "Closed - Not Converted",
    }


def test_a_status_that_already_means_the_stage_is_left_alone(definition: LeadDefinition) -> None:
    # "Working" and "Working - Contacted" both mean SAL; "Open" and the default both mean open.
    assert _lifecycle_plan(definition, "SAL", "salesqualifiedlead", "Working") == {}
    assert _lifecycle_plan(definition, "MQL", "marketingqualifiedlead", "Open") == {}


def test_lifecyclestage_never_moves_back(definition: LeadDefinition) -> None:
    # Recycled maps to "lead", behind salesqualifiedlead in HubSpot's order: HubSpot would need
    # the value cleared first, so leadsync leaves it; Lead.Status does go to the nurture status.
    assert _lifecycle_plan(definition, "Recycled", "salesqualifiedlead", "Working") == {
        "Status": "Nurturing"
    }
    # An unknown (custom) HubSpot stage is not leadsync's to overwrite.
    assert "lifecyclestage" not in _lifecycle_plan(definition, "MQL", "partner_stage", "Open")
    # A blank one is filled.
    assert _lifecycle_plan(definition, "MQL", None, "Open") == {
        "lifecyclestage": "marketingqualifiedlead"
    }


def test_no_conversion_status_is_ever_written(definition: LeadDefinition) -> None:
    # Salesforce sets Closed - Converted on conversion; an Opportunity stage writes no status.
    assert _lifecycle_plan(definition, "Opportunity", "salesqualifiedlead", "Working") == {
        "lifecyclestage": "opportunity"
    }


def test_lifecycle_fields_are_off_unless_the_definition_says_so(
    definition: LeadDefinition,
) -> None:
    off = definition.model_copy(
        update={
            "writeback": definition.writeback.model_copy(
                update={
                    "lifecycle": definition.writeback.lifecycle.model_copy(
                        update={"hubspot_lifecyclestage": False, "salesforce_lead_status": False}
                    )
                }
            )
        }
    )
    assert _lifecycle_plan(off, "SQL", "lead", "Open - Not Contacted") == {}
    assert "lifecyclestage" not in off.writeback_fields("hubspot")


def test_the_definition_chooses_link_or_body(definition: LeadDefinition) -> None:
    # As shipped: the content link travels, the rendered body does not.
    columns = {r["column"] for r in definition.writeback_field_rows()}
    assert "next_content_url" in columns and "next_body" not in columns
    want = desired({"unified_id": "U1"}).with_columns(
        pl.lit("https://www.example.com/en/resources/mql-case-study").alias("next_content_url"),
        pl.lit("<p>Hi Ann,</p>").alias("next_body"),
    )
    plan = plan_writeback(want, TARGETS.head(1), current(), None, definition)
    assert dict(zip(plan["field"], plan["new_value"], strict=True)) == {
        "leadsync_next_content_url": "https://www.example.com/en/resources/mql-case-study"
    }
    # A team that sends from the CRM maps the body to a long-text property instead.
    hs = definition.writeback.hubspot
    body_prop = hs.properties["leadsync_next_content_url"].model_copy(
        update={"column": "next_body", "field_type": "textarea"}
    )
    with_body = definition.model_copy(
        update={
            "writeback": definition.writeback.model_copy(
                update={
                    "hubspot": hs.model_copy(
                        update={
                            "properties": {
                                k: v
                                for k, v in hs.properties.items()
                                if k != "leadsync_next_content_url"
                            }
                            | {"leadsync_next_content_body": body_prop}
                        }
                    )
                }
            )
        }
    )
    plan = plan_writeback(want, TARGETS.head(1), current(), None, with_body)
    assert dict(zip(plan["field"], plan["new_value"], strict=True)) == {
        "leadsync_next_content_body": "<p>Hi Ann,</p>"
    }


def test_planning_in_batches_gives_the_plan_of_one_pass(definition: LeadDefinition) -> None:
    crm_owned = _salesforce_stage_owned_by_crm(definition)
    n = 60
    ids = [f"U{i}" for i in range(n)]
    targets = pl.DataFrame(
        {
            "unified_id": ids + ids[::2],
            "record_id": [f"hubspot:contacts:{1000 + i}" for i in range(n)]
            + [f"salesforce:Lead:00Q{i}" for i in range(0, n, 2)],
            "source_system": ["hubspot"] * n + ["salesforce"] * (n // 2),
            "source_object": ["contacts"] * n + ["Lead"] * (n // 2),
            "source_id": [str(1000 + i) for i in range(n)] + [f"00Q{i}" for i in range(0, n, 2)],
        }
    )
    stages = ["MQL", "SAL", "SQL"]
    want = desired(
        *({"unified_id": u, "stage": stages[i % 3], "score": i} for i, u in enumerate(ids))
    )
    # Every third record holds the desired stage, every fifth some other one, the rest nothing;
    # the Leads' stage is CRM-owned, so the ledger decides those that hold a value.
    held = [
        (rid, field, stages[i % 3] if i % 3 == 0 else "MAL" if i % 5 == 0 else None)
        for i, u in enumerate(ids)
        for rid, field in (
            (f"hubspot:contacts:{1000 + i}", "leadsync_stage"),
            (f"salesforce:Lead:00Q{i}", "LeadSync_Stage__c"),
        )
    ]
    cur = pl.DataFrame(held, schema=["record_id", "field", "value"], orient="row")
    ledger = cur.filter(pl.col("record_id").str.ends_with("0"))
    asked: list[str] = []

    def last_written(ids: pl.Series) -> pl.DataFrame:
        asked.extend(ids.to_list())
        return ledger.filter(pl.col("record_id").is_in(ids.implode()))

    whole = plan_writeback(want, targets, cur, ledger, crm_owned)
    batched = plan_writeback(want, targets, cur, last_written, crm_owned, batch_records=7)
    assert whole.height > 100
    assert batched.equals(whole)
    # Each record the ledger decides was asked for once, in its own batch.
    assert len(asked) == len(set(asked)) > 0
