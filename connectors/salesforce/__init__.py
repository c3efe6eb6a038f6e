"""Salesforce connector: the only package that imports simple-salesforce."""

from connectors.salesforce.client import (
    DeletedRecords,
    SalesforceConfigError,
    SalesforceConnector,
    WriteOutcome,
)

__all__ = ["DeletedRecords", "SalesforceConfigError", "SalesforceConnector", "WriteOutcome"]
