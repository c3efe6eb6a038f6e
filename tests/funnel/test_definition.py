"""The lead definition file: loads, is versioned by its bytes, and rejects bad input by name."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestration.funnel.definition import (
    DEFAULT_PATH,
    STAGE_ORDER,
    DefinitionError,
    LeadDefinition,
    is_overridable,
    load_definition,
    parse_definition,
)
from orchestration.funnel.model import ACTIVITY_TYPES


@pytest.fixture(scope="module")
def definition() -> LeadDefinition:
    return load_definition()


def _write_modified(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    data = yaml.safe_load(DEFAULT_PATH.read_bytes())
    edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_loads_and_version_is_sha256_prefix_of_bytes(definition: LeadDefinition) -> None:
    # sha256 over the global bytes, then NUL, name, NUL and bytes of each overlay in name order.
    digest = hashlib.sha256(DEFAULT_PATH.read_bytes())
    for overlay in sorted((DEFAULT_PATH.parent / "regions").glob("*.yaml")):
        digest.update(b"\0" + f"regions/{overlay.name}".encode() + b"\0" + overlay.read_bytes())
    expected = digest.hexdigest()[:12]
    assert definition.version == expected
    assert load_definition().version == expected  # stable across loads
    assert len(definition.version) == 12
    own = hashlib.sha256(DEFAULT_PATH.read_bytes()).hexdigest()[:12]
    assert definition.file_versions["global.yaml"] == own
    assert parse_definition(DEFAULT_PATH.read_bytes()).version == own  # the global file alone


def test_version_changes_with_the_bytes() -> None:
    raw = DEFAULT_PATH.read_bytes()
    assert parse_definition(raw + b"\n# a comment\n").version != parse_definition(raw).version


def test_field_mappings_are_the_agreed_ones(definition: LeadDefinition) -> None:
    fm = definition.field_mappings
    assert set(fm) == {"hubspot:contacts", "salesforce:Lead", "salesforce:Contact"}
    assert fm["hubspot:contacts"]["numemployees"] == "employee_count"
    assert fm["hubspot:contacts"]["hs_language"] == "locale"
    assert fm["salesforce:Lead"]["Status"] == "sf_status"
    assert fm["salesforce:Lead"]["IsConverted"] == "sf_is_converted"
    assert fm["salesforce:Contact"]["MailingCountry"] == "country"
    # 18 / 19 / 14 core fields plus the two kana (フリガナ) reading fields each
    assert fm["hubspot:contacts"]["lastname_kana"] == "last_name_reading"
    assert fm["salesforce:Contact"]["FirstNameKana__c"] == "first_name_reading"
    assert len(fm["hubspot:contacts"]) == 20
    assert len(fm["salesforce:Lead"]) == 26  # + the five BANT(C) checkboxes
    assert fm["salesforce:Lead"]["BANT_Need__c"] == "bant_need"
    assert len(fm["salesforce:Contact"]) == 16


def test_stages_edges_and_thresholds(definition: LeadDefinition) -> None:
    assert tuple(s.name for s in definition.stages) == STAGE_ORDER
    edges = definition.backward_edges
    assert edges.recycle.from_stages == ["MQL", "SAL", "SQL"]
    assert edges.recycle.to == "Recycled"
    assert {"no_response", "not_now", "sla_breach"} <= set(edges.recycle.reasons)
    assert edges.disqualify.from_stages == ["*"]
    assert {"competitor", "student", "invalid", "not_target"} <= set(edges.disqualify.reasons)
    assert edges.reopen.allows("Recycled", "MQL")
    assert definition.scoring.thresholds.mql_score_min == 80
    assert set(definition.scoring.engagement.activities) == set(ACTIVITY_TYPES)
    assert definition.scoring.hand_raise.activity_types == [
        "contact_request",
        "demo_request",
        "quote_request",
    ]
    assert definition.sla.mql_to_sal_hours > 0
    assert "Partner Referral" in definition.sales_status.sgl_lead_sources


def test_writeback_fields_cover_both_crms(definition: LeadDefinition) -> None:
    rows = definition.writeback_field_rows()
    hubspot = {r["field"]: r["column"] for r in rows if r["system"] == "hubspot"}
    assert hubspot == {
        "leadsync_unified_id": "unified_id",
        "leadsync_stage": "stage",
        "leadsync_fit_score": "fit_score",
        "leadsync_engagement_score": "engagement_score",
        "leadsync_score": "score",
        "leadsync_temperature": "temperature",
        "leadsync_next_content": "next_template_id",
        "leadsync_next_content_subject": "next_subject",
        "leadsync_next_content_url": "next_content_url",
        "leadsync_sla_status": "sla_status",
        # HubSpot's own lifecycle field follows the ledger (writeback.lifecycle)
        "lifecyclestage": "hubspot_lifecyclestage",
    }
    sf = [r for r in rows if r["system"] == "salesforce"]
    assert {r["object"] for r in sf} == {"Lead", "Contact"}
    # 10 leadsync fields on Lead and Contact, plus Lead.Status following the ledger
    assert len(sf) == 21
    assert [r["object"] for r in sf if r["field"] == "Status"] == ["Lead"]
    assert definition.writeback_fields("hubspot") == list(hubspot)
    assert definition.writeback_fields("salesforce")[0] == "LeadSync_Unified_Id__c"
    bodies = {b["name"]: b for b in definition.hubspot_property_definitions()}
    # lifecyclestage is HubSpot's own property: leadsync never creates it
    assert set(bodies) == set(hubspot) - {"lifecyclestage"}
    assert bodies["leadsync_score"]["type"] == "number"
    assert bodies["leadsync_temperature"]["options"][2]["value"] == "hot"
    body = bodies["leadsync_stage"]
    assert body["groupName"] == definition.writeback.hubspot.group_name
    assert body["type"] == "enumeration" and body["fieldType"] == "select"
    assert [o["value"] for o in body["options"]][:3] == ["Lead", "MAL", "MQL"]
    assert "Disqualified" in [o["value"] for o in body["options"]]


def test_bad_value_names_file_and_key(tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["scoring"]["thresholds"]["mql_score_min"] = "high"

    path = _write_modified(tmp_path, edit)
    with pytest.raises(DefinitionError) as err:
        load_definition(path)
    assert str(path) in str(err.value)
    assert "scoring.thresholds.mql_score_min" in str(err.value)


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["scoring"]["thresholds"]["mql_scor_min"] = 50

    with pytest.raises(DefinitionError, match=r"scoring\.thresholds\.mql_scor_min"):
        load_definition(_write_modified(tmp_path, edit))


def test_unknown_activity_type_is_rejected(tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["scoring"]["engagement"]["activities"]["fax_received"] = {"points": 1, "cap": 1}

    with pytest.raises(DefinitionError, match="fax_received"):
        load_definition(_write_modified(tmp_path, edit))


def test_reordered_stages_are_rejected(tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["stages"][1], d["stages"][2] = d["stages"][2], d["stages"][1]

    with pytest.raises(DefinitionError, match="stages"):
        load_definition(_write_modified(tmp_path, edit))


def test_unparsable_and_missing_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("scoring: [unclosed\n", encoding="utf-8")
    with pytest.raises(DefinitionError, match=r"broken\.yaml"):
        load_definition(broken)
    with pytest.raises(DefinitionError, match=r"missing\.yaml"):
        load_definition(tmp_path / "missing.yaml")


def test_every_problem_names_file_line_and_key(tmp_path: Path) -> None:
    text = DEFAULT_PATH.read_text("utf-8")
    bad = text.replace("mql_score_min:", "mql_scor_min:", 1)
    assert bad != text
    path = tmp_path / "global.yaml"
    path.write_text(bad, "utf-8")
    expected_line = next(i for i, row in enumerate(bad.splitlines(), 1) if "mql_scor_min:" in row)
    with pytest.raises(DefinitionError) as err:
        load_definition(path)
    keys = {(p.key, p.line) for p in err.value.problems}
    assert ("scoring.thresholds.mql_scor_min", expected_line) in keys
    assert all(p.path == str(path) for p in err.value.problems)


def test_a_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "global.yaml"
    path.write_text("schema_version: 1\nstages: [Lead\nscoring: {}\n", "utf-8")
    with pytest.raises(DefinitionError) as err:
        load_definition(path)
    [problem] = err.value.problems
    assert problem.line is not None and problem.line >= 2
    assert "not valid YAML" in problem.message


def test_identity_rules(definition: LeadDefinition) -> None:
    rules = definition.identity
    assert (rules.auto_merge_weight, rules.review_weight) == (12.0, 6.0)
    assert (rules.max_merge_share, rules.max_block_size) == (0.5, 60)
    assert rules.title_merge_weight == 20.0


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"review_weight": 14.0}, "identity"),
        ({"review_weight": 20.0}, "identity"),
        ({"title_merge_weight": 11.0}, "identity"),
        ({"max_merge_share": 0}, "identity.max_merge_share"),
        ({"max_merge_share": 1.5}, "identity.max_merge_share"),
        ({"max_block_size": 1}, "identity.max_block_size"),
        ({"auto_merge_weight": "high"}, "identity.auto_merge_weight"),
        ({"auto_merge_weight": float("inf")}, "identity.auto_merge_weight"),
        ({"threshold": 3}, "identity.threshold"),
    ],
)
def test_bad_identity_rules_name_their_key(
    tmp_path: Path, changes: dict[str, Any], key: str
) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["identity"].update(changes)

    with pytest.raises(DefinitionError) as err:
        load_definition(_write_modified(tmp_path, edit))
    assert key in {p.key for p in err.value.problems}
    assert all(p.line is not None for p in err.value.problems)


def test_identity_share_of_one_is_allowed_and_the_section_is_required(tmp_path: Path) -> None:
    def share_one(d: dict[str, Any]) -> None:
        d["identity"]["max_merge_share"] = 1

    assert load_definition(_write_modified(tmp_path, share_one)).identity.max_merge_share == 1.0

    def drop(d: dict[str, Any]) -> None:
        del d["identity"]

    with pytest.raises(DefinitionError, match="identity"):
        load_definition(_write_modified(tmp_path, drop))


def test_loader_fields_cannot_be_set_by_the_file(tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["regions"] = {"jp": {}}
        d["version"] = "abc"

    with pytest.raises(DefinitionError) as err:
        load_definition(_write_modified(tmp_path, edit))
    assert {p.key for p in err.value.problems} == {"regions", "version"}


def test_sales_qualification_and_acceptance_as_shipped(definition: LeadDefinition) -> None:
    bant = definition.sales_qualification.bant
    assert bant is not None
    assert (bant.required, bant.min_confirmed) == (["need", "timeline"], 2)
    acceptance = definition.sales_acceptance
    assert acceptance.queue_routing
    assert (acceptance.queue_id_prefix, acceptance.user_id_prefix) == ("00G", "005")


@pytest.mark.parametrize(
    ("bant", "key", "message"),
    [
        ({"required": ["need", "timing"], "min_confirmed": 2}, "required", "unknown BANT"),
        ({"required": ["need", "need"], "min_confirmed": 2}, "required", "more than once"),
        ({"required": ["need", "timeline"], "min_confirmed": 1}, "bant", "below the number"),
        ({"required": [], "min_confirmed": 0}, "min_confirmed", "greater than or equal"),
        ({"required": [], "min_confirmed": 6}, "min_confirmed", "less than or equal"),
        ({"required": ["need"], "min_confirmed": 2, "max": 3}, "max", "Extra inputs"),
    ],
)
def test_a_bad_bant_rule_is_rejected_by_key(
    tmp_path: Path, bant: dict[str, Any], key: str, message: str
) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["sales_qualification"]["bant"] = bant

    with pytest.raises(DefinitionError) as err:
        load_definition(_write_modified(tmp_path, edit))
    problems = err.value.problems
    assert any(
        p.key.startswith("sales_qualification.bant") and p.key.endswith(key) for p in problems
    ), problems
    assert any(message in p.message for p in problems), problems
    assert all(p.line is not None for p in problems)


def test_sales_sections_are_optional_and_global_only(tmp_path: Path) -> None:
    def drop(d: dict[str, Any]) -> None:
        del d["sales_qualification"], d["sales_acceptance"]

    old = load_definition(_write_modified(tmp_path, drop))
    assert old.sales_qualification.bant is None and not old.sales_acceptance.queue_routing

    def same_prefix(d: dict[str, Any]) -> None:
        d["sales_acceptance"]["queue_id_prefix"] = "005"

    with pytest.raises(DefinitionError, match="must differ"):
        load_definition(_write_modified(tmp_path, same_prefix))
    assert not is_overridable(("sales_qualification", "bant"))
    assert not is_overridable(("sales_acceptance", "queue_routing"))
