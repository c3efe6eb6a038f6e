"""Golden records (survivorship) and write-back targets."""

from datetime import UTC, date, datetime

import polars as pl

from orchestration.funnel.identity import resolve
from orchestration.funnel.model import CANONICAL_LEAD_SCHEMA
from orchestration.funnel.normalize import OUTCOME_SCHEMA
from orchestration.funnel.unify import (
    GOLDEN_SCHEMA,
    TARGET_SCHEMA,
    golden_records,
    member_fingerprints,
    targets,
    update_golden_records,
)


def _ts(day: int) -> datetime:
    return datetime(2024, 1, day, tzinfo=UTC)


def _leads(rows: list[dict[str, object]]) -> pl.DataFrame:
    """Canonical lead rows: record_id's parts fill the source columns, the rest defaults to null."""
    full = []
    for row in rows:
        system, obj, source_id = str(row["record_id"]).split(":", 2)
        base: dict[str, object] = {c: None for c in CANONICAL_LEAD_SCHEMA}
        base |= {
            "source_system": system,
            "source_object": obj,
            "source_id": source_id,
            "secondary_emails": [],
            "linked_record_ids": [],
            "is_deleted": False,
        }
        full.append(base | row)
    return pl.DataFrame(full, schema=CANONICAL_LEAD_SCHEMA)


def _person() -> pl.DataFrame:
    """One person in three records (hard-linked) plus an unrelated lead."""
    hs = "hubspot:contacts:1001"
    lead = "salesforce:Lead:00Q1"
    contact = "salesforce:Contact:0031"
    return _leads(
        [
            {
                "record_id": hs,
                "email": "taro@example.co.jp",
                "email_is_role": False,
                "secondary_emails": ["taro@gmail.com"],
                "first_name": "太郎",
                "last_name": "山田",
                "company": "株式会社エグザンプル",
                "title": "部長",
                "owner_id": "77",
                "opted_out": True,
                "do_not_contact": None,
                "bounced": False,
                "hs_lifecyclestage": "marketingqualifiedlead",
                "locale": "ja",
                "linked_record_ids": [lead],
                "created_at": _ts(5),
                "updated_at": _ts(20),
            },
            {
                "record_id": lead,
                "email": "info@example.co.jp",
                "email_is_role": True,
                "first_name": "Taro",
                "last_name": "Yamada",
                "company": "Example KK",
                "title": "Manager",
                "phone": "+81312345678",
                "owner_id": "005LEAD",
                "sf_status": "Qualified",
                "sf_is_converted": True,
                "opted_out": False,
                "bounced": False,
                "linked_record_ids": [contact],
                "created_at": _ts(1),
                "updated_at": _ts(10),
            },
            {
                "record_id": contact,
                "email": "t.yamada@example.co.jp",
                "email_is_role": False,
                "last_name": "Yamada",
                "owner_id": "005CONTACT",
                "do_not_contact": True,
                "opted_out": False,
                "is_deleted": False,
                "created_at": _ts(3),
                "updated_at": _ts(15),
            },
            {
                "record_id": "salesforce:Lead:00Q2",
                "email": "hanako@other.co.jp",
                "first_name": "花子",
                "owner_id": "005OTHER",
                "sf_status": "Open",
                "updated_at": _ts(2),
            },
        ]
    )


def _golden_by_record(golden: pl.DataFrame, record_id: str) -> dict[str, object]:
    row = golden.filter(pl.col("record_ids").list.contains(record_id))
    assert row.height == 1
    return row.row(0, named=True)


def test_golden_records_schema_and_counts() -> None:
    leads = _person()
    golden = golden_records(leads, resolve(leads))
    assert golden.schema == pl.Schema(GOLDEN_SCHEMA)
    assert golden.height == 2
    taro = _golden_by_record(golden, "hubspot:contacts:1001")
    assert taro["record_count"] == 3
    assert taro["record_ids"] == [
        "hubspot:contacts:1001",
        "salesforce:Contact:0031",
        "salesforce:Lead:00Q1",
    ]
    assert taro["created_at"] == _ts(1) and taro["updated_at"] == _ts(20)
    assert taro["is_deleted"] is False


