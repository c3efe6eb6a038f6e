"""The lead definition: one validated YAML file shared by every team, plus regional overlays.

`load_definition` reads `lead_definition/global.yaml` and every `regions/<code>.yaml` next to it,
validates them with strict pydantic models (unknown keys are rejected, so a typo cannot silently
disable a rule) and stamps the set with a version: the first 12 hex digits of the sha256 over the
global file's bytes and then each overlay's name and bytes in name order (with no overlays
this is the sha256 of the global file alone). Every stage transition records that version, so a
funnel report can always say which rules produced it.

A regional overlay names the countries it covers and may change only what `OVERRIDABLE` lists
(thresholds, weights, keywords, SLA hours, the nurture fallback locale), never the stage list: the
stage order is fixed here in code and the global file must agree with it. The overrides are merged
over the global file and the result is validated by the same `LeadDefinition` model, so every
cross-check holds in every region. `LeadDefinition.for_region` returns that merged definition.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from orchestration.funnel.model import ACTIVITY_TYPES, BANT_CRITERIA

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "lead_definition" / "global.yaml"
# Regional overlays live in this folder next to the global file, one `<code>.yaml` per region.
REGIONS_DIR = "regions"

# The lifecycle in forward order. Fixed in code because every consumer (stage ledger, funnel report,
# CRM picklists) depends on it; the YAML describes these stages but may not reorder or rename them.
STAGE_ORDER: tuple[str, ...] = ("Lead", "MAL", "MQL", "SAL", "SQL", "Opportunity", "Customer")
# Stages outside the forward order, reached only along declared backward edges.
OFF_FUNNEL_STAGES: tuple[str, ...] = ("Recycled", "Disqualified")
ALL_STAGES: tuple[str, ...] = STAGE_ORDER + OFF_FUNNEL_STAGES

# Canonical output columns the write-back may map to CRM fields.
WRITEBACK_COLUMNS: tuple[str, ...] = (
    "unified_id",
    "stage",
    "fit_score",
    "engagement_score",
    "score",
    "temperature",
    "next_template_id",
    "next_subject",
    # The rendered nurture email: its content link, or its whole body (writeback chooses).
    "next_content_url",
    "next_body",
    # The SLA clock of the lead's stage: on_track, breached or none (see stages.sla_columns).
    "sla_status",
    # The CRMs' own lifecycle fields, mapped from the stage (writeback.lifecycle).
    "hubspot_lifecyclestage",
    "salesforce_lead_status",
)

# What a regional overlay may change: the one list, as dotted paths into the definition, where "*"
# matches any single key and a path covers everything below it. Scoring numbers, keywords and SLA
# hours differ by market; the stages, the backward edges, what a hand-raise is, the field mappings,
# the Salesforce status meanings, what qualifies (BANT(C)) and accepts (queue ownership) a lead,
# write-back ownership and identity rules do not, because the stage ledger, the funnel report and
# both CRMs must mean the same thing in every country: an SQL in Japan passed the same test as an
# SQL in the US, or the waterfall compares different things.
OVERRIDABLE: tuple[str, ...] = (
    "scoring.thresholds",
    "scoring.temperature",
    "scoring.fit.employee_bands",
    "scoring.fit.seniority",
    "scoring.fit.industries",
    "scoring.fit.countries",
    "scoring.engagement.half_life_days",
    "scoring.engagement.total_cap",
    "scoring.engagement.activities.*.points",
    "scoring.engagement.activities.*.cap",
    "scoring.engagement.activities.*.half_life_days",
    "scoring.negatives.competitor",
    "scoring.negatives.free_mail.points",
    "scoring.negatives.student",
    "scoring.negatives.inactivity",
    "sla.mql_to_sal_hours",
    "sla.sal_to_sql_hours",
    "nurture.fallback_locale",
)
_OVERRIDABLE_PARTS: tuple[tuple[str, ...], ...] = tuple(tuple(p.split(".")) for p in OVERRIDABLE)

# Fields of LeadDefinition that the loader sets; a file may not.
LOADER_FIELDS: tuple[str, ...] = ("version", "source_path", "file_versions", "regions", "region")


@dataclass(frozen=True)
class DefinitionProblem:
    """One thing wrong with a definition file, where a person can find it."""

    path: str
    line: int | None  # 1-based; None when the problem has no single place in the file
    key: str  # dotted path of the key, e.g. "scoring.thresholds.mql_score_min"
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.key}: {self.message}"


class DefinitionError(ValueError):
    """The definition file is missing, unparsable or invalid; the message names file and key."""

    def __init__(self, problems: list[DefinitionProblem] | str) -> None:
        if isinstance(problems, str):
            problems = [DefinitionProblem("<definition>", None, "<root>", problems)]
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- stages -----------------------------------------------------------------------------------


class StageDef(_Strict):
    name: str
    owner: Literal["marketing", "sales"]
    description: str
    # What the CRMs' own lifecycle fields say for this stage; written when writeback.lifecycle
    # says so. None: leadsync never writes that value (Salesforce sets "Closed - Converted"
    # itself when a lead is converted; leadsync never fakes a conversion).
    hubspot_lifecyclestage: str
    salesforce_lead_status: str | None


class BackwardEdge(_Strict):
    from_stages: list[str] = Field(alias="from", min_length=1)
    to: str
    reasons: list[str] = Field(min_length=1)
    description: str = ""

    def allows(self, from_stage: str, to_stage: str) -> bool:
        """Whether this edge permits from_stage → to_stage."""
        return to_stage == self.to and ("*" in self.from_stages or from_stage in self.from_stages)


class BackwardEdges(_Strict):
    recycle: BackwardEdge
    disqualify: BackwardEdge
    reopen: BackwardEdge

    def all(self) -> dict[str, BackwardEdge]:
        """The declared edges by name."""
        return {"recycle": self.recycle, "disqualify": self.disqualify, "reopen": self.reopen}


class SalesReentry(_Strict):
    from_stages: list[str] = Field(alias="from")
    min_stage: str


# --- scoring ----------------------------------------------------------------------------------


class EmployeeBand(_Strict):
    min: int = Field(ge=0)
    max: int | None = None
    points: int

    @model_validator(mode="after")
    def _ordered(self) -> EmployeeBand:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


class PointsList(_Strict):
    points: int
    values: list[str]


class FitRules(_Strict):
    employee_bands: list[EmployeeBand]
    seniority: dict[str, dict[str, int]]
    industries: PointsList
    countries: PointsList

    @field_validator("employee_bands")
    @classmethod
    def _bands_do_not_overlap(cls, bands: list[EmployeeBand]) -> list[EmployeeBand]:
        ordered = sorted(bands, key=lambda b: b.min)
        for low, high in itertools.pairwise(ordered):
            if low.max is None or low.max >= high.min:
                raise ValueError(f"band starting at {low.min} overlaps band starting at {high.min}")
        return bands

    @field_validator("seniority")
    @classmethod
    def _has_en(cls, seniority: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        # en is the fallback for every locale, so it must exist.
        if "en" not in seniority:
            raise ValueError("an 'en' keyword list is required (it is the fallback locale)")
        return seniority


class ActivityPoints(_Strict):
    points: int
    # Absolute limit of the decayed sum for this type (a negative type is limited to -cap).
    cap: int = Field(ge=0)
    half_life_days: float | None = Field(default=None, gt=0)


class EngagementRules(_Strict):
    half_life_days: float = Field(gt=0)
    total_cap: int = Field(ge=0)
    activities: dict[str, ActivityPoints]

    @field_validator("activities")
    @classmethod
    def _every_activity_type(cls, acts: dict[str, ActivityPoints]) -> dict[str, ActivityPoints]:
        unknown = sorted(set(acts) - set(ACTIVITY_TYPES))
        missing = [t for t in ACTIVITY_TYPES if t not in acts]
        if unknown:
            raise ValueError(f"unknown activity types {unknown}; known: {list(ACTIVITY_TYPES)}")
        if missing:
            raise ValueError(f"points missing for activity types {missing}")
        return acts

    def half_life(self, activity_type: str) -> float:
        """The half-life in days for one activity type (its own, else the global one)."""
        own = self.activities[activity_type].half_life_days
        return own if own is not None else self.half_life_days


class CompetitorRule(_Strict):
    points: int
    domains: list[str]


class PointsOnly(_Strict):
    points: int


class StudentRule(_Strict):
    points: int
    email_domain_suffixes: list[str]
    title_keywords: list[str]


class InactivityRule(_Strict):
    days: int = Field(gt=0)
    points: int


class NegativeRules(_Strict):
    competitor: CompetitorRule
    free_mail: PointsOnly
    student: StudentRule
    inactivity: InactivityRule


class Thresholds(_Strict):
    mal_fit_min: int
    mql_score_min: int


class TemperatureBands(_Strict):
    warm_min: int
    hot_min: int

    @model_validator(mode="after")
    def _ordered(self) -> TemperatureBands:
        if not self.warm_min < self.hot_min:
            raise ValueError("warm_min must be below hot_min")
        return self


class HandRaise(_Strict):
    activity_types: list[str] = Field(min_length=1)
    window_days: int = Field(gt=0)

    @field_validator("activity_types")
    @classmethod
    def _known(cls, types: list[str]) -> list[str]:
        unknown = sorted(set(types) - set(ACTIVITY_TYPES))
        if unknown:
            raise ValueError(f"unknown activity types {unknown}")
        return types


class Scoring(_Strict):
    fit: FitRules
    engagement: EngagementRules
    negatives: NegativeRules
    thresholds: Thresholds
    temperature: TemperatureBands
    hand_raise: HandRaise


# --- SLA, sales status ------------------------------------------------------------------------


class Sla(_Strict):
    """How long sales may take: MQL -> SAL (accept) and SAL -> SQL (qualify), in wall-clock
    hours from the moment leadsync recorded the stage. On a breach the lead is flagged in both
    CRMs; with breach_action recycle it also goes back to marketing (reason sla_breach)."""

    mql_to_sal_hours: int = Field(gt=0)
    sal_to_sql_hours: int = Field(gt=0)
    breach_action: Literal["recycle", "alert"]


class SalesStatus(_Strict):
    open: list[str]
    sal: list[str]
    sql: list[str]
    disqualified: dict[str, str]
    recycle: dict[str, str]
    sgl_lead_sources: list[str]


class BantRule(_Strict):
    """When the BANT(C) checkboxes sales ticked make a lead an SQL: every criterion in `required`
    is confirmed and at least `min_confirmed` of the five are. "Pass when Need and Timeline are
    clear even if Budget and Authority are unknown" is `required: [need, timeline]`,
    `min_confirmed: 2`. Criteria: budget, authority, need, timeline, competitor."""

    required: list[str] = Field(default_factory=list)
    min_confirmed: int = Field(ge=1, le=len(BANT_CRITERIA))

    @field_validator("required")
    @classmethod
    def _known_criteria(cls, required: list[str]) -> list[str]:
        unknown = [c for c in required if c not in BANT_CRITERIA]
        if unknown:
            raise ValueError(f"unknown BANT(C) criteria {unknown}; known: {list(BANT_CRITERIA)}")
        return _unique(required, "criteria")

    @model_validator(mode="after")
    def _reachable(self) -> BantRule:
        # A rule asking for fewer confirmed criteria than it requires by name would mean
        # something other than it says; one asking for more is fine (any further criteria).
        if self.min_confirmed < len(self.required):
            raise ValueError(
                f"min_confirmed ({self.min_confirmed}) is below the number of required criteria "
                f"({len(self.required)})"
            )
        return self


class SalesQualification(_Strict):
    """Sales evidence for SQL besides Lead.Status. `bant` null (or absent): no BANT(C) rule."""

    bant: BantRule | None = None


class SalesAcceptance(_Strict):
    """Salesforce lead queues: with `queue_routing`, MQLs are routed to a queue (an OwnerId that
    starts with `queue_id_prefix`) and a salesperson accepts one by taking ownership (the queue's
    Accept button makes a user, `user_id_prefix`, the owner): a lead with MQL evidence owned by a
    user is a SAL. Off: the owner says nothing about acceptance (orgs that assign leads to reps
    straight away, where an owner is not a decision)."""

    queue_routing: bool = False
    queue_id_prefix: str = Field(default="00G", pattern=r"^[0-9A-Za-z]{3}$")
    user_id_prefix: str = Field(default="005", pattern=r"^[0-9A-Za-z]{3}$")

    @model_validator(mode="after")
    def _distinct(self) -> SalesAcceptance:
        if self.queue_id_prefix == self.user_id_prefix:
            raise ValueError("queue_id_prefix and user_id_prefix must differ")
        return self


# --- write-back -------------------------------------------------------------------------------


class FieldSpec(_Strict):
    column: str
    owner: Literal["leadsync", "crm"] = "leadsync"

    @field_validator("column")
    @classmethod
    def _known_column(cls, column: str) -> str:
        if column not in WRITEBACK_COLUMNS:
            raise ValueError(f"unknown output column {column!r}; known: {list(WRITEBACK_COLUMNS)}")
        return column


class HubSpotProperty(FieldSpec):
    label: str
    type: Literal["string", "number", "enumeration", "datetime", "bool"]
    field_type: Literal["text", "textarea", "number", "select", "date", "booleancheckbox"] = Field(
        alias="fieldType"
    )
    options: list[str] | None = None

    @model_validator(mode="after")
    def _options_for_enumerations(self) -> HubSpotProperty:
        if self.type == "enumeration" and not self.options:
            raise ValueError("an enumeration needs options")
        return self

    def to_api(self, name: str, group_name: str) -> dict[str, Any]:
        """The body HubSpot's properties API takes to create this contact property."""
        body: dict[str, Any] = {
            "name": name,
            "label": self.label,
            "type": self.type,
            "fieldType": self.field_type,
            "groupName": group_name,
        }
        if self.options:
            body["options"] = [
                {"label": o, "value": o, "displayOrder": i, "hidden": False}
                for i, o in enumerate(self.options)
            ]
        return body


