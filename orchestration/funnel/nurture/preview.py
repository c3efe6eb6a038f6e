"""`leadsync templates preview`: every template rendered for sample leads, as a static gallery.

The gallery is plain files a marketer opens in a browser, no server: `index.html` (one row per
template with each sample's subject and a link) and `renders/<template id>/<sample id>.html`, the
email itself (an HTML body as the lead would get it; a text body inside `<pre>`).

Samples: one per (stage, region), where the regions are the global rules plus every regional
overlay of the lead definition. A region's sample is addressed in its first locale and lives in
its first country, so the `jp` sample sees the Japanese templates. A template is rendered for the
samples of its stages (evergreen templates: one sample per region) whose locale is the
template's, plus, for `en` templates, every other sample too, because `en` is what a lead falls
back to.

Real leads: the CLI passes leads from the state store; `samples_from_leads` picks one per
(stage, region) and masks it (`mask_lead`), and synthetic samples fill the cells no real lead
covers. Masking: first and last name become their initial, the title and company are kept
(they are what makes the preview realistic and they name a business, not a person), and email,
phone and ids never reach the gallery at all (the render context has no such fields).

Rendering uses `make_environment`, the same sandbox as the sync, so what the gallery shows is what
a lead gets, including escaping: markup typed into a lead's name shows as text.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2
import polars as pl
from jinja2.sandbox import SandboxedEnvironment
from pydantic import ValidationError

from orchestration.funnel.definition import ALL_STAGES, LeadDefinition
from orchestration.funnel.nurture.render import (
    LeadContext,
    Links,
    NurtureContext,
    make_environment,
    render,
)
from orchestration.funnel.nurture.templates import Template, TemplateError

GLOBAL_REGION = "global"
SYNTHETIC = "synthetic"
MASKED = "masked real lead"
_LINK_BASE = "https://preview.example.com"

# Stages that get nurture content (Disqualified leads are suppressed).
PREVIEW_STAGES: tuple[str, ...] = tuple(s for s in ALL_STAGES if s != "Disqualified")

# Synthetic people per locale: realistic lengths and scripts, obviously fictional.
_PEOPLE: dict[str, tuple[str, str, str, str]] = {
    # locale: first name, last name, company, title
    "en": ("Alex", "Morgan", "Northwind Analytics", "Marketing Operations Manager"),
    "ja": ("花子", "山田", "株式会社サンプル製作所", "営業企画部 部長"),
}
# A score and temperature typical of each stage, so score windows and wording look right.
_STAGE_SCORE: dict[str, tuple[int, str]] = {
    "Lead": (10, "cold"),
    "MAL": (25, "cold"),
    "MQL": (85, "hot"),
    "SAL": (90, "hot"),
    "SQL": (110, "hot"),
    "Opportunity": (120, "hot"),
    "Customer": (120, "hot"),
    "Recycled": (40, "warm"),
}


@dataclass(frozen=True)
class Sample:
    """One sample lead the gallery renders templates for."""

    sample_id: str  # file-name safe, unique in a gallery
    stage: str
    region: str  # a region code of the definition, or GLOBAL_REGION
    locale: str
    country: str
    first_name: str
    last_name: str
    company: str
    title: str
    score: int
    temperature: str
    source: str = SYNTHETIC  # SYNTHETIC or MASKED

    @property
    def label(self) -> str:
        return f"{self.stage} · {self.region} · {self.locale} ({self.source})"


@dataclass(frozen=True)
class PreviewRender:
    """One template rendered for one sample: subject and body, or the error it raised."""

    template: Template
    sample: Sample
    subject: str | None
    body: str | None
    error: str | None

    @property
    def path(self) -> str:
        """Where the render page lives, relative to the gallery folder."""
        return f"renders/{_safe(self.template.id)}/{_safe(self.sample.sample_id)}.html"


@dataclass(frozen=True)
class Gallery:
    index: Path
    renders: list[PreviewRender]

    @property
    def errors(self) -> list[PreviewRender]:
        return [r for r in self.renders if r.error is not None]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _regions(definition: LeadDefinition) -> list[tuple[str, str, str]]:
    """(region, locale, country) per region: the global rules first, then each overlay."""
    regions = [(GLOBAL_REGION, definition.nurture.fallback_locale.lower(), "")]
    for code, overlay in sorted(definition.regions.items()):
        regions.append((code, overlay.locales[0].lower(), overlay.countries[0]))
    return regions


def synthetic_samples(definition: LeadDefinition) -> list[Sample]:
    """One fictional lead per (stage, region)."""
    samples = []
    for region, locale, country in _regions(definition):
        first, last, company, title = _PEOPLE.get(locale, _PEOPLE["en"])
        for stage in PREVIEW_STAGES:
            score, temperature = _STAGE_SCORE.get(stage, (50, "warm"))
            samples.append(
                Sample(
                    sample_id=f"{stage}-{region}".lower(),
                    stage=stage,
                    region=region,
                    locale=locale,
                    country=country,
                    first_name=first,
                    last_name=last,
                    company=company,
                    title=title,
                    score=score,
                    temperature=temperature,
                )
            )
    return samples


def _initial(name: str | None) -> str:
    name = (name or "").strip()
    return f"{name[0]}." if name else ""


def mask_lead(row: dict[str, object], sample_id: str, region: str) -> Sample:
    """A real lead as a gallery sample: names reduced to initials (see the module docstring)."""
    stage = str(row.get("stage") or "Lead")
    locale = str(row.get("locale") or "en").lower()
    score = row.get("score")
    return Sample(
        sample_id=sample_id,
        stage=stage,
        region=region,
        locale=locale,
        country=str(row.get("country") or ""),
        first_name=_initial(row.get("first_name")),  # type: ignore[arg-type]
        last_name=_initial(row.get("last_name")),  # type: ignore[arg-type]
        company=str(row.get("company") or ""),
        title=str(row.get("title") or ""),
        score=int(score) if isinstance(score, int) else 0,
        temperature=str(row.get("temperature") or ""),
        source=MASKED,
    )


def samples_from_leads(leads: pl.DataFrame, definition: LeadDefinition) -> list[Sample]:
    """One masked real lead per (stage, region) where the store has one, synthetic elsewhere.

    `leads` has unified_id, stage, score, temperature, locale, country, first_name, last_name,
    company, title (missing columns read as blank). The pick is the lowest unified_id of the
    cell, so the gallery is the same from run to run.
    """
    columns = {
        "unified_id": pl.String(),
        "stage": pl.String(),
        "score": pl.Int64(),
        "temperature": pl.String(),
        "locale": pl.String(),
        "country": pl.String(),
        "first_name": pl.String(),
        "last_name": pl.String(),
        "company": pl.String(),
        "title": pl.String(),
    }
    frame = leads.with_columns(
        [pl.lit(None, dtype=t).alias(c) for c, t in columns.items() if c not in leads.columns]
    ).select([pl.col(c).cast(t) for c, t in columns.items()])
    country_regions = definition.country_regions()
    frame = frame.with_columns(
        pl.col("country")
        .str.to_uppercase()
        .replace_strict(country_regions, default=GLOBAL_REGION, return_dtype=pl.String)
        .fill_null(GLOBAL_REGION)
        .alias("region")
    )
    picked = (
        frame.filter(pl.col("stage").is_in(PREVIEW_STAGES))
        .sort("unified_id")
        .unique(["stage", "region"], keep="first", maintain_order=True)
    )
    real = {
        (str(row["stage"]), str(row["region"])): mask_lead(
            row, f"{row['stage']}-{row['region']}-real".lower(), str(row["region"])
        )
        for row in picked.iter_rows(named=True)
    }
    return [real.get((s.stage, s.region), s) for s in synthetic_samples(definition)]


def samples_for(
    template: Template, samples: Sequence[Sample], fallback_locale: str
) -> list[Sample]:
    """The samples a template is previewed with (see the module docstring)."""
    if template.is_evergreen:
        # One per region: evergreen content goes to any stage.
        by_region: dict[str, Sample] = {}
        for s in samples:
            by_region.setdefault(s.region, s)
        chosen = list(by_region.values())
    else:
        chosen = [s for s in samples if s.stage in template.stages]
    locale = template.locale.lower()
    return [s for s in chosen if s.locale == locale or locale == fallback_locale.lower()]


def render_sample(template: Template, sample: Sample, env: SandboxedEnvironment) -> PreviewRender:
    """Render one template for one sample; an error is kept, not raised."""
    try:
        context = NurtureContext(
            lead=LeadContext(
                first_name=sample.first_name,
                last_name=sample.last_name,
                company=sample.company,
                title=sample.title,
                locale=template.locale,
            ),
            stage=sample.stage,
            score=sample.score,
            temperature=sample.temperature,
            links=Links(
                unsubscribe_url=f"{_LINK_BASE}/unsubscribe?lead={sample.sample_id}",
                content_url=f"{_LINK_BASE}/{template.locale}/resources/{template.id}",
            ),
        )
        content = render(template, context, env)
    except (TemplateError, ValidationError, jinja2.TemplateError) as exc:
        return PreviewRender(template, sample, None, None, f"{type(exc).__name__}: {exc}")
    return PreviewRender(template, sample, content.subject, content.body, None)


def render_gallery(
    templates: Iterable[Template],
    samples: Sequence[Sample],
    root: Path,
    *,
    fallback_locale: str = "en",
) -> list[PreviewRender]:
    """Every (template, sample) render, templates in id order, with the one shared environment."""
    env = make_environment(root)
    return [
        render_sample(t, s, env)
        for t in sorted(templates, key=lambda t: t.id)
        for s in samples_for(t, samples, fallback_locale)
    ]


_STYLE = """
body{font-family:system-ui,'Hiragino Sans','Noto Sans CJK JP',sans-serif;margin:24px;color:#1f2933}
table{border-collapse:collapse;width:100%}th,td{border:1px solid #d2d6dc;padding:6px 8px;
vertical-align:top;text-align:left;font-size:14px}th{background:#f4f5f7}
.err{color:#b91c1c;font-weight:600}.meta{color:#6b7280;font-size:12px}
.subject{font-weight:600}iframe{width:320px;height:240px;border:1px solid #d2d6dc}
"""


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def _render_page(r: PreviewRender) -> str:
    """The page for one render: the email as the lead would see it."""
    if r.error is not None:
        return _page(
            f"{r.template.id}: error",
            f'<h1>{html.escape(r.template.id)}</h1><p class="err" data-error>'
            f"{html.escape(r.error)}</p>",
        )
    assert r.body is not None
    if r.template.ext == "html":
        return r.body  # already a whole HTML document, escaped by the sandbox's autoescape
    return _page(
        r.subject or r.template.id,
        f'<p class="subject">{html.escape(r.subject or "")}</p>'
        f'<pre style="white-space:pre-wrap;font-family:inherit">{html.escape(r.body)}</pre>',
    )


def _index_page(renders: Sequence[PreviewRender], samples: Sequence[Sample]) -> str:
    by_template: dict[str, list[PreviewRender]] = {}
    for r in renders:
        by_template.setdefault(r.template.id, []).append(r)
    errors = sum(r.error is not None for r in renders)
    real = sum(s.source == MASKED for s in samples)
    rows = []
    for tid, group in by_template.items():
        t = group[0].template
        cells = []
        for r in group:
            sample = html.escape(r.sample.label)
            if r.error is not None:
                cells.append(
                    f'<li><a href="{r.path}">{sample}</a>: '
                    f'<span class="err">{html.escape(r.error)}</span></li>'
                )
            else:
                cells.append(
                    f'<li><a href="{r.path}">{sample}</a>: '
                    f'<span class="subject">{html.escape(r.subject or "")}</span></li>'
                )
        first = group[0]
        frame = (
            f'<iframe loading="lazy" sandbox="" src="{first.path}" title="{html.escape(tid)}">'
            "</iframe>"
            if first.error is None
            else ""
        )
        status = "" if t.active else " (inactive)"
        rows.append(
            f'<tr id="{html.escape(tid)}" data-template-id="{html.escape(tid)}">'
            f"<td><strong>{html.escape(tid)}</strong>{status}"
            f'<div class="meta">{html.escape(t.name)} · v{t.version} · priority {t.priority}'
            f" · {html.escape(', '.join(t.stages))}</div></td>"
            f"<td><ul>{''.join(cells)}</ul></td><td>{frame}</td></tr>"
        )
    summary = (
        f"{len(by_template)} templates, {len(renders)} renders, {errors} error(s); "
        f"samples: {len(samples)} ({real} masked real leads, {len(samples) - real} synthetic)"
    )
    body = (
        "<h1>Nurture templates preview</h1>"
        f'<p id="summary">{html.escape(summary)}</p>'
        "<table><thead><tr><th>Template</th><th>Sample: subject</th><th>Preview</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )
    return _page("Nurture templates preview", body)


def write_gallery(
    renders: Sequence[PreviewRender], samples: Sequence[Sample], out: Path
) -> Gallery:
    """Write index.html and one page per render under `out` (created; old renders replaced)."""
    out = Path(out)
    renders_dir = out / "renders"
    if renders_dir.is_dir():
        # Pages of renamed or deleted templates must not linger in the gallery.
        for old in sorted(renders_dir.rglob("*.html"), reverse=True):
            old.unlink()
    for r in renders:
        page = out / r.path
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(_render_page(r), encoding="utf-8")
    index = out / "index.html"
    index.write_text(_index_page(renders, samples), encoding="utf-8")
    return Gallery(index=index, renders=list(renders))


def build_gallery(
    templates: Iterable[Template],
    root: Path,
    out: Path,
    definition: LeadDefinition,
    *,
    samples: Sequence[Sample] | None = None,
) -> Gallery:
    """Render every template for its samples (default: synthetic) and write the gallery."""
    chosen = list(samples) if samples is not None else synthetic_samples(definition)
    renders = render_gallery(
        templates, chosen, root, fallback_locale=definition.nurture.fallback_locale
    )
    return write_gallery(renders, chosen, out)
