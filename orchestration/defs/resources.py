"""Resources: both CRMs, the state store, the lead definition and run settings, bound to EnvVar."""

import hashlib
import os
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from connectors.hubspot import HubSpotConnector
from connectors.hubspot.constants import DEFAULT_BASE_URL
from connectors.salesforce import SalesforceConnector
from orchestration.funnel.definition import (
    DEFAULT_PATH,
    REGIONS_DIR,
    LeadDefinition,
    combined_version,
    load_definition,
)
from orchestration.store import DEFAULT_DB_URL, StateStore

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATES_DIR = PROJECT_ROOT / "nurture_templates"


def definition_version(path: Path = DEFAULT_PATH) -> str:
    """The lead definition's version (`LeadDefinition.version`) from the files' bytes alone.

    Cheap and never raises on a definition that does not validate: asset code versions and the
    change sensor need the version without parsing (a broken file fails the run, not the load).
    """
    path = Path(path)
    if path.is_dir():
        path = path / DEFAULT_PATH.name
    try:
        raw = path.read_bytes()
    except OSError:
        return "missing"
    overlays = {
        f"{REGIONS_DIR}/{overlay.name}": overlay.read_bytes()
        for overlay in sorted((path.parent / REGIONS_DIR).glob("*.yaml"))
    }
    return combined_version(raw, overlays)


def templates_version(root: Path = DEFAULT_TEMPLATES_DIR) -> str:
    """sha256 prefix over every template file (layouts and partials included), path and bytes."""
    digest = hashlib.sha256()
    for path in sorted(Path(root).rglob("*.j2")):
        digest.update(path.relative_to(root).as_posix().encode("utf-8") + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


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

    definition_path: str = str(DEFAULT_PATH)
    templates_dir: str = str(DEFAULT_TEMPLATES_DIR)

    _definition: LeadDefinition | None = PrivateAttr(default=None)

    def definition(self) -> LeadDefinition:
        if self._definition is None:
            self._definition = load_definition(Path(self.definition_path))
        return self._definition

    def versions(self) -> tuple[str, str]:
        """(definition version, templates version) of the files as they are now on disk."""
        return definition_version(Path(self.definition_path)), templates_version(
            Path(self.templates_dir)
        )


class CheckSettings(dg.ConfigurableResource):
    """Thresholds of the data-quality asset checks. A string, parsed, so an EnvVar can feed it."""

    # Share of records a run may quarantine (normalize) or a CRM may refuse (write-back) before
    # the rejected-row checks fail: 5% by default, LEADSYNC_MAX_REJECTED_RATE overrides it.
    max_rejected_rate: str = "0.05"

    @property
    def rejected_rate_limit(self) -> float:
        rate = float(self.max_rejected_rate)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"LEADSYNC_MAX_REJECTED_RATE must be within 0..1, not {rate}")
        return rate


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


def configured_versions() -> tuple[str, str]:
    """(definition version, templates version) of the files this environment points at, read
    once when the definitions load: the code versions of the assets that depend on them."""
    definition = Path(os.environ.get("LEADSYNC_DEFINITION_PATH") or DEFAULT_PATH)
    root = Path(os.environ.get("LEADSYNC_TEMPLATES_DIR") or DEFAULT_TEMPLATES_DIR)
    return definition_version(definition), templates_version(root)


DEFINITION_VERSION, TEMPLATES_VERSION = configured_versions()
# Assets computed by the lead definition's rules change when it does; nurture also when a
# template does. Dagster then shows them (and what depends on them) as changed in the UI.
DEFINITION_CODE_VERSION = f"definition-{DEFINITION_VERSION}"
NURTURE_CODE_VERSION = f"definition-{DEFINITION_VERSION}.templates-{TEMPLATES_VERSION}"


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
        "lead_definition": LeadDefinitionResource(
            definition_path=_env("LEADSYNC_DEFINITION_PATH", str(DEFAULT_PATH)),
            templates_dir=_env("LEADSYNC_TEMPLATES_DIR", str(DEFAULT_TEMPLATES_DIR)),
        ),
        "check_settings": CheckSettings(
            max_rejected_rate=_env("LEADSYNC_MAX_REJECTED_RATE", "0.05"),
        ),
        "settings": SyncSettings(
            write_mode=_env("LEADSYNC_WRITE_MODE", "live"),
            full_refresh=_env("LEADSYNC_FULL_REFRESH", "false"),
        ),
    }
