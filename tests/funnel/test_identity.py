"""Identity resolution v1: hard links, email with a given-name veto, stable unified ids."""

import hashlib

import polars as pl

from orchestration.funnel.identity import resolve
from orchestration.funnel.model import CANONICAL_LEAD_SCHEMA, IDENTITY_SCHEMA
from orchestration.funnel.normalize import DEFAULT_LEAD_MAPPINGS, normalize_leads


def _uid(record_id: str) -> str:
    return "UL-" + hashlib.sha1(record_id.encode()).hexdigest()[:12]


def _clusters(identity: pl.DataFrame) -> set[frozenset[str]]:
    grouped = identity.group_by("unified_id").agg(pl.col("record_id"))
    return {frozenset(ids) for ids in grouped["record_id"].to_list()}


def _bands(identity: pl.DataFrame) -> dict[str, str]:
    """record_id -> how it joined its cluster (the rule), or its band when it stands alone."""
    how = identity.select(pl.coalesce("rule", "band").alias("how"))["how"]
    return dict(zip(identity["record_id"].to_list(), how.to_list(), strict=True))


def test_hard_links_merge_across_systems() -> None:
    records = [
        {
            "record_id": "hubspot:contacts:1",
            "email": "taro@example.co.jp",
            "linked_record_ids": ["salesforce:Lead:00Q1", "salesforce:Lead:00Qmissing"],
        },
        # Different emails: only the hard links can join these.
        {
            "record_id": "salesforce:Lead:00Q1",
            "email": "t.yamada@example.co.jp",
            "linked_record_ids": ["salesforce:Contact:0031"],
        },
        {"record_id": "salesforce:Contact:0031", "email": "yamada@example.co.jp"},
        {"record_id": "hubspot:contacts:2", "email": "hanako@example.co.jp"},
    ]
    identity = resolve(records)
    assert identity.schema == pl.Schema(IDENTITY_SCHEMA)
    assert identity.height == 4  # the missing link target does not appear
    assert _clusters(identity) == {
        frozenset({"hubspot:contacts:1", "salesforce:Lead:00Q1", "salesforce:Contact:0031"}),
        frozenset({"hubspot:contacts:2"}),
    }
    assert _bands(identity) == {
        "hubspot:contacts:1": "hard_link",
        "salesforce:Lead:00Q1": "hard_link",
        "salesforce:Contact:0031": "hard_link",
        "hubspot:contacts:2": "keep_apart",
    }


def test_unified_id_is_sha1_of_smallest_record_id() -> None:
    identity = resolve(
        [
            {"record_id": "salesforce:Lead:00Q1", "linked_record_ids": ["hubspot:contacts:9"]},
            {"record_id": "hubspot:contacts:9"},
        ]
    )
    assert set(identity["unified_id"].to_list()) == {_uid("hubspot:contacts:9")}


def test_same_email_merges() -> None:
    records = [
        {
            "record_id": "hubspot:contacts:1",
            "email": "Taro+news@Example.co.jp",
            "first_name": "太郎",
        },
        {"record_id": "salesforce:Lead:00Q1", "email": "taro@example.co.jp", "first_name": "太郎"},
        {"record_id": "salesforce:Lead:00Q2", "email": "taro@example.co.jp"},  # no name: no veto
        {"record_id": "salesforce:Lead:00Q3", "email": "jiro@example.co.jp", "first_name": "次郎"},
    ]
    identity = resolve(records)
    assert _clusters(identity) == {
        frozenset({"hubspot:contacts:1", "salesforce:Lead:00Q1", "salesforce:Lead:00Q2"}),
        frozenset({"salesforce:Lead:00Q3"}),
    }
    assert _bands(identity)["salesforce:Lead:00Q1"] == "email"
    assert _bands(identity)["salesforce:Lead:00Q3"] == "keep_apart"


def test_secondary_email_is_evidence() -> None:
    records = [
        {
            "record_id": "hubspot:contacts:1",
            "email": "taro@example.co.jp",
            "secondary_emails": ["taro.private@gmail.com"],
        },
        {"record_id": "salesforce:Lead:00Q1", "email": "taroprivate@gmail.com"},
    ]
    assert len(_clusters(resolve(records))) == 1


