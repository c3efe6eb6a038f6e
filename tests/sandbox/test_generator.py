"""Tests for the deterministic sandbox data generator (connectors/sandbox/generator.py)."""

import csv
import re
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.sandbox.generator import (
    DEFAULT_NOW,
    HUBSPOT_OBJECTS,
    SALESFORCE_OBJECTS,
    SF_PREFIX,
    SandboxDataset,
    generate,
    truth_pairs,
)

SIZE = 2000
FREE_MAIL = {
    "gmail.com",
    "yahoo.co.jp",
    "outlook.com",
    "outlook.jp",
    "icloud.com",
    "yahoo.com",
    "hotmail.co.uk",
    "gmx.de",
    "web.de",
    "bigpond.com",
    "hotmail.com",
    "docomo.ne.jp",
    "yahoo.co.uk",
    "yahoo.com.sg",
}
CONVERSION_NAMES = {
    "Contact us",
    "Demo request",
    "Quote request",
    "Whitepaper download",
    "Case study download",
    "Webinar registration",
    "Newsletter signup",
    "お問い合わせ",
    "デモ依頼",
    "見積依頼",
    "資料ダウンロード",
    "事例ダウンロード",
    "ウェビナー申込",
    "メルマガ登録",
}
HAND_RAISES = {
    "Contact us",
    "Demo request",
    "Quote request",
    "お問い合わせ",
    "デモ依頼",
    "見積依頼",
}
_SF_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")


@pytest.fixture(scope="module")
def ds() -> SandboxDataset:
    return generate(SIZE, 42)


@pytest.fixture(scope="module")
def people(ds: SandboxDataset) -> dict[str, list[tuple[str, str, str]]]:
    """person_id -> [(system, object, record_id)]"""
    out: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for row in ds.truth:
        out[row.person_id].append((row.system, row.object, row.record_id))
    return out


@pytest.fixture(scope="module")
def person_of(ds: SandboxDataset) -> dict[str, str]:
    return {row.key: row.person_id for row in ds.truth}


def _person_records(ds: SandboxDataset) -> dict[str, dict[str, Any]]:
    """Record key -> flat field dict for every person record."""
    out: dict[str, dict[str, Any]] = {}
    for rec in ds.hubspot["contacts"]:
        out[f"hubspot:contacts:{rec['id']}"] = rec["properties"]
    for obj in ("Lead", "Contact"):
        for rec in ds.salesforce[obj]:
            out[f"salesforce:{obj}:{rec['Id']}"] = rec
    return out


def _name(fields: dict[str, Any]) -> tuple[str, str]:
    first = fields.get("firstname", fields.get("FirstName")) or ""
    last = fields.get("lastname", fields.get("LastName")) or ""
    return first.strip(), last.strip()


def _email(fields: dict[str, Any]) -> str | None:
    return fields.get("email") if "email" in fields else fields.get("Email")


