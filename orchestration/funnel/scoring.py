"""Lead scoring: fit (who the lead is) + engagement (what it did, decaying) + negatives.

Everything here is vectorised polars driven by the lead definition:

* fit: employee-count band, the strongest seniority keyword in the title (per locale, en as the
  fallback), target industry and target country;
* engagement: each activity earns its type's points × 0.5^(age_days / half_life), summed per type
  and capped per type, then summed per lead, floored at 0 and capped in total;
* negatives (competitor domain, free-mail, student, inactivity) are applied after that floor, so a
  competitor cannot hide behind a busy activity history;
* temperature bands and hand-raise come from the definition too.

Each lead is scored by the rules of its region: `split_by_region` maps the canonical `country` to
the regional overlay that lists it and scores that region's leads with the merged definition
(`LeadDefinition.for_region`); a lead no overlay covers is scored by the global rules, exactly as
before overlays existed. A regional lead without a locale is read in the region's first locale.

`reasons` explains each score with its top contributions, which sales sees next to the number.
`contributions` keeps every non-zero contribution with the numbers behind it (points as earned,
the decayed amount that counts now, the newest event's age, the half-life), so `leadsync explain`
can show why a score is what it is without re-running the scoring.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from orchestration.funnel.definition import LeadDefinition
from orchestration.funnel.model import UTC_TS

# Output of `score`, one row per unified lead. `last_hand_raise_at` is an addition to the columns
# the stage rules need: a recycled lead reopens only on a hand-raise made after it was recycled.
SCORE_SCHEMA: dict[str, pl.DataType] = {
    "unified_id": pl.String(),
    "fit_score": pl.Int64(),
    "engagement_score": pl.Int64(),
    "score": pl.Int64(),
    "temperature": pl.String(),
    "hand_raise": pl.Boolean(),
    "last_activity_at": UTC_TS,
    "last_hand_raise_at": UTC_TS,
    "reasons": pl.String(),
    # JSON list, largest |decayed| first, of every non-zero contribution: {"rule", "points" (as
    # earned, undecayed), "decayed" (what counts in the score now), "age_days" (newest event),
    # "half_life_days", "events"}; the last three are null for fit and negative rules. When the
    # engagement total was capped or floored, an "engagement:total_cap" / "engagement:floor" entry
    # carries the difference, so the decayed amounts sum to `score` (within rounding).
    "contributions": pl.String(),
}

# The lead columns scoring reads; missing ones are treated as unknown (null).
LEAD_INPUT_SCHEMA: dict[str, pl.DataType] = {
    "unified_id": pl.String(),
    "title": pl.String(),
    "employee_count": pl.Int64(),
    "industry": pl.String(),
    "country": pl.String(),
    "locale": pl.String(),
    "email_domain": pl.String(),
    "email_is_free": pl.Boolean(),
}

MAX_REASONS = 5
# Decimals kept in `contributions`: enough to add up to the integer score.
_DECIMALS = 2
_MICROS_PER_DAY = 86_400_000_000
_REGION = "__region"
_ROW = "__row"
_EMPTY_TIMELINE = pl.DataFrame(
    schema={"unified_id": pl.UInt32(), "activity_type": pl.String(), "occurred_at": UTC_TS}
)


def as_utc(now: datetime) -> datetime:
    """A timezone-aware UTC datetime; a naive one is taken to be UTC already."""
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def ensure_columns(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Add any schema column the frame lacks as nulls, so optional inputs need no special cases."""
    missing = [
        pl.lit(None, dtype=dt).alias(c) for c, dt in schema.items() if c not in frame.columns
    ]
    return frame.with_columns(missing) if missing else frame


def region_expr(definition: LeadDefinition) -> pl.Expr:
    """Each lead's region code from its `country` column; null where no overlay covers it."""
    countries = definition.country_regions()
    if not countries:
        return pl.lit(None, dtype=pl.String)
    return (
        pl.col("country")
        .str.strip_chars()
        .str.to_uppercase()
        .replace_strict(countries, default=None, return_dtype=pl.String)
    )


