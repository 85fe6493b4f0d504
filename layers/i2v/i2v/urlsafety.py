"""Is a URL safe to call from inside the stack?

Used for URLs that come from outside our control: the webhook target an operator configures
and the result links a provider hands back. A Lambda inside a VPC or on AWS can reach things
the Internet cannot (the instance metadata service at 169.254.169.254, private services), so
a URL must be HTTPS and every address its host resolves to must be public.

Limitation: the check resolves the name once; the HTTP client resolves it again when it
connects. A DNS record that changes in between (rebinding) is not caught here.
"""

import ipaddress
import socket
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"https": 443, "http": 80}


class UnsafeUrlError(ValueError):
    """The URL is not one we are willing to call; the message says why."""


def check_url(url: str, *, allowed_hosts: tuple = (), allow_loopback_http: bool = False) -> None:
    """Raise UnsafeUrlError unless ``url`` is HTTPS to a public address (and an allowed host).

    ``allowed_hosts``: when given, the host must equal one of them or be a subdomain of one
    (``cdn.example.com`` matches ``example.com``; ``badexample.com`` does not).
    ``allow_loopback_http``: local stack only; loopback addresses become acceptable, and
    plain http is accepted when every address of the host is loopback.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrlError(f"not a valid URL: {exc}") from exc

    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and allow_loopback_http):
        raise UnsafeUrlError(f"URL scheme must be https (got {scheme or 'none'!r})")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UnsafeUrlError("URL has no host")

    if allowed_hosts and not _host_allowed(host, allowed_hosts):
        raise UnsafeUrlError(f"host {host!r} is not one of the allowed hosts ({', '.join(allowed_hosts)})")

    addresses = _resolve(host, port or _DEFAULT_PORTS[scheme])
    for address in addresses:
        reason = _why_not_public(address, allow_loopback=allow_loopback_http)
        if reason:
            raise UnsafeUrlError(f"host {host!r} resolves to {address}, {reason}")

    if scheme == "http" and not all(address.is_loopback for address in addresses):
        raise UnsafeUrlError(f"URL scheme must be https (plain http is only allowed to loopback, and {host!r} is not)")


def _host_allowed(host: str, allowed_hosts: tuple) -> bool:
    for allowed in allowed_hosts:
        allowed = allowed.strip().lstrip(".").rstrip(".").lower()
        if allowed and (host == allowed or host.endswith("." + allowed)):
            return True
    return False


def _resolve(host: str, port: int) -> list:
    literal = _parse_ip(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeUrlError(f"host {host!r} cannot be resolved: {exc}") from exc
    addresses = [_parse_ip(info[4][0]) for info in infos]
    if not addresses or None in addresses:
        raise UnsafeUrlError(f"host {host!r} resolves to no usable address")
    return addresses


def _parse_ip(text: str):
    # getaddrinfo may append an IPv6 zone ("fe80::1%eth0"); the zone does not change the class.
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    # ::ffff:10.0.0.1 reaches 10.0.0.1: judge the IPv4 address it carries.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _why_not_public(address, *, allow_loopback: bool) -> str | None:
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
