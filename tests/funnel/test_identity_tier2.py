"""Identity resolution tier 2: probabilistic matching, vetoes, review band, people's decisions,
the merge guard and incremental updates."""

from datetime import UTC, datetime

import polars as pl
import pytest

from orchestration.funnel import identity
from orchestration.funnel.identity import (
    DECISION_SCHEMA,
    IdentitySettings,
    MergeGuardError,
    build,
    resolve,
    split_decisions,
    update,
)
from orchestration.funnel.model import IDENTITY_PAIR_SCHEMA, IDENTITY_SCHEMA


def _clusters(assignments: pl.DataFrame) -> set[frozenset[str]]:
    grouped = assignments.group_by("unified_id").agg(pl.col("record_id"))
    return {frozenset(ids) for ids in grouped["record_id"].to_list()}


def _row(assignments: pl.DataFrame, record_id: str) -> dict[str, object]:
    return assignments.filter(pl.col("record_id") == record_id).to_dicts()[0]


def _decisions(rows: list[tuple[str, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            (a, b, d, "ops@example.com", datetime(2026, 11, 1, i, tzinfo=UTC), None)
            for i, (a, b, d) in enumerate(rows)
        ],
        schema=DECISION_SCHEMA,
        orient="row",
    )


# A work record and a personal record of one person: nothing but the name, the company and the
# mobile number agree.
WORK = {
    "record_id": "hubspot:contacts:1",
    "email": "t.yamada@acme.co.jp",
    "first_name": "太郎",
    "last_name": "山田",
    "company": "株式会社アクメ",
    "phone": "+819012345678",
    "phone_type": "mobile",
}
HOME = {
    "record_id": "salesforce:Lead:00Q1",
    "email": "taro.y@gmail.com",
    "first_name": "太郎",
    "last_name": "山田",
    "company": "アクメ(株)",
    "phone": "+819012345678",
    "phone_type": "mobile",
}


def test_public_resolve_returns_ids_and_bands() -> None:
    out = resolve([WORK, HOME])
    assert out.schema == pl.Schema(IDENTITY_SCHEMA)
    assert _clusters(out) == {frozenset({"hubspot:contacts:1", "salesforce:Lead:00Q1"})}
    assert _row(out, "hubspot:contacts:1")["band"] == "auto_merge"
    assert _row(out, "hubspot:contacts:1")["rule"] == "probabilistic"


def test_merge_log_explains_the_probabilistic_merge() -> None:
    graph = build([WORK, HOME])
    assert graph.pairs.schema == pl.Schema(IDENTITY_PAIR_SCHEMA)
    [pair] = graph.pairs.to_dicts()
    assert pair["rule"] == "probabilistic" and pair["applied"] is True
    assert (pair["name_level"], pair["company_level"], pair["phone_level"]) == (
        "exact",
        "same_key",
        "same_mobile",
    )
    assert pair["email_level"] == "diff"
    weights = pair["w_email"] + pair["w_name"] + pair["w_company"] + pair["w_phone"]
    assert pair["match_weight"] == pytest.approx(weights, abs=0.01)
    assert pair["match_weight"] >= IdentitySettings().auto_merge_weight


def test_name_and_company_alone_wait_for_review() -> None:
    # Namesakes at one firm look exactly like this; only a person can tell.
    work = {**WORK, "phone": None, "phone_type": None}
    home = {**HOME, "phone": None, "phone_type": None}
    out = resolve([work, home])
    assert len(_clusters(out)) == 2
    assert set(out["band"].to_list()) == {"review"}


def test_name_firm_and_title_merge_on_a_rare_enough_name() -> None:
    # One person typed in twice (a list import, a form without the address): name, firm and
    # job title agree and nothing else is there to.
    work = {**WORK, "phone": None, "phone_type": None, "title": "人事部 部長"}
    home = {**HOME, "phone": None, "phone_type": None, "title": "人事部部長"}
    graph = build([work, home])
    assert len(_clusters(graph.assignments)) == 1
    [pair] = graph.pairs.to_dicts()
    assert (pair["applied"], pair["title_level"]) == (True, "same")
    assert pair["match_weight"] >= IdentitySettings().title_merge_weight
    # Another title, or a bar the pair's weight does not reach (a common name at a large firm),
    # leaves it to a person.
    other = resolve([work, {**home, "title": "経理部 課長"}])
    assert set(other["band"].to_list()) == {"review"}
    high_bar = IdentitySettings(title_merge_weight=pair["match_weight"] + 0.5)
    assert set(resolve([work, home], settings=high_bar)["band"].to_list()) == {"review"}


def test_a_title_many_of_the_firm_hold_corroborates_nothing() -> None:
    # Two students of one name at a university where every record says "Student".
    campus = {"company": "Pembroke College", "title": "Student", "phone": None}
    twins = [
        {"record_id": f"hubspot:contacts:{i}", "first_name": "James", "last_name": "O'Brien"}
        | campus
        for i in (1, 2)
    ]
    given = ["Amy", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo"]
    others = [
        {"record_id": f"hubspot:contacts:{10 + i}", "first_name": g, "last_name": "Lee"} | campus
        for i, g in enumerate(given)
    ]
    graph = build([*twins, *others])
    assert len(_clusters(graph.assignments)) == 11
    pair = graph.pairs.filter(pl.col("record_b") == "hubspot:contacts:2").to_dicts()
    assert [(p["title_level"], p["applied"], p["veto"]) for p in pair] == [("common", False, None)]
    # An update counts the firm's titles over the whole graph, not only the records it touches.
    updated = update(build([twins[0], *others]), [twins[1]])
    assert len(_clusters(updated.assignments)) == 11
    # With fewer fellow students the title is theirs alone, and it corroborates.
    assert len(_clusters(build([*twins, *others[:2]]).assignments)) == 3


def test_colleagues_at_one_domain_are_vetoed() -> None:
    a = {**WORK, "phone": "+81312345678", "phone_type": "fixed"}
    b = {
        **WORK,
        "record_id": "salesforce:Lead:00Q2",
        "email": "h.yamada@acme.co.jp",
        "first_name": "花子",
    }
    graph = build([a, b])
    assert len(_clusters(graph.assignments)) == 2
    # The given names and the addresses differ: the weight is far below review, so the veto is
    # not what kept them apart and the log leaves the pair out. Logged where the veto decided.
    assert graph.pairs.is_empty()
    loud = build([a, b], settings=IdentitySettings(review_weight=-50.0)).pairs
    assert loud["veto"].to_list() in (["given_names_conflict"], ["different_addresses_same_domain"])
    assert loud["match_weight"].to_list()[0] < IdentitySettings().review_weight


def test_numbered_addresses_are_namesakes() -> None:
    # Mail admins number the second person of one name: s.chua@ and s.chua3@.
    a = {"record_id": "a:x:1", "email": "s.chua@sterling.sg", "first_name": "Sarah"}
    a |= {"last_name": "Chua", "company": "Sterling Pte. Ltd.", "phone": "+6591234567"}
    b = {**a, "record_id": "a:x:2", "email": "s.chua3@sterling.sg"}
    graph = build([a, b])
    assert len(_clusters(graph.assignments)) == 2
    assert graph.pairs["veto"].to_list() == ["different_addresses_same_domain"]


def test_cross_script_names_are_not_a_conflict() -> None:
    # 雄一 and Yuichi are one given name in two scripts; the shared address decides.
    a = {"record_id": "a:x:1", "email": "y.suzuki@acme.co.jp", "first_name": "雄一"}
    a |= {"last_name": "鈴木"}
    b = {"record_id": "a:x:2", "email": "y.suzuki@acme.co.jp", "first_name": "Yuichi"}
    b |= {"last_name": "Suzuki"}
    assert _clusters(resolve([a, b])) == {frozenset({"a:x:1", "a:x:2"})}


def test_accepting_a_review_pair_merges_it() -> None:
    work = {**WORK, "phone": None, "phone_type": None}
    home = {**HOME, "phone": None, "phone_type": None}
    decisions = _decisions([("salesforce:Lead:00Q1", "hubspot:contacts:1", "accept")])
    out = resolve([work, home], decisions=decisions)
    assert len(_clusters(out)) == 1
    assert set(out["rule"].to_list()) == {"user"}


def test_rejecting_beats_a_shared_address_and_the_last_decision_wins() -> None:
    a = {"record_id": "a:x:1", "email": "rob@acme.com", "first_name": "Rob"}
    b = {"record_id": "a:x:2", "email": "rob@acme.com", "first_name": "Robert"}
    assert len(_clusters(resolve([a, b]))) == 1
    rejected = _decisions([("a:x:1", "a:x:2", "reject")])
    assert len(_clusters(resolve([a, b], decisions=rejected))) == 2
    undone = _decisions([("a:x:1", "a:x:2", "reject"), ("a:x:2", "a:x:1", "accept")])
    assert len(_clusters(resolve([a, b], decisions=undone))) == 1


def test_a_cannot_link_holds_across_the_whole_cluster() -> None:
    # a-b share one address and b-c another; a and c must not end up together through b.
    a = {"record_id": "a:x:1", "email": "k@acme.com", "first_name": "Ken", "last_name": "Ito"}
    b = {
        "record_id": "a:x:2",
        "email": "k@acme.com",
        "secondary_emails": ["ken.ito.1984@gmail.com"],
        "first_name": "Ken",
        "last_name": "Ito",
    }
    c = {"record_id": "a:x:3", "email": "ken.ito.1984@gmail.com", "first_name": "Ken"}
    c |= {"last_name": "Ito"}
    assert len(_clusters(resolve([a, b, c]))) == 1
    out = resolve([a, b, c], decisions=_decisions([("a:x:1", "a:x:3", "reject")]))
    clusters = _clusters(out)
    assert len(clusters) == 2
    assert not any({"a:x:1", "a:x:3"} <= cluster for cluster in clusters)


def test_hard_links_beat_a_rejection() -> None:
    a = {"record_id": "salesforce:Lead:00Q1", "linked_record_ids": ["salesforce:Contact:003"]}
    b = {"record_id": "salesforce:Contact:003"}
    decisions = _decisions([("salesforce:Lead:00Q1", "salesforce:Contact:003", "reject")])
    assert len(_clusters(resolve([a, b], decisions=decisions))) == 1


def test_unmerge_splits_and_is_remembered() -> None:
    graph = build([WORK, HOME])
    [uid] = graph.assignments["unified_id"].unique().to_list()
    split = split_decisions(
        graph.assignments, uid, ["salesforce:Lead:00Q1"], decided_by="ops@example.com"
    )
    assert split.select("record_a", "record_b", "decision").rows() == [
        ("salesforce:Lead:00Q1", "hubspot:contacts:1", "reject")
    ]
    again = build([WORK, HOME], decisions=split, previous=graph.assignments)
    assert len(_clusters(again.assignments)) == 2
    # The record that stayed keeps the unified id; the one split off gets a new one.
    assert _row(again.assignments, "hubspot:contacts:1")["unified_id"] == uid
    assert _row(again.assignments, "salesforce:Lead:00Q1")["unified_id"] != uid
    with pytest.raises(ValueError, match="not part of"):
        split_decisions(graph.assignments, uid, ["nope"], decided_by="x")


def test_merge_guard_aborts_a_mass_merge() -> None:
    records = [
        {"record_id": f"a:x:{i}", "email": f"p{i // 2}@acme.com", "first_name": "Ann"}
        for i in range(40)
    ]
    # Yesterday every record stood alone; today a broken field pairs them all up.
    apart = build([{**r, "email": None} for r in records]).assignments
    with pytest.raises(MergeGuardError, match="max_merge_share"):
        build(records, previous=apart, settings=IdentitySettings(max_merge_share=0.4))
    graph = build(records, previous=apart, settings=IdentitySettings(max_merge_share=1.0))
    # Each pair joins two former singletons: one record of each pair is newly merged.
    assert graph.newly_merged == 20
    # A re-run over the same data merges nothing new, so the guard stays quiet.
    again = build(records, previous=graph.assignments, settings=IdentitySettings(0.1))
    assert again.newly_merged == 0
    # A first import counts only what the probabilistic tier merged: shared addresses are facts.
    assert build(records, settings=IdentitySettings(max_merge_share=0.1)).newly_merged == 0


def test_update_matches_only_against_touched_clusters() -> None:
    base = [
        {"record_id": f"a:x:{i}", "email": f"p{i}@acme{i}.com", "first_name": f"N{i}"}
        for i in range(50)
    ]
    graph = build(base)
    new = [
        {"record_id": "b:y:1", "email": "p7@acme7.com", "first_name": "N7"},
        {"record_id": "b:y:2", "email": "fresh@elsewhere.com", "first_name": "Zed"},
    ]
    updated = update(graph, new)
    full = build(base + new, previous=graph.assignments)
    assert _clusters(updated.assignments) == _clusters(full.assignments)
    # Untouched records keep their ids; the newcomer joins p7's unified lead.
    before = dict(graph.assignments.select("record_id", "unified_id").iter_rows())
    after = dict(updated.assignments.select("record_id", "unified_id").iter_rows())
    assert all(after[r] == before[r] for r in before)
    assert after["b:y:1"] == before["a:x:7"]
    assert updated.assignments.height == 52


def test_update_of_a_changed_record_can_split_its_cluster() -> None:
    a = {"record_id": "a:x:1", "email": "k@acme.com", "first_name": "Ken"}
    b = {"record_id": "a:x:2", "email": "k@acme.com", "first_name": "Ken"}
    graph = build([a, b])
    assert len(_clusters(graph.assignments)) == 1
    moved = {**b, "email": "other@else.com", "first_name": "Mia"}
    updated = update(graph, [moved])
    assert len(_clusters(updated.assignments)) == 2
    assert updated.records.height == 2


def test_identity_module_exports_public_api() -> None:
    for name in ("resolve", "build", "update", "IdentityGraph", "MergeGuardError"):
        assert hasattr(identity, name)


def test_name_made_free_mail_is_not_enough_on_its_own() -> None:
    names = pl.DataFrame(
        {
            "address": [
                "patriciayoung@gmail.com",
                "tomoko.maeda@yahoo.co.jp",
                "tmaeda@gmail.com",
                "marcus_tan46@gmail.com",
                "patricia.young@acme.com",
            ],
            # as the normaliser folds them (long vowels: young -> yong, like Satou -> sato)
            "romaji": ["patricia yong", "maeda tomoko", "maeda tomoko", "marcus tan", None],
        }
    )
    made = names.select(identity.name_made_address(pl.col("address"), pl.col("romaji")))
    assert made.to_series().to_list() == [True, True, True, False, False]

    # Two Patricia Youngs at the same spelt-from-the-name gmail address: a question, not a merge.
    a = {"record_id": "a:x:1", "email": "patriciayoung@gmail.com", "first_name": "Patricia"}
    a |= {"last_name": "Young", "company": "Vertex Labs LLC"}
    b = {**a, "record_id": "a:x:2", "company": None}
    out = resolve([a, b])
    assert len(_clusters(out)) == 2
    assert set(out["band"].to_list()) == {"review"}
    # The same person's own mobile number settles it.
    mobile = {"phone": "+14155550123", "phone_type": "mobile"}
    assert len(_clusters(resolve([a | mobile, b | mobile]))) == 1


def test_a_missing_reading_does_not_silence_a_name_veto() -> None:
    # Brothers at one firm sharing its switchboard; only one record has a kana reading.
    a = {"record_id": "a:x:1", "first_name": "太郎", "last_name": "山田", "company": "アクメ(株)"}
    a |= {"phone": "+81312345678", "phone_type": "fixed", "name_reading": "やまだ たろう"}
    b = {
        "record_id": "a:x:2",
        "first_name": "次郎",
        "last_name": "山田",
        "company": "株式会社アクメ",
    }
    b |= {"phone": "+81312345678", "phone_type": "fixed"}
    graph = build([a, b])
    assert len(_clusters(graph.assignments)) == 2
    assert graph.pairs["veto"].to_list() == ["given_names_conflict"]


def test_a_line_one_name_answers_corroborates_a_merge() -> None:
    # Three records of one person share a direct line: not a switchboard, however many records.
    base = {"first_name": "Ana", "last_name": "Lima", "company": "Acme Ltd"}
    line = {"phone": "+442071234567", "phone_type": "fixed"}
    records = [
        {"record_id": "a:x:1", "email": "ana.lima@acme.co.uk"} | base | line,
        {"record_id": "a:x:2", "email": "analima1990@gmail.com"} | base | line,
        {"record_id": "a:x:3"} | base | line,
    ]
    assert len(_clusters(resolve(records))) == 1
    # A colleague on the same number makes it a switchboard: name and firm are left to review.
    colleague = {"record_id": "a:x:4", "first_name": "Bo", "last_name": "Chen"} | line
    out = resolve([*records[1:], colleague | {"company": "Acme Ltd"}])
    assert _row(out, "a:x:2")["unified_id"] != _row(out, "a:x:3")["unified_id"]
    assert _row(out, "a:x:2")["band"] == "review"
