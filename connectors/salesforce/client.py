"""The Salesforce connector: login, incremental SOQL pulls and sObject Collections writes.

The only module (with its package) that imports simple-salesforce. Records come out as flat dicts:
every selected field, `id`, `_modified_at` (tz-aware datetime) and `_deleted`.
"""

import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceError
from simple_salesforce.format import format_soql
from urllib3.util.retry import Retry

from connectors.outcome import WriteOutcome
from connectors.ratelimit import BudgetExhausted, CallCounter, DailyBudget
from connectors.salesforce import constants as c

log = logging.getLogger(__name__)


class SalesforceConfigError(RuntimeError):
    """The org is missing something leadsync needs (named in the message)."""


def parse_sf_datetime(value: str | None) -> datetime | None:
    """Salesforce writes `2024-01-01T00:00:00.000+0000`; Python wants the offset with a colon."""
    if not value:
        return None
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(UTC)


def soql_datetime(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SalesforceConnector:
    """Talks to one Salesforce org (or the sandbox) through simple-salesforce."""

    def __init__(
        self,
        domain: str,
        *,
        client_id: str = "",
        client_secret: str = "",
        username: str = "",
        password: str = "",
        security_token: str = "",
        ca_bundle: str = "",
        api_version: str = c.API_VERSION,
        reserve_fraction: float = c.BUDGET_RESERVE,
    ) -> None:
        self.calls = CallCounter()
        self.budget = DailyBudget("salesforce", reserve_fraction=reserve_fraction)
        session = requests.Session()
        if ca_bundle:
            # REQUESTS_CA_BUNDLE in the environment silently beats session.verify unless the
            # session stops reading the environment (trip-wire 2).
            session.verify = ca_bundle
            session.trust_env = False
        session.hooks["response"].append(self._count)
        # simple-salesforce retries nothing but an expired session: transient 5xx, dropped
        # connections and timeouts are retried here with backoff (Salesforce sends no 429s; its
        # REQUEST_LIMIT_EXCEEDED 403 is a budget, not something to retry).
        adapter = _TimeoutAdapter(
            max_retries=Retry(
                total=c.RETRIES,
                status_forcelist=(500, 502, 503, 504),
                allowed_methods=None,
                backoff_factor=c.BACKOFF_S,
                respect_retry_after_header=True,
                raise_on_status=False,
            )
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        # Client credentials when there is no username; username + password (+ token) otherwise,
        # through the connected app when its key is given too.
        self._sf = Salesforce(
            domain=domain,
            session=session,
            version=api_version,
            username=username or None,
            password=password or None,
            security_token=security_token or None,
            consumer_key=client_id or None,
            consumer_secret=client_secret or None,
        )
        self._describe: dict[str, dict[str, dict[str, Any]]] = {}

    def _count(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        path = response.request.path_url if response.request else ""
        family = next((f for key, f in c.CALL_FAMILIES if key in path), "other")
        self.calls.add(family)
        # Every REST response reports the org's rolling 24-hour usage: "api-usage=18/15000".
        info = response.headers.get("Sforce-Limit-Info", "")
        for part in info.split(","):
            name, _, value = part.strip().partition("=")
            if name == "api-usage" and "/" in value:
                used, limit = value.split("/", 1)
                if used.isdigit() and limit.isdigit():
                    self.budget.update(int(used), int(limit))

    # ---- metadata --------------------------------------------------------------------------

    def fields(self, sobject: str) -> dict[str, dict[str, Any]]:
        """Field name -> describe entry, cached for the connector's life."""
        if sobject not in self._describe:
            described = getattr(self._sf, sobject).describe()
            self._describe[sobject] = {f["name"]: f for f in described["fields"]}
        return self._describe[sobject]

    def missing_fields(self, sobject: str, wanted: Sequence[str]) -> list[str]:
        have = self.fields(sobject)
        return [f for f in wanted if f not in have]

    # ---- pull ------------------------------------------------------------------------------

    def pull(
        self, sobject: str, fields: Sequence[str], since: datetime | None
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield pages of records changed since `since`, deleted ones included (queryAll)."""
        have = self.fields(sobject)
        selected = [
            f for f in dict.fromkeys(["Id", *fields, "SystemModstamp", "IsDeleted"]) if f in have
        ]
        soql = f"SELECT {', '.join(selected)} FROM {sobject}"
        if since is not None:
            start = since - timedelta(seconds=c.PULL_OVERLAP_S)
            soql += f" WHERE SystemModstamp >= {soql_datetime(start)}"
        soql += " ORDER BY SystemModstamp ASC"
        self.budget.check()
        result = self._sf.query(soql, include_deleted=True)
        while True:
            yield [self._flatten(r) for r in result["records"]]
            if result.get("done", True):
                return
            self.budget.check()
            result = self._sf.query_more(result["nextRecordsUrl"], identifier_is_url=True)

    @staticmethod
    def _flatten(record: Mapping[str, Any]) -> dict[str, Any]:
        flat = {k: v for k, v in record.items() if k != "attributes"}
        flat["id"] = record["Id"]
        flat["_modified_at"] = parse_sf_datetime(record.get("SystemModstamp"))
        flat["_deleted"] = bool(record.get("IsDeleted", False))
        return flat

    def query_ids(self, sobject: str, field: str, values: Sequence[str]) -> list[dict[str, Any]]:
        """Records whose `field` is one of `values` (values escaped, never pasted into SOQL)."""
        out: list[dict[str, Any]] = []
        for i in range(0, len(values), c.IN_CLAUSE_SIZE):
            chunk = list(values[i : i + c.IN_CLAUSE_SIZE])
            soql = format_soql(f"SELECT Id FROM {sobject} WHERE {field} IN {{}}", chunk)
            out.extend(self._sf.query_all(soql)["records"])
        return out

    # ---- write -----------------------------------------------------------------------------

    def update(
        self, sobject: str, updates: Sequence[tuple[str, Mapping[str, str]]]
    ) -> list[WriteOutcome]:
        """Update records through sObject Collections, 200 per call, allOrNone=false. Stops before
        the daily budget's reserve; only attempted records get an outcome."""
        fields = self.fields(sobject)
        missing = sorted({f for _, values in updates for f in values if f not in fields})
        if missing:
            raise SalesforceConfigError(
                f"Salesforce {sobject} lacks the custom field(s) {', '.join(missing)}; "
                "create them in Setup (see docs/crm-setup.md) before writing back"
            )
        outcomes: list[WriteOutcome] = []
        for i in range(0, len(updates), c.COLLECTION_SIZE):
            chunk = updates[i : i + c.COLLECTION_SIZE]
            records = [
                {
                    "attributes": {"type": sobject},
                    "Id": rid,
                    **{f: _typed(v, fields[f]["type"]) for f, v in values.items()},
                }
                for rid, values in chunk
            ]
            try:
                self.budget.check()
            except BudgetExhausted:
                break  # records not attempted get no outcome and stay planned for the next run
            try:
                results = self._sf.restful(
                    "composite/sobjects",
                    method="PATCH",
                    json={"allOrNone": False, "records": records},
                )
            except SalesforceError as exc:
                raise RuntimeError(
                    f"Salesforce rejected a collections call: {exc.content}"
                ) from exc
            for (rid, _), result in zip(chunk, results or [], strict=True):
                if result.get("success"):
                    outcomes.append(WriteOutcome(rid, True))
                else:
                    reason = "; ".join(
                        f"{e.get('statusCode')}: {e.get('message')}"
                        for e in result.get("errors", [])
                    )
                    outcomes.append(WriteOutcome(rid, False, reason))
        return outcomes


class _TimeoutAdapter(HTTPAdapter):
    """Gives every request a timeout: simple-salesforce passes none, so a stall would hang."""

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = c.REQUEST_TIMEOUT
        return super().send(request, **kwargs)


def _typed(value: str, sf_type: str) -> Any:
    """Our plan carries strings; Collections wants JSON numbers and booleans for those types."""
    if value == "":
        return None
    if sf_type in ("double", "currency", "percent"):
        number = float(value)
        return int(number) if number.is_integer() else number
    if sf_type == "int":
        return int(float(value))
    if sf_type == "boolean":
        return value.lower() == "true"
    return value