class HubSpotWriteback(_Strict):
    object: str
    group_name: str
    properties: dict[str, HubSpotProperty]


class SalesforceWriteback(_Strict):
    objects: list[str] = Field(min_length=1)
    fields: dict[str, FieldSpec]


class LifecycleFollow(_Strict):
    """Whether the CRMs' own lifecycle fields follow the ledger (each stage's mapping)."""

    # HubSpot contacts' lifecyclestage. HubSpot only moves it forward in its own order (a move
    # back needs the value cleared first), so leadsync writes forward moves only and leaves a
    # recycled lead's lifecyclestage where it was; leadsync_stage always says Recycled.
    hubspot_lifecyclestage: bool = False
    hubspot_order: list[str] = Field(
        default_factory=lambda: [
            "subscriber",
            "lead",
            "marketingqualifiedlead",
            "salesqualifiedlead",
            "opportunity",
            "customer",
            "evangelist",
            "other",
        ]
    )
    # Salesforce Lead.Status (Leads only; Contacts have no status). A status that already means
    # the lead's stage (any of sales_status' values for it) is left as the salesperson set it.
    salesforce_lead_status: bool = False


class Writeback(_Strict):
    hubspot: HubSpotWriteback
    salesforce: SalesforceWriteback
    lifecycle: LifecycleFollow = Field(default_factory=LifecycleFollow)


