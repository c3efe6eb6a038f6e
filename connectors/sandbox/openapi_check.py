"""Test-time OpenAPI conformance check for the HubSpot emulator (WSGI middleware).

`OpenApiChecker(app)` serves `app` unchanged and, for every response, finds the operation in
HubSpot's official OpenAPI documents by method + path template, picks the response schema by
status code (exact code, then `4XX`-style ranges, then `default`, which is how HubSpot's specs
describe every error), resolves `$ref`s and validates the JSON body with jsonschema. Anything that
does not conform becomes a `Violation`; nothing is raised inside the server, so a test sees every
problem of a run at once.

The specs are OpenAPI 3.0.1: schemas are validated as JSON Schema draft 4 (its `$ref` semantics,
siblings ignored, are OpenAPI 3.0's), with the formats the documents use (`date-time`, `uuid`,
`int32`, `int64`) checked.

Where the real service demonstrably departs from its own spec, the checker does not widen the
spec quietly: `KNOWN_DEVIATIONS` lists each departure with its evidence, as a narrow rewrite of
just that departure in the parsed body (a null property value, a numeric v4 id...) applied before
the body is validated strictly against the unmodified spec. How often each one was needed is
counted in `OpenApiChecker.excused`, so a test can show which ones a run relied on.
"""

import json
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator, FormatChecker
from referencing import Registry
from referencing.jsonschema import DRAFT4

WsgiEnviron = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[WsgiEnviron, StartResponse], Iterable[bytes]]

DEFAULT_SPEC_DIR = Path("/work/shared/reference/hubspot-openapi")

# The per-object documents hard-code the object in their paths (`/crm/v3/objects/contacts/...`);
# requests may name it by plural, singular or object type id, in any case, as HubSpot accepts.
OBJECT_SPECS: dict[str, tuple[str, ...]] = {
    "contacts": ("contact", "0-1"),
    "companies": ("company", "0-2"),
    "emails": ("email", "0-49"),
    "calls": ("call", "0-48"),
    "meetings": ("meeting", "0-47"),
    "notes": ("note", "0-46"),
    "tasks": ("task", "0-27"),
}
OTHER_SPECS: tuple[str, ...] = ("properties.json", "associations-v4.json")
_OBJECT_SPEC_FILES = frozenset(f"{name}.json" for name in OBJECT_SPECS)
_OBJECT_ALIASES = {
    alias.lower(): name for name, aliases in OBJECT_SPECS.items() for alias in (name, *aliases)
}
_OBJECT_PATH = re.compile(r"/crm/v3/objects/([^/]+)(/.*)?\Z")
_URI = "urn:hubspot-openapi:"


@dataclass(frozen=True)
class Violation:
    method: str
    path: str  # the request path as received
    status: int
    message: str

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}: {self.message}"


@dataclass(frozen=True)
class Operation:
    spec: str  # file name of the OpenAPI document
    method: str  # upper case
    template: str  # the document's path template

    def __str__(self) -> str:
        return f"{self.method} {self.template}"


# --------------------------------------------------------------------------------------------
# Known deviations of the real service from its published spec
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnownDeviation:
    """One documented way the real HubSpot API departs from its OpenAPI document.

    `normalise(status, body)` rewrites exactly that departure in a parsed response body into what
    the spec expects (or drops the optional field it affects) and returns how many places it
    changed; the rest of the body is then validated strictly. Rewriting before validating keeps a
    100-record page with 30 null properties per record at one validation pass instead of 3,000
    excused errors."""

    name: str
    evidence: str
    specs: frozenset[str] | None  # documents it applies to; None: all
    normalise: Callable[[int, Any], int]


def _dicts(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in a parsed body, depth first (the caller may edit each one's own
    values while iterating)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(v for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, dict | list))


def _drop_null_property_values(status: int, body: Any) -> int:
    # Only in CRM object records (`id` + `properties` map), only the value null.
    changed = 0
    for obj in _dicts(body):
        props = obj.get("properties")
        if "id" in obj and isinstance(props, dict):
            nulls = [name for name, value in props.items() if value is None]
            for name in nulls:
                del props[name]
            changed += len(nulls)
    return changed


def _stringify_v4_object_ids(status: int, body: Any) -> int:
    # Only `toObjectId` / `fromObjectId`, only JSON integers. `from.id` / `to.id` (PublicObjectId)
    # stay strings on the wire and are still checked as such.
    changed = 0
    for obj in _dicts(body):
        for key in ("toObjectId", "fromObjectId"):
            value = obj.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                obj[key] = str(value)
                changed += 1
    return changed