def test_consent_most_restrictive_wins() -> None:
    leads = _person()
    taro = _golden_by_record(golden_records(leads, resolve(leads)), "hubspot:contacts:1001")
    assert taro["opted_out"] is True  # HubSpot opted out, Salesforce did not
    assert taro["do_not_contact"] is True  # only the Contact says so
    assert taro["bounced"] is False
    hanako = _golden_by_record(golden_records(leads, resolve(leads)), "salesforce:Lead:00Q2")
    assert (hanako["opted_out"], hanako["do_not_contact"], hanako["bounced"]) == (
        False,
        False,
        False,
    )


def test_owner_and_status_from_salesforce_lifecycle_from_hubspot() -> None:
    leads = _person()
    taro = _golden_by_record(golden_records(leads, resolve(leads)), "hubspot:contacts:1001")
    assert taro["owner_id"] == "005CONTACT"  # a Contact over a Lead over HubSpot
    assert taro["sf_status"] == "Qualified"  # only the Lead has a status
    assert taro["sf_is_converted"] is True
    assert taro["hs_lifecyclestage"] == "marketingqualifiedlead"


def test_owner_falls_back_to_hubspot_without_salesforce() -> None:
    leads = _leads([{"record_id": "hubspot:contacts:1", "owner_id": "77"}])
    golden = golden_records(leads, resolve(leads))
    assert golden["owner_id"].to_list() == ["77"]


def test_most_recent_values_and_names_as_a_pair() -> None:
    leads = _person()
    taro = _golden_by_record(golden_records(leads, resolve(leads)), "hubspot:contacts:1001")
    # HubSpot is the most recently updated record with a name, company and title.
    assert (taro["first_name"], taro["last_name"]) == ("太郎", "山田")
    assert taro["company"] == "株式会社エグザンプル"
    assert taro["company_key"] == "エグザンプル"
    assert taro["title"] == "部長"
    assert taro["phone"] == "+81312345678"  # only the Lead has one
    assert taro["locale"] == "ja"


def test_email_is_a_non_role_address_of_the_most_recent_live_record() -> None:
    leads = _person()
    taro = _golden_by_record(golden_records(leads, resolve(leads)), "hubspot:contacts:1001")
    assert taro["email"] == "taro@example.co.jp"
    assert taro["email_domain"] == "example.co.jp"
    assert taro["email_is_free"] is False
    assert taro["secondary_emails"] == [
        "info@example.co.jp",
        "t.yamada@example.co.jp",
        "taro@gmail.com",
    ]


def test_live_records_win_over_deleted_ones() -> None:
    leads = _leads(
        [
            {
                "record_id": "salesforce:Lead:00Q1",
                "email": "new@acme.co.jp",
                "title": "CTO",
                "updated_at": _ts(1),
            },
            {
                "record_id": "salesforce:Lead:00Q2",
                "email": "old@acme.co.jp",
                "title": "Engineer",
                "opted_out": True,
                "is_deleted": True,
                "linked_record_ids": ["salesforce:Lead:00Q1"],
                "updated_at": _ts(9),
            },
        ]
    )
    golden = golden_records(leads, resolve(leads))
    row = golden.row(0, named=True)
    assert (row["email"], row["title"]) == ("new@acme.co.jp", "CTO")
    assert row["opted_out"] is True  # consent survives even from the deleted record
    assert row["is_deleted"] is False


def test_all_deleted_cluster_is_deleted() -> None:
    leads = _leads([{"record_id": "salesforce:Lead:00Q1", "is_deleted": True}])
    assert golden_records(leads, resolve(leads))["is_deleted"].to_list() == [True]


