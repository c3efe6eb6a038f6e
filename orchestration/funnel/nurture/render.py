"""Rendering nurture templates: one sandboxed Jinja2 environment for render, lint and preview.

Templates are written by marketers and filled with data typed into web forms by strangers, so:

* `SandboxedEnvironment`: a template cannot reach Python internals (`''.__class__...` raises
  `SecurityError`);
* `StrictUndefined`: a misspelt variable fails loudly in lint/preview instead of sending an email
  with a hole in it;
* autoescape for `.html` / `.html.j2`, off for `.txt`: lead data such as `<script>` is escaped in
  HTML bodies and left as typed in plain text;
* a typed context (`NurtureContext`): templates see exactly these fields;
* the loader strips each file's front matter, so a template can be rendered by name and can
  `{% extends "_layout/email.html.j2" %}`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import polars as pl
from jinja2 import FileSystemLoader, StrictUndefined, meta
from jinja2.environment import Environment
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from orchestration.funnel.nurture.templates import Template, TemplateError
from orchestration.funnel.scoring import ensure_columns


class LeadContext(BaseModel):
    """What a template may say about the lead. Missing values are "" so `{% if %}` works."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    first_name: str = ""
    last_name: str = ""
    company: str = ""
    title: str = ""
    locale: str = "en"

    @field_validator("first_name", "last_name", "company", "title", mode="before")
    @classmethod
    def _blank_for_none(cls, value: object) -> object:
        return "" if value is None else value


