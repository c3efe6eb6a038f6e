"""Write-back planning: the per-field diff between what each CRM should hold and what it holds.

The plan is a long frame, one row per (CRM record, field) to send. It is built with joins only:
the desired values are melted to (unified_id, column, value), joined to the CRM records of each
unified lead and to the field map of the definition, then compared with the CRM's current values.

Rules:

* Only changed fields: values are compared in a canonical string form, so 42, "42" and "42.0" are
  equal and None equals "" (numbers travel as strings through the CRMs' APIs and come back with
  decimals; a blank is a blank whichever way a system spells it).
* Deleted records and converted Salesforce Leads (which Salesforce refuses to update) are not
  targets; a converted lead is written through its Contact.
* Never blank a value: a desired null/"" is never planned. A lead that lost its next content keeps
  the last one shown in the CRM rather than having the field wiped.
* Ownership (`owner` per field in the definition's `writeback` section):
  - `leadsync` (every v1 field): leadsync is the source of truth, so a value a person typed into
    the CRM is overwritten on the next run;
  - `crm`: leadsync only proposes a value while the CRM still holds what leadsync last wrote
    (`last_written`) or nothing at all; once a person has changed it, the CRM's value stands.
* The CRMs' own lifecycle fields (`writeback.lifecycle`, off unless the definition turns them on)
  follow the ledger through each stage's mapping (`lifecycle_columns`), with two vendor rules:
  - HubSpot `lifecyclestage` only moves forward in HubSpot's order (HubSpot needs the value
    cleared before a move back), so a backward value is never planned;
  - Salesforce `Lead.Status` is left alone while it already means the lead's stage (a salesperson
    who picked "Working" over "Working - Contacted" keeps their word).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import polars as pl

from orchestration.funnel.definition import LeadDefinition
from orchestration.funnel.scoring import ensure_columns

PLAN_SCHEMA: dict[str, pl.DataType] = {
    "system": pl.String(),
    "object": pl.String(),
    "record_id": pl.String(),
    "source_id": pl.String(),
    "field": pl.String(),
    "current_value": pl.String(),
    "new_value": pl.String(),
}

_VALUES_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.String(),
    "field": pl.String(),
    "value": pl.String(),
}

# Integral floats up to this size print exactly as integers.
_MAX_EXACT_INT = 2.0**53


def canonical_value(expr: pl.Expr) -> pl.Expr:
    """The comparison form of a value: trimmed, numbers without a trailing ".0", blank → null."""
    text = expr.cast(pl.String).str.strip_chars()
    number = text.cast(pl.Float64, strict=False)
    finite = number.is_not_null() & number.is_finite()
    return (
        pl.when(text.is_null() | (text == ""))
        .then(pl.lit(None, dtype=pl.String))
        .when(finite & (number == number.floor()) & (number.abs() < _MAX_EXACT_INT))
        .then(number.cast(pl.Int64).cast(pl.String))
        .when(finite)
        .then(number.cast(pl.String))
        .otherwise(text)
    )


def _as_text(frame: pl.DataFrame, column: str) -> pl.Expr:
    # Numbers are sent in canonical form (42, not 42.0); everything else as its string.
    if frame.schema[column].is_numeric():
        return canonical_value(pl.col(column)).alias(column)
    return pl.col(column).cast(pl.String).alias(column)


def _values(frame: pl.DataFrame | None, name: str) -> pl.DataFrame:
    # One row per (record, field) already (`current_values` makes them so, the ledger's key is
    # that pair): a `unique` here cost ~250 B a row in hash tables, 380 MiB at 100,000 people.
    if frame is None:
        frame = pl.DataFrame(schema=_VALUES_SCHEMA)
    return frame.select("record_id", "field", pl.col("value").cast(pl.String).alias(name))


def lifecycle_columns(definition: LeadDefinition) -> list[pl.Expr]:
    """hubspot_lifecyclestage and salesforce_lead_status of a frame with `stage`, from the
    definition's stage mappings (null where a stage has no Salesforce status to write)."""
    stage_defs = [*definition.stages, *definition.off_funnel_stages]
    hubspot = {s.name: s.hubspot_lifecyclestage for s in stage_defs}
    salesforce = {s.name: s.salesforce_lead_status for s in stage_defs}
    stage = pl.col("stage")
    return [
        stage.replace_strict(hubspot, default=None, return_dtype=pl.String).alias(
            "hubspot_lifecyclestage"
        ),
        stage.replace_strict(salesforce, default=None, return_dtype=pl.String).alias(
            "salesforce_lead_status"
        ),
    ]


