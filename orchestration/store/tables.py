"""The state store's tables (SQLAlchemy Core), one MetaData for SQLite and PostgreSQL alike.

Raw CRM records are kept as JSON payloads keyed by (system, object, source id) so a re-pull is an
upsert; derived frames (normalised leads, identity, scores, ...) are tables whose columns mirror the
canonical polars schemas in `orchestration.funnel.model`.
"""

import sqlalchemy as sa

SCHEMA_VERSION = 3

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)

# Everything pulled from a CRM, latest version of each record.
source_records = sa.Table(
    "source_records",
    metadata,
    sa.Column("system", sa.String(16), primary_key=True),
    sa.Column("object", sa.String(64), primary_key=True),
    sa.Column("source_id", sa.String(64), primary_key=True),
    sa.Column("payload", sa.Text, nullable=False),  # JSON: flat field -> value (strings)
    # The stamp survivorship reads: an echo of our own write keeps the stored one (store.py).
    sa.Column("modified_at", sa.DateTime(timezone=True)),
    # The CRM's latest stamp as last seen, echoes included: what reconciliation compares with.
    sa.Column("crm_modified_at", sa.DateTime(timezone=True)),
    sa.Column("is_deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("pulled_at", sa.DateTime(timezone=True), nullable=False),
    # When a pull (or reconciliation) last stored a change that was not an echo of leadsync's own
    # write-back: what the steps after the pulls redo. Null in rows stored before version 3.
    sa.Column("changed_at", sa.DateTime(timezone=True)),
    sa.Index("ix_source_records_pulled", "system", "object", "pulled_at"),
)

# High-water marks of incremental pulls, one per (system, object).
cursors = sa.Table(
    "cursors",
    metadata,
    sa.Column("system", sa.String(16), primary_key=True),
    sa.Column("object", sa.String(64), primary_key=True),
    sa.Column("high_water", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Every version of the lead definition and the runs that used it.
definition_versions = sa.Table(
    "definition_versions",
    metadata,
    sa.Column("version", sa.String(32), primary_key=True),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("first_used_at", sa.DateTime(timezone=True), nullable=False),
)

definition_runs = sa.Table(
    "definition_runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(32), sa.ForeignKey("definition_versions.version")),
    sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
)

# The append-only lifecycle ledger.
stage_ledger = sa.Table(
    "stage_ledger",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("unified_id", sa.String(64), nullable=False, index=True),
    sa.Column("from_stage", sa.String(32)),
    sa.Column("to_stage", sa.String(32), nullable=False),
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("definition_version", sa.String(32), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("run_id", sa.String(64)),
)

# What leadsync last wrote to each CRM field (for idempotence and ownership checks).
writeback_ledger = sa.Table(
    "writeback_ledger",
    metadata,
    sa.Column("system", sa.String(16), primary_key=True),
    sa.Column("record_id", sa.String(128), primary_key=True),
    sa.Column("field", sa.String(128), primary_key=True),
    sa.Column("value", sa.Text),
    sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("run_id", sa.String(64)),
    # The plan reads the rows of the records it would write, not the whole ledger.
    sa.Index("ix_writeback_ledger_record", "record_id"),
)

# Rows a CRM refused, with its reason; retried on the next run.
rejected_rows = sa.Table(
    "rejected_rows",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("stage", sa.String(32), nullable=False),  # "normalize" | "writeback"
    sa.Column("system", sa.String(16), nullable=False),
    sa.Column("record_id", sa.String(128), nullable=False),
    sa.Column("field", sa.String(128)),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("run_id", sa.String(64)),
)

# When each nurture template was handed to a lead (written to the CRMs).
nurture_history = sa.Table(
    "nurture_history",
    metadata,
    sa.Column("unified_id", sa.String(64), primary_key=True),
    sa.Column("template_id", sa.String(128), primary_key=True),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
)

# People's identity decisions (`leadsync review accept|reject`, `leadsync unmerge`), append-only:
# the latest decision on a pair wins, and every earlier one stays as the audit trail.
identity_decisions = sa.Table(
    "identity_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("record_a", sa.String(128), nullable=False),
    sa.Column("record_b", sa.String(128), nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),  # accept | reject
    sa.Column("decided_by", sa.String(128), nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("note", sa.Text),
)

# Derived frames (normalised leads, identity, scores, stages, ...), one Parquet file per frame:
# a step reads and writes a whole frame in one round trip, only the columns it needs, with
# its polars dtypes intact (lists and structs included), on SQLite and PostgreSQL alike.
derived_frames = sa.Table(
    "derived_frames",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("row_count", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # A snapshot of raw records (`StateStore.source_snapshot`): the latest `pulled_at` it holds.
    sa.Column("pulled_through", sa.DateTime(timezone=True)),
)
