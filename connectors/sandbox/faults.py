"""Fault injection for the CRM sandboxes: a WSGI middleware that wraps either emulator app.

    hubspot = FaultInjector(HubSpotSandbox(token), "hubspot", profile="hostile", seed=3)
    server = make_server("127.0.0.1", 0, hubspot, threaded=True)
    hubspot.script("rate_limit", times=3, path=r"/batch/update$")

Faults must look exactly like the real services' (api_contract.md §A11, §A12, §B9, §B10), so a
worker that survives the sandbox survives production:

* HubSpot 429s carry the documented ``TEN_SECONDLY_ROLLING`` / ``DAILY`` bodies (``SECONDLY`` on
  search), the ``X-HubSpot-RateLimit-*`` headers of the latest real response (search responses
  never carry them) and ``Retry-After`` only when asked: HubSpot does not document one, and with
  it urllib3 silently retries GETs (trip-wire 11).
* Salesforce has no 429 and never sends ``Retry-After`` (§B10). Its only transient throttle is the
  concurrent long-running request limit, so ``rate_limit`` becomes 403 ``REQUEST_LIMIT_EXCEEDED``
  "ConcurrentPerOrgLongTxn Limit exceeded."; ``budget_exhausted`` is the same code with
  "TotalRequests Limit exceeded.". A worker tells them apart by the message.
* An expired Salesforce session is real: the injector revokes the emulator's sessions and lets the
  request through, so the emulator itself answers 401 ``INVALID_SESSION_ID`` and the old token
  stays dead, as it would in an org. simple-salesforce then logs in again and retries.
* 5xx: HubSpot 500/503 are JSON from the application tier (``{"status":"error","message":
  "internal error","correlationId":…}``, HubSpot/hubspot-api-python#111, which also shows the
  rate-limit headers on a 500); 502/504 come from the Cloudflare edge as HTML pages
  (airbytehq/airbyte#15729 shows the HTML 502). Salesforce 503 is ``[{"errorCode":
  "SERVER_UNAVAILABLE"}]``, 500 ``UNKNOWN_EXCEPTION`` (as the emulator's own crash answer), 502/504
  edge HTML. A 504 drawn by a profile is returned *after* the app has handled the request: the
  gateway gave up waiting, the backend still committed, so a retried write must be idempotent.
* Drops close the TCP connection without a byte of response (the client sees
  ``RemoteDisconnected`` / ``ConnectionResetError``); timeouts hold the request, then drop.

Per-record rejections inside batch writes cannot be faked here without lying (the record would
still be written), so ``reject_records`` asks the emulator to do it: it fills the app's
``reject_record_ids`` mapping (id -> reason, mutated in place). The emulators honour it:
HubSpot batch create/update/upsert leaves those inputs unwritten and returns them as per-record
errors of a 207 with category ``VALIDATION_ERROR`` (keys: the input ``id``, the upsert
``idProperty`` value, the resolved record id or a create's ``objectWriteTraceId``); Salesforce
updates, Collections included, answer ``{"success": false, "errors": [{"statusCode":
"FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": reason, "fields": []}]}`` for them (18- or
15-character ids) and write nothing for them. tests/sandbox/test_faults.py checks both updates.

Profiles (``PROFILES``) draw from ``random.Random(seed)`` under a lock, one decision per request in
arrival order, so sequential clients see the same faults for the same seed.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import socket
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal, NoReturn
from urllib.parse import quote

from werkzeug.http import HTTP_STATUS_CODES

from connectors.sandbox.hubspot_app import rate_limit_body

WsgiEnviron = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[WsgiEnviron, StartResponse], Iterable[bytes]]
System = Literal["hubspot", "salesforce"]

#: Every fault kind `script()` accepts, also the keys of `faults_injected()`.
FAULT_KINDS = (
    "rate_limit",
    "server_error",
    "slow",
    "timeout",
    "drop",
    "expired_session",
    "budget_exhausted",
)
#: `times=UNLIMITED` keeps a scripted fault on until `clear_scripts()`.
UNLIMITED = sys.maxsize
#: How long a `timeout` holds the request when no `delay_s` is given: longer than any client
#: timeout the worker should use (the REST timeout of Salesforce itself is 10 minutes).
DEFAULT_TIMEOUT_S = 30.0
#: simple-salesforce's 401 handler recurses without a bound on sObject routes (trip-wire 4), so a
#: script never expires the session more often than this in a row.
MAX_EXPIRED_IN_A_ROW = 2

# Faults that make a request fail outright (as opposed to `slow`).
_FAILING = frozenset(FAULT_KINDS) - {"slow"}
_DEFAULT_SERVER_ERROR = {"hubspot": 503, "salesforce": 503}
# The TEN_SECONDLY_ROLLING groupName names the private app; same constant as the HubSpot emulator.
_HUBSPOT_DEFAULT_PORTAL = 1234567
_DEFAULT_REJECT_REASON = {
    "hubspot": "Record rejected by a validation rule of the portal.",
    "salesforce": "Record rejected by a validation rule of the org.",
}


# ---------------------------------------------------------------------------------------------
# Profiles


@dataclass(frozen=True)
class FaultProfile:
    """Per-request fault probabilities of one profile; the one table tests and benchmarks read.

    Rates apply to each request the fault can apply to: 429 bursts only to HubSpot non-search
    requests, expired sessions only to Salesforce REST requests (not the token endpoint).
    """

    name: str
    server_error_rate: float
    server_error_statuses: tuple[int, ...]
    slow_rate: float
    slow_delay_s: tuple[float, float]
    drop_rate: float
    #: Share of HubSpot non-search responses that are 429s; they come in bursts.
    rate_limit_share: float
    rate_limit_burst: tuple[int, int]
    #: Share of bursts whose 429s carry `Retry-After: retry_after_s`.
    retry_after_share: float
    retry_after_s: int
    #: Mean spacing of expired sessions in Salesforce REST requests (never two in a row).
    expired_session_every: int | None

    @property
    def rate_limit_start_rate(self) -> float:
        """Chance that a request outside a burst starts one, so that bursts of mean length L
        make up `rate_limit_share` of the responses: s = qL / (1 + q(L - 1))."""
        s = self.rate_limit_share
        if s <= 0:
            return 0.0
        mean = (self.rate_limit_burst[0] + self.rate_limit_burst[1]) / 2
        return s / (mean - s * (mean - 1))

    @property
    def expired_session_rate(self) -> float:
        return 1.0 / self.expired_session_every if self.expired_session_every else 0.0

    @property
    def quiet(self) -> bool:
        return not (
            self.server_error_rate
            or self.slow_rate
            or self.drop_rate
            or self.rate_limit_share
            or self.expired_session_every
        )


PROFILES: Mapping[str, FaultProfile] = MappingProxyType(
    {
        "none": FaultProfile(
            name="none",
            server_error_rate=0.0,
            server_error_statuses=(),
            slow_rate=0.0,
            slow_delay_s=(0.0, 0.0),
            drop_rate=0.0,
            rate_limit_share=0.0,
            rate_limit_burst=(0, 0),
            retry_after_share=0.0,
            retry_after_s=0,
            expired_session_every=None,
        ),
        # A healthy production day. No random 429s: the emulators enforce the real rate limits
        # and budgets themselves, so a well-behaved client must see none.
        "realistic": FaultProfile(
            name="realistic",
            server_error_rate=0.002,
            server_error_statuses=(502, 503, 504),
            slow_rate=0.01,
            slow_delay_s=(0.2, 1.0),
            drop_rate=0.0005,
            rate_limit_share=0.0,
            rate_limit_burst=(0, 0),
            retry_after_share=0.0,
            retry_after_s=0,
            expired_session_every=None,
        ),
        "hostile": FaultProfile(
            name="hostile",
            server_error_rate=0.05,
            server_error_statuses=(500, 502, 503, 504),
            slow_rate=0.02,
            slow_delay_s=(1.0, 3.0),
            drop_rate=0.005,
            rate_limit_share=0.03,
            rate_limit_burst=(2, 5),
            retry_after_share=0.5,
            retry_after_s=1,
            expired_session_every=200,
        ),
    }
)


# ---------------------------------------------------------------------------------------------
# Requests and endpoint templates


_SF_ID = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
_SF_API = re.compile(r"/services/data/v\d+\.\d/")
_SF_SOBJECT_WORDS = frozenset({"describe", "updated", "deleted", "listviews", "quickActions"})
_HS_TEMPLATES = (
    (re.compile(r"^(/crm/v3/objects/[^/]+/)(?!(?:search|merge|batch)$)[^/]+$"), r"\1{id}"),
    (re.compile(r"^(/crm/v3/properties/[^/]+/groups/)[^/]+$"), r"\1{name}"),
    (re.compile(r"^(/crm/v3/properties/[^/]+/)(?!(?:groups|batch)$)[^/]+$"), r"\1{name}"),
    (
        re.compile(r"^(/crm/v4/objects/[^/]+/)[^/]+(/associations/(?:default/)?[^/]+/)[^/]+$"),
        r"\1{id}\2{id}",
    ),
    (re.compile(r"^(/crm/v4/objects/[^/]+/)[^/]+(/associations/[^/]+)$"), r"\1{id}\2"),
)
_HS_SEARCH = re.compile(r"^/crm/v3/objects/[^/]+/search/?$")


def _looks_like_sf_id(segment: str) -> bool:
    return bool(_SF_ID.match(segment)) and any(c.isdigit() for c in segment)


def endpoint_template(system: System, method: str, raw_path: str) -> str:
    """`"METHOD /path"` with ids replaced by placeholders, the key of `counts_by_endpoint()`.

    HubSpot: record ids `{id}`, property and group names `{name}`. Salesforce: record and job ids
    `{id}`, query locators `{locator}`, external-id values `{value}`; the login-domain prefix
    (`/sf.salesforce.com` from `domain="127.0.0.1:PORT/sf"`) is dropped, so the token endpoint is
    always `POST /services/oauth2/token`.
    """
    path = raw_path.split("?", 1)[0]
    if len(path) > 1:
        path = path.rstrip("/")
    if system == "hubspot":
        for pattern, replacement in _HS_TEMPLATES:
            path, hits = pattern.subn(replacement, path)
            if hits:
                break
        path = "/".join("{id}" if s.isdigit() else s for s in path.split("/"))
        return f"{method} {path}"

    services = path.find("/services/")
    if services > 0:
        path = path[services:]
    segments = path.split("/")
    if len(segments) >= 6 and _SF_API.match(path):
        head, rest = segments[4], segments[5:]
        if head in {"query", "queryAll"} and len(rest) == 1:
            rest[0] = "{locator}"
        elif head == "sobjects" and len(rest) >= 2 and rest[1] not in _SF_SOBJECT_WORDS:
            if _looks_like_sf_id(rest[1]) or len(rest) == 2:
                rest[1] = "{id}"
            elif len(rest) == 3:
                rest[2] = "{value}"  # sobjects/{Type}/{ExtIdField}/{value}
        segments[5:] = rest
    path = "/".join("{id}" if _looks_like_sf_id(s) else s for s in segments)
    return f"{method} {path}"


@dataclass(frozen=True)
class _Request:
    method: str
    path: str  # PATH_INFO, what `script(path=...)` searches
    endpoint: str
    oauth: bool  # a token request (never faulted twice in a row)
    search: bool  # HubSpot search: own limit, no rate-limit headers
    api: bool  # Salesforce REST request that needs a session (not the token endpoint)


def _raw_path(environ: WsgiEnviron) -> str:
    # The undecoded path (as the Salesforce emulator routes) keeps %2F inside external ids.
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if isinstance(raw, str) and raw.startswith("/"):
        return raw
    return quote(environ.get("PATH_INFO") or "/", safe="/")


# ---------------------------------------------------------------------------------------------
# Faults


@dataclass
class _Fault:
    kind: str
    status: int | None = None
    delay_s: float = 0.0
    retry_after: float | None = None
    after_processing: bool = False


@dataclass
class _Script:
    kind: str
    remaining: int
    path: re.Pattern[str] | None
    method: str | None
    fault: _Fault

    def matches(self, request: _Request) -> bool:
        if self.method is not None and request.method != self.method:
            return False
        return self.path is None or self.path.search(request.path) is not None


@dataclass
class _Captured:
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)


class FaultInjector:
    """WSGI middleware over the HubSpot or Salesforce emulator: profile-drawn and scripted faults,
    plus request counters per endpoint, per status and per injected fault kind.

    `sleep` waits for slow responses and timeouts (tests pass a fake to keep profiles fast); the
    default sleep is cut short by `close()`, so a held `timeout` does not outlive a test server.
    """

    def __init__(
        self,
        app: WSGIApp,
        system: System,
        *,
        profile: str = "none",
        seed: int = 0,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        if system not in ("hubspot", "salesforce"):
            raise ValueError(f"system must be 'hubspot' or 'salesforce', not {system!r}")
        self.app = app
        self.system: System = system
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._sleep: Callable[[float], object] = sleep or self._wake.wait
        self._scripts: list[_Script] = []
        self._by_endpoint: Counter[str] = Counter()
        self._by_status: Counter[int] = Counter()
        self._faults: Counter[str] = Counter()
        # Headers of the latest real response, replayed on injected errors so they keep the
        # rate-limit / API-usage headers the real services send with their errors.
        self._hs_rate_headers: list[tuple[str, str]] = []
        self._sf_limit_info: str | None = None
        self._profile = PROFILES["none"]
        self._rng = random.Random(seed)
        self._burst_left = 0
        self._burst_retry_after: float | None = None
        self._expired_last = False
        self._oauth_failed_last = False
        self.set_profile(profile, seed=seed)

    # -----------------------------------------------------------------------------------------
    # Configuration

    @property
    def profile(self) -> FaultProfile:
        return self._profile

    def set_profile(self, profile: str, *, seed: int | None = None) -> None:
        """Switch profile; a `seed` also restarts the random stream (and any burst)."""
        if profile not in PROFILES:
            raise ValueError(f"unknown fault profile {profile!r}; known: {', '.join(PROFILES)}")
        with self._lock:
            self._profile = PROFILES[profile]
            if seed is not None:
                self._rng = random.Random(seed)
                self._burst_left = 0
                self._expired_last = False
                self._oauth_failed_last = False

    def script(
        self,
        kind: str,
        *,
        times: int = 1,
        path: str | None = None,
        method: str | None = None,
        status: int | None = None,
        delay_s: float = 0.0,
        retry_after: float | None = None,
        after_processing: bool = False,
    ) -> None:
        """Fault the next `times` requests that match `path` (a regex searched in PATH_INFO) and
        `method`, and that the fault can apply to (a 429 or an expired session never hits a
        token request). Scripts are consumed in the order given, before any profile draw.

        `status` picks the 5xx of a `server_error`; `delay_s` is the wait of `slow` / `timeout`
        (and delays any other fault); `retry_after` adds `Retry-After` to a HubSpot 429;
        `after_processing` lets the app handle (and commit) the request before the 5xx.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        if times < 1:
            raise ValueError("times must be at least 1 (UNLIMITED keeps the fault on)")
        if delay_s < 0:
            raise ValueError("delay_s must not be negative")
        if kind == "expired_session":
            if self.system != "salesforce":
                # Private-app tokens do not expire; an OAuth app's 401 EXPIRED_AUTHENTICATION is
                # not something this worker can meet.
                raise ValueError("expired_session is Salesforce only (HubSpot app tokens persist)")
            if times > MAX_EXPIRED_IN_A_ROW:
                raise ValueError(
                    f"at most {MAX_EXPIRED_IN_A_ROW} expired sessions in a row: simple-salesforce "
                    "re-logs in on every 401 and recurses without bound on sObject routes "
                    "(api_contract trip-wire 4)"
                )
        if status is not None and (kind != "server_error" or not 500 <= status <= 599):
            raise ValueError("status picks the 5xx of a server_error")
        if retry_after is not None:
            if kind not in {"rate_limit", "budget_exhausted"}:
                raise ValueError("retry_after applies to rate_limit and budget_exhausted")
            if self.system == "salesforce":
                raise ValueError("Salesforce never sends Retry-After (api_contract §B10)")
        if after_processing and kind != "server_error":
            raise ValueError("after_processing applies to server_error")
        if kind == "server_error" and status is None:
            status = _DEFAULT_SERVER_ERROR[self.system]
        if kind == "timeout" and delay_s == 0:
            delay_s = DEFAULT_TIMEOUT_S
        fault = _Fault(kind, status, delay_s, retry_after, after_processing)
        entry = _Script(
            kind,
            times,
            re.compile(path) if path is not None else None,
            method.upper() if method is not None else None,
            fault,
        )
        with self._lock:
            self._scripts.append(entry)

    def clear_scripts(self) -> None:
        with self._lock:
            self._scripts.clear()

    def pending_scripts(self) -> list[tuple[str, int]]:
        """(kind, remaining) of scripts not yet used up, in order."""
        with self._lock:
            return [(s.kind, s.remaining) for s in self._scripts]

    def reject_records(self, ids: Iterable[str], reason: str | None = None) -> None:
        """Have the emulator reject these records inside batch writes (see the module docstring
        for what each emulator returns). Needs the app's `reject_record_ids: dict[str, str]`."""
        target = getattr(self.app, "reject_record_ids", None)
        if not isinstance(target, dict):
            raise NotImplementedError(
                f"{type(self.app).__name__} has no reject_record_ids mapping: per-record "
                "rejections must come from the emulator, or the record would still be written"
            )
        text = reason or _DEFAULT_REJECT_REASON[self.system]
        for record_id in ids:
            target[str(record_id)] = text

    def clear_rejections(self) -> None:
        target = getattr(self.app, "reject_record_ids", None)
        if isinstance(target, dict):
            target.clear()

    def close(self) -> None:
        """Release requests held by `slow` / `timeout` (default sleep only); later holds end at
        once. Call before shutting the server down."""
        self._wake.set()

    # -----------------------------------------------------------------------------------------
    # Counters

    def counts_by_endpoint(self) -> dict[str, int]:
        """Requests per `"METHOD /path/{id}"` (see `endpoint_template`), faulted ones included."""
        with self._lock:
            return dict(self._by_endpoint)

    def counts_by_status(self) -> dict[int, int]:
        """Responses per status the client saw; 0 counts drops and timeouts."""
        with self._lock:
            return dict(self._by_status)

    def faults_injected(self) -> dict[str, int]:
        """Injected faults per kind (every kind present, zeros included)."""
        with self._lock:
            return {kind: self._faults[kind] for kind in FAULT_KINDS}

    def reset_counts(self) -> None:
        with self._lock:
            self._by_endpoint.clear()
            self._by_status.clear()
            self._faults.clear()

    # -----------------------------------------------------------------------------------------
    # WSGI

    def __call__(self, environ: WsgiEnviron, start_response: StartResponse) -> Iterable[bytes]:
        request = self._classify(environ)
        with self._lock:
            self._by_endpoint[request.endpoint] += 1
            fault = self._scripted(request) or self._draw(request)
            if fault is not None:
                self._faults[fault.kind] += 1
        if fault is None:
            return self._pass(environ, start_response)
        return self._inject(fault, request, environ, start_response)

    def _classify(self, environ: WsgiEnviron) -> _Request:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = environ.get("PATH_INFO") or "/"
        endpoint = endpoint_template(self.system, method, _raw_path(environ))
        oauth = path.endswith("/services/oauth2/token") or path.startswith("/oauth/")
        if self.system == "hubspot":
            return _Request(method, path, endpoint, oauth, bool(_HS_SEARCH.match(path)), False)
        return _Request(method, path, endpoint, oauth, False, bool(_SF_API.search(path)))

    def _applies(self, kind: str, request: _Request) -> bool:
        if kind in {"rate_limit", "budget_exhausted"}:
            # No throttle on the token endpoint; Salesforce throttles only its REST API.
            return not request.oauth and (self.system == "hubspot" or request.api)
        if kind == "expired_session":
            return self.system == "salesforce" and request.api
        return True

    def _scripted(self, request: _Request) -> _Fault | None:
        for entry in self._scripts:
            if (
                entry.remaining > 0
                and entry.matches(request)
                and self._applies(entry.kind, request)
            ):
                entry.remaining -= 1
                if entry.remaining == 0:
                    self._scripts.remove(entry)
                if entry.kind == "expired_session":
                    self._expired_last = True
                return replace(entry.fault)
        return None

    def _draw(self, request: _Request) -> _Fault | None:
        """One profile decision (caller holds the lock)."""
        p = self._profile
        if p.quiet:
            return None
        rng = self._rng
        # A burst hits the next non-search requests: search has its own bucket, outside the
        # 10-second window, and the token endpoint is not throttled.
        if self._burst_left > 0 and not (request.search or request.oauth):
            self._burst_left -= 1
            return _Fault("rate_limit", retry_after=self._burst_retry_after)
        u = rng.random()
        kind: str | None = None
        edge = 0.0
        for name, rate in (
            ("drop", p.drop_rate),
            ("server_error", p.server_error_rate),
            ("rate_limit", p.rate_limit_start_rate),
            ("expired_session", p.expired_session_rate),
            ("slow", p.slow_rate),
        ):
            edge += rate
            if u < edge:
                kind = name
                break
        # Rules that keep the official clients' own recovery working.
        if kind == "rate_limit" and (self.system != "hubspot" or request.search or request.oauth):
            kind = None
        if kind == "expired_session" and (not request.api or self._expired_last):
            kind = None
        if request.oauth and kind in _FAILING and self._oauth_failed_last:
            kind = None  # a second failed login in a row would fail simple-salesforce's login
        if request.oauth:
            self._oauth_failed_last = kind in _FAILING
        if request.api:
            self._expired_last = kind == "expired_session"

        if kind is None:
            return None
        if kind == "server_error":
            status = rng.choice(p.server_error_statuses)
            # A gateway timeout is the edge giving up on a backend that still finishes the work.
            return _Fault(kind, status=status, after_processing=status == 504)
        if kind == "slow":
            return _Fault(kind, delay_s=rng.uniform(*p.slow_delay_s))
        if kind == "rate_limit":
            length = rng.randint(*p.rate_limit_burst)
            retry = rng.random() < p.retry_after_share
            self._burst_left = length - 1
            self._burst_retry_after = float(p.retry_after_s) if retry else None
            return _Fault(kind, retry_after=self._burst_retry_after)
        return _Fault(kind)

    # -----------------------------------------------------------------------------------------
    # Responses

    def _count_status(self, status: int) -> None:
        with self._lock:
            self._by_status[status] += 1

    def _remember_headers(self, headers: list[tuple[str, str]]) -> None:
        if self.system == "hubspot":
            rate = [(k, v) for k, v in headers if k.lower().startswith("x-hubspot-ratelimit-")]
            if rate:
                with self._lock:
                    self._hs_rate_headers = rate
            return
        for key, value in headers:
            if key.lower() == "sforce-limit-info":
                with self._lock:
                    self._sf_limit_info = value

    def _pass(self, environ: WsgiEnviron, start_response: StartResponse) -> Iterable[bytes]:
        def counting_start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            self._count_status(int(status.split(" ", 1)[0]))
            self._remember_headers(headers)
            if exc_info is not None:
                return start_response(status, headers, exc_info)
            return start_response(status, headers)

        return self.app(environ, counting_start_response)

    def _process_and_discard(self, environ: WsgiEnviron) -> None:
        """Run the request through the app (so its writes happen) and throw the answer away."""
        captured = _Captured()

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured.status = int(status.split(" ", 1)[0])
            captured.headers = headers
            return lambda _data: None

        result = self.app(environ, capture)
        try:
            for _chunk in result:
                pass
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        self._remember_headers(captured.headers)

    def _inject(
        self,
        fault: _Fault,
        request: _Request,
        environ: WsgiEnviron,
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        if fault.kind == "timeout":
            self._count_status(0)
            self._sleep(fault.delay_s)
            self._drop(environ)
        if fault.delay_s > 0:
            self._sleep(fault.delay_s)
        if fault.kind == "slow":
            return self._pass(environ, start_response)
        if fault.kind == "drop":
            self._count_status(0)
            self._drop(environ)
        if fault.kind == "expired_session":
            revoke = getattr(self.app, "revoke_sessions", None)
            if callable(revoke):
                # The token really dies; the emulator answers the 401 itself.
                revoke()
                return self._pass(environ, start_response)
        if fault.after_processing:
            self._process_and_discard(environ)
        if self.system == "hubspot":
            status, headers, body = self._hubspot_error(fault, request)
        else:
            status, headers, body = self._salesforce_error(fault, request, environ)
        self._count_status(status)
        headers.append(("Content-Length", str(len(body))))
        start_response(f"{status} {HTTP_STATUS_CODES.get(status, 'Error')}", headers)
        return [body]

    @staticmethod
    def _drop(environ: WsgiEnviron) -> NoReturn:
        """Close the connection without a byte of response.

        werkzeug's dev server hands the raw socket to the app as `werkzeug.socket`; shutting it
        down sends FIN (the client sees `RemoteDisconnected`, or `ConnectionResetError` when its
        request body was still unread). Raising a ConnectionError then makes werkzeug treat the
        request as dropped by the peer: it writes nothing and does not log a 500. For TLS the
        SSL layer is discarded first (SSLSocket.shutdown), so no close_notify is sent either.
        """
        sock = environ.get("werkzeug.socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # already gone: the drop happened anyway
                sock.shutdown(socket.SHUT_RDWR)
        raise ConnectionAbortedError("sandbox fault injection: connection dropped")

    # -- HubSpot

    def _hubspot_error(
        self, fault: _Fault, request: _Request
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        correlation_id = str(uuid.uuid4())
        headers: list[tuple[str, str]] = []
        if fault.kind == "server_error" and fault.status in (502, 504):
            return fault.status, [("Content-Type", "text/html")], _edge_page(fault.status, True)
        if fault.kind in {"rate_limit", "budget_exhausted"}:
            status = 429
            body = self._hubspot_limit_body(fault.kind, request.search)
            if not request.search:  # search responses never carry rate-limit headers
                zero = (
                    "x-hubspot-ratelimit-remaining"
                    if fault.kind == "rate_limit"
                    else "x-hubspot-ratelimit-daily-remaining"
                )
                headers = [(k, "0" if k.lower() == zero else v) for k, v in self._rate_headers()]
            if fault.retry_after is not None:
                headers.append(("Retry-After", _seconds(fault.retry_after)))
        elif fault.kind == "expired_session":
            # Unreachable: script() refuses it and profiles draw it only for Salesforce REST.
            raise AssertionError("expired_session is Salesforce only")
        else:
            status = fault.status or 500
            message = "internal error" if status == 500 else "Service Unavailable"  # 503 unverified
            body = {"status": "error", "message": message}
            headers = [] if request.search else self._rate_headers()
        body["correlationId"] = correlation_id
        headers.append(("X-HubSpot-Correlation-Id", correlation_id))
        headers.append(("Content-Type", "application/json;charset=utf-8"))
        return status, headers, json.dumps(body, separators=(",", ":")).encode()

    def _rate_headers(self) -> list[tuple[str, str]]:
        with self._lock:
            cached = list(self._hs_rate_headers)
        if cached:
            return cached
        # Nothing passed through yet: build them from the emulator's configured limits.
        limiter = getattr(self.app, "_limiter", None)
        ten_second = getattr(limiter, "ten_second", None)
        daily = getattr(limiter, "daily", None)
        headers: list[tuple[str, str]] = []
        if isinstance(daily, int):
            headers += [
                ("X-HubSpot-RateLimit-Daily", str(daily)),
                ("X-HubSpot-RateLimit-Daily-Remaining", str(daily)),
            ]
        if isinstance(ten_second, int):
            headers += [
                ("X-HubSpot-RateLimit-Interval-Milliseconds", "10000"),
                ("X-HubSpot-RateLimit-Max", str(ten_second)),
                ("X-HubSpot-RateLimit-Remaining", str(ten_second)),
            ]
        return headers

    def _hubspot_limit_body(self, kind: str, search: bool) -> dict[str, Any]:
        policy = "DAILY" if kind == "budget_exhausted" else "SECONDLY" if search else None
        portal = getattr(self.app, "portal_id", _HUBSPOT_DEFAULT_PORTAL)
        return rate_limit_body(policy or "TEN_SECONDLY_ROLLING", portal)

    # -- Salesforce

    def _salesforce_error(
        self, fault: _Fault, request: _Request, environ: WsgiEnviron
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        if fault.kind == "server_error" and fault.status in (502, 504):
            return fault.status, [("Content-Type", "text/html")], _edge_page(fault.status, False)
        with self._lock:
            limit_info = self._sf_limit_info
        if fault.kind == "rate_limit":
            status, code, message = (
                403,
                "REQUEST_LIMIT_EXCEEDED",
                ("ConcurrentPerOrgLongTxn Limit exceeded."),
            )
        elif fault.kind == "budget_exhausted":
            status, code, message = 403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."
            limit_info = self._exhausted_limit_info(limit_info)
        elif fault.kind == "expired_session":  # only with an app lacking revoke_sessions
            status, code, message = 401, "INVALID_SESSION_ID", "Session expired or invalid"
        elif fault.status == 503:
            # [unverified] message; code and status as users report them.
            status, code, message = 503, "SERVER_UNAVAILABLE", "Server temporarily unavailable."
        else:
            status, code = fault.status or 500, "UNKNOWN_EXCEPTION"
            message = (
                "An unexpected error occurred. Please include this ErrorId if you contact "
                f"support: {random.randrange(10**9, 10**10)}-{random.randrange(10**4, 10**5)} "
                f"({random.randrange(-(2**31), 2**31)})"
            )
        pretty = environ.get("HTTP_X_PRETTYPRINT") == "1"  # simple-salesforce always sends it
        text = json.dumps(
            [{"message": message, "errorCode": code}],
            ensure_ascii=False,
            indent=2 if pretty else None,
        )
        headers = [("Content-Type", "application/json;charset=UTF-8")]
        if request.api and limit_info is not None:
            headers.append(("Sforce-Limit-Info", limit_info))
        return status, headers, text.encode()

    def _exhausted_limit_info(self, cached: str | None) -> str | None:
        match = re.search(r"api-usage=\d+/(\d+)", cached or "")
        total: object = match.group(1) if match else getattr(self.app, "daily_api_limit", None)
        if total is None:
            return cached
        return f"api-usage={total}/{total}"


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _edge_page(status: int, cloudflare: bool) -> bytes:
    """The bare HTML page a load balancer returns when it cannot reach the application."""
    reason = HTTP_STATUS_CODES.get(status, "Error")
    footer = "<hr><center>cloudflare</center>\r\n" if cloudflare else ""
    return (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n{footer}</body>\r\n</html>\r\n"
    ).encode()
