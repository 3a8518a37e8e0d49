"""Task pages (D3): the list, the live detail page, cancelling, and output files.

Everything is looked up through `tasks.access`, so another team's
task, batch or output is a 404, exactly like one that does not exist.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.http import require_POST

from fairness import limits
from tasks import access, batches, listing, pictures, previews, rerun, task_updates
from tasks.cancel import CANCELED, FINISHED, REQUESTED, cancel_task
from tasks.models import Batch, Priority, Status, Task
from teams.models import Team

PAGE_SIZE = 50
FILTERS = ("status", "priority", "team", "batch", "group")
CANCEL_MESSAGES = {
    CANCELED: "Task {task.pk} is canceled.",
    FINISHED: "Task {task.pk} had already finished.",
    REQUESTED: "Cancelling task {task.pk}: it ends canceled when its server confirms.",
}
UNKNOWN_OUTCOME = "Task {task.pk}: its server could not be reached; cancel again later."


def _filters(request: HttpRequest) -> dict[str, str]:
    values = {name: request.GET.get(name, "").strip() for name in FILTERS}
    if values["status"] not in Status.values:
        values["status"] = ""
    for name in ("priority", "team", "batch"):
        if not values[name].isdigit():
            values[name] = ""
    if values["group"] != "batch":  # the one grouping there is: by batch
        values["group"] = ""
    return values


@login_required
def task_list(request: HttpRequest) -> HttpResponse:
    filters = _filters(request)
    teams = list(Team.objects.for_user(request.user))
    tasks = listing.visible_tasks(request.user, teams)
    if filters["status"]:
        tasks = tasks.filter(status=filters["status"])
    if filters["priority"]:
        tasks = tasks.filter(priority=int(filters["priority"]))
    if filters["team"]:
        tasks = tasks.filter(team_id=int(filters["team"]))
    if filters["batch"]:
        tasks = tasks.filter(batch_id=int(filters["batch"]))
    page = listing.TaskPaginator(tasks, PAGE_SIZE).get_page(request.GET.get("page"))
    submit_teams = set(Team.objects.submittable_by(request.user).values_list("pk", flat=True))
    views = task_updates.progress_views(page)
    row_pictures = pictures.row_pictures(page)
    held = limits.reasons(page)  # a team's or user's running limit (fairness)
    for task in page:
        task.progress_view = views[task.pk]
        task.held_back = held.get(task.pk)
        task.pictures = row_pictures[task.pk]
        # Its expected times are fetched once the page is shown: a forecast reads
        # the queue, and the list answers first (goal: 50 ms at 100,000 tasks).
        task.unfinished = task.status not in Status.finished()
        task.can_cancel = task.team_id in submit_teams and task.status not in Status.finished()
    if filters["group"]:  # each batch's rows under a header with its summary
        summaries = batches.summaries(t.batch_id for t in page if t.batch_id)
        for task in page:
            task.batch_summary = summaries.get(task.batch_id)
    batch = None
    if filters["batch"]:
        batch = Batch.objects.filter(team__in=teams, pk=int(filters["batch"])).first()
    context = {
        "page_obj": page,
        "teams": teams,
        "filters": filters | {"any": any(filters.values())},
        "statuses": Status.choices,
        "priorities": Priority.choices,
        "query": urlencode({k: v for k, v in filters.items() if v}),
        "batch": batch,
        "can_cancel_batch": batch is not None and batch.team_id in submit_teams,
        # The rows that may still change: their live cells and expected times are
        # fetched once the page's socket is subscribed (static/js/live.js).
        "unfinished_query": urlencode([("task", t.pk) for t in page if t.unfinished]),
    }
    return render(request, "tasks/list.html", context)


@login_required
def task_detail(request: HttpRequest, task_id: int) -> HttpResponse:
    task = access.task_for(request.user, task_id)
    context = task_updates.task_context(task) | {
        # Cancel and Retry are on the page for whoever may submit, and shown while the
        # live status allows them (static/js/task_actions.js).
        "can_submit": task.team.can_submit(request.user),
        "retryable": rerun.RETRYABLE,
        "run_again_url": run_again_url(task),
    }
    return render(request, "tasks/detail.html", context)


def run_again_url(task: Task) -> str | None:
    """The template's submit form, prefilled with the task's params (task page, gallery)."""
    if task.template_id is None:
        return None
    url = reverse("tasks:template_submit", args=[task.template_id])
    # The submit form reads its initial values from the query.
    return f"{url}?{urlencode(task.params, doseq=True)}" if task.params else url


@login_required
@require_POST
def task_cancel(request: HttpRequest, task_id: int) -> HttpResponse:
    task = access.task_for(request.user, task_id)
    if not task.team.can_submit(request.user):
        raise PermissionDenied("Viewers cannot cancel tasks.")
    outcome = cancel_task(task.pk, by=request.user)
    task_updates.publish_task(task.pk)  # "cancel requested" shows at once
    messages.info(request, CANCEL_MESSAGES.get(outcome, UNKNOWN_OUTCOME).format(task=task))
    return _back(request, reverse("tasks:task_detail", args=[task.pk]))


def _back(request: HttpRequest, default: str) -> HttpResponse:
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return redirect(target)
    return redirect(default)


@login_required
def output_file(request: HttpRequest, output_id: int) -> FileResponse:
    output = access.output_for(request.user, output_id)
    stream = access.open_stored(output.file)
    # Only images we verified are shown inline; anything else is a download.
    inline = output.content_type.startswith("image/") and "download" not in request.GET
    extension = output.file.name.rsplit(".", 1)[-1]
    response = FileResponse(
        stream,
        content_type=output.content_type,
        as_attachment=not inline,
        filename=f"task-{output.task_id}-output-{output.pk}.{extension}",
    )
    response["Cache-Control"] = "private, max-age=3600"
    return response


@login_required
def output_thumbnail(request: HttpRequest, output_id: int) -> FileResponse:
    output = access.output_for(request.user, output_id)
    thumbnail = access.open_stored(output.thumbnail, "thumbnail")
    response = FileResponse(thumbnail, content_type="image/webp")
    response["Cache-Control"] = "private, max-age=86400"
    return response


@login_required
def task_preview(request: HttpRequest, task_id: int) -> HttpResponse:
    task = access.task_for(request.user, task_id)
    latest = previews.latest(task.pk)
    if latest is None and "v" in request.GET:
        # An <img> of a preview that was there (it has a version): the prompt ended
        # since, and the push that replaces the img is on its way. Nothing to show,
        # but no error either (a 404 is one in the console of every page showing it).
        return HttpResponse(status=204, headers={"Cache-Control": "private, no-store"})
    if latest is None:
        raise Http404("No preview.")
    _, mime_type, image = latest
    response = HttpResponse(image, content_type=mime_type)
    response["Cache-Control"] = "private, no-store"
    return response