def _status_meaning(definition: LeadDefinition) -> dict[str, str]:
    """Lower-cased Lead.Status -> what it means to the stage rules (open, sal, sql, recycle,
    disqualified)."""
    ss = definition.sales_status
    meaning: dict[str, str] = {}
    for name, values in (
        ("open", ss.open),
        ("sal", ss.sal),
        ("sql", ss.sql),
        ("recycle", list(ss.recycle)),
        ("disqualified", list(ss.disqualified)),
    ):
        for value in values:
            meaning.setdefault(value.strip().lower(), name)
    return meaning


def _lifecycle_rules(definition: LeadDefinition) -> pl.Expr:
    """False for planned lifecycle-field rows that the vendor rules above forbid or make moot."""
    order = {v: i for i, v in enumerate(definition.writeback.lifecycle.hubspot_order)}
    meaning = _status_meaning(definition)

    def rank(col: str) -> pl.Expr:
        return pl.col(col).replace_strict(order, default=None, return_dtype=pl.Int64)

    def means(col: str) -> pl.Expr:
        return (
            pl.col(col)
            .str.strip_chars()
            .str.to_lowercase()
            .replace_strict(meaning, default=None, return_dtype=pl.String)
        )

    hubspot_back = (
        (pl.col("system") == "hubspot")
        & (pl.col("field") == "lifecyclestage")
        & pl.col("cur_c").is_not_null()
        # an unknown (custom) current value has no place in the order: leave it alone
        & (rank("cur_c").is_null() | (rank("new_c") < rank("cur_c")).fill_null(True))
    )
    same_meaning = (
        (pl.col("system") == "salesforce")
        & (pl.col("field") == "Status")
        & means("cur_c").eq_missing(means("new_c"))
        & means("cur_c").is_not_null()
    )
    return ~(hubspot_back | same_meaning)


# Target records planned together. The plan's joins are long frames, one row per record and
# field: all at once they took ~5 KiB a person at the peak (~700 MiB at 100,000 people).
PLAN_BATCH_RECORDS = 20_000


