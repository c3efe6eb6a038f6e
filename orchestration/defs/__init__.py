"""Dagster wiring only: assets, checks, jobs, schedules, resources. Domain logic is in funnel/."""
