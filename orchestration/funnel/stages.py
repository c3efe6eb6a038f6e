"""Lifecycle stages: one stage per unified lead, and an append-only ledger of every change.

Each run computes a *target* stage from the rules, strongest evidence first:

    Customer     a won opportunity
    Opportunity  an open opportunity
    SQL          converted, a qualified Lead.Status, a sales-generated lead source (SGL), or
                 the BANT(C) checkboxes passing the rule in `sales_qualification.bant`
    SAL          a working Lead.Status (sales accepted it), or, with
                 `sales_acceptance.queue_routing`, MQL evidence (a hand-raise, the MQL score, or
                 a previous stage of MQL or above) and a Salesforce user as the surviving owner,
                 taken from a Lead (a salesperson took the lead from the queue; a lead still
                 owned by a queue is not accepted, and a Contact's owner says nothing: Salesforce
                 never lets a queue own a Contact, so its owner is not a decision)
    MQL          a hand-raise, or score >= mql_score_min
    MAL          fit >= mal_fit_min and not a competitor or student
    Lead         everyone else

and then decides the new stage against the previous one:

* forward moves (target above previous) are automatic;
* a target below the previous stage keeps the previous stage: the ledger never slips backwards
  silently, because a score that decays or a field that empties is not a decision;
* backward moves happen only along the definition's declared edges, each with a reason code:
  - disqualify (any → Disqualified): Lead.Status is a closed-not-converted status (unless an
    opportunity exists), or the lead is a competitor / student (unless sales evidence puts it at
    SAL or beyond);
  - recycle (MQL/SAL/SQL → Recycled), only when the rules no longer support the previous stage
    and Salesforce shows sales handed the lead back: Lead.Status is one of the definition's
    recycle statuses (reason from that map), or, for a lead sales had accepted (SAL/SQL), the
    status went back to an open status (reason no_response). An SGL or converted lead keeps SQL
    because its target is still SQL;
  - reopen (Recycled → MQL): a hand-raise made after the recycle, or new activity after the
    recycle with the score at or over the MQL threshold (a fresh "score crossing");
* sales evidence (target at or above `sales_reentry.min_stage`) lifts a Recycled or Disqualified
  lead back into the funnel at that stage (rule "sales_reentry") once no disqualify rule holds.

SLA clocks (`sla` in the definition, per region): a lead in MQL must reach SAL within
`mql_to_sal_hours` of entering MQL, and a lead in SAL must reach SQL within `sal_to_sql_hours`.
The clock starts when leadsync records the stage (a first run starts every clock at that run; the
CRMs keep no reliable history of when a status changed). Past the deadline the lead is flagged
`breached`; with `breach_action: recycle` it also moves along the recycle edge with reason
`sla_breach`. Such a lead re-enters on sales evidence only above the stage it breached in (a lead
that sat in SAL too long is not lifted back to SAL by the same unchanged "Working" status).

The BANT(C) and ownership rules are sales evidence like a status, so they lift a Recycled or
Disqualified lead back in (sales_reentry) and keep a lead from being recycled while they hold. Both
stand down while Lead.Status is one of the recycle statuses: sales handing a lead back does not
untick its checkboxes or change its owner, and the hand-back is the later decision. A lead whose
owner goes back to a queue (or whose boxes are unticked) after sales had accepted it falls back to
its marketing evidence and is recycled like one whose status went back to open (no_response).

Only changes produce ledger rows; a first-seen lead gets one row from null.

The thresholds and the competitor / student rules are those of the lead's region (its `country`,
see `scoring.split_by_region`); stages, edges and sales statuses are global and the same for all.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from orchestration.funnel.definition import (
    ALL_STAGES,
    OFF_FUNNEL_STAGES,
    STAGE_ORDER,
    LeadDefinition,
)
from orchestration.funnel.model import BANT_COLUMNS, BANT_CRITERIA, UTC_TS
from orchestration.funnel.scoring import (
    as_utc,
    competitor_expr,
    ensure_columns,
    split_by_region,
    student_expr,
)

__all__ = [
    "ALL_STAGES",
    "LEDGER_SCHEMA",
    "OFF_FUNNEL_STAGES",
    "STAGES_SCHEMA",
    "STAGE_ORDER",
    "assign_stages",
    "illegal_transitions",
    "is_legal_transition",
    "legal_transitions",
]

STAGES_SCHEMA: dict[str, pl.DataType] = {
    "unified_id": pl.String(),
    "stage": pl.String(),
    "stage_entered_at": UTC_TS,
    # Where the lead came from into this stage and why (the last ledger row's from and reason).
    "entered_from": pl.String(),
    "entered_reason": pl.String(),
    # The SLA clock running in this stage (mql_to_sal, sal_to_sql or null), its deadline, and
    # on_track / breached / none. A lead recycled for a breach stays "breached" until it moves.
    "sla_clock": pl.String(),
    "sla_due_at": UTC_TS,
    "sla_status": pl.String(),
}

LEDGER_SCHEMA: dict[str, pl.DataType] = {
    "unified_id": pl.String(),
    "from_stage": pl.String(),
    "to_stage": pl.String(),
    "rule": pl.String(),
    "reason": pl.String(),
    "definition_version": pl.String(),
    "at": UTC_TS,
}

_LEAD_INPUT: dict[str, pl.DataType] = {
    "unified_id": pl.String(),
    "sf_status": pl.String(),
    "sf_is_converted": pl.Boolean(),
    "lead_source": pl.String(),
    "has_open_opportunity": pl.Boolean(),
    "has_won_opportunity": pl.Boolean(),
    "email_domain": pl.String(),
    "title": pl.String(),
    "owner_id": pl.String(),
    "owner_source": pl.String(),
    **{c: pl.Boolean() for c in BANT_COLUMNS},
}

# The unified lead's columns staging reads: its inputs and `country`, which picks its region.
LEAD_COLUMNS: list[str] = [*_LEAD_INPUT, "country"]

SCORE_INPUT: dict[str, pl.DataType] = {
    "unified_id": pl.String(),
    "fit_score": pl.Int64(),
    "score": pl.Int64(),
    "hand_raise": pl.Boolean(),
    "last_activity_at": UTC_TS,
    "last_hand_raise_at": UTC_TS,
}

_RANK = {stage: i for i, stage in enumerate(STAGE_ORDER)}


def _rank(expr: pl.Expr) -> pl.Expr:
    # Off-funnel and unknown stages have no rank (null).
    return expr.replace_strict(_RANK, default=None, return_dtype=pl.Int64)


def _lower(values: list[str] | dict[str, str]) -> list[str]:
    return [v.strip().lower() for v in values]


def _choose(branches: list[tuple[pl.Expr, pl.Expr, pl.Expr, pl.Expr]]) -> list[pl.Expr]:
    """Three parallel when-chains (stage, rule, reason) over the same ordered conditions."""
    out: list[pl.Expr] = []
    for i, name in ((1, "new_stage"), (2, "rule"), (3, "reason")):
        chain: pl.Expr = pl.lit(None, dtype=pl.String)
        for branch in reversed(branches):
            chain = pl.when(branch[0]).then(branch[i]).otherwise(chain)
        out.append(chain.alias(name))
    return out


def assign_stages(
    unified: pl.DataFrame,
    scores: pl.DataFrame,
    previous: pl.DataFrame | None,
    definition: LeadDefinition,
    *,
    now: datetime,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Current stage of every lead in `unified`, and the ledger rows this run adds.

    Returns (stages: STAGES_SCHEMA, ledger: LEDGER_SCHEMA). `previous` holds the stages before this
    run (unified_id, stage, stage_entered_at) or None on the first run.
    """
    now = as_utc(now)
    if previous is None:
        previous = pl.DataFrame(schema=STAGES_SCHEMA)
    leads = unified.unique("unified_id", keep="first", maintain_order=True)
    parts = split_by_region(leads, definition)
    if len(parts) == 1:
        return _assign(parts[0][1], scores, previous, parts[0][0], now)
    results = [_assign(part, scores, previous, rules, now) for rules, part in parts]
    order = leads.select("unified_id").with_row_index("__order")

    def in_order(frames: list[pl.DataFrame]) -> pl.DataFrame:
        return pl.concat(frames).join(order, on="unified_id").sort("__order").drop("__order")

    return in_order([r[0] for r in results]), in_order([r[1] for r in results])


