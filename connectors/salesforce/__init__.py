"""Salesforce connector: the only package that imports simple-salesforce."""

from connectors.salesforce.client import SalesforceConfigError, SalesforceConnector, WriteOutcome

__all__ = ["SalesforceConfigError", "SalesforceConnector", "WriteOutcome"]
