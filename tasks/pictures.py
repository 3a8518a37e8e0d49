"""Pictures where people look (issue 16): a task's output thumbnails, or its live
preview while it runs, inline in the task list's rows; the dashboard's recent results.

Topic "team-pictures", key = team id (its members and staff), published here only:
- `task-<id>-preview-thumb`: a running task's newest preview, small, for the list
  rows and the dashboard, with every preview the monitor passes on (it coalesces);
- `recent-results`: a hint to refetch the dashboard's panel (its content is per
  user: their teams) when a task starts running or stops;
- `outputs-new-<team id>`: the newest output of the team, once a task's outputs are
  stored; the gallery then fetches what is new and matches its filters.
- `task-row-<id>-pictures`: a task list row's cell, on every change of state
  (a preview slot while it runs, its outputs once stored).
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import TypedDict

from channels.db import database_sync_to_async
from django.template.loader import render_to_string
from django.urls import reverse

from comfyweb import live, topics
from tasks import listing, previews
from tasks.models import Output, Status, Task
from teams.models import Team

logger = logging.getLogger(__name__)

TOPIC = "team-pictures"
TEMPLATE = "tasks/pictures.html"
RECENT_TARGET = "recent-results"
ROW_THUMBS = 3  # a row shows this many outputs and "+N" for the rest
RECENT_OUTPUTS = 12
RECENT_RUNNING = 4
# A preview slot is kept while the task may still send one.
PREVIEWING = (Status.DISPATCHED, Status.RUNNING)


class PreviewThumb(TypedDict):
    task_id: int
    version: int | None  # None: no preview (yet)


class RowPictures(TypedDict):
    task_id: int
    outputs: list[int]  # ids of the outputs shown (with a thumbnail)
    more: int  # outputs beyond those shown
    preview: PreviewThumb | None  # a slot while the task runs and has no outputs


def row_target(task_id: int) -> str:
    return f"task-row-{task_id}-pictures"


def news_target(team_id: int) -> str:
    return f"outputs-new-{team_id}"


# -- what a row shows ----------------------------------------------------------------


def _row(task_id: int, status: str, outputs: list[int], version: int | None) -> RowPictures:
    preview = None
    if not outputs and status in PREVIEWING:
        preview = {"task_id": task_id, "version": version}
    return {
        "task_id": task_id,
        "outputs": outputs[:ROW_THUMBS],
        "more": max(0, len(outputs) - ROW_THUMBS),
        "preview": preview,
    }


def row_pictures(tasks: Iterable[Task]) -> dict[int, RowPictures]:
    """Task id → its row's pictures: one query for the outputs, one cache round trip
    for the previews of those still running."""
    tasks = list(tasks)
    by_task: dict[int, list[int]] = defaultdict(list)
    thumbnailed = (
        Output.objects.filter(task__in=[task.pk for task in tasks])
        .exclude(thumbnail="")
        .order_by("pk")
        .values_list("task_id", "pk")
    )
    for task_id, output_id in thumbnailed:
        by_task[task_id].append(output_id)
    versions = previews.versions(task.pk for task in tasks if task.status in PREVIEWING)
    return {
        task.pk: _row(task.pk, task.status, by_task[task.pk], versions.get(task.pk))
        for task in tasks
    }


# -- the dashboard's recent results ---------------------------------------------------


def recent_results(user) -> dict:
    """The newest outputs and the running tasks' live previews that `user` may see."""
    teams = list(Team.objects.for_user(user).only("pk"))
    outputs = (
        Output.objects.filter(team__in=teams)
        .exclude(thumbnail="")
        .select_related("task__template", "task__workflow_version__workflow")
        .order_by("-created_at", "-pk")[:RECENT_OUTPUTS]
    )
    running = list(
        listing.visible_tasks(user, teams)
        .filter(status=Status.RUNNING)
        .select_related("template", "workflow_version__workflow")
        .order_by("-started_at", "-pk")[:RECENT_RUNNING]
    )
    versions = previews.versions(task.pk for task in running)
    return {
        "recent_outputs": list(outputs),
        "recent_running": [
            (task, {"task_id": task.pk, "version": versions.get(task.pk)}) for task in running
        ],
        "picture_teams": teams,
    }


# -- publishing -----------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _team_of(task_id: int) -> int | None:
    # A task never changes team: one query per task, not one per preview.
    return Task.objects.filter(pk=task_id).values_list("team_id", flat=True).first()


async def apublish_preview_thumb(preview: PreviewThumb) -> None:
    """A new preview of a running task: its small copy in list rows and on dashboards."""
    team_id = await database_sync_to_async(_team_of)(preview["task_id"])
    if team_id is None or not (await live.awatched((TOPIC, str(team_id))))[0]:
        return
    html = render_to_string(f"{TEMPLATE}#preview-thumb", {"preview": preview})
    target = f"task-{preview['task_id']}-preview-thumb"
    await live.apublish_fragment(TOPIC, target, html, key=str(team_id))


def on_task_transitioned(
    sender, task_id: int, from_status: str, to_status: str, team_id: int, **kwargs
):
    """`task_transitioned` receiver: the task's row shows its preview slot or its
    outputs; dashboards refetch their recent results when a task starts or stops
    running; galleries hear of outputs once they are stored. Never raises."""
    try:
        # Nobody of the team has a page open that shows pictures: nothing to render.
        if not live.watched((TOPIC, str(team_id)))[0]:
            return
        task = Task.objects.filter(pk=task_id).only("pk", "team_id", "status").first()
        if task is None:
            return
        key = str(team_id)
        context = {"pictures": row_pictures([task])[task.pk]}
        html = render_to_string(f"{TEMPLATE}#row-pictures", context)
        live.publish_fragment(TOPIC, row_target(task_id), html, key=key)
        if Status.RUNNING in (from_status, to_status) or to_status == Status.COMPLETED:
            live.publish_refresh(TOPIC, RECENT_TARGET, reverse("tasks:recent_results"), key=key)
        if to_status == Status.COMPLETED:
            _announce_outputs(task_id, team_id)
    except Exception:
        logger.exception("publishing the pictures of task %s failed", task_id)


def _announce_outputs(task_id: int, team_id: int) -> None:
    newest = Output.objects.filter(task_id=task_id).order_by("-pk").values_list("pk", flat=True)
    if not newest:
        return
    context = {"team_id": team_id, "newest": newest[0]}
    html = render_to_string(f"{TEMPLATE}#outputs-news", context)
    live.publish_fragment(TOPIC, news_target(team_id), html, key=str(team_id))


def _allowed(user, key: str | None) -> bool:
    return key is not None and key.isdigit() and Team.objects.for_user(user).filter(pk=key).exists()


# Pages render their pictures when loaded; pushes only bring what changed.
topic = topics.Topic(name=TOPIC, allowed=_allowed, snapshot=lambda user, key: [])
