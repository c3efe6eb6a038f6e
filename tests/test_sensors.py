"""The sensors: re-nurture on a template or definition change, and the run-failure alert hook."""

import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import dagster as dg
import pytest

from orchestration.definitions import defs
from orchestration.defs.resources import (
    DEFAULT_TEMPLATES_DIR,
    PROJECT_ROOT,
    LeadDefinitionResource,
    definition_version,
)
from orchestration.defs.sensors import (
    AFTER_DEFINITION_CHANGE,
    AFTER_TEMPLATE_CHANGE,
    ALERT_WEBHOOK_ENV,
    alert_on_run_failure,
    definition_or_templates_changed,
)
from orchestration.funnel.definition import load_definition

SECRET_EMAIL = "hanako.yamada@example.co.jp"
SECRET_TOKEN = "pat-na1-0000-secret-token"


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    """Copies of the lead definition and the templates the test may edit."""
    definition = tmp_path / "lead_definition"
    templates = tmp_path / "nurture_templates"
    shutil.copytree(PROJECT_ROOT / "lead_definition", definition)
    shutil.copytree(DEFAULT_TEMPLATES_DIR, templates)
    return definition / "global.yaml", templates


def evaluate(cursor: str | None, files: tuple[Path, Path]) -> dg.SensorResult | dg.SkipReason:
    resource = LeadDefinitionResource(definition_path=str(files[0]), templates_dir=str(files[1]))
    context = dg.build_sensor_context(cursor=cursor, resources={"lead_definition": resource})
    result = definition_or_templates_changed(context)
    assert isinstance(result, dg.SensorResult | dg.SkipReason)
    return result


def test_the_cheap_version_is_the_definitions_version() -> None:
    assert definition_version() == load_definition().version


def test_first_evaluation_only_stores_the_cursor(files: tuple[Path, Path]) -> None:
    first = evaluate(None, files)
    assert isinstance(first, dg.SensorResult)
    assert not first.run_requests and first.cursor
    again = evaluate(first.cursor, files)
    assert isinstance(again, dg.SkipReason)


def test_a_template_change_reruns_nurture_and_write_back(files: tuple[Path, Path]) -> None:
    first = evaluate(None, files)
    assert isinstance(first, dg.SensorResult)
    layout = files[1] / "_layout" / "email.txt.j2"
    layout.write_text(layout.read_text() + "\n")
    changed = evaluate(first.cursor, files)
    assert isinstance(changed, dg.SensorResult) and changed.cursor != first.cursor
    (request,) = changed.run_requests or []
    assert request.asset_selection == AFTER_TEMPLATE_CHANGE
    # A sub-selected run still runs the blocking checks of what it materializes.
    checks = {f"{k.asset_key.to_user_string()}:{k.name}" for k in request.asset_check_keys or []}
    assert {
        "nurture/assignments:templates_lint_clean",
        "nurture/assignments:every_lead_has_content",
        "writeback/plan:writeback_plan_is_safe",
    } <= checks
    assert request.tags["leadsync/changed"] == "templates"
    # Once launched, the same files launch nothing more.
    assert isinstance(evaluate(changed.cursor, files), dg.SkipReason)


def test_a_definition_change_also_rescores(files: tuple[Path, Path]) -> None:
    first = evaluate(None, files)
    assert isinstance(first, dg.SensorResult)
    files[0].write_text(files[0].read_text() + "# a comment is a new version\n")
    changed = evaluate(first.cursor, files)
    assert isinstance(changed, dg.SensorResult)
    (request,) = changed.run_requests or []
    assert request.asset_selection == AFTER_DEFINITION_CHANGE
    assert request.tags["leadsync/changed"] == "definition"
    checks = {k.name for k in request.asset_check_keys or []}
    assert {"scores_within_range", "stage_ledger_is_lawful"} <= checks


def test_the_sensors_and_their_job_are_registered() -> None:
    assert defs.get_sensor_def("definition_or_templates_changed").job_name == "renurture_job"
    assert defs.get_sensor_def("alert_on_run_failure")
    job = defs.resolve_job_def("renurture_job")
    assert set(AFTER_DEFINITION_CHANGE) <= set(job.asset_layer.executable_asset_keys)


@dg.op
def leaky_op() -> None:
    raise RuntimeError(f"HubSpot refused {SECRET_EMAIL} (Authorization: Bearer {SECRET_TOKEN})")


@dg.job
def leaky_job() -> None:
    leaky_op()


def failure_context(instance: dg.DagsterInstance) -> dg.RunFailureSensorContext:
    result = leaky_job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    return dg.build_run_status_sensor_context(
        sensor_name="alert_on_run_failure",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
    ).for_run_failure()


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append((self.headers.get("Content-Type", ""), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep pytest's output clean


@pytest.fixture
def webhook() -> Iterator[str]:
    _Hook.received = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/leadsync"
    server.shutdown()
    thread.join()


def test_a_failed_run_is_posted_to_the_webhook(
    webhook: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALERT_WEBHOOK_ENV, webhook)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with dg.DagsterInstance.ephemeral() as instance:
        context = failure_context(instance)
        alert_on_run_failure(context)
        run_id = context.dagster_run.run_id
    (content_type, body) = _Hook.received[0]
    assert len(_Hook.received) == 1 and content_type == "application/json"
    payload = json.loads(body)
    assert payload["job"] == "leaky_job" and payload["run_id"] == run_id
    assert payload["failed_steps"] == ["leaky_op"]
    assert run_id in payload["text"] and "leaky_job" in payload["text"]
    # The exception quoted an address and a token; the alert carries neither.
    text = body.decode("utf-8")
    assert SECRET_EMAIL not in text and SECRET_TOKEN not in text and "@" not in text


def test_without_a_webhook_the_failure_is_logged(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(ALERT_WEBHOOK_ENV, raising=False)
    with dg.DagsterInstance.ephemeral() as instance:
        context = failure_context(instance)
        capfd.readouterr()  # the failing run's own output
        alert_on_run_failure(context)
        run_id = context.dagster_run.run_id
    logged = capfd.readouterr().err
    assert f"run {run_id} of leaky_job failed" in logged and ALERT_WEBHOOK_ENV in logged
    assert SECRET_EMAIL not in logged