# --- nurture ----------------------------------------------------------------------------------


class FrequencyCap(_Strict):
    max_sends: int = Field(ge=1)
    per_days: int = Field(ge=1)


class NurturePolicy(_Strict):
    exhausted_policy: Literal["evergreen", "pause"]
    fallback_locale: str = "en"
    frequency_cap: FrequencyCap
    default_cooldown_days: int = Field(ge=0)
    # The site the content and unsubscribe links point at: <base>/<locale>/resources/<template id>
    # and <base>/email/unsubscribe?lead=<unified id>.
    link_base_url: str = Field(default="https://www.example.com", pattern=r"^https?://[^\s]+$")


# --- identity ---------------------------------------------------------------------------------


class IdentityRules(_Strict):
    """Decision thresholds of the identity resolver; global only, never regional."""

    auto_merge_weight: float = Field(allow_inf_nan=False)
    review_weight: float = Field(allow_inf_nan=False)
    max_merge_share: float = Field(gt=0, le=1)
    max_block_size: int = Field(ge=2)
    title_merge_weight: float = Field(allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> IdentityRules:
        if not self.review_weight < self.auto_merge_weight:
            raise ValueError(
                f"review_weight ({self.review_weight}) must be below auto_merge_weight "
                f"({self.auto_merge_weight})"
            )
        if self.title_merge_weight < self.auto_merge_weight:
            raise ValueError(
                f"title_merge_weight ({self.title_merge_weight}) must not be below "
                f"auto_merge_weight ({self.auto_merge_weight})"
            )
        return self


# --- regional overlays ------------------------------------------------------------------------

_Country = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
_Locale = Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[a-z0-9]{2,8})?$")]