def _drop_null_association_labels(status: int, body: Any) -> int:
    # Only association type entries (`category` + `typeId`), only `label: null`.
    changed = 0
    for obj in _dicts(body):
        if "typeId" in obj and "category" in obj and "label" in obj and obj["label"] is None:
            del obj["label"]
            changed += 1
    return changed


def _drop_string_sub_categories(status: int, body: Any) -> int:
    # Only the StandardErrors of a batch response's `errors`; a top-level `Error` body may carry
    # a string subCategory per the spec and is left alone.
    changed = 0
    if isinstance(body, dict) and "results" in body and isinstance(body.get("errors"), list):
        for error in body["errors"]:
            if isinstance(error, dict) and isinstance(error.get("subCategory"), str):
                del error["subCategory"]
                changed += 1
    return changed


def _rate_limit_category(status: int, body: Any) -> int:
    # Only a 429 with the rate-limit shape and no `category`: its `errorType` plays that part.
    if (
        status == 429
        and isinstance(body, dict)
        and "category" not in body
        and body.get("errorType") == "RATE_LIMIT"
        and isinstance(body.get("policyName"), str)
    ):
        body["category"] = body["errorType"]
        return 1
    return 0


KNOWN_DEVIATIONS: tuple[KnownDeviation, ...] = (
    KnownDeviation(
        "null-property-values",
        "Object `properties` values are typed `string`, but HubSpot returns null for a requested "
        "property the record has no value for (api_contract.md A2). HubSpot/hubspot-api-nodejs"
        "#323: a deals getById response carried a `null` property value (maintainer: 'It is a "
        "bug', in the typings); #324: a new deal's `hs_next_step` reads back as null.",
        _OBJECT_SPEC_FILES,
        _drop_null_property_values,
    ),
    KnownDeviation(
        "v4-numeric-object-ids",
        "associations-v4 types `toObjectId` (MultiAssociatedObjectWithLabel) and `fromObjectId`/"
        "`toObjectId` (LabelsBetweenObjectPair) as strings, but the API sends JSON numbers. "
        "HubSpot/hubspot-api-nodejs#552: 'toObjectId type changed from number to string, however "
        "the api calls still return numbers'; HubSpot/hubspot-api-php#261: `to_object_id = "
        "5434402448` in the JSON overflowed an int32 model; HubSpot's v4 guide example for a "
        'labelled PUT answers `"fromObjectId": 29851, "toObjectId": 21678228008`; a wire '
        'capture of a v4 batch read shows `"from": {"id": "515690208449"}` (string) '
        'next to `"toObjectId": 442222359747` (number).',
        frozenset({"associations-v4.json"}),
        _stringify_v4_object_ids,
    ),
    KnownDeviation(
        "v4-unlabeled-association-label-null",
        "AssociationSpecWithLabel.label is typed `string`; unlabeled (default) association types "
        'come back with `"label": null` (wire capture of a v4 batch read: `{"category": '
        '"HUBSPOT_DEFINED", "typeId": 341, "label": null}`; api_contract.md A8).',
        frozenset({"associations-v4.json"}),
        _drop_null_association_labels,
    ),
    KnownDeviation(
        "standard-error-subcategory-string",
        "StandardError.subCategory is typed `object`, but batch errors carry a string, e.g. "
        '`"subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND"` in the 207 of a v4 '
        "batch read (wire capture); the same documents type Error.subCategory and "
        "ErrorDetail.subCategory as strings.",
        None,
        _drop_string_sub_categories,
    ),
    KnownDeviation(
        "rate-limit-429-body",
        "Every operation's `default` response is `Error`, which requires `category`; 429 bodies "
        "have none: they carry `errorType: RATE_LIMIT` and `policyName` instead. HubSpot's usage "
        "guide (DAILY example body), HubSpot/hubspot-api-python#117 (TEN_SECONDLY_ROLLING body), "
        "HGData/mk-node-hubspot#84 and #89 (SECONDLY bodies).",
        None,
        _rate_limit_category,
    ),
)


# --------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------

_FORMATS = FormatChecker(formats=())
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})\Z")


@_FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    datetime.fromisoformat(value)  # raises on impossible dates (2024-02-30)
    return True


@_FORMATS.checks("uuid", raises=ValueError)
def _is_uuid(value: object) -> bool:
    return not isinstance(value, str) or str(uuid.UUID(value)) == value.lower()


