"""Small helpers that turn frames into Dagster metadata the UI can show."""

import dagster as dg
import polars as pl


def markdown_preview(frame: pl.DataFrame) -> dg.MetadataValue:
    """A Markdown table of a (small) frame; emails never belong in previews."""
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = [
        "| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in frame.rows()
    ]
    return dg.MetadataValue.md("\n".join([header, rule, *rows]))
