"""The one publisher of task updates to browsers (STYLE habit 6), on `comfyweb.live`.

Topics:
- "task", key = task id: the detail page's fragments (status, progress bar,
  nodes table, timeline, outputs, preview). Allowed to who may see the task.
- "team-tasks", key = team id: the live cell of each task-list row. Allowed to
  that team's members and staff, so a user only hears of their teams' tasks.

Progress updates are rendered from memory (`ProgressView`, no query) because
they come up to 10 times a second; everything else is rendered from the
database, so a page load and the socket show the same thing.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TypedDict

from django.core.cache import cache
from django.db import transaction
from django.template.loader import render_to_string

from comfyweb import live, topics
from tasks import previews
from tasks.models import Status, Task, Team
from tasks.progress import TaskProgress, node_class, node_title

logger = logging.getLogger(__name__)

TASK_TOPIC = "task"
TEAM_TOPIC = "team-tasks"
FRAGMENTS = "tasks/tasks/fragments.html"
PARTS = ("status", "progress", "nodes", "timeline", "outputs", "preview")


class ProgressView(TypedDict):
    """What the progress bar and the list row's state cell show."""

    task_id: int
    team_id: int
    status: str
    status_label: str
    node: str
    node_title: str
    node_type: str
    value: int
    max: int
    percent: int
    nodes_done: int | None
    nodes_total: int | None
    started_at: datetime | None
    server: str


class PreviewView(TypedDict):
    task_id: int
    version: int | None


def target(task_id: int, part: str) -> str:
    """Element id of one detail-page fragment."""
    return f"task-{task_id}-{part}"


def row_target(task_id: int) -> str:
    return f"task-row-{task_id}-state"


def new_tasks_target(team_id: int) -> str:
    return f"tasks-new-{team_id}"


# -- views of a task ----------------------------------------------------------------


def progress_view(
    progress: TaskProgress,
    *,
    status: str,
    started_at: datetime | None,
    server: str,
) -> ProgressView:
    return {
        "task_id": progress.task_id,
        "team_id": progress.team_id,
        "status": status,
        "status_label": Status(status).label,
        "node": progress.node,
        "node_title": progress.node_title,
        "node_type": progress.node_type,
        "value": progress.value,
        "max": progress.max,
        "percent": round(progress.fraction * 100),
        "nodes_done": len(progress.done),
        "nodes_total": progress.total,
        "started_at": started_at,
        "server": server,
    }


def progress_view_from_task(task: Task) -> ProgressView:
    node = task.progress_node
    fraction = 1.0 if task.status == Status.COMPLETED else task.progress_fraction
    return {
        "task_id": task.pk,
        "team_id": task.team_id,
        "status": task.status,
        "status_label": task.get_status_display(),
        "node": node,
        "node_title": node_title(task.graph, node) if node else "",
        "node_type": task.progress_node_type or (node_class(task.graph, node) if node else ""),
        "value": task.progress_value,
        "max": task.progress_max,
        "percent": round(fraction * 100),
        "nodes_done": None,
        "nodes_total": None,
        "started_at": task.started_at,
        "server": task.server.name if task.server_id and task.server else "",
    }


def nodes_table(task: Task) -> list[dict]:
    """The graph's nodes with the current and the failing one marked."""
    rows = []
    for node_id, node in sorted(task.graph.items(), key=lambda item: _node_order(item[0])):
        if not isinstance(node, dict):
            continue
        state = ""
        if node_id == task.error_node and task.status == Status.FAILED:
            state = "error"
        elif node_id == task.progress_node and task.status == Status.RUNNING:
            state = "running"
        rows.append(
            {
                "id": node_id,
                "title": node_title(task.graph, node_id),
                "class_type": node_class(task.graph, node_id),
                "state": state,
            }
        )
    return rows


