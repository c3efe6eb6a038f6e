"""Bulk API 2.0 for the Salesforce sandbox: ingest and query jobs as ``sf.bulk2`` drives them.

The sequence simple-salesforce 1.12.10 runs (api_contract.md §B7), and what the sandbox answers:

Ingest (``sf.bulk2.Lead.insert/update/upsert/delete/hard_delete``)

1. ``POST /jobs/ingest`` → 200 job info, state ``Open`` (the client aborts unless it is Open).
2. ``PUT /jobs/ingest/{id}/batches`` with the CSV → **201** (the client checks for exactly 201).
3. ``PATCH /jobs/ingest/{id}`` ``{"state": "UploadComplete"}`` (or ``Aborted``) → 200 job info.
4. ``GET /jobs/ingest/{id}`` polls. The first poll after the upload is closed processes the whole
   job and still reports ``InProgress``, the next one reports ``JobComplete`` (or ``Failed``),
   so the client's polling loop is exercised without any background thread.
5. ``GET .../successfulResults``, ``.../failedResults``, ``.../unprocessedrecords`` (routed
   case-insensitively: the client asks for ``unprocessedRecords``, the docs spell it lower-case).

Query (``sf.bulk2.Lead.query(soql, max_records=…)``)

1. ``POST /jobs/query`` → JSON job info, state ``UploadComplete`` (even though the client sends
   ``Accept: text/csv``; it parses the reply as JSON).
2. ``GET /jobs/query/{id}`` polls: ``InProgress`` once, then ``JobComplete``.
3. ``GET /jobs/query/{id}/results?maxRecords=N[&locator=L]`` → CSV with every value quoted and
   the header row on every page; ``Sforce-NumberOfRecords`` is always sent (the client does
   ``int(headers[...])``) and ``Sforce-Locator`` is the string ``null`` on the last page.

``DELETE /jobs/{ingest|query}/{id}`` answers 204 like the real API (simple-salesforce's
``delete_job`` then fails on ``.json()``: a client bug, trip-wire 7).

CSV input is parsed **by header**: the client builds the header from a ``set()`` of record keys,
so the column order changes from process to process. An empty cell leaves a field unchanged
(or unset on insert) and ``#N/A`` sets it to null, as documented for Bulk API data files.

Records are applied by the sandbox's own REST / Collections write path (:class:`BulkBackend`),
200 rows per lock hold, so per-record errors are exactly the Collections ones; failed results
render them as ``CODE:message:Field1,Field2 --`` (``CODE:message:--`` without fields).

Facts marked [unverified] are plausible shapes no primary source confirmed; they are kept in one
place (the messages below) so they are easy to correct.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from werkzeug.wrappers import Request, Response

from connectors.sandbox.salesforce_schema import (
    NUMBER_TYPES,
    FieldDef,
    format_datetime,
    format_datetime_bulk,
    make_id,
    sobject,
)
from connectors.sandbox.soql import Plan

#: Salesforce cuts one batch (of the shared Bulk API daily allocation) per 10,000 records.
RECORDS_PER_BATCH = 10_000
#: Rows applied per lock hold: Salesforce processes ingest data in 200-record transactions.
WRITE_CHUNK = 200
#: Deletes are cheap per row but cascade through children: one scan per 10,000-row batch.
DELETE_CHUNK = 10_000
#: Rows per results page when the client gives no ``maxRecords``.
DEFAULT_MAX_RECORDS = 50_000
_ROLLING_WINDOW_S = 24 * 3600.0
_DELIMITERS = {
    "BACKQUOTE": "`",
    "CARET": "^",
    "COMMA": ",",
    "PIPE": "|",
    "SEMICOLON": ";",
    "TAB": "\t",
}
_LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
_INGEST_OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
_QUERY_OPERATIONS = ("query", "queryAll")
_TERMINAL = frozenset({"JobComplete", "Failed", "Aborted"})
#: The field value that sets a field to null in Bulk API CSV.
NULL_TOKEN = "#N/A"
_JOB_STATE_NAMES = {
    "Open": "OPEN",
    "UploadComplete": "UPLOAD_COMPLETE",
    "InProgress": "IN_PROGRESS",
    "JobComplete": "JOB_COMPLETE",
    "Failed": "FAILED",
    "Aborted": "ABORTED",
}


class BulkApiError(Exception):
    """An error response ``[{"errorCode", "message"}]`` of a Bulk API 2.0 resource."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


