"""The sync job on Dagster's Celery executor (dagster-celery): a local Redis broker, two workers,
and the same result as the in-process run.

The broker is the OS package's Redis, started by `scripts/start_redis.sh` (LEADSYNC_TEST_REDIS_URL;
without it the test starts the script itself when `redis-server` is installed). It skips when
Redis is missing, unless LEADSYNC_REQUIRE_REDIS=1 (as in `make test`), which makes it fail.

Both stores are PostgreSQL when LEADSYNC_TEST_PG_URL is set (as in `make test`): that is the
shape docs/deploy.md prescribes for any executor that runs steps in other processes or on other
hosts, since every step opens the state store and writes Dagster events from its own worker.
Without a PostgreSQL server the test falls back to SQLite for both (and fails instead when
LEADSYNC_REQUIRE_PG=1): on one machine that is sound too, because the state store opens SQLite
in WAL mode and migrates under BEGIN IMMEDIATE, exactly as the multiprocess executor needs.

How it proves two workers: the workers are `dagster-celery worker start` subprocesses, each in
a process group of its own with concurrency 1. Every step the run executed started (STEP_START)
in a process whose group is one of the two workers' groups, never in the test's process, and both
groups ran steps; the Celery executor's own engine events name the worker node of every step,
and both names appear; each worker's log shows the execute_plan tasks it ran.

How it proves the same result: an in-process run (`orchestration.runner.run_sync`, as `leadsync
sync` runs it) on fresh sandboxes of the same size and seed, with a fresh store of the same
backend, is the reference. Both runs write (live mode). Then the run summaries agree (unified
leads, stages, templates, fields planned and written, rejected rows, failed checks; API calls
only where HubSpot is concerned, since each Celery step logs in to Salesforce anew); the state
stores hold the same data (`store_contents` of test_convergence: every derived frame, so unified
leads, scores, stages and nurture assignments, the stage and write-back ledgers and the raw
records, clock columns aside); and both CRMs hold the same leadsync field values, record by
record.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, cast

import dagster as dg
import pytest
import redis
import sqlalchemy as sa
import yaml
from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app

from connectors.sandbox.server import Sandboxes
from orchestration.celery_job import (
    BACKEND_URL_ENV,
    BROKER_URL_ENV,
    celery_run_config,
    celery_sync_job_def,
)
from orchestration.runner import SyncSummary, run_sync, summarise, sync_step_count
from tests.e2e.conftest import PG_URL_ENV, REQUIRE_PG_ENV, fresh_pg_url, worker_env
from tests.e2e.test_convergence import (
    CrmState,
    assert_same_store,
    leadsync_state,
    store_contents,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL_ENV = "LEADSYNC_TEST_REDIS_URL"
REQUIRE_REDIS_ENV = "LEADSYNC_REQUIRE_REDIS"
SIZE = 60
SEED = 31
WORKERS = 2
READY_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0


def require_redis() -> str:
    """The broker URL; skips (or fails, when required) without a Redis server."""
    url = os.environ.get(REDIS_URL_ENV)
    if not url and shutil.which("redis-server"):
        # Installed but not started: the project's script starts it (and leaves it running for
        # the next test session, as scripts/start_postgres.sh does; scripts/stop_redis.sh stops it).
        started = subprocess.run(
            [str(ROOT / "scripts" / "start_redis.sh")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        found = re.search(rf"{REDIS_URL_ENV}=(\S+)", started.stdout)
        if started.returncode != 0 or not found:
            pytest.fail(f"scripts/start_redis.sh failed: {started.stderr[-2000:]}")
        url = found.group(1)
    if not url:
        reason = (
            f"redis-server is not installed and {REDIS_URL_ENV} is not set; "
            '`eval "$(scripts/start_redis.sh)"` installs and starts one'
        )
        if os.environ.get(REQUIRE_REDIS_ENV) == "1":
            pytest.fail(f"{REQUIRE_REDIS_ENV}=1 but {reason}")
        pytest.skip(reason)
    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        # A URL that was set and does not answer is a broken setup, never a reason to skip.
        pytest.fail(f"{REDIS_URL_ENV}={url} does not answer: {exc}")
    finally:
        client.close()
    return url


@dataclass
class Stores:
    """Where the Celery run and the reference keep their state, and Dagster's instance config."""

    backend: str
    celery_db_url: str
    reference_db_url: str
    dagster_yaml: Path
    dagster_env: dict[str, str]


