"""Local instances, live. An instance's page: its status and console blocks,
rendered on the server and pushed by the launcher on the staff-only
"local-instance" topic (keyed by instance id). The Servers page's list of
instances: its rows, pushed on the staff-only "local-instances" topic when an
instance's state changes.

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
LIST_TOPIC = "local-instances"
LIST_TEMPLATE = "servers/local_instances.html"
LIST_TARGET = "local-instances-rows"

# What the list shows of each instance, as last pushed by this process (the
# launcher): the rows go out again only when one of them changed.
_listed: dict[int, tuple] = {}


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


def list_context() -> dict:
    return {"local_instances": LocalInstance.objects.select_related("server")}


def render_rows() -> str:
    return render_to_string(f"{LIST_TEMPLATE}#local-rows", list_context())


def _load(instance_id: int) -> LocalInstance | None:
    return LocalInstance.objects.select_related("server").filter(pk=instance_id).first()


def render_status(instance_id: int, instance: LocalInstance | None = None) -> str:
    instance = instance or _load(instance_id)
    if instance is None:
        return f'<section id="{status_target(instance_id)}" class="card">Removed.</section>'
    context = {"instance": instance, "status_target": status_target(instance_id)}
    return render_to_string(f"{TEMPLATE}#local-status", context)


def _listed_as(instance: LocalInstance | None) -> tuple:
    if instance is None:
        return ()
    return (instance.state, instance.pid, instance.server_id, instance.restarts, instance.error)


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
    instance = _load(instance_id)
    live.publish_fragment(
        TOPIC, status_target(instance_id), render_status(instance_id, instance), key=key
    )
    listed_as = _listed_as(instance)
    if _listed.get(instance_id) != listed_as:
        _listed[instance_id] = listed_as
        live.publish_fragment(LIST_TOPIC, LIST_TARGET, render_rows())


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


def _list_snapshot(user, key: str | None) -> topics.Snapshot:
    return [(LIST_TARGET, render_rows())]


def _staff_list(user, key: str | None) -> bool:
    return user.is_authenticated and user.is_active and user.is_staff and key is None


instance_topic = topics.Topic(name=TOPIC, allowed=_staff, snapshot=_snapshot)
list_topic = topics.Topic(name=LIST_TOPIC, allowed=_staff_list, snapshot=_list_snapshot)