def test_opportunity_flags() -> None:
    leads = _person()
    outcomes = pl.DataFrame(
        {
            "record_id": [
                "salesforce:Lead:00Q1",
                "salesforce:Contact:0031",
                "salesforce:Lead:00Q2",
            ],
            "opportunity_id": ["0061", "0062", "0063"],
            "stage_name": ["Closed Won", "Prospecting", "Closed Lost"],
            "is_closed": [True, False, True],
            "is_won": [True, False, False],
            "amount": [100.0, None, 5.0],
            "close_date": [date(2024, 1, 1), None, date(2024, 2, 1)],
        },
        schema=OUTCOME_SCHEMA,
    )
    golden = golden_records(leads, resolve(leads), outcomes)
    taro = _golden_by_record(golden, "hubspot:contacts:1001")
    hanako = _golden_by_record(golden, "salesforce:Lead:00Q2")
    assert (taro["has_open_opportunity"], taro["has_won_opportunity"]) == (True, True)
    assert (hanako["has_open_opportunity"], hanako["has_won_opportunity"]) == (False, False)
    no_outcomes = golden_records(leads, resolve(leads))
    assert not no_outcomes["has_open_opportunity"].any()


def test_golden_records_empty() -> None:
    leads = _leads([])
    golden = golden_records(leads, resolve(leads))
    assert golden.height == 0 and golden.schema == pl.Schema(GOLDEN_SCHEMA)


def test_targets_exclude_converted_leads_and_deleted_records() -> None:
    leads = _person().vstack(
        _leads(
            [
                {
                    "record_id": "salesforce:Lead:00Q9",
                    "is_deleted": True,
                    "linked_record_ids": ["salesforce:Lead:00Q2"],
                }
            ]
        )
    )
    identity = resolve(leads)
    out = targets(leads, identity)
    assert out.schema == pl.Schema(TARGET_SCHEMA)
    assert sorted(out["record_id"].to_list()) == [
        "hubspot:contacts:1001",
        "salesforce:Contact:0031",
        "salesforce:Lead:00Q2",
    ]
    uid = dict(zip(identity["record_id"].to_list(), identity["unified_id"].to_list(), strict=True))
    row = out.filter(pl.col("record_id") == "salesforce:Contact:0031").row(0, named=True)
    assert row["unified_id"] == uid["salesforce:Contact:0031"]
    assert (row["source_system"], row["source_object"], row["source_id"]) == (
        "salesforce",
        "Contact",
        "0031",
    )


# ------------------------------------------------------------- survivorship rules and provenance


def _one(rows: list[dict[str, object]]) -> dict[str, object]:
    """The golden record of records that are all one person (one identity cluster, given
    directly so the survivorship rules are tested apart from identity resolution)."""
    leads = _leads(rows)
    identity = leads.select("record_id", pl.lit("U1").alias("unified_id"))
    golden = golden_records(leads, identity)
    assert golden.height == 1
    return golden.row(0, named=True)


def _provenance(row: dict[str, object]) -> dict[str, object]:
    prov = row["provenance"]
    assert isinstance(prov, dict)
    return prov


def test_golden_schema_has_provenance_struct() -> None:
    assert isinstance(GOLDEN_SCHEMA["provenance"], pl.Struct)
    names = {f.name for f in GOLDEN_SCHEMA["provenance"].fields}  # type: ignore[union-attr]
    assert {"email", "first_name", "last_name", "phone", "company", "owner_id"} <= names
    assert {"opted_out", "do_not_contact", "bounced"} <= names


