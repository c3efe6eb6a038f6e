"""The funnel report as Markdown tables and a PNG waterfall chart, and both written to a folder.

Rendering is headless: a bare `Figure` on matplotlib's Agg canvas, never pyplot (no display, no
global state), so it runs in the Dagster worker, in threads and in CI.
"""

import hashlib
import io
import json
import os
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from orchestration.funnel.definition import STAGE_ORDER
from orchestration.funnel.metrics import DISPLAY_NAMES, FunnelReport

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "DEFAULT_REPORTS_DIR",
    "PNG_NAME",
    "chart_digest",
    "markdown_tables",
    "render_funnel_markdown",
    "render_funnel_png",
    "reports_dir",
    "stage_label",
    "write_funnel_report",
]

DEFAULT_REPORTS_DIR = ".leadsync/reports"
PNG_NAME = "funnel.png"
MD_NAME = "funnel.md"
# Small multiples: at most this many regions get their own panel, largest first.
_MAX_REGION_PANELS = 5

_CUT_TITLES = {
    "region": "By region",
    "origin": "By origin (marketing-generated vs sales-generated)",
    "lead_source": "By lead source",
    "cohort": "By monthly cohort (month the lead entered the funnel)",
}


def reports_dir() -> Path:
    """Where reports are written: LEADSYNC_REPORTS_DIR, else `.leadsync/reports/`."""
    return Path(os.environ.get("LEADSYNC_REPORTS_DIR") or DEFAULT_REPORTS_DIR)


def stage_label(stage: str) -> str:
    """`Lead (Inquiry)`, `MQL`, `Customer (Won)`: the ledger's name, and the waterfall's."""
    return f"{stage} ({DISPLAY_NAMES[stage]})" if stage in DISPLAY_NAMES else stage


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _days(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |"]
    lines.append("| " + " | ".join("---" for _ in header) + " |")
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _overall_table(report: FunnelReport) -> str:
    header = [
        "stage",
        "reached",
        "conversion from previous",
        "median days in stage",
        "in stage now",
        "median days waiting",
        "recycled",
        "disqualified",
    ]
    rows = [
        [
            stage_label(r["stage"]),
            str(r["reached"]),
            _pct(r["conversion_from_previous"]),
            _days(r["median_days_in_stage"]),
            str(r["in_stage_now"]),
            _days(r["median_days_waiting"]),
            str(r["recycled"]),
            str(r["disqualified"]),
        ]
        for r in report.overall.to_dicts()
    ]
    return _table(header, rows)


def _segment_table(name: str, frame: pl.DataFrame) -> str:
    """One row per segment, one column per stage: `reached (conversion from previous)`."""
    header = [name, *(stage_label(s) for s in STAGE_ORDER)]
    rows: list[list[str]] = []
    for (segment,), part in frame.group_by("segment", maintain_order=True):
        cells = {
            r["stage"]: f"{r['reached']}"
            + (
                f" ({_pct(r['conversion_from_previous'])})"
                if r["conversion_from_previous"] is not None
                else ""
            )
            for r in part.to_dicts()
        }
        rows.append([str(segment), *(cells.get(s, "0") for s in STAGE_ORDER)])
    return _table(header, rows)


def markdown_tables(report: FunnelReport) -> dict[str, str]:
    """A Markdown table per cut: `overall` (one row per stage), then region, origin, lead_source
    and cohort (one row per segment)."""
    tables = {"overall": _overall_table(report)}
    for name, frame in report.cuts().items():
        tables[name] = _segment_table(name, frame)
    return tables


def render_funnel_markdown(report: FunnelReport, image: str | None = PNG_NAME) -> str:
    """The whole report as one Markdown document; `image` is the chart's link (None: no chart)."""
    flows = report.flows
    parts = [
        "# Demand waterfall",
        f"Generated {report.generated_at:%Y-%m-%d %H:%M} UTC over {report.leads} leads "
        f"({flows['marketing_generated']} marketing-generated, "
        f"{flows['sales_generated']} sales-generated entering at SQL).",
        f"**{report.bottleneck_sentence()}**",
        f"Recycled: {flows['recycled']}, reopened: {flows['reopened']}, "
        f"disqualified: {flows['disqualified']}, back through sales: {flows['sales_reentry']}.",
    ]
    if image:
        parts.append(f"![funnel]({image})")
    for name, table in markdown_tables(report).items():
        parts += [f"## {_CUT_TITLES.get(name, 'Overall')}", table]
    return "\n\n".join(parts) + "\n"


def _panel(
    ax: "Axes", frame: pl.DataFrame, title: str, *, labels: bool, highlight: str | None
) -> None:
    stages = frame["stage"].to_list()
    reached = frame["reached"].to_list()
    conversion = frame["conversion_from_previous"].to_list()
    positions = list(range(len(stages)))
    top = max(reached) if reached and max(reached) > 0 else 1
    # The bottleneck's bar (the stage its transition leads into) stands out.
    colors = ["#c44e52" if s == highlight else "#4c72b0" for s in stages]
    ax.barh(positions, reached, color=colors)
    ax.set_yticks(positions, [stage_label(s) for s in stages] if labels else [""] * len(stages))
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.45)
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="x", labelsize=8)
    for y, (n, c) in enumerate(zip(reached, conversion, strict=True)):
        text = f"{n}" + (f"  ({c:.0%})" if c is not None else "")
        ax.text(n + top * 0.02, y, text, va="center", fontsize=8)


