"""Is a URL safe to call from inside the stack, and how to call it at the address that was checked.

Used for URLs that come from outside our control: the webhook target an operator configures
and the result links a provider hands back. A Lambda inside a VPC or on AWS can reach things
the Internet cannot (the instance metadata service at 169.254.169.254, private services), so
a URL must be HTTPS and every address its host resolves to must be public.

Two attacks shape this module:

- Parser confusion. ``urlsplit`` and urllib3 (the HTTP client) disagree on
  some URLs: in ``https://169.254.169.254\\@cdn.example.com/`` urlsplit sees the host
  ``cdn.example.com``, urllib3 ends the authority at the backslash and connects to
  169.254.169.254. So the authority must be a plain ``host[:port]`` made of RFC 3986
  characters, and both parsers must agree on scheme, host and port.
- DNS rebinding. The check resolves the name, then the HTTP client would resolve it again and
  may get another answer. ``pinned_pool`` connects to the checked address instead, while
  TLS (SNI, certificate verification) and the Host header still use the URL's host name.
"""

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import urllib3
from urllib3.exceptions import LocationParseError
from urllib3.util import make_headers, parse_url

from i2v.httpclient import CA_CERTS

_DEFAULT_PORTS = {"https": 443, "http": 80}
# host[:port]: a DNS name (letters, digits, '-', '.') or a bracketed IPv6 literal; stricter than
# RFC 3986 on purpose (no percent-encoding or sub-delims in the host). User info ("user:pw@"),
# where a caller allows it, is limited to RFC 3986's characters for it.
_HOST_PORT = r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
_AUTHORITY = re.compile(_HOST_PORT)
_AUTHORITY_WITH_USERINFO = re.compile(r"(?:[A-Za-z0-9\-._~%!$&'()*+,;=:]*@)?" + _HOST_PORT)
# Anything a URL never legitimately contains unescaped: controls, space, backslash, non-ASCII.
_FORBIDDEN = re.compile(r"[^\x21-\x7e]|\\")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeUrlError(ValueError):
    """The URL is not one we are willing to call; the message says why."""


@dataclass(frozen=True)
class CheckedUrl:
    """A URL that passed check_url, and the address the connection must go to."""

    url: str
    scheme: str
    host: str
    port: int
    address: IPAddress

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def check_url(
    url: str, *, allowed_hosts: tuple = (), allow_loopback_http: bool = False, allow_userinfo: bool = False
) -> CheckedUrl:
    """Raise UnsafeUrlError unless ``url`` is HTTPS to a public address (and an allowed host).

    ``allowed_hosts``: when given, the host must equal one of them or be a subdomain of one
    (``cdn.example.com`` matches ``example.com``; ``badexample.com`` does not).
    ``allow_loopback_http``: local stack only; loopback addresses become acceptable, and
    plain http is accepted when every address of the host is loopback.
    ``allow_userinfo``: accept ``user:password@`` before the host (a webhook receiver's basic auth).
    Returns the parsed URL with the checked address to connect to (see pinned_pool).
    """
    scheme, host, port = _parse(url, allow_userinfo=allow_userinfo)
    if scheme != "https" and not (scheme == "http" and allow_loopback_http):
        raise UnsafeUrlError(f"URL scheme must be https (got {scheme or 'none'!r})")
    if not host:
        raise UnsafeUrlError("URL has no host")

    if allowed_hosts and not _host_allowed(host, allowed_hosts):
        raise UnsafeUrlError(f"host {host!r} is not one of the allowed hosts ({', '.join(allowed_hosts)})")

    addresses = _resolve(host, port)
    for address in addresses:
        reason = _why_not_public(address, allow_loopback=allow_loopback_http)
        if reason:
            raise UnsafeUrlError(f"host {host!r} resolves to {address}, {reason}")

    if scheme == "http" and not all(address.is_loopback for address in addresses):
        raise UnsafeUrlError(f"URL scheme must be https (plain http is only allowed to loopback, and {host!r} is not)")
    return CheckedUrl(url=url, scheme=scheme, host=host, port=port, address=addresses[0])


