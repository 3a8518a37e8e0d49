"""Expected times, fetched again by pages when the live socket says the queue moved
(`tasks.eta_updates`): `?task=<id>` (repeatable) and `?batch=<id>`."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET

from tasks import eta
from tasks.models import Batch, Task
from teams.models import Team

MAX_TASKS = 200  # a page of the task list is 50


@login_required
@require_GET
def eta_parts(request: HttpRequest) -> HttpResponse:
    try:
        task_ids = {int(value) for value in request.GET.getlist("task")}
        batch_ids = {int(value) for value in request.GET.getlist("batch")}
    except ValueError:
        return HttpResponseBadRequest("task and batch are ids")
    if len(task_ids) > MAX_TASKS or len(batch_ids) > 1:
        return HttpResponseBadRequest(f"at most {MAX_TASKS} tasks and one batch")
    # Ids the user may not see are left out, as if they did not exist.
    tasks = list(Task.objects.for_user(request.user).filter(pk__in=task_ids).only("pk", "status"))
    batches = Batch.objects.filter(team__in=Team.objects.for_user(request.user), pk__in=batch_ids)
    estimates = eta.forecast(tasks)
    parts = [_part({"task_id": t.pk, "estimate": estimates.get(t.pk)}) for t in tasks]
    parts += [_part({"batch_id": b.pk, "estimate": eta.batch_estimate(b.pk)}) for b in batches]
    return HttpResponse("\n".join(parts))


def _part(context: dict) -> str:
    return render_to_string("tasks/fragments.html#eta", context)