# ------------------------------------------------------------------------------------------------
# Determinism and size
# ------------------------------------------------------------------------------------------------
def test_same_seed_gives_identical_output(tmp_path: Path) -> None:
    a, b = generate(300, 7), generate(300, 7)
    assert a == b
    assert repr(a) == repr(b)
    a.write_truth(tmp_path / "a.csv")
    b.write_truth(tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_different_seed_gives_different_output() -> None:
    a, b = generate(300, 7), generate(300, 8)
    assert a.hubspot["contacts"] != b.hubspot["contacts"]
    assert a.salesforce["Lead"] != b.salesforce["Lead"]


@pytest.mark.parametrize("size", [0, 1, 100])
def test_small_sizes(size: int) -> None:
    dataset = generate(size, 3)
    assert dataset.summary()["people"] == size
    assert len({row.person_id for row in dataset.truth}) == size


def test_size_is_number_of_people(ds: SandboxDataset) -> None:
    summary = ds.summary()
    assert summary["people"] == SIZE
    assert summary["truth_rows"] > SIZE  # people in both CRMs and duplicates add records


def test_now_is_respected_and_must_be_aware() -> None:
    now = datetime(2025, 3, 1, 12, tzinfo=UTC)
    dataset = generate(100, 5, now=now)
    for rec in dataset.hubspot["contacts"]:
        assert rec["updatedAt"] <= now
    for rec in dataset.salesforce["Lead"]:
        assert rec["SystemModstamp"] <= now
    with pytest.raises(ValueError):
        generate(10, 1, now=datetime(2025, 3, 1))
    with pytest.raises(ValueError):
        generate(-1, 1)


# ------------------------------------------------------------------------------------------------
# Shape
# ------------------------------------------------------------------------------------------------
def test_object_types_and_ids(ds: SandboxDataset) -> None:
    assert tuple(ds.hubspot) == HUBSPOT_OBJECTS
    assert tuple(ds.salesforce) == SALESFORCE_OBJECTS
    assert min(int(r["id"]) for r in ds.hubspot["contacts"]) == 1001
    assert min(int(r["id"]) for r in ds.hubspot["companies"]) == 5001
    engagement_ids = [
        r["id"] for t in ("emails", "calls", "meetings", "notes", "tasks") for r in ds.hubspot[t]
    ]
    assert min(map(int, engagement_ids)) == 90001
    assert len(set(engagement_ids)) == len(engagement_ids)
    for records in ds.hubspot.values():
        ids = [r["id"] for r in records]
        assert all(i.isdigit() for i in ids) and len(set(ids)) == len(ids)
    seen: set[str] = set()
    for obj, records in ds.salesforce.items():
        for rec in records:
            sf_id = rec["Id"]
            assert len(sf_id) == 18 and sf_id[:3] == SF_PREFIX[obj] and sf_id not in seen
            seen.add(sf_id)
            # The real case-safe checksum of the 15-character id.
            for chunk in range(3):
                flags = sum(
                    1 << i
                    for i, c in enumerate(sf_id[chunk * 5 : chunk * 5 + 5])
                    if "A" <= c <= "Z"
                )
                assert sf_id[15 + chunk] == _SF_SUFFIX[flags]


def test_property_values_follow_the_contract(ds: SandboxDataset) -> None:
    bands = {"1-5", "5-25", "25-50", "50-100", "100-500", "500-1000", "1000+", None}
    stages = {
        "subscriber",
        "lead",
        "marketingqualifiedlead",
        "salesqualifiedlead",
        "opportunity",
        "customer",
    }
    for rec in ds.hubspot["contacts"]:
        props = rec["properties"]
        assert all(v is None or isinstance(v, str) for v in props.values())
        assert props["hs_language"] in {"en", "ja", None}
        assert props["numemployees"] in bands
        assert props["lifecyclestage"] in stages
        for key in ("recent_conversion_event_name", "first_conversion_event_name"):
            assert props[key] is None or props[key] in CONVERSION_NAMES
        assert props["hs_email_optout"] in {"true", None}
    for rec in ds.salesforce["Lead"]:
        assert rec["Status"] in {
            "Open - Not Contacted",
            "Working - Contacted",
            "Closed - Converted",
            "Closed - Not Converted",
        }
        assert rec["IsConverted"] == (rec["Status"] == "Closed - Converted")
        assert "LeadSync_Unified_Id__c" in rec and "LeadSync_Synced_At__c" in rec
    # A lead a rep has already emailed or called is not "Not Contacted" any more.
    worked = {t["WhoId"] for t in ds.salesforce["Task"]}
    for rec in ds.salesforce["Lead"]:
        if rec["Id"] in worked:
            assert rec["Status"] != "Open - Not Contacted"
    for rec in ds.salesforce["Opportunity"]:
        assert rec["StageName"] in {
            "Prospecting",
            "Qualification",
            "Proposal/Price Quote",
            "Closed Won",
            "Closed Lost",
        }
        assert rec["IsClosed"] == rec["StageName"].startswith("Closed")
        assert rec["IsWon"] == (rec["StageName"] == "Closed Won")
        assert isinstance(rec["CloseDate"], date) and not isinstance(rec["CloseDate"], datetime)
    assert {r["Type"] for r in ds.salesforce["Campaign"]} == {
        "Webinar",
        "Seminar",
        "Conference",
        "Email",
        "Other",
    }
    assert {r["Status"] for r in ds.salesforce["CampaignMember"]} == {
        "Sent",
        "Opened",
        "Clicked",
        "Registered",
        "Attended",
        "Responded",
    }
    assert {r["TaskSubtype"] for r in ds.salesforce["Task"]} >= {"Email", "Call"}
    directions = {r["properties"]["hs_email_direction"] for r in ds.hubspot["emails"]}
    assert directions == {"EMAIL", "INCOMING_EMAIL"}


def test_timestamps_are_aware_and_ordered(ds: SandboxDataset) -> None:
    now = DEFAULT_NOW
    for records in ds.hubspot.values():
        for rec in records:
            created, updated = rec["createdAt"], rec["updatedAt"]
            assert created.microsecond == 0 and updated.microsecond == 0
            assert created.tzinfo is not None and created.utcoffset() == timedelta(0)
            assert updated.tzinfo is not None
            assert created <= updated <= now
    for records in ds.salesforce.values():
        for rec in records:
            assert rec["CreatedDate"].utcoffset() == timedelta(0)
            assert rec["CreatedDate"] <= rec["LastModifiedDate"] <= rec["SystemModstamp"] <= now
            for value in rec.values():
                if isinstance(value, datetime):
                    assert value.tzinfo is not None and value.microsecond == 0
    # Activity lives in the last ~18 months (a few meetings/tasks are scheduled ahead).
    oldest = now - timedelta(days=560)
    for rec in ds.salesforce["Task"]:
        assert oldest.date() <= rec["ActivityDate"] <= (now + timedelta(days=15)).date()
    for rec in ds.hubspot["emails"]:
        assert rec["properties"]["hs_timestamp"] >= oldest.isoformat()[:10]


# ------------------------------------------------------------------------------------------------
# Referential integrity and truth
# ------------------------------------------------------------------------------------------------
def test_every_reference_points_at_an_existing_record(ds: SandboxDataset) -> None:
    hs_ids = {t: {r["id"] for r in recs} for t, recs in ds.hubspot.items()}
    for obj_type, records in ds.hubspot.items():
        for rec in records:
            for to_type, ids in rec["associations"].items():
                assert set(ids) <= hs_ids[to_type], (obj_type, rec["id"], to_type)
    engagements = [
        r for t in ("emails", "calls", "meetings", "notes", "tasks") for r in ds.hubspot[t]
    ]
    assert all(len(r["associations"]["contacts"]) == 1 for r in engagements)

    sf = {obj: {r["Id"]: r for r in recs} for obj, recs in ds.salesforce.items()}
    live_who = {i for o in ("Lead", "Contact") for i, r in sf[o].items() if not r["IsDeleted"]}
    users = set(sf["User"])
    for rec in ds.hubspot["contacts"]:
        props = rec["properties"]
        if props["salesforceleadid"]:
            assert props["salesforceleadid"] in sf["Lead"]
        if props["salesforcecontactid"]:
            assert props["salesforcecontactid"] in sf["Contact"]
    for lead in sf["Lead"].values():
        if lead["IsConverted"]:
            assert lead["ConvertedContactId"] in sf["Contact"]
            assert lead["ConvertedAccountId"] in sf["Account"]
            assert lead["ConvertedDate"] is not None
            if lead["ConvertedOpportunityId"]:
                assert lead["ConvertedOpportunityId"] in sf["Opportunity"]
        else:
            assert lead["ConvertedContactId"] is None
    for obj in ("Lead", "Contact"):
        for rec in sf[obj].values():
            assert rec["OwnerId"] in users
            if rec["IsDeleted"]:
                assert rec["MasterRecordId"] in sf[obj]
                assert not sf[obj][rec["MasterRecordId"]]["IsDeleted"]
            else:
                assert rec["MasterRecordId"] is None
    for contact in sf["Contact"].values():
        assert contact["AccountId"] in sf["Account"]
    for opp in sf["Opportunity"].values():
        assert opp["AccountId"] in sf["Account"] and opp["OwnerId"] in users
    for role in sf["OpportunityContactRole"].values():
        assert role["OpportunityId"] in sf["Opportunity"] and role["ContactId"] in live_who
    for member in sf["CampaignMember"].values():
        assert member["CampaignId"] in sf["Campaign"]
        assert member["LeadId"] or member["ContactId"]
        assert member["LeadId"] is None or member["LeadId"] in sf["Lead"]
        assert member["ContactId"] is None or member["ContactId"] in sf["Contact"]
    for obj in ("Task", "Event"):
        for rec in sf[obj].values():
            assert rec["WhoId"] in live_who
            assert rec["WhatId"] is None or rec["WhatId"] in sf["Opportunity"]


def test_truth_covers_every_person_record(ds: SandboxDataset, tmp_path: Path) -> None:
    keys = [row.key for row in ds.truth]
    assert len(keys) == len(set(keys))
    assert set(keys) == set(_person_records(ds))
    ds.write_truth(tmp_path / "truth.csv")
    with (tmp_path / "truth.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["system", "object", "record_id", "person_id"]
    assert len(rows) == len(ds.truth) + 1


def test_hard_links_agree_with_truth(ds: SandboxDataset, person_of: dict[str, str]) -> None:
    links = 0
    for rec in ds.hubspot["contacts"]:
        me = person_of[f"hubspot:contacts:{rec['id']}"]
        for prop, obj in (("salesforceleadid", "Lead"), ("salesforcecontactid", "Contact")):
            if rec["properties"][prop]:
                links += 1
                assert person_of[f"salesforce:{obj}:{rec['properties'][prop]}"] == me
    assert links > 0
    for lead in ds.salesforce["Lead"]:
        if lead["IsConverted"]:
            me = person_of[f"salesforce:Lead:{lead['Id']}"]
            assert person_of[f"salesforce:Contact:{lead['ConvertedContactId']}"] == me
        if lead["MasterRecordId"]:
            me = person_of[f"salesforce:Lead:{lead['Id']}"]
            assert person_of[f"salesforce:Lead:{lead['MasterRecordId']}"] == me


def test_truth_pairs(ds: SandboxDataset, people: dict[str, list[tuple[str, str, str]]]) -> None:
    pairs = truth_pairs(ds)
    expected = sum(len(v) * (len(v) - 1) // 2 for v in people.values())
    assert len(pairs) == expected == ds.summary()["truth_pairs"]
    sample = next(iter(pairs))
    assert all(
        re.fullmatch(r"(hubspot:contacts:\d+|salesforce:(Lead|Contact):\w{18})", k) for k in sample
    )


# ------------------------------------------------------------------------------------------------
# Proportions and realism
# ------------------------------------------------------------------------------------------------
def test_split_between_systems(
    ds: SandboxDataset, people: dict[str, list[tuple[str, str, str]]]
) -> None:
    summary = ds.summary()
    assert abs(summary["hubspot_only_people"] / SIZE - 0.45) < 0.04
    assert abs(summary["salesforce_only_people"] / SIZE - 0.30) < 0.04
    assert abs(summary["cross_system_people"] / SIZE - 0.25) < 0.04
    hs = {r["id"]: r["properties"] for r in ds.hubspot["contacts"]}
    linked = 0
    for records in people.values():
        if len({system for system, _, _ in records}) == 2:
            linked += any(
                hs[rid]["salesforceleadid"] or hs[rid]["salesforcecontactid"]
                for system, _, rid in records
                if system == "hubspot"
            )
    assert abs(linked / summary["cross_system_people"] - 0.5) < 0.1
    objects = Counter(obj for recs in people.values() for _, obj, _ in recs)
    assert objects["Lead"] > objects["Contact"] > 0
    assert any(lead["IsConverted"] for lead in ds.salesforce["Lead"])


def test_japanese_share(ds: SandboxDataset, people: dict[str, list[tuple[str, str, str]]]) -> None:
    records = _person_records(ds)
    japanese = 0
    for person_records in people.values():
        fields = [records[f"{s}:{o}:{i}"] for s, o, i in person_records]
        japanese += any(
            _JAPANESE.search("".join(_name(f))) or f.get("hs_language") == "ja" for f in fields
        )
    assert abs(japanese / SIZE - 0.45) < 0.04


def test_noisy_variants_between_records_of_one_person(
    ds: SandboxDataset, people: dict[str, list[tuple[str, str, str]]]
) -> None:
    records = _person_records(ds)
    itaiji = plus_tag = designator = fullwidth = 0
    for person_records in people.values():
        fields = [records[f"{s}:{o}:{i}"] for s, o, i in person_records]
        if len(fields) < 2:
            continue
        lasts = {_name(f)[1] for f in fields}
        if lasts & {"高橋", "渡辺", "斎藤", "山崎", "吉田"} and lasts & {
            "髙橋",
            "渡邊",
            "渡邉",
            "齋藤",
            "齊藤",
            "斉藤",
            "山﨑",
            "山嵜",
            "𠮷田",
        }:
            itaiji += 1
        emails = [_email(f) for f in fields]
        plus_tag += any(e and "+" in e for e in emails)
        companies = [f.get("company", f.get("Company")) or "" for f in fields]
        designator += any(c.startswith("株式会社") for c in companies) and any(
            c.endswith("株式会社") or "(株)" in c or "㈱" in c or "（株）" in c for c in companies
        )
        phones = [f.get("phone", f.get("Phone")) or "" for f in fields]
        fullwidth += any(re.search(r"[０-９]", p) for p in phones)
    assert itaiji > 0 and plus_tag > 0 and designator > 0 and fullwidth > 0


def test_hard_negatives_exist(ds: SandboxDataset, person_of: dict[str, str]) -> None:
    records = _person_records(ds)
    by_domain: dict[str, set[str]] = defaultdict(set)
    by_name: dict[tuple[str, str], set[str]] = defaultdict(set)
    by_email: dict[str, set[str]] = defaultdict(set)
    for key, fields in records.items():
        person = person_of[key]
        email = _email(fields)
        if email:
            domain = email.split("@")[1].lower()
            if domain not in FREE_MAIL:
                by_domain[domain].add(person)
            by_email[email.lower()].add(person)
        first, last = _name(fields)
        if first and last:
            by_name[(first, last)].add(person)
    colleagues = [d for d, ps in by_domain.items() if len(ps) > 1]
    namesakes = [n for n, ps in by_name.items() if len(ps) > 1]
    shared_mailboxes = [e for e, ps in by_email.items() if len(ps) > 1]
    assert len(colleagues) > 50
    assert len(namesakes) > 10
    assert any(n in namesakes for n in (("John", "Smith"), ("健", "佐藤"), ("James", "Smith")))
    assert shared_mailboxes
    assert all(
        e.split("@")[0]
        in {
            "info",
            "toiawase",
            "sales",
            "eigyo",
            "soumu",
            "contact",
            "marketing",
            "enquiries",
            "hello",
            "vertrieb",
            "kontakt",
            "admin",
            "enquiry",
        }
        for e in shared_mailboxes
    )


def test_relatives_and_holding_pairs(ds: SandboxDataset, person_of: dict[str, str]) -> None:
    # Father/son-like pairs: same family name at the same company domain, different given names.
    records = _person_records(ds)
    seen: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    relatives = 0
    for key, fields in records.items():
        email = _email(fields)
        first, last = _name(fields)
        if not (email and first and last):
            continue
        group = seen[(last, email.split("@")[1].lower())]
        if any(p != person_of[key] and f != first for f, p in group.items()):
            relatives += 1
        group[first] = person_of[key]
    assert relatives > 10
    # Holding/group companies next to the operating company: different records, often one domain.
    names = {r["properties"]["name"] for r in ds.hubspot["companies"]}
    names |= {r["Name"] for r in ds.salesforce["Account"]}
    words = ("ホールディングス", "グループ", " Holdings", " Group")
    assert any(w in n and n.replace(w, "") in names for n in names for w in words)
    domains = Counter(r["properties"]["domain"] for r in ds.hubspot["companies"])
    assert any(count > 1 for count in domains.values())


def test_duplicates_within_one_system(
    ds: SandboxDataset, people: dict[str, list[tuple[str, str, str]]]
) -> None:
    hs_dups = sum(1 for recs in people.values() if sum(1 for s, _, _ in recs if s == "hubspot") > 1)
    assert hs_dups > 10
    converted = {lead["Id"] for lead in ds.salesforce["Lead"] if lead["IsConverted"]}
    lead_plus_contact = sum(
        1
        for recs in people.values()
        if any(o == "Lead" and i not in converted for _, o, i in recs)
        and any(o == "Contact" for _, o, _ in recs)
    )
    assert lead_plus_contact > 3
    losers = [r for o in ("Lead", "Contact") for r in ds.salesforce[o] if r["IsDeleted"]]
    assert len(losers) > 5
    assert ds.summary()["duplicate_pairs"] > hs_dups


def test_engagement_and_outcomes_are_plausible(ds: SandboxDataset) -> None:
    contacts = ds.hubspot["contacts"]
    raised = sum(
        1
        for r in contacts
        if {
            r["properties"]["recent_conversion_event_name"],
            r["properties"]["first_conversion_event_name"],
        }
        & HAND_RAISES
    )
    assert 0.005 < raised / len(contacts) < 0.1  # hand-raisers are a minority
    opted_out = sum(1 for r in contacts if r["properties"]["hs_email_optout"] == "true")
    assert 0 < opted_out / len(contacts) < 0.1
    assert any(r["HasOptedOutOfEmail"] for r in ds.salesforce["Lead"])
    assert any(r["EmailBouncedReason"] for r in ds.salesforce["Lead"] + ds.salesforce["Contact"])
    stages = Counter(r["properties"]["lifecyclestage"] for r in contacts)
    assert stages["lead"] > stages["marketingqualifiedlead"] > stages["customer"] > 0
    won = [o for o in ds.salesforce["Opportunity"] if o["IsWon"]]
    assert won and all(o["Amount"] > 0 for o in ds.salesforce["Opportunity"])
    assert any(r["IsPrimary"] for r in ds.salesforce["OpportunityContactRole"])
    titles = {r["properties"]["jobtitle"] for r in contacts}
    assert titles & {"Student", "学生", "Intern", "インターン", "Graduate Student", "大学院生"}
