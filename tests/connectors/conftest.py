"""Helpers shared by the connector tests."""

from typing import Any

from connectors.salesforce import SalesforceConnector
from connectors.sandbox.server import Sandboxes


def salesforce_connector(box: Sandboxes, **options: Any) -> SalesforceConnector:
    """The Salesforce connector logged in to the sandbox, as the worker would be."""
    env = box.env()
    return SalesforceConnector(
        env["SALESFORCE_DOMAIN"],
        client_id=env["SALESFORCE_CLIENT_ID"],
        client_secret=env["SALESFORCE_CLIENT_SECRET"],
        ca_bundle=env["LEADSYNC_CA_BUNDLE"],
        **options,
    )