class Links(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    unsubscribe_url: str
    content_url: str


class NurtureContext(BaseModel):
    """The whole typed context of a nurture render."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lead: LeadContext
    stage: str
    score: int
    temperature: str
    links: Links


class RenderedContent(BaseModel):
    model_config = ConfigDict(frozen=True)

    subject: str
    body: str


# The same delimiters python-frontmatter's YAML handler uses: a "---" line, YAML, a "---" line.
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n.*?^---[ \t]*(?:\r?\n|\Z)", re.S | re.M)


class _FrontMatterLoader(FileSystemLoader):
    """A FileSystemLoader that hides the YAML front matter from Jinja.

    The front matter is replaced by a Jinja comment of the same lines, so error line numbers
    still point at the right line of the file and the output does not start with blank lines.
    """

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Any]:
        source, filename, uptodate = super().get_source(environment, template)
        match = _FRONT_MATTER.match(source)
        if match is None:
            return source, filename, uptodate
        head, body = match.group(0), source[match.end() :]
        if "#}" in head:
            # Cannot wrap in a comment safely; keep line numbers with plain newlines instead.
            return "\n" * head.count("\n") + body, filename, uptodate
        return "{#" + head + "-#}" + body, filename, uptodate


def _autoescape(name: str | None) -> bool:
    if name is None:  # from_string: subjects are plain text (an email header)
        return False
    return name.endswith((".html.j2", ".html", ".htm"))


def make_environment(root: Path) -> SandboxedEnvironment:
    """THE environment every render, lint and preview uses (see module docstring)."""
    return SandboxedEnvironment(
        loader=_FrontMatterLoader(str(root), encoding="utf-8"),
        undefined=StrictUndefined,
        autoescape=_autoescape,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


_HEADER_WS = re.compile(r"\s+")


@lru_cache(maxsize=512)
def _subject_template(env: SandboxedEnvironment, source: str) -> jinja2.Template:
    # Subjects are compiled once per environment, not once per lead.
    return env.from_string(source)


def render(
    template: Template, context: NurtureContext, env: SandboxedEnvironment
) -> RenderedContent:
    """Render subject and body of `template` for one lead.

    The subject is rendered without escaping (it is not HTML) and folded to one line, because a
    newline typed into a form field must never become a new email header.
    """
    values = context.model_dump()
    subject = _subject_template(env, template.subject).render(values)
    body = env.get_template(template.name).render(values)
    return RenderedContent(subject=_HEADER_WS.sub(" ", subject).strip(), body=body)


# What render_assignments adds to each assignment row. `render_key` fingerprints everything the
# rendering depended on (see render_assignments), so the next run knows what to render again.
RENDER_COLUMNS: dict[str, pl.DataType] = {
    "next_subject": pl.String(),
    "next_content_url": pl.String(),
    "body": pl.String(),
    "render_error": pl.String(),
    "render_key": pl.String(),
}

# The lead definition's nurture.link_base_url default; callers pass `links` to use another site.
_DEFAULT_LINK_BASE = "https://www.example.com"


def links_for(base_url: str) -> Callable[[str, Template], Links]:
    """Links on one site: the template's content page and an unsubscribe page per lead."""
    base = base_url.rstrip("/")

    def links(unified_id: str, template: Template) -> Links:
        return Links(
            unsubscribe_url=f"{base}/email/unsubscribe?lead={quote(unified_id)}",
            content_url=f"{base}/{template.locale}/resources/{quote(template.id)}",
        )

    # What the links depend on besides the lead and template: part of every render key.
    links.render_key = base  # type: ignore[attr-defined]
    return links


default_links = links_for(_DEFAULT_LINK_BASE)


_REUSE_KEY = ["unified_id", "template_id", "template_version", "locale", "status", "render_key"]
_RENDER_KEY_SEED = 20261121
# The lead fields a render reads (besides links, which follow from the lead id and template).
CONTEXT_COLUMNS = ["first_name", "last_name", "company", "title", "stage", "score", "temperature"]


def template_digest(template: Template, env: SandboxedEnvironment) -> str:
    """A fingerprint of what renders `template`: its subject, its file and every layout or partial
    it extends, includes or imports (transitively).

    A marketer who edits a body or the shared layout without bumping `version` still changes the
    digest, so the leads holding that template are rendered again, and only they.
    """
    digest = hashlib.sha256(template.subject.encode("utf-8"))
    loader = env.loader
    seen: set[str] = set()
    pending = [template.name]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            assert loader is not None  # make_environment always sets one
            source = loader.get_source(env, name)[0]
        except (AssertionError, jinja2.TemplateNotFound):
            # Not on disk (a template built in memory): its body is all there is.
            source = template.body if name == template.name else ""
        digest.update(b"\0" + name.encode("utf-8") + b"\0" + source.encode("utf-8"))
        try:
            ast = env.parse(source)
        except jinja2.TemplateSyntaxError:
            continue  # rendering reports it; the source is in the digest already
        pending.extend(sorted(r for r in meta.find_referenced_templates(ast) if r is not None))
    return digest.hexdigest()[:16]


def _render_keys(
    base: pl.DataFrame,
    lead_rows: pl.DataFrame,
    digests: dict[str, str],
    links: Callable[[str, Template], Links],
) -> pl.Series:
    """Per assignment: a hash of the template digest, the lead's context fields and the links'
    site (null when there is no template). Equal keys mean an equal rendering."""
    site = str(getattr(links, "render_key", ""))
    facts = base.select("unified_id", "template_id").join(
        lead_rows, on="unified_id", how="left", maintain_order="left"
    )
    digest = pl.col("template_id").replace_strict(digests, default=None, return_dtype=pl.String)
    # One vectorised hash per lead instead of a JSON document per lead. polars does not promise
    # the same hash across its versions: an upgrade re-renders every lead once, nothing worse.
    parts = [
        digest,
        *(
            pl.col(c).cast(pl.String).fill_null("\x00") if c in facts.columns else pl.lit("\x00")
            for c in CONTEXT_COLUMNS
        ),
        pl.lit(site),
    ]
    key = pl.when(digest.is_not_null()).then(
        pl.concat_str(parts, separator="\x1f").hash(seed=_RENDER_KEY_SEED).cast(pl.String)
    )
    return facts.select(key.alias("render_key"))["render_key"]


def render_assignments(
    assignments: pl.DataFrame,
    leads: pl.DataFrame,
    templates: list[Template],
    env: SandboxedEnvironment,
    *,
    links: Callable[[str, Template], Links] = default_links,
    previous: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The assignments (select_next output) with next_subject, body and render_error added.

    Rendering is per lead, so it is kept to what changed: a row whose assignment (template,
    version, locale, status) and `render_key` equal its row in `previous` (an earlier output of
    this function) reuses that rendering. The key covers the template's subject and source and
    every layout it uses (`template_digest`) and the lead's context fields, so editing a template
    re-renders exactly the leads that hold it, editing a layout the leads whose templates use it,
    and a changed name or score only that lead; the links' site is in the key too (a `links`
    from `links_for` carries it), so moving the site (nurture.link_base_url) re-renders everyone.
    Rows without a template stay unrendered (nulls).
    `leads` has unified_id, first_name, last_name, company, title, stage, score, temperature;
    `links(unified_id, template)` builds the lead's unsubscribe and content URLs. The context's
    `lead.locale` is the locale of the content, so a fallback-to-en lead gets an English layout.
    A template error for one lead lands in `render_error` instead of stopping the batch.
    """
    out_schema = {**dict(assignments.schema), **RENDER_COLUMNS}
    by_id = {t.id: t for t in templates}
    lead_rows = (
        ensure_columns(
            leads, {c: pl.Int64() if c == "score" else pl.String() for c in CONTEXT_COLUMNS}
        )
        .select("unified_id", *CONTEXT_COLUMNS)
        .unique("unified_id", keep="first")
    )
    held = assignments.get_column("template_id").drop_nulls().unique().to_list()
    digests = {tid: template_digest(by_id[tid], env) for tid in held if tid in by_id}
    base = assignments.drop([c for c in RENDER_COLUMNS if c in assignments.columns])
    base = base.with_columns(_render_keys(base, lead_rows, digests, links))
    # What a rendering produced (render_key is computed above, for every row).
    produced = {c: t for c, t in RENDER_COLUMNS.items() if c != "render_key"}
    reused = pl.DataFrame(schema={**{c: base.schema[c] for c in _REUSE_KEY}, **produced})
    if previous is not None and not previous.is_empty() and "body" in previous.columns:
        reused = (
            # A frame from before render_key existed has nulls there: rendered again, once.
            ensure_columns(previous, RENDER_COLUMNS)
            .filter(pl.col("body").is_not_null() & pl.col("render_error").is_null())
            .select(
                *[pl.col(c).cast(base.schema[c], strict=False) for c in _REUSE_KEY],
                *[pl.col(c).cast(t) for c, t in produced.items()],
            )
            .unique(_REUSE_KEY, keep="last")
        )
    kept = base.join(reused, on=_REUSE_KEY, how="inner", nulls_equal=True)
    todo = base.join(reused.select(_REUSE_KEY), on=_REUSE_KEY, how="anti", nulls_equal=True)

    wanted = todo.filter(pl.col("template_id").is_not_null()).select("unified_id", "template_id")
    rendered: list[dict[str, object]] = []
    rows = wanted.join(lead_rows, on="unified_id", how="left")
    for row in rows.iter_rows(named=True):  # per lead by nature: one email each
        template = by_id.get(row["template_id"])
        record: dict[str, object] = {
            "unified_id": row["unified_id"],
            "next_subject": None,
            "next_content_url": None,
            "body": None,
            "render_error": None,
        }
        if template is None:
            record["render_error"] = f"unknown template {row['template_id']!r}"
            rendered.append(record)
            continue
        try:
            context = NurtureContext(
                lead=LeadContext(
                    first_name=row["first_name"],
                    last_name=row["last_name"],
                    company=row["company"],
                    title=row["title"],
                    locale=template.locale,
                ),
                stage=row["stage"] or "",
                score=int(row["score"] or 0),
                temperature=row["temperature"] or "",
                links=links(row["unified_id"], template),
            )
            content = render(template, context, env)
            record["next_subject"], record["body"] = content.subject, content.body
            record["next_content_url"] = context.links.content_url
        except (TemplateError, ValidationError, jinja2.TemplateError) as exc:
            record["render_error"] = f"{template.name}: {type(exc).__name__}: {exc}"
        rendered.append(record)
    fresh = todo.join(
        pl.DataFrame(rendered, schema={"unified_id": pl.String(), **produced}),
        on="unified_id",
        how="left",
    )
    result = pl.concat(
        [kept.select(list(out_schema)), fresh.select(list(out_schema))], how="vertical_relaxed"
    )
    # Back in the order of `assignments`.
    return (
        base.select("unified_id")
        .join(result, on="unified_id", how="inner", maintain_order="left")
        .select([pl.col(c).cast(t) for c, t in out_schema.items()])
    )
