"""The state store: SQLAlchemy Core tables and bulk helpers (SQLite default, PostgreSQL by URL)."""

from orchestration.store.store import (
    DEFAULT_DB_URL,
    SOURCE_ID,
    RunLockTimeout,
    SourceSnapshot,
    StateStore,
    field_text,
    payload_frame,
)

__all__ = [
    "DEFAULT_DB_URL",
    "SOURCE_ID",
    "RunLockTimeout",
    "SourceSnapshot",
    "StateStore",
    "field_text",
    "payload_frame",
]
