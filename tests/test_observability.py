"""Log redaction and structure: no address, token or secret reaches a log line."""

import json
import logging
from pathlib import Path

import pytest

from orchestration.observability import configure_logging, redact


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        ("sent to taro.yamada+news@example.co.jp today", "taro.yamada+news@example.co.jp"),
        (
            "full-width ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ typed in a form",
            "ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ",
        ),
        ("not an email address: taro@example", "taro@example"),
        ("Authorization: Bearer pat-na1-0123456789abcdef", "pat-na1-0123456789abcdef"),
        ('{"access_token": "00Dxx!AQ4AQFake.token_value", "x": 1}', "00Dxx!AQ4AQFake.token_value"),
        ("GET /q?sessionId=abc123def456&x=1", "abc123def456"),
    ],
)
def test_redact_removes_addresses_and_credentials(text: str, gone: str) -> None:
    out = redact(text)
    assert gone not in out
    assert ("<email:" in out) or ("[redacted]" in out)


def test_the_same_address_gets_the_same_digest_so_lines_can_be_followed() -> None:
    a, b = redact("a@example.com"), redact("A@Example.com")
    assert a == b and a.startswith("<email:")
    assert redact("b@example.com") != a


def test_secrets_from_the_environment_are_redacted_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "hs-secret-value-1234")
    path = tmp_path / "log.jsonl"
    handler = configure_logging(level="INFO", path=str(path), fmt="json")
    try:
        logging.getLogger("connectors.hubspot.client").warning(
            "retrying https://api.example/x?key=hs-secret-value-1234 for %s", "jo@example.org"
        )
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    line = json.loads(path.read_text(encoding="utf-8").strip())
    assert line["level"] == "WARNING" and line["logger"] == "connectors.hubspot.client"
    assert "hs-secret-value-1234" not in line["message"]
    assert "jo@example.org" not in line["message"] and "<email:" in line["message"]
