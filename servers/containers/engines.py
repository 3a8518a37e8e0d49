"""The Docker engines of the configured hosts: the one module that speaks the Docker API.

Calls here block (the `docker` SDK is synchronous): call them from the worker, or
through `sync_to_async` from async code, never on an event loop.
"""

from __future__ import annotations

import docker
from django.utils import timezone

from servers.containers.models import DockerHost, HostStatus

# Seconds one Docker API call may take. `docker info` answers in milliseconds on a
# healthy engine; a host slower than this is as good as unreachable for placement.
CHECK_TIMEOUT = 10.0
ERROR_LIMIT = 1000  # characters of an error kept on the host


def client_for(host: DockerHost, timeout: float = CHECK_TIMEOUT) -> docker.DockerClient:
    """A client of `host`'s engine. Asks the engine its API version at once, so it
    raises (a DockerException) when nothing answers there."""
    return docker.DockerClient(base_url=host.docker_url, timeout=timeout)


def check_host(host: DockerHost, timeout: float = CHECK_TIMEOUT) -> DockerHost:
    """Ask `host`'s engine who it is (`docker info`) and record what it said.

    Reachable: status ok, its engine id and version. Not: status unreachable, the
    reason in `error`, the last engine id seen kept. Never raises for the engine's
    sake: a check is how we find out that a host is gone.
    """
    try:
        client = client_for(host, timeout)
        try:
            info = client.info()
        finally:
            client.close()
        seen = {
            "status": HostStatus.OK,
            "engine_id": str(info.get("ID") or ""),
            "engine_version": str(info.get("ServerVersion") or ""),
            "error": "",
        }
    # The SDK raises its own errors, requests' and urllib3's, and OSError from the
    # socket, depending on where the connection broke: for a check they mean the same.
    except Exception as exc:
        seen = {"status": HostStatus.UNREACHABLE, "error": describe(exc)}
    seen["checked_at"] = timezone.now()
    DockerHost.objects.filter(pk=host.pk).update(**seen)
    for name, value in seen.items():
        setattr(host, name, value)
    return host


def describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= ERROR_LIMIT else text[: ERROR_LIMIT - 1] + "…"