def _unique(values: list[str], what: str) -> list[str]:
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"{what} listed more than once: {repeated}")
    return values


class RegionOverlay(_Strict):
    """One lead_definition/regions/<code>.yaml: its countries, locales and overrides."""

    region: str = Field(pattern=r"^[a-z]{2,8}$")
    description: str = ""
    # ISO 3166-1 alpha-2, as the canonical `country` column holds them.
    countries: list[_Country] = Field(min_length=1)
    # The languages the region's leads are addressed in, most preferred first; a lead without a
    # locale is read in the first one.
    locales: list[_Locale] = Field(min_length=1)
    overrides: dict[str, Any] = Field(default_factory=dict)
    # Not in the file: set by the loader.
    version: str = ""
    source_path: str = ""

    @field_validator("overrides", mode="before")
    @classmethod
    def _none_is_empty(cls, overrides: object) -> object:
        # `overrides:` with every line under it commented out is an overlay that changes nothing.
        return {} if overrides is None else overrides

    @field_validator("countries")
    @classmethod
    def _unique_countries(cls, countries: list[str]) -> list[str]:
        return _unique(countries, "countries")

    @field_validator("locales")
    @classmethod
    def _unique_locales(cls, locales: list[str]) -> list[str]:
        return _unique(locales, "locales")


# --- the whole file ---------------------------------------------------------------------------


