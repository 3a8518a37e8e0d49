"""Where a webhook may go: the URL's shape, and the addresses its host resolves to.

Outbound requests are a way into the deployment's own network (SSRF), so unless
`COMFYWEB_WEBHOOKS_ALLOW_PRIVATE` is on, a host whose addresses include any
private, loopback, link-local, multicast, reserved or unspecified one is
refused — every address is checked, not the first — and the request is then
made to the address that was checked (`sender`), so a DNS answer that changes
between the check and the connection (rebinding) cannot send it elsewhere.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

type Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_shape = URLValidator(schemes=["http", "https"])


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written in the URL (the Host header and TLS name)
    port: int
    address: Address  # the checked address to connect to


class Refused(Exception):
    """The URL may not be called (its message says why)."""


def allow_private() -> bool:
    return bool(settings.COMFYWEB_WEBHOOKS_ALLOW_PRIVATE)


def validate_url(url: str) -> str:
    """The URL, if it may be subscribed: http(s), no credentials, no literal private
    address (names are resolved at each delivery). Raises ValidationError."""
    url = (url or "").strip()
    _shape(url)
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise ValidationError("A webhook URL may not carry a user name or password.")
    literal = _literal(parts.hostname or "")
    if literal is not None and not allow_private() and not is_public(literal):
        raise ValidationError(f"{literal} is not a public address.")
    return url


def resolve(url: str) -> Target:
    """The URL's host resolved and checked. Raises Refused."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(f"not an http(s) URL: {url}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    literal = _literal(parts.hostname)
    if literal is not None:
        found = [literal]
    else:
        try:
            infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
        except OSError as error:
            raise Refused(f"cannot resolve {parts.hostname}: {error}") from error
        found = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not found:
        raise Refused(f"{parts.hostname} has no address")
    if not allow_private():
        refused = [str(a) for a in found if not is_public(a)]
        if refused:
            raise Refused(f"{parts.hostname} resolves to a non-public address ({refused[0]})")
    return Target(parts.scheme, parts.hostname, port, found[0])


def is_public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is loopback
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
