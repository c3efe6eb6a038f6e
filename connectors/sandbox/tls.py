"""A throw-away private CA and server certificate for the HTTPS sandboxes.

simple-salesforce hardcodes ``https://`` for every URL it builds (contract trip-wire 1), so the
Salesforce emulator has to speak TLS. ``trustme`` mints a CA and a leaf certificate in memory; the
CA is written to disk so clients can trust it with ``requests.Session().verify = ca_path``.

Remember trip-wire 2: on these machines ``REQUESTS_CA_BUNDLE`` is set and silently wins over
``session.verify`` unless the session also has ``trust_env = False``.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme

CA_FILE_NAME = "sandbox-ca.pem"


def make_tls(
    directory: Path, hostnames: tuple[str, ...] = ("127.0.0.1", "localhost")
) -> tuple[ssl.SSLContext, Path]:
    """Create a private CA and a server certificate for ``hostnames``.

    Returns the server-side SSL context (hand it to ``werkzeug.serving.make_server`` as
    ``ssl_context``) and the path of the CA certificate PEM written into ``directory``.
    """
    if not hostnames:
        raise ValueError("make_tls needs at least one hostname")
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="leadsync sandbox CA")
    leaf = ca.issue_cert(*hostnames)

    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.minimum_version = ssl.TLSVersion.TLSv1_2
    leaf.configure_cert(server_context)

    ca_path = directory / CA_FILE_NAME
    ca.cert_pem.write_to_path(str(ca_path))
    return server_context, ca_path