@dataclass(frozen=True)
class BulkOutcome:
    """What happened to one ingested row (the sandbox's SaveResult)."""

    success: bool
    record_id: str
    created: bool
    error_code: str = ""
    message: str = ""
    fields: list[str] = field(default_factory=list)

    def error_text(self) -> str:
        """``sf__Error`` of failedResults: ``CODE:message:Field1,Field2 --``."""
        if self.fields:
            return f"{self.error_code}:{self.message}:{','.join(self.fields)} --"
        return f"{self.error_code}:{self.message}:--"


class BulkBackend(Protocol):
    """What the jobs need from the org (implemented by ``SalesforceSandbox``)."""

    @property
    def bulk_lock(self) -> AbstractContextManager[Any]: ...

    def bulk_now(self) -> datetime: ...

    def bulk_write(
        self,
        sobject_name: str,
        operation: str,
        external_id_field: str | None,
        rows: list[dict[str, str | None]],
        user: str,
    ) -> list[BulkOutcome]: ...

    def bulk_compile(self, soql: str, version: str) -> Plan: ...

    def bulk_select(self, plan: Plan, *, include_deleted: bool) -> list[Mapping[str, Any]]: ...


@dataclass
class _Job:
    id: str
    kind: str  # "ingest" or "query"
    operation: str
    object: str
    created_by: str
    created: datetime
    modstamp: datetime
    state: str
    api_version: str
    column_delimiter: str
    line_ending: str
    external_id_field: str | None = None
    #: State the next poll reveals once the work is done (JobComplete or Failed).
    pending: str | None = None
    error_message: str | None = None
    processed: int = 0
    failed: int = 0
    started: float = 0.0
    finished: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # ingest
    uploads: list[bytes] = field(default_factory=list, repr=False)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list, repr=False)
    outcomes: list[BulkOutcome] = field(default_factory=list, repr=False)
    # query
    soql: str = ""
    plan: Plan | None = field(default=None, repr=False)
    matches: list[Mapping[str, Any]] = field(default_factory=list, repr=False)

    @property
    def delimiter(self) -> str:
        return _DELIMITERS[self.column_delimiter]

    @property
    def newline(self) -> str:
        return _LINE_ENDINGS[self.line_ending]


