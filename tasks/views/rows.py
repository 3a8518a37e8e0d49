"""A task list's live cells, fetched again by the page once its live socket is
subscribed (and after every reconnect): a row whose task changed between the page's
render and its subscription would otherwise keep showing what it was. `?task=<id>`
(repeatable): each row's state and pictures."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET

from fairness import limits
from tasks import listing, pictures, task_updates

MAX_TASKS = 200  # a page of the task list is 50
STATE = "tasks/fragments.html#row-state"
PICTURES = "tasks/pictures.html#row-pictures"


@login_required
@require_GET
def row_parts(request: HttpRequest) -> HttpResponse:
    try:
        task_ids = {int(value) for value in request.GET.getlist("task")}
    except ValueError:
        return HttpResponseBadRequest("task is an id")
    if len(task_ids) > MAX_TASKS:
        return HttpResponseBadRequest(f"at most {MAX_TASKS} tasks")
    # Ids the user may not see are left out, as if they did not exist.
    visible = listing.visible_tasks(request.user).filter(pk__in=task_ids)
    tasks = list(listing.rows(visible).order_by("pk"))
    views = task_updates.progress_views(tasks)
    shown = pictures.row_pictures(tasks)
    held = limits.reasons(tasks)
    parts = []
    for task in tasks:
        state = {"progress": views[task.pk], "held_back": held.get(task.pk)}
        parts.append(render_to_string(STATE, state))
        parts.append(render_to_string(PICTURES, {"pictures": shown[task.pk]}))
    return HttpResponse("\n".join(parts))
