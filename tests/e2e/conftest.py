"""Helpers shared by the end-to-end tests."""

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from connectors.sandbox.server import Sandboxes


def db_url_in(factory: pytest.TempPathFactory, name: str = "state") -> str:
    """A fresh SQLite state store in a temporary folder."""
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