@_FORMATS.checks("int32")
def _is_int32(value: object) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


@_FORMATS.checks("int64")
def _is_int64(value: object) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


# --------------------------------------------------------------------------------------------
# Spec index
# --------------------------------------------------------------------------------------------


def _pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


@dataclass(frozen=True)
class _IndexedOperation:
    operation: Operation
    pattern: re.Pattern[str]
    literal_segments: int
    pointer: str  # JSON pointer of the operation object in its document


class SpecIndex:
    """Every operation of the HubSpot OpenAPI documents the emulator serves, with a validator
    per (operation, response) built on demand."""

    def __init__(self, spec_dir: Path = DEFAULT_SPEC_DIR) -> None:
        files = [f"{name}.json" for name in OBJECT_SPECS] + list(OTHER_SPECS)
        self.documents: dict[str, dict[str, Any]] = {
            name: json.loads((spec_dir / name).read_text()) for name in files
        }
        self._registry: Registry[Any] = Registry().with_resources(
            (_URI + name, DRAFT4.create_resource(doc)) for name, doc in self.documents.items()
        )
        self._operations: list[_IndexedOperation] = []
        for name, doc in self.documents.items():
            for template, item in doc["paths"].items():
                regex = "".join(
                    "/[^/]+" if seg.startswith("{") else "/" + re.escape(seg)
                    for seg in template.strip("/").split("/")
                )
                literals = sum(not seg.startswith("{") for seg in template.strip("/").split("/"))
                for method in item:
                    if method == "parameters":
                        continue
                    self._operations.append(
                        _IndexedOperation(
                            Operation(name, method.upper(), template),
                            re.compile(regex + r"\Z"),
                            literals,
                            _pointer("paths", template, method),
                        )
                    )
        self._validators: dict[str, Draft4Validator] = {}
        self._lock = threading.Lock()

    @property
    def operations(self) -> list[Operation]:
        return [op.operation for op in self._operations]

    @staticmethod
    def canonical_path(path: str) -> str:
        """`/crm/v3/objects/0-1/5` -> `/crm/v3/objects/contacts/5` (per-object documents)."""
        path = path.rstrip("/") or "/"
        match = _OBJECT_PATH.match(path)
        if match:
            name = _OBJECT_ALIASES.get(match.group(1).lower())
            if name is not None:
                return f"/crm/v3/objects/{name}{match.group(2) or ''}"
        return path

    def find(self, method: str, path: str) -> tuple[_IndexedOperation | None, bool]:
        """(the most specific operation for method + path, whether the path exists at all)."""
        canonical = self.canonical_path(path)
        candidates = [op for op in self._operations if op.pattern.match(canonical)]
        matching = [op for op in candidates if op.operation.method == method.upper()]
        if not matching:
            return None, bool(candidates)
        # Literal segments win over templated ones (`/contacts/search` over `/{contactId}`).
        return max(matching, key=lambda op: op.literal_segments), True

    def _resolve(self, doc: dict[str, Any], pointer: str) -> tuple[dict[str, Any], str]:
        """Follow local `$ref`s of a non-schema object (a response) to its definition."""
        node: Any = doc
        for part in pointer.strip("/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        while isinstance(node, dict) and "$ref" in node:
            pointer = node["$ref"].removeprefix("#")
            node = doc
            for part in pointer.strip("/").split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node, pointer

    def response(self, op: _IndexedOperation, status: int) -> tuple[str | None, bool, str]:
        """For a status: (JSON pointer of the body schema or None when the response has no
        body, whether the spec describes this status, the response key used)."""
        doc = self.documents[op.operation.spec]
        responses = doc["paths"][op.operation.template][op.operation.method.lower()]["responses"]
        keys = [str(status)]
        if status >= 400:
            # Error statuses fall back to a range and to `default` (HubSpot's `Error`); success
            # statuses must be listed exactly: the client deserialises by exact code.
            keys += [f"{status // 100}XX", "default"]
        key = next((k for k in keys if k in responses), None)
        if key is None:
            return None, False, ""
        response, pointer = self._resolve(doc, op.pointer + _pointer("responses", key))
        content = response.get("content") or {}
        if not content:
            return None, True, key
        media = next((m for m in ("application/json", "*/*") if m in content), next(iter(content)))
        return pointer + _pointer("content", media, "schema"), True, key

    def validator(self, spec: str, pointer: str) -> Draft4Validator:
        key = spec + "#" + pointer
        with self._lock:
            validator = self._validators.get(key)
            if validator is None:
                validator = Draft4Validator(
                    {"$ref": _URI + key}, registry=self._registry, format_checker=_FORMATS
                )
                self._validators[key] = validator
            return validator


# --------------------------------------------------------------------------------------------
# The middleware
# --------------------------------------------------------------------------------------------


class OpenApiChecker:
    """WSGI middleware: serves `app` and validates each response against the HubSpot specs.

    `violations` collects every non-conformance; `seen` counts (operation, status) pairs that
    were checked; `excused` counts, per known deviation, the places in bodies it rewrote.
    """

    def __init__(
        self,
        app: WsgiApp,
        spec_dir: Path = DEFAULT_SPEC_DIR,
        deviations: Sequence[KnownDeviation] = KNOWN_DEVIATIONS,
        index: SpecIndex | None = None,
    ) -> None:
        self.app = app
        self.index = index or SpecIndex(spec_dir)
        self.deviations = tuple(deviations)
        self.violations: list[Violation] = []
        self.seen: Counter[tuple[Operation, int]] = Counter()
        self.excused: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        # Seeding and inspection hooks (`load`, `call_counts`, `reject_record_ids`...) stay
        # reachable through the wrapper.
        if name == "app":  # not set yet (e.g. during copying): no recursion
            raise AttributeError(name)
        return getattr(self.app, name)

    def __call__(self, environ: WsgiEnviron, start_response: StartResponse) -> list[bytes]:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return start_response(status, headers, exc_info)

        iterable = self.app(environ, capture)
        try:
            chunks = list(iterable)
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
        headers = {k.lower(): v for k, v in captured.get("headers") or []}
        self.check(
            environ.get("REQUEST_METHOD", "GET"),
            environ.get("PATH_INFO", "/"),
            int(str(captured.get("status", "0")).split(" ", 1)[0]),
            headers.get("content-type", ""),
            b"".join(chunks),
        )
        return chunks

    # -- checking ----------------------------------------------------------------------------

    def check(self, method: str, path: str, status: int, content_type: str, body: bytes) -> None:
        """Validate one response and record the outcome (public so recorded traffic can be
        replayed through it)."""
        problems = self._problems(method, path, status, content_type, body)
        with self._lock:
            self.violations.extend(Violation(method, path, status, p) for p in problems)

    def _problems(
        self, method: str, path: str, status: int, content_type: str, body: bytes
    ) -> list[str]:
        found, path_known = self.index.find(method, path)
        if found is None:
            where = "this method" if path_known else "this path"
            return [f"no operation for {where} in the HubSpot OpenAPI documents"]
        schema_pointer, described, key = self.index.response(found, status)
        with self._lock:
            self.seen[(found.operation, status)] += 1
        if not described:
            return [f"{found.operation} ({found.operation.spec}) documents no {status} response"]
        if schema_pointer is None:
            return [] if not body else [f"{status} must have no body, got {len(body)} bytes"]
        if "json" not in content_type.lower():
            return [f"Content-Type {content_type!r} is not JSON"]
        try:
            instance = json.loads(body)
        except ValueError as exc:
            return [f"body is not JSON: {exc}"]
        for deviation in self.deviations:
            if deviation.specs is None or found.operation.spec in deviation.specs:
                changed = deviation.normalise(status, instance)
                if changed:
                    with self._lock:
                        self.excused[deviation.name] += changed
        validator = self.index.validator(found.operation.spec, schema_pointer)
        return [
            f"[{found.operation} {key}] "
            f"{'/'.join(str(p) for p in error.absolute_path) or '(body)'}: {error.message}"
            for error in validator.iter_errors(instance)
        ]

    # -- reporting ---------------------------------------------------------------------------

    def operations_seen(self) -> set[str]:
        """`"METHOD /template"` of every operation a response was checked for."""
        with self._lock:
            return {str(op) for op, _ in self.seen}

    def statuses_seen(self) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {}
        with self._lock:
            for op, status in self.seen:
                out.setdefault(str(op), set()).add(status)
        return out

    def report(self) -> str:
        with self._lock:
            lines = [f"{sum(self.seen.values())} responses checked, {len(self.violations)} bad"]
            lines += [
                f"  {op} -> {status}: {n}"
                for (op, status), n in sorted(
                    self.seen.items(), key=lambda item: (str(item[0][0]), item[0][1])
                )
            ]
            lines += [f"  excused by {name}: {n}" for name, n in sorted(self.excused.items())]
            lines += [f"  VIOLATION {v}" for v in self.violations[:50]]
        return "\n".join(lines)
