"""End to end: a run's log is structured and carries no token, secret or email address."""

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from connectors.sandbox.server import HUBSPOT_TOKEN, SALESFORCE_CLIENT_SECRET, Sandboxes
from orchestration.defs import frames
from orchestration.store import StateStore

pytestmark = pytest.mark.e2e

_EMAIL_FIELDS = ("email", "Email", "hs_additional_emails")


def test_a_debug_log_of_a_sync_names_no_one(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    log = tmp_path / "run.jsonl"
    with Sandboxes(size=200, seed=23) as box:
        # An imported contact whose address lost its top-level domain: quarantined, and named
        # in the log by record and field, its address digested.
        box.hubspot.load(
            "contacts",
            [
                {
                    "id": "9990001",
                    "properties": {
                        "email": "taro.yamada@example",
                        "firstname": "太郎",
                        "lastname": "山田",
                    },
                    "createdAt": "2026-10-01T00:00:00.000Z",
                    "updatedAt": "2026-10-02T00:00:00.000Z",
                }
            ],
        )
        env = {
            **os.environ,
            **box.env(),
            "LEADSYNC_DB_URL": db_url,
            "LEADSYNC_WRITE_MODE": "live",
            "LEADSYNC_LOG_FILE": str(log),
            "LEADSYNC_LOG_LEVEL": "DEBUG",
        }
        done = subprocess.run(
            [sys.executable, "-m", "orchestration.cli", "sync", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["success"] and sum(summary["fields_written"].values()) > 0

    text = log.read_text(encoding="utf-8")
    lines = [json.loads(line) for line in text.splitlines()]
    # Structured: the run's own step events, with run and step, plus the libraries' debug lines.
    steps = {line["step"] for line in lines if line.get("event") == "STEP_SUCCESS"}
    assert {"hubspot__contacts", "leads__stages", "salesforce__writeback"} <= steps
    assert len({line["run_id"] for line in lines if "run_id" in line}) == 1
    assert any(line["logger"].startswith("connectors.") for line in lines)

    # Every address the run processed, as the CRMs hold it and as normalised.
    store = StateStore(db_url)
    emails: set[str] = set()
    for payload in store.read_frame("source_records")["payload"].to_list():
        record = json.loads(payload)
        for name in _EMAIL_FIELDS:
            for value in str(record.get(name) or "").replace(";", " ").split():
                if "@" in value or "＠" in value:
                    emails.add(value)
    emails |= set(frames.read(store, "leads_normalized")["email"].drop_nulls().to_list())
    quarantined = frames.read(store, "quarantined").filter(pl.col("field") == "email")
    assert len(emails) > 100 and len(quarantined) > 0
    lowered = text.lower()
    leaked = sorted(e for e in emails if e.lower() in lowered)
    assert leaked == []
    # The quarantine is named in the log, its addresses digested rather than dropped.
    assert "quarantined hubspot:contacts:9990001: email: not an email address: <email:" in text
    for secret in (HUBSPOT_TOKEN, SALESFORCE_CLIENT_SECRET):
        assert secret not in text
