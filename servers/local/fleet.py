"""A local instance's place in the fleet: an ordinary `Server` of kind "local",
enabled while its ComfyUI answers, disabled (its row kept, for the tasks that ran
there) when it stops or dies."""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from servers.local.models import LocalInstance
from servers.local.processes import LISTEN
from servers.models import Health, Server, ServerKind, ServerState
from servers.monitor.work import new_hooks

logger = logging.getLogger("servers.local")


def enable_server(instance: LocalInstance, port: int, *, fresh: bool) -> Server:
    """ComfyUI answers: its server is in the fleet (made the first time). `fresh`: a
    new ComfyUI process, so what the monitor saw of the last one does not hold."""
    base_url = f"http://{LISTEN}:{port}"
    server = instance.server
    if server is None:
        server = _new_server(instance.server_name, base_url)
    else:
        Server.objects.filter(pk=server.pk).update(
            base_url=base_url, kind=ServerKind.LOCAL, enabled=True, draining=False
        )
    if fresh:
        ServerState.objects.filter(server=server).update(
            health=Health.UNKNOWN,
            unhealthy_since=None,
            consecutive_failures=0,
            next_check_at=None,
        )
    return server


def _new_server(name: str, base_url: str) -> Server:
    for suffix in ("", *(f"-{n}" for n in range(2, 10))):
        try:
            with transaction.atomic():
                return Server.objects.create(
                    name=name + suffix, base_url=base_url, kind=ServerKind.LOCAL
                )
        except IntegrityError:  # a server of that name exists (added by hand): next suffix
            continue
    raise IntegrityError(f"no free server name for {name}")


def lose_server(server_id: int | None) -> None:
    """Its ComfyUI is gone: out of the fleet, and the prompts it had are retried
    (reconciliation retries those of an unhealthy server that does not answer)."""
    if server_id is None:
        return
    disabled = Server.objects.filter(pk=server_id, enabled=True).update(
        enabled=False, draining=False
    )
    if not disabled:
        return
    ServerState.objects.filter(server_id=server_id).exclude(health=Health.UNHEALTHY).update(
        health=Health.UNHEALTHY, unhealthy_since=timezone.now()
    )
    try:
        new_hooks().server_needs_reconcile(server_id)
    except Exception:  # the tasks app's hook queues a job: Redis may be away
        logger.warning("reconcile of server %s not queued", server_id, exc_info=True)
