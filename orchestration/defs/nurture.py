"""Nurture assets: choose and render the next content for every unified lead."""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl

from orchestration.defs import frames
from orchestration.defs.resources import (
    NURTURE_CODE_VERSION,
    LeadDefinitionResource,
    StateStoreResource,
)
from orchestration.funnel.nurture import render, select, templates
from orchestration.store import tables


@dg.asset(
    key=["nurture", "assignments"],
    deps=[["leads", "stages"]],
    group_name="nurture",
    kinds={"jinja"},
    code_version=NURTURE_CODE_VERSION,
)
def nurture_assignments(
    state_store: StateStoreResource, lead_definition: LeadDefinitionResource
) -> dg.MaterializeResult:
    """The next nurture content for each unified lead, rendered, with the reason it was chosen."""
    store = state_store.store()
    definition = lead_definition.definition()
    root = Path(lead_definition.templates_dir)
    catalogue = templates.load_templates(root)
    env = render.make_environment(root)

    # Only the fields selection and rendering read: the golden records' provenance and the
    # scores' reasons are most of those frames' bytes.
    wanted = dict.fromkeys([*select.LEAD_INPUT_SCHEMA, *render.CONTEXT_COLUMNS])
    leads = (
        frames.read(
            store,
            "unified_leads",
            [c for c in wanted if c in frames.FRAME_SCHEMAS["unified_leads"]],
        )
        .join(frames.read(store, "stages"), on="unified_id", how="inner")
        .join(
            frames.read(store, "scores", ["unified_id", "score", "temperature"]),
            on="unified_id",
            how="inner",
        )
    )
    previous = frames.read(store, "nurture_assignments")
    _record_deliveries(state_store, previous)
    history = store.read_table(tables.nurture_history, select.HISTORY_SCHEMA)
    # Both CRMs' timeline, for wait-after triggers ("a week after a download").
    activities = frames.read(store, "activities", ["unified_id", "activity_type", "occurred_at"])
    chosen = select.select_next(
        leads, catalogue, history, definition, now=datetime.now(UTC), activities=activities
    )
    # Only leads whose assignment changed are rendered again.
    rendered = render.render_assignments(
        chosen,
        leads,
        catalogue,
        env,
        links=render.links_for(definition.nurture.link_base_url),
        previous=previous,
    )
    frames.write(store, "nurture_assignments", rendered)
    # Leads rendered this run (new, re-selected, or their template, layout or data changed).
    rerendered = (
        rendered.filter(pl.col("template_id").is_not_null())
        .join(
            previous.select("unified_id", "render_key"),
            on=["unified_id", "render_key"],
            how="anti",
            nulls_equal=True,
        )
        .height
    )
    by_template = (
        rendered.filter(pl.col("status") == "assigned")
        .group_by("template_id")
        .len()
        .sort("len", descending=True)
    )
    by_status = rendered.group_by("status").len().sort("status")
    return dg.MaterializeResult(
        metadata={
            "leads": len(rendered),
            "by_status": {r["status"]: r["len"] for r in by_status.to_dicts()},
            "templates_chosen": {r["template_id"]: r["len"] for r in by_template.to_dicts()},
            "templates_loaded": len(catalogue),
            "rendered_this_run": rerendered,
            "render_errors": rendered.filter(pl.col("render_error").is_not_null()).height,
        }
    )


def _record_deliveries(state_store: StateStoreResource, previous: pl.DataFrame) -> None:
    """A template counts as sent once a CRM logs an email with its rendered subject to the lead."""
    store = state_store.store()
    if previous.is_empty():
        return
    emails = frames.read(
        store, "activities", ["unified_id", "activity_type", "detail", "occurred_at"]
    ).filter(pl.col("activity_type").is_in(["sales_email", "email_open", "email_click"]))
    if emails.is_empty():
        return
    delivered = (
        previous.filter(pl.col("status") == "assigned")
        .join(
            emails.select("unified_id", pl.col("detail").alias("next_subject"), "occurred_at"),
            on=["unified_id", "next_subject"],
            how="inner",
        )
        .group_by("unified_id", "template_id")
        .agg(pl.col("occurred_at").min().alias("sent_at"))
    )
    store.upsert(tables.nurture_history, delivered.to_dicts(), ["unified_id", "template_id"])
