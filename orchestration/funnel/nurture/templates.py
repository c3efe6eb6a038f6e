"""Nurture templates: marketer-edited Jinja2 files with YAML front matter.

Layout: `nurture_templates/<locale>/<stage>/<id>.<ext>.j2`, ext `html` or `txt`. Directories that
start with "_" (such as `_layout/`) hold shared layouts and partials, not selectable templates.
Stage directory `any` holds evergreen templates, used when a lead has had everything else.

Front matter (validated strictly, so a misspelt key is an error rather than a silently ignored
rule): id, stages, locale, channel, subject, priority, sequence, score_min/score_max, conditions
(industries, countries, regions, titles), cooldown_days, wait_after ({activity, days}), active,
version, translation_of ("<en id>@<version>").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import frontmatter
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestration.funnel.definition import ALL_STAGES
from orchestration.funnel.model import ACTIVITY_TYPES

EVERGREEN_STAGE = "any"
TEMPLATE_EXTENSIONS = ("html", "txt")
_FILE_RE = re.compile(r"^(?P<id>[A-Za-z0-9][A-Za-z0-9_.-]*?)\.(?P<ext>html|txt)\.j2$")
_TRANSLATION_RE = re.compile(r"^(?P<id>[A-Za-z0-9][A-Za-z0-9_.-]*)@(?P<version>\d+)$")
# Leads whose country no regional overlay covers work by the global rules: region "global".
GLOBAL_REGION = "global"


class TemplateError(ValueError):
    """A template file is invalid; the message names the file."""


class Conditions(BaseModel):
    """Optional audience filters; a lead must match every list that is set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    industries: list[str] | None = None
    countries: list[str] | None = None
    # Region codes of the lead definition's overlays (lead_definition/regions/<code>.yaml), or
    # "global" for leads no overlay covers; a lead's region follows from its country.
    regions: list[str] | None = None
    # The persona, read from the job title: the lead's title contains one of these words
    # (case-insensitive), e.g. [部長, Director, VP] for decision makers.
    titles: list[str] | None = None

    @field_validator("regions")
    @classmethod
    def _region_codes(cls, regions: list[str] | None) -> list[str] | None:
        bad = [r for r in regions or [] if not re.fullmatch(r"[a-z]{2,8}", r)]
        if bad:
            raise ValueError(f"region codes are lower-case file names of regional overlays: {bad}")
        return regions


class WaitAfter(BaseModel):
    """A trigger: the template is eligible once the lead has had `activity` at least `days` ago
    (for example a webinar invitation a week after a content download)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    activity: str
    days: int = Field(ge=0)

    @field_validator("activity")
    @classmethod
    def _known_activity(cls, activity: str) -> str:
        if activity not in ACTIVITY_TYPES:
            raise ValueError(f"unknown activity {activity!r}; known: {list(ACTIVITY_TYPES)}")
        return activity


class TemplateMeta(BaseModel):
    """The front matter of one template."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    stages: list[str] = Field(min_length=1)
    locale: str = Field(pattern=r"^[a-z]{2}(-[A-Z]{2})?$")
    channel: Literal["email"] = "email"
    subject: str = Field(min_length=1)
    priority: int = 0
    # Position in its stage's sequence: the lowest unsent position goes first, before templates
    # without one (which go by priority). Priority breaks ties between equal positions.
    sequence: int | None = Field(default=None, ge=1)
    score_min: int | None = None
    score_max: int | None = None
    conditions: Conditions | None = None
    # None: the definition's nurture.default_cooldown_days.
    cooldown_days: int | None = Field(default=None, ge=0)
    wait_after: WaitAfter | None = None
    active: bool = True
    version: int = Field(ge=1)
    translation_of: str | None = None

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, stages: list[str]) -> list[str]:
        unknown = [s for s in stages if s not in ALL_STAGES and s != EVERGREEN_STAGE]
        if unknown:
            raise ValueError(f"unknown stages {unknown}; known: {[*ALL_STAGES, EVERGREEN_STAGE]}")
        if EVERGREEN_STAGE in stages and len(stages) > 1:
            raise ValueError(f"an evergreen template has stages [{EVERGREEN_STAGE}] only")
        return stages

    @field_validator("translation_of")
    @classmethod
    def _translation_ref(cls, ref: str | None) -> str | None:
        if ref is not None and not _TRANSLATION_RE.match(ref):
            raise ValueError("translation_of must look like '<en id>@<version>'")
        return ref

    @model_validator(mode="after")
    def _window(self) -> TemplateMeta:
        low, high = self.score_min, self.score_max
        if low is not None and high is not None and low > high:
            raise ValueError("score_min is above score_max")
        return self

    @property
    def is_evergreen(self) -> bool:
        """Whether this is an exhausted-lead fallback (stage `any`)."""
        return self.stages == [EVERGREEN_STAGE]