class LeadDefinition(_Strict):
    schema_version: Literal[1]
    field_mappings: dict[str, dict[str, str]]
    stages: list[StageDef]
    off_funnel_stages: list[StageDef]
    backward_edges: BackwardEdges
    sales_reentry: SalesReentry
    scoring: Scoring
    sla: Sla
    sales_status: SalesStatus
    # Optional sections (absent: no BANT rule, no queue routing), so definitions written before
    # them still load and mean what they meant.
    sales_qualification: SalesQualification = Field(default_factory=SalesQualification)
    sales_acceptance: SalesAcceptance = Field(default_factory=SalesAcceptance)
    writeback: Writeback
    nurture: NurturePolicy
    identity: IdentityRules
    # Not in the file: set by the loader (LOADER_FIELDS). `version` identifies the global file and
    # every overlay together; `file_versions` has each file's own sha256 prefix by its name
    # relative to the definition folder ("global.yaml", "regions/jp.yaml").
    version: str = ""
    source_path: str = ""
    file_versions: dict[str, str] = Field(default_factory=dict)
    regions: dict[str, RegionOverlay] = Field(default_factory=dict)
    # Set on the merged definition `for_region` returns: the region it was merged for.
    region: str | None = None

    _merged: dict[str, LeadDefinition] = PrivateAttr(default_factory=dict)
    _texts: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("stages")
    @classmethod
    def _fixed_order(cls, stages: list[StageDef]) -> list[StageDef]:
        names = tuple(s.name for s in stages)
        if names != STAGE_ORDER:
            raise ValueError(f"stages must be exactly {list(STAGE_ORDER)} in order, got {names}")
        return stages

    @field_validator("off_funnel_stages")
    @classmethod
    def _fixed_off_funnel(cls, stages: list[StageDef]) -> list[StageDef]:
        names = tuple(s.name for s in stages)
        if names != OFF_FUNNEL_STAGES:
            raise ValueError(f"off_funnel_stages must be exactly {list(OFF_FUNNEL_STAGES)}")
        return stages

    @model_validator(mode="after")
    def _references(self) -> LeadDefinition:
        # Cross-section checks: edges and reason codes must point at things that exist.
        for name, edge in self.backward_edges.all().items():
            bad = [s for s in [*edge.from_stages, edge.to] if s != "*" and s not in ALL_STAGES]
            if bad:
                raise ValueError(f"backward_edges.{name}: unknown stages {bad}")
        for s in [*self.sales_reentry.from_stages, self.sales_reentry.min_stage]:
            if s not in ALL_STAGES:
                raise ValueError(f"sales_reentry: unknown stage {s!r}")
        dq_reasons = set(self.backward_edges.disqualify.reasons)
        for status, reason in self.sales_status.disqualified.items():
            if reason not in dq_reasons:
                raise ValueError(
                    f"sales_status.disqualified.{status}: reason {reason!r} is not one of the "
                    f"disqualify edge's reasons {sorted(dq_reasons)}"
                )
        recycle_reasons = set(self.backward_edges.recycle.reasons)
        for status, reason in self.sales_status.recycle.items():
            if reason not in recycle_reasons:
                raise ValueError(
                    f"sales_status.recycle.{status}: reason {reason!r} is not one of the recycle "
                    f"edge's reasons {sorted(recycle_reasons)}"
                )
        if self.sla.breach_action == "recycle" and "sla_breach" not in recycle_reasons:
            raise ValueError(
                "sla.breach_action is recycle, so backward_edges.recycle.reasons must include "
                "'sla_breach'"
            )
        for req in ("competitor", "student"):
            if req not in dq_reasons:
                raise ValueError(f"backward_edges.disqualify.reasons must include {req!r}")
        return self

    # Regions.

    def for_region(self, code: str | None) -> LeadDefinition:
        """The rules one region works by: these rules with its overrides (None: these rules)."""
        if code is None or code == self.region:
            return self
        overlay = self.regions.get(code)
        if overlay is None:
            raise KeyError(f"unknown region {code!r}; known: {sorted(self.regions)}")
        merged = self._merged.get(code)
        if merged is None:
            try:
                merged = merge_overlay(self, overlay)
            except ValidationError as exc:
                raise DefinitionError(
                    [
                        DefinitionProblem(
                            overlay.source_path or code,
                            None,
                            "overrides." + _format_loc(e["loc"]),
                            e["msg"],
                        )
                        for e in exc.errors()
                    ]
                ) from exc
            self._merged[code] = merged
        return merged

    def country_regions(self) -> dict[str, str]:
        """ISO country code -> region code, for every country some overlay covers."""
        return {c: code for code, overlay in self.regions.items() for c in overlay.countries}

    def region_of_country(self, country: str | None) -> str | None:
        """The region whose overlay covers this country, or None (the global rules apply)."""
        if not country:
            return None
        return self.country_regions().get(country.strip().upper())

    def recorded_content(self) -> str:
        """The text of every file behind `version`, as stored with the runs that used it."""
        texts = self._texts
        if not texts:
            return ""
        names = list(texts)
        # The global file first, unchanged, so a definition without overlays stores what it
        # always stored; each overlay follows under a header naming it.
        parts = [texts[names[0]]]
        parts += [f"\n# ---- {name} ----\n{texts[name]}" for name in sorted(names[1:])]
        return "".join(parts)

    # Convenience accessors used by the domain code.

    def stage_rank(self, stage: str) -> int:
        """Position of a forward stage in STAGE_ORDER (ValueError for off-funnel stages)."""
        return STAGE_ORDER.index(stage)

    def writeback_field_rows(self) -> list[dict[str, str]]:
        """One row per (system, object, field): the canonical column it carries and its owner."""
        rows: list[dict[str, str]] = []
        hs = self.writeback.hubspot
        for name, prop in hs.properties.items():
            rows.append(
                {
                    "system": "hubspot",
                    "object": hs.object,
                    "field": name,
                    "column": prop.column,
                    "owner": prop.owner,
                }
            )
        sf = self.writeback.salesforce
        for obj in sf.objects:
            for name, spec in sf.fields.items():
                rows.append(
                    {
                        "system": "salesforce",
                        "object": obj,
                        "field": name,
                        "column": spec.column,
                        "owner": spec.owner,
                    }
                )
        follow = self.writeback.lifecycle
        if follow.hubspot_lifecyclestage:
            rows.append(
                {
                    "system": "hubspot",
                    "object": hs.object,
                    "field": "lifecyclestage",
                    "column": "hubspot_lifecyclestage",
                    "owner": "leadsync",
                }
            )
        if follow.salesforce_lead_status and "Lead" in sf.objects:
            rows.append(
                {
                    "system": "salesforce",
                    "object": "Lead",
                    "field": "Status",
                    "column": "salesforce_lead_status",
                    "owner": "leadsync",
                }
            )
        return rows

    def writeback_fields(self, system: str) -> list[str]:
        """The names of the fields leadsync writes in one CRM ("hubspot" or "salesforce"): its
        own, plus the CRM's lifecycle field where `writeback.lifecycle` turns it on."""
        if system not in ("hubspot", "salesforce"):
            raise ValueError(f"unknown system {system!r}")
        rows = self.writeback_field_rows()
        return list(dict.fromkeys(r["field"] for r in rows if r["system"] == system))

    def hubspot_property_definitions(self) -> list[dict[str, Any]]:
        """Bodies for HubSpot's create-property API, one per leadsync contact property."""
        hs = self.writeback.hubspot
        return [prop.to_api(name, hs.group_name) for name, prop in hs.properties.items()]


