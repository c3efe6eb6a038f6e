"""The lead definition: one validated YAML file shared by marketing and sales in every region.

`load_definition` reads `lead_definition/global.yaml`, validates it with strict pydantic models
(unknown keys are rejected, so a typo cannot silently disable a rule) and stamps it with a version:
the first 12 hex digits of the sha256 of the file's bytes. Every stage transition records that
version, so a funnel report can always say which rules produced it.

Regional overlays (later) may change thresholds, weights, keywords and SLA hours, never the stage
list: the stage order is fixed here in code and the file must agree with it.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestration.funnel.model import ACTIVITY_TYPES

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "lead_definition" / "global.yaml"

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
)


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
    # Informational in v1: what the CRMs' own lifecycle fields would say for this stage.
    hubspot_lifecyclestage: str
    salesforce_lead_status: str


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


class Writeback(_Strict):
    hubspot: HubSpotWriteback
    salesforce: SalesforceWriteback


# --- nurture ----------------------------------------------------------------------------------


class FrequencyCap(_Strict):
    max_sends: int = Field(ge=1)
    per_days: int = Field(ge=1)


class NurturePolicy(_Strict):
    exhausted_policy: Literal["evergreen", "pause"]
    fallback_locale: str = "en"
    frequency_cap: FrequencyCap
    default_cooldown_days: int = Field(ge=0)


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
    writeback: Writeback
    nurture: NurturePolicy
    # Not in the file: set by load_definition from the file's bytes.
    version: str = ""
    source_path: str = ""

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
        for req in ("competitor", "student"):
            if req not in dq_reasons:
                raise ValueError(f"backward_edges.disqualify.reasons must include {req!r}")
        return self

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
        return rows

    def writeback_fields(self, system: str) -> list[str]:
        """The names of the fields leadsync owns in one CRM ("hubspot" or "salesforce")."""
        if system == "hubspot":
            return list(self.writeback.hubspot.properties)
        if system == "salesforce":
            return list(self.writeback.salesforce.fields)
        raise ValueError(f"unknown system {system!r}")

    def hubspot_property_definitions(self) -> list[dict[str, Any]]:
        """Bodies for HubSpot's create-property API, one per leadsync contact property."""
        hs = self.writeback.hubspot
        return [prop.to_api(name, hs.group_name) for name, prop in hs.properties.items()]


def _format_loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "<root>"


def parse_definition(raw: bytes, *, source: str = "<memory>") -> LeadDefinition:
    """Validate definition YAML bytes; `source` names the file in error messages, and every
    problem carries the line of the key it is about."""
    try:
        root = yaml.compose(raw)
        data = yaml.safe_load(raw)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = DefinitionProblem(source, line, "<root>", f"not valid YAML: {exc.problem}")
        raise DefinitionError([problem]) from exc
    except yaml.YAMLError as exc:
        raise DefinitionError([DefinitionProblem(source, None, "<root>", str(exc))]) from exc
    if not isinstance(data, dict):
        problem = DefinitionProblem(source, 1, "<root>", "expected a mapping at the top level")
        raise DefinitionError([problem])
    for reserved in ("version", "source_path"):
        if reserved in data:
            line = _line_of(root, (reserved,))
            problem = DefinitionProblem(
                source, line, reserved, "set by the loader, not by the file"
            )
            raise DefinitionError([problem])
    try:
        definition = LeadDefinition.model_validate(data)
    except ValidationError as exc:
        problems = [
            DefinitionProblem(source, _line_of(root, e["loc"]), _format_loc(e["loc"]), e["msg"])
            for e in exc.errors()
        ]
        raise DefinitionError(problems) from exc
    version = hashlib.sha256(raw).hexdigest()[:12]
    return definition.model_copy(update={"version": version, "source_path": source})


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the deepest YAML node on `loc` (a pydantic error location)."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if str(k.value) == str(part)), None)
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


def load_definition(path: Path = DEFAULT_PATH) -> LeadDefinition:
    """Load and validate the lead definition file; raise DefinitionError naming file and key."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        problem = DefinitionProblem(str(path), None, "<file>", f"cannot read: {exc}")
        raise DefinitionError([problem]) from exc
    return parse_definition(raw, source=str(path))
