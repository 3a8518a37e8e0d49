"""The one publisher of task updates to browsers (STYLE habit 6), on `comfyweb.live`.

Topics:
- "task", key = task id: the detail page's fragments (status, progress bar,
  nodes table, timeline, outputs, preview). Allowed to who may see the task.
- "team-tasks", key = team id: the live cell of each task-list row. Allowed to
  that team's members and staff, so a user only hears of their teams' tasks.

Progress updates are rendered from memory (`ProgressView`, no query) because
they come up to 10 times a second; everything else is rendered from the
database, so a page load and the socket show the same thing.

Live progress has one source of truth: whenever progress is pushed, the pushed
numbers are also kept in the cache (Redis) per run (`LiveProgress`, task id and
prompt id, `SNAPSHOT_TTL`), and every reader of a running task — the pages, the
socket's snapshot, the API — overlays them on the database row, which is
written at most once a second (tasks/progress.py). So the API answers what the
socket last pushed, not what the database held up to a second before. Progress
nobody listens to is neither pushed nor kept.

Beside the HTML, each push carries a typed JSON payload (`TaskData`, as a
`data.update` message on the same group) for scripts: the API's event stream
(`GET /api/v1/tasks/{id}/events`) sends exactly these.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import NotRequired, TypedDict

from django.core.cache import cache
from django.template.loader import render_to_string

from comfyweb import live, topics
from tasks import eta, pictures, previews
from tasks import waiting as waits
from tasks.graph_facts import graph_of
from tasks.models import Status, Task
from tasks.progress import Numbers, TaskProgress, node_class, node_title
from teams.models import Team
from workflows.validation import node_order

logger = logging.getLogger(__name__)

TASK_TOPIC = "task"
TEAM_TOPIC = "team-tasks"
FRAGMENTS = "tasks/fragments.html"
PARTS = ("status", "progress", "nodes", "timeline", "outputs", "preview")
# Events of the typed payloads (`TaskData`): a state change, or new progress numbers.
STATUS_EVENT = "status"
PROGRESS_EVENT = "progress"
# How long the last pushed progress of a run is kept. Any length above the
# database's write interval (1 s) is correct: a run whose progress has not moved
# for that long has the same numbers in its row.
SNAPSHOT_TTL = 60


class ProgressView(TypedDict):
    """What the progress bar and the list row's state cell show (and the API's
    `progress`): every number derives from one `tasks.progress.Numbers`."""

    task_id: int
    team_id: int
    prompt_id: str
    status: str
    status_label: str
    node: str
    node_title: str
    node_type: str
    value: int
    max: int
    fraction: float
    percent: int
    nodes_done: int
    nodes_total: int
    summary: str  # "node 2 of 3 · step 38/150 · 41 % overall"
    started_at: datetime | None
    server: str


class LiveProgress(TypedDict):
    """The progress numbers last pushed for one run, kept in the cache."""

    node: str
    node_title: NotRequired[str]  # the list has no graph to look it up in (absent before #15)
    node_type: str
    value: int
    max: int
    nodes_done: int


class ProgressData(TypedDict):
    """A task's progress in JSON: the API's `progress` object."""

    fraction: float
    percent: int
    summary: str
    node: str | None
    node_title: str | None
    node_type: str | None
    value: int
    max: int
    nodes_done: int
    nodes_total: int


class TaskData(TypedDict):
    """The JSON payload of a task's live events ("status" or "progress")."""

    task_id: int
    status: str
    finished: bool
    server: str | None
    progress: ProgressData


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


def _view(
    numbers: Numbers,
    *,
    task_id: int,
    team_id: int,
    prompt_id: str,
    status: str,
    node: str,
    title: str,
    node_type: str,
    started_at: datetime | None,
    server: str,
) -> ProgressView:
    return {
        "task_id": task_id,
        "team_id": team_id,
        "prompt_id": prompt_id,
        "status": status,
        "status_label": Status(status).label,
        "node": node,
        "node_title": title,
        "node_type": node_type,
        "value": numbers.value,
        "max": numbers.max,
        "fraction": numbers.fraction,
        "percent": numbers.percent,
        "nodes_done": numbers.nodes_done,
        "nodes_total": numbers.nodes_total,
        "summary": numbers.summary(running=status == Status.RUNNING and bool(node)),
        "started_at": started_at,
        "server": server,
    }


