"""Next-content selection: which template each lead should receive next.

Per lead, vectorised over all leads at once:

1. Suppress: opted-out, do-not-contact, bounced and Disqualified leads get status "suppressed"
   and no template.
2. Locale: the lead's locale when any active template exists for that locale and the lead's stage,
   otherwise the definition's fallback locale (en). Content is never mixed: a Japanese lead that
   has had every Japanese MQL template is exhausted, not switched to English.
3. Candidates: leads joined to active templates on (content locale, stage) (the equi-join form of
   a cross join + filter), then filtered by score window, conditions (industries, countries,
   regions, title words) and wait-after triggers (the lead had the named activity at least that
   many days ago), and anti-joined with the send history so nothing is sent twice.
4. Pick: the lowest unsent sequence position first, then templates without one; within that the
   highest priority, ties by template id. The reason names the stage, position, priority, the
   conditions and the trigger that held.
5. Exhausted (no candidate left): with policy `evergreen`, an evergreen template (stage `any`,
   never-sent first, then least recently sent); with `pause`, none. Status "exhausted" either way.

Cooldown and the frequency cap do not remove content; they set `due_at`, the earliest time the
assignment may be sent: the later of now, the lead's last send + the template's cooldown, and the
moment the lead drops below `frequency_cap.max_sends` sends in `per_days`. The CRMs therefore
always show the real next content, and the sender waits for `due_at`.

The frequency cap is about the person's inbox, so it counts every email the person had from us,
not only nurture: a rep's one-to-one email logged in HubSpot or Salesforce (CAP_ACTIVITY_TYPES in
`activities`) counts as a send. A nurture send that a CRM also logged (same lead, same instant as
the history's `sent_at`) counts once. The cooldown stays per nurture send, as the definition says.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from orchestration.funnel.definition import LeadDefinition
from orchestration.funnel.model import UTC_TS
from orchestration.funnel.nurture.templates import GLOBAL_REGION, Template
from orchestration.funnel.scoring import as_utc, ensure_columns, normalise_industry

ASSIGNMENT_SCHEMA: dict[str, pl.DataType] = {
    "unified_id": pl.String(),
    "template_id": pl.String(),
    "template_version": pl.Int64(),
    "locale": pl.String(),
    "channel": pl.String(),
    "reason": pl.String(),
    "status": pl.String(),  # "assigned" | "exhausted" | "suppressed"
    "due_at": UTC_TS,
}

HISTORY_SCHEMA: dict[str, pl.DataType] = {
    "unified_id": pl.String(),
    "template_id": pl.String(),
    "sent_at": UTC_TS,
}

# Activities that are an email the person received from us outside nurture.
CAP_ACTIVITY_TYPES: tuple[str, ...] = ("sales_email",)

LEAD_INPUT_SCHEMA: dict[str, pl.DataType] = {
    "unified_id": pl.String(),
    "stage": pl.String(),
    "score": pl.Int64(),
    "locale": pl.String(),
    "industry": pl.String(),
    "country": pl.String(),
    "title": pl.String(),
    "opted_out": pl.Boolean(),
    "do_not_contact": pl.Boolean(),
    "bounced": pl.Boolean(),
}

_TEMPLATE_SCHEMA: dict[str, pl.DataType] = {
    "template_id": pl.String(),
    "template_version": pl.Int64(),
    "t_locale": pl.String(),
    "t_stage": pl.String(),
    "channel": pl.String(),
    "priority": pl.Int64(),
    "sequence": pl.Int64(),
    "score_min": pl.Int64(),
    "score_max": pl.Int64(),
    "industries": pl.List(pl.String()),
    "countries": pl.List(pl.String()),
    "regions": pl.List(pl.String()),
    "titles": pl.List(pl.String()),
    "wait_activity": pl.String(),
    "wait_days": pl.Int64(),
    "cooldown_days": pl.Int64(),
    "evergreen": pl.Boolean(),
}


def templates_frame(templates: list[Template], definition: LeadDefinition) -> pl.DataFrame:
    """Active templates as a frame, one row per (template, stage)."""
    rows = []
    for t in templates:
        if not t.active:
            continue
        cond = t.conditions
        industries = cond.industries if cond and cond.industries is not None else None
        countries = cond.countries if cond and cond.countries is not None else None
        regions = cond.regions if cond and cond.regions is not None else None
        titles = cond.titles if cond and cond.titles is not None else None
        for stage in t.stages:
            rows.append(
                {
                    "template_id": t.id,
                    "template_version": t.version,
                    "t_locale": t.locale.lower(),
                    "t_stage": stage,
                    "channel": t.channel,
                    "priority": t.priority,
                    "sequence": t.sequence,
                    "score_min": t.score_min,
                    "score_max": t.score_max,
                    "industries": industries,
                    "countries": [c.upper() for c in countries] if countries is not None else None,
                    "regions": regions,
                    "titles": [w.casefold() for w in titles] if titles is not None else None,
                    "wait_activity": t.wait_after.activity if t.wait_after else None,
                    "wait_days": t.wait_after.days if t.wait_after else None,
                    "cooldown_days": (
                        t.cooldown_days
                        if t.cooldown_days is not None
                        else definition.nurture.default_cooldown_days
                    ),
                    "evergreen": t.is_evergreen,
                }
            )
    frame = pl.DataFrame(rows, schema=_TEMPLATE_SCHEMA)
    # Fold industry names the way scoring does, so "Computer Software" matches COMPUTER_SOFTWARE.
    return frame.with_columns(
        pl.col("industries").list.eval(normalise_industry(pl.element())).alias("industries")
    )


def _eligible(frame: pl.DataFrame, first_activity: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """Candidate (lead, template) rows whose score window, conditions and trigger hold.

    `first_activity`: unified_id, activity_type, first_at (each lead's earliest activity per type).
    """
    score = pl.col("score")
    # Title words: a lead matches when its title contains any of the template's words.
    frame = frame.with_row_index("_row")
    title_hits = (
        frame.filter(pl.col("titles").is_not_null())
        .select("_row", "title_key", pl.col("titles").alias("word"))
        .explode("word")
        .filter(pl.col("title_key").str.contains(pl.col("word"), literal=True).fill_null(False))
        .select("_row")
        .unique()
        .with_columns(pl.lit(True).alias("title_hit"))
    )
    frame = (
        frame.join(title_hits, on="_row", how="left")
        .join(
            first_activity,
            left_on=["unified_id", "wait_activity"],
            right_on=["unified_id", "activity_type"],
            how="left",
        )
        .drop("_row")
    )
    return frame.filter(
        (pl.col("score_min").is_null() | (score >= pl.col("score_min")))
        & (pl.col("score_max").is_null() | (score <= pl.col("score_max")))
        & (
            pl.col("industries").is_null()
            | pl.col("industries").list.contains(pl.col("industry_key")).fill_null(False)
        )
        & (
            pl.col("countries").is_null()
            | pl.col("countries").list.contains(pl.col("country_key")).fill_null(False)
        )
        & (
            pl.col("regions").is_null()
            | pl.col("regions").list.contains(pl.col("region_key")).fill_null(False)
        )
        & (pl.col("titles").is_null() | pl.col("title_hit").fill_null(False))
        & (
            pl.col("wait_activity").is_null()
            | (pl.col("first_at") + pl.duration(days=pl.col("wait_days")) <= pl.lit(now)).fill_null(
                False
            )
        )
    ).drop("title_hit", "first_at")


def _conditions_reason() -> pl.Expr:
    """ "; matched industries, region, title" naming the conditions a template set (they held)."""
    named = [
        pl.when(pl.col(c).is_not_null()).then(pl.lit(label))
        for c, label in (
            ("industries", "industry"),
            ("countries", "country"),
            ("regions", "region"),
            ("titles", "title"),
        )
    ]
    listed = pl.concat_str(named, separator=", ", ignore_nulls=True)
    return pl.when(listed != "").then(pl.lit("; matched ") + listed)


def select_next(
    unified_with_stage_and_score: pl.DataFrame,
    templates: list[Template],
    history: pl.DataFrame | None,
    definition: LeadDefinition,
    *,
    now: datetime,
    activities: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The next nurture content for every lead (ASSIGNMENT_SCHEMA, one row per lead).

    Input leads need unified_id, stage, score, locale (industry, country, title, opted_out,
    do_not_contact and bounced are read when present); `history` holds past sends
    (unified_id, template_id, sent_at) from both CRMs, or None; `activities` (unified_id,
    activity_type, occurred_at; both CRMs' timeline) feeds the wait-after triggers, or None
    (then no triggered template is eligible).
    """
    now = as_utc(now)
    policy = definition.nurture
    # A regional overlay may name its own fallback locale; other leads use the global one.
    country_fallback = {
        country: definition.for_region(code).nurture.fallback_locale.lower()
        for country, code in definition.country_regions().items()
    }
    global_fallback = policy.fallback_locale.lower()
    fallback = pl.col("fallback")
    tmpl = templates_frame(templates, definition)
    hist = (
        pl.DataFrame(schema=HISTORY_SCHEMA)
        if history is None
        else history.select("unified_id", "template_id", pl.col("sent_at").cast(UTC_TS)).filter(
            pl.col("sent_at") <= pl.lit(now)
        )
    )

    first_activity = (
        pl.DataFrame(
            schema={"unified_id": pl.String(), "activity_type": pl.String(), "first_at": UTC_TS}
        )
        if activities is None
        else activities.filter(pl.col("occurred_at").cast(UTC_TS) <= pl.lit(now))
        .group_by("unified_id", "activity_type")
        .agg(pl.col("occurred_at").cast(UTC_TS).min().alias("first_at"))
    )
    region_of = definition.country_regions()
    leads = (
        ensure_columns(unified_with_stage_and_score, LEAD_INPUT_SCHEMA)
        .unique("unified_id", keep="first", maintain_order=True)
        .with_columns(
            pl.col("country")
            .str.to_uppercase()
            .replace_strict(country_fallback, default=global_fallback, return_dtype=pl.String)
            .alias("fallback")
        )
        .select(
            "unified_id",
            "stage",
            pl.col("score").fill_null(0),
            pl.col("locale").str.to_lowercase().fill_null(fallback).alias("lead_locale"),
            normalise_industry(pl.col("industry")).alias("industry_key"),
            pl.col("country").str.to_uppercase().alias("country_key"),
            pl.col("country")
            .str.to_uppercase()
            .replace_strict(region_of, default=GLOBAL_REGION, return_dtype=pl.String)
            .fill_null(GLOBAL_REGION)
            .alias("region_key"),
            pl.col("title").str.to_lowercase().alias("title_key"),
            pl.col("opted_out").fill_null(False),
            pl.col("do_not_contact").fill_null(False),
            pl.col("bounced").fill_null(False),
            "fallback",
        )
    )

    # 1. Suppression: consent and disqualification beat everything else.
    suppress_reason = (
        pl.when(pl.col("opted_out"))
        .then(pl.lit("suppressed: opted out"))
        .when(pl.col("do_not_contact"))
        .then(pl.lit("suppressed: do not contact"))
        .when(pl.col("bounced"))
        .then(pl.lit("suppressed: email bounced"))
        .when(pl.col("stage") == "Disqualified")
        .then(pl.lit("suppressed: disqualified"))
    )
    leads = leads.with_columns(suppress_reason.alias("suppress_reason"))
    suppressed = leads.filter(pl.col("suppress_reason").is_not_null()).select(
        "unified_id",
        pl.lit(None, dtype=pl.String).alias("template_id"),
        pl.lit(None, dtype=pl.Int64).alias("template_version"),
        pl.col("lead_locale").alias("locale"),
        pl.lit(None, dtype=pl.String).alias("channel"),
        pl.col("suppress_reason").alias("reason"),
        pl.lit("suppressed").alias("status"),
        pl.lit(None, dtype=UTC_TS).alias("due_at"),
    )
    active = leads.filter(pl.col("suppress_reason").is_null())

    # 2. Locale per lead: local content for (locale, stage) if any exists, else the fallback.
    regular = tmpl.filter(~pl.col("evergreen"))
    local_pairs = regular.select(
        pl.col("t_locale").alias("lead_locale"), pl.col("t_stage").alias("stage")
    ).unique()
    active = active.join(
        local_pairs.with_columns(pl.lit(True).alias("has_local")),
        on=["lead_locale", "stage"],
        how="left",
    ).with_columns(
        pl.col("has_local").fill_null(False),
    )
    active = active.with_columns(
        pl.when(pl.col("has_local")).then(pl.col("lead_locale")).otherwise(fallback).alias("locale")
    )

    # History facts: what was sent, when last, and when the frequency cap releases.
    cap = policy.frequency_cap
    window_start = now - timedelta(days=cap.per_days)
    last_sent = hist.group_by("unified_id").agg(pl.col("sent_at").max().alias("last_sent_at"))
    nurture_sends = hist.select("unified_id", "sent_at")
    crm_emails = (
        nurture_sends.clear()
        if activities is None
        else activities.filter(
            pl.col("activity_type").is_in(CAP_ACTIVITY_TYPES)
            & (pl.col("occurred_at").cast(UTC_TS) <= pl.lit(now))
        )
        .select("unified_id", pl.col("occurred_at").cast(UTC_TS).alias("sent_at"))
        .join(nurture_sends, on=["unified_id", "sent_at"], how="anti")
    )
    freq = (
        pl.concat([nurture_sends, crm_emails])
        .filter(pl.col("sent_at") > pl.lit(window_start))
        .group_by("unified_id")
        .agg(
            pl.col("sent_at")
            .sort(descending=True)
            .get(cap.max_sends - 1, null_on_oob=True)
            .alias("cap_anchor")
        )
        .select(
            "unified_id",
            (pl.col("cap_anchor") + pl.duration(days=cap.per_days)).alias("cap_release"),
        )
    )
    sent_counts = hist.group_by("unified_id", "template_id").agg(
        pl.len().alias("times_sent"), pl.col("sent_at").max().alias("template_last_sent")
    )

    # 3-4. Candidates and the pick.
    candidates = _eligible(
        active.join(
            regular,
            left_on=["locale", "stage"],
            right_on=["t_locale", "t_stage"],
            how="inner",
        ),
        first_activity,
        now,
    ).join(sent_counts, on=["unified_id", "template_id"], how="anti")
    picked = (
        candidates.sort(
            ["unified_id", "sequence", "priority", "template_id"],
            descending=[False, False, True, False],
            nulls_last=True,
        )
        .unique("unified_id", keep="first", maintain_order=True)
        .with_columns(
            pl.lit("assigned").alias("status"),
            pl.concat_str(
                [
                    pl.format("stage {}", pl.col("stage")),
                    pl.format(" sequence {}", pl.col("sequence")),
                    pl.format(" priority {}", pl.col("priority")),
                    pl.when(pl.col("has_local"))
                    .then(pl.lit(""))
                    .otherwise(pl.format(" (no {} content: {} fallback)", "lead_locale", "locale")),
                    _conditions_reason(),
                    pl.format("; {} days after {}", pl.col("wait_days"), pl.col("wait_activity")),
                ],
                ignore_nulls=True,
            ).alias("reason"),
        )
    )

    # 5. Exhausted leads.
    exhausted = active.join(picked.select("unified_id"), on="unified_id", how="anti")
    evergreen_rows = pl.DataFrame(schema=picked.schema)
    if policy.exhausted_policy == "evergreen":
        evergreen = tmpl.filter(pl.col("evergreen"))
        ever_locales = evergreen.select(pl.col("t_locale").alias("lead_locale")).unique()
        evergreen_rows = (
            _eligible(
                exhausted.join(
                    ever_locales.with_columns(pl.lit(True).alias("ever_local")),
                    on="lead_locale",
                    how="left",
                )
                .with_columns(
                    pl.when(pl.col("ever_local").fill_null(False))
                    .then(pl.col("lead_locale"))
                    .otherwise(fallback)
                    .alias("locale")
                )
                .drop("ever_local")
                .join(evergreen.drop("t_stage"), left_on="locale", right_on="t_locale"),
                first_activity,
                now,
            )
            .join(sent_counts, on=["unified_id", "template_id"], how="left")
            .sort(
                [
                    "unified_id",
                    pl.col("times_sent").is_not_null(),
                    "template_last_sent",
                    "priority",
                    "template_id",
                ],
                descending=[False, False, False, True, False],
                nulls_last=False,
            )
            .unique("unified_id", keep="first", maintain_order=True)
            .with_columns(
                pl.lit("exhausted").alias("status"),
                pl.lit("exhausted: evergreen fallback").alias("reason"),
            )
            .select(picked.columns)
        )
    paused = exhausted.join(evergreen_rows.select("unified_id"), on="unified_id", how="anti")
    paused_rows = paused.select(
        "unified_id",
        pl.lit(None, dtype=pl.String).alias("template_id"),
        pl.lit(None, dtype=pl.Int64).alias("template_version"),
        "locale",
        pl.lit(None, dtype=pl.String).alias("channel"),
        pl.lit(
            "exhausted: paused"
            if policy.exhausted_policy == "pause"
            else "exhausted: no evergreen template"
        ).alias("reason"),
        pl.lit("exhausted").alias("status"),
        pl.lit(None, dtype=UTC_TS).alias("due_at"),
    )

    # Due time: cooldown since the last send and the frequency cap push it back, never forward.
    chosen = (
        pl.concat([picked.select(evergreen_rows.columns), evergreen_rows])
        .join(last_sent, on="unified_id", how="left")
        .join(freq, on="unified_id", how="left")
        .with_columns(
            pl.max_horizontal(
                pl.lit(now, dtype=UTC_TS),
                pl.col("last_sent_at") + pl.duration(days=pl.col("cooldown_days")),
                pl.col("cap_release"),
            )
            .cast(UTC_TS)
            .alias("due_at")
        )
        .select(list(ASSIGNMENT_SCHEMA))
    )
    result = pl.concat(
        [
            frame.select([pl.col(c).cast(t) for c, t in ASSIGNMENT_SCHEMA.items()])
            for frame in (chosen, paused_rows, suppressed)
        ]
    )
    # Input order, so callers can line results up with their leads.
    order = unified_with_stage_and_score.select("unified_id").unique(maintain_order=True)
    return order.join(result, on="unified_id", how="inner", maintain_order="left")


def assignment_changes(current: pl.DataFrame, previous: pl.DataFrame | None) -> pl.DataFrame:
    """Rows of `current` whose template, version, locale or status differ from `previous`.

    Only these need rendering again: rendering is per lead, so it is kept to what changed.
    """
    if previous is None or previous.is_empty():
        return current
    key = ["unified_id", "template_id", "template_version", "locale", "status"]
    return current.join(previous.select(key), on=key, how="anti", nulls_equal=True)
