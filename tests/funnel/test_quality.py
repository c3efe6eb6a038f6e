from datetime import UTC, datetime

import polars as pl

from orchestration.funnel.model import CANONICAL_LEAD_SCHEMA
from orchestration.funnel.quality import quarantine

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _leads(rows: list[dict]) -> pl.DataFrame:
    base = {c: None for c in CANONICAL_LEAD_SCHEMA}
    full = [{**base, "created_at": T0, "is_deleted": False, **r} for r in rows]
    return pl.DataFrame(full, schema=CANONICAL_LEAD_SCHEMA)


def test_bad_records_are_quarantined_with_field_and_reason() -> None:
    leads = _leads(
        [
            {"record_id": "hubspot:contacts:1", "email": "a@example.com", "last_name": "A"},
            {"record_id": "hubspot:contacts:2", "email": "nope", "email_raw": "nope"},
            {"record_id": "salesforce:Lead:3", "email": None, "last_name": None},
            {"record_id": "salesforce:Lead:4", "last_name": "Sato", "created_at": None},
            {"record_id": "salesforce:Lead:5", "last_name": "Kato"},  # no email, has a name: fine
        ]
    )
    usable, rejected = quarantine(leads)
    assert usable["record_id"].to_list() == ["hubspot:contacts:1", "salesforce:Lead:5"]
    by_id = {r["record_id"]: r for r in rejected.to_dicts()}
    assert by_id["hubspot:contacts:2"] == {
        "record_id": "hubspot:contacts:2",
        "field": "email",
        "reason": "not an email address: nope",
    }
    assert by_id["salesforce:Lead:3"]["reason"].startswith("no email and no name")
    assert by_id["salesforce:Lead:4"]["field"] == "created_at"


def test_deleted_records_are_kept_for_their_hard_links() -> None:
    leads = _leads([{"record_id": "salesforce:Lead:9", "is_deleted": True}])
    usable, rejected = quarantine(leads)
    assert usable.height == 1 and rejected.is_empty()


def test_an_address_the_normaliser_could_not_keep_is_quarantined_not_dropped() -> None:
    # normalize_leads leaves `email` null for "taro.yamada@example" (no top-level domain) and
    # keeps what was typed in `email_raw`; the person must hear about it, not lose it silently.
    leads = _leads(
        [
            {
                "record_id": "hubspot:contacts:7",
                "email": None,
                "email_raw": "taro.yamada@example",
                "last_name": "山田",
            },
            {"record_id": "hubspot:contacts:8", "email": None, "email_raw": "", "last_name": "X"},
        ]
    )
    usable, rejected = quarantine(leads)
    assert rejected.rows() == [
        ("hubspot:contacts:7", "email", "not an email address: taro.yamada@example")
    ]
    assert usable["record_id"].to_list() == ["hubspot:contacts:8"]
