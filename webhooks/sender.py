"""One signed POST to a webhook URL: connected to the checked address, no redirects
followed, a timeout on everything. What came back, never an exception."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings

from webhooks import addresses, signing

EXCERPT = 500  # characters of the response kept in the log
USER_AGENT = "ComfyWeb-Webhooks/1"


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    latency_ms: float | None
    excerpt: str
    error: str

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def send(url: str, secret: str, message_id: str, body: bytes) -> Outcome:
    try:
        target = addresses.resolve(url)
    except addresses.Refused as refused:
        return Outcome(None, None, "", f"refused: {refused}")
    timestamp = int(time.time())
    headers = signing.headers(secret, message_id, timestamp, body)
    headers["user-agent"] = USER_AGENT
    headers["host"] = _host_header(target)
    started = time.perf_counter()
    try:
        response = _client().post(
            _pinned(url, target),
            content=body,
            headers=headers,
            timeout=settings.COMFYWEB_WEBHOOKS_TIMEOUT_SECONDS,
            extensions={"sni_hostname": target.host} if target.scheme == "https" else {},
        )
        text = response.text[:EXCERPT]
    except httpx.HTTPError as error:
        return Outcome(None, _ms(started), "", f"{type(error).__name__}: {error}"[:EXCERPT])
    error = "" if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
    if response.is_redirect:
        error = f"HTTP {response.status_code}: redirects are not followed"
    return Outcome(response.status_code, _ms(started), text, error)


_clients: dict[int, httpx.Client] = {}


def _client() -> httpx.Client:
    """This process's client (building one loads the CA bundle: tens of milliseconds a
    delivery). Per pid: a forked worker must not share its parent's connections."""
    pid = os.getpid()
    client = _clients.get(pid)
    if client is None:
        client = _clients[pid] = httpx.Client(
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: it would resolve on its own
            # No connection is kept: the pool knows connections by the pinned address,
            # and one opened (and its certificate checked) for one host name must not
            # carry a request for another name on the same address.
            limits=httpx.Limits(max_keepalive_connections=0),
        )
    return client


def _pinned(url: str, target: addresses.Target) -> str:
    """The URL with its host replaced by the checked address (and port made explicit)."""
    parts = urlsplit(url)
    host = f"[{target.address}]" if target.address.version == 6 else str(target.address)
    return urlunsplit((parts.scheme, f"{host}:{target.port}", parts.path or "/", parts.query, ""))


def _host_header(target: addresses.Target) -> str:
    default = 443 if target.scheme == "https" else 80
    host = f"[{target.host}]" if ":" in target.host else target.host
    return host if target.port == default else f"{host}:{target.port}"


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
