"""Builders shared by the domain tests: scoring inputs as the pipeline hands them over."""

from datetime import datetime, timedelta
from typing import Any

import polars as pl

from orchestration.funnel.model import ACTIVITY_SCHEMA
from orchestration.funnel.scoring import LEAD_INPUT_SCHEMA


def scoring_leads(*rows: dict[str, Any], defaults: dict[str, Any] | None = None) -> pl.DataFrame:
    """Unified leads for scoring; every row starts from `defaults` (a bare English lead)."""
    base: dict[str, Any] = {
        "title": None,
        "employee_count": None,
        "industry": None,
        "country": None,
        "locale": "en",
        "email_domain": "example.com",
        "email_is_free": False,
        **(defaults or {}),
    }
    return pl.DataFrame([{**base, **r} for r in rows], schema=LEAD_INPUT_SCHEMA)


def activities_at(now: datetime, *events: tuple[str, str, float]) -> pl.DataFrame:
    """(unified_id, activity_type, age in days before `now`) → ACTIVITY_SCHEMA + unified_id."""
    return pl.DataFrame(
        [
            {
                "activity_id": f"a{i}",
                "record_id": f"r-{uid}",
                "source_system": "hubspot",
                "activity_type": kind,
                "occurred_at": now - timedelta(days=age),
                "detail": None,
                "unified_id": uid,
            }
            for i, (uid, kind, age) in enumerate(events)
        ],
        schema={**ACTIVITY_SCHEMA, "unified_id": pl.String()},
    )