def _assign(
    unified: pl.DataFrame,
    scores: pl.DataFrame,
    previous: pl.DataFrame,
    definition: LeadDefinition,
    now: datetime,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`assign_stages` for leads that all follow one (possibly regional) definition."""
    ss = definition.sales_status
    thresholds = definition.scoring.thresholds

    frame = (
        ensure_columns(unified, _LEAD_INPUT)
        .unique("unified_id", keep="first", maintain_order=True)
        .with_columns(
            competitor_expr(definition).alias("is_competitor"),
            student_expr(definition).alias("is_student"),
            pl.col("sf_status").str.strip_chars().str.to_lowercase().alias("status"),
            pl.col("lead_source").str.strip_chars().str.to_lowercase().alias("source"),
        )
        .select(
            "unified_id",
            "status",
            "source",
            pl.col("sf_status"),
            pl.col("lead_source"),
            pl.col("sf_is_converted").fill_null(False),
            pl.col("has_open_opportunity").fill_null(False),
            pl.col("has_won_opportunity").fill_null(False),
            "is_competitor",
            "is_student",
            pl.col("owner_id").str.strip_chars(),
            "owner_source",
            *(pl.col(c).fill_null(False) for c in BANT_COLUMNS),
        )
        .join(
            ensure_columns(scores, SCORE_INPUT).select(list(SCORE_INPUT)),
            on="unified_id",
            how="left",
        )
        .join(
            ensure_columns(previous, STAGES_SCHEMA).select(
                "unified_id",
                pl.col("stage").alias("prev_stage"),
                pl.col("stage_entered_at").cast(UTC_TS).alias("prev_entered_at"),
                pl.col("entered_from").alias("prev_from"),
                pl.col("entered_reason").alias("prev_reason"),
            ),
            on="unified_id",
            how="left",
        )
        .with_columns(
            pl.col("fit_score").fill_null(0),
            pl.col("score").fill_null(0),
            pl.col("hand_raise").fill_null(False),
        )
    )

    # 1. The forward target, strongest evidence first, with the rule that produced it.
    status, source = pl.col("status"), pl.col("source")
    excluded = pl.col("is_competitor") | pl.col("is_student")
    # Sales handed the lead back: its checkboxes and owner no longer say "qualify / work it now".
    handed_back = status.is_in(_lower(ss.recycle)).fill_null(False)
    bant_passes, bant_reason = _bant(definition)
    accepted, accepted_reason = _owner_accepted(definition)
    forward: list[tuple[pl.Expr, pl.Expr, pl.Expr, pl.Expr]] = [
        (
            pl.col("has_won_opportunity"),
            pl.lit("Customer"),
            pl.lit("won_opportunity"),
            pl.lit("won opportunity"),
        ),
        (
            pl.col("has_open_opportunity"),
            pl.lit("Opportunity"),
            pl.lit("open_opportunity"),
            pl.lit("open opportunity"),
        ),
        (
            pl.col("sf_is_converted"),
            pl.lit("SQL"),
            pl.lit("converted"),
            pl.lit("Salesforce lead converted"),
        ),
        (
            status.is_in(_lower(ss.sql)).fill_null(False),
            pl.lit("SQL"),
            pl.lit("sales_qualified"),
            pl.format("Lead.Status={}", pl.col("sf_status")),
        ),
        (
            source.is_in(_lower(ss.sgl_lead_sources)).fill_null(False),
            pl.lit("SQL"),
            pl.lit("sgl"),
            pl.format("sales-generated: lead_source={}", pl.col("lead_source")),
        ),
        # After sgl, so a sales-generated lead keeps its origin in the ledger (the funnel report
        # tells SGLs from marketing leads by the rule that brought them in).
        (bant_passes & ~handed_back, pl.lit("SQL"), pl.lit("bant_qualified"), bant_reason),
        (
            status.is_in(_lower(ss.sal)).fill_null(False),
            pl.lit("SAL"),
            pl.lit("sales_accepted"),
            pl.format("Lead.Status={}", pl.col("sf_status")),
        ),
        (accepted & ~handed_back, pl.lit("SAL"), pl.lit("owner_accepted"), accepted_reason),
        (
            pl.col("hand_raise"),
            pl.lit("MQL"),
            pl.lit("hand_raise"),
            pl.lit("hand-raise (contact, demo or quote request)"),
        ),
        (
            pl.col("score") >= thresholds.mql_score_min,
            pl.lit("MQL"),
            pl.lit("score_threshold"),
            pl.format("score {} >= {}", pl.col("score"), pl.lit(thresholds.mql_score_min)),
        ),
        (
            (pl.col("fit_score") >= thresholds.mal_fit_min) & ~excluded,
            pl.lit("MAL"),
            pl.lit("fit_threshold"),
            pl.format("fit {} >= {}", pl.col("fit_score"), pl.lit(thresholds.mal_fit_min)),
        ),
        (pl.lit(True), pl.lit("Lead"), pl.lit("new_lead"), pl.lit("first seen")),
    ]
    target, target_rule, target_reason = _choose(forward)
    frame = frame.with_columns(
        target.alias("target"),
        target_rule.alias("target_rule"),
        target_reason.alias("target_reason"),
    ).with_columns(
        _rank(pl.col("target")).alias("target_rank"),
        _rank(pl.col("prev_stage")).alias("prev_rank"),
    )

    # 2. Backward-edge conditions.
    target_rank, prev_rank, prev = pl.col("target_rank"), pl.col("prev_rank"), pl.col("prev_stage")
    dq_status = {k.strip().lower(): v for k, v in ss.disqualified.items()}
    recycle_status = {k.strip().lower(): v for k, v in ss.recycle.items()}
    mql, sal, opp = _RANK["MQL"], _RANK["SAL"], _RANK["Opportunity"]
    dq_reason = (
        pl.when(status.is_in(list(dq_status)).fill_null(False) & (target_rank < opp))
        .then(status.replace_strict(dq_status, default=None, return_dtype=pl.String))
        .when(pl.col("is_competitor") & (target_rank <= mql))
        .then(pl.lit("competitor"))
        .when(pl.col("is_student") & (target_rank <= mql))
        .then(pl.lit("student"))
    )
    recycle_edge = definition.backward_edges.recycle
    recycle_reason = pl.when(
        prev.is_in(recycle_edge.from_stages).fill_null(False) & (target_rank < prev_rank)
    ).then(
        pl.when(status.is_in(list(recycle_status)).fill_null(False))
        .then(status.replace_strict(recycle_status, default=None, return_dtype=pl.String))
        .when((prev_rank >= sal) & status.is_in(_lower(ss.open)).fill_null(False))
        .then(pl.lit("no_response"))
    )
    entered = pl.col("prev_entered_at")
    reopen_reason = (
        pl.when(pl.col("hand_raise") & (pl.col("last_hand_raise_at") > entered).fill_null(False))
        .then(pl.lit("hand_raise"))
        .when(
            (pl.col("score") >= thresholds.mql_score_min)
            & (pl.col("last_activity_at") > entered).fill_null(False)
        )
        .then(pl.lit("score_crossing"))
    )
    reentry = definition.sales_reentry
    sla = definition.sla
    deadline = (
        pl.when(prev == "MQL")
        .then(entered + pl.duration(hours=sla.mql_to_sal_hours))
        .when(prev == "SAL")
        .then(entered + pl.duration(hours=sla.sal_to_sql_hours))
    )
    # A lead recycled for an SLA breach needs sales evidence above the stage it sat in too long.
    breached_in = pl.when(pl.col("prev_reason") == "sla_breach").then(_rank(pl.col("prev_from")))
    frame = frame.with_columns(
        dq_reason.alias("dq_reason"),
        recycle_reason.alias("recycle_reason"),
        reopen_reason.alias("reopen_reason"),
        ((target_rank >= _RANK[reentry.min_stage]) & (target_rank > breached_in).fill_null(True))
        .fill_null(False)
        .alias("sales_evidence"),
        (
            (pl.lit(sla.breach_action == "recycle"))
            & (pl.lit(now, dtype=UTC_TS) > deadline).fill_null(False)
        ).alias("sla_recycle"),
    )

    # 3. Decide against the previous stage.
    dq = pl.col("dq_reason").is_not_null()
    first_seen = prev.is_null() | ~prev.is_in(list(ALL_STAGES))
    in_funnel = prev.is_in(list(STAGE_ORDER))
    can_reenter = prev.is_in(reentry.from_stages) & pl.col("sales_evidence")
    keep = (prev, pl.lit(None, dtype=pl.String), pl.lit(None, dtype=pl.String))
    to_target = (pl.col("target"), pl.col("target_rule"), pl.col("target_reason"))
    disqualify = (pl.lit("Disqualified"), pl.lit("disqualify"), pl.col("dq_reason"))
    decisions: list[tuple[pl.Expr, pl.Expr, pl.Expr, pl.Expr]] = [
        (first_seen & dq, *disqualify),
        (first_seen, *to_target),
        # A disqualified lead that is still disqualified stays put (no new row).
        ((prev == "Disqualified") & dq, *keep),
        (dq, *disqualify),
        (in_funnel & (target_rank > prev_rank), *to_target),
        (
            in_funnel & pl.col("recycle_reason").is_not_null(),
            pl.lit("Recycled"),
            pl.lit("recycle"),
            pl.col("recycle_reason"),
        ),
        (
            in_funnel & pl.col("sla_recycle"),
            pl.lit("Recycled"),
            pl.lit("recycle"),
            pl.lit("sla_breach"),
        ),
        (can_reenter, pl.col("target"), pl.lit("sales_reentry"), pl.col("target_reason")),
        (
            (prev == "Recycled") & pl.col("reopen_reason").is_not_null(),
            pl.lit("MQL"),
            pl.lit("reopen"),
            pl.col("reopen_reason"),
        ),
        (pl.lit(True), *keep),
    ]
    frame = frame.with_columns(_choose(decisions)).with_columns(
        pl.col("new_stage").ne_missing(prev).alias("changed")
    )

    changed = pl.col("changed")
    stages = frame.select(
        "unified_id",
        pl.col("new_stage").alias("stage"),
        pl.when(changed)
        .then(pl.lit(now, dtype=UTC_TS))
        .otherwise(pl.col("prev_entered_at"))
        .alias("stage_entered_at"),
        pl.when(changed).then(prev).otherwise(pl.col("prev_from")).alias("entered_from"),
        pl.when(changed)
        .then(pl.col("reason"))
        .otherwise(pl.col("prev_reason"))
        .alias("entered_reason"),
    ).with_columns(sla_columns(definition, now))
    ledger = frame.filter(pl.col("changed")).select(
        "unified_id",
        prev.alias("from_stage"),
        pl.col("new_stage").alias("to_stage"),
        "rule",
        "reason",
        pl.lit(definition.version, dtype=pl.String).alias("definition_version"),
        pl.lit(now, dtype=UTC_TS).alias("at"),
    )
    return (
        stages.select([pl.col(c).cast(t) for c, t in STAGES_SCHEMA.items()]),
        ledger.select([pl.col(c).cast(t) for c, t in LEDGER_SCHEMA.items()]),
    )


def _bant(definition: LeadDefinition) -> tuple[pl.Expr, pl.Expr]:
    """(passes, reason) of `sales_qualification.bant` over the bant_* columns (nulls filled
    False): every required criterion confirmed and at least min_confirmed of the five."""
    rule = definition.sales_qualification.bant
    if rule is None:
        return pl.lit(False), pl.lit(None, dtype=pl.String)
    confirmed = {c: pl.col(f"bant_{c}") for c in BANT_CRITERIA}
    count = pl.sum_horizontal(*(e.cast(pl.Int64) for e in confirmed.values()))
    passes = count >= rule.min_confirmed
    for name in rule.required:
        passes = passes & confirmed[name]
    listed = pl.concat_str(
        [pl.when(e).then(pl.lit(c.capitalize())) for c, e in confirmed.items()],
        separator=", ",
        ignore_nulls=True,
    )
    return passes, pl.format("BANT(C) confirmed: {}", listed)


def _owner_accepted(definition: LeadDefinition) -> tuple[pl.Expr, pl.Expr]:
    """(accepted, reason) of `sales_acceptance`: with queue routing, a lead with MQL evidence (a
    hand-raise, the MQL score, or a previous stage of MQL or above, so an accepted lead stays
    accepted while its score decays) whose surviving owner is a Salesforce user and came from a
    Salesforce Lead (`owner_source`): queues route Leads only, and a Contact always has a user
    as its owner, so a Contact's owner would make every MQL contact "accepted" by default.

    The owner must look like a Salesforce id (15 or 18 characters) with the user prefix."""
    acceptance = definition.sales_acceptance
    if not acceptance.queue_routing:
        return pl.lit(False), pl.lit(None, dtype=pl.String)
    owner = pl.col("owner_id")
    is_user = (
        owner.str.starts_with(acceptance.user_id_prefix)
        & owner.str.len_chars().is_in([15, 18])
        & (pl.col("owner_source") == "salesforce:Lead")
    ).fill_null(False)
    was_mql = (_rank(pl.col("prev_stage")) >= _RANK["MQL"]).fill_null(False)
    evidence = (
        pl.col("hand_raise")
        | (pl.col("score") >= definition.scoring.thresholds.mql_score_min)
        | was_mql
    )
    return is_user & evidence, pl.format("Salesforce owner {} accepted the lead", owner)


def sla_columns(definition: LeadDefinition, now: datetime) -> list[pl.Expr]:
    """sla_clock, sla_due_at and sla_status of a stages frame (stage, stage_entered_at,
    entered_reason), by `definition`'s SLA hours (the lead's region's, when split by region)."""
    sla = definition.sla
    stage, entered = pl.col("stage"), pl.col("stage_entered_at").cast(UTC_TS)
    clock = (
        pl.when(stage == "MQL")
        .then(pl.lit("mql_to_sal"))
        .when(stage == "SAL")
        .then(pl.lit("sal_to_sql"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    due = (
        pl.when(stage == "MQL")
        .then(entered + pl.duration(hours=sla.mql_to_sal_hours))
        .when(stage == "SAL")
        .then(entered + pl.duration(hours=sla.sal_to_sql_hours))
    )
    status = (
        pl.when(due.is_not_null() & (pl.lit(now, dtype=UTC_TS) > due))
        .then(pl.lit("breached"))
        .when(due.is_not_null())
        .then(pl.lit("on_track"))
        .when((stage == "Recycled") & (pl.col("entered_reason") == "sla_breach"))
        .then(pl.lit("breached"))
        .otherwise(pl.lit("none"))
    )
    return [
        clock.alias("sla_clock"),
        due.cast(UTC_TS).alias("sla_due_at"),
        status.alias("sla_status"),
    ]


def is_legal_transition(from_stage: str | None, to_stage: str, definition: LeadDefinition) -> bool:
    """Whether the lifecycle allows from_stage → to_stage (None: a lead seen for the first time).

    Legal: a first sighting at any stage but Recycled; a forward move within STAGE_ORDER; a move
    along a declared backward edge; sales re-entry from Recycled/Disqualified to a stage at or
    above `sales_reentry.min_stage`. Staying put is not a transition.
    """
    if to_stage not in ALL_STAGES:
        return False
    if from_stage is None:
        return to_stage != "Recycled"
    if from_stage not in ALL_STAGES or from_stage == to_stage:
        return False
    if any(edge.allows(from_stage, to_stage) for edge in definition.backward_edges.all().values()):
        return True
    if from_stage in STAGE_ORDER and to_stage in STAGE_ORDER:
        return _RANK[to_stage] > _RANK[from_stage]
    reentry = definition.sales_reentry
    return (
        from_stage in reentry.from_stages
        and to_stage in STAGE_ORDER
        and _RANK[to_stage] >= _RANK[reentry.min_stage]
    )


def legal_transitions(definition: LeadDefinition) -> pl.DataFrame:
    """Every legal (from_stage, to_stage) pair; from_stage null is a first sighting."""
    pairs = [
        (f, t)
        for f in (None, *ALL_STAGES)
        for t in ALL_STAGES
        if is_legal_transition(f, t, definition)
    ]
    return pl.DataFrame(
        {"from_stage": [p[0] for p in pairs], "to_stage": [p[1] for p in pairs]},
        schema={"from_stage": pl.String(), "to_stage": pl.String()},
    )


def illegal_transitions(ledger: pl.DataFrame, definition: LeadDefinition) -> pl.DataFrame:
    """Ledger rows whose transition the definition does not allow (for an asset check)."""
    return ledger.join(
        legal_transitions(definition), on=["from_stage", "to_stage"], how="anti", nulls_equal=True
    )


def ledger_problems(ledger: pl.DataFrame, definition: LeadDefinition) -> pl.DataFrame:
    """Every ledger row that breaks the lifecycle, with `problem`:

    * "illegal_transition": a move the definition does not allow (a regression outside the
      declared backward edges, say SQL -> MQL);
    * "broken_chain": a row whose from_stage is not where the lead's previous row left it (a
      silent jump, or a lead "first seen" again after it had a stage).

    `ledger` rows are in the order they were appended (LEDGER_SCHEMA columns, plus an optional
    `id` that fixes that order).
    """
    order = "id" if "id" in ledger.columns else None
    rows = (
        ledger.with_row_index("_n")
        if order is None
        else ledger.with_columns(pl.col("id").alias("_n"))
    )
    illegal = illegal_transitions(rows, definition).with_columns(
        pl.lit("illegal_transition").alias("problem")
    )
    chained = rows.sort("_n").with_columns(
        pl.col("to_stage").shift(1).over("unified_id").alias("_previous")
    )
    broken = chained.filter(
        pl.col("_previous").is_not_null() & ~pl.col("from_stage").eq_missing(pl.col("_previous"))
    ).with_columns(pl.lit("broken_chain").alias("problem"))
    return (
        pl.concat([illegal, broken.drop("_previous")], how="diagonal_relaxed").sort("_n").drop("_n")
    )


def previous_with_history(previous: pl.DataFrame, ledger: pl.DataFrame) -> pl.DataFrame:
    """The stored stages plus, for unified ids the ledger knows but the stored stages do not
    (an id merged away and given back by an unmerge), where the ledger last left them: a
    returning lead continues its history instead of being "first seen" again."""
    known = previous.select("unified_id")
    last = (
        ledger.join(known, on="unified_id", how="anti")
        .sort("at")
        .group_by("unified_id", maintain_order=True)
        .last()
        .select(
            "unified_id",
            pl.col("to_stage").alias("stage"),
            pl.col("at").cast(UTC_TS).alias("stage_entered_at"),
            pl.col("from_stage").alias("entered_from"),
            pl.col("reason").alias("entered_reason"),
        )
    )
    return pl.concat(
        [ensure_columns(previous, STAGES_SCHEMA).select(list(STAGES_SCHEMA)), last],
        how="diagonal_relaxed",
    ).select(list(STAGES_SCHEMA))
