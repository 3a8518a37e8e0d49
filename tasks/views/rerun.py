"""Retry and Run again, on a task and on a batch (issue 16): buttons over `tasks.rerun`.

Retry puts failed or canceled tasks back in the queue in place (their page is
where to watch them); Run again submits new tasks with the same graphs and
opens the new task (or batch). `new_seeds` in the form draws fresh seeds.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.views.decorators.http import require_POST

from tasks import access, rerun
from tasks.submission import SubmitResult
from teams.access import require
from workflows.runnable import Unrunnable
from workflows.uploads import ForbiddenUpload


@require_POST
def task_retry(request: HttpRequest, task_id: int) -> HttpResponse:
    task = access.task_for(request.user, task_id)
    require(task.team.can_submit(request.user), "retry tasks")
    here = reverse("tasks:task_detail", args=[task.pk])
    if task.status not in rerun.RETRYABLE:
        messages.info(
            request,
            f"Task {task.pk} is {task.get_status_display().lower()}: "
            "only failed or canceled tasks are retried.",
        )
        return redirect(here)
    retried = _refusing(request, lambda: rerun.retry([task.pk], by=request.user))
    if retried:
        messages.success(request, f"Task {task.pk} is back in the queue with the same graph.")
    return redirect(here)


@require_POST
def task_run_again(request: HttpRequest, task_id: int) -> HttpResponse:
    task = access.task_for(request.user, task_id)
    require(task.team.can_submit(request.user), "run tasks again")
    result = _refusing(request, lambda: _run_again(request, [task.pk]))
    if result is None:
        return redirect("tasks:task_detail", task_id=task.pk)
    return _opened(request, result)


@require_POST
def batch_retry(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = access.batch_for(request.user, batch_id)
    require(batch.team.can_submit(request.user), "retry tasks")
    ids = batch.tasks.filter(status__in=rerun.RETRYABLE).values_list("pk", flat=True)
    retried = _refusing(request, lambda: rerun.retry(ids, by=request.user))
    if retried is not None:
        count = len(retried)
        if count:
            messages.success(
                request, f"Retrying {count} task{pluralize(count)} of batch {batch.pk}."
            )
        else:
            messages.info(request, f"Batch {batch.pk} has no failed or canceled task to retry.")
    return redirect("tasks:batch_detail", batch_id=batch.pk)


@require_POST
def batch_run_again(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = access.batch_for(request.user, batch_id)
    require(batch.team.can_submit(request.user), "run tasks again")
    ids = list(batch.tasks.order_by("pk").values_list("pk", flat=True))
    result = _refusing(request, lambda: _run_again(request, ids))
    if result is None:
        return redirect("tasks:batch_detail", batch_id=batch.pk)
    return _opened(request, result)


def _run_again(request: HttpRequest, task_ids: list[int]) -> SubmitResult:
    return rerun.run_again(task_ids, by=request.user, new_seeds=_new_seeds(request))


def _refusing[T](request: HttpRequest, action: Callable[[], T]) -> T | None:
    """`action()`, or None with the reason as an error message when it was refused."""
    try:
        return action()
    except (Unrunnable, ForbiddenUpload) as refused:
        messages.error(request, f"Not queued: {refused.message}")
    except ValidationError as invalid:
        messages.error(request, f"Not queued: {' '.join(invalid.messages)}")
    return None


def _opened(request: HttpRequest, result: SubmitResult) -> HttpResponse:
    """The new batch's page, or the new task's."""
    how = "new seeds" if _new_seeds(request) else "the same seeds"
    if result.batch is not None:
        count = len(result.tasks)
        messages.success(request, f"Queued batch {result.batch.pk}: {count} tasks, {how}.")
        return redirect("tasks:batch_detail", batch_id=result.batch.pk)
    (task,) = result.tasks
    messages.success(request, f"Queued task {task.pk}: the same graph, {how}.")
    return redirect("tasks:task_detail", task_id=task.pk)


def _new_seeds(request: HttpRequest) -> bool:
    return request.POST.get("new_seeds") in {"1", "on", "true"}
