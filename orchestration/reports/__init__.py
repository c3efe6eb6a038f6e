"""Presentation of reports: charts and Markdown, shared by the Dagster assets and the CLI."""
