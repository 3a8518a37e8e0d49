"""client_for: the one way ComfyWeb builds an HTTP client of a ComfyUI server.

Every caller names what the client is for, and the purpose picks its timeouts,
its GET retries and its transport, so two callers doing the same kind of work
cannot drift apart. The monitor's long-lived WebSocket (`EventStream`) is not an
HTTP client and is built by the watcher itself.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import httpx

from servers.comfyui import ComfyUIClient, Timeouts

if TYPE_CHECKING:
    from servers.models import FleetSettings

Purpose = Literal["submit", "cleanup", "cancel", "reconcile", "outputs", "check", "catalogue"]


class Reachable(Protocol):
    """A server, or a plain snapshot of one (a dispatch claim, a monitor spec)."""

    @property
    def base_url(self) -> str: ...

    @property
    def auth_headers(self) -> Mapping[str, str] | None: ...


@dataclass(frozen=True)
class Profile:
    timeouts: Timeouts
    get_retries: int = 1
    # How long an idle connection is kept for the next request (httpx's default: 5 s).
    keepalive: float = 5.0


# Short jobs answer a user or hold a task's state: they fail fast.
_SHORT_JOB = Timeouts(connect=3.0, read=10.0, write=10.0, pool=3.0)

PROFILES: dict[str, Profile] = {
    # POST /prompt with its uploads, one client per server for a dispatch pass.
    "submit": Profile(Timeouts(connect=3.0, read=15.0, write=15.0, pool=5.0)),
    # Best-effort removal of a prompt that must not run.
    "cleanup": Profile(Timeouts(connect=2.0, read=5.0, write=5.0, pool=2.0)),
    "cancel": Profile(_SHORT_JOB),
    "reconcile": Profile(_SHORT_JOB),
    # Downloads of a finished task's files: the client's defaults.
    "outputs": Profile(Timeouts()),
    # The monitor's health and queue checks and the on-demand probe: each check
    # passes the fleet's timeouts per call and is itself the retry. Its connection
    # outlives the health interval (5 s by default, httpx's keep-alive too): else
    # every check opened a new one (issue 15, goal 7). ComfyUI (aiohttp) keeps an
    # idle one 75 s, and one it closed is not reused.
    "check": Profile(Timeouts(), get_retries=0, keepalive=60.0),
}


def client_for(
    server: Reachable, purpose: Purpose, *, fleet: FleetSettings | None = None
) -> ComfyUIClient:
    """An HTTP client of `server` for `purpose`; close it (`async with`) when done.

    "catalogue" needs the `fleet`, whose health timeout bounds it: load it
    before entering async code.
    """
    profile = _catalogue(fleet) if purpose == "catalogue" else PROFILES[purpose]
    return ComfyUIClient(
        server.base_url,
        headers=server.auth_headers or None,
        timeouts=profile.timeouts,
        get_retries=profile.get_retries,
        # Every client shares one TLS context: httpx would otherwise load the CA
        # bundle for each (~20-50 ms of CPU), once per task collected or probed.
        transport=httpx.AsyncHTTPTransport(verify=_tls(), limits=_limits(profile.keepalive)),
    )


def _catalogue(fleet: FleetSettings | None) -> Profile:
    if fleet is None:
        raise ValueError("the catalogue client needs the fleet settings")
    # The catalogue is ~0.5 MB: the health timeout bounds the connect, reading
    # gets a little longer than a health check. An explicit user action: no retry.
    timeouts = Timeouts(connect=fleet.health_timeout, read=max(fleet.health_timeout, 15.0))
    return Profile(timeouts, get_retries=0)


def _limits(keepalive: float) -> httpx.Limits:
    """httpx's default limits (100 connections, 20 kept idle), with this keep-alive."""
    return httpx.Limits(
        max_connections=100, max_keepalive_connections=20, keepalive_expiry=keepalive
    )


@functools.cache
def _tls() -> ssl.SSLContext:
    return httpx.create_ssl_context()
