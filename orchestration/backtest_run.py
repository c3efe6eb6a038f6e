"""The scoring backtest's data: sandbox generator -> scored unified leads with known outcomes.

`leadsync definition backtest` and `benchmarks/backtest.py` run the worker's own steps on the
generator's records, in process and without HTTP: the records are flattened into the frames of
strings the state store hands the normaliser (`raw_frames`, as the connectors flatten API
records), then `normalize_leads` / `normalize_activities`, the quality quarantine, identity
resolution with the definition's identity rules, golden records and the per-lead timeline, as
`orchestration/defs/leads.py` chains them. The generator's truth maps each unified lead to a
person and its outcome (`orchestration.funnel.backtest`).

This module sits in `orchestration/` rather than `orchestration/funnel/` because it imports
`connectors.sandbox` (the generator), which the import contracts forbid the pure domain code; and
rather than in `benchmarks/` because the `leadsync` command (an installed package) needs it.

Identity, unification and the timeline do not depend on the scoring rules, so they are built once
(with the current definition's field mappings and identity rules) and shared by both definitions
of a comparison: only the scoring differs, which is the change being tested.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from connectors.sandbox.generator import DEFAULT_NOW, Record, SandboxDataset, generate
from orchestration.funnel import identity, normalize, quality, unify
from orchestration.funnel.backtest import (
    Backtest,
    Comparison,
    backtest,
    compare,
    lead_outcomes,
    lead_persons,
    score_for_backtest,
)
from orchestration.funnel.definition import LeadDefinition
from orchestration.store import field_text, payload_frame

DEFAULT_SIZE = 3000
DEFAULT_SEED = 7  # the demo's seed

# The CRM objects the worker pulls (orchestration/defs/leads.py RAW_SOURCES).
_HUBSPOT_CRM = ("contacts", "companies", "emails", "calls", "meetings", "notes")
_SALESFORCE = (
    "Lead",
    "Contact",
    "Account",
    "Task",
    "Event",
    "Campaign",
    "CampaignMember",
    "Opportunity",
    "OpportunityContactRole",
)


@dataclass(frozen=True)
class BacktestData:
    """Live unified leads (golden records), their timeline (ACTIVITY_SCHEMA + unified_id, every
    type: the backtest drops the sales-side ones itself) and each lead's person and outcome
    (LEAD_OUTCOME_SCHEMA), for `size` generated people scored as of `now`."""

    unified: pl.DataFrame
    activities: pl.DataFrame
    outcomes: pl.DataFrame
    persons: pl.DataFrame
    size: int
    seed: int
    now: datetime

    def describe(self) -> dict[str, Any]:
        """Counts for a header: people, unified leads, activities, opportunities, wins, and the
        leads whose records are not all one person's (false merges)."""
        return {
            "people": self.size,
            "seed": self.seed,
            "now": self.now.isoformat(),
            "unified_leads": self.unified.height,
            "activities": self.activities.height,
            "opportunity_leads": int(self.outcomes["became_opportunity"].sum()),
            "won_leads": int(self.outcomes["won"].sum()),
            "mixed_person_leads": self.persons.filter(pl.col("person_share") < 1).height,
        }


# --------------------------------------------------------------------------------------------
# Generator load format -> the frames of strings the store keeps
# --------------------------------------------------------------------------------------------


def _text(value: object, *, salesforce: bool) -> str | None:
    # Times as the CRM APIs write them: HubSpot "...000Z", Salesforce "...000+0000".
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.000" + ("+0000" if salesforce else "Z"))
    return field_text(value)


def _hubspot_row(record: Mapping[str, Any], obj: str) -> dict[str, Any]:
    """A HubSpot record flattened as the connector flattens it: id, every property, archived,
    the derived creation/modified dates; engagements carry `contact_ids`; timeline events keep
    their top-level fields with the properties spread beside them."""
    row: dict[str, Any] = {
        k: _text(v, salesforce=False)
        for k, v in record.items()
        if k not in ("properties", "associations", "createdAt", "updatedAt")
    }
    properties = record.get("properties")
    if isinstance(properties, Mapping):
        row.update({k: _text(v, salesforce=False) for k, v in properties.items()})
    if obj == "web_events":
        return row
    row["id"] = str(record["id"])
    row["hs_object_id"] = row["id"]
    for name, key in (("createdate", "createdAt"), ("lastmodifieddate", "updatedAt")):
        if isinstance(record.get(key), datetime):
            row.setdefault(name, _text(record[key], salesforce=False))
    row["archived"] = "true" if record.get("archived") else "false"
    if obj not in ("contacts", "companies"):
        associations = record.get("associations") or {}
        row["contact_ids"] = sorted(map(str, associations.get("contacts") or []), key=int)
    return row