def _parse(url: str, *, allow_userinfo: bool = False) -> tuple[str, str, int]:
    """(scheme, host, port) as both urlsplit and urllib3 read them; refuses anything they could read differently."""
    if _FORBIDDEN.search(url):
        raise UnsafeUrlError(
            "URL contains a character a URL may not carry unescaped (space, control, backslash or non-ASCII)"
        )
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() not in _DEFAULT_PORTS:
        raise UnsafeUrlError(f"URL scheme must be https (got {(scheme if separator else '') or 'none'!r})")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if not authority:
        raise UnsafeUrlError("URL has no host")
    pattern = _AUTHORITY_WITH_USERINFO if allow_userinfo else _AUTHORITY
    if not pattern.fullmatch(authority):
        raise UnsafeUrlError("URL authority must be a plain host[:port] (no user info, no unusual characters)")
    try:
        split = urlsplit(url)
        split_port = split.port
        ours = parse_url(url)
    except (ValueError, LocationParseError) as exc:
        raise UnsafeUrlError(f"not a valid URL: {exc}") from exc

    scheme = split.scheme.lower()
    first = (scheme, _normal_host(split.hostname), split_port or _DEFAULT_PORTS[scheme])
    second = ((ours.scheme or "").lower(), _normal_host(ours.host), ours.port or _DEFAULT_PORTS[scheme])
    if first != second:
        raise UnsafeUrlError("URL is read differently by different URL parsers; refused")
    if not 0 < first[2] < 65536:
        raise UnsafeUrlError(f"URL port {first[2]} is out of range")
    return first


def _normal_host(host: str | None) -> str:
    return (host or "").strip("[]").rstrip(".").lower()


def _host_allowed(host: str, allowed_hosts: tuple) -> bool:
    for allowed in allowed_hosts:
        allowed = allowed.strip().lstrip(".").rstrip(".").lower()
        if allowed and (host == allowed or host.endswith("." + allowed)):
            return True
    return False


def _resolve(host: str, port: int) -> list[IPAddress]:
    literal = _parse_ip(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeUrlError(f"host {host!r} cannot be resolved: {exc}") from exc
    addresses = [_parse_ip(str(info[4][0])) for info in infos]
    usable = [address for address in addresses if address is not None]
    if not usable or len(usable) != len(addresses):
        raise UnsafeUrlError(f"host {host!r} resolves to no usable address")
    return usable


def _parse_ip(text: str) -> IPAddress | None:
    # getaddrinfo may append an IPv6 zone ("fe80::1%eth0"); the zone does not change the class.
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    # ::ffff:10.0.0.1 reaches 10.0.0.1: judge the IPv4 address it carries.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _why_not_public(address: IPAddress, *, allow_loopback: bool) -> str | None:
    if address.is_loopback:
        return None if allow_loopback else "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "not a public address"
    return None


# ---------------------------------------------------------------- connecting to the checked address


class PinnedPool:
    """A urllib3 connection pool to one checked address, whatever DNS answers later.

    The pool is opened to the address; SNI and certificate verification use the URL's host
    name (urllib3's ``server_hostname`` / ``assert_hostname``), and the Host header names it,
    so the server and the certificate check see an ordinary request for the URL. No proxy is
    used (a proxy would resolve the name itself). ``urlopen`` takes a full URL and refuses any
    other scheme, host or port than the checked one; user info in the URL (``user:pw@``)
    becomes a Basic Authorization header.
    """

    def __init__(self, checked: CheckedUrl, *, ca_certs: str | None = None):
        self.checked = checked
        address = str(checked.address)
        self.pool: urllib3.HTTPConnectionPool
        if checked.scheme == "https":
            self.pool = urllib3.HTTPSConnectionPool(
                address,
                checked.port,
                retries=False,
                server_hostname=checked.host,
                assert_hostname=checked.host,
                cert_reqs="CERT_REQUIRED",
                ca_certs=ca_certs or CA_CERTS,
            )
        else:
            self.pool = urllib3.HTTPConnectionPool(address, checked.port, retries=False)

    def urlopen(self, method: str, url: str, *, headers: dict | None = None, **kwargs: Any) -> Any:
        """urllib3's ``urlopen`` for ``url`` (which must be the checked URL's scheme, host and port)."""
        scheme, host, port = _parse(url, allow_userinfo=True)
        if (scheme, host, port) != (self.checked.scheme, self.checked.host, self.checked.port):
            raise UnsafeUrlError("the request does not go to the URL that was checked")
        parsed = parse_url(url)
        headers = {**(headers or {}), "Host": self.checked.host_header}
        if parsed.auth and not any(name.lower() == "authorization" for name in headers):
            user, _, password = parsed.auth.partition(":")
            headers["Authorization"] = make_headers(basic_auth=f"{unquote(user)}:{unquote(password)}")["authorization"]
        return self.pool.urlopen(method, parsed.request_uri, headers=headers, **kwargs)

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> "PinnedPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pinned_pool(checked: CheckedUrl, *, ca_certs: str | None = None) -> PinnedPool:
    """A connection pool whose every connection goes to ``checked.address`` (see PinnedPool)."""
    return PinnedPool(checked, ca_certs=ca_certs)
