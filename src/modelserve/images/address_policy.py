"""Which hosts and addresses the server may fetch images from (SSRF protection, pure logic).

A host must be on the allowlist, and every address its name resolves to must be a public
(globally routable) one: no loopback, private, link-local (cloud metadata lives at
169.254.169.254), shared, multicast or reserved address, also not hidden in an IPv4-mapped
IPv6 address. Hosts the operator lists as trusted may resolve to private addresses (an
internal image store; the tests' loopback server).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from modelserve.images.errors import ImageError

# Cloud metadata endpoints that are not all covered by "not global" on every Python version.
_METADATA = {ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")}


def normalize_host(host: str) -> str:
    return host.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")


def host_matches(host: str, patterns: Iterable[str]) -> bool:
    """`host` against exact names, `*.example.com` (subdomains only) and `*` (any)."""
    host = normalize_host(host)
    for pattern in (normalize_host(p) for p in patterns):
        if pattern == "*" or pattern == host:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
    return False


def is_public_address(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast and ip not in _METADATA


def check_host(host: str, allowed: Iterable[str]) -> None:
    if not host_matches(host, allowed):
        raise ImageError(f"image host {normalize_host(host)!r} is not on this server's "
                         "allowlist (images.allowed_hosts)", code="image_url_not_allowed")


def check_addresses(host: str, addresses: list[str], trusted: Iterable[str]) -> None:
    """Every address of `host` must be public, unless the operator trusts the host."""
    if not addresses:
        raise ImageError(f"image host {normalize_host(host)!r} does not resolve",
                         code="image_fetch_failed")
    if host_matches(host, trusted):
        return
    bad = next((a for a in addresses if not is_public_address(a)), None)
    if bad is not None:
        raise ImageError(f"image host {normalize_host(host)!r} resolves to a non-public "
                         f"address ({bad}); refused", code="image_url_not_allowed")