def _format_loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "<root>"


def _sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:12]


def combined_version(global_raw: bytes, overlays: Mapping[str, bytes]) -> str:
    """The version of a global file plus overlays (name -> bytes): sha256 over the global bytes,
    then for each overlay in name order a NUL, its name, a NUL and its bytes; first 12 hex digits.

    Without overlays this is the sha256 of the global file alone, the version it always had.
    """
    digest = hashlib.sha256(global_raw)
    for name in sorted(overlays):
        digest.update(b"\0" + name.encode("utf-8") + b"\0" + overlays[name])
    return digest.hexdigest()[:12]


def _read_yaml(raw: bytes, source: str) -> tuple[yaml.Node | None, Any]:
    """(node tree, data) of YAML bytes; a syntax error is a DefinitionError naming its line."""
    try:
        return yaml.compose(raw), yaml.safe_load(raw)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = DefinitionProblem(source, line, "<root>", f"not valid YAML: {exc.problem}")
        raise DefinitionError([problem]) from exc
    except yaml.YAMLError as exc:
        raise DefinitionError([DefinitionProblem(source, None, "<root>", str(exc))]) from exc


def _duplicate_keys(
    node: yaml.Node | None, source: str, path: tuple[str, ...] = ()
) -> list[DefinitionProblem]:
    """Keys given twice in one mapping: YAML keeps the last silently, hiding the first block."""
    problems: list[DefinitionProblem] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            if name in seen:
                problems.append(
                    DefinitionProblem(
                        source,
                        key.start_mark.line + 1,
                        _format_loc((*path, name)),
                        "given twice in the same mapping; the later one would silently replace "
                        "the earlier",
                    )
                )
            seen.add(name)
            problems += _duplicate_keys(value, source, (*path, name))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems += _duplicate_keys(item, source, (*path, str(i)))
    return problems


def _reserved_keys(
    root: yaml.Node | None, data: Mapping[Any, Any], source: str, names: tuple[str, ...]
) -> list[DefinitionProblem]:
    return [
        DefinitionProblem(
            source, _line_of(root, (name,)), name, "set by the loader, not by the file"
        )
        for name in names
        if name in data
    ]


def _problems(exc: ValidationError, root: yaml.Node | None, source: str) -> list[DefinitionProblem]:
    return [
        DefinitionProblem(source, _line_of(root, e["loc"]), _format_loc(e["loc"]), e["msg"])
        for e in exc.errors()
    ]