def _node_order(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() else (1 << 30, node_id)


def task_context(task: Task) -> dict:
    return {
        "task": task,
        "progress": progress_view_from_task(task),
        "nodes": nodes_table(task),
        "events": list(task.events.all()),
        "outputs": list(task.outputs.all()),
        "preview": preview_view(task.pk),
    }


def preview_view(task_id: int) -> PreviewView:
    return {"task_id": task_id, "version": previews.latest_version(task_id)}


def load_task(task_id: int) -> Task | None:
    return Task.objects.select_related("server", "team", "template").filter(pk=task_id).first()


# -- rendering ------------------------------------------------------------------------


def render_part(part: str, context: dict) -> str:
    return render_to_string(f"{FRAGMENTS}#{part}", context)


def render_row_state(progress: ProgressView) -> str:
    return render_part("row-state", {"progress": progress})


def task_fragments(task_id: int) -> list[tuple[str, str]]:
    """Sync (ORM): every detail fragment of the task, as (target, html)."""
    task = load_task(task_id)
    if task is None:
        return []
    context = task_context(task)
    return [(target(task_id, part), render_part(part, context)) for part in PARTS]


# -- publishing -----------------------------------------------------------------------


async def apublish_progress(progress: ProgressView) -> None:
    """Progress bar on the detail page and the list row's state cell (no query)."""
    task_id, team_id = progress["task_id"], progress["team_id"]
    html = render_part("progress", {"progress": progress})
    await live.apublish_fragment(TASK_TOPIC, target(task_id, "progress"), html, key=str(task_id))
    await live.apublish_fragment(
        TEAM_TOPIC, row_target(task_id), render_row_state(progress), key=str(team_id)
    )


async def apublish_preview(task_id: int) -> None:
    html = render_part("preview", {"preview": preview_view(task_id)})
    await live.apublish_fragment(TASK_TOPIC, target(task_id, "preview"), html, key=str(task_id))


def publish_task(task_id: int) -> None:
    """A state change: every detail fragment and the row, rendered from the database."""
    task = load_task(task_id)
    if task is None:
        return
    context = task_context(task)
    for part in PARTS:
        html = render_part(part, context)
        live.publish_fragment(TASK_TOPIC, target(task_id, part), html, key=str(task_id))
    row = render_row_state(context["progress"])
    live.publish_fragment(TEAM_TOPIC, row_target(task_id), row, key=str(task.team_id))


def on_task_saved(sender, instance: Task, created: bool, **kwargs) -> None:
    """`post_save` receiver: tell open task lists that their team has new tasks."""
    if created:
        team_id = instance.team_id
        transaction.on_commit(lambda: announce_new_tasks(team_id))


def announce_new_tasks(team_id: int) -> None:
    # A batch of a thousand is one notice: at most one a second per team.
    try:
        if not cache.add(f"tasks:new-announced:{team_id}", 1, timeout=1):
            return
        html = render_part("new-tasks", {"team_id": team_id})
        live.publish_fragment(TEAM_TOPIC, new_tasks_target(team_id), html, key=str(team_id))
    except Exception:
        logger.exception("announcing new tasks of team %s failed", team_id)


def on_task_transitioned(sender, task_id: int, **kwargs) -> None:
    """`tasks.transitions.task_transitioned` receiver: whoever moved the task, show it."""
    try:
        publish_task(task_id)
    except Exception:
        # Browsers catch up on their next snapshot; the state change itself stands.
        logger.exception("publishing task %s failed", task_id)


# -- topics (registered in TasksConfig.ready) -------------------------------------------


def _task_allowed(user, key: str | None) -> bool:
    return key is not None and key.isdigit() and Task.objects.for_user(user).filter(pk=key).exists()


def _team_allowed(user, key: str | None) -> bool:
    return key is not None and key.isdigit() and Team.objects.for_user(user).filter(pk=key).exists()


task_topic = topics.Topic(
    name=TASK_TOPIC,
    allowed=_task_allowed,
    snapshot=lambda user, key: task_fragments(int(key)) if key else [],
)
# Rows are rendered with the page (its filters decide which); nothing to snapshot.
team_tasks_topic = topics.Topic(
    name=TEAM_TOPIC, allowed=_team_allowed, snapshot=lambda user, key: []
)
