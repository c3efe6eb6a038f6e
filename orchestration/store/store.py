"""Bulk reads and writes of the state store.

SQLite by default (a file, no server), PostgreSQL by URL. Frames go in and out as polars; derived
frames are stored whole as Parquet (`replace_frame`) and raw CRM records are upserted by key, so a
re-pulled record overwrites its previous version.
"""

import fcntl
import hashlib
import io
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from orchestration.store import tables

DEFAULT_DB_URL = "sqlite:///.leadsync/state.db"
_CHUNK = 1000
# Stored rows (source payloads, table rows) made into a frame at a time, not all at once.
_DECODE_BATCH = 20_000


def _lock_key(name: str) -> int:
    """A stable signed 64-bit key for PostgreSQL's advisory locks (they are per database)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


_MIGRATION_LOCK = _lock_key("leadsync:migrate")
_RUN_LOCK = _lock_key("leadsync:run")

# Server databases get one engine (one connection pool) per process and URL: every run builds a
# fresh StateStoreResource, and a pool per run would leak connections until the server's
# max_connections is reached. SQLite keeps an engine per StateStore: a cached pool could hold a
# file that a test or a user has since deleted and recreated.
_ENGINES: dict[tuple[int, str], sa.Engine] = {}


class RunLockTimeout(TimeoutError):
    """Another run held the state store's run lock for longer than this run would wait."""


# Schema steps after version 1, oldest first; each runs once per database, in one transaction.
_MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (2, ("ALTER TABLE source_records ADD COLUMN crm_modified_at {timestamp}",)),
    # 3: derived frames move to `derived_frames` (create_all makes it); each old frame table is
    # read once more and dropped when its frame is next written (`replace_frame`). Raw records
    # learn when someone other than leadsync's write-back last changed them.
    (
        3,
        (
            "ALTER TABLE source_records ADD COLUMN changed_at {timestamp}",
            "CREATE INDEX IF NOT EXISTS ix_writeback_ledger_record ON writeback_ledger (record_id)",
        ),
    ),
)


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


@dataclass(frozen=True)
class _Stored:
    """A raw record as stored: what an upsert compares a re-pulled version with."""

    payload: dict[str, Any]
    modified_at: datetime | None
    is_deleted: bool
    changed_at: datetime | None


# The record id column of a raw snapshot (the stored key, whatever the CRM calls its id field).
SOURCE_ID = "__source_id"


@dataclass(frozen=True)
class SourceSnapshot:
    """Every stored record of one CRM object, keyed by `SOURCE_ID` (`keyed`); the ids of those
    decoded into it by this read (`changed`), and of those among them that someone other than
    leadsync's write-back edited (`edited`); whether this read built it from nothing
    (`complete`: every record is new to its reader); the latest `pulled_at` it holds."""

    name: str
    keyed: pl.DataFrame
    changed: pl.Series
    edited: pl.Series
    complete: bool
    pulled_through: datetime | None
    partial: bool = False
    # The mark this read decoded from: what `stage_source_snapshot` keeps until the step's own
    # results are stored.
    read_from: datetime | None = None

    @property
    def records(self) -> pl.DataFrame:
        """The records without the key column, as the normaliser reads them."""
        return self.keyed.drop(SOURCE_ID, strict=False)


