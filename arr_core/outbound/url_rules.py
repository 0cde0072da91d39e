"""The URLs the app will call: rules that keep a caller from pointing it at itself, at the cloud's metadata service,
or at anything that is not plain HTTPS in Azure. Checked when a URL is given and again when it is called."""

from __future__ import annotations

import ipaddress

from ..domain.notifications import MAX_URL_CHARS
from ..errors import InvalidInput

# Addresses no callback may reach, in any environment: the link-local block (169.254.169.254 is the cloud's
# instance metadata service), Azure's wireserver, and addresses that are not one host.
_NEVER = [ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fe80::/10", "168.63.129.16/32", "0.0.0.0/8",
                                            "224.0.0.0/4", "ff00::/8", "::/128")]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052's well-known prefix: the last 32 bits are IPv4


def callback_refusal(url: str, *, development: bool) -> str | None:
    """Why the app will not call ``url``, or None. In Azure only https; in development (the local host) http too,
    and to loopback or private addresses; never link-local (the metadata service), never credentials in the URL."""
    if len(url) > MAX_URL_CHARS:
        return f"the URL is longer than {MAX_URL_CHARS} characters"
    import httpx  # noqa: PLC0415 - httpx (and what it imports) stays off the function app's import path

    try:  # read as the delivery reads it
        parts = httpx.URL(url)
        host = parts.raw_host.decode("ascii")
    except (httpx.InvalidURL, ValueError):
        return "must be a URL that can be called (its host or port cannot be read)"
    if parts.scheme not in ("https", "http") or not host:
        return "must be an absolute http(s) URL"
    if parts.scheme == "http" and not development:
        return "must be https"
    if parts.userinfo:
        return "must not carry credentials"
    if parts.port is not None and not 0 < parts.port < 65536:
        return "must have a port from 1 to 65535"
    if ":" not in host and not is_dns_name(host):
        return "must name a host the DNS can look up (labels of 1 to 63 characters, 253 in all)"
    return address_refusal(host, development=development)


def is_dns_name(host: str) -> bool:
    """At most 253 characters in labels of 1 to 63 (RFC 1035); a final dot allowed."""
    name = host.removesuffix(".")
    return 0 < len(name) <= 253 and all(0 < len(label) <= 63 for label in name.split("."))


def require_callback(url: str, *, field: str, development: bool) -> str:
    """``url`` when the app may call it; else :class:`InvalidInput` naming ``field`` and the reason."""
    refusal = callback_refusal(url, development=development)
    if refusal is not None:
        raise InvalidInput(f"{field} {refusal}", field=field)
    return url


def address_refusal(host: str, *, development: bool) -> str | None:
    """Why the app will not connect to ``host`` (a name or an address), or None. Names are checked again, as the
    addresses they resolve to, when a delivery connects."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if host.lower() in ("localhost", "localhost.") or host.lower().endswith(".localhost"):
            return None if development else "must not be this machine"
        return None
    reached = (address, *embedded_ipv4(address))
    if any(each in network for each in reached for network in _NEVER):
        return "must not be a link-local, metadata or non-unicast address"
    if not development and not all(each.is_global and not getattr(each, "is_site_local", False) for each in reached):
        return "must be a public address"
    return None


def embedded_ipv4(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to: ``::ffff:a.b.c.d`` (mapped), ``::a.b.c.d`` (compatible),
    6to4 ``2002::/16``, Teredo ``2001::/32`` and NAT64 ``64:ff9b::/96``: each is checked as the address itself."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _NAT64 or (int(address) >> 32 == 0 and int(address) > 1):
        found.append(low32)
    return [each for each in found if each is not None]
