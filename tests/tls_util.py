"""Real TLS for tests: a self-signed certificate made by the openssl CLI, and connected pairs."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Cert:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.cert)
        return ctx


def make_cert(directory: Path) -> Cert:
    """Generate a throwaway EC certificate (about 20 ms) with the openssl command."""
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command is needed to generate a test certificate"
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return Cert(cert, key)


def tls_pair(cert: Cert) -> tuple[ssl.SSLSocket, ssl.SSLSocket]:
    """A client and a server TLS socket over 127.0.0.1, handshake done, both blocking."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        raw_client = socket.create_connection(listener.getsockname(), timeout=10)
        raw_server, _ = listener.accept()
    raw_server.settimeout(10)
    accepted: list[ssl.SSLSocket] = []

    def handshake() -> None:
        accepted.append(cert.server_context().wrap_socket(raw_server, server_side=True))

    t = threading.Thread(target=handshake, daemon=True)
    t.start()
    client = cert.client_context().wrap_socket(raw_client, server_hostname="127.0.0.1")
    t.join(10)
    assert accepted, "the TLS handshake did not finish"
    server = accepted[0]
    client.settimeout(None)
    server.settimeout(None)
    return client, server


def read_all(sock: ssl.SSLSocket, into: list[bytes]) -> None:
    """Read plaintext to EOF (a close_notify, or a TCP close) into ``into``."""
    try:
        while chunk := sock.recv(1 << 16):
            into.append(chunk)
    except (ssl.SSLError, OSError):
        pass  # a close without close_notify, or a reset: what arrived is what counts


class Reader:
    """Read a TLS socket's plaintext to EOF in a thread."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self.chunks: list[bytes] = []
        self.thread = threading.Thread(target=read_all, args=(sock, self.chunks), daemon=True)
        self.thread.start()

    def result(self, timeout: float = 30) -> bytes:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the TLS reader saw no EOF in time"
        return b"".join(self.chunks)