def make_stores(tmp: Path) -> Stores:
    if os.environ.get(PG_URL_ENV) or os.environ.get(REQUIRE_PG_ENV) == "1":
        # fresh_pg_url fails under LEADSYNC_REQUIRE_PG=1 when no server is configured.
        dagster_url = sa.make_url(fresh_pg_url("celery_dagster")).set(
            drivername="postgresql+psycopg2"  # dagster-postgres fails on psycopg 3
        )
        return Stores(
            "postgresql",
            fresh_pg_url("celery_state"),
            fresh_pg_url("celery_reference"),
            ROOT / "deploy" / "dagster.postgres.yaml",
            {"DAGSTER_PG_URL": dagster_url.render_as_string(hide_password=False)},
        )
    return Stores(
        "sqlite",
        f"sqlite:///{tmp / 'celery' / 'state.db'}",
        f"sqlite:///{tmp / 'reference' / 'state.db'}",
        ROOT / "deploy" / "dagster.yaml",
        {},
    )


@dataclass
class Worker:
    name: str  # the Celery node name, "<name>@<host>"
    process: subprocess.Popen[bytes]
    log: Path


def _live_members(pgid: int) -> list[int]:
    """Processes of a process group that still run (zombies aside)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its ')'.
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def stop_worker(worker: Worker) -> None:
    """SIGTERM the worker's process group (the dagster-celery wrapper, the Celery main process
    and its pool child), wait until every member is gone, SIGKILL what is left after a while."""
    pgid = worker.process.pid  # start_new_session: the group is named after its leader
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    with suppress(subprocess.TimeoutExpired):
        worker.process.wait(timeout=STOP_TIMEOUT_S)
    # The Celery main process outlives the wrapper by its warm shutdown.
    while _live_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _live_members(pgid):
        os.killpg(pgid, signal.SIGKILL)
        worker.process.wait(timeout=10)
        while _live_members(pgid):
            time.sleep(0.1)


def start_worker(name: str, config_yaml: Path, env: dict[str, str], log: Path) -> Worker:
    command = [
        str(Path(sys.executable).parent / "dagster-celery"),
        "worker",
        "start",
        "-A",
        "dagster_celery.app",
        "-y",
        str(config_yaml),
        "-n",
        name,
        "-l",
        "INFO",
        "--",
        # One step at a time per worker: two workers are two slots, so a run that uses both
        # proves the steps were spread across them.
        "--concurrency",
        "1",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a process group of its own, stopped as a whole
            cwd=ROOT,
        )
    return Worker(f"{name}@{socket.gethostname()}", process, log)


def wait_until_ready(workers: list[Worker], app_config: dict[str, Any]) -> None:
    """Until every worker answers a Celery ping through the broker."""
    app = make_app(CeleryExecutor.for_cli(**app_config).app_args())
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        waiting = {w.name for w in workers}
        while waiting:
            for worker in workers:
                if worker.process.poll() is not None:
                    pytest.fail(f"worker {worker.name} exited:\n{_tail(worker.log)}")
            if time.monotonic() > deadline:
                logs = "\n".join(_tail(w.log) for w in workers)
                pytest.fail(f"workers {sorted(waiting)} not ready in {READY_TIMEOUT_S} s:\n{logs}")
            replies = app.control.ping(destination=sorted(waiting), timeout=1.0)
            for reply in replies:
                waiting -= set(reply)
    finally:
        app.close()


def _tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return f"--- {path.name}\n" + "\n".join(text.splitlines()[-lines:])


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the test's thread after `seconds`: a run whose broker or workers
    went away would otherwise wait on its Celery results forever."""

    def expire(_signum: int, _frame: FrameType | None) -> None:
        raise TimeoutError(f"the Celery run took longer than {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Outcome:
    summary: SyncSummary
    crm: CrmState
    store: dict[str, Any]


@dataclass
class CeleryOutcome(Outcome):
    run_status: dg.DagsterRunStatus
    worker_names: list[str]
    # step key -> the worker node the executor handed it to (its engine event)
    step_workers: dict[str, str]
    # step key -> the process group of the process the step started in
    step_groups: dict[str, int]
    worker_groups: dict[str, int]  # worker node -> its process group
    tasks_in_logs: dict[str, int]  # worker node -> execute_plan tasks its log shows succeeded
    test_pid: int
    seconds: float


def _celery_run(
    box: Sandboxes,
    stores: Stores,
    workers: list[Worker],
    run_config: dict[str, Any],
    instance: dg.DagsterInstance,
) -> CeleryOutcome:
    # The run's own process (the executor's loop) resolves the job in the workers' environment.
    with worker_env(box, stores.celery_db_url, write_mode="live"):
        started = time.monotonic()
        with (
            deadline(RUN_TIMEOUT_S),
            dg.execute_job(
                dg.reconstructable(celery_sync_job_def), instance, run_config=run_config
            ) as result,
        ):
            # summarise reads only what every ExecutionResult has (materializations, check
            # evaluations, success), so the summary users read is compared as is.
            summary = summarise(cast(dg.ExecuteInProcessResult, result), dry_run=False)
            run_id = result.run_id
        seconds = time.monotonic() - started
        run = instance.get_run_by_id(run_id)
        assert run is not None
        step_workers: dict[str, str] = {}
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            event = entry.dagster_event
            data = event.engine_event_data if event else None
            node = data.metadata.get("Celery worker") if data else None
            if entry.step_key and node is not None:
                step_workers[entry.step_key] = str(getattr(node, "value", node))
        step_groups: dict[str, int] = {}
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START):
            event = entry.dagster_event
            assert entry.step_key and event is not None and event.pid is not None
            # The pool processes live as long as their worker: read their groups now.
            step_groups[entry.step_key] = os.getpgid(event.pid)
    return CeleryOutcome(
        summary=summary,
        crm=leadsync_state(box),
        store=store_contents(stores.celery_db_url),
        run_status=run.status,
        worker_names=[w.name for w in workers],
        step_workers=step_workers,
        step_groups=step_groups,
        worker_groups={w.name: w.process.pid for w in workers},
        tasks_in_logs={},
        test_pid=os.getpid(),
        seconds=seconds,
    )