def _panels(report: FunnelReport, per_region: bool) -> list[tuple[str, pl.DataFrame]]:
    """(title, stage rows) of each panel of the chart: all leads, then the largest regions."""
    panels: list[tuple[str, pl.DataFrame]] = [("All leads", report.overall)]
    if per_region:
        regions = report.by_region.filter(pl.col("stage") == STAGE_ORDER[0]).sort(
            "reached", descending=True
        )
        codes = regions["segment"].to_list()
        if len(codes) > 1:
            for code in codes[:_MAX_REGION_PANELS]:
                panels.append(
                    (f"Region {code}", report.by_region.filter(pl.col("segment") == code))
                )
    return panels


def chart_digest(report: FunnelReport, *, per_region: bool = True) -> str:
    """A fingerprint of everything `render_funnel_png` draws (and of the code and matplotlib that
    draw it): equal digests mean byte-equal charts, so a run whose figures did not move can reuse
    the last one instead of paying ~0.8 s for matplotlib."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(version("matplotlib").encode())
    digest.update(report.bottleneck_sentence().encode())
    digest.update(str(report.bottleneck.stage if report.bottleneck else None).encode())
    for title, frame in _panels(report, per_region):
        rows = frame.select("stage", "reached", "conversion_from_previous").rows()
        digest.update(json.dumps([title, rows], default=str).encode())
    return digest.hexdigest()


def render_funnel_png(report: FunnelReport, *, per_region: bool = True) -> bytes:
    """A horizontal waterfall bar chart (reached per stage, conversion from the previous stage in
    brackets, the bottleneck's stage in red), with one small panel per region when there is more
    than one; PNG bytes."""
    panels = _panels(report, per_region)
    highlight = report.bottleneck.stage if report.bottleneck else None
    # matplotlib takes ~0.4 s to import: only a run that draws pays it, not every code-location
    # load or CLI start.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(panels) + 1.2, 3.8), dpi=100)
    FigureCanvasAgg(fig)  # the Agg (raster, headless) canvas renders the PNG
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for i, (ax, (title, frame)) in enumerate(zip(axes, panels, strict=True)):
        _panel(ax, frame, title, labels=i == 0, highlight=highlight)
    fig.suptitle(report.bottleneck_sentence(), fontsize=9, wrap=True)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def write_funnel_report(
    report: FunnelReport, out_dir: Path | None = None, *, chart: bytes | None = None
) -> tuple[Path, Path]:
    """Write funnel.png and funnel.md (linking the PNG) to `out_dir` (default: reports_dir());
    `chart`, when given, is the report's PNG already rendered."""
    folder = out_dir or reports_dir()
    folder.mkdir(parents=True, exist_ok=True)
    png, md = folder / PNG_NAME, folder / MD_NAME
    png.write_bytes(render_funnel_png(report) if chart is None else chart)
    md.write_text(render_funnel_markdown(report, image=PNG_NAME), encoding="utf-8")
    return png, md
