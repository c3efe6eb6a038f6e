"""The derived frames the assets persist, each with the schema it is read back with."""

from collections.abc import Sequence

import polars as pl

from orchestration.funnel.identity import MATCH_SCHEMA, PARAMS_SCHEMA
from orchestration.funnel.metrics import STAGE_REPORT_SCHEMA
from orchestration.funnel.model import (
    ACTIVITY_SCHEMA,
    CANONICAL_LEAD_SCHEMA,
    IDENTITY_PAIR_SCHEMA,
    IDENTITY_SCHEMA,
)
from orchestration.funnel.normalize import OUTCOME_SCHEMA
from orchestration.funnel.nurture.render import RENDER_COLUMNS
from orchestration.funnel.nurture.select import ASSIGNMENT_SCHEMA
from orchestration.funnel.quality import REJECTION_SCHEMA
from orchestration.funnel.scoring import SCORE_INPUT_SCHEMA, SCORE_SCHEMA
from orchestration.funnel.stages import STAGES_SCHEMA
from orchestration.funnel.unify import FINGERPRINT_SCHEMA, GOLDEN_SCHEMA, TARGET_SCHEMA
from orchestration.funnel.writeback import PLAN_SCHEMA
from orchestration.store import StateStore

FRAME_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "leads_normalized": CANONICAL_LEAD_SCHEMA,
    "quarantined": REJECTION_SCHEMA,
    "activities_normalized": ACTIVITY_SCHEMA,
    "outcomes": OUTCOME_SCHEMA,
    # Name part -> romaji, kept so that pykakasi's dictionaries load only for a part never seen.
    "romaji_parts": {"part": pl.String(), "romaji": pl.String()},
    "identity": IDENTITY_SCHEMA,
    # The rest of the identity graph, so the next run matches only new and changed records.
    "identity_pairs": IDENTITY_PAIR_SCHEMA,
    "identity_records": MATCH_SCHEMA,
    "identity_params": PARAMS_SCHEMA,
    "unified_leads": GOLDEN_SCHEMA,
    # What each unified lead's golden record was made from, so the next run remakes only the
    # leads whose members changed.
    "unified_members": FINGERPRINT_SCHEMA,
    "writeback_targets": TARGET_SCHEMA,
    "activities": {**ACTIVITY_SCHEMA, "unified_id": pl.String()},
    "scores": SCORE_SCHEMA,
    # What each lead's score was computed from, so a run on the same day scores only the leads
    # whose fields or activities changed.
    "score_inputs": SCORE_INPUT_SCHEMA,
    "stages": STAGES_SCHEMA,
    "nurture_assignments": {**ASSIGNMENT_SCHEMA, **RENDER_COLUMNS},
    "writeback_plan": PLAN_SCHEMA,
    # The funnel report's stage rows (waterfall, time in stage, exits); its cuts live in metadata.
    "report_funnel": STAGE_REPORT_SCHEMA,
    # The last funnel chart and the digest of what it draws, so an unmoved funnel is not redrawn.
    "report_chart": {"digest": pl.String(), "png": pl.Binary()},
}


def read(store: StateStore, name: str, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """A persisted frame with its declared dtypes (empty, with columns, before its first run);
    only `columns`, when given."""
    return store.read_frame(name, FRAME_SCHEMAS[name], columns)


def write(store: StateStore, name: str, frame: pl.DataFrame) -> None:
    if name not in FRAME_SCHEMAS:
        raise KeyError(f"unknown frame {name!r}: declare its schema in FRAME_SCHEMAS")
    store.replace_frame(name, frame)