class Template(TemplateMeta):
    """One template: front matter plus its body, file and loader name."""

    body: str
    path: Path
    # The name the Jinja loader knows it by ("en/MQL/mql-case-study.html.j2").
    name: str
    ext: Literal["html", "txt"]


def _error(path: Path, root: Path, message: str) -> TemplateError:
    try:
        shown = path.relative_to(root.parent)
    except ValueError:
        shown = path
    return TemplateError(f"{shown}: {message}")


def load_template(path: Path, root: Path) -> Template:
    """Parse and validate one template file under `root`."""
    rel = path.relative_to(root)
    match = _FILE_RE.match(path.name)
    if match is None:
        raise _error(path, root, "file name must be <id>.html.j2 or <id>.txt.j2")
    if len(rel.parts) != 3:
        raise _error(path, root, "templates live at <locale>/<stage>/<id>.<ext>.j2")
    dir_locale, dir_stage = rel.parts[0], rel.parts[1]
    try:
        post = frontmatter.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise _error(path, root, f"cannot read front matter: {exc}") from exc
    if not post.metadata:
        raise _error(path, root, "missing YAML front matter (--- ... ---)")
    try:
        meta = TemplateMeta.model_validate(post.metadata)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<front matter>'}: {e['msg']}"
            for e in exc.errors()
        )
        raise _error(path, root, problems) from exc
    if meta.id != match["id"]:
        raise _error(path, root, f"id {meta.id!r} does not match the file name {match['id']!r}")
    if meta.locale != dir_locale:
        raise _error(path, root, f"locale {meta.locale!r} but the file is under {dir_locale}/")
    if dir_stage not in meta.stages:
        raise _error(path, root, f"stages {meta.stages} do not include its directory {dir_stage!r}")
    return Template(
        **meta.model_dump(),
        body=post.content,
        path=path,
        name=rel.as_posix(),
        ext=match["ext"],  # type: ignore[arg-type]  # the regex allows html|txt only
    )


def load_templates(root: Path) -> list[Template]:
    """Every template under `root`, sorted by id; TemplateError names the first bad file.

    Ids are unique across locales (the id is what the CRMs show as "next content"), and a
    translation_of reference must name an existing template.
    """
    root = Path(root)
    if not root.is_dir():
        raise TemplateError(f"{root}: template directory not found")
    templates: list[Template] = []
    for path in sorted(root.rglob("*.j2")):
        rel = path.relative_to(root)
        if any(part.startswith("_") for part in rel.parts):
            continue  # layouts and partials
        templates.append(load_template(path, root))
    seen: dict[str, Path] = {}
    for t in templates:
        if t.id in seen:
            raise _error(t.path, root, f"duplicate id {t.id!r} (also {seen[t.id]})")
        seen[t.id] = t.path
    by_id = {t.id: t for t in templates}
    for t in templates:
        if t.translation_of is not None:
            ref = _TRANSLATION_RE.match(t.translation_of)
            assert ref is not None  # validated by TemplateMeta
            if ref["id"] not in by_id:
                raise _error(t.path, root, f"translation_of names unknown template {ref['id']!r}")
    return sorted(templates, key=lambda t: t.id)


def stale_translations(templates: list[Template]) -> list[str]:
    """Translations made from an older version of their source template (for `templates lint`)."""
    by_id = {t.id: t for t in templates}
    stale: list[str] = []
    for t in templates:
        ref = _TRANSLATION_RE.match(t.translation_of or "")
        if ref is None or ref["id"] not in by_id:
            continue
        source = by_id[ref["id"]]
        if int(ref["version"]) != source.version:
            stale.append(
                f"{t.id}: translated from {source.id}@{ref['version']}, "
                f"which is now at version {source.version}"
            )
    return stale