class BulkJobs:
    """The ``/services/data/vXX.X/jobs/...`` resources of one org."""

    def __init__(
        self,
        backend: BulkBackend,
        *,
        batch_limit: int = 15_000,
        query_job_limit: int = 10_000,
        max_jobs: int = 100,
    ) -> None:
        self.backend = backend
        #: ``DailyBulkApiBatches`` (shared by Bulk API and Bulk API 2.0 ingest).
        self.batch_limit = batch_limit
        #: ``DailyBulkV2QueryJobs``.
        self.query_job_limit = query_job_limit
        #: Jobs kept (oldest finished ones are forgotten first; Salesforce keeps 7 days).
        self.max_jobs = max_jobs
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, _Job] = OrderedDict()
        self._serial = 0
        self._batches: deque[tuple[float, int]] = deque()
        self._query_jobs: deque[float] = deque()

    # =========================================================================================
    # Limits

    def batches_used(self) -> int:
        with self._lock:
            self._prune(time.monotonic())
            return sum(count for _, count in self._batches)

    def query_jobs_used(self) -> int:
        with self._lock:
            self._prune(time.monotonic())
            return len(self._query_jobs)

    def _prune(self, now: float) -> None:
        horizon = now - _ROLLING_WINDOW_S
        while self._batches and self._batches[0][0] < horizon:
            self._batches.popleft()
        while self._query_jobs and self._query_jobs[0] < horizon:
            self._query_jobs.popleft()

    # =========================================================================================
    # Routing

    def handle(self, request: Request, version: str, segments: list[str], user: str) -> Response:
        """Serve ``/jobs/<segments>``; raises :class:`BulkApiError` for error responses."""
        if not segments or segments[0] not in {"ingest", "query"}:
            raise _not_found()
        kind, rest = segments[0], segments[1:]
        if not rest:
            if request.method == "POST":
                return self._create(request, version, kind, user)
            if request.method == "GET":
                return self._list(request, kind)
            raise _method_not_allowed(request, "GET,POST")
        job = self._job(kind, rest[0])
        if len(rest) == 1:
            if request.method == "GET":
                self._advance(job)
                return _json(200, self._info(job, full=True), request)
            if request.method == "PATCH":
                return self._set_state(request, job)
            if request.method == "DELETE":
                return self._delete(job)
            raise _method_not_allowed(request, "GET,PATCH,DELETE")
        if len(rest) == 2:
            resource = rest[1].lower()
            if kind == "ingest" and resource == "batches":
                if request.method != "PUT":
                    raise _method_not_allowed(request, "PUT")
                return self._upload(request, job)
            if kind == "ingest" and resource in {
                "successfulresults",
                "failedresults",
                "unprocessedrecords",
            }:
                if request.method != "GET":
                    raise _method_not_allowed(request, "GET")
                return self._ingest_results(job, resource)
            if kind == "query" and resource == "results":
                if request.method != "GET":
                    raise _method_not_allowed(request, "GET")
                return self._query_results(request, version, job)
        raise _not_found()

    def _job(self, kind: str, job_id: str) -> _Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or job.kind != kind:
            raise _not_found()
        return job

    # =========================================================================================
    # Job lifecycle

    def _create(self, request: Request, version: str, kind: str, user: str) -> Response:
        body = _body(request)
        delimiter = _option(body, "columnDelimiter", "COMMA", _DELIMITERS)
        line_ending = _option(body, "lineEnding", "LF", _LINE_ENDINGS)
        content_type = body.get("contentType", "CSV")
        if content_type != "CSV":
            raise BulkApiError(400, "API_ERROR", f"Unsupported content type: {content_type}")
        operation = body.get("operation")
        if kind == "ingest":
            job = self._new_ingest(body, operation, version, user)
        else:
            job = self._new_query(body, operation, version, user)
        job.column_delimiter, job.line_ending = delimiter, line_ending
        return _json(200, self._info(job, full=False), request)

    def _new_ingest(self, body: dict[str, Any], operation: Any, version: str, user: str) -> _Job:
        if operation not in _INGEST_OPERATIONS:
            raise BulkApiError(400, "INVALIDJOB", f"Invalid operation: {operation}")  # [unverified]
        name = body.get("object")
        obj = sobject(name) if isinstance(name, str) else None
        if obj is None:
            # [unverified] wording; INVALIDENTITY is the code clients match on.
            raise BulkApiError(400, "INVALIDENTITY", f"sObject type '{name}' is not supported.")
        external: str | None = None
        if operation == "upsert":
            wanted = body.get("externalIdFieldName")
            ext = obj.field(wanted) if isinstance(wanted, str) else None
            if ext is None or not (ext.external_id or ext.name == "Id"):
                raise BulkApiError(  # [unverified] wording
                    400,
                    "INVALIDJOB",
                    f"Field name provided, {wanted} is not an External ID or indexed field "
                    f"for {obj.name}",
                )
            external = ext.name
        with self._lock:
            self._prune(time.monotonic())
            if sum(count for _, count in self._batches) >= self.batch_limit:
                raise BulkApiError(  # [unverified] wording
                    400,
                    "LIMIT_EXCEEDED",
                    f"Max bulk v2 ingest batches ({self.batch_limit}) per 24 hrs has been reached",
                )
        return self._register("ingest", operation, obj.name, version, user, "Open", external)

    def _new_query(self, body: dict[str, Any], operation: Any, version: str, user: str) -> _Job:
        if operation not in _QUERY_OPERATIONS:
            raise BulkApiError(400, "INVALIDJOB", f"Invalid operation: {operation}")  # [unverified]
        soql = body.get("query")
        if not isinstance(soql, str) or not soql.strip():
            raise BulkApiError(400, "API_ERROR", "Query is required for a query job")
        plan = self.backend.bulk_compile(soql, version)
        # Bulk API 2.0 rejects aggregates, OFFSET and compound fields (ORDER BY and LIMIT work).
        if plan.count_only or plan.aggregate_reader is not None:
            raise BulkApiError(  # [unverified] wording
                400, "API_ERROR", "Aggregate queries are not supported by Bulk API 2.0"
            )
        if plan.offset:
            raise BulkApiError(400, "API_ERROR", "OFFSET is not supported by Bulk API 2.0")
        if any(col.leaf.type == "address" for col in plan.columns):
            raise BulkApiError(
                400, "API_ERROR", "Selecting compound data not supported in Bulk Query"
            )
        now = time.monotonic()
        with self._lock:
            self._prune(now)
            if len(self._query_jobs) >= self.query_job_limit:
                raise BulkApiError(
                    400,
                    "LIMIT_EXCEEDED",
                    f"Max bulk v2 query jobs ({self.query_job_limit}) per 24 hrs has been reached",
                )
            self._query_jobs.append(now)
        job = self._register("query", operation, plan.sobject.name, version, user, "UploadComplete")
        job.soql, job.plan = soql, plan
        return job

    def _register(
        self,
        kind: str,
        operation: str,
        object_name: str,
        version: str,
        user: str,
        state: str,
        external_id_field: str | None = None,
    ) -> _Job:
        now = self.backend.bulk_now()
        with self._lock:
            self._serial += 1
            job = _Job(
                id=make_id("750", self._serial),
                kind=kind,
                operation=operation,
                object=object_name,
                created_by=user,
                created=now,
                modstamp=now,
                state=state,
                api_version=version,
                column_delimiter="COMMA",
                line_ending="LF",
                external_id_field=external_id_field,
            )
            self._jobs[job.id] = job
            while len(self._jobs) > self.max_jobs:
                oldest = next(
                    (j for j in self._jobs.values() if j.state in _TERMINAL), None
                ) or next(iter(self._jobs.values()))
                del self._jobs[oldest.id]
        return job

    def _set_state(self, request: Request, job: _Job) -> Response:
        body = _body(request)
        wanted = body.get("state")
        with job.lock:
            if wanted == "UploadComplete" and job.kind == "ingest" and job.state == "Open":
                job.state = "UploadComplete"
            elif wanted == "Aborted" and job.state in {"Open", "UploadComplete", "InProgress"}:
                job.state, job.pending = "Aborted", None
            else:
                raise BulkApiError(  # [unverified] status and wording
                    409,
                    "INVALIDJOBSTATE",
                    f"Cannot change the state of job {job.id} from {job.state} to {wanted}",
                )
            job.modstamp = self.backend.bulk_now()
        return _json(200, self._info(job, full=False), request)

    def _delete(self, job: _Job) -> Response:
        # Documented: a job can be deleted once UploadComplete, JobComplete, Aborted or Failed.
        if job.state in {"Open", "InProgress"}:
            raise BulkApiError(  # [unverified] status and wording
                409, "INVALIDJOBSTATE", f"Cannot delete job {job.id} in state {job.state}"
            )
        with self._lock:
            self._jobs.pop(job.id, None)
        return Response(status=204)

    def _list(self, request: Request, kind: str) -> Response:
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.kind == kind]
        body = {
            "done": True,
            "records": [self._info(j, full=False, listing=True) for j in jobs],
            "nextRecordsUrl": None,
        }
        return _json(200, body, request)

    def _advance(self, job: _Job) -> None:
        """One poll: do the work on the first poll after the upload, reveal it on the next."""
        with job.lock:
            if job.state == "UploadComplete":
                job.state = "InProgress"
                job.started = time.monotonic()
                try:
                    if job.kind == "ingest":
                        self._run_ingest(job)
                    else:
                        self._run_query(job)
                finally:
                    job.finished = time.monotonic()
                job.modstamp = self.backend.bulk_now()
            elif job.state == "InProgress" and job.pending is not None:
                job.state, job.pending = job.pending, None
                job.modstamp = self.backend.bulk_now()

    def _fail(self, job: _Job, message: str) -> None:
        job.pending = "Failed"
        job.error_message = message

    # =========================================================================================
    # Ingest

    def _upload(self, request: Request, job: _Job) -> Response:
        data = request.get_data()
        with job.lock:
            if job.state != "Open":
                raise BulkApiError(  # [unverified] status and wording
                    409, "INVALIDJOBSTATE", f"Job {job.id} is not open for uploads: {job.state}"
                )
            job.uploads.append(data)
            job.modstamp = self.backend.bulk_now()
        return Response(status=201)

    def _run_ingest(self, job: _Job) -> None:
        if len(job.uploads) != 1:
            if not job.uploads:
                self._fail(job, "InvalidBatch : No data uploaded for job")  # [unverified]
            else:  # the message real orgs give when a job got more than one PUT
                self._fail(
                    job,
                    f"Found multiple contents for job: <{job.id}>, please 'Close' / 'Abort' / "
                    "'Delete' the current Job then create a new Job and make sure you only do "
                    "'PUT' once on a given Job.",
                )
            return
        problem = _parse_upload(job)
        if problem is not None:
            self._fail(job, problem)
            return
        fields = self._ingest_fields(job)
        if fields is None:
            return
        self._consume_batches(len(job.rows))
        chunk = DELETE_CHUNK if job.operation in {"delete", "hardDelete"} else WRITE_CHUNK
        width = len(job.header)
        for start in range(0, len(job.rows), chunk):
            bodies: list[dict[str, str | None]] = []
            for row in job.rows[start : start + chunk]:
                body: dict[str, str | None] = {}
                for position in range(min(width, len(row))):
                    f = fields[position]
                    cell = row[position]
                    if cell == "" or f is None:
                        continue  # empty cell: leave the field as it is
                    if cell == NULL_TOKEN:
                        body[f.name] = None
                    elif f.type == "date" and cell.endswith("Z"):
                        body[f.name] = cell[:-1]  # Bulk API accepts 1999-12-31Z for dates
                    else:
                        body[f.name] = cell
                bodies.append(body)
            outcomes = self.backend.bulk_write(
                job.object, job.operation, job.external_id_field, bodies, job.created_by
            )
            job.outcomes.extend(outcomes)
        job.processed = len(job.outcomes)
        job.failed = sum(1 for o in job.outcomes if not o.success)
        job.pending = "JobComplete"

    def _ingest_fields(self, job: _Job) -> list[FieldDef | None] | None:
        """Header → fields; an unknown column fails the whole job, as in Salesforce."""
        obj = sobject(job.object)
        assert obj is not None
        fields: list[FieldDef | None] = []
        for name in job.header:
            f = obj.field(name.strip())
            if f is None:
                self._fail(job, f"InvalidBatch : Field name not found : {name}")
                return None
            if job.operation in {"delete", "hardDelete"} and f.name != "Id":
                fields.append(None)  # delete jobs read the Id column only
            else:
                fields.append(f)
        return fields

    def _consume_batches(self, records: int) -> None:
        with self._lock:
            self._batches.append((time.monotonic(), max(1, math.ceil(records / RECORDS_PER_BATCH))))

    def _ingest_results(self, job: _Job, resource: str) -> Response:
        d, newline = job.delimiter, job.newline
        with job.lock:
            if job.uploads and not job.header and len(job.uploads) == 1:
                _parse_upload(job)  # aborted before processing: the upload is unprocessed
            header, rows, outcomes = job.header, job.rows, list(job.outcomes)
        source = d.join(_csv_name(h, d) for h in header)
        lines: list[str] = []
        if resource == "unprocessedrecords":
            lines.append(source)
            lines.extend(_csv_line(row, d) for row in rows[len(outcomes) :])
        else:
            success = resource == "successfulresults"
            second = '"sf__Created"' if success else '"sf__Error"'
            lines.append(d.join(['"sf__Id"', second, source]) if header else "")
            for outcome, row in zip(outcomes, rows, strict=False):
                if outcome.success != success:
                    continue
                extra = (
                    ("true" if outcome.created else "false") if success else outcome.error_text()
                )
                lines.append(_csv_line([outcome.record_id, extra, *row], d))
        text = newline.join(lines) + newline if lines and lines[0] else ""
        return Response(text, status=200, content_type="text/csv")

    # =========================================================================================
    # Query

    def _run_query(self, job: _Job) -> None:
        assert job.plan is not None
        job.matches = self.backend.bulk_select(
            job.plan, include_deleted=job.operation == "queryAll"
        )
        job.processed = len(job.matches)
        job.pending = "JobComplete"

    def _query_results(self, request: Request, version: str, job: _Job) -> Response:
        if job.state != "JobComplete":
            # Documented shape of this refusal (Bulk API 2.0 developer guide, v47-v48).
            raise BulkApiError(
                412,
                "JOB_NOT_COMPLETE",
                "can only download query results of successfully completed bulk job with "
                f"status: JOB_COMPLETE. Current status: {_JOB_STATE_NAMES[job.state]}",
            )
        if version != job.api_version:  # documented: 409 when the versions differ
            raise BulkApiError(  # [unverified] code and wording
                409,
                "API_ERROR",
                f"Query results must be retrieved with API version {job.api_version}",
            )
        max_records = _positive_int(request.args.get("maxRecords"), DEFAULT_MAX_RECORDS)
        offset = _decode_locator(request.args.get("locator"))
        assert job.plan is not None
        columns = job.plan.columns
        formatters = [_csv_formatter(col.leaf) for col in columns]
        readers = [col.read for col in columns]
        d = job.delimiter
        page = job.matches[offset : offset + max_records]
        end = offset + len(page)
        lines = [d.join(_csv_quote(col.header) for col in columns)]
        with self.backend.bulk_lock:  # no row shows a concurrent write half-applied
            values = [
                [fmt(read(rec)) for fmt, read in zip(formatters, readers, strict=True)]
                for rec in page
            ]
        lines.extend(_csv_line(row, d) for row in values)
        response = Response(job.newline.join(lines) + job.newline, status=200)
        response.headers["Content-Type"] = "text/csv"
        response.headers["Sforce-NumberOfRecords"] = str(len(page))
        response.headers["Sforce-Locator"] = (
            _encode_locator(end) if end < len(job.matches) else "null"
        )
        return response

    # =========================================================================================
    # Job info

    def _info(self, job: _Job, *, full: bool, listing: bool = False) -> dict[str, Any]:
        info: dict[str, Any] = {
            "id": job.id,
            "operation": job.operation,
            "object": job.object,
            "createdById": job.created_by,
            "createdDate": format_datetime(job.created),
            "systemModstamp": format_datetime(job.modstamp),
            "state": job.state,
        }
        if job.external_id_field is not None:
            info["externalIdFieldName"] = job.external_id_field
        info.update(
            {
                "concurrencyMode": "Parallel",
                "contentType": "CSV",
                "apiVersion": float(job.api_version),
            }
        )
        if job.kind == "ingest" and job.state == "Open" and not full:
            info["contentUrl"] = f"services/data/v{job.api_version}/jobs/ingest/{job.id}/batches"
        if full or listing:
            info["jobType"] = "V2Ingest" if job.kind == "ingest" else "V2Query"
        info["lineEnding"] = job.line_ending
        info["columnDelimiter"] = job.column_delimiter
        if full:
            elapsed = int((job.finished - job.started) * 1000) if job.finished else 0
            info["numberRecordsProcessed"] = job.processed
            if job.kind == "ingest":
                info["numberRecordsFailed"] = job.failed
            info["retries"] = 0
            info["totalProcessingTime"] = elapsed
            if job.kind == "ingest":
                info["apiActiveProcessingTime"] = elapsed
                info["apexProcessingTime"] = 0
            else:
                info["isPkChunkingSupported"] = True
            if job.state == "Failed" and job.error_message:
                info["errorMessage"] = job.error_message
        return info


