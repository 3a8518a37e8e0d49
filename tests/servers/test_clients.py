"""client_for: each purpose gets the timeouts and retries its callers had before."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from servers.clients import client_for
from servers.comfyui import Timeouts


@dataclass
class _Server:
    base_url: str = "http://comfy.test:8188/"
    auth_headers: dict[str, str] = field(default_factory=lambda: {"X-Key": "k"})


@dataclass
class _Fleet:
    health_timeout: float = 4.0


@pytest.mark.parametrize(
    ("purpose", "timeouts", "retries"),
    [
        ("submit", Timeouts(connect=3.0, read=15.0, write=15.0, pool=5.0), 1),
        ("cleanup", Timeouts(connect=2.0, read=5.0, write=5.0, pool=2.0), 1),
        ("cancel", Timeouts(connect=3.0, read=10.0, write=10.0, pool=3.0), 1),
        ("reconcile", Timeouts(connect=3.0, read=10.0, write=10.0, pool=3.0), 1),
        ("outputs", Timeouts(), 1),
        ("check", Timeouts(), 0),
    ],
)
async def test_each_purpose_has_its_timeouts_and_retries(purpose, timeouts, retries):
    async with client_for(_Server(), purpose) as client:
        assert client.base_url == "http://comfy.test:8188"
        assert client.timeouts == timeouts
        assert client._get_retries == retries
        assert client._http.headers["X-Key"] == "k"


async def test_the_catalogue_is_bounded_by_the_fleet_health_timeout():
    async with client_for(_Server(), "catalogue", fleet=_Fleet()) as client:
        assert client.timeouts == Timeouts(connect=4.0, read=15.0)
        assert client._get_retries == 0
    async with client_for(_Server(), "catalogue", fleet=_Fleet(health_timeout=20.0)) as client:
        assert client.timeouts == Timeouts(connect=20.0, read=20.0)


def test_the_catalogue_needs_the_fleet():
    with pytest.raises(ValueError, match="fleet"):
        client_for(_Server(), "catalogue")


async def test_clients_of_every_purpose_share_one_tls_context():
    """Loading the CA bundle costs tens of ms of CPU: never once per client."""
    contexts = set()
    for purpose in ("submit", "cleanup", "cancel", "reconcile", "outputs", "check"):
        async with client_for(_Server(base_url="https://comfy.test/"), purpose) as client:
            contexts.add(id(client._http._transport._pool._ssl_context))
    async with client_for(_Server(), "catalogue", fleet=_Fleet()) as client:
        contexts.add(id(client._http._transport._pool._ssl_context))
    assert len(contexts) == 1
