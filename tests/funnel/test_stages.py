"""Stages: forward moves, no silent regression, declared backward edges, SGL, ledger on change."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from orchestration.funnel.definition import (
    BantRule,
    LeadDefinition,
    SalesAcceptance,
    SalesQualification,
    load_definition,
)
from orchestration.funnel.model import ACTIVITY_SCHEMA, BANT_COLUMNS
from orchestration.funnel.scoring import score
from orchestration.funnel.stages import (
    LEDGER_SCHEMA,
    STAGE_ORDER,
    STAGES_SCHEMA,
    assign_stages,
    illegal_transitions,
    is_legal_transition,
)

NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(days=7)
RECENT = NOW - timedelta(hours=1)

_UNIFIED = {
    "unified_id": pl.String,
    "sf_status": pl.String,
    "sf_is_converted": pl.Boolean,
    "lead_source": pl.String,
    "has_open_opportunity": pl.Boolean,
    "has_won_opportunity": pl.Boolean,
    "opted_out": pl.Boolean,
    "email_is_free": pl.Boolean,
    "email_domain": pl.String,
    "title": pl.String,
}
_SCORES = {
    "unified_id": pl.String,
    "fit_score": pl.Int64,
    "score": pl.Int64,
    "hand_raise": pl.Boolean,
    "last_activity_at": pl.Datetime("us", "UTC"),
    "last_hand_raise_at": pl.Datetime("us", "UTC"),
}


@pytest.fixture(scope="module")
def definition() -> LeadDefinition:
    return load_definition()


def unified(*rows: dict[str, Any]) -> pl.DataFrame:
    base = {k: None for k in _UNIFIED} | {"email_domain": "example.com"}
    return pl.DataFrame([base | r for r in rows], schema=_UNIFIED)


def scores(*rows: dict[str, Any]) -> pl.DataFrame:
    base = {k: None for k in _SCORES} | {"fit_score": 0, "score": 0, "hand_raise": False}
    return pl.DataFrame([base | r for r in rows], schema=_SCORES)


def previous(*pairs: tuple[str, str], entered: datetime = EARLIER) -> pl.DataFrame:
    return pl.DataFrame(
        [{"unified_id": u, "stage": s, "stage_entered_at": entered} for u, s in pairs],
        schema=STAGES_SCHEMA,
    )


def run(
    definition: LeadDefinition,
    leads: pl.DataFrame,
    score_rows: pl.DataFrame,
    prev: pl.DataFrame | None = None,
) -> tuple[dict[str, str], pl.DataFrame, pl.DataFrame]:
    stages, ledger = assign_stages(leads, score_rows, prev, definition, now=NOW)
    return dict(zip(stages["unified_id"], stages["stage"], strict=True)), stages, ledger


def test_first_run_targets_and_one_ledger_row_each(definition: LeadDefinition) -> None:
    leads = unified(
        {"unified_id": "lead"},
        {"unified_id": "mal"},
        {"unified_id": "mql"},
        {"unified_id": "sal", "sf_status": "Working - Contacted"},
        {"unified_id": "sql", "sf_is_converted": True},
        {"unified_id": "opp", "has_open_opportunity": True},
        {"unified_id": "won", "has_won_opportunity": True, "has_open_opportunity": True},
    )
    sc = scores(
        {"unified_id": "mal", "fit_score": 10, "score": 10},
        {"unified_id": "mql", "fit_score": 30, "score": 80},
    )
    got, stages, ledger = run(definition, leads, sc)
    assert got == {
        "lead": "Lead",
        "mal": "MAL",
        "mql": "MQL",
        "sal": "SAL",
        "sql": "SQL",
        "opp": "Opportunity",
        "won": "Customer",
    }
    assert stages.schema == pl.Schema(STAGES_SCHEMA)
    assert ledger.schema == pl.Schema(LEDGER_SCHEMA)
    assert ledger.height == 7
    assert ledger["from_stage"].null_count() == 7
    assert set(ledger["definition_version"]) == {definition.version}
    assert set(ledger["at"]) == {NOW}
    mql = ledger.filter(pl.col("unified_id") == "mql").row(0, named=True)
    assert (mql["rule"], mql["reason"]) == ("score_threshold", "score 80 >= 80")


def test_hand_raise_makes_mql_at_once(definition: LeadDefinition) -> None:
    leads = unified({"unified_id": "u"})
    acts = pl.DataFrame(
        [
            {
                "activity_id": "a1",
                "record_id": "r",
                "source_system": "hubspot",
                "activity_type": "demo_request",
                "occurred_at": NOW - timedelta(hours=1),
                "detail": "Demo request",
                "unified_id": "u",
            }
        ],
        schema={**ACTIVITY_SCHEMA, "unified_id": pl.String()},
    )
    lead_attrs = leads.with_columns(
        pl.lit(None, dtype=pl.Int64).alias("employee_count"),
        pl.lit(None, dtype=pl.String).alias("industry"),
        pl.lit(None, dtype=pl.String).alias("country"),
        pl.lit("en").alias("locale"),
    )
    sc = score(lead_attrs, acts, definition, now=NOW)
    assert sc["score"][0] < definition.scoring.thresholds.mql_score_min  # not by points
    got, _, ledger = run(definition, leads, sc, previous(("u", "Lead")))
    assert got == {"u": "MQL"}
    assert ledger.select("from_stage", "to_stage", "rule").row(0) == ("Lead", "MQL", "hand_raise")


def test_forward_moves_update_entered_at(definition: LeadDefinition) -> None:
    leads = unified({"unified_id": "u"})
    got, stages, ledger = run(
        definition,
        leads,
        scores({"unified_id": "u", "fit_score": 20, "score": 20}),
        previous(("u", "Lead")),
    )
    assert got == {"u": "MAL"}
    assert stages["stage_entered_at"][0] == NOW
    assert ledger.select("from_stage", "to_stage").row(0) == ("Lead", "MAL")


def test_no_silent_regression(definition: LeadDefinition) -> None:
    # The rules now support only MAL / Lead (score decayed, opportunity closed): stages hold.
    leads = unified({"unified_id": "sql"}, {"unified_id": "opp"}, {"unified_id": "mql"})
    sc = scores(
        {"unified_id": "sql", "fit_score": 20, "score": 20},
        {"unified_id": "mql", "fit_score": 20, "score": 20},
    )
    # (entered an hour ago: the MQL's SLA clock has not run out)
    prev = previous(("sql", "SQL"), ("opp", "Opportunity"), ("mql", "MQL"), entered=RECENT)
    got, stages, ledger = run(definition, leads, sc, prev)
    assert got == {"sql": "SQL", "opp": "Opportunity", "mql": "MQL"}
    assert set(stages["stage_entered_at"]) == {RECENT}
    assert ledger.is_empty()


def test_recycle_on_open_status_is_the_declared_edge(definition: LeadDefinition) -> None:
    # The same lower target *with* a sales signal (status back to open after SQL) is a recycle.
    leads = unified({"unified_id": "u", "sf_status": "Open - Not Contacted"})
    sc = scores({"unified_id": "u", "fit_score": 20, "score": 20})
    got, _, ledger = run(definition, leads, sc, previous(("u", "SQL")))
    assert got == {"u": "Recycled"}
    assert ledger.select("rule", "reason").row(0) == ("recycle", "no_response")


def test_ledger_rows_only_on_change(definition: LeadDefinition) -> None:
    leads = unified({"unified_id": "a"}, {"unified_id": "b"})
    sc = scores({"unified_id": "a", "fit_score": 10, "score": 10}, {"unified_id": "b"})
    _, first, ledger1 = run(definition, leads, sc)
    assert ledger1.height == 2
    _, second, ledger2 = run(definition, leads, sc, first)
    assert ledger2.is_empty()
    assert second.equals(first)


def test_disqualify_by_sales_status_with_reason(definition: LeadDefinition) -> None:
    leads = unified({"unified_id": "u", "sf_status": "Closed - Not Converted"})
    got, _, ledger = run(definition, leads, scores({"unified_id": "u"}), previous(("u", "MQL")))
    assert got == {"u": "Disqualified"}
    row = ledger.row(0, named=True)
    assert (row["from_stage"], row["to_stage"], row["rule"], row["reason"]) == (
        "MQL",
        "Disqualified",
        "disqualify",
        "not_target",
    )
    assert is_legal_transition("MQL", "Disqualified", definition)


def test_competitor_and_student_are_disqualified_and_never_mal(definition: LeadDefinition) -> None:
    leads = unified(
        {"unified_id": "rival", "email_domain": "competitor-crm.example"},
        {"unified_id": "student", "title": "大学院生"},
    )
    sc = scores(
        {"unified_id": "rival", "fit_score": 50, "score": 50},
        {"unified_id": "student", "fit_score": 50, "score": 50},
    )
    got, _, ledger = run(definition, leads, sc)
    assert got == {"rival": "Disqualified", "student": "Disqualified"}
    reasons = dict(zip(ledger["unified_id"], ledger["reason"], strict=True))
    assert reasons == {"rival": "competitor", "student": "student"}


def test_opportunity_outranks_disqualify(definition: LeadDefinition) -> None:
    leads = unified(
        {"unified_id": "u", "sf_status": "Closed - Not Converted", "has_open_opportunity": True}
    )
    got, _, _ = run(definition, leads, scores({"unified_id": "u"}), previous(("u", "SQL")))
    assert got == {"u": "Opportunity"}


def test_sgl_enters_at_sql(definition: LeadDefinition) -> None:
    leads = unified({"unified_id": "u", "lead_source": "partner referral"})
    got, _, ledger = run(definition, leads, scores({"unified_id": "u"}))
    assert got == {"u": "SQL"}
    row = ledger.row(0, named=True)
    assert (row["from_stage"], row["to_stage"], row["rule"]) == (None, "SQL", "sgl")


def test_sgl_with_open_status_is_not_recycled(definition: LeadDefinition) -> None:
    leads = unified(
        {"unified_id": "u", "lead_source": "Sales Prospecting", "sf_status": "Open - Not Contacted"}
    )
    got, _, ledger = run(definition, leads, scores({"unified_id": "u"}), previous(("u", "SQL")))
    assert got == {"u": "SQL"}
    assert ledger.is_empty()


def test_recycle_when_sales_hands_back(definition: LeadDefinition) -> None:
    leads = unified(
        {"unified_id": "nurture", "sf_status": "Nurturing"},
        {"unified_id": "reopened", "sf_status": "Open - Not Contacted"},
        {"unified_id": "mql_open", "sf_status": "Open - Not Contacted"},
    )
    prev = previous(("nurture", "SAL"), ("reopened", "SAL"), ("mql_open", "MQL"), entered=RECENT)
    got, _, ledger = run(definition, leads, scores(), prev)
    assert got == {"nurture": "Recycled", "reopened": "Recycled", "mql_open": "MQL"}
    reasons = dict(zip(ledger["unified_id"], ledger["reason"], strict=True))
    assert reasons == {"nurture": "not_now", "reopened": "no_response"}
    assert set(ledger["rule"]) == {"recycle"}


def test_reopen_on_new_hand_raise_only(definition: LeadDefinition) -> None:
    leads = unified({"unified_id": "new"}, {"unified_id": "old"}, {"unified_id": "score"})
    sc = scores(
        {"unified_id": "new", "hand_raise": True, "last_hand_raise_at": NOW - timedelta(days=1)},
        {
            "unified_id": "old",
            "hand_raise": True,
            "last_hand_raise_at": EARLIER - timedelta(days=1),
        },
        {"unified_id": "score", "score": 85, "last_activity_at": NOW - timedelta(days=1)},
    )
    prev = previous(("new", "Recycled"), ("old", "Recycled"), ("score", "Recycled"))
    got, _, ledger = run(definition, leads, sc, prev)
    assert got == {"new": "MQL", "old": "Recycled", "score": "MQL"}
    reasons = dict(zip(ledger["unified_id"], ledger["reason"], strict=True))
    assert reasons == {"new": "hand_raise", "score": "score_crossing"}


def test_disqualified_stays_until_sales_evidence(definition: LeadDefinition) -> None:
    leads = unified(
        {"unified_id": "still", "sf_status": "Closed - Not Converted"},
        {"unified_id": "scored", "sf_status": None},
        {"unified_id": "revived", "sf_status": "Working - Contacted"},
    )
    sc = scores({"unified_id": "scored", "fit_score": 30, "score": 90})
    prev = previous(
        ("still", "Disqualified"), ("scored", "Disqualified"), ("revived", "Disqualified")
    )
    got, _, ledger = run(definition, leads, sc, prev)
    assert got == {"still": "Disqualified", "scored": "Disqualified", "revived": "SAL"}
    assert ledger.select("unified_id", "rule").rows() == [("revived", "sales_reentry")]


def test_legal_transitions(definition: LeadDefinition) -> None:
    assert is_legal_transition(None, "SQL", definition)  # first sighting (SGL)
    assert not is_legal_transition(None, "Recycled", definition)
    for a, b in itertools.pairwise(STAGE_ORDER):
        assert is_legal_transition(a, b, definition)
        assert not is_legal_transition(b, a, definition)
    assert is_legal_transition("SAL", "Recycled", definition)
    assert not is_legal_transition("Customer", "Recycled", definition)
    assert is_legal_transition("Recycled", "MQL", definition)
    assert not is_legal_transition("Recycled", "MAL", definition)
    assert is_legal_transition("Disqualified", "SQL", definition)
    assert not is_legal_transition("Disqualified", "MQL", definition)
    assert not is_legal_transition("MQL", "MQL", definition)
    assert not is_legal_transition("MQL", "Nowhere", definition)


def test_illegal_transitions_check(definition: LeadDefinition) -> None:
    ledger = pl.DataFrame(
        {
            "unified_id": ["a", "b", "c"],
            "from_stage": [None, "SQL", "SQL"],
            "to_stage": ["Lead", "MQL", "Recycled"],
        }
    )
    bad = illegal_transitions(ledger, definition)
    assert bad["unified_id"].to_list() == ["b"]


def test_every_ledger_row_of_a_run_is_legal(definition: LeadDefinition) -> None:
    leads = unified(
        {"unified_id": "a", "sf_status": "Nurturing"},
        {"unified_id": "b", "lead_source": "Phone Inquiry"},
        {"unified_id": "c", "sf_status": "Closed - Not Converted"},
        {"unified_id": "d", "has_won_opportunity": True},
    )
    prev = previous(("a", "SQL"), ("b", "MAL"), ("c", "Recycled"), ("d", "Disqualified"))
    _, _, ledger = run(definition, leads, scores(), prev)
    assert ledger.height == 4
    assert illegal_transitions(ledger, definition).is_empty()


# --- SLA clocks -----------------------------------------------------------------------------


def _staged(
    definition: LeadDefinition,
    leads: pl.DataFrame,
    sc: pl.DataFrame,
    prev: pl.DataFrame | None,
    now: datetime = NOW,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    return assign_stages(leads, sc, prev, definition, now=now)


def test_sla_clock_runs_from_entering_mql(definition: LeadDefinition) -> None:
    leads = unified({"unified_id": "u"})
    sc = scores({"unified_id": "u", "fit_score": 30, "score": 85})
    stages, _ = _staged(definition, leads, sc, previous(("u", "MQL"), entered=RECENT))
    row = stages.row(0, named=True)
    hours = definition.sla.mql_to_sal_hours
    assert (row["stage"], row["sla_clock"], row["sla_status"]) == ("MQL", "mql_to_sal", "on_track")
    assert row["sla_due_at"] == RECENT + timedelta(hours=hours)


def test_an_mql_sales_left_too_long_is_recycled_for_sla_breach(
    definition: LeadDefinition,
) -> None:
    assert definition.sla.breach_action == "recycle"
    leads = unified({"unified_id": "u", "sf_status": "Open - Not Contacted"})
    sc = scores({"unified_id": "u", "fit_score": 30, "score": 85})
    late = NOW - timedelta(hours=definition.sla.mql_to_sal_hours + 1)
    stages, ledger = _staged(definition, leads, sc, previous(("u", "MQL"), entered=late))
    assert ledger.select("from_stage", "to_stage", "rule", "reason").row(0) == (
        "MQL",
        "Recycled",
        "recycle",
        "sla_breach",
    )
    assert is_legal_transition("MQL", "Recycled", definition)
    # the flag says why it was recycled, so sales and marketing see it in both CRMs
    assert stages.select("stage", "sla_status", "entered_from").row(0) == (
        "Recycled",
        "breached",
        "MQL",
    )

    # Nothing new: it stays recycled (no flip back to MQL on the same old score).
    later = NOW + timedelta(hours=1)
    again, ledger2 = _staged(definition, leads, sc, stages, now=later)
    assert ledger2.is_empty() and again["stage"][0] == "Recycled"
    # Sales finally accepts it: sales evidence lifts it to SAL and a new clock starts.
    working = unified({"unified_id": "u", "sf_status": "Working - Contacted"})
    accepted, ledger3 = _staged(definition, working, sc, stages, now=later)
    assert ledger3.select("to_stage", "rule").row(0) == ("SAL", "sales_reentry")
    assert accepted.select("sla_clock", "sla_status").row(0) == ("sal_to_sql", "on_track")


def test_a_sal_breach_is_not_undone_by_the_same_working_status(
    definition: LeadDefinition,
) -> None:
    working = unified({"unified_id": "u", "sf_status": "Working - Contacted"})
    late = NOW - timedelta(hours=definition.sla.sal_to_sql_hours + 1)
    stages, ledger = _staged(definition, working, scores(), previous(("u", "SAL"), entered=late))
    assert ledger.select("from_stage", "to_stage", "reason").row(0) == (
        "SAL",
        "Recycled",
        "sla_breach",
    )
    # The status that was already there when the clock ran out is not new evidence...
    again, ledger2 = _staged(definition, working, scores(), stages, now=NOW + timedelta(hours=1))
    assert ledger2.is_empty() and again["stage"][0] == "Recycled"
    # ...qualifying the lead is.
    qualified = unified({"unified_id": "u", "sf_status": "Qualified"})
    _, ledger3 = _staged(definition, qualified, scores(), stages, now=NOW + timedelta(hours=1))
    assert ledger3.select("to_stage", "rule").row(0) == ("SQL", "sales_reentry")


def test_a_forward_move_stops_the_clock_even_when_late(definition: LeadDefinition) -> None:
    working = unified({"unified_id": "u", "sf_status": "Working - Contacted"})
    late = NOW - timedelta(hours=definition.sla.mql_to_sal_hours + 5)
    stages, ledger = _staged(definition, working, scores(), previous(("u", "MQL"), entered=late))
    assert ledger.select("to_stage", "rule").row(0) == ("SAL", "sales_accepted")
    assert stages["sla_due_at"][0] == NOW + timedelta(hours=definition.sla.sal_to_sql_hours)


def test_sla_hours_follow_the_lead_s_region(definition: LeadDefinition) -> None:
    jp, us, other = (definition.for_region(c).sla.mql_to_sal_hours for c in ("jp", "us", None))
    assert (jp, us, other) == (72, 24, 48)
    leads = unified({"unified_id": "jp"}, {"unified_id": "us"}, {"unified_id": "de"}).with_columns(
        pl.Series("country", ["JP", "US", "DE"])
    )
    sc = scores(*({"unified_id": u, "fit_score": 30, "score": 85} for u in ("jp", "us", "de")))
    # 30 hours in MQL: over the US clock only
    entered = NOW - timedelta(hours=30)
    stages, ledger = _staged(
        definition,
        leads,
        sc,
        previous(("jp", "MQL"), ("us", "MQL"), ("de", "MQL"), entered=entered),
    )
    got = dict(zip(stages["unified_id"], stages["sla_status"], strict=True))
    assert got == {"jp": "on_track", "us": "breached", "de": "on_track"}
    assert ledger["unified_id"].to_list() == ["us"]
    due = dict(zip(stages["unified_id"], stages["sla_due_at"], strict=True))
    assert due["jp"] - entered == timedelta(hours=72)


def test_alert_only_flags_the_breach(definition: LeadDefinition) -> None:
    alert = definition.model_copy(
        update={"sla": definition.sla.model_copy(update={"breach_action": "alert"})}
    )
    leads = unified({"unified_id": "u"})
    sc = scores({"unified_id": "u", "fit_score": 30, "score": 85})
    late = NOW - timedelta(hours=definition.sla.mql_to_sal_hours + 1)
    stages, ledger = _staged(alert, leads, sc, previous(("u", "MQL"), entered=late))
    assert ledger.is_empty()
    assert stages.select("stage", "sla_status").row(0) == ("MQL", "breached")


def test_a_hand_raise_makes_an_mql_at_once_and_trade_show_scans_do_not(
    definition: LeadDefinition,
) -> None:
    # [S002]: an inquiry crosses the bar in one hit; a stack of booth scans never does.
    from tests.funnel.conftest import activities_at, scoring_leads

    people = scoring_leads(
        {"unified_id": "asked"}, {"unified_id": "scanned"}, {"unified_id": "quoted"}
    )
    acts = activities_at(
        NOW,
        ("asked", "contact_request", 1),
        *(("scanned", "trade_show_scan", d) for d in range(6)),
        ("quoted", "quote_request", 0),
    )
    sc = score(people, acts, definition, now=NOW)
    points = dict(zip(sc["unified_id"], sc["score"], strict=True))
    assert points["scanned"] <= 6  # per-type cap: six scans are worth at most one download
    assert points["quoted"] >= definition.scoring.thresholds.mql_score_min
    stages, ledger = assign_stages(
        unified(*({"unified_id": u} for u in ("asked", "scanned", "quoted"))),
        sc,
        None,
        definition,
        now=NOW,
    )
    got = dict(zip(stages["unified_id"], stages["stage"], strict=True))
    assert got == {"asked": "MQL", "scanned": "Lead", "quoted": "MQL"}
    rules = dict(zip(ledger["unified_id"], ledger["rule"], strict=True))
    assert rules["asked"] == "hand_raise"


# ------------------------------------------------------------------------------------------------
# Sales evidence: BANT(C) checkboxes and owner acceptance (Salesforce lead queues)
# ------------------------------------------------------------------------------------------------
USER = "0058d000000GMZEAA4"  # a Salesforce user (005...)
QUEUE = "00G8d000000GMZHEA4"  # a lead queue (00G...)
_SALES = (
    _UNIFIED
    | {"owner_id": pl.String, "owner_source": pl.String}
    | {c: pl.Boolean for c in BANT_COLUMNS}
)


def sales(*rows: dict[str, Any]) -> pl.DataFrame:
    """Unified rows with an owner (a Lead's, unless owner_source says otherwise) and BANT(C)
    flags; `bant` lists the confirmed criteria."""
    out = []
    for row in rows:
        row = dict(row)
        ticked = set(row.pop("bant", ()))
        base = {k: None for k in _SALES} | {
            "email_domain": "example.com",
            "owner_source": "salesforce:Lead" if row.get("owner_id") else None,
        }
        out.append(base | {f"bant_{c}": True for c in ticked} | row)
    return pl.DataFrame(out, schema=_SALES)


def _rules(ledger: pl.DataFrame) -> dict[str, tuple[str, str]]:
    return {r["unified_id"]: (r["rule"], r["reason"]) for r in ledger.iter_rows(named=True)}


def test_bant_need_and_timeline_pass_even_with_budget_and_authority_unknown(
    definition: LeadDefinition,
) -> None:
    leads = sales(
        {"unified_id": "nt", "bant": ["need", "timeline"]},
        {
            "unified_id": "working_nt",
            "sf_status": "Working - Contacted",
            "bant": ["timeline", "need"],
        },
        {"unified_id": "all", "bant": ["budget", "authority", "need", "timeline", "competitor"]},
    )
    got, _, ledger = run(definition, leads, scores(), previous(("working_nt", "SAL")))
    assert got == {"nt": "SQL", "working_nt": "SQL", "all": "SQL"}
    rules = _rules(ledger)
    assert rules["nt"] == ("bant_qualified", "BANT(C) confirmed: Need, Timeline")
    assert rules["working_nt"] == ("bant_qualified", "BANT(C) confirmed: Need, Timeline")
    assert rules["all"][1] == "BANT(C) confirmed: Budget, Authority, Need, Timeline, Competitor"
    assert ledger.filter(pl.col("unified_id") == "working_nt")["from_stage"].to_list() == ["SAL"]


def test_bant_fails_without_a_required_criterion(definition: LeadDefinition) -> None:
    leads = sales(
        {"unified_id": "bAn", "bant": ["budget", "authority", "need"]},  # no Timeline
        {"unified_id": "t", "sf_status": "Working - Contacted", "bant": ["timeline"]},
        {"unified_id": "none", "sf_status": "Working - Contacted"},
    )
    got, _, ledger = run(definition, leads, scores())
    assert got == {"bAn": "Lead", "t": "SAL", "none": "SAL"}
    assert "bant_qualified" not in set(ledger["rule"])


def test_bant_rule_counts_confirmed_criteria(definition: LeadDefinition) -> None:
    # Any three of the five, none required by name.
    three = definition.model_copy(
        update={"sales_qualification": SalesQualification(bant=BantRule(min_confirmed=3))}
    )
    leads = sales(
        {"unified_id": "ban", "bant": ["budget", "authority", "need"]},
        {"unified_id": "nt", "bant": ["need", "timeline"]},
    )
    got, _, _ = run(three, leads, scores())
    assert got == {"ban": "SQL", "nt": "Lead"}
    # No rule: the checkboxes say nothing.
    off = definition.model_copy(update={"sales_qualification": SalesQualification()})
    got, _, _ = run(off, leads, scores())
    assert got == {"ban": "Lead", "nt": "Lead"}


def test_bant_is_sales_evidence_for_reentry_but_not_against_a_hand_back(
    definition: LeadDefinition,
) -> None:
    leads = sales(
        # Sales put a qualified lead back to nurturing: the ticked boxes do not keep it at SQL.
        {"unified_id": "handed_back", "sf_status": "Nurturing", "bant": ["need", "timeline"]},
        # A SAL recycled for an SLA breach comes back once sales qualifies it by BANT(C).
        {
            "unified_id": "breached",
            "sf_status": "Working - Contacted",
            "bant": ["need", "timeline"],
        },
    )
    prev = pl.DataFrame(
        [
            {"unified_id": "handed_back", "stage": "SQL", "stage_entered_at": EARLIER},
            {
                "unified_id": "breached",
                "stage": "Recycled",
                "stage_entered_at": EARLIER,
                "entered_from": "SAL",
                "entered_reason": "sla_breach",
            },
        ],
        schema=STAGES_SCHEMA,
    )
    got, _, ledger = run(definition, leads, scores(), prev)
    assert got == {"handed_back": "Recycled", "breached": "SQL"}
    rules = _rules(ledger)
    assert rules["handed_back"] == ("recycle", "not_now")
    assert rules["breached"] == ("sales_reentry", "BANT(C) confirmed: Need, Timeline")
    assert illegal_transitions(ledger, definition).is_empty()


def test_an_mql_taken_from_the_queue_is_accepted(definition: LeadDefinition) -> None:
    assert definition.sales_acceptance.queue_routing
    leads = sales(
        {"unified_id": "taken", "owner_id": USER, "sf_status": "Open - Not Contacted"},
        {"unified_id": "queued", "owner_id": QUEUE, "sf_status": "Open - Not Contacted"},
        {"unified_id": "raised", "owner_id": USER},
        {"unified_id": "not_mql", "owner_id": USER},
        {"unified_id": "hubspot_owner", "owner_id": "70001", "owner_source": "hubspot:contacts"},
        # Salesforce never lets a queue own a Contact: its owner is no acceptance.
        {"unified_id": "contact", "owner_id": USER, "owner_source": "salesforce:Contact"},
    )
    sc = scores(
        {"unified_id": "taken", "fit_score": 30, "score": 85},
        {"unified_id": "queued", "fit_score": 30, "score": 85},
        {"unified_id": "raised", "hand_raise": True, "last_hand_raise_at": RECENT},
        {"unified_id": "not_mql", "fit_score": 30, "score": 40},
        {"unified_id": "hubspot_owner", "fit_score": 30, "score": 85},
        {"unified_id": "contact", "fit_score": 30, "score": 85},
    )
    got, _, ledger = run(definition, leads, sc)
    assert got == {
        "taken": "SAL",
        "queued": "MQL",
        "raised": "SAL",
        "not_mql": "MAL",
        "hubspot_owner": "MQL",
        "contact": "MQL",
    }
    rules = _rules(ledger)
    assert rules["taken"] == ("owner_accepted", f"Salesforce owner {USER} accepted the lead")
    assert rules["raised"][0] == "owner_accepted"
    assert rules["queued"][0] == "score_threshold"


def test_an_accepted_lead_stays_accepted_until_it_goes_back_to_a_queue(
    definition: LeadDefinition,
) -> None:
    # Accepted earlier; the score has decayed since. Owning it is still the acceptance.
    sc = scores({"unified_id": "u", "fit_score": 30, "score": 20})
    kept = sales({"unified_id": "u", "owner_id": USER, "sf_status": "Open - Not Contacted"})
    got, _, ledger = run(definition, kept, sc, previous(("u", "SAL"), entered=RECENT))
    assert got == {"u": "SAL"} and ledger.is_empty()
    # An MQL whose score decayed while it waited is accepted all the same when a rep takes it.
    got, _, ledger = run(definition, kept, sc, previous(("u", "MQL"), entered=RECENT))
    assert got == {"u": "SAL"} and _rules(ledger)["u"][0] == "owner_accepted"
    # The rep puts it back in the queue: handed back like a status back to open.
    back = sales({"unified_id": "u", "owner_id": QUEUE, "sf_status": "Open - Not Contacted"})
    got, _, ledger = run(definition, back, sc, previous(("u", "SAL"), entered=RECENT))
    assert got == {"u": "Recycled"} and _rules(ledger)["u"] == ("recycle", "no_response")


def test_an_mql_breached_in_the_queue_is_lifted_when_a_rep_takes_it(
    definition: LeadDefinition,
) -> None:
    sc = scores({"unified_id": "u", "fit_score": 30, "score": 85})
    late = NOW - timedelta(hours=definition.sla.mql_to_sal_hours + 1)
    queued = sales({"unified_id": "u", "owner_id": QUEUE, "sf_status": "Open - Not Contacted"})
    stages, ledger = _staged(definition, queued, sc, previous(("u", "MQL"), entered=late))
    assert ledger.select("to_stage", "reason").row(0) == ("Recycled", "sla_breach")
    taken = sales({"unified_id": "u", "owner_id": USER, "sf_status": "Open - Not Contacted"})
    again, ledger2 = _staged(definition, taken, sc, stages, now=NOW + timedelta(hours=1))
    assert ledger2.select("from_stage", "to_stage", "rule").row(0) == (
        "Recycled",
        "SAL",
        "sales_reentry",
    )
    assert again["sla_clock"][0] == "sal_to_sql"
    # A lead sales handed back to nurturing is not "accepted" by the owner it still has.
    nurturing = sales({"unified_id": "u", "owner_id": USER, "sf_status": "Nurturing"})
    got, _, ledger3 = run(definition, nurturing, sc, previous(("u", "SAL"), entered=RECENT))
    assert got == {"u": "Recycled"} and _rules(ledger3)["u"] == ("recycle", "not_now")


def test_queue_routing_off_ignores_owners(definition: LeadDefinition) -> None:
    off = definition.model_copy(update={"sales_acceptance": SalesAcceptance(queue_routing=False)})
    leads = sales({"unified_id": "taken", "owner_id": USER}, {"unified_id": "q", "owner_id": QUEUE})
    sc = scores(
        {"unified_id": "taken", "fit_score": 30, "score": 85},
        {"unified_id": "q", "fit_score": 30, "score": 85},
    )
    got, _, ledger = run(off, leads, sc)
    assert got == {"taken": "MQL", "q": "MQL"}
    assert set(ledger["rule"]) == {"score_threshold"}


def test_an_sgl_with_bant_confirmed_keeps_its_origin(definition: LeadDefinition) -> None:
    leads = sales(
        {"unified_id": "u", "lead_source": "Partner Referral", "bant": ["need", "timeline"]}
    )
    got, _, ledger = run(definition, leads, scores())
    assert got == {"u": "SQL"} and _rules(ledger)["u"][0] == "sgl"
