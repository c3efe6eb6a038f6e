"""Serve both emulators, seeded by the generator: in-process for tests and the demo, standalone for
`leadsync sandbox up`."""

import logging
import shlex
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from connectors.sandbox.faults import FaultInjector
from connectors.sandbox.generator import SandboxDataset, generate
from connectors.sandbox.hubspot_app import HubSpotSandbox
from connectors.sandbox.salesforce_app import SalesforceSandbox
from connectors.sandbox.tls import make_tls

# One line per request drowns every other log line; the emulators count calls themselves.
logging.getLogger("werkzeug").setLevel(logging.WARNING)


class _KeepAliveHandler(WSGIRequestHandler):
    # werkzeug speaks HTTP/1.0 by default and closes every connection, so each call would pay a
    # new TCP (and for Salesforce, TLS) handshake. Both real services keep connections alive.
    protocol_version = "HTTP/1.1"


def serve(
    app: object, host: str = "127.0.0.1", port: int = 0, ssl_context: object = None
) -> BaseWSGIServer:
    """Serve a WSGI app on a daemon thread with keep-alive; returns the running server."""
    server = make_server(
        host,
        port,
        app,  # type: ignore[arg-type]
        threaded=True,
        request_handler=_KeepAliveHandler,
        ssl_context=ssl_context,  # type: ignore[arg-type]
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


HUBSPOT_TOKEN = "pat-sandbox-leadsync"
SALESFORCE_CLIENT_ID = "sandbox-client-id"
SALESFORCE_CLIENT_SECRET = "sandbox-client-secret"


@dataclass
class Sandboxes:
    """Both CRM emulators on loopback ports, seeded with `size` people from `seed`.

    Use as a context manager; `env()` gives the variables `leadsync sync` reads.
    """

    size: int = 3000
    seed: int = 7
    host: str = "127.0.0.1"
    hubspot_port: int = 0
    salesforce_port: int = 0
    workdir: Path | None = None
    fault_profile: str = "none"  # "none" | "realistic" | "hostile" (connectors/sandbox/faults.py)
    fault_seed: int = 0
    hubspot_options: dict[str, object] = field(default_factory=dict)
    salesforce_options: dict[str, object] = field(default_factory=dict)

    hubspot: HubSpotSandbox = field(init=False)
    salesforce: SalesforceSandbox = field(init=False)
    hubspot_faults: FaultInjector = field(init=False)
    salesforce_faults: FaultInjector = field(init=False)
    dataset: SandboxDataset = field(init=False)
    ca_path: Path = field(init=False)
    _servers: list[BaseWSGIServer] = field(init=False, default_factory=list)
    _tmp: tempfile.TemporaryDirectory[str] | None = field(init=False, default=None)

    def start(self) -> Self:
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="leadsync-sandbox-")
            self.workdir = Path(self._tmp.name)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.dataset = generate(self.size, self.seed)
        self.dataset.write_truth(self.workdir / "truth.csv")
        self.dataset.write_outcomes(self.workdir / "outcomes.csv")

        self.hubspot = HubSpotSandbox(HUBSPOT_TOKEN, **self.hubspot_options)  # type: ignore[arg-type]
        for object_type, records in self.dataset.hubspot.items():
            self.hubspot.load(object_type, records)
        self.salesforce = SalesforceSandbox(
            SALESFORCE_CLIENT_ID,
            SALESFORCE_CLIENT_SECRET,
            **self.salesforce_options,  # type: ignore[arg-type]
        )
        for sobject, records in self.dataset.salesforce.items():
            self.salesforce.load(sobject, records)
        return self.serve()

    def serve(self) -> Self:
        """Serve the seeded emulators on their ports (HubSpot over HTTP, Salesforce over HTTPS)."""
        assert self.workdir is not None, "start() makes the workdir before serving"
        # Every request passes the fault injector: it counts them per endpoint and status, and
        # injects the profile's faults (none by default) or a test's scripted ones.
        self.hubspot_faults = FaultInjector(
            self.hubspot, "hubspot", profile=self.fault_profile, seed=self.fault_seed
        )
        self.salesforce_faults = FaultInjector(
            self.salesforce, "salesforce", profile=self.fault_profile, seed=self.fault_seed
        )
        ssl_context, self.ca_path = make_tls(self.workdir)
        hs = serve(self.hubspot_faults, self.host, self.hubspot_port)
        sf = serve(self.salesforce_faults, self.host, self.salesforce_port, ssl_context)
        self.salesforce.instance_url = f"https://{self.host}:{sf.server_port}"
        self._servers = [hs, sf]
        return self

    def stop(self) -> None:
        for injector in (self.hubspot_faults, self.salesforce_faults):
            injector.close()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers = []
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def hubspot_url(self) -> str:
        return f"http://{self.host}:{self._servers[0].server_port}"

    @property
    def salesforce_domain(self) -> str:
        # simple-salesforce builds https://{domain}.salesforce.com/services/oauth2/token, so a
        # "host:port/sf" domain lands on https://host:port/sf.salesforce.com/services/oauth2/token.
        return f"{self.host}:{self._servers[1].server_port}/sf"

    def env(self) -> dict[str, str]:
        """The environment `leadsync sync` reads, pointing at these sandboxes."""
        return {
            "HUBSPOT_ACCESS_TOKEN": HUBSPOT_TOKEN,
            "HUBSPOT_BASE_URL": self.hubspot_url,
            "SALESFORCE_DOMAIN": self.salesforce_domain,
            "SALESFORCE_CLIENT_ID": SALESFORCE_CLIENT_ID,
            "SALESFORCE_CLIENT_SECRET": SALESFORCE_CLIENT_SECRET,
            "LEADSYNC_CA_BUNDLE": str(self.ca_path),
        }

    def export_lines(self) -> str:
        login_url = f"https://{self.salesforce_domain}.salesforce.com/services/oauth2/token"
        lines = [f"export {k}={shlex.quote(v)}" for k, v in self.env().items()]
        lines.append(f"# Salesforce login URL: {login_url}")
        lines.append(f"# ground truth: {self.workdir}/truth.csv and {self.workdir}/outcomes.csv")
        return "\n".join(lines)