def split_by_region(
    frame: pl.DataFrame, definition: LeadDefinition
) -> list[tuple[LeadDefinition, pl.DataFrame]]:
    """The frame cut by region: (that region's merged definition, its rows) for each region with
    rows, and (the global definition, the rest). One part, the frame itself, when all rows share
    one set of rules; rows keep their order within each part."""
    if not definition.regions or "country" not in frame.columns or frame.is_empty():
        return [(definition, frame)]
    region = frame.select(region_expr(definition).alias(_REGION)).to_series()
    codes = region.unique(maintain_order=True).to_list()
    if len(codes) == 1:
        return [(definition.for_region(codes[0]), frame)]
    parts = frame.with_columns(region).partition_by(
        _REGION, as_dict=True, include_key=False, maintain_order=True
    )
    return [(definition.for_region(key[0]), part) for key, part in parts.items()]


def _in_region_locale(
    leads: pl.DataFrame, base: LeadDefinition, rules: LeadDefinition
) -> pl.DataFrame:
    # A regional lead whose CRMs hold no language is most likely in the region's first one.
    if rules.region is None or rules.region not in base.regions:
        return leads
    first = base.regions[rules.region].locales[0]
    return leads.with_columns(pl.col("locale").fill_null(first))


def keyword_regex(keyword: str) -> str:
    """Case-insensitive regex for one keyword; ASCII words get word boundaries.

    Boundaries keep "Head" from matching "Headquarters" and "VP" from matching "MVP". Japanese has
    no spaces between words, so 部長 must match inside 営業部長.
    """
    escaped = pl.escape_regex(keyword)
    if keyword.isascii():
        return rf"(?i)\b{escaped}\b"
    return f"(?i){escaped}"


def _any_keyword(column: str, keywords: list[str]) -> pl.Expr:
    if not keywords:
        return pl.lit(False)
    ascii_words = [pl.escape_regex(k) for k in keywords if k.isascii()]
    other = [pl.escape_regex(k) for k in keywords if not k.isascii()]
    parts = []
    if ascii_words:
        parts.append(r"\b(?:" + "|".join(ascii_words) + r")\b")
    if other:
        parts.append("(?:" + "|".join(other) + ")")
    return pl.col(column).str.contains("(?i)" + "|".join(parts)).fill_null(False)


def competitor_expr(definition: LeadDefinition) -> pl.Expr:
    """True where `email_domain` is (a subdomain of) a listed competitor domain."""
    domains = [d.lower().lstrip("@") for d in definition.scoring.negatives.competitor.domains]
    if not domains:
        return pl.lit(False)
    domain = pl.col("email_domain").str.to_lowercase()
    suffix = "(?:" + "|".join(r"\." + pl.escape_regex(d) for d in domains) + ")$"
    return (domain.is_in(domains) | domain.str.contains(suffix)).fill_null(False)


def student_expr(definition: LeadDefinition) -> pl.Expr:
    """True where the email domain is academic or the title names a student."""
    rule = definition.scoring.negatives.student
    suffixes = [
        s.lower() if s.startswith(".") else "." + s.lower() for s in rule.email_domain_suffixes
    ]
    domain = pl.col("email_domain").str.to_lowercase()
    academic = (
        domain.str.contains("(?:" + "|".join(pl.escape_regex(s) for s in suffixes) + ")$")
        if suffixes
        else pl.lit(False)
    )
    return (academic.fill_null(False) | _any_keyword("title", rule.title_keywords)).fill_null(False)


def normalise_industry(expr: pl.Expr) -> pl.Expr:
    """Fold case and punctuation: "Computer Software" and COMPUTER_SOFTWARE compare equal."""
    return expr.str.to_lowercase().str.replace_all(r"[^\p{L}\p{N}]+", "_").str.strip_chars("_")


def _fold_industry(value: str) -> str:
    # The Python twin of normalise_industry, for the (few) configured target values.
    folded = pl.select(normalise_industry(pl.lit(value, dtype=pl.String))).item()
    return str(folded)


