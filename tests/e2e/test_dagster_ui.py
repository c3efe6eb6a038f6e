"""The Dagster UI, as `make dev` serves it against the sandboxes, driven in headless Chromium.

`dagster dev -w workspace.yaml` runs in its own process group with a temporary DAGSTER_HOME (the
project's deploy/dagster.yaml) and state store; the test opens the asset graph, launches the sync
job with "Materialize all", waits for the run to succeed and finds the funnel chart in the
`reports/funnel` metadata. Skips only when Chromium is missing and LEADSYNC_REQUIRE_BROWSER is
unset.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connectors.sandbox.server import Sandboxes
from orchestration.defs.resources import PROJECT_ROOT
from tests.e2e.test_templates_preview import CHROMIUM, CHROMIUM_FLAGS, _require_browser

pytestmark = pytest.mark.e2e

DAGSTER = Path(sys.executable).parent / "dagster"
STARTUP_SECONDS = 60
RUN_SECONDS = 90
GROUPS = ("hubspot", "salesforce", "leads", "nurture", "writeback", "reports")
LEAD_ASSETS = ("normalized", "identity", "unified", "activities", "scores", "stages")

RUN_STATUS = """
query RunStatus($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status } }
}
"""
LOCATION_STATUS = """
query { workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename } } } } }
"""


@dataclass
class DagsterDev:
    url: str
    home: Path
    log: Path

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())["data"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_loaded(dev: DagsterDev, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"dagster dev exited: {dev.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{dev.url}/server_info", timeout=2):
                pass
            entries = dev.graphql(LOCATION_STATUS)["workspaceOrError"]["locationEntries"]
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                loaded = [e["locationOrLoadError"]["__typename"] for e in entries]
                assert loaded == ["RepositoryLocation"], dev.log.read_text()[-3000:]
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"dagster dev did not come up in {STARTUP_SECONDS}s: {dev.log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterDev]:
    _require_browser()
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(PROJECT_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    port = _free_port()
    dev = DagsterDev(f"http://127.0.0.1:{port}", home, home / "dagster_dev.log")
    with Sandboxes(size=150, seed=31) as box:
        env = {
            **os.environ,
            **box.env(),
            "DAGSTER_HOME": str(home),
            "LEADSYNC_DB_URL": f"sqlite:///{home / 'state.db'}",
            "LEADSYNC_WRITE_MODE": "live",
            "LEADSYNC_REPORTS_DIR": str(home / "reports"),
        }
        with dev.log.open("wb") as log:
            # Its own process group (as `set -m` gives `make dev`): SIGINT reaches the webserver,
            # the daemon and the code server together, and none is left orphaned.
            process = subprocess.Popen(
                [str(DAGSTER), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                _wait_until_loaded(dev, process)
                yield dev
            finally:
                os.killpg(process.pid, signal.SIGINT)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


def _wait_for_run(dev: DagsterDev, run_id: str) -> str:
    deadline = time.monotonic() + RUN_SECONDS
    status = "UNKNOWN"
    while time.monotonic() < deadline:
        status = dev.graphql(RUN_STATUS, {"runId": run_id})["runOrError"].get("status", status)
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(1)
    return status


def test_the_sync_job_materializes_from_the_ui(dagster_dev: DagsterDev, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    dev = dagster_dev
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        # The "Join the Dagster community" modal would cover the page a second after loading.
        context.add_init_script("window.localStorage.setItem('communityNux', '1');")
        page = context.new_page()
        page.set_default_timeout(30_000)

        # The global asset graph: with six groups it shows each group as one collapsed node.
        page.goto(f"{dev.url}/asset-groups")
        for name in GROUPS:
            expect(page.get_by_text(name, exact=True).first).to_be_visible()
        page.screenshot(path=str(tmp_path / "asset_graph.png"))
        # One group's graph shows its asset nodes.
        page.goto(f"{dev.url}/locations/leadsync/asset-groups/leads")
        for name in LEAD_ASSETS:
            expect(page.get_by_text(name, exact=True).first).to_be_visible()
        page.screenshot(path=str(tmp_path / "leads_group.png"))

        # The sync job's page, then "Materialize all": the toast links to the launched run.
        page.goto(f"{dev.url}/locations/leadsync/jobs/sync_job")
        page.get_by_role("button", name="Materialize all").click()
        view = page.locator("a[href^='/runs/']", has_text="View").first
        expect(view).to_be_visible()
        run_id = (view.get_attribute("href") or "").removeprefix("/runs/").split("?")[0]
        assert run_id, "the launched-run toast links to the run"
        status = _wait_for_run(dev, run_id)
        assert status == "SUCCESS", dev.log.read_text()[-3000:]
        page.goto(f"{dev.url}/runs/{run_id}")
        expect(page.get_by_text("Success", exact=True).first).to_be_visible()
        page.screenshot(path=str(tmp_path / "run.png"))

        # The funnel report's chart: markdown metadata holding the PNG as a data URI.
        page.goto(f"{dev.url}/assets/reports/funnel")
        # A long Markdown value sits behind "[Show Markdown]" in the metadata table.
        row = page.locator("tr", has=page.get_by_text("chart", exact=True))
        row.get_by_text("[Show Markdown]").click()
        chart = page.get_by_role("dialog").locator("img[src^='data:image/png;base64,']").first
        expect(chart).to_be_visible()
        assert (chart.evaluate("img => img.naturalWidth") or 0) > 100
        page.wait_for_timeout(500)  # the dialog's fade-in
        page.screenshot(path=str(tmp_path / "funnel.png"))
        browser.close()
