"""The connection goes to the address that was checked (DNS rebinding), with SNI, certificate
verification and the Host header still naming the URL's host. Loopback servers only."""

import socket

import pytest
from urllib3.exceptions import SSLError

from i2v.httpclient import TransportError, request
from i2v.urlsafety import UnsafeUrlError, check_url, pinned_pool
from tests.loopback import LoopbackServer, answer, rebinding_resolver, second_loopback_server, self_signed_certificate

HOST = "cdn.nohuman.studio"


def test_a_second_lookup_cannot_move_the_connection(monkeypatch):
    with LoopbackServer(answer(body=b"checked")) as good:
        with second_loopback_server(answer(body=b"rebound"), good.port) as evil:
            resolver = rebinding_resolver(["127.0.0.1", "127.0.0.2"])
            monkeypatch.setattr(socket, "getaddrinfo", resolver)
            url = f"http://{HOST}:{good.port}/v.mp4"

            checked = check_url(url, allow_loopback_http=True)
            with pinned_pool(checked) as pool:
                response = request(pool, "GET", url, connect_timeout=5, read_timeout=5)

            assert response.body == b"checked"
            assert evil.requests == []
            assert good.requests[0]["headers"]["Host"] == f"{HOST}:{good.port}"
            assert resolver.calls == ["127.0.0.1"]  # nothing resolved the name a second time


def test_tls_uses_the_host_name_for_sni_and_the_certificate(monkeypatch, tmp_path):
    cert, key = self_signed_certificate(tmp_path, HOST)
    with LoopbackServer(answer(body=b"video"), tls=(cert, key)) as server:
        monkeypatch.setattr(socket, "getaddrinfo", rebinding_resolver(["127.0.0.1", "127.0.0.9"]))
        url = f"https://{HOST}:{server.port}/v.mp4"
        checked = check_url(url, allow_loopback_http=True)

        with pinned_pool(checked, ca_certs=cert) as pool:
            response = request(pool, "GET", url, connect_timeout=5, read_timeout=5)

        assert response.body == b"video"
        assert server.sni == [HOST]
        assert server.requests[0]["headers"]["Host"] == f"{HOST}:{server.port}"


def test_a_certificate_for_another_name_is_refused(monkeypatch, tmp_path):
    cert, key = self_signed_certificate(tmp_path, "other.example")
    with LoopbackServer(answer(), tls=(cert, key)) as server:
        monkeypatch.setattr(socket, "getaddrinfo", rebinding_resolver(["127.0.0.1"]))
        url = f"https://{HOST}:{server.port}/v.mp4"
        checked = check_url(url, allow_loopback_http=True)

        with pinned_pool(checked, ca_certs=cert) as pool, pytest.raises(TransportError) as failure:
            request(pool, "GET", url, connect_timeout=5, read_timeout=5)
        assert isinstance(failure.value.__cause__, SSLError)
        assert server.requests == []


def test_the_pool_only_goes_to_the_checked_url(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", rebinding_resolver(["127.0.0.1"]))
    checked = check_url(f"http://{HOST}:8080/v.mp4", allow_loopback_http=True)

    with pinned_pool(checked) as pool, pytest.raises(UnsafeUrlError, match="checked"):
        request(pool, "GET", "http://elsewhere.example:8080/v.mp4", connect_timeout=5, read_timeout=5)