# ---------------------------------------------------------------------------------------------
# Helpers


def _parse_upload(job: _Job) -> str | None:
    """Parse the job's single upload into header and rows; the failure message otherwise."""
    raw = job.uploads[0]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return "InvalidBatch : Failed to parse CSV: the data is not UTF-8"  # [unverified]
    crlf = "\r\n" in text
    if (job.line_ending == "LF" and crlf) or (
        job.line_ending == "CRLF" and "\n" in text.replace("\r\n", "")
    ):
        # The message real orgs give (a classic with files saved on Windows).
        return (
            "ClientInputError : LineEnding is invalid on user data. Current LineEnding "
            f"setting is {job.line_ending}"
        )
    try:
        table = list(csv.reader(io.StringIO(text, newline=""), delimiter=job.delimiter))
    except csv.Error as exc:
        return f"InvalidBatch : Failed to parse CSV: {exc}"  # [unverified]
    table = [row for row in table if row]  # a trailing line ending is not a record
    if not table:
        return "InvalidBatch : No data uploaded for job"  # [unverified]
    job.uploads = []
    job.header, job.rows = table[0], table[1:]
    return None


def _not_found() -> BulkApiError:
    return BulkApiError(404, "NOT_FOUND", "The requested resource does not exist")


def _method_not_allowed(request: Request, allowed: str) -> BulkApiError:
    return BulkApiError(
        405,
        "METHOD_NOT_ALLOWED",
        f"HTTP Method '{request.method}' not allowed. Allowed are {allowed}",
    )


