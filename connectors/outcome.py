"""What a CRM said about one record of a write: shared by both connectors."""

from dataclasses import dataclass


@dataclass(frozen=True)
class WriteOutcome:
    """`record_id` is the CRM's id; `error` carries the CRM's own code and message."""

    record_id: str
    ok: bool
    error: str | None = None
