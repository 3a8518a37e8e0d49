"""The batch page (issue 16): a batch as one unit — its progress, its tasks, a contact
sheet of its outputs — and cancelling it. Retry and Run again are `views.rerun`."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST

from tasks import access, batch_updates, eta, listing, task_updates
from tasks.cancel import cancel_batch
from tasks.models import Status
from teams.access import require

PAGE_SIZE = 50


@require_GET
def batch_detail(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = access.batch_for(request.user, batch_id)
    if request.GET.get("parts") == "live":  # what live.js fetches after a refresh hint
        parts = batch_updates.render_parts(request.user, batch, request)
        return HttpResponse("\n".join(html for _, html in parts))
    page = listing.TaskPaginator(batch.tasks.all(), PAGE_SIZE).get_page(request.GET.get("page"))
    views = task_updates.progress_views(page)
    estimates = eta.forecast(page)
    for task in page:
        task.progress_view = views[task.pk]
        task.estimate = estimates.get(task.pk)
    unfinished = [("task", t.pk) for t in page if t.status not in Status.finished()]
    context = batch_updates.context(request.user, batch) | {
        "page_obj": page,
        "eta_query": urlencode([("batch", batch.pk), *unfinished]) if unfinished else "",
        "rows_query": urlencode(unfinished),
    }
    return render(request, "tasks/batch.html", context)


@require_POST
def batch_cancel(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = access.batch_for(request.user, batch_id)
    require(batch.team.can_submit(request.user), "cancel tasks")
    active = list(batch.tasks.exclude(status__in=Status.finished()).values_list("pk", flat=True))
    totals = cancel_batch(batch.pk, by=request.user)
    for task_id in active:
        task_updates.publish_task(task_id)
    count = sum(totals.values())
    messages.info(request, f"Cancelling {count} task{pluralize(count)} of batch {batch.pk}.")
    return redirect("tasks:batch_detail", batch_id=batch.pk)
