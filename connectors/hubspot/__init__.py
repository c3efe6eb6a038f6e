"""HubSpot connector: the only package that imports hubspot-api-client."""

from connectors.hubspot.client import HubSpotConnector, WriteOutcome

__all__ = ["HubSpotConnector", "WriteOutcome"]
