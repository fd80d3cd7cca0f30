"""TLS served by the engine itself (`server.tls_cert_file` / `tls_key_file`).

A self-signed certificate for 127.0.0.1, made by the test. WebSocket sessions go through the
engine's own WebSocket layer on the TLS stream, long-polling through hypercorn; both must
work, both must be logged by the access log when it is on.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import socketio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import serving

pytestmark = pytest.mark.anyio

PROFILE = """
[engine]
name = "tls"
environment = "development"

[server]
tls_cert_file = "cert.pem"
tls_key_file = "key.pem"
access_log = true
websocket_server = "{websocket_server}"

[namespaces."/"]
handler = "tests.handlers:EchoNamespace"
"""


def self_signed(directory: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.mark.parametrize("websocket_server", ["engine", "hypercorn"])
@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_sessions_over_tls_on_both_transports(
    write_profile: Callable[..., Path],
    caplog: pytest.LogCaptureFixture,
    websocket_server: str,
    transport: str,
) -> None:
    path = write_profile(PROFILE.format(websocket_server=websocket_server))
    self_signed(path.parent)
    async with serving(path) as running:
        assert running.url.startswith("https://")
        client = socketio.AsyncClient(reconnection=False, ssl_verify=False)
        with caplog.at_level(logging.INFO, logger="engine.access"):
            await client.connect(running.url, transports=[transport], wait_timeout=5)
            try:
                assert await client.call("echo", {"over": "tls"}, timeout=5) == {"over": "tls"}
                assert client.transport() == transport
            finally:
                await client.disconnect()
        accessed = [r.getMessage() for r in caplog.records if r.name == "engine.access"]
        status = '" 101 ' if transport == "websocket" else '" 200 '
        assert any('"GET /socket.io/' in line and status in line for line in accessed), accessed
