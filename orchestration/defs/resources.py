"""Resources: both CRMs, the state store, the lead definition and run settings, bound to EnvVar."""

import os
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from connectors.hubspot import HubSpotConnector
from connectors.hubspot.constants import DEFAULT_BASE_URL
from connectors.salesforce import SalesforceConnector
from orchestration.funnel.definition import LeadDefinition, load_definition
from orchestration.store import DEFAULT_DB_URL, StateStore

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class HubSpotResource(dg.ConfigurableResource):
    """A HubSpot portal reached with a private-app token."""

    access_token: str
    base_url: str = DEFAULT_BASE_URL

    _connector: HubSpotConnector | None = PrivateAttr(default=None)
    _reported: int = PrivateAttr(default=0)

    def calls_since_last_report(self) -> int:
        """Requests made since the previous call: what one asset spent of the shared budget."""
        total = self._connector.calls.total if self._connector else 0
        spent, self._reported = total - self._reported, total
        return spent

    def connector(self) -> HubSpotConnector:
        # One connector per resource instance, so every asset of a run shares its limiter.
        if self._connector is None:
            self._connector = HubSpotConnector(self.access_token, self.base_url or DEFAULT_BASE_URL)
        return self._connector


class SalesforceResource(dg.ConfigurableResource):
    """A Salesforce org reached by OAuth client credentials (or username and password)."""

    domain: str = "login"
    client_id: str = ""
    client_secret: str = ""
    username: str = ""
    password: str = ""
    security_token: str = ""
    ca_bundle: str = ""

    _connector: SalesforceConnector | None = PrivateAttr(default=None)
    _reported: int = PrivateAttr(default=0)

    def calls_since_last_report(self) -> int:
        """Requests made since the previous call, the login included."""
        total = self._connector.calls.total if self._connector else 0
        spent, self._reported = total - self._reported, total
        return spent

    def connector(self) -> SalesforceConnector:
        if self._connector is None:
            self._connector = SalesforceConnector(
                self.domain,
                client_id=self.client_id,
                client_secret=self.client_secret,
                username=self.username,
                password=self.password,
                security_token=self.security_token,
                ca_bundle=self.ca_bundle,
            )
        return self._connector


class StateStoreResource(dg.ConfigurableResource):
    """The state store: SQLite file by default, PostgreSQL by URL."""

    db_url: str = DEFAULT_DB_URL

    _store: StateStore | None = PrivateAttr(default=None)

    def store(self) -> StateStore:
        if self._store is None:
            self._store = StateStore(self.db_url)
        return self._store


class LeadDefinitionResource(dg.ConfigurableResource):
    """Where the lead definition and the nurture templates live."""

    definition_path: str = str(PROJECT_ROOT / "lead_definition" / "global.yaml")
    templates_dir: str = str(PROJECT_ROOT / "nurture_templates")

    _definition: LeadDefinition | None = PrivateAttr(default=None)

    def definition(self) -> LeadDefinition:
        if self._definition is None:
            self._definition = load_definition(Path(self.definition_path))
        return self._definition


class SyncSettings(dg.ConfigurableResource):
    """Run switches. Strings, because EnvVar cannot feed bool or Literal fields."""

    write_mode: str = "live"  # "live" | "dry_run"
    full_refresh: str = "false"

    @property
    def dry_run(self) -> bool:
        mode = self.write_mode.strip().lower()
        if mode not in ("live", "dry_run"):
            raise ValueError(f"LEADSYNC_WRITE_MODE must be 'live' or 'dry_run', not {mode!r}")
        return mode == "dry_run"

    @property
    def full(self) -> bool:
        return self.full_refresh.strip().lower() in ("1", "true", "yes")


def _env(name: str, default: str) -> str | dg.EnvVar:
    # An unset optional variable falls back to its default; a set one stays an EnvVar so Dagster
    # shows where the value came from and never logs a secret.
    return dg.EnvVar(name) if os.environ.get(name) else default


def build_resources() -> dict[str, dg.ConfigurableResource]:
    """Resources bound to the environment (the sandboxes' `export` lines, or real accounts)."""
    return {
        "hubspot": HubSpotResource(
            access_token=dg.EnvVar("HUBSPOT_ACCESS_TOKEN"),
            base_url=_env("HUBSPOT_BASE_URL", DEFAULT_BASE_URL),
        ),
        "salesforce": SalesforceResource(
            domain=_env("SALESFORCE_DOMAIN", "login"),
            client_id=_env("SALESFORCE_CLIENT_ID", ""),
            client_secret=_env("SALESFORCE_CLIENT_SECRET", ""),
            username=_env("SALESFORCE_USERNAME", ""),
            password=_env("SALESFORCE_PASSWORD", ""),
            security_token=_env("SALESFORCE_SECURITY_TOKEN", ""),
            ca_bundle=_env("LEADSYNC_CA_BUNDLE", ""),
        ),
        "state_store": StateStoreResource(db_url=_env("LEADSYNC_DB_URL", DEFAULT_DB_URL)),
        "lead_definition": LeadDefinitionResource(),
        "settings": SyncSettings(
            write_mode=_env("LEADSYNC_WRITE_MODE", "live"),
            full_refresh=_env("LEADSYNC_FULL_REFRESH", "false"),
        ),
    }