def parse_definition(raw: bytes, *, source: str = "<memory>") -> LeadDefinition:
    """Validate global definition YAML bytes (no overlays); `source` names the file in error
    messages, and every problem carries the line of the key it is about."""
    root, data = _read_yaml(raw, source)
    if not isinstance(data, dict):
        problem = DefinitionProblem(source, 1, "<root>", "expected a mapping at the top level")
        raise DefinitionError([problem])
    problems = _duplicate_keys(root, source) + _reserved_keys(root, data, source, LOADER_FIELDS)
    if any(p.key in LOADER_FIELDS for p in problems):
        raise DefinitionError(problems)
    try:
        definition = LeadDefinition.model_validate(data)
    except ValidationError as exc:
        raise DefinitionError(problems + _problems(exc, root, source)) from exc
    if problems:
        raise DefinitionError(problems)
    version = _sha(raw)
    name = Path(source).name
    result = definition.model_copy(
        update={"version": version, "source_path": source, "file_versions": {name: version}}
    )
    result._texts = {name: raw.decode("utf-8", errors="replace")}
    result._merged = {}
    return result


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the deepest YAML node on `loc` (a pydantic error location)."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            # The last of repeated keys, as the YAML loader keeps it.
            match = next((v for k, v in reversed(node.value) if str(k.value) == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            match = node.value[part] if 0 <= part < len(node.value) else None
        else:
            match = None
        if match is None:
            break
        if isinstance(node, yaml.MappingNode):
            # Point at the key itself, which is where a person looks for it.
            key_node = next(k for k, v in node.value if v is match)
            line = key_node.start_mark.line + 1
        else:
            line = match.start_mark.line + 1
        node = match
    return line


# --- overlays: what may be overridden, merging, checking ----------------------------------------

_NOT_OVERRIDABLE = f"not overridable in a regional overlay (overridable: {', '.join(OVERRIDABLE)})"


def _prefix_match(pattern: tuple[str, ...], path: tuple[str, ...]) -> bool:
    return all(p in ("*", s) for p, s in zip(pattern, path, strict=False))


def is_overridable(path: tuple[str, ...]) -> bool:
    """Whether an overlay may set the key at this path (some OVERRIDABLE entry covers it)."""
    return any(len(p) <= len(path) and _prefix_match(p, path) for p in _OVERRIDABLE_PARTS)


def _leads_to_overridable(path: tuple[str, ...]) -> bool:
    # A mapping on the way to an overridable key (like "scoring"): look inside it.
    return any(len(p) > len(path) and _prefix_match(p, path) for p in _OVERRIDABLE_PARTS)


def non_overridable_paths(
    overrides: Mapping[Any, Any], prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    """The outermost keys in an overlay's `overrides` that OVERRIDABLE does not allow."""
    found: list[tuple[str, ...]] = []
    for key, value in overrides.items():
        path = (*prefix, str(key))
        if is_overridable(path):
            continue
        if isinstance(value, Mapping) and _leads_to_overridable(path):
            found.extend(non_overridable_paths(value, path))
        else:
            found.append(path)
    return found


def _deep_merge(base: Mapping[str, Any], over: Mapping[Any, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else (a list, a number) replaces the base value."""
    out = dict(base)
    for key, value in over.items():
        old = out.get(str(key))
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            out[str(key)] = _deep_merge(old, value)
        else:
            out[str(key)] = value
    return out


def merge_overlay(base: LeadDefinition, overlay: RegionOverlay) -> LeadDefinition:
    """The base definition with the overlay's overrides merged in, validated as a whole.

    Raises DefinitionError when the overlay touches a key that is not overridable, and pydantic's
    ValidationError (locations relative to the definition root) when the merged result is invalid.
    """
    bad = non_overridable_paths(overlay.overrides)
    if bad:
        raise DefinitionError(
            [
                DefinitionProblem(
                    overlay.source_path or overlay.region,
                    None,
                    "overrides." + ".".join(path),
                    _NOT_OVERRIDABLE,
                )
                for path in bad
            ]
        )
    data = base.model_dump(by_alias=True, exclude=set(LOADER_FIELDS))
    merged = LeadDefinition.model_validate(_deep_merge(data, overlay.overrides))
    result = merged.model_copy(
        update={
            "version": base.version,
            "source_path": base.source_path,
            "file_versions": dict(base.file_versions),
            "region": overlay.region,
        }
    )
    result._texts = base._texts
    result._merged = {}
    return result


_OVERLAY_FILE_KEYS = frozenset(RegionOverlay.model_fields) - {"version", "source_path"}


@dataclass
class _OverlayCheck:
    name: str  # relative to the definition folder, e.g. "regions/jp.yaml"
    raw: bytes
    overlay: RegionOverlay | None = None
    merged: LeadDefinition | None = None
    root: yaml.Node | None = None
    problems: list[DefinitionProblem] = field(default_factory=list)


def _check_overlay(path: Path, raw: bytes, name: str, base: LeadDefinition | None) -> _OverlayCheck:
    """Every problem of one overlay file; merged with `base` when both are valid."""
    source, check = str(path), _OverlayCheck(name, raw)
    try:
        root, data = _read_yaml(raw, source)
    except DefinitionError as exc:
        check.problems = exc.problems
        return check
    check.root = root
    if not isinstance(data, dict):
        problem = DefinitionProblem(source, 1, "<root>", "expected a mapping at the top level")
        check.problems = [problem]
        return check
    problems = _duplicate_keys(root, source)
    problems += _reserved_keys(root, data, source, ("version", "source_path"))
    fields: dict[str, Any] = {}
    for key, value in data.items():
        key = str(key)
        if key in ("version", "source_path"):
            continue
        if key in LeadDefinition.model_fields and key not in _OVERLAY_FILE_KEYS:
            # A definition key at the top level: either misplaced or not the region's to change.
            message = (
                "goes under overrides:"
                if is_overridable((key,)) or _leads_to_overridable((key,))
                else _NOT_OVERRIDABLE
            )
            problems.append(DefinitionProblem(source, _line_of(root, (key,)), key, message))
        else:
            fields[key] = value
    overlay: RegionOverlay | None = None
    not_allowed: list[tuple[str, ...]] = []
    try:
        overlay = RegionOverlay.model_validate(fields)
    except ValidationError as exc:
        problems += _problems(exc, root, source)
    if overlay is not None:
        if overlay.region != path.stem:
            problems.append(
                DefinitionProblem(
                    source,
                    _line_of(root, ("region",)),
                    "region",
                    f"{overlay.region!r} must match the file name ({path.stem!r})",
                )
            )
        not_allowed = non_overridable_paths(overlay.overrides)
        for bad in not_allowed:
            loc = ("overrides", *bad)
            problems.append(
                DefinitionProblem(source, _line_of(root, loc), _format_loc(loc), _NOT_OVERRIDABLE)
            )
        overlay = overlay.model_copy(update={"version": _sha(raw), "source_path": source})
        check.overlay = overlay
    if overlay is None or base is None:
        check.problems = problems
        return check
    # Merge what the overlay may change even when it also tries more, so one run of `validate`
    # reports the merged result's problems too.
    allowed = overlay.model_copy(update={"overrides": _without(overlay.overrides, not_allowed)})
    try:
        merged = merge_overlay(base, allowed)
    except ValidationError as exc:
        # The global file alone is valid, so the overlay broke it: point into the overlay, at the
        # deepest key of the error's path that the overlay itself sets.
        for e in exc.errors():
            loc = ("overrides", *e["loc"])
            problems.append(
                DefinitionProblem(source, _line_of(root, loc), _format_loc(loc), e["msg"])
            )
    else:
        unscored = [loc for loc in overlay.locales if loc not in merged.scoring.fit.seniority]
        if unscored:
            problems.append(
                DefinitionProblem(
                    source,
                    _line_of(root, ("locales",)),
                    "locales",
                    f"no seniority keywords for {unscored} (scoring.fit.seniority in global.yaml "
                    "or overrides): titles in them would match only the en keywords",
                )
            )
        elif not problems:
            check.merged = merged
    check.problems = problems
    return check


def _without(tree: Mapping[Any, Any], paths: list[tuple[str, ...]]) -> dict[str, Any]:
    """A copy of a nested mapping with the keys at `paths` removed."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = str(key)
        if (name,) in paths:
            continue
        below = [p[1:] for p in paths if len(p) > 1 and p[0] == name]
        out[name] = _without(value, below) if below and isinstance(value, Mapping) else value
    return out


def _shared_countries(checks: list[_OverlayCheck]) -> list[DefinitionProblem]:
    # A lead's region comes from its country, so a country may belong to one region only.
    owner: dict[str, str] = {}
    problems: list[DefinitionProblem] = []
    for check in checks:
        if check.overlay is None:
            continue
        for i, country in enumerate(check.overlay.countries):
            if country in owner:
                problems.append(
                    DefinitionProblem(
                        check.overlay.source_path,
                        _line_of(check.root, ("countries", i)),
                        f"countries.{i}",
                        f"{country} already belongs to region {owner[country]!r}; a country "
                        "belongs to one region",
                    )
                )
            else:
                owner[country] = check.overlay.region
    return problems


def _global_path(path: Path) -> Path:
    """The global file for a folder, the global file itself, or an overlay's global file."""
    path = Path(path)
    if path.is_dir():
        return path / DEFAULT_PATH.name
    if path.parent.name == REGIONS_DIR and path.suffix in (".yaml", ".yml"):
        return path.parent.parent / DEFAULT_PATH.name
    return path


def check_definition(
    path: Path = DEFAULT_PATH,
) -> tuple[LeadDefinition | None, list[DefinitionProblem]]:
    """Load the global file and every overlay in `regions/` next to it, collecting every problem
    of every file; (definition, []) when all is well, (None, problems) otherwise.

    `path` is the global file, its folder, or one of its overlays.
    """
    path = _global_path(path)
    problems: list[DefinitionProblem] = []
    raw: bytes | None = None
    try:
        raw = path.read_bytes()
    except OSError as exc:
        problems.append(DefinitionProblem(str(path), None, "<file>", f"cannot read: {exc}"))
    base: LeadDefinition | None = None
    if raw is not None:
        try:
            base = parse_definition(raw, source=str(path))
        except DefinitionError as exc:
            problems += exc.problems

    folder = path.parent / REGIONS_DIR
    checks: list[_OverlayCheck] = []
    if folder.is_dir():
        for stray in sorted(folder.glob("*.yml")):
            message = "regional overlays end in .yaml; this file is not read"
            problems.append(DefinitionProblem(str(stray), None, "<file>", message))
        for overlay_path in sorted(folder.glob("*.yaml")):
            name = f"{REGIONS_DIR}/{overlay_path.name}"
            try:
                overlay_raw = overlay_path.read_bytes()
            except OSError as exc:
                message = f"cannot read: {exc}"
                problems.append(DefinitionProblem(str(overlay_path), None, "<file>", message))
                continue
            check = _check_overlay(overlay_path, overlay_raw, name, base)
            problems += check.problems
            checks.append(check)
    problems += _shared_countries(checks)
    if problems or base is None or raw is None:
        return None, problems

    version = combined_version(raw, {c.name: c.raw for c in checks})
    file_versions = {path.name: _sha(raw)}
    texts = {path.name: raw.decode("utf-8", errors="replace")}
    regions: dict[str, RegionOverlay] = {}
    merged: dict[str, LeadDefinition] = {}
    for check in checks:
        assert check.overlay is not None and check.merged is not None  # no problems above
        file_versions[check.name] = check.overlay.version
        texts[check.name] = check.raw.decode("utf-8", errors="replace")
        regions[check.overlay.region] = check.overlay
        merged[check.overlay.region] = check.merged
    update = {"version": version, "file_versions": file_versions}
    definition = base.model_copy(update={**update, "regions": regions})
    definition._texts = texts
    definition._merged = {}
    for code, regional in merged.items():
        regional = regional.model_copy(update=update)
        regional._texts = texts
        regional._merged = {}
        definition._merged[code] = regional
    return definition, []


def validate_definition_dir(path: Path = DEFAULT_PATH.parent) -> list[DefinitionProblem]:
    """Every problem of the global file and of every overlay (all files, not the first only)."""
    return check_definition(path)[1]


def load_definition(path: Path = DEFAULT_PATH) -> LeadDefinition:
    """Load and validate the lead definition and its regional overlays; raise DefinitionError
    naming file, line and key of every problem."""
    definition, problems = check_definition(path)
    if definition is None:
        raise DefinitionError(problems)
    return definition
