"""Serving the Salesforce emulator over HTTPS and connecting simple-salesforce to it."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from simple_salesforce.api import Salesforce

from connectors.sandbox.salesforce_app import SalesforceSandbox
from connectors.sandbox.server import serve
from connectors.sandbox.tls import make_tls


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    return make_tls(tmp_path_factory.mktemp("sf-tls"))


@contextmanager
def serving(sandbox: SalesforceSandbox, tls: tuple[Any, Path]) -> Iterator[int]:
    """Serve the sandbox over HTTPS on a free port; yields the port."""
    server = serve(sandbox, ssl_context=tls[0])
    sandbox.instance_url = f"https://127.0.0.1:{server.server_port}"
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


def connect(port: int, ca_path: Path, client_id: str, secret: str) -> Salesforce:
    """simple-salesforce logged in by client credentials, trusting the sandbox's private CA."""
    session = requests.Session()
    session.verify = str(ca_path)
    session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise win (trip-wire 2)
    return Salesforce(
        consumer_key=client_id,
        consumer_secret=secret,
        domain=f"127.0.0.1:{port}/sf",
        session=session,
    )