def test_role_mailbox_never_merges() -> None:
    records = [
        {"record_id": "hubspot:contacts:1", "email": "info@acme.co.jp", "first_name": "太郎"},
        {"record_id": "salesforce:Lead:00Q1", "email": "info@acme.co.jp", "first_name": "太郎"},
        {"record_id": "salesforce:Lead:00Q2", "email": "TOIAWASE@acme.co.jp"},
        {"record_id": "salesforce:Lead:00Q3", "email": "toiawase@acme.co.jp"},
    ]
    identity = resolve(records)
    assert identity["unified_id"].n_unique() == 4
    bands = _bands(identity)
    # The same given name at one domain is a question for a person, never an automatic merge.
    assert bands["hubspot:contacts:1"] == bands["salesforce:Lead:00Q1"] == "review"
    assert bands["salesforce:Lead:00Q2"] == bands["salesforce:Lead:00Q3"] == "keep_apart"


def test_conflicting_given_names_veto_the_email_group() -> None:
    records = [
        # A shared personal-looking address used by two colleagues.
        {"record_id": "hubspot:contacts:1", "email": "yamada@acme.co.jp", "first_name": "太郎"},
        {"record_id": "salesforce:Lead:00Q1", "email": "yamada@acme.co.jp", "first_name": "花子"},
        {"record_id": "salesforce:Lead:00Q2", "email": "yamada@acme.co.jp", "first_name": "太郎"},
        # ...but hard links still apply to the vetoed members.
        {
            "record_id": "salesforce:Contact:0031",
            "email": "hanako@acme.co.jp",
            "linked_record_ids": ["salesforce:Lead:00Q1"],
        },
    ]
    identity = resolve(records)
    assert _clusters(identity) == {
        frozenset({"hubspot:contacts:1"}),
        frozenset({"salesforce:Lead:00Q2"}),
        frozenset({"salesforce:Lead:00Q1", "salesforce:Contact:0031"}),
    }


def test_prefix_and_swapped_names_do_not_veto() -> None:
    records = [
        {"record_id": "a:x:1", "email": "rob@acme.com", "first_name": "Rob", "last_name": "Smith"},
        {"record_id": "a:x:2", "email": "rob@acme.com", "first_name": "Robert", "last_name": "S"},
        {"record_id": "a:x:3", "email": "ty@acme.jp", "first_name": "太郎", "last_name": "山田"},
        {"record_id": "a:x:4", "email": "ty@acme.jp", "first_name": "山田", "last_name": "太郎"},
        {"record_id": "a:x:5", "email": "tk@acme.jp", "first_name": "髙子", "last_name": "林"},
        {"record_id": "a:x:6", "email": "tk@acme.jp", "first_name": "高子 様", "last_name": "林"},
    ]
    assert _clusters(resolve(records)) == {
        frozenset({"a:x:1", "a:x:2"}),
        frozenset({"a:x:3", "a:x:4"}),
        frozenset({"a:x:5", "a:x:6"}),
    }


def test_deleted_records_join_through_hard_links_only() -> None:
    records = [
        {"record_id": "salesforce:Lead:00Q1", "email": "taro@acme.co.jp", "is_deleted": False},
        # Merge loser: deleted, points at its winner.
        {
            "record_id": "salesforce:Lead:00Q2",
            "email": "taro.old@acme.co.jp",
            "is_deleted": True,
            "linked_record_ids": ["salesforce:Lead:00Q1"],
        },
        # Deleted, same email, no link: stale data is not merged by email.
        {"record_id": "salesforce:Lead:00Q3", "email": "taro@acme.co.jp", "is_deleted": True},
    ]
    identity = resolve(records)
    assert identity.height == 3
    assert _clusters(identity) == {
        frozenset({"salesforce:Lead:00Q1", "salesforce:Lead:00Q2"}),
        frozenset({"salesforce:Lead:00Q3"}),
    }


def test_long_chains_of_links_form_one_cluster() -> None:
    n = 50
    records = [
        {
            "record_id": f"hubspot:contacts:{i:03d}",
            "linked_record_ids": [f"hubspot:contacts:{i + 1:03d}"],
        }
        for i in range(n)
    ]
    identity = resolve(records)
    assert identity["unified_id"].n_unique() == 1
    assert identity["unified_id"][0] == _uid("hubspot:contacts:000")


