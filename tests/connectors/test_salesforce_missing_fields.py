"""Mapped fields an org does not have (the kana custom fields in an org without them): the pull
leaves them out with one warning instead of failing the SOQL query."""

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from connectors.sandbox.server import Sandboxes
from orchestration.defs.crm_pull import hubspot_properties, salesforce_fields
from orchestration.funnel.definition import load_definition
from tests.connectors.conftest import salesforce_connector

LOGGER = "connectors.salesforce.client"


@pytest.fixture(scope="module")
def box() -> Iterator[Sandboxes]:
    with Sandboxes(size=20, seed=11) as sandboxes:
        yield sandboxes


def _records(pages: Iterator[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [record for page in pages for record in page]


def test_the_definition_pulls_the_kana_fields() -> None:
    definition = load_definition()
    for sobject in ("Lead", "Contact"):
        fields = salesforce_fields(sobject, definition)
        assert {"FirstNameKana__c", "LastNameKana__c", "MobilePhone"} <= set(fields)
    props = hubspot_properties("contacts", definition)
    assert {"firstname_kana", "lastname_kana", "mobilephone"} <= set(props)
    assert "Website" in salesforce_fields("Account", definition)


def test_fields_the_org_lacks_are_skipped_with_one_warning(
    box: Sandboxes, caplog: pytest.LogCaptureFixture
) -> None:
    connector = salesforce_connector(box, bulk_poll_wait_s=0)
    wanted = ["Email", "LastName", "LastNameKana__c", "NoSuchKana__c"]
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        records = _records(connector.pull("Lead", wanted, None))
    assert records
    assert all("NoSuchKana__c" not in r for r in records)
    assert all("LastNameKana__c" in r for r in records)  # the org has it: pulled as usual
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(warnings) == 1
    assert "NoSuchKana__c" in warnings[0] and "LastNameKana__c" not in warnings[0]

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        again = _records(connector.pull("Lead", wanted, None))
    assert len(again) == len(records)
    assert not [r for r in caplog.records if r.name == LOGGER]  # reported once per connector
