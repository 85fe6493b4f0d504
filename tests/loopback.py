"""Small HTTP(S) servers on loopback addresses, and a resolver that changes its answer: for
tests of what a connection really reaches (DNS rebinding, SNI, slow bodies)."""

import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class LoopbackServer:
    """A threaded HTTP server on ``address``; records each request's Host header and SNI name."""

    def __init__(
        self,
        handler: Callable[[BaseHTTPRequestHandler], None],
        address: str = "127.0.0.1",
        port: int = 0,
        tls: tuple[str, str] | None = None,
        protocol: str = "HTTP/1.0",
    ):
        self.requests: list[dict] = []
        self.sni: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = protocol

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server.requests.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                )
                handler(self)

            do_GET = do_POST = _handle

        self.httpd = ThreadingHTTPServer((address, port), Handler)
        self.httpd.daemon_threads = True
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            context.sni_callback = lambda sock, name, ctx: self.sni.append(name)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "LoopbackServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def second_loopback_server(handler, port: int) -> LoopbackServer:
    """A server on 127.0.0.2 (the "rebound" address); skips the test where only 127.0.0.1 exists (macOS)."""
    import pytest

    try:
        return LoopbackServer(handler, address="127.0.0.2", port=port)
    except OSError as exc:
        pytest.skip(f"127.0.0.2 is not usable here: {exc}")


def answer(status: int = 200, body: bytes = b"ok", headers: dict | None = None):
    def handle(request: BaseHTTPRequestHandler) -> None:
        request.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(body)

    return handle


def rebinding_resolver(answers: list[str]):
    """A getaddrinfo that gives the next answer on each lookup of a name (the last one forever
    after); IP literals resolve to themselves, as they do for the real one."""
    calls: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        try:
            address = str(ipaddress.ip_address(host))
        except ValueError:
            address = answers[min(len(calls), len(answers) - 1)]
            calls.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    getaddrinfo.calls = calls
    return getaddrinfo


def self_signed_certificate(directory: Path, hostname: str) -> tuple[str, str]:
    """A certificate for ``hostname`` (and its key), good as its own trust anchor."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)
