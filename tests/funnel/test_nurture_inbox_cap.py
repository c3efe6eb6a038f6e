"""The frequency cap counts the person's inbox: a rep's email logged in either CRM is a send."""

from datetime import UTC, datetime, timedelta

import polars as pl

from orchestration.funnel.definition import load_definition
from orchestration.funnel.nurture.select import select_next
from tests.funnel.test_nurture import history, leads, tmpl

NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)


def _emails(*rows: tuple[str, str, float]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"unified_id": u, "activity_type": kind, "occurred_at": NOW - timedelta(days=age)}
            for u, kind, age in rows
        ],
        schema={
            "unified_id": pl.String(),
            "activity_type": pl.String(),
            "occurred_at": pl.Datetime("us", "UTC"),
        },
    )


def test_sales_emails_count_toward_the_frequency_cap() -> None:
    base = load_definition()
    # No cooldown, so only the cap (2 emails in 7 days) can push a send back.
    definition = base.model_copy(
        update={"nurture": base.nurture.model_copy(update={"default_cooldown_days": 0})}
    )
    assert (
        definition.nurture.frequency_cap.max_sends,
        definition.nurture.frequency_cap.per_days,
    ) == (
        2,
        7,
    )
    people = leads({"unified_id": "rep"}, {"unified_id": "quiet"}, {"unified_id": "logged"})
    sends = history(("rep", "x", 1), ("logged", "x", 1))
    acts = _emails(
        ("rep", "sales_email", 3),  # a rep wrote 3 days ago: with the nurture send, 2 in 7 days
        ("quiet", "email_open", 1),  # opening a mail is not a send
        ("quiet", "page_view", 1),
        ("logged", "sales_email", 1),  # the nurture send itself, as the CRM logged it: counted once
    )
    out = select_next(people, [tmpl("b", ["MQL"])], sends, definition, now=NOW, activities=acts)
    due = dict(zip(out["unified_id"], out["due_at"], strict=True))
    assert due["rep"] == NOW + timedelta(days=4)  # the rep's email + 7 days
    assert due["quiet"] == NOW
    assert due["logged"] == NOW

    # Without the timeline the cap sees only nurture sends.
    alone = select_next(people, [tmpl("b", ["MQL"])], sends, definition, now=NOW)
    assert dict(zip(alone["unified_id"], alone["due_at"], strict=True))["rep"] == NOW
