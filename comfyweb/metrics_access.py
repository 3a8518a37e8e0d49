"""Who may scrape `/metrics`: a bearer of `COMFYWEB_METRICS_TOKEN`, or a caller from
`COMFYWEB_METRICS_NETWORKS` (loopback by default). Never open by default: the
figures name teams and servers.

A wrong token is a 401 even from an allowed network, so a misconfigured scraper
is noticed rather than let in by where it happens to run. The address checked is
the connection's (`REMOTE_ADDR`): behind a proxy that is the proxy's, often
loopback, which would open the figures to everyone the proxy serves. So a request
that says it was forwarded (any of the headers below, which proxies add) is never
let in by its address: through a proxy, only the token opens `/metrics`.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from api.errors import body

type View = Callable[[HttpRequest], HttpResponse]

FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


def scrapers_only(view: View) -> View:
    @wraps(view)
    def guarded(request: HttpRequest) -> HttpResponse:
        refusal = _refusal(request)
        return refusal if refusal is not None else view(request)

    return guarded


def _refusal(request: HttpRequest) -> HttpResponse | None:
    token = settings.COMFYWEB_METRICS_TOKEN
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        if token and hmac.compare_digest(presented.strip().encode(), token.encode()):
            return None
        return _unauthorized("The metrics token is wrong.")
    forwarded = any(name in request.headers for name in FORWARDING_HEADERS)
    if not forwarded and _from_allowed_network(request.META.get("REMOTE_ADDR", "")):
        return None
    if token:
        return _unauthorized("Send `Authorization: Bearer <COMFYWEB_METRICS_TOKEN>`.")
    message = "Metrics are open to COMFYWEB_METRICS_NETWORKS only (no token is set)."
    return JsonResponse(body("permission_denied", message), status=403)


def _unauthorized(message: str) -> HttpResponse:
    response = JsonResponse(body("not_authenticated", message), status=401)
    response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


def _from_allowed_network(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in settings.COMFYWEB_METRICS_NETWORKS)
