"""Report assets: the demand waterfall by region, origin, source and cohort, with its chart."""

import base64
from datetime import UTC, datetime

import dagster as dg
import polars as pl

from orchestration.defs import frames
from orchestration.defs.metadata import markdown_preview
from orchestration.defs.resources import LeadDefinitionResource, StateStoreResource
from orchestration.funnel import metrics
from orchestration.funnel.stages import LEDGER_SCHEMA
from orchestration.reports.funnel import (
    chart_digest,
    markdown_tables,
    render_funnel_png,
    reports_dir,
    write_funnel_report,
)
from orchestration.store import tables


@dg.asset(
    key=["reports", "funnel"],
    deps=[["leads", "stages"], ["hubspot", "writeback"], ["salesforce", "writeback"]],
    group_name="reports",
    kinds={"polars"},
)
def reports_funnel(
    state_store: StateStoreResource, lead_definition: LeadDefinitionResource
) -> dg.MaterializeResult:
    """The demand waterfall by cut, its bottleneck and chart (also written to the reports dir)."""
    store = state_store.store()
    counts = metrics.stage_counts(frames.read(store, "stages"))
    report = metrics.funnel_report(
        store.read_appended(tables.stage_ledger, LEDGER_SCHEMA),
        frames.read(store, "unified_leads", ["unified_id", "country", "lead_source"]),
        lead_definition.definition(),
        datetime.now(UTC),
    )
    frames.write(store, "report_funnel", report.overall)
    # The chart is drawn again only when a figure on it moved.
    digest = chart_digest(report)
    stored = frames.read(store, "report_chart")
    redrawn = not (stored.height == 1 and stored["digest"][0] == digest)
    if not redrawn:
        chart = stored["png"][0]
    else:
        chart = render_funnel_png(report)
        frames.write(
            store,
            "report_chart",
            pl.DataFrame(
                {"digest": [digest], "png": [chart]}, schema=frames.FRAME_SCHEMAS["report_chart"]
            ),
        )
    _, md_path = write_funnel_report(report, reports_dir(), chart=chart)
    data_uri = "data:image/png;base64," + base64.b64encode(chart).decode("ascii")
    tables_md = markdown_tables(report)
    return dg.MaterializeResult(
        metadata={
            "bottleneck": dg.MetadataValue.text(report.bottleneck_sentence()),
            "chart": dg.MetadataValue.md(f"![funnel]({data_uri})"),
            "chart_redrawn": redrawn,
            "waterfall": dg.MetadataValue.md(tables_md.pop("overall")),
            **{f"waterfall_by_{cut}": dg.MetadataValue.md(t) for cut, t in tables_md.items()},
            "leads_by_stage": markdown_preview(counts),
            "leads": dg.MetadataValue.int(report.leads),
            **{name: dg.MetadataValue.int(n) for name, n in report.flows.items()},
            "report_path": dg.MetadataValue.path(str(md_path.resolve())),
        }
    )
