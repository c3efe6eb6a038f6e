"""The state store's run lock: one sync or reconcile at a time per database, on SQLite and
PostgreSQL. A second run waits, or fails with a clear error after its timeout; a killed worker
never leaves the store locked."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestration.store import RunLockTimeout, StateStore
from tests.e2e.conftest import BACKENDS, fresh_pg_url

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return fresh_pg_url("run_lock")
    return f"sqlite:///{tmp_path / 'state.db'}"


def test_a_second_run_times_out_with_a_clear_error_then_gets_the_lock(url: str) -> None:
    first, second = StateStore(url), StateStore(url)
    with first.run_lock() as waited:
        assert waited < 1
        held = "another leadsync run holds the run lock"
        with pytest.raises(RunLockTimeout, match=held), second.run_lock(timeout_s=0.3, poll_s=0.05):
            pass
    with second.run_lock(timeout_s=1) as waited:
        assert waited < 1


def test_the_error_never_shows_the_database_password() -> None:
    url = fresh_pg_url("run_lock_secret")
    store = StateStore(url)
    password = store.engine.url.password
    assert password
    other = StateStore(url)
    with (
        store.run_lock(),
        pytest.raises(RunLockTimeout) as caught,
        other.run_lock(timeout_s=0.1, poll_s=0.05),
    ):
        pass
    assert f":{password}@" not in str(caught.value)
    assert ":***@" in str(caught.value)


def test_a_killed_worker_releases_the_lock(url: str) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from orchestration.store import StateStore\n"
            "with StateStore(sys.argv[1]).run_lock():\n"
            "    print('locked', flush=True)\n"
            "    time.sleep(60)\n",
            url,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"locked"
        with pytest.raises(RunLockTimeout), StateStore(url).run_lock(timeout_s=0.2, poll_s=0.05):
            pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        started = time.monotonic()
        with StateStore(url).run_lock(timeout_s=10, poll_s=0.05):
            pass
        assert time.monotonic() - started < 5
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