def _size_points(definition: LeadDefinition) -> tuple[pl.Expr, pl.Expr]:
    """(points, rule name) for the employee-count band."""
    count = pl.col("employee_count")
    points: pl.Expr = pl.lit(0, dtype=pl.Int64)
    label: pl.Expr = pl.lit(None, dtype=pl.String)
    for band in reversed(definition.scoring.fit.employee_bands):
        cond = count >= band.min
        if band.max is not None:
            cond = cond & (count <= band.max)
        name = f"fit:employees:{band.min}-{band.max}" if band.max else f"fit:employees:{band.min}+"
        points = pl.when(cond).then(pl.lit(band.points, dtype=pl.Int64)).otherwise(points)
        label = pl.when(cond).then(pl.lit(name)).otherwise(label)
    return points.fill_null(0), label


def _seniority_keyword(keywords: dict[str, int]) -> pl.Expr:
    """The keyword that decides seniority: any negative one first (most negative), else the highest.

    One `str.contains` per keyword, evaluated over the whole column; the first match in this order
    wins, so "営業本部長" scores as 本部長 rather than 部長.
    """
    ordered = sorted(
        keywords.items(), key=lambda kv: (kv[1] >= 0, -abs(kv[1]) if kv[1] < 0 else -kv[1], kv[0])
    )
    chosen: pl.Expr = pl.lit(None, dtype=pl.String)
    for keyword, _ in reversed(ordered):
        hit = pl.col("title").str.contains(keyword_regex(keyword)).fill_null(False)
        chosen = pl.when(hit).then(pl.lit(keyword)).otherwise(chosen)
    return chosen


def _seniority(definition: LeadDefinition) -> tuple[pl.Expr, pl.Expr]:
    """(points, rule name) for the title: the lead's locale keywords, falling back to en."""
    seniority = definition.scoring.fit.seniority
    locale = pl.col("locale").str.to_lowercase()
    local_key: pl.Expr = pl.lit(None, dtype=pl.String)
    for loc, keywords in seniority.items():
        if loc == "en":
            continue
        key = pl.lit(f"{loc}:") + _seniority_keyword(keywords)
        local_key = pl.when(locale == loc).then(key).otherwise(local_key)
    key = pl.coalesce(local_key, pl.lit("en:") + _seniority_keyword(seniority["en"]))
    mapping = {f"{loc}:{kw}": pts for loc, kws in seniority.items() for kw, pts in kws.items()}
    points = key.replace_strict(mapping, default=0, return_dtype=pl.Int64).fill_null(0)
    return points, pl.lit("fit:seniority:") + key.str.split_exact(":", 1).struct.field("field_1")