def _json(status: int, body: Any, request: Request) -> Response:
    # sf.bulk2 sends X-PrettyPrint: 1 on every request.
    pretty = request.headers.get("X-PrettyPrint") == "1"
    text = json.dumps(body, ensure_ascii=False, indent=2 if pretty else None)
    return Response(text, status=status, content_type="application/json;charset=UTF-8")


def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.get_data() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BulkApiError(400, "API_ERROR", f"Unexpected character: {exc}") from None
    if not isinstance(body, dict):
        raise BulkApiError(
            400, "API_ERROR", "Value does not match expected type at [line:1, column:1]"
        )
    return body


def _option(body: Mapping[str, Any], key: str, default: str, allowed: Mapping[str, str]) -> str:
    value = body.get(key, default)
    if value not in allowed:
        raise BulkApiError(400, "API_ERROR", f"Invalid {key}: {value}")  # [unverified] wording
    return str(value)


def _positive_int(text: str | None, default: int) -> int:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise BulkApiError(400, "API_ERROR", f"Invalid maxRecords: {text}") from None
    if value <= 0:
        raise BulkApiError(400, "API_ERROR", f"Invalid maxRecords: {text}")
    return value


def _encode_locator(offset: int) -> str:
    # Since API 49.0 the locator is an opaque string such as "MTAwMDA" (base64 of "10000").
    return base64.b64encode(str(offset).encode()).decode().rstrip("=")