def test_provenance_names_the_record_behind_each_value() -> None:
    leads = _person()
    taro = _golden_by_record(golden_records(leads, resolve(leads)), "hubspot:contacts:1001")
    prov = _provenance(taro)
    hs, lead, contact = "hubspot:contacts:1001", "salesforce:Lead:00Q1", "salesforce:Contact:0031"
    assert prov["email"] == hs
    assert (prov["first_name"], prov["last_name"]) == (hs, hs)
    assert prov["company"] == hs and prov["title"] == hs and prov["locale"] == hs
    assert prov["phone"] == lead
    assert prov["owner_id"] == contact and prov["sf_status"] == lead
    assert taro["owner_source"] == "salesforce:Contact"
    assert prov["hs_lifecyclestage"] == hs
    assert prov["created_at"] == lead and prov["updated_at"] == hs
    assert prov["industry"] is None and prov["country"] is None  # no value, no source
    # consent: every record that set the flag
    assert prov["opted_out"] == [hs]
    assert prov["do_not_contact"] == [contact]
    assert prov["bounced"] == []
    assert prov["sf_is_converted"] == [lead]


def test_consent_lists_every_record_that_restricts() -> None:
    row = _one(
        [
            {"record_id": "hubspot:contacts:1", "opted_out": True, "updated_at": _ts(9)},
            {"record_id": "salesforce:Lead:00Q1", "opted_out": False, "bounced": True},
            {
                "record_id": "salesforce:Contact:0031",
                "opted_out": True,
                "do_not_contact": True,
                "is_deleted": True,
            },
        ]
    )
    assert (row["opted_out"], row["do_not_contact"], row["bounced"]) == (True, True, True)
    prov = _provenance(row)
    assert prov["opted_out"] == ["hubspot:contacts:1", "salesforce:Contact:0031"]
    assert prov["do_not_contact"] == ["salesforce:Contact:0031"]
    assert prov["bounced"] == ["salesforce:Lead:00Q1"]


def test_phone_mobile_over_fixed_over_company_lines() -> None:
    row = _one(
        [
            {
                "record_id": "salesforce:Lead:00Q1",
                "phone": "+81120123456",
                "phone_type": "toll_free",
                "updated_at": _ts(20),
            },
            {
                "record_id": "hubspot:contacts:1",
                "phone": "+81312345678",
                "phone_type": "fixed",
                "updated_at": _ts(10),
            },
            {
                "record_id": "salesforce:Contact:0031",
                "phone": "+819011112222",
                "phone_type": "mobile",
                "updated_at": _ts(1),
            },
        ]
    )
    assert row["phone"] == "+819011112222"  # the oldest, but the only mobile
    assert _provenance(row)["phone"] == "salesforce:Contact:0031"


def test_phone_never_a_toll_free_or_shared_line_when_another_exists() -> None:
    row = _one(
        [
            {
                "record_id": "salesforce:Lead:00Q1",
                "phone": "+81570064123",
                "phone_type": "shared_cost",
                "updated_at": _ts(20),
            },
            {
                "record_id": "hubspot:contacts:1",
                "phone": "+81312345678",
                "phone_type": "fixed",
                "updated_at": _ts(2),
            },
            {
                "record_id": "hubspot:contacts:2",
                "phone": "+81355556666",
                "phone_type": "fixed",
                "updated_at": _ts(5),
            },
        ]
    )
    assert row["phone"] == "+81355556666"  # the most recent of the personal lines
    only_switchboard = _one(
        [
            {
                "record_id": "salesforce:Lead:00Q1",
                "phone": "+81120123456",
                "phone_type": "toll_free",
            },
            {"record_id": "hubspot:contacts:1"},
        ]
    )
    assert only_switchboard["phone"] == "+81120123456"  # better than nothing


def test_company_account_contact_over_hubspot_over_free_text() -> None:
    rows = [
        {
            "record_id": "salesforce:Lead:00Q1",
            "company": "ベータ商事",
            "updated_at": _ts(30),
        },
        {
            "record_id": "hubspot:contacts:1",
            "company": "Beta Trading",
            "updated_at": _ts(20),
        },
        {
            "record_id": "salesforce:Contact:0031",
            "company": "株式会社ベータ",
            "source_account_id": "0011",
            "updated_at": _ts(1),
        },
    ]
    row = _one(rows)
    assert (row["company"], row["company_key"]) == ("株式会社ベータ", "ベータ")
    assert _provenance(row)["company"] == "salesforce:Contact:0031"
    without_account = _one(rows[:2])
    assert without_account["company"] == "Beta Trading"  # HubSpot over a Lead's free text
    assert _provenance(without_account)["company"] == "hubspot:contacts:1"


