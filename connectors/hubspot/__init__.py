"""HubSpot connector: the only package that imports hubspot-api-client."""

from connectors.hubspot.client import HubSpotConnector, HubSpotError, WriteOutcome

__all__ = ["HubSpotConnector", "HubSpotError", "WriteOutcome"]
