"""The Generate page (issue 16, part 5): one obvious place to start work — every
template's form and every workflow to run as it is, for the user's teams."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from workflows.forms.workflows import submit_teams
from workflows.models import Template, Workflow

SHOWN = 200  # of each; the Workflows and Templates pages search them all


@require_GET
def generate(request: HttpRequest) -> HttpResponse:
    templates = Template.objects.for_user(request.user).select_related(
        "team", "workflow_version__workflow"
    )
    workflows = Workflow.objects.for_user(request.user).select_related("team", "current_version")
    context = {
        "templates": templates.order_by("name", "pk")[:SHOWN],
        "workflows": workflows.order_by("name", "pk")[:SHOWN],
        "can_create": bool(submit_teams(request.user)),
    }
    return render(request, "workflows/generate.html", context)