def test_name_most_complete_then_with_reading_then_recent() -> None:
    row = _one(
        [
            # newest, but only one part
            {"record_id": "hubspot:contacts:1", "last_name": "山田", "updated_at": _ts(30)},
            # complete, no reading
            {
                "record_id": "salesforce:Lead:00Q1",
                "first_name": "Taro",
                "last_name": "Yamada",
                "updated_at": _ts(20),
            },
            # complete with a reading: wins though older
            {
                "record_id": "salesforce:Contact:0031",
                "first_name": "太郎",
                "last_name": "山田",
                "name_reading": "たろう やまだ",
                "updated_at": _ts(5),
            },
        ]
    )
    assert (row["first_name"], row["last_name"]) == ("太郎", "山田")
    prov = _provenance(row)
    assert prov["first_name"] == prov["last_name"] == "salesforce:Contact:0031"


def test_name_one_part_only_has_no_provenance_for_the_other() -> None:
    row = _one([{"record_id": "hubspot:contacts:1", "last_name": "Lee"}])
    prov = _provenance(row)
    assert (row["first_name"], row["last_name"]) == (None, "Lee")
    assert (prov["first_name"], prov["last_name"]) == (None, "hubspot:contacts:1")


def test_timestamps_min_created_max_updated_with_provenance() -> None:
    row = _one(
        [
            {"record_id": "hubspot:contacts:1", "created_at": _ts(3), "updated_at": _ts(4)},
            {"record_id": "salesforce:Lead:00Q1", "created_at": _ts(1), "updated_at": _ts(2)},
            {"record_id": "salesforce:Contact:0031", "created_at": _ts(2), "updated_at": _ts(9)},
        ]
    )
    assert (row["created_at"], row["updated_at"]) == (_ts(1), _ts(9))
    prov = _provenance(row)
    assert (prov["created_at"], prov["updated_at"]) == (
        "salesforce:Lead:00Q1",
        "salesforce:Contact:0031",
    )


def test_email_most_recent_primary_others_secondary() -> None:
    row = _one(
        [
            {
                "record_id": "hubspot:contacts:1",
                "email": "taro@old.co.jp",
                "secondary_emails": ["taro@gmail.com"],
                "updated_at": _ts(1),
            },
            {"record_id": "salesforce:Lead:00Q1", "email": "taro@new.co.jp", "updated_at": _ts(9)},
            {
                "record_id": "salesforce:Contact:0031",
                "email": "info@new.co.jp",
                "email_is_role": True,
                "updated_at": _ts(20),
            },
        ]
    )
    assert row["email"] == "taro@new.co.jp"
    assert row["secondary_emails"] == ["info@new.co.jp", "taro@gmail.com", "taro@old.co.jp"]
    assert _provenance(row)["email"] == "salesforce:Lead:00Q1"


def test_frames_without_the_new_columns_still_unify() -> None:
    """A leads frame persisted before phone_type / name_reading / source_account_id existed."""
    leads = _person().drop("phone_type", "name_reading", "source_account_id")
    golden = golden_records(leads, resolve(leads))
    taro = _golden_by_record(golden, "hubspot:contacts:1001")
    assert taro["phone"] == "+81312345678" and taro["company"] == "株式会社エグザンプル"