def _engagement(
    acts: pl.DataFrame, definition: LeadDefinition, now: datetime
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(per lead×type capped points, per lead activity facts) from `_timeline` rows (already cut
    to the leads being scored). Ages and the hand-raise window are measured from `now` (the
    decay instant); an activity younger than that counts at full weight."""
    eng = definition.scoring.engagement
    types = list(eng.activities)
    # Types by number: grouping ten million rows on (row number, type number) is several times
    # cheaper than on a type string, and the per-type numbers join on a one-byte key.
    table = pl.DataFrame(
        {
            "type_code": list(range(len(types))),
            "activity_type": types,
            "points": [float(a.points) for a in eng.activities.values()],
            "cap": [float(a.cap) for a in eng.activities.values()],
            "half_life": [eng.half_life(t) for t in types],
        },
        schema_overrides={"type_code": pl.UInt8},
    )
    window_start = now - timedelta(days=definition.scoring.hand_raise.window_days)
    hand_raise_types = definition.scoring.hand_raise.activity_types
    facts = acts.group_by("unified_id").agg(
        pl.col("occurred_at").max().alias("last_activity_at"),
        pl.col("occurred_at")
        .filter(pl.col("activity_type").is_in(hand_raise_types))
        .max()
        .alias("last_hand_raise_at"),
    )
    facts = facts.with_columns(
        (pl.col("last_hand_raise_at") >= pl.lit(window_start)).fill_null(False).alias("hand_raise")
    )
    age_days = (pl.lit(now) - pl.col("occurred_at")).dt.total_microseconds().clip(
        lower_bound=0
    ) / _MICROS_PER_DAY
    code = pl.col("activity_type").replace_strict(
        dict(zip(types, range(len(types)), strict=True)), default=None, return_dtype=pl.UInt8
    )
    per_type = (
        acts.lazy()
        .select("unified_id", code.alias("type_code"), "occurred_at")
        # Types the definition does not list earn nothing.
        .join(table.lazy().select("type_code", "points", "half_life"), on="type_code")
        .group_by("unified_id", "type_code")
        .agg(
            (pl.col("points") * pl.lit(0.5).pow(age_days / pl.col("half_life")))
            .sum()
            .alias("decayed"),
            # What the events earned before decay and caps, kept for `contributions`.
            pl.col("points").sum().alias("earned"),
            pl.len().cast(pl.Int64).alias("events"),
            # The newest event is the youngest: the same figure as the minimum of the ages.
            pl.col("occurred_at").max(),
        )
        .join(table.lazy(), on="type_code")
        .select(
            "unified_id",
            (pl.lit("engagement:") + pl.col("activity_type")).alias("rule"),
            # A positive type is capped at +cap, a negative one at -cap.
            pl.when(pl.col("points") >= 0)
            .then(pl.col("decayed").clip(upper_bound=pl.col("cap")))
            .otherwise(pl.col("decayed").clip(lower_bound=-pl.col("cap")))
            .alias("points"),
            "earned",
            "events",
            age_days.alias("age_days"),
            pl.col("half_life").alias("half_life_days"),
        )
        .collect()
    )
    return per_type, facts


def score(
    unified: pl.DataFrame,
    activities: pl.DataFrame,
    definition: LeadDefinition,
    *,
    now: datetime,
    decay_from: datetime | None = None,
) -> pl.DataFrame:
    """Score every unified lead: fit, engagement, total, temperature, hand-raise and reasons.

    `unified` needs unified_id (title, employee_count, industry, country, locale, email_domain and
    email_is_free are read when present); `activities` has the ACTIVITY_SCHEMA columns plus
    unified_id. Activities up to `now` count. Decay, the hand-raise window and inactivity are
    measured from `decay_from` (default `now`): with the start of the day there, scores move once a
    day while an activity made since still counts at once, at full weight. Returns SCORE_SCHEMA,
    one row per unified lead.
    """
    now = as_utc(now)
    ref = now if decay_from is None else as_utc(decay_from)
    leads = ensure_columns(unified, LEAD_INPUT_SCHEMA).unique(
        "unified_id", keep="first", maintain_order=True
    )
    ids = leads.get_column("unified_id")
    # From here on `unified_id` holds each lead's row number: at a million leads and ten million
    # activities every group-by, join and sort below is then on an integer rather than a string,
    # and the ids come back by row number at the end (in the input's order).
    leads = leads.with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).alias("unified_id"))
    acts = _timeline(ids, activities, now)
    parts = split_by_region(leads, definition)
    if len(parts) == 1:
        rules, part = parts[0]
        scored = [_score_leads(_in_region_locale(part, definition, rules), acts, rules, ref)]
    else:
        # Each lead's part, looked up by row number, hands each part its own activities without
        # another join or scan of the timeline per region.
        part_of = (
            pl.concat(
                [
                    p.select("unified_id", pl.lit(i, dtype=pl.UInt32).alias(_REGION))
                    for i, (_, p) in enumerate(parts)
                ]
            )
            .sort("unified_id")
            .get_column(_REGION)
        )
        acts_by_part = acts.with_columns(
            part_of.gather(acts.get_column("unified_id")).alias(_REGION)
        ).partition_by(_REGION, as_dict=True, include_key=False)
        del acts
        scored = [
            _score_leads(
                _in_region_locale(part, definition, rules),
                acts_by_part.pop((i,), _EMPTY_TIMELINE),
                rules,
                ref,
            )
            for i, (rules, part) in enumerate(parts)
        ]
    # `_score_leads` returns SCORE_SCHEMA, so the row numbers come back as strings.
    out = pl.concat(scored).with_columns(pl.col("unified_id").cast(pl.UInt32)).sort("unified_id")
    return out.with_columns(ids.gather(out.get_column("unified_id")).alias("unified_id"))


def _timeline(ids: pl.Series, activities: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """The activities of the leads being scored (`ids`), up to `now`, with the lead's row number
    as `unified_id`: only the three columns scoring reads, so the one string join over the whole
    timeline copies as little as it can."""
    acts = ensure_columns(activities, {"unified_id": pl.String(), "activity_type": pl.String()})
    rows = ids.to_frame("unified_id").with_row_index(_ROW)
    return (
        acts.lazy()
        .select("unified_id", "activity_type", pl.col("occurred_at").cast(UTC_TS))
        .filter(pl.col("unified_id").is_not_null() & (pl.col("occurred_at") <= pl.lit(now)))
        # Only leads being scored: activities of other leads are not this run's business.
        .join(rows.lazy(), on="unified_id", how="inner")
        .select(pl.col(_ROW).alias("unified_id"), "activity_type", "occurred_at")
        .collect()
    )


def _score_leads(
    leads: pl.DataFrame, activities: pl.DataFrame, definition: LeadDefinition, now: datetime
) -> pl.DataFrame:
    """`score` for leads that all follow one definition (unique, with LEAD_INPUT_SCHEMA and their
    row number as unified_id), from their `_timeline` rows; `now` is the decay instant."""
    rules = definition.scoring
    size_pts, size_rule = _size_points(definition)
    sen_pts, sen_rule = _seniority(definition)
    targets = [_fold_industry(v) for v in rules.fit.industries.values]
    countries = [c.upper() for c in rules.fit.countries.values]
    industry_hit = normalise_industry(pl.col("industry")).is_in(targets).fill_null(False)
    country_hit = pl.col("country").str.to_uppercase().is_in(countries).fill_null(False)

    wide = leads.select(
        "unified_id",
        size_pts.alias("p_size"),
        size_rule.alias("r_size"),
        sen_pts.alias("p_seniority"),
        sen_rule.alias("r_seniority"),
        pl.when(industry_hit).then(rules.fit.industries.points).otherwise(0).alias("p_industry"),
        pl.when(country_hit).then(rules.fit.countries.points).otherwise(0).alias("p_country"),
        pl.when(competitor_expr(definition))
        .then(rules.negatives.competitor.points)
        .otherwise(0)
        .alias("p_competitor"),
        pl.when(pl.col("email_is_free").fill_null(False))
        .then(rules.negatives.free_mail.points)
        .otherwise(0)
        .alias("p_free_mail"),
        pl.when(student_expr(definition))
        .then(rules.negatives.student.points)
        .otherwise(0)
        .alias("p_student"),
    )

    per_type, facts = _engagement(activities, definition, now)
    engagement = per_type.group_by("unified_id").agg(pl.col("points").sum().alias("eng_raw"))

    inactive_before = now - timedelta(days=rules.negatives.inactivity.days)
    wide = (
        wide.join(facts, on="unified_id", how="left")
        .join(engagement, on="unified_id", how="left")
        .with_columns(
            pl.col("hand_raise").fill_null(False),
            # Only a lead that was active and went quiet is penalised: a new lead without any
            # activity yet has simply not been reached.
            pl.when(pl.col("last_activity_at") < pl.lit(inactive_before))
            .then(rules.negatives.inactivity.points)
            .otherwise(0)
            .alias("p_inactivity"),
            pl.col("eng_raw")
            .fill_null(0.0)
            .clip(0.0, float(rules.engagement.total_cap))
            .round(0)
            .cast(pl.Int64)
            .alias("engagement_score"),
        )
        .with_columns(
            pl.sum_horizontal("p_size", "p_seniority", "p_industry", "p_country")
            .cast(pl.Int64)
            .alias("fit_score"),
            pl.sum_horizontal("p_competitor", "p_free_mail", "p_student", "p_inactivity")
            .cast(pl.Int64)
            .alias("negatives"),
        )
        .with_columns(
            (pl.col("fit_score") + pl.col("engagement_score") + pl.col("negatives")).alias("score")
        )
    )
    temp = rules.temperature
    wide = wide.with_columns(
        pl.when(pl.col("score") >= temp.hot_min)
        .then(pl.lit("hot"))
        .when(pl.col("score") >= temp.warm_min)
        .then(pl.lit("warm"))
        .otherwise(pl.lit("cold"))
        .alias("temperature")
    )

    long = _contributions_long(wide, per_type)
    total = _total_adjustment(wide, float(rules.engagement.total_cap))
    return (
        wide.join(_reasons(long), on="unified_id", how="left")
        .join(_contributions(pl.concat([long, total])), on="unified_id", how="left")
        .with_columns(pl.col("reasons", "contributions").fill_null("[]"))
        .select([pl.col(c).cast(dt) for c, dt in SCORE_SCHEMA.items()])
    )


_LONG_SCHEMA: dict[str, pl.DataType] = {
    "unified_id": pl.UInt32(),  # the lead's row number while scoring (see `score`)
    "rule": pl.String(),
    "points": pl.Float64(),  # what counts now: decayed and capped for engagement
    "earned": pl.Float64(),  # before decay and caps
    "events": pl.Int64(),
    "age_days": pl.Float64(),
    "half_life_days": pl.Float64(),
}


def _contributions_long(wide: pl.DataFrame, per_type: pl.DataFrame) -> pl.DataFrame:
    """Every rule's contribution to every lead, one row each (_LONG_SCHEMA), zeros included."""

    def part(points: str, rule: pl.Expr) -> pl.DataFrame:
        # A fit or negative rule does not decay: earned and counted are the same points.
        value = pl.col(points).cast(pl.Float64)
        return wide.select(
            "unified_id",
            rule.alias("rule"),
            value.alias("points"),
            value.alias("earned"),
            pl.lit(None, dtype=pl.Int64).alias("events"),
            pl.lit(None, dtype=pl.Float64).alias("age_days"),
            pl.lit(None, dtype=pl.Float64).alias("half_life_days"),
        )

    return pl.concat(
        [
            frame.select([pl.col(c).cast(dt) for c, dt in _LONG_SCHEMA.items()])
            for frame in (
                part("p_size", pl.col("r_size")),
                part("p_seniority", pl.col("r_seniority")),
                part("p_industry", pl.lit("fit:industry")),
                part("p_country", pl.lit("fit:country")),
                part("p_competitor", pl.lit("negative:competitor")),
                part("p_free_mail", pl.lit("negative:free_mail")),
                part("p_student", pl.lit("negative:student")),
                part("p_inactivity", pl.lit("negative:inactivity")),
                per_type,
            )
        ]
    )


def _total_adjustment(wide: pl.DataFrame, total_cap: float) -> pl.DataFrame:
    """What the engagement total cap or floor took off (or added), per lead (_LONG_SCHEMA).

    The cap and floor act on the sum of the types, so their effect is a contribution of its own;
    without it the decayed amounts would not add up to the score of a capped lead.
    """
    raw = pl.col("eng_raw").fill_null(0.0)
    return wide.select(
        "unified_id",
        pl.when(raw > total_cap)
        .then(pl.lit("engagement:total_cap"))
        .otherwise(pl.lit("engagement:floor"))
        .alias("rule"),
        (raw.clip(0.0, total_cap) - raw).alias("points"),
        pl.lit(None, dtype=pl.Float64).alias("earned"),
        pl.lit(None, dtype=pl.Int64).alias("events"),
        pl.lit(None, dtype=pl.Float64).alias("age_days"),
        pl.lit(None, dtype=pl.Float64).alias("half_life_days"),
    )


def _reasons(long: pl.DataFrame) -> pl.DataFrame:
    """Top contributions per lead as a JSON list of {"rule", "points"}, largest |points| first."""
    return (
        long.select("unified_id", "rule", "points")
        .with_columns(pl.col("points").round(0).cast(pl.Int64))
        .filter(pl.col("points") != 0)
        .sort(
            ["unified_id", pl.col("points").abs(), "rule"],
            descending=[False, True, False],
        )
        .group_by("unified_id", maintain_order=True)
        .head(MAX_REASONS)
        .with_columns(pl.struct("rule", "points").struct.json_encode().alias("json"))
        .group_by("unified_id")
        .agg(pl.col("json").str.join(","))
        .select("unified_id", (pl.lit("[") + pl.col("json") + pl.lit("]")).alias("reasons"))
    )


def _contributions(long: pl.DataFrame) -> pl.DataFrame:
    """Every non-zero contribution per lead as a JSON list, largest |decayed| first."""

    def num(expr: pl.Expr) -> pl.Expr:
        return expr.cast(pl.String).fill_null("null")

    decayed = pl.col("points").round(_DECIMALS)
    # The JSON is assembled with concat_str: struct.json_encode is several times slower here, and
    # rule names are definition keys (no quotes or backslashes to escape).
    item = pl.concat_str(
        pl.lit('{"rule":"'),
        pl.col("rule"),
        pl.lit('","points":'),
        num(pl.col("earned").round(_DECIMALS)),
        pl.lit(',"decayed":'),
        num(decayed),
        pl.lit(',"age_days":'),
        num(pl.col("age_days").round(_DECIMALS)),
        pl.lit(',"half_life_days":'),
        num(pl.col("half_life_days")),
        pl.lit(',"events":'),
        num(pl.col("events")),
        pl.lit("}"),
    ).alias("json")
    return (
        long.filter(decayed != 0)
        # Ties in |decayed| go by rule: the per-type rows come out of a group_by in no fixed
        # order, and the stored frame must be the same on every run over the same data.
        .sort([decayed.abs(), "rule"], descending=[True, False])
        .group_by("unified_id")
        .agg(item.str.join(","))
        .select("unified_id", (pl.lit("[") + pl.col("json") + pl.lit("]")).alias("contributions"))
    )


# --------------------------------------------------------------------------------------------
# Incremental: score again only the leads whose inputs changed
# --------------------------------------------------------------------------------------------

SCORE_INPUT_SCHEMA: dict[str, pl.DataType] = {
    "unified_id": pl.String(),
    "fingerprint": pl.UInt64(),
}
_SEED = 20261122


def input_fingerprints(
    unified: pl.DataFrame, activities: pl.DataFrame, now: datetime
) -> pl.DataFrame:
    """Per unified lead (SCORE_INPUT_SCHEMA): a hash of everything `score` reads of it, its
    LEAD_INPUT_SCHEMA fields and its activities up to `now`. With the same definition and decay
    instant, equal fingerprints mean equal scores. polars does not promise one hash across its
    versions: after an upgrade every lead is scored once more, nothing worse."""
    now = as_utc(now)
    leads = ensure_columns(unified, LEAD_INPUT_SCHEMA).unique(
        "unified_id", keep="first", maintain_order=True
    )
    rows = leads.select("unified_id", pl.struct(list(LEAD_INPUT_SCHEMA)).hash(_SEED).alias("_row"))
    acts = ensure_columns(activities, {"unified_id": pl.String(), "activity_type": pl.String()})
    timeline = (
        acts.lazy()
        .filter(pl.col("unified_id").is_not_null() & (pl.col("occurred_at") <= pl.lit(now)))
        .group_by("unified_id")
        .agg(
            pl.struct("activity_type", pl.col("occurred_at").cast(UTC_TS))
            .hash(_SEED)
            .sort()
            .hash(_SEED)
            .alias("_acts")
        )
        .collect()
    )
    return rows.join(timeline, on="unified_id", how="left", maintain_order="left").select(
        "unified_id", pl.struct("_row", "_acts").hash(_SEED).alias("fingerprint")
    )


def update_scores(
    previous: pl.DataFrame,
    previous_prints: pl.DataFrame,
    prints: pl.DataFrame,
    unified: pl.DataFrame,
    activities: pl.DataFrame,
    definition: LeadDefinition,
    *,
    now: datetime,
    decay_from: datetime | None = None,
) -> tuple[pl.DataFrame, int]:
    """`score` of every lead in `unified`, with the `previous` scores (made under the same
    definition and decay instant) kept for the leads whose `input_fingerprints` did not change.
    Returns the scores, in `unified`'s order, and how many leads were scored again."""
    keys = ["unified_id", "fingerprint"]
    unchanged = prints.join(previous_prints, on=keys, how="semi").select("unified_id")
    kept = previous.join(unchanged, on="unified_id", how="semi")
    todo = unified.join(kept.select("unified_id"), on="unified_id", how="anti")
    fresh = score(
        todo,
        activities.join(todo.select("unified_id"), on="unified_id", how="semi"),
        definition,
        now=now,
        decay_from=decay_from,
    )
    order = prints.select("unified_id").with_row_index("_order")
    out = (
        pl.concat([kept.select(list(SCORE_SCHEMA)), fresh])
        .join(order, on="unified_id", how="inner")
        .sort("_order")
        .drop("_order")
    )
    return out, fresh.height
