"""Helpers shared by the end-to-end tests.

The state store runs on SQLite by default and on PostgreSQL by URL. Modules that take the
`backend` fixture run once per backend: on PostgreSQL against the server LEADSYNC_TEST_PG_URL
points at (`eval "$(scripts/start_postgres.sh)"`), each module in a database of its own. Without
that variable the PostgreSQL variants skip, unless LEADSYNC_REQUIRE_PG=1 (as in `make test`),
which makes them fail instead.
"""

import atexit
import contextlib
import itertools
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from connectors.sandbox.server import Sandboxes

PG_URL_ENV = "LEADSYNC_TEST_PG_URL"
REQUIRE_PG_ENV = "LEADSYNC_REQUIRE_PG"
BACKENDS = ("sqlite", "postgresql")
# Test databases are named after the pytest process that made them, so a later session can drop
# what a killed one left behind without touching a concurrent session's databases.
_DB_PREFIX = "leadsync_test_"
_counter = itertools.count(1)
_created: list[str] = []


def within_one_utc_day(seconds: float) -> float:
    """Wait out UTC midnight if fewer than `seconds` remain before it; the seconds waited.

    Engagement scores age by the day, so two syncs that straddle midnight score differently:
    tests that compare two scenarios run minutes apart must run both on one date."""
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    left = (midnight - now).total_seconds()
    if left >= seconds:
        return 0.0
    time.sleep(left + 1.0)
    return left + 1.0


def require_pg() -> str:
    """The PostgreSQL server URL for tests; skips (or fails, when required) if there is none."""
    url = os.environ.get(PG_URL_ENV)
    if url:
        return url
    reason = (
        f"{PG_URL_ENV} is not set; start a test server with "
        '`eval "$(scripts/start_postgres.sh)"` to run the PostgreSQL variants'
    )
    if os.environ.get(REQUIRE_PG_ENV) == "1":
        pytest.fail(f"{REQUIRE_PG_ENV}=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The state store's backend for this module's runs (module-scoped: one store per module)."""
    if request.param == "postgresql":
        require_pg()
    return request.param


def _admin_engine(server_url: str) -> sa.Engine:
    # CREATE/DROP DATABASE cannot run inside a transaction.
    return sa.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


def fresh_pg_url(name: str = "state") -> str:
    """A new, empty PostgreSQL database on the test server; dropped when the session ends."""
    server_url = sa.make_url(require_pg())
    if not _created:
        _drop_leftovers(server_url)
        atexit.register(_drop_created, server_url)
    database = f"{_DB_PREFIX}{os.getpid()}_{next(_counter)}_{name}"[:63].lower()
    admin = _admin_engine(server_url.render_as_string(hide_password=False))
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{database}"')
    admin.dispose()
    _created.append(database)
    return server_url.set(database=database).render_as_string(hide_password=False)


def _drop(server_url: sa.URL, databases: list[str]) -> None:
    admin = _admin_engine(server_url.render_as_string(hide_password=False))
    with admin.connect() as conn:
        for database in databases:
            # FORCE: the workers' pooled connections may still be open.
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    admin.dispose()


def _drop_created(server_url: sa.URL) -> None:
    # The server may be gone already; its data directory then holds nothing we need.
    with contextlib.suppress(OperationalError):
        _drop(server_url, _created)


def _drop_leftovers(server_url: sa.URL) -> None:
    admin = _admin_engine(server_url.render_as_string(hide_password=False))
    with admin.connect() as conn:
        names = conn.exec_driver_sql(
            "SELECT datname FROM pg_database WHERE datname LIKE %(p)s", {"p": f"{_DB_PREFIX}%"}
        ).scalars()
        stale = [n for n in names if not _alive(int(n.removeprefix(_DB_PREFIX).split("_")[0]))]
    admin.dispose()
    if stale:
        _drop(server_url, stale)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def db_url_in(factory: pytest.TempPathFactory, name: str = "state", backend: str = "sqlite") -> str:
    """A fresh state store: a SQLite file in a temporary folder, or a new PostgreSQL database."""
    if backend == "postgresql":
        return fresh_pg_url(name)
    return f"sqlite:///{factory.mktemp(name) / 'state.db'}"


@contextmanager
def worker_env(
    box: Sandboxes, db_url: str, *, write_mode: str = "dry_run", **extra: str
) -> Iterator[None]:
    """The environment of a worker pointed at these sandboxes and this state store."""
    with pytest.MonkeyPatch.context() as mp:
        settings = {**box.env(), "LEADSYNC_DB_URL": db_url, "LEADSYNC_WRITE_MODE": write_mode}
        for key, value in {**settings, **extra}.items():
            mp.setenv(key, value)
        yield
