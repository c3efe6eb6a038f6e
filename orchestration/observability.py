"""Logs people can read and share, and progress for the CLI.

* Every log line leadsync writes (its own, the connectors', urllib3's and Dagster's run events) goes
  through `RedactingFilter`: email addresses become `<email:1a2b3c4d5e>` (a stable digest, so one
  person's lines can still be followed without the address), and credentials become
  `[redacted]`: bearer tokens, OAuth/session tokens in JSON or query strings, and the value of
  every environment variable whose name marks it a secret (…TOKEN, …SECRET, …PASSWORD, …KEY).
* `configure_logging` writes one JSON object per line (`ts`, `level`, `logger`, `message`, and
  `run_id` / `step` for Dagster's events) or plain text, to stderr or a file
  (LEADSYNC_LOG_FORMAT, LEADSYNC_LOG_LEVEL, LEADSYNC_LOG_FILE).
* `run_logger` is the Dagster logger the runner binds instead of the console logger, so a run's
  events travel the same redacted path; `StepProgress` turns its step events into callbacks for a
  progress bar.
"""

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import dagster as dg

# Full-width "＠" too: raw CRM payloads keep what people typed.
# Loose on purpose: a malformed address ("taro@example", full-width letters) is still somebody's.
_EMAIL = re.compile(r"[^\s'\"<>,;:()\[\]{}@＠]+[@＠][^\s'\"<>,;()\[\]{}]+")
_SECRET_PATTERNS = (
    # Authorization: Bearer <token>
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=!\-]{8,}"),
    # "access_token": "...", sessionId=..., client_secret=..., password=...
    re.compile(
        r"(?i)((?:access_token|refresh_token|session_?id|client_secret|password|api_?key|token)"
        r"[\"']?\s*[:=]\s*[\"']?)[^\"'&\s,}]{4,}"
    ),
)
_SECRET_ENV = re.compile(r"(?i)(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|PRIVATE_KEY)$")
# Step events drive the progress bar whatever the log level.
_STEP_EVENTS = frozenset({"STEP_START", "STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"})


def _email_token(match: re.Match[str]) -> str:
    digest = hashlib.sha1(match.group(0).lower().encode()).hexdigest()[:10]
    return f"<email:{digest}>"


def _env_secrets() -> list[str]:
    # Longest first, so a secret that contains another is replaced whole.
    values = {v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= 8}
    return sorted(values, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with email addresses digested and credentials replaced by `[redacted]`."""
    for secret in secrets:
        text = text.replace(secret, "[redacted]")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "[redacted]", text)
    return _EMAIL.sub(_email_token, text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (arguments merged in) through `redact`."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets = _env_secrets()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redact(message, self._secrets)
        record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._secrets)
        return True


def _dagster_fields(record: logging.LogRecord) -> dict[str, Any]:
    meta = getattr(record, "dagster_meta", None)
    if not isinstance(meta, dict):
        return {}
    event = meta.get("dagster_event")
    return {
        "run_id": meta.get("run_id"),
        "step": meta.get("step_key"),
        "event": getattr(event, "event_type_value", None),
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message (+ run_id, step, event, error)."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **{k: v for k, v in _dagster_fields(record).items() if v is not None},
        }
        if record.exc_text:
            body["error"] = record.exc_text
        return json.dumps(body, ensure_ascii=False)


def configure_logging(
    level: str | None = None, path: str | None = None, fmt: str | None = None
) -> logging.Handler:
    """Route every logger through one redacting handler (JSON lines by default). Idempotent:
    a second call replaces the handler it installed before. Returns the handler."""
    level = (level or os.environ.get("LEADSYNC_LOG_LEVEL") or "WARNING").upper()
    path = path or os.environ.get("LEADSYNC_LOG_FILE") or None
    fmt = (fmt or os.environ.get("LEADSYNC_LOG_FORMAT") or "json").lower()
    handler: logging.Handler = (
        logging.FileHandler(path, encoding="utf-8") if path else logging.StreamHandler()
    )
    handler.setLevel(level)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(levelname)s %(name)s %(message)s")
    )
    handler.set_name("leadsync")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "leadsync"]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(min(root.level or logging.WARNING, logging.getLevelName(level)))
    return handler


class _AtLeastOrStep(logging.Filter):
    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level or _dagster_fields(record).get("event") in _STEP_EVENTS


@dg.logger(
    config_schema={"log_level": dg.Field(str, is_required=False, default_value="INFO")},
    description="leadsync's run logger: redacted, structured, and feeding the CLI's progress.",
)
def run_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.getLogger("leadsync.run")
    logger.setLevel(logging.DEBUG)
    for old in list(logger.filters):
        logger.removeFilter(old)
    level = logging.getLevelName(str(init_context.logger_config["log_level"]).upper())
    logger.addFilter(_AtLeastOrStep(level if isinstance(level, int) else logging.INFO))
    return logger


class StepProgress(logging.Handler):
    """Calls `on_step(step_key, event)` for each Dagster step event of a run ("STEP_START",
    "STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"); attach it to the "leadsync.run" logger."""

    def __init__(self, on_step: Callable[[str, str], None]) -> None:
        super().__init__(logging.DEBUG)
        self.on_step = on_step

    def emit(self, record: logging.LogRecord) -> None:
        fields = _dagster_fields(record)
        if fields.get("event") in _STEP_EVENTS and fields.get("step"):
            self.on_step(str(fields["step"]), str(fields["event"]))
