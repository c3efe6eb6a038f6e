"""Why a lead scores and stands where it does: `leadsync explain <email, record id or unified id>`.

Pure over the persisted frames (no store, no Dagster): the CLI reads them and hands them in.

* The key is a unified id ("UL-..."), a record id ("hubspot:contacts:123") or an email. An email
  is normalised like every stored one (NFKC, case, `+tag`, gmail dots) and matched against the
  golden email, every member record's email and all secondary emails.
* Several unified leads can share an email (two people behind one address, a merge held for
  review): the most recently updated one is explained and the others are listed in
  `other_matches`, so each can be explained by its id. One lead per call keeps the output (and
  the `--json` shape) the same whatever matched.
* Contributions come from the score's `contributions` column (points as earned, decayed amount
  now, newest event's age, half-life), largest |decayed| first; a score written before that
  column existed falls back to its top `reasons` (points only).
* Stage history is the ledger of that unified id, oldest first; next content is the nurture
  assignment (template, subject, why) or its status (exhausted, suppressed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import polars as pl

from orchestration.funnel.normalize import normalize_email_expr

__all__ = [
    "Contribution",
    "Explanation",
    "Member",
    "NextContent",
    "Transition",
    "explain",
    "find_unified_ids",
]


@dataclass(frozen=True)
class Member:
    """One CRM record merged into the lead."""

    record_id: str
    system: str | None
    object: str | None
    email: str | None
    band: str | None  # identity band that put it in the cluster
    rule: str | None  # strongest link into the cluster


@dataclass(frozen=True)
class Contribution:
    """One rule's share of the score."""

    source: str  # "fit:industry", "engagement:demo_request", "negative:free_mail", ...
    points: float | None  # as earned: before decay and caps
    decayed: float  # what counts in the score now
    age_days: float | None  # newest event of that type (engagement only)
    half_life_days: float | None
    events: int | None


@dataclass(frozen=True)
class Transition:
    """One ledger row."""

    from_stage: str | None
    to_stage: str
    rule: str | None
    reason: str | None
    definition_version: str | None
    at: datetime | None


@dataclass(frozen=True)
class NextContent:
    status: str | None  # "assigned" | "exhausted" | "suppressed"
    template_id: str | None
    subject: str | None
    why: str | None
    channel: str | None
    locale: str | None
    due_at: datetime | None