def test_a_bant_criterion_is_confirmed_by_any_live_salesforce_record() -> None:
    older, newer = "salesforce:Lead:00Q1", "salesforce:Lead:00Q2"
    merged_away, hubspot = "salesforce:Lead:00Q3", "hubspot:contacts:1001"
    leads = _leads(
        [
            {"record_id": older, "bant_need": True, "bant_timeline": False, "updated_at": _ts(1)},
            {"record_id": newer, "bant_timeline": True, "bant_need": False, "updated_at": _ts(5)},
            # A merge loser's boxes: the winner carries what sales kept.
            {"record_id": merged_away, "bant_budget": True, "is_deleted": True},
            # No such fields in HubSpot; a value there (a custom property) does not count.
            {"record_id": hubspot, "bant_authority": True},
        ]
    )
    identity = leads.select("record_id", pl.lit("U1").alias("unified_id"))
    row = golden_records(leads, identity).row(0, named=True)
    confirmed = {c: row[f"bant_{c}"] for c in ("budget", "authority", "need", "timeline")}
    assert confirmed == {"budget": False, "authority": False, "need": True, "timeline": True}
    assert row["bant_competitor"] is False  # nobody says so: not confirmed (never null)
    prov = _provenance(row)
    assert prov["bant_need"] == [older] and prov["bant_timeline"] == [newer]
    assert prov["bant_budget"] == [] and prov["bant_authority"] == []


def test_bant_columns_missing_from_older_frames_read_as_unconfirmed() -> None:
    leads = _leads([{"record_id": "salesforce:Lead:00Q1"}]).drop("bant_need", "bant_budget")
    identity = leads.select("record_id", pl.lit("U1").alias("unified_id"))
    row = golden_records(leads, identity).row(0, named=True)
    assert row["bant_need"] is False and row["bant_budget"] is False


def _outcome(record_id: str, is_won: bool) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "record_id": [record_id],
            "opportunity_id": ["0069"],
            "stage_name": ["Closed Won" if is_won else "Prospecting"],
            "is_closed": [is_won],
            "is_won": [is_won],
            "amount": [10.0],
            "close_date": [date(2024, 3, 1)],
        },
        schema=OUTCOME_SCHEMA,
    )


def test_golden_records_are_made_again_only_for_leads_whose_members_changed() -> None:
    leads = _person()
    ident = resolve(leads)
    outcomes = _outcome("salesforce:Lead:00Q2", is_won=False)
    before = golden_records(leads, ident, outcomes)
    prints = member_fingerprints(leads, ident, outcomes)

    # Nothing changed: nothing made again, the same frame.
    same, remade = update_golden_records(before, prints, prints, leads, ident, outcomes)
    assert remade == 0 and same.equals(before)

    # Hanako's record gets a title, Taro's opportunity is won: two leads made again.
    edited = leads.with_columns(
        pl.when(pl.col("record_id") == "salesforce:Lead:00Q2")
        .then(pl.lit("CFO"))
        .otherwise(pl.col("title"))
        .alias("title")
    )
    won = pl.concat([outcomes, _outcome("salesforce:Contact:0031", is_won=True)])
    after, remade = update_golden_records(
        before, prints, member_fingerprints(edited, ident, won), edited, ident, won
    )
    assert remade == 2
    assert after.equals(golden_records(edited, ident, won))
    assert _golden_by_record(after, "salesforce:Lead:00Q2")["title"] == "CFO"
    assert _golden_by_record(after, "salesforce:Contact:0031")["has_won_opportunity"] is True

    # Taro's HubSpot record leaves his lead for one of its own: both are made again.
    split = ident.with_columns(
        pl.when(pl.col("record_id") == "hubspot:contacts:1001")
        .then(pl.lit("u-split"))
        .otherwise(pl.col("unified_id"))
        .alias("unified_id")
    )
    moved, remade = update_golden_records(
        after,
        member_fingerprints(edited, ident, won),
        member_fingerprints(edited, split, won),
        edited,
        split,
        won,
    )
    assert remade == 2
    assert moved.equals(golden_records(edited, split, won))
