"""Report assets: the demand waterfall computed from the stage ledger."""

import dagster as dg

from orchestration.defs import frames
from orchestration.defs.metadata import markdown_preview
from orchestration.defs.resources import StateStoreResource
from orchestration.funnel import metrics
from orchestration.funnel.stages import LEDGER_SCHEMA
from orchestration.store import tables


@dg.asset(
    key=["reports", "funnel"],
    deps=[["leads", "stages"], ["hubspot", "writeback"], ["salesforce", "writeback"]],
    group_name="reports",
    kinds={"polars"},
)
def reports_funnel(state_store: StateStoreResource) -> dg.MaterializeResult:
    """The demand waterfall: leads per stage now and how many ever reached each stage."""
    store = state_store.store()
    counts = metrics.stage_counts(frames.read(store, "stages"))
    waterfall = metrics.waterfall(store.read_table(tables.stage_ledger, LEDGER_SCHEMA))
    frames.write(store, "report_funnel", waterfall)
    return dg.MaterializeResult(
        metadata={
            "leads_by_stage": markdown_preview(counts),
            "waterfall": markdown_preview(waterfall),
        }
    )
