"""URL safety: only HTTPS to public addresses (and allowed hosts) passes."""

import socket

import pytest

from i2v.urlsafety import UnsafeUrlError, check_url


def test_https_to_public_address_passes(resolves_to):
    resolves_to("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946")
    check_url("https://hooks.example.com/path?x=1")


def test_public_ip_literal_passes_without_dns(monkeypatch):
    def no_dns(*args, **kwargs):
        raise AssertionError("an IP literal needs no lookup")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    check_url("https://93.184.216.34:8443/hook")


@pytest.mark.parametrize(
    "url", ["http://hooks.example.com/", "ftp://hooks.example.com/", "file:///etc/passwd", "hooks.example.com"]
)
def test_non_https_schemes_are_refused(resolves_to, url):
    resolves_to("93.184.216.34")
    with pytest.raises(UnsafeUrlError, match="https"):
        check_url(url)


@pytest.mark.parametrize(
    "address, reason",
    [
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("172.16.5.4", "private"),
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("fc00::1", "private"),
        ("100.64.0.1", "100.64.0.1"),
    ],
)
def test_non_public_ip_literals_are_refused(address, reason):
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(UnsafeUrlError, match=reason):
        check_url(f"https://{host}/hook")


def test_hostname_resolving_to_private_address_is_refused(resolves_to):
    resolves_to("10.0.0.7")
    with pytest.raises(UnsafeUrlError, match="private"):
        check_url("https://internal.example.com/hook")


def test_one_private_address_among_public_ones_is_refused(resolves_to):
    resolves_to("93.184.216.34", "192.168.1.1")
    with pytest.raises(UnsafeUrlError, match=r"192\.168\.1\.1"):
        check_url("https://mixed.example.com/hook")


def test_zone_suffixed_link_local_answer_is_refused(resolves_to):
    resolves_to("fe80::1%eth0")
    with pytest.raises(UnsafeUrlError, match="link-local"):
        check_url("https://zoned.example.com/hook")


def test_unresolvable_host_is_refused(monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(UnsafeUrlError, match="cannot be resolved"):
        check_url("https://nowhere.invalid/hook")


def test_url_without_host_or_with_bad_port_is_refused():
    with pytest.raises(UnsafeUrlError, match="no host"):
        check_url("https:///path")
    with pytest.raises(UnsafeUrlError, match="not a valid URL"):
        check_url("https://example.com:99999/")


def test_loopback_http_only_with_the_local_stack_switch():
    with pytest.raises(UnsafeUrlError, match="https"):
        check_url("http://127.0.0.1:8080/hook")
    check_url("http://127.0.0.1:8080/hook", allow_loopback_http=True)
    check_url("http://[::1]:8080/hook", allow_loopback_http=True)
    check_url("https://127.0.0.1:8443/hook", allow_loopback_http=True)


def test_loopback_switch_does_not_open_http_to_other_hosts(resolves_to):
    resolves_to("93.184.216.34")
    with pytest.raises(UnsafeUrlError, match="only allowed to loopback"):
        check_url("http://hooks.example.com/", allow_loopback_http=True)
    with pytest.raises(UnsafeUrlError, match="private"):
        check_url("http://10.0.0.1/", allow_loopback_http=True)


def test_allowed_hosts_match_on_dot_boundary(resolves_to):
    resolves_to("93.184.216.34")
    allowed = ("example.com", ".cdn.provider.net")
    check_url("https://example.com/v.mp4", allowed_hosts=allowed)
    check_url("https://files.example.com/v.mp4", allowed_hosts=allowed)
    check_url("https://a.cdn.provider.net/v.mp4", allowed_hosts=allowed)
    for url in ("https://badexample.com/v.mp4", "https://example.com.evil.org/v.mp4", "https://provider.net/v.mp4"):
        with pytest.raises(UnsafeUrlError, match="not one of the allowed hosts"):
            check_url(url, allowed_hosts=allowed)


def test_unsafe_url_error_is_a_value_error():
    assert issubclass(UnsafeUrlError, ValueError)


# ---------------------------------------------------------------- parser confusion (issue 8, B1)


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254\\@cdn.nohuman.studio/v.mp4",  # urllib3 connects to 169.254.169.254
        "https://169.254.169.254\\.cdn.nohuman.studio/v.mp4",
        "https://cdn.nohuman.studio\\@169.254.169.254/v.mp4",
        "https://cdn.nohuman.studio@169.254.169.254/v.mp4",  # user info
        "https://user:pw@cdn.nohuman.studio/v.mp4",
        "https://cdn.nohuman.studio%2F@169.254.169.254/",
        "https://cdn.nohuman.studio /v.mp4",
        "https://cdn.noh\tuman.studio/v.mp4",
        "https://cdn.nohumän.studio/v.mp4",
        "https://cdn.nohuman.studio/v.mp4\\..\\x",
    ],
)
def test_urls_the_parsers_could_read_differently_are_refused(resolves_to, url):
    resolves_to("93.184.216.34")
    with pytest.raises(UnsafeUrlError):
        check_url(url, allowed_hosts=("nohuman.studio",))


def test_parser_disagreement_is_refused(resolves_to, monkeypatch):
    from urllib3.util import Url

    from i2v import urlsafety

    resolves_to("93.184.216.34")
    monkeypatch.setattr(urlsafety, "parse_url", lambda url: Url(scheme="https", host="169.254.169.254"))
    with pytest.raises(UnsafeUrlError, match="read differently"):
        check_url("https://cdn.nohuman.studio/v.mp4")


def test_check_returns_the_address_to_connect_to(resolves_to):
    resolves_to("93.184.216.34", "93.184.216.35")
    checked = check_url("https://CDN.nohuman.studio:8443/v.mp4?sig=1", allowed_hosts=("nohuman.studio",))
    assert (checked.scheme, checked.host, checked.port, str(checked.address)) == (
        "https",
        "cdn.nohuman.studio",
        8443,
        "93.184.216.34",
    )
    assert checked.host_header == "cdn.nohuman.studio:8443"


def test_user_info_only_where_allowed(resolves_to):
    resolves_to("93.184.216.34")
    url = "https://hook-user:s3cr%21t@hooks.example.com/events"
    with pytest.raises(UnsafeUrlError, match="authority"):
        check_url(url)
    assert check_url(url, allow_userinfo=True).host == "hooks.example.com"
    # Still no backslash, and both parsers must agree on the host.
    with pytest.raises(UnsafeUrlError):
        check_url("https://169.254.169.254\\@hooks.example.com/", allow_userinfo=True)
    with pytest.raises(UnsafeUrlError):
        check_url("https://a@b@hooks.example.com/", allow_userinfo=True)