@dataclass(frozen=True)
class Explanation:
    unified_id: str
    matched_by: str  # "unified_id" | "record_id" | "email"
    name: str | None
    company: str | None
    email: str | None
    country: str | None
    region: str | None  # the regional overlay whose rules scored the lead, None for global
    members: tuple[Member, ...]
    fit_score: int | None
    engagement_score: int | None
    score: int | None
    temperature: str | None
    hand_raise: bool | None
    contributions: tuple[Contribution, ...]  # all non-zero ones, largest |decayed| first
    stage: str | None
    stage_entered_at: datetime | None
    history: tuple[Transition, ...]  # oldest first
    next_content: NextContent | None
    other_matches: tuple[str, ...]  # further unified ids the email matched, most recent first

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: datetimes as ISO 8601 strings, tuples as lists."""
        return _jsonable(asdict(self))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _col(frame: pl.DataFrame, name: str, dtype: pl.DataType) -> pl.Expr:
    # Frames from an older store may lack a column; treat it as null rather than fail.
    return pl.col(name) if name in frame.columns else pl.lit(None, dtype=dtype).alias(name)


def _email_matches(
    email: str, leads: pl.DataFrame, identity: pl.DataFrame, unified: pl.DataFrame
) -> list[str]:
    """Unified ids whose golden, member or secondary emails include `email` (normalised)."""
    ids: set[str] = set()
    for frame in (unified, leads):
        if frame.is_empty() or "email" not in frame.columns:
            continue
        hit = pl.col("email") == email
        if "secondary_emails" in frame.columns:
            hit = hit | pl.col("secondary_emails").list.contains(email).fill_null(False)
        matched = frame.filter(hit.fill_null(False))
        if "unified_id" in matched.columns:
            ids.update(matched["unified_id"].drop_nulls().to_list())
        elif "record_id" in matched.columns and not identity.is_empty():
            records = matched["record_id"].to_list()
            owners = identity.filter(pl.col("record_id").is_in(records))["unified_id"]
            ids.update(owners.drop_nulls().to_list())
    return _most_recent_first(sorted(ids), unified)


def _most_recent_first(ids: list[str], unified: pl.DataFrame) -> list[str]:
    if len(ids) < 2 or "updated_at" not in unified.columns:
        return ids
    order = (
        pl.DataFrame({"unified_id": ids})
        .join(unified.select("unified_id", "updated_at"), on="unified_id", how="left")
        .sort(["updated_at", "unified_id"], descending=[True, False], nulls_last=True)
    )
    return order["unified_id"].unique(maintain_order=True).to_list()


def find_unified_ids(
    key: str, *, leads: pl.DataFrame, identity: pl.DataFrame, unified: pl.DataFrame
) -> tuple[str, list[str]]:
    """(how the key matched, the unified ids it matched, most recently updated first).

    ("", []) when nothing matches. A unified id is tried first, then a record id, then an email.
    """
    key = key.strip()
    if not key:
        return "", []
    if "unified_id" in unified.columns and unified.filter(pl.col("unified_id") == key).height:
        return "unified_id", [key]
    if "record_id" in identity.columns:
        owners = identity.filter(pl.col("record_id") == key)["unified_id"].drop_nulls()
        if owners.len():
            return "record_id", owners.unique(maintain_order=True).to_list()
    if "record_ids" in unified.columns:
        owners = unified.filter(pl.col("record_ids").list.contains(key).fill_null(False))
        if owners.height:
            return "record_id", owners["unified_id"].to_list()
    # Normalised first: a full-width "＠" is an "@" only after NFKC.
    email = pl.select(normalize_email_expr(pl.lit(key, dtype=pl.String))).item()
    if email is not None:
        found = _email_matches(str(email), leads, identity, unified)
        if found:
            return "email", found
    return "", []


def _name(row: Mapping[str, Any]) -> str | None:
    first, last = row.get("first_name"), row.get("last_name")
    # Japanese names read family name first; everyone else given name first.
    parts = (last, first) if (row.get("locale") or "").lower() == "ja" else (first, last)
    joined = " ".join(p for p in parts if p)
    return joined or None


def _members(
    uid: str, row: Mapping[str, Any], leads: pl.DataFrame, identity: pl.DataFrame
) -> tuple[Member, ...]:
    record_ids: list[str] = []
    if "record_id" in identity.columns:
        record_ids = identity.filter(pl.col("unified_id") == uid)["record_id"].to_list()
    if not record_ids:
        record_ids = list(row.get("record_ids") or [])
    ident = (
        {
            r["record_id"]: r
            for r in identity.filter(pl.col("record_id").is_in(record_ids)).to_dicts()
        }
        if "record_id" in identity.columns
        else {}
    )
    facts: dict[str, dict[str, Any]] = {}
    if "record_id" in leads.columns:
        facts = {
            r["record_id"]: r
            for r in leads.filter(pl.col("record_id").is_in(record_ids))
            .select(
                "record_id",
                _col(leads, "source_system", pl.String()),
                _col(leads, "source_object", pl.String()),
                _col(leads, "email", pl.String()),
            )
            .to_dicts()
        }
    members = []
    for record_id in sorted(set(record_ids)):
        fact, link = facts.get(record_id, {}), ident.get(record_id, {})
        parts = record_id.split(":")
        members.append(
            Member(
                record_id=record_id,
                system=fact.get("source_system") or (parts[0] if len(parts) == 3 else None),
                object=fact.get("source_object") or (parts[1] if len(parts) == 3 else None),
                email=fact.get("email"),
                band=link.get("band"),
                rule=link.get("rule"),
            )
        )
    return tuple(members)


def _as_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _contributions(row: Mapping[str, Any]) -> tuple[Contribution, ...]:
    items: list[Contribution] = []
    if row.get("contributions"):
        for c in json.loads(row["contributions"]):
            items.append(
                Contribution(
                    source=str(c["rule"]),
                    points=_as_float(c.get("points")),
                    decayed=float(c["decayed"]),
                    age_days=_as_float(c.get("age_days")),
                    half_life_days=_as_float(c.get("half_life_days")),
                    events=None if c.get("events") is None else int(c["events"]),
                )
            )
    elif row.get("reasons"):
        # A score from before `contributions` existed: the top reasons, with points only.
        for r in json.loads(row["reasons"]):
            pts = float(r["points"])
            items.append(Contribution(str(r["rule"]), None, pts, None, None, None))
    return tuple(sorted(items, key=lambda c: (-abs(c.decayed), c.source)))


def _history(uid: str, ledger: pl.DataFrame) -> tuple[Transition, ...]:
    if "unified_id" not in ledger.columns:
        return ()
    # A stable sort: rows stamped in the same instant keep the order they were appended in.
    rows = ledger.filter(pl.col("unified_id") == uid).sort(
        "at", maintain_order=True, nulls_last=True
    )
    return tuple(
        Transition(
            from_stage=r.get("from_stage"),
            to_stage=str(r.get("to_stage")),
            rule=r.get("rule"),
            reason=r.get("reason"),
            definition_version=r.get("definition_version"),
            at=r.get("at"),
        )
        for r in rows.to_dicts()
    )


def _next_content(uid: str, assignments: pl.DataFrame) -> NextContent | None:
    if "unified_id" not in assignments.columns:
        return None
    rows = assignments.filter(pl.col("unified_id") == uid).to_dicts()
    if not rows:
        return None
    r = rows[0]
    return NextContent(
        status=r.get("status"),
        template_id=r.get("template_id"),
        subject=r.get("next_subject"),
        why=r.get("reason"),
        channel=r.get("channel"),
        locale=r.get("locale"),
        due_at=r.get("due_at"),
    )


def _first_row(frame: pl.DataFrame, uid: str) -> dict[str, Any]:
    if "unified_id" not in frame.columns:
        return {}
    rows = frame.filter(pl.col("unified_id") == uid).head(1).to_dicts()
    return rows[0] if rows else {}


def explain(
    key: str,
    *,
    leads: pl.DataFrame,
    identity: pl.DataFrame,
    unified: pl.DataFrame,
    scores: pl.DataFrame,
    stages: pl.DataFrame,
    ledger: pl.DataFrame,
    assignments: pl.DataFrame,
    country_regions: Mapping[str, str] | None = None,
) -> Explanation | None:
    """Explain the lead `key` names (email, record id or unified id), or None if none matches.

    The frames are the persisted ones: leads_normalized, identity, unified_leads, scores, stages,
    the stage ledger (LEDGER_SCHEMA) and nurture_assignments. `country_regions` (ISO country ->
    region code, `LeadDefinition.country_regions()`) names the lead's regional overlay.
    """
    matched_by, ids = find_unified_ids(key, leads=leads, identity=identity, unified=unified)
    if not ids:
        return None
    uid = ids[0]
    lead = _first_row(unified, uid)
    score = _first_row(scores, uid)
    stage = _first_row(stages, uid)
    country = lead.get("country")
    region = None
    if country and country_regions:
        region = country_regions.get(str(country).strip().upper())
    return Explanation(
        unified_id=uid,
        matched_by=matched_by,
        name=_name(lead),
        company=lead.get("company"),
        email=lead.get("email"),
        country=country,
        region=region,
        members=_members(uid, lead, leads, identity),
        fit_score=score.get("fit_score"),
        engagement_score=score.get("engagement_score"),
        score=score.get("score"),
        temperature=score.get("temperature"),
        hand_raise=score.get("hand_raise"),
        contributions=_contributions(score),
        stage=stage.get("stage"),
        stage_entered_at=stage.get("stage_entered_at"),
        history=_history(uid, ledger),
        next_content=_next_content(uid, assignments),
        other_matches=tuple(ids[1:]),
    )