def _forget_keys(url: str, prefix: str) -> None:
    """Delete what this test left in Redis (queue bindings, results): the server is shared."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _tasks_succeeded(log: Path) -> int:
    return len(
        re.findall(r"Task execute_plan\[[^\]]+\] succeeded", log.read_text(errors="replace"))
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[CeleryOutcome, Outcome]:
    broker = require_redis()
    tmp = tmp_path_factory.mktemp("celery")
    stores = make_stores(tmp)
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copy(stores.dagster_yaml, home / "dagster.yaml")

    # Every key this test's workers and run use in Redis (queues, results' pub/sub, the workers'
    # control channel) carries this prefix, so a concurrent test session on the same server
    # never hands its steps to these workers.
    tag = f"leadsync-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    app_config: dict[str, Any] = {
        "broker": broker,
        "backend": broker,
        "config_source": {
            "broker_transport_options": {
                "global_keyprefix": f"{tag}:",
                # dagster-celery's defaults, which a broker_transport_options of ours replaces.
                "max_retries": 3,
                "interval_start": 0,
                "interval_step": 0.2,
                "interval_max": 0.5,
            },
            "result_backend_transport_options": {"global_keyprefix": f"{tag}:"},
        },
    }
    run_config = celery_run_config(config_source=app_config["config_source"])
    celery_env = {BROKER_URL_ENV: broker, BACKEND_URL_ENV: broker}
    # The worker reads the same execution block as the run (`dagster-celery worker start -y`).
    config_yaml = tmp / "celery.yaml"
    config_yaml.write_text(yaml.safe_dump({"execution": run_config["execution"]}))

    with ExitStack() as stack:
        stack.callback(_forget_keys, broker, f"{tag}:")
        mp = stack.enter_context(pytest.MonkeyPatch.context())
        for key, value in {"DAGSTER_HOME": str(home), **stores.dagster_env, **celery_env}.items():
            mp.setenv(key, value)
        # Opening the instance creates its storage (SQLite files or PostgreSQL tables) once,
        # here, before the workers open it: two workers creating a fresh SQLite storage at the
        # same moment both stamp its schema version, and Dagster then refuses it.
        instance = dg.DagsterInstance.from_config(str(home))
        stack.callback(instance.dispose)
        box = stack.enter_context(Sandboxes(size=SIZE, seed=SEED))
        venv_bin = str(Path(sys.executable).parent)
        # os.environ holds DAGSTER_HOME, the broker's URLs (and DAGSTER_PG_URL) by now.
        env = {
            **os.environ,
            **box.env(),
            "LEADSYNC_DB_URL": stores.celery_db_url,
            "LEADSYNC_WRITE_MODE": "live",
            # dagster-celery runs `celery` from PATH.
            "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        workers: list[Worker] = []
        for i in range(1, WORKERS + 1):
            name = f"{tag}-{i}"
            workers.append(start_worker(name, config_yaml, env, tmp / f"worker-{i}.log"))
            stack.callback(stop_worker, workers[-1])

        # The reference runs while the workers boot (they import Dagster and the job).
        with (
            Sandboxes(size=SIZE, seed=SEED) as ref_box,
            worker_env(ref_box, stores.reference_db_url, write_mode="live"),
        ):
            reference = Outcome(run_sync(), leadsync_state(ref_box), {})
        reference.store = store_contents(stores.reference_db_url)

        wait_until_ready(workers, app_config)
        outcome = _celery_run(box, stores, workers, run_config, instance)
    # The workers have stopped (and flushed their logs).
    outcome.tasks_in_logs = {w.name: _tasks_succeeded(w.log) for w in workers}
    return outcome, reference


def test_the_celery_run_succeeds(runs: tuple[CeleryOutcome, Outcome]) -> None:
    celery, _ = runs
    assert celery.run_status == dg.DagsterRunStatus.SUCCESS
    assert celery.summary.success, celery.summary.notes
    assert not celery.summary.failed_checks
    assert celery.summary.unified_leads > 0
    assert sum(celery.summary.fields_written.values()) > 0


def test_the_steps_ran_on_both_workers_and_nowhere_else(
    runs: tuple[CeleryOutcome, Outcome],
) -> None:
    celery, _ = runs
    assert len(celery.step_groups) == sync_step_count(), celery.step_groups  # every one ran
    # The executor handed every step to a worker, and both workers took some.
    assert celery.step_workers.keys() == celery.step_groups.keys()
    per_worker = Counter(celery.step_workers.values())
    assert set(per_worker) == set(celery.worker_names), per_worker
    # Each step started in a process of the worker the executor named, never in this process.
    assert os.getpgid(celery.test_pid) not in celery.worker_groups.values()
    for step, group in celery.step_groups.items():
        assert group == celery.worker_groups[celery.step_workers[step]], step
    # ...and each worker's own log counts the tasks it ran.
    assert celery.tasks_in_logs == dict(per_worker), (celery.tasks_in_logs, per_worker)


def test_the_summary_equals_the_in_process_run(runs: tuple[CeleryOutcome, Outcome]) -> None:
    celery, reference = runs
    assert reference.summary.success, reference.summary.notes

    def essentials(summary: SyncSummary) -> dict[str, Any]:
        return {k: v for k, v in summary.to_dict().items() if k != "api_calls"}

    assert essentials(celery.summary) == essentials(reference.summary)
    # Each Celery step builds its own resources where the in-process run shares them across
    # steps, so Salesforce logs in once per step that calls it; HubSpot's token costs nothing.
    calls, reference_calls = celery.summary.api_calls, reference.summary.api_calls
    assert calls["hubspot"] == reference_calls["hubspot"]
    assert calls["salesforce"] >= reference_calls["salesforce"]


def test_the_state_store_equals_the_in_process_run(runs: tuple[CeleryOutcome, Outcome]) -> None:
    celery, reference = runs
    # Unified leads and ids, scores, stages and their ledger, nurture assignments (template ids),
    # the write-back ledger (system, record, field, value), raw records: clock columns aside.
    assert_same_store(celery.store, reference.store)


def test_the_crms_hold_what_the_in_process_run_wrote(runs: tuple[CeleryOutcome, Outcome]) -> None:
    celery, reference = runs
    assert celery.crm == reference.crm
    assert any(value is not None for fields in reference.crm.values() for value in fields.values())
