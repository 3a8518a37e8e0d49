"""A local instance's page, live: its status and console blocks, rendered on the
server and pushed by the launcher on the staff-only "local-instance" topic (keyed
by instance id).

Every step the launcher takes writes a line of its own to the instance's console,
so a push of the console (when lines arrive) also brings the status up to date.
Event streams get the new lines as data (`console.lines`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

from django.template.loader import render_to_string

from comfyweb import live, topics
from servers.local import console
from servers.local.models import LocalInstance

TOPIC = "local-instance"
TEMPLATE = "servers/local_instance.html"


class ConsoleLines(TypedDict):
    """`console.lines` data: lines the instance printed since the last push."""

    instance: int
    lines: list[str]


def status_target(instance_id: int) -> str:
    return f"local-{instance_id}-status"


def console_target(instance_id: int) -> str:
    return f"local-{instance_id}-console"


def page_context(instance: LocalInstance) -> dict:
    return {
        "instance": instance,
        "instance_id": instance.pk,
        "status_target": status_target(instance.pk),
        "console_target": console_target(instance.pk),
        "lines": console.console_tail(instance),
        "lines_kept": console.LINES_KEPT,
    }


def render_status(instance_id: int) -> str:
    instance = LocalInstance.objects.select_related("server").filter(pk=instance_id).first()
    if instance is None:
        return f'<section id="{status_target(instance_id)}" class="card">Removed.</section>'
    context = {"instance": instance, "status_target": status_target(instance_id)}
    return render_to_string(f"{TEMPLATE}#local-status", context)


def render_console(instance_id: int, lines: Sequence[str] | None = None) -> str:
    context = {
        "instance_id": instance_id,
        "console_target": console_target(instance_id),
        "lines": console.console_tail(instance_id) if lines is None else lines,
    }
    return render_to_string(f"{TEMPLATE}#local-console", context)


def publish(instance_id: int, new_lines: Sequence[str]) -> None:
    """New console lines: to the page (its console and status) and to event streams."""
    key = str(instance_id)
    data: ConsoleLines = {"instance": instance_id, "lines": list(new_lines)}
    live.publish_data(TOPIC, "console.lines", data, key=key)
    live.publish_fragment(TOPIC, console_target(instance_id), render_console(instance_id), key=key)
    live.publish_fragment(TOPIC, status_target(instance_id), render_status(instance_id), key=key)


def _staff(user, key: str | None) -> bool:
    return (
        user.is_authenticated
        and user.is_active
        and user.is_staff
        and key is not None
        and key.isdigit()
    )


def _snapshot(user, key: str | None) -> topics.Snapshot:
    instance_id = int(key)
    return [
        (status_target(instance_id), render_status(instance_id)),
        (console_target(instance_id), render_console(instance_id)),
    ]


instance_topic = topics.Topic(name=TOPIC, allowed=_staff, snapshot=_snapshot)
