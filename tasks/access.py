"""Looking up tasks, batches and outputs for a user, and the queue they may control.

An object of a team the user is not in is a 404, exactly like one that does not
exist (no existence leak); what the role may do is `teams.access.require`.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404

from tasks.models import Batch, Output, Task
from teams.models import Team


def task_for(user, pk: int) -> Task:
    queryset = Task.objects.for_user(user).select_related(
        "server", "team", "template", "workflow_version__workflow", "submitter"
    )
    return get_object_or_404(queryset, pk=pk)


def batch_for(user, pk: int) -> Batch:
    batches = Batch.objects.filter(team__in=Team.objects.for_user(user))
    return get_object_or_404(batches.select_related("team", "submitter"), pk=pk)


def output_for(user, pk: int) -> Output:
    queryset = Output.objects.for_user(user).select_related(
        "task__template", "task__workflow_version__workflow", "task__server", "team"
    )
    return get_object_or_404(queryset, pk=pk)


def queue_scope_for(user, team_id: int | str | None) -> Team | None:
    """The queue a user asks to control: None is everyone's (staff only), else one team's
    (its admins and staff)."""
    if team_id in (None, ""):
        if not user.is_staff:
            raise PermissionDenied("Only staff control the whole queue.")
        return None
    team_id = str(team_id)
    team = Team.objects.for_user(user).filter(pk=team_id).first() if team_id.isdigit() else None
    if team is None:
        raise Http404("No such team.")
    if not team.can_manage(user):
        raise PermissionDenied("Only the team's admins control its queue.")
    return team


def open_stored(field, what: str = "file"):
    """An output's stored file opened for reading; a 404 when it has none, or when
    the row outlived its file (media cleared or restored without it): gone, not a 500."""
    if not field:
        raise Http404(f"This output has no {what}.")
    try:
        return field.open("rb")
    except FileNotFoundError:
        raise Http404(f"This output's {what} is missing.") from None
