"""A submission's own webhook (`"webhook": url` on `POST /api/v1/tasks`).

The URL is checked as an endpoint's is, and the team must have a submission secret
(created on the webhooks page) to sign with. It is remembered per task right after
the submission is saved; a task that finished before that (it cannot in practice:
it has to be dispatched, run and collected first) is announced then, so no window
loses an event.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError

from tasks.models import Status
from webhooks import enqueue, events
from webhooks.addresses import validate_url
from webhooks.models import SubmissionSecret, SubmissionWebhook


def checked(team, url: str | None) -> str | None:
    """The URL to remember, or None; raises ValidationError naming the `webhook` field."""
    if url is None or not url.strip():
        return None
    try:
        url = validate_url(url)
    except ValidationError as error:
        raise ValidationError({"webhook": error.messages}) from None
    if not SubmissionSecret.objects.filter(team=team).exists():
        raise ValidationError(
            {
                "webhook": "The team has no submission secret to sign with: a team admin "
                "creates one on the Webhooks page."
            }
        )
    return url


def remember(result, url: str | None) -> None:
    """Keep `url` for each task of the submission (`tasks.submission.SubmitResult`)."""
    if url is None:
        return
    batch_id = result.batch.pk if result.batch is not None else None
    SubmissionWebhook.objects.bulk_create(
        SubmissionWebhook(task_id=task.pk, batch_id=batch_id, team_id=task.team_id, url=url)
        for task in result.tasks
    )
    finished = (
        result.tasks[0]
        .__class__.objects.filter(pk__in=[t.pk for t in result.tasks], status__in=Status.finished())
        .values_list("pk", "status")
    )
    for task_id, status in finished:
        for delivery_id in events.announce_task(task_id, events.TASK_EVENTS[status]):
            enqueue.deliver(delivery_id)