def progress_view(
    progress: TaskProgress,
    *,
    status: str,
    started_at: datetime | None,
    server: str,
    prompt_id: str = "",
) -> ProgressView:
    """From the monitor's memory, as it pushes (no query)."""
    return _view(
        progress.numbers(),
        task_id=progress.task_id,
        team_id=progress.team_id,
        prompt_id=prompt_id,
        status=status,
        node=progress.node,
        title=progress.node_title,
        node_type=progress.node_type,
        started_at=started_at,
        server=server,
    )


def progress_views(tasks: Iterable[Task]) -> dict[int, ProgressView]:
    """Task id → its progress: the row with what the socket last pushed laid over it
    (one cache round trip for all of them)."""
    tasks = list(tasks)
    pushed = live_progress(tasks)
    return {task.pk: _view_of_task(task, pushed.get(task.pk)) for task in tasks}


def progress_view_from_task(task: Task) -> ProgressView:
    return progress_views([task])[task.pk]


def _view_of_task(task: Task, pushed: LiveProgress | None) -> ProgressView:
    # In a list the row has no graph, only what its progress node needs of it.
    graph, nodes_total = graph_of(task)
    title = ""
    if pushed is not None:
        node, node_type = pushed["node"], pushed["node_type"]
        value, max_, done = pushed["value"], pushed["max"], pushed["nodes_done"]
        title = pushed.get("node_title", "")
    else:
        node, node_type = task.progress_node, task.progress_node_type
        value, max_, done = task.progress_value, task.progress_max, task.progress_nodes_done
    numbers = Numbers(
        nodes_done=done,
        nodes_total=nodes_total,
        value=value,
        max=max_,
        complete=task.status == Status.COMPLETED,
    )
    return _view(
        numbers,
        task_id=task.pk,
        team_id=task.team_id,
        prompt_id=task.prompt_id,
        status=task.status,
        node=node,
        title=title or (node_title(graph, node) if node else ""),
        node_type=node_type or (node_class(graph, node) if node else ""),
        started_at=task.started_at,
        server=task.server.name if task.server_id and task.server else "",
    )


# -- the live snapshot (cache) and the typed payloads ------------------------------


def _snapshot_key(task_id: int, prompt_id: str) -> str:
    # Per run: a retried task's new prompt never shows its earlier run's numbers.
    return f"task-progress:{task_id}:{prompt_id}"


def _live_part(view: ProgressView) -> LiveProgress:
    return {
        "node": view["node"],
        "node_title": view["node_title"],
        "node_type": view["node_type"],
        "value": view["value"],
        "max": view["max"],
        "nodes_done": view["nodes_done"],
    }


def live_progress(tasks: Iterable[Task]) -> dict[int, LiveProgress]:
    """Task id → the progress last pushed for its current run, for tasks on a server.

    Only active tasks: a finished task's row holds its final numbers."""
    keys = {
        _snapshot_key(task.pk, task.prompt_id): task.pk
        for task in tasks
        if task.status in Status.active() and task.prompt_id
    }
    if not keys:
        return {}
    try:
        found = cache.get_many(list(keys))
    except Exception:
        # The row is at most a second behind: better than no answer.
        logger.warning("could not read live progress", exc_info=True)
        return {}
    return {keys[key]: value for key, value in found.items() if isinstance(value, dict)}


def progress_data(view: ProgressView) -> ProgressData:
    return {
        "fraction": view["fraction"],
        "percent": view["percent"],
        "summary": view["summary"],
        "node": view["node"] or None,
        "node_title": view["node_title"] or None,
        "node_type": view["node_type"] or None,
        "value": view["value"],
        "max": view["max"],
        "nodes_done": view["nodes_done"],
        "nodes_total": view["nodes_total"],
    }


def task_data(view: ProgressView) -> TaskData:
    return {
        "task_id": view["task_id"],
        "status": view["status"],
        "finished": view["status"] in Status.finished(),
        "server": view["server"] or None,
        "progress": progress_data(view),
    }


def nodes_table(task: Task) -> list[dict]:
    """The graph's nodes with the current and the failing one marked."""
    rows = []
    for node_id, node in sorted(task.graph.items(), key=lambda item: node_order(item[0])):
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