def raw_frames(
    hubspot: Mapping[str, Sequence[Record]], salesforce: Mapping[str, Sequence[Record]]
) -> dict[str, pl.DataFrame]:
    """Generator records -> the "<system>:<object>" frames of strings that `normalize_leads`,
    `normalize_activities` and `normalize_outcomes` read, for every object the worker pulls."""
    raw: dict[str, pl.DataFrame] = {}
    for obj in (*_HUBSPOT_CRM, "web_events"):
        raw[f"hubspot:{obj}"] = payload_frame([_hubspot_row(r, obj) for r in hubspot.get(obj, [])])
    for obj in _SALESFORCE:
        raw[f"salesforce:{obj}"] = payload_frame(
            [{k: _text(v, salesforce=True) for k, v in r.items()} for r in salesforce.get(obj, [])]
        )
    return raw


# --------------------------------------------------------------------------------------------
# The pipeline, in process
# --------------------------------------------------------------------------------------------


def prepare(dataset: SandboxDataset, definition: LeadDefinition) -> dict[str, pl.DataFrame]:
    """Unified leads, timeline, identity and truth frames from one generated dataset, by the
    worker's own steps (normalise, quarantine, resolve, unify, attach activities)."""
    raw = raw_frames(dataset.hubspot, dataset.salesforce)
    leads, _quarantined = quality.quarantine(
        normalize.normalize_leads(raw, definition.field_mappings)
    )
    rules = definition.identity
    settings = identity.IdentitySettings(
        auto_merge_weight=rules.auto_merge_weight,
        review_weight=rules.review_weight,
        max_merge_share=rules.max_merge_share,
        max_block_size=rules.max_block_size,
        title_merge_weight=rules.title_merge_weight,
    )
    assignments = identity.resolve(leads, settings=settings)
    golden = unify.golden_records(leads, assignments, normalize.normalize_outcomes(raw))
    timeline = normalize.normalize_activities(raw).join(
        assignments.select("record_id", "unified_id"), on="record_id", how="inner"
    )
    truth = pl.DataFrame(
        {
            "record_id": [row.key for row in dataset.truth],
            "person_id": [row.person_id for row in dataset.truth],
        },
        schema={"record_id": pl.String(), "person_id": pl.String()},
    )
    return {
        "unified": golden.filter(~pl.col("is_deleted").fill_null(False)),
        "activities": timeline,
        "identity": assignments,
        "truth": truth,
    }


def outcome_frame(dataset: SandboxDataset) -> pl.DataFrame:
    """The generator's per-person outcomes (person_id, became_opportunity, won)."""
    return pl.DataFrame(
        {
            "person_id": [o.person_id for o in dataset.outcomes],
            "became_opportunity": [o.became_opportunity for o in dataset.outcomes],
            "won": [o.won for o in dataset.outcomes],
        },
        schema={"person_id": pl.String(), "became_opportunity": pl.Boolean(), "won": pl.Boolean()},
    )


def load_data(
    definition: LeadDefinition,
    *,
    size: int = DEFAULT_SIZE,
    seed: int = DEFAULT_SEED,
    now: datetime = DEFAULT_NOW,
) -> BacktestData:
    """Generate `size` people with `seed` as of `now` and run them through the worker's steps."""
    dataset = generate(size, seed, now=now)
    parts = prepare(dataset, definition)
    live = parts["unified"].select("unified_id")
    persons = lead_persons(parts["identity"], parts["truth"]).join(live, on="unified_id")
    return BacktestData(
        unified=parts["unified"],
        activities=parts["activities"],
        outcomes=lead_outcomes(persons, outcome_frame(dataset)),
        persons=persons,
        size=size,
        seed=seed,
        now=now,
    )


def run(data: BacktestData, definition: LeadDefinition) -> Backtest:
    """Score `data` under `definition` (sales-side activity left out) and backtest it."""
    scored = score_for_backtest(data.unified, data.activities, definition, now=data.now)
    return backtest(scored, data.outcomes, definition)


def run_comparison(
    data: BacktestData, current: LeadDefinition, proposed: LeadDefinition
) -> Comparison:
    """Backtest both definitions on the same leads, timeline and outcomes, side by side."""
    return compare(run(data, current), run(data, proposed))