def _decode_locator(locator: str | None) -> int:
    if not locator or locator == "null":
        return 0
    try:
        padded = locator + "=" * (-len(locator) % 4)
        offset = int(base64.b64decode(padded, validate=True).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BulkApiError(
            400, "API_ERROR", f"Invalid locator: {locator}"
        ) from None  # [unverified]
    if offset < 0:
        raise BulkApiError(400, "API_ERROR", f"Invalid locator: {locator}")
    return offset


def _csv_quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _csv_line(values: Iterable[str], delimiter: str) -> str:
    """A row of Bulk API output: every value quoted."""
    return delimiter.join('"' + v.replace('"', '""') + '"' for v in values)


def _csv_name(name: str, delimiter: str) -> str:
    """An input column name echoed in results (quoted only when it has to be)."""
    if any(ch in name for ch in (delimiter, '"', "\n", "\r")):
        return _csv_quote(name)
    return name


def _csv_formatter(leaf: FieldDef) -> Callable[[Any], str]:
    """Stored value → Bulk CSV text (null is the empty string)."""
    kind = leaf.type
    if kind == "datetime":
        return lambda v: "" if v is None else format_datetime_bulk(v)
    if kind == "date":
        return lambda v: "" if v is None else (v.isoformat() if isinstance(v, date) else str(v))
    if kind == "boolean":
        return lambda v: "" if v is None else ("true" if v else "false")
    if kind == "int":
        return lambda v: "" if v is None else str(int(v))
    if kind in NUMBER_TYPES:
        return lambda v: "" if v is None else str(float(v))
    return lambda v: "" if v is None else str(v)
