"""The dashboard's first-run checklist (issue 16, part 5): the one path from an empty
installation to a first picture — a server (or the demo's), a workflow, a template
made from it, a run.

Each step is done when the real state says so, seen as the user sees it (their
teams' workflows, templates and tasks; the fleet is everyone's), so the list
ticks itself off as they go and links each open step to where it is done. It is
shown until every step is done or the user dismisses it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse

from onboarding.models import ChecklistDismissal
from servers.models import Server
from tasks.models import Task
from workflows.models import Template, Workflow


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    done: bool
    url: str  # where it is done
    action: str  # the link's words
    hint: str = ""


def steps_for(user) -> list[Step]:
    workflow = Workflow.objects.for_user(user).order_by("-updated_at").first()
    template = Template.objects.for_user(user).order_by("-pk").first()
    return [
        _server_step(user),
        Step(
            "workflow",
            "Upload a workflow",
            workflow is not None,
            reverse("workflows:workflow_create"),
            "Upload a workflow",
            "An API-format graph exported from ComfyUI (enable dev mode, then Export (API)).",
        ),
        Step(
            "template",
            "Make a template from it",
            template is not None,
            reverse("workflows:template_create", args=[workflow.pk])
            if workflow
            else reverse("workflows:workflows"),
            "Make a template",
            "Pick the inputs people change (prompt, seed, size) as named parameters.",
        ),
        Step(
            "run",
            "Run it",
            Task.objects.for_user(user).exists(),
            reverse("tasks:template_submit", args=[template.pk])
            if template
            else reverse("workflows:generate"),
            "Generate",
            "Fill the template's form and submit; the task runs on the fleet.",
        ),
    ]


def _server_step(user) -> Step:
    done = Server.objects.filter(enabled=True).exists()
    if user.is_staff:
        return Step(
            "server",
            "Add a server or start the demo",
            done,
            reverse("admin:servers_server_add"),
            "Add a ComfyUI server",
            "Or start ComfyWeb with “make run” (“manage.py serve --demo 3”): "
            "its three simulated servers join the fleet.",
        )
    return Step(
        "server",
        "Have a server in the fleet",
        done,
        reverse("servers:list"),
        "See the fleet",
        "An administrator adds ComfyUI servers, or starts the demo's simulated ones.",
    )


def checklist_for(user) -> list[Step] | None:
    """The steps to show on the dashboard, or None when there is nothing to show."""
    if ChecklistDismissal.objects.filter(user=user).exists():
        return None
    steps = steps_for(user)
    return None if all(step.done for step in steps) else steps


def dismiss(user) -> None:
    ChecklistDismissal.objects.get_or_create(user=user)
