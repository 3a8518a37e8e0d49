"""What web and the API may ask of a local instance: start, stop, restart.

Requests only write what staff want (`wanted`, `restart_requested_at`) and wake
the launcher (`manage.py launcher`), which owns the processes; no request ever
spawns or signals one. The launcher also looks at the rows every half second, so
a wake-up lost to a Redis blip delays an action by that much, never loses it.
"""

from __future__ import annotations

import logging

import redis
from django.db import transaction
from django.utils import timezone

from servers.local import console
from servers.local.models import HALTED_STATES, LocalInstance, LocalState, Wanted
from servers.models import Server

logger = logging.getLogger("servers.local")

WAKE_CHANNEL = "comfyweb:local:wake"


def wake() -> None:
    """Tell the launcher to look at the instances now. Never raises."""
    try:
        console.redis_client().publish(WAKE_CHANNEL, b"1")
    except redis.RedisError as error:
        logger.warning("launcher wake-up not sent (it looks again within a second): %s", error)


def _run_again(instance: LocalInstance) -> None:
    """A crashed or refused instance is given a fresh start: the launcher leaves
    those alone until asked again (no restart loop of its own)."""
    LocalInstance.objects.filter(pk=instance.pk, state__in=HALTED_STATES).update(
        state=LocalState.STOPPED, consecutive_crashes=0, next_start_at=None, pid=None
    )


def request_start(instance: LocalInstance) -> None:
    with transaction.atomic():
        LocalInstance.objects.filter(pk=instance.pk).update(wanted=Wanted.RUNNING)
        _run_again(instance)
    transaction.on_commit(wake)
    instance.refresh_from_db()


def request_stop(instance: LocalInstance) -> None:
    LocalInstance.objects.filter(pk=instance.pk).update(
        wanted=Wanted.STOPPED, restart_requested_at=None
    )
    transaction.on_commit(wake)
    instance.refresh_from_db()


def request_restart(instance: LocalInstance) -> None:
    """Stop it (if it runs) and start it again; a stopped or crashed one just starts."""
    with transaction.atomic():
        LocalInstance.objects.filter(pk=instance.pk).update(
            wanted=Wanted.RUNNING, restart_requested_at=timezone.now()
        )
        _run_again(instance)
    transaction.on_commit(wake)
    instance.refresh_from_db()


def delete_instance(instance: LocalInstance) -> None:
    """Remove the instance: its server leaves the fleet at once (its row stays, for
    the tasks that ran there); the launcher stops a process it still has."""
    with transaction.atomic():
        if instance.server_id:
            Server.objects.filter(pk=instance.server_id).update(enabled=False, draining=False)
        instance.delete()
    transaction.on_commit(wake)