def task_context(task: Task) -> dict:
    return {
        "task": task,
        "waiting_reason": waits.reasons([task]).get(task.pk),  # the API's, word for word
        "progress": progress_view_from_task(task),
        "nodes": nodes_table(task),
        "events": list(task.events.all()),
        "outputs": list(task.outputs.all()),
        "preview": preview_view(task.pk),
        "estimate": eta.forecast([task]).get(task.pk),
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
    """Progress bar on the detail page and the list row's state cell (no query).

    The numbers are kept as the run's live snapshot first, so whoever hears this
    push and then asks the API or loads the page sees at least these numbers. With
    nobody listening nothing is pushed, so nothing is kept either: readers then
    have the row, a second behind at most. (Keeping it anyway was ~10 % of the
    monitor's samples with 50 prompts streaming and no page open.)"""
    task_id, team_id = progress["task_id"], progress["team_id"]
    detail_watched, rows_watched = await live.awatched(
        (TASK_TOPIC, str(task_id)), (TEAM_TOPIC, str(team_id))
    )
    if not (detail_watched or rows_watched):
        return
    if progress["prompt_id"]:
        try:
            key = _snapshot_key(task_id, progress["prompt_id"])
            await cache.aset(key, _live_part(progress), SNAPSHOT_TTL)
        except Exception:
            logger.warning("could not keep the live progress of task %s", task_id, exc_info=True)
    if detail_watched:
        html = render_part("progress", {"progress": progress})
        await live.apublish_fragment(
            TASK_TOPIC, target(task_id, "progress"), html, key=str(task_id)
        )
        await live.apublish_data(TASK_TOPIC, PROGRESS_EVENT, task_data(progress), key=str(task_id))
    if rows_watched:
        await live.apublish_fragment(
            TEAM_TOPIC, row_target(task_id), render_row_state(progress), key=str(team_id)
        )


async def apublish_preview(task_id: int) -> None:
    preview = preview_view(task_id)
    html = render_part("preview", {"preview": preview})
    await live.apublish_fragment(TASK_TOPIC, target(task_id, "preview"), html, key=str(task_id))
    await pictures.apublish_preview_thumb(preview)  # its small copy: list rows, dashboards


def publish_task(task_id: int, team_id: int | None = None) -> None:
    """A state change: every detail fragment and the row, rendered from the database.
    With the task's `team_id` known, nothing is read while no page shows the task.

    Never raises: callers publish what they already saved, and browsers catch up
    on their next snapshot."""
    try:
        _publish_task(task_id, team_id)
    except Exception:
        logger.exception("publishing task %s failed", task_id)


def _publish_task(task_id: int, team_id: int | None) -> None:
    task = None
    if team_id is None:
        task = load_task(task_id)
        if task is None:
            return
        team_id = task.team_id
    detail_watched, rows_watched = live.watched(
        (TASK_TOPIC, str(task_id)), (TEAM_TOPIC, str(team_id))
    )
    if not (detail_watched or rows_watched):
        return
    task = task or load_task(task_id)
    if task is None:
        return
    if detail_watched:
        context = task_context(task)
        for part in PARTS:
            html = render_part(part, context)
            live.publish_fragment(TASK_TOPIC, target(task_id, part), html, key=str(task_id))
        progress = context["progress"]
        live.publish_data(TASK_TOPIC, STATUS_EVENT, task_data(progress), key=str(task_id))
    else:
        progress = progress_view_from_task(task)
    if rows_watched:
        row = render_row_state(progress)
        live.publish_fragment(TEAM_TOPIC, row_target(task_id), row, key=str(task.team_id))


def announce_new_tasks(team_id: int) -> None:
    """Tell open task lists that their team has new tasks (after a submission)."""
    # A batch of a thousand is one notice: at most one a second per team.
    try:
        if not cache.add(f"tasks:new-announced:{team_id}", 1, timeout=1):
            return
        html = render_part("new-tasks", {"team_id": team_id})
        live.publish_fragment(TEAM_TOPIC, new_tasks_target(team_id), html, key=str(team_id))
    except Exception:
        logger.exception("announcing new tasks of team %s failed", team_id)


def on_task_transitioned(sender, task_id: int, team_id: int, **kwargs) -> None:
    """`tasks.transitions.task_transitioned` receiver: whoever moved the task, show it."""
    publish_task(task_id, team_id)


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