def test_ids_are_stable_when_a_new_member_joins() -> None:
    first = [
        {"record_id": "salesforce:Lead:00Q1", "email": "taro@acme.co.jp"},
        {"record_id": "salesforce:Lead:00Q2", "email": "taro@acme.co.jp"},
        {"record_id": "salesforce:Lead:00Q3", "email": "hanako@acme.co.jp"},
    ]
    before = resolve(first)
    taro_id = before.filter(pl.col("record_id") == "salesforce:Lead:00Q1")["unified_id"][0]
    assert taro_id == _uid("salesforce:Lead:00Q1")

    # The newcomer sorts first, so without `previous` the id would change.
    second = [*first, {"record_id": "hubspot:contacts:7", "email": "Taro@acme.co.jp"}]
    assert resolve(second).filter(pl.col("record_id") == "hubspot:contacts:7")["unified_id"][
        0
    ] == _uid("hubspot:contacts:7")
    after = resolve(second, previous=before)
    ids = dict(zip(after["record_id"].to_list(), after["unified_id"].to_list(), strict=True))
    assert ids["hubspot:contacts:7"] == ids["salesforce:Lead:00Q1"] == taro_id
    assert ids["salesforce:Lead:00Q3"] == _uid("salesforce:Lead:00Q3")


def test_merged_clusters_keep_the_majority_id_and_new_records_get_fresh_ids() -> None:
    previous = pl.DataFrame(
        {
            "record_id": ["a:x:1", "a:x:2", "a:x:3", "a:x:4"],
            "unified_id": ["UL-old-big", "UL-old-big", "UL-old-small", "UL-old-split"],
            "band": ["email"] * 4,
        }
    )
    records = [
        # 1, 2 and 3 now form one cluster: the id most members held wins.
        {"record_id": "a:x:1", "email": "p@acme.com"},
        {"record_id": "a:x:2", "email": "p@acme.com"},
        {"record_id": "a:x:3", "email": "p@acme.com"},
        # 4 keeps its previous id; 5 is new and gets sha1 of its own record id.
        {"record_id": "a:x:4"},
        {"record_id": "a:x:5"},
    ]
    ids = resolve(records, previous=previous)
    got = dict(zip(ids["record_id"].to_list(), ids["unified_id"].to_list(), strict=True))
    assert got["a:x:1"] == got["a:x:2"] == got["a:x:3"] == "UL-old-big"
    assert got["a:x:4"] == "UL-old-split"
    assert got["a:x:5"] == _uid("a:x:5")


def test_a_previous_id_is_never_given_to_two_clusters() -> None:
    before = resolve(
        [
            {"record_id": "a:x:1", "email": "p@acme.com"},
            {"record_id": "a:x:2", "email": "p@acme.com"},
            {"record_id": "a:x:3", "email": "p@acme.com"},
        ]
    )
    assert before["unified_id"].n_unique() == 1
    old = before["unified_id"][0]
    assert old == _uid("a:x:1")
    # Record 1 changes address and leaves: the larger remainder keeps the id, and record 1's
    # fresh id cannot be sha1("a:x:1") because that is the id the remainder still holds.
    after = resolve(
        [
            {"record_id": "a:x:1", "email": "q@acme.com"},
            {"record_id": "a:x:2", "email": "p@acme.com"},
            {"record_id": "a:x:3", "email": "p@acme.com"},
        ],
        previous=before,
    )
    got = dict(zip(after["record_id"].to_list(), after["unified_id"].to_list(), strict=True))
    assert got["a:x:2"] == got["a:x:3"] == old
    assert got["a:x:1"] != old and got["a:x:1"].startswith("UL-")
    assert after["unified_id"].n_unique() == 2


def test_list_of_dicts_and_frames_give_the_same_answer() -> None:
    raw = {
        "hubspot:contacts": pl.DataFrame(
            {
                "id": ["1", "2"],
                "email": ["taro@acme.co.jp", "info@acme.co.jp"],
                "firstname": ["太郎", None],
                "salesforceleadid": [None, "00Q9"],
            }
        ),
        "salesforce:Lead": pl.DataFrame(
            {"Id": ["00Q1", "00Q9"], "Email": ["TARO@acme.co.jp", "x@acme.co.jp"]}
        ),
    }
    leads = normalize_leads(raw, DEFAULT_LEAD_MAPPINGS)
    assert leads.schema == pl.Schema(CANONICAL_LEAD_SCHEMA)
    from_frame = resolve(leads)
    from_dicts = resolve(leads.to_dicts())
    assert from_frame.equals(from_dicts)
    assert _bands(from_frame) == {
        "hubspot:contacts:1": "email",
        "salesforce:Lead:00Q1": "email",
        "hubspot:contacts:2": "hard_link",
        "salesforce:Lead:00Q9": "hard_link",
    }


def test_minimal_dicts_and_empty_input() -> None:
    identity = resolve([{"record_id": "x:y:1"}, {"record_id": "x:y:2", "email": None}])
    assert identity["band"].to_list() == ["keep_apart", "keep_apart"]
    empty = resolve([])
    assert empty.height == 0 and empty.schema == pl.Schema(IDENTITY_SCHEMA)