class StateStore:
    """The worker's memory between runs: raw records, cursors, derived frames and ledgers."""

    def __init__(self, url: str = DEFAULT_DB_URL) -> None:
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.engine = _engine(url)
        if self.engine.dialect.name == "sqlite":
            # WAL lets a reader (the CLI, a test) look while a run writes.
            with self.engine.begin() as conn:
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        self.migrate()

    def migrate(self) -> None:
        """Create missing tables, then apply each schema step newer than the recorded version.

        All in one transaction that holds the database's migration lock, so two workers starting
        at once on a new or older database never both create or alter: the second waits, then
        finds the schema current. PostgreSQL's DDL is transactional; on SQLite the transaction
        starts with BEGIN IMMEDIATE, which takes the database's write lock up front.
        """
        with self.engine.connect() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
            elif self.engine.dialect.name == "sqlite":
                # pysqlite opens no transaction for DDL by itself; this one covers all of it.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            self._migrate(conn)
            conn.commit()

    def _migrate(self, conn: sa.Connection) -> None:
        tables.metadata.create_all(conn)
        current = conn.execute(sa.select(sa.func.max(tables.schema_version.c.version))).scalar()
        if current is None:
            # A new database: create_all made the latest shape.
            current = tables.SCHEMA_VERSION
            conn.execute(
                tables.schema_version.insert().values(version=current, applied_at=datetime.now(UTC))
            )
        for version, statements in _MIGRATIONS:
            if version <= current:
                continue
            for statement in statements:
                conn.exec_driver_sql(statement.format(timestamp=self._timestamp_type()))
            conn.execute(
                tables.schema_version.insert().values(version=version, applied_at=datetime.now(UTC))
            )

    def _timestamp_type(self) -> str:
        return str(sa.DateTime(timezone=True).compile(dialect=self.engine.dialect))

    # ---- one run at a time -----------------------------------------------------------------

    @contextmanager
    def run_lock(self, *, timeout_s: float | None = None, poll_s: float = 0.2) -> Iterator[float]:
        """Hold the store's run lock: one sync or reconcile at a time per database.

        Two overlapping runs would both plan the same stage transitions and the same CRM writes
        from the same stored state, so the second would append duplicate ledger rows and write
        every field twice. The second run waits for the first instead (up to `timeout_s`, then
        `RunLockTimeout`) and then starts from the first's results. Yields the seconds it waited.

        PostgreSQL: a session-level advisory lock on a connection held for the run (in autocommit,
        so no transaction stays open); SQLite: an exclusive flock on `<db file>.runlock`. Both die
        with the process, so a killed worker never leaves the store locked.
        """
        started = time.monotonic()
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                try_lock = sa.select(sa.func.pg_try_advisory_lock(_RUN_LOCK))
                while not conn.execute(try_lock).scalar():
                    self._wait_or_raise(started, timeout_s, poll_s)
                try:
                    yield time.monotonic() - started
                finally:
                    conn.execute(sa.select(sa.func.pg_advisory_unlock(_RUN_LOCK)))
        elif dialect == "sqlite" and self.engine.url.database not in (None, "", ":memory:"):
            path = f"{self.engine.url.database}.runlock"
            with open(path, "a+b") as handle:
                while True:
                    try:
                        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        self._wait_or_raise(started, timeout_s, poll_s)
                try:
                    yield time.monotonic() - started
                finally:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        else:  # an in-memory database belongs to one process already
            yield 0.0

    def _wait_or_raise(self, started: float, timeout_s: float | None, poll_s: float) -> None:
        waited = time.monotonic() - started
        if timeout_s is not None and waited >= timeout_s:
            raise RunLockTimeout(
                f"another leadsync run holds the run lock on {self.engine.url!r} "
                f"(waited {waited:.0f} s); it is still syncing or reconciling this store, "
                "try again when it has finished"
            )
        time.sleep(poll_s)

    # ---- raw CRM records -------------------------------------------------------------------

    def _upsert(self, table: sa.Table, rows: Sequence[Mapping[str, Any]], keys: list[str]) -> None:
        if not rows:
            return
        dialect = self.engine.dialect.name
        insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
        update_cols = {c.name: insert.excluded[c.name] for c in table.columns if c.name not in keys}
        stmt = insert.on_conflict_do_update(index_elements=keys, set_=update_cols)
        # One key twice in a batch: the last row wins, as row-by-row upserts would have it.
        # PostgreSQL refuses a multi-row upsert that touches one row twice, and the driver
        # sends a batch as one multi-row statement.
        latest = {tuple(row[k] for k in keys): row for row in rows}
        rows = list(latest.values()) if len(latest) < len(rows) else rows
        with self.engine.begin() as conn:
            for start in range(0, len(rows), _CHUNK):
                conn.execute(stmt, list(rows[start : start + _CHUNK]))

    def upsert_source_records(
        self,
        system: str,
        obj: str,
        records: Sequence[Mapping[str, Any]],
        *,
        pulled_at: datetime,
        echo_fields: frozenset[str] = frozenset(),
        stamp_fields: frozenset[str] = frozenset(),
    ) -> int:
        """Upsert pulled records (flat dicts with `id`, `_modified_at`, `_deleted`).

        A record whose only differences from its stored version are in `echo_fields` (leadsync's
        own write-back fields) and `stamp_fields` (modified-date stamps) is the echo of our own
        write: it keeps its stored stamps, so our writes never look like a person's edit to the
        rules that prefer the most recently updated record, nor as an edit to the steps after the
        pulls (its `changed_at` stays). A record read again exactly as stored is not written at
        all. Returns how many records came back with no change but leadsync's own: echoes, and
        records read again at a cursor's edge.
        """
        previous = self._payloads(system, obj, [str(r["id"]) for r in records])
        ignored = echo_fields | stamp_fields
        rows, echoes = [], 0
        for r in records:
            payload = json.loads(
                json.dumps(
                    {k: v for k, v in r.items() if not k.startswith("_")},
                    ensure_ascii=False,
                    default=_json_default,
                )
            )
            modified_at = crm_modified_at = r.get("_modified_at")
            deleted = bool(r.get("_deleted", False))
            changed_at: datetime | None = pulled_at
            old = previous.get(str(r["id"]))
            if old is not None and old.payload == payload and old.is_deleted == deleted:
                echoes += 1  # read again at a cursor's edge, unchanged: nothing to store or redo
                continue
            if old is not None and ignored and _same_except(old.payload, payload, ignored):
                payload.update({k: old.payload.get(k) for k in stamp_fields if k in old.payload})
                modified_at, changed_at = old.modified_at, old.changed_at
                echoes += 1
            rows.append(
                {
                    "system": system,
                    "object": obj,
                    "source_id": str(r["id"]),
                    "payload": json.dumps(payload, ensure_ascii=False),
                    "modified_at": modified_at,
                    "crm_modified_at": crm_modified_at,
                    "is_deleted": deleted,
                    "pulled_at": pulled_at,
                    "changed_at": changed_at,
                }
            )
        self._upsert(tables.source_records, rows, ["system", "object", "source_id"])
        return echoes

    def _payloads(self, system: str, obj: str, ids: Sequence[str]) -> dict[str, _Stored]:
        t = tables.source_records
        out: dict[str, _Stored] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), _CHUNK):
                query = sa.select(
                    t.c.source_id, t.c.payload, t.c.modified_at, t.c.is_deleted, t.c.changed_at
                ).where(
                    t.c.system == system,
                    t.c.object == obj,
                    t.c.source_id.in_(ids[start : start + _CHUNK]),
                )
                for source_id, payload, modified_at, deleted, changed_at in conn.execute(query):
                    out[source_id] = _Stored(
                        json.loads(payload), modified_at, bool(deleted), changed_at
                    )
        return out

    def source_snapshot(
        self, system: str, obj: str, columns: Sequence[str] | None = None
    ) -> SourceSnapshot:
        """All stored records of one CRM object as a frame of strings (`payload_frame`), from
        a Parquet snapshot brought up to date by decoding only the records pulled since it was
        last saved (new, edited, echoes of write-back, deletions). Sorted by record id, so the
        result does not depend on the order the records arrived in.

        Reading does not move the snapshot: the step that consumes the change stores it
        (`stage_source_snapshot`) and moves its mark (`advance_source_snapshots`) once its own
        results are stored, so a failed run leaves the change for the next one. With `columns`,
        only those fields are read (a partial snapshot, which cannot be stored)."""
        name = f"source:{system}:{obj}"
        t, d = tables.source_records, tables.derived_frames
        # Per batch, as frames: Python strings kept from every batch would pin the memory each
        # batch's payloads leave behind (objects of one size share pages).
        changed_parts: list[pl.Series] = []
        edited_parts: list[pl.Series] = []
        through: datetime | None = None
        batches: list[pl.DataFrame] = []
        with self.engine.connect() as conn:
            mark = conn.execute(
                sa.select(d.c.pulled_through).where(d.c.name == name)
            ).scalar_one_or_none()
            query = sa.select(t.c.source_id, t.c.payload, t.c.pulled_at, t.c.changed_at).where(
                t.c.system == system, t.c.object == obj
            )
            if mark is not None:
                query = query.where(t.c.pulled_at > mark)
            # Decoded a batch at a time: a first read of millions of records would otherwise
            # hold every payload as a Python string and a dict at once (~2 KB a record), where
            # the frame of strings they become takes a tenth of that.
            result = conn.execution_options(yield_per=_DECODE_BATCH).execute(query)
            for rows in result.partitions():
                ids = pl.Series(SOURCE_ID, [r[0] for r in rows], pl.String())
                changed_parts.append(ids)
                # Echoes of leadsync's own write-back keep their `changed_at`: in the snapshot
                # (the write-back plan reads the values they carry), not among the records
                # edited since.
                edited_parts.append(
                    ids.filter(
                        [mark is None or r[3] is None or _aware(r[3]) > _aware(mark) for r in rows]
                    )
                )
                through = max(
                    (v for v in (_utc(r[2]) for r in rows) if isinstance(v, datetime)),
                    default=through,
                )
                fields = payload_frame([json.loads(r[1]) for r in rows])
                if columns is not None:
                    fields = fields.select(c for c in columns if c in fields.columns)
                batches.append(
                    pl.concat([ids.to_frame(), fields], how="horizontal")
                    if fields.width
                    else ids.to_frame()
                )
        empty = pl.Series(SOURCE_ID, [], pl.String())
        changed = pl.concat(changed_parts) if changed_parts else empty
        edited = pl.concat(edited_parts) if edited_parts else empty
        if not batches:
            delta = changed.to_frame()
        else:
            delta = pl.concat(batches, how="diagonal_relaxed") if len(batches) > 1 else batches[0]
            # Columns in name order, as one `payload_frame` of every record would give them; a
            # batch without associations has none, not unknown ones.
            delta = delta.select(SOURCE_ID, *sorted(c for c in delta.columns if c != SOURCE_ID))
            if "contact_ids" in delta.columns:
                delta = delta.with_columns(
                    pl.col("contact_ids").fill_null(pl.lit([], pl.List(pl.String())))
                )
        if mark is None:
            frame = delta
        else:
            frame = self.read_frame(
                name, columns=None if columns is None else [SOURCE_ID, *columns]
            )
            if changed.len():
                frame = pl.concat(
                    [frame.filter(~pl.col(SOURCE_ID).is_in(changed.implode())), delta],
                    how="diagonal_relaxed",
                )
        return SourceSnapshot(
            name=name,
            keyed=frame.sort(SOURCE_ID) if changed.len() else frame,
            changed=changed,
            edited=edited,
            complete=mark is None,
            pulled_through=through,
            partial=columns is not None,
            read_from=None if mark is None else _aware(mark),
        )

    def stage_source_snapshot(self, snapshot: SourceSnapshot) -> None:
        """Store a snapshot's records but keep the mark it was read from, so a step can let go
        of a large snapshot before its own results are stored; `advance_source_snapshots` then
        moves the marks. Should the step fail in between, the next read decodes the same records
        again over the staged ones and gets the same snapshot."""
        if snapshot.partial:
            raise ValueError(f"{snapshot.name}: a snapshot read with `columns` cannot be saved")
        if snapshot.pulled_through is not None:
            self.replace_frame(snapshot.name, snapshot.keyed, pulled_through=snapshot.read_from)

    def advance_source_snapshots(self, marks: Mapping[str, datetime | None]) -> None:
        """Move the marks of staged snapshots (name -> their `pulled_through`; None: nothing was
        read, the mark stays), all in one transaction."""
        t = tables.derived_frames
        with self.engine.begin() as conn:
            for name, through in marks.items():
                if through is not None:
                    conn.execute(t.update().where(t.c.name == name).values(pulled_through=through))

    def unread_sources(self, objects: Iterable[tuple[str, str]]) -> list[str]:
        """Of `objects` ((system, object) pairs), the "system:object" of those holding stored
        records that no snapshot has read yet: their next read decodes every record."""
        t, d = tables.source_records, tables.derived_frames
        with self.engine.connect() as conn:
            marked = set(
                conn.execute(
                    sa.select(d.c.name).where(
                        d.c.name.like("source:%"), d.c.pulled_through.is_not(None)
                    )
                ).scalars()
            )
            unread = []
            for system, obj in objects:
                if f"source:{system}:{obj}" in marked:
                    continue
                held = sa.select(t.c.source_id).where(t.c.system == system, t.c.object == obj)
                if conn.execute(held.limit(1)).first() is not None:
                    unread.append(f"{system}:{obj}")
        return unread

    def source_inventory(self, system: str, obj: str) -> pl.DataFrame:
        """Every stored record of one object: `source_id`, the CRM stamp last seen
        (`crm_modified_at`, UTC) and `is_deleted`; what reconciliation compares with the CRM."""
        t = tables.source_records
        stamp = sa.func.coalesce(t.c.crm_modified_at, t.c.modified_at)
        query = sa.select(t.c.source_id, stamp, t.c.is_deleted).where(
            t.c.system == system, t.c.object == obj
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).fetchall()
        return pl.DataFrame(
            {
                "source_id": [r[0] for r in rows],
                "crm_modified_at": [_utc(r[1]) for r in rows],
                "is_deleted": [bool(r[2]) for r in rows],
            },
            schema={
                "source_id": pl.String(),
                "crm_modified_at": pl.Datetime("us", "UTC"),
                "is_deleted": pl.Boolean(),
            },
        )

    def mark_deleted(
        self, system: str, obj: str, ids: Sequence[str], flag: tuple[str, Any], *, at: datetime
    ) -> int:
        """Mark stored records deleted (a delete seen only by id, e.g. getDeleted or a
        reconciliation). `flag` is the payload field and value the CRM itself uses for a deleted
        record (`IsDeleted: true`, `archived: "true"`), so normalisation needs no special case.
        Returns how many live records changed."""
        field_name, value = flag
        rows = []
        for source_id, stored in self._payloads(system, obj, list(ids)).items():
            payload = stored.payload
            if payload.get(field_name) != value:
                payload[field_name] = value
                rows.append({"sid": source_id, "p": json.dumps(payload, ensure_ascii=False)})
        if rows:
            t = tables.source_records
            stmt = (
                t.update()
                .where(
                    t.c.system == system,
                    t.c.object == obj,
                    t.c.source_id == sa.bindparam("sid"),
                )
                .values(payload=sa.bindparam("p"), is_deleted=True, pulled_at=at, changed_at=at)
            )
            with self.engine.begin() as conn:
                for start in range(0, len(rows), _CHUNK):
                    conn.execute(stmt, rows[start : start + _CHUNK])
        return len(rows)

    def count_source_records(self) -> dict[str, int]:
        t = tables.source_records
        query = sa.select(t.c.system, t.c.object, sa.func.count()).group_by(t.c.system, t.c.object)
        with self.engine.connect() as conn:
            return {f"{s}:{o}": n for s, o, n in conn.execute(query)}

    # ---- cursors ---------------------------------------------------------------------------

    def get_cursor(self, system: str, obj: str) -> datetime | None:
        t = tables.cursors
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.select(t.c.high_water).where(t.c.system == system, t.c.object == obj)
            ).scalar()
        if value is not None and value.tzinfo is None:  # SQLite drops the zone
            value = value.replace(tzinfo=UTC)
        return value

    def set_cursor(self, system: str, obj: str, high_water: datetime | None) -> None:
        if high_water is None:
            return
        row = {
            "system": system,
            "object": obj,
            "high_water": high_water,
            "updated_at": datetime.now(UTC),
        }
        self._upsert(tables.cursors, [row], ["system", "object"])

    # ---- derived frames --------------------------------------------------------------------

    def replace_frame(
        self, name: str, frame: pl.DataFrame, *, pulled_through: datetime | None = None
    ) -> None:
        """Replace the derived frame `name` (stored as one Parquet file, dtypes intact)."""
        buffer = io.BytesIO()
        # zstd at its fastest level: as quick as lz4 to write and read here, and a third of the
        # bytes for text such as rendered emails (the database moves fewer of them).
        frame.write_parquet(buffer, compression="zstd", compression_level=1, statistics=False)
        t = tables.derived_frames
        row = {
            "name": name,
            "data": buffer.getvalue(),
            "row_count": frame.height,
            "updated_at": datetime.now(UTC),
            "pulled_through": pulled_through,
        }
        with self.engine.begin() as conn:
            conn.execute(t.delete().where(t.c.name == name))
            conn.execute(t.insert(), [row])
            # A store from before frames were Parquet kept each one as a table of its own.
            if name not in tables.metadata.tables and sa.inspect(conn).has_table(name):
                conn.exec_driver_sql(f'DROP TABLE "{name}"')

    def read_frame(
        self,
        name: str,
        schema: Mapping[str, pl.DataType] | None = None,
        columns: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """Read a derived frame back, cast to `schema` when given (a column the stored frame
        predates reads as nulls). `columns` reads only those, in that order: a step that needs
        two columns of a wide frame does not pay for decoding the rest."""
        if columns is not None and schema is not None:
            schema = {c: schema[c] for c in columns}
        t = tables.derived_frames
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(t.c.data, t.c.row_count).where(t.c.name == name)).first()
        if found is None:
            return self._read_table_frame(name, schema, columns)
        data, rows = found
        stored = pl.read_parquet_schema(io.BytesIO(data))
        wanted = list(columns) if columns is not None else list(schema or stored)
        present = [c for c in wanted if c in stored]
        frame = (
            pl.read_parquet(io.BytesIO(data), columns=present)
            if present
            else pl.DataFrame({"_": pl.repeat(None, rows, eager=True)})
        )
        if schema is None:
            return frame.select(present)
        missing = [pl.lit(None, dtype=d).alias(c) for c, d in schema.items() if c not in stored]
        return frame.with_columns(missing).select(
            pl.col(c).cast(dtype) for c, dtype in schema.items()
        )

    def _read_table_frame(
        self,
        name: str,
        schema: Mapping[str, pl.DataType] | None,
        columns: Sequence[str] | None,
    ) -> pl.DataFrame:
        """A frame kept as a table of its own (a store from before Parquet frames, or one of the
        store's own tables), JSON list and struct columns decoded."""
        inspector = sa.inspect(self.engine)
        if not inspector.has_table(name):
            return pl.DataFrame(schema=dict(schema) if schema else None)
        select = "*"
        if columns is not None:
            stored = {c["name"] for c in inspector.get_columns(name)}
            select = ", ".join(f'"{c}"' for c in columns if c in stored) or "1"
        with self.engine.connect() as conn:
            result = conn.execute(sa.text(f'SELECT {select} FROM "{name}"'))
            names = list(result.keys())
            rows = result.fetchall()
        data = {c: [r[i] for r in rows] for i, c in enumerate(names)}
        if schema is None:
            return pl.DataFrame(data)
        out: dict[str, pl.Series] = {}
        for col, dtype in schema.items():
            values = data.get(col, [None] * len(rows))
            if isinstance(dtype, pl.List | pl.Struct):
                values = [json.loads(v) if v is not None else None for v in values]
            elif isinstance(dtype, pl.Datetime):
                values = [_utc(v) for v in values]
            out[col] = pl.Series(col, values, dtype=dtype, strict=False)
        return pl.DataFrame(out)

    # ---- ledgers ---------------------------------------------------------------------------

    def append(self, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        with self.engine.begin() as conn:
            for start in range(0, len(rows), _CHUNK):
                conn.execute(table.insert(), list(rows[start : start + _CHUNK]))

    def upsert(self, table: sa.Table, rows: Sequence[Mapping[str, Any]], keys: list[str]) -> None:
        self._upsert(table, rows, keys)

    def read_appended(self, table: sa.Table, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
        """An append-only table with an increasing integer `id` (the stage ledger), as
        `read_table` returns it, through a Parquet copy that each read extends with the rows
        appended since: the ledger grows with every run, and several steps read all of it."""
        name = f"table:{table.name}"
        full = {c.name: _polars_type(c.type) for c in table.columns}
        cached = self.read_frame(name, full)
        last = cached["id"].max() if cached.height else None
        newer = self.read_table(table, full, after=None if last is None else ("id", last)).sort(
            "id"
        )
        if newer.height:
            cached = pl.concat([cached, newer])
            self.replace_frame(name, cached)
        return cached.select(pl.col(c).cast(dtype) for c, dtype in schema.items())

    def read_table(
        self,
        table: sa.Table,
        schema: Mapping[str, pl.DataType],
        *,
        where: tuple[str, Sequence[Any]] | None = None,
        after: tuple[str, Any] | None = None,
    ) -> pl.DataFrame:
        """A table's `schema` columns as a frame; with `where=(column, values)`, only the rows
        whose column holds one of the values; with `after=(column, value)`, those past it."""
        query = sa.select(*(table.c[c] for c in schema))
        if after is not None:
            query = query.where(table.c[after[0]] > after[1])
        # Rows become frames a batch at a time: the write-back ledger holds millions of rows at
        # scale, and as Python rows they take several times their size as a frame.
        parts: list[pl.DataFrame] = []
        with self.engine.connect() as conn:
            if where is None:
                result = conn.execution_options(yield_per=_DECODE_BATCH).execute(query)
                parts.extend(_rows_frame(rows, schema) for rows in result.partitions())
            else:
                column, values = table.c[where[0]], list(where[1])
                pending: list[sa.Row[Any]] = []
                for start in range(0, len(values), _CHUNK):
                    chunk = values[start : start + _CHUNK]
                    pending.extend(conn.execute(query.where(column.in_(chunk))).fetchall())
                    if len(pending) >= _DECODE_BATCH:
                        parts.append(_rows_frame(pending, schema))
                        pending = []
                if pending:
                    parts.append(_rows_frame(pending, schema))
        return pl.concat(parts) if parts else _rows_frame([], schema)

    def record_definition(self, version: str, content: str, run_id: str) -> None:
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            exists = conn.execute(
                sa.select(tables.definition_versions.c.version).where(
                    tables.definition_versions.c.version == version
                )
            ).first()
            if exists is None:
                conn.execute(
                    tables.definition_versions.insert().values(
                        version=version, content=content, first_used_at=now
                    )
                )
        self._upsert(
            tables.definition_runs,
            [{"run_id": run_id, "version": version, "used_at": now}],
            ["run_id"],
        )


def _engine(url: str) -> sa.Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return sa.create_engine(url)
    key = (os.getpid(), url)  # a forked child must not share its parent's sockets
    engine = _ENGINES.get(key)
    if engine is None:
        connect_args: dict[str, Any] = {}
        if parsed.get_backend_name() == "postgresql":
            # Naive datetimes (polars frames without a zone) mean UTC, as on SQLite, whatever
            # the server's or the role's default time zone is.
            connect_args["options"] = "-c timezone=UTC"
        # pre_ping: a pooled connection the server closed (restart, idle timeout) is replaced
        # instead of failing the run's first query.
        engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)
        _ENGINES[key] = engine
    return engine


def _same_except(old: Mapping[str, Any], new: Mapping[str, Any], ignored: frozenset[str]) -> bool:
    keys = (old.keys() | new.keys()) - ignored
    return all(old.get(k) == new.get(k) for k in keys)


def field_text(value: object) -> str | None:
    """One stored payload value as the string the normaliser reads (booleans as true/false,
    lists and objects as JSON)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _polars_type(sa_type: sa.types.TypeEngine[Any]) -> pl.DataType:
    """The polars dtype a store column reads as."""
    if isinstance(sa_type, sa.Integer):
        return pl.Int64()
    if isinstance(sa_type, sa.Boolean):
        return pl.Boolean()
    if isinstance(sa_type, sa.DateTime):
        return pl.Datetime("us", "UTC")
    if isinstance(sa_type, sa.Float):
        return pl.Float64()
    return pl.String()


def _aware(value: datetime) -> datetime:
    """A stored time as UTC (SQLite drops the zone)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _utc(value: object) -> object:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return _aware(value) if isinstance(value, datetime) else value


def _rows_frame(rows: Sequence[Sequence[Any]], schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """Table rows (columns in `schema` order) as a frame of `schema`; times as UTC."""
    return pl.DataFrame(
        {
            c: pl.Series(
                c,
                [_utc(r[i]) if isinstance(dt, pl.Datetime) else r[i] for r in rows],
                dtype=dt,
                strict=False,
            )
            for i, (c, dt) in enumerate(schema.items())
        }
    )


def payload_frame(payloads: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """Raw payloads -> one string column per field (`field_text`; missing fields null), the
    association list `contact_ids` a list of strings."""
    if not payloads:
        return pl.DataFrame()
    columns = sorted({k for p in payloads for k in p})
    data = {
        c: [field_text(p.get(c)) for p in payloads]
        for c in columns
        if c != "contact_ids"  # association lists stay lists
    }
    frame = pl.DataFrame(data, schema={c: pl.String() for c in data})
    if "contact_ids" in columns:
        frame = frame.with_columns(
            pl.Series(
                "contact_ids",
                [p.get("contact_ids") or [] for p in payloads],
                pl.List(pl.String()),
            )
        )
    return frame