def plan_writeback(
    desired: pl.DataFrame,
    targets: pl.DataFrame,
    current: pl.DataFrame,
    last_written: pl.DataFrame | Callable[[pl.Series], pl.DataFrame] | None,
    definition: LeadDefinition,
    *,
    batch_records: int = PLAN_BATCH_RECORDS,
) -> pl.DataFrame:
    """The fields to write, per CRM record (PLAN_SCHEMA), sorted by system, record and field.

    `desired`: one row per unified_id with the canonical output columns (stage, scores,
    temperature, next_template_id, next_subject, ...). `targets`: unified_id, record_id,
    source_system, source_object, source_id. `current` and `last_written`: long frames
    (record_id, field, value), one row per (record_id, field), of what each CRM holds now and
    what leadsync last wrote; the latter may be a function from record ids to their rows, asked
    only for the records with a CRM-owned field that holds a value other than the desired one
    (the only rows it decides).

    The unified leads are planned in batches of about `batch_records` target records (a lead's
    records stay in one batch); the result does not depend on the batch size.
    """
    fields = pl.DataFrame(
        definition.writeback_field_rows(),
        schema={
            "system": pl.String(),
            "object": pl.String(),
            "field": pl.String(),
            "column": pl.String(),
            "owner": pl.String(),
        },
    )
    columns = [c for c in fields["column"].unique(maintain_order=True) if c in desired.columns]
    if not columns:
        return pl.DataFrame(schema=PLAN_SCHEMA)
    # Records that cannot take a write: deleted ones, and converted Salesforce Leads (Salesforce
    # rejects updates to them; the converted Contact is a target of its own).
    writable = ~pl.col("is_deleted").fill_null(False) & ~(
        (pl.col("source_system") == "salesforce")
        & (pl.col("source_object") == "Lead")
        & pl.col("sf_is_converted").fill_null(False)
    )
    targets = (
        ensure_columns(targets, {"is_deleted": pl.Boolean(), "sf_is_converted": pl.Boolean()})
        .filter(writable)
        .select(
            pl.col("unified_id").cast(pl.String),
            pl.col("record_id").cast(pl.String),
            pl.col("source_system").alias("system"),
            pl.col("source_object").alias("object"),
            pl.col("source_id").cast(pl.String),
        )
    )
    desired = desired.with_columns(pl.col("unified_id").cast(pl.String))
    batches = max(1, -(-targets.height // max(1, batch_records)))
    if batches == 1:
        return _plan_batch(desired, targets, current, last_written, fields, columns, definition)
    batch = (pl.col("unified_id").hash(seed=0) % batches).alias("_batch")
    targets = targets.with_columns(batch)
    # Each CRM value goes to the batch of its record's unified lead; values of records that are
    # not targets are never planned.
    record_batch = targets.select("record_id", "_batch").unique("record_id", keep="last")
    by_batch = {
        "targets": targets.partition_by("_batch", as_dict=True, include_key=False),
        "desired": desired.with_columns(batch).partition_by(
            "_batch", as_dict=True, include_key=False
        ),
        "current": current.join(record_batch, on="record_id", how="inner").partition_by(
            "_batch", as_dict=True, include_key=False
        ),
    }
    del targets, desired, current
    parts: list[pl.DataFrame] = []
    for key in sorted(by_batch["targets"]):
        parts.append(
            _plan_batch(
                by_batch["desired"].pop(key, None),
                by_batch["targets"].pop(key),
                by_batch["current"].pop(key, None),
                last_written,
                fields,
                columns,
                definition,
            )
        )
    return pl.concat(parts).sort("system", "object", "record_id", "field")


def _plan_batch(
    desired: pl.DataFrame | None,
    targets: pl.DataFrame,
    current: pl.DataFrame | None,
    last_written: pl.DataFrame | Callable[[pl.Series], pl.DataFrame] | None,
    fields: pl.DataFrame,
    columns: list[str],
    definition: LeadDefinition,
) -> pl.DataFrame:
    if desired is None:
        return pl.DataFrame(schema=PLAN_SCHEMA)
    # unified_id is both the key and a value (leadsync_unified_id), so the key gets its own name.
    long = (
        desired.unique("unified_id", keep="last", maintain_order=True)
        .select(
            pl.col("unified_id").alias("_key"),
            *[_as_text(desired, c) for c in columns],
        )
        .unpivot(index="_key", on=columns, variable_name="column", value_name="new_value")
        .rename({"_key": "unified_id"})
    )
    plan = (
        targets.join(fields, on=["system", "object"], how="inner")
        .join(long, on=["unified_id", "column"], how="inner")
        .filter(pl.col("new_value").is_not_null())
        .join(_values(current, "current_value"), on=["record_id", "field"], how="left")
        # A value the CRM already holds verbatim is equal in canonical form too: most are, and
        # the canonical form (a float parse per value) is then computed for the few that remain.
        .filter(pl.col("current_value").is_null() | pl.col("new_value").ne(pl.col("current_value")))
        .with_columns(
            canonical_value(pl.col("new_value")).alias("new_c"),
            canonical_value(pl.col("current_value")).alias("cur_c"),
        )
        # never blank a value; only what differs from the CRM now
        .filter(pl.col("new_c").is_not_null() & pl.col("new_c").ne_missing(pl.col("cur_c")))
        .filter(_lifecycle_rules(definition))
    )
    # What leadsync last wrote decides only a CRM-owned field that holds a value: read the
    # ledger rows of just those records (a person's lasting edit would otherwise cost a ledger
    # read on every run).
    crm_held = (pl.col("owner") == "crm") & pl.col("cur_c").is_not_null()
    if callable(last_written):
        last_written = last_written(plan.filter(crm_held)["record_id"].unique())
    plan = (
        plan.join(_values(last_written, "last_value"), on=["record_id", "field"], how="left")
        .with_columns(canonical_value(pl.col("last_value")).alias("last_c"))
        # a CRM-owned field a person has changed since our last write stays theirs
        .filter(~(crm_held & pl.col("cur_c").ne_missing(pl.col("last_c"))))
    )
    return plan.select([pl.col(c).cast(t) for c, t in PLAN_SCHEMA.items()]).sort(
        "system", "object", "record_id", "field"
    )


def current_values(raw: Mapping[str, pl.DataFrame], definition: LeadDefinition) -> pl.DataFrame:
    """What each CRM record holds now for leadsync's fields, long: (record_id, field, value).

    `raw` maps "<system>:<object>" to the pulled records as string columns (HubSpot id in `id`,
    falling back to `hs_object_id`; Salesforce in `Id`). A field the pull did not return reads as
    null, so it is planned as missing rather than silently skipped. A record listed twice counts
    once, as its last row says: the result has one row per (record_id, field), which
    `plan_writeback` and `landed_unledgered` rely on.
    """
    parts: list[pl.DataFrame] = []
    objects: dict[tuple[str, str], list[str]] = {}
    for row in definition.writeback_field_rows():
        objects.setdefault((row["system"], row["object"]), []).append(row["field"])
    for (system, obj), field_names in objects.items():
        frame = raw.get(f"{system}:{obj}")
        if frame is None or frame.is_empty():
            continue
        ids = [
            c for c in (("id", "hs_object_id") if system == "hubspot" else ("Id",)) if c in frame
        ]
        if not ids:
            continue
        record_id = pl.lit(f"{system}:{obj}:") + pl.coalesce(
            [pl.col(c).cast(pl.String).str.strip_chars() for c in ids]
        )
        values = [
            (
                pl.col(f).cast(pl.String) if f in frame.columns else pl.lit(None, dtype=pl.String)
            ).alias(f)
            for f in field_names
        ]
        parts.append(
            frame.select(record_id.alias("record_id"), *values)
            .filter(pl.col("record_id").is_not_null())
            # One row per record (the last wins), so one value per (record, field) after.
            .unique("record_id", keep="last", maintain_order=True)
            .unpivot(index="record_id", on=field_names, variable_name="field", value_name="value")
        )
    if not parts:
        return pl.DataFrame(schema=_VALUES_SCHEMA)
    return pl.concat(parts).select(list(_VALUES_SCHEMA))


def apply_plan(current: pl.DataFrame, plan: pl.DataFrame) -> pl.DataFrame:
    """`current` (record_id, field, value) as it will be once every planned write succeeded.

    Used for dry runs and to update the store's view of the CRMs after a successful apply; the
    result is also what `last_written` should hold for those fields.
    """
    written = plan.select("record_id", "field", pl.col("new_value").alias("value"))
    return pl.concat(
        [
            current.select(list(_VALUES_SCHEMA)).join(
                written, on=["record_id", "field"], how="anti"
            ),
            written,
        ],
        how="vertical_relaxed",
    ).sort("record_id", "field")


def _record_batches(frame: pl.DataFrame, batches: int, rows: int = 1_000_000) -> pl.Series:
    """Each row's batch (0 .. batches - 1), a hash of its record_id. Computed a million rows at a
    time: whole, the 64-bit hashes of 15M values took ~240 MiB on the way to 60 MiB of batches."""
    batch_of = (pl.col("record_id").hash(seed=0) % batches).cast(pl.UInt32).alias("_batch")
    parts = [frame.slice(start, rows).select(batch_of) for start in range(0, frame.height, rows)]
    return pl.concat(parts).to_series() if parts else pl.Series("_batch", [], dtype=pl.UInt32)


def landed_unledgered(
    previous_plan: pl.DataFrame,
    current: pl.DataFrame,
    last_written: pl.DataFrame | Callable[[pl.Series], pl.DataFrame] | None,
    *,
    batch_records: int = PLAN_BATCH_RECORDS,
) -> pl.DataFrame:
    """Writes of the previous plan that the CRM holds but the ledger does not know of, as
    (system, record_id, field, value).

    The ledger is written when a CRM answers a batch. A batch the CRM committed whose answer never
    came back (the worker was killed, or a gateway answered 504 after the commit and the retries
    ran out) is in the CRM and not in the ledger; the next plan finds those fields current and
    would never ledger them, so the ledger would no longer say what leadsync last wrote. A planned
    value the CRM now holds is that write (or a person typing the very same value, which is the
    same state), so it is ledgered. Rows the ledger already holds with that value are left alone.

    `previous_plan` is a plan as `plan_writeback` made it: one row per (record_id, field), sorted
    by record. `last_written` may be a function from record ids to their ledger rows; it is asked
    for `batch_records` records at a time (after a full sync the previous plan is every field of
    every record, and so are their ledger rows).
    """
    schema = {"system": pl.String(), **_VALUES_SCHEMA}
    if previous_plan.is_empty():
        return pl.DataFrame(schema=schema)
    # A batch of records at a time, the CRM's values included: whole, the previous plan's joins
    # took ~4 KiB a person at the peak. A record's batch is a hash of its id, so the plan's rows
    # and the CRM's values find their batch without a table from one to the other; each batch
    # then takes its rows with one pass over an integer column. (Filtering the values by record
    # ids read every value's id once per batch, 66 times over 15M rows at a million people; a
    # record-to-batch table, or per-batch copies, held hundreds of MiB more.)
    previous = previous_plan.select("system", "record_id", "field", "new_value")
    records = previous.select(
        pl.col("record_id").ne_missing(pl.col("record_id").shift()).sum()
    ).item()
    batches = max(1, -(-int(records) // max(1, batch_records)))
    row_batch = _record_batches(previous, batches)
    value_batch = _record_batches(current, batches)
    parts = [pl.DataFrame(schema=schema)]
    for key in range(batches):
        rows = previous.filter(row_batch == key)
        values = current.filter(value_batch == key)
        held = (
            rows.join(_values(values, "current_value"), on=["record_id", "field"], how="inner")
            .filter(
                canonical_value(pl.col("new_value")).is_not_null()
                & canonical_value(pl.col("new_value")).eq_missing(
                    canonical_value(pl.col("current_value"))
                )
            )
            .drop("current_value")
        )
        if held.is_empty():
            continue
        ledger = (
            last_written(held["record_id"].unique()) if callable(last_written) else last_written
        )
        parts.append(
            held.join(_values(ledger, "last_value"), on=["record_id", "field"], how="left")
            .filter(
                canonical_value(pl.col("new_value")).ne_missing(
                    canonical_value(pl.col("last_value"))
                )
            )
            .select("system", "record_id", "field", pl.col("new_value").alias("value"))
        )
    return pl.concat(parts).sort("system", "record_id", "field")


def records_per_object(plan: pl.DataFrame, system: str) -> dict[str, int]:
    """Records of each object a plan updates in one CRM: what its write calls scale with."""
    rows = plan.filter(pl.col("system") == system)
    return dict(rows.group_by("object").agg(pl.col("source_id").n_unique()).iter_rows())
