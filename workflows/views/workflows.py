"""Workflow pages (S2): list and search, detail, create/edit/delete, validate (running
one is tasks/views/submit.py)."""

from __future__ import annotations

import json

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from teams.access import require
from teams.models import Team
from workflows import store
from workflows.access import workflow_for
from workflows.forms.workflows import ValidateForm, WorkflowForm, submit_teams
from workflows.models import Workflow, WorkflowVersion
from workflows.validation import (
    CatalogueUnavailable,
    ValidationReport,
    fetch_catalogue,
    validate_graph,
)
from workflows.views.display import (
    capable_servers,
    graph_rows,
    warn_unrunnable,
)


def workflow_list(request: HttpRequest) -> HttpResponse:
    teams = list(Team.objects.for_user(request.user))
    workflows = Workflow.objects.for_user(request.user).select_related("team", "current_version")
    query = request.GET.get("q", "").strip()
    team_id = request.GET.get("team", "")
    if team_id.isdigit():
        workflows = workflows.filter(team_id=int(team_id))
    if query:
        workflows = store.search(workflows, query)
    context = {
        "workflows": workflows.order_by("name", "team__name")[:500],
        "teams": teams,
        "query": query,
        "team_id": int(team_id) if team_id.isdigit() else None,
        "can_create": bool(submit_teams(request.user)),
    }
    return render(request, "workflows/list.html", context)


def detail_context(request: HttpRequest, workflow: Workflow, **extra) -> dict:
    versions = list(workflow.versions.all())
    number = request.GET.get("version", "")
    version = next((v for v in versions if str(v.number) == number), workflow.current_version)
    return {
        "workflow": workflow,
        "version": version,
        "versions": versions,
        "rows": graph_rows(version.graph) if version else [],
        "graph_json": json.dumps(version.graph, indent=2) if version else "",
        "servers": capable_servers(version) if version else [],
        "templates": workflow.team.templates.filter(workflow_version__workflow=workflow)
        .select_related("workflow_version")
        .order_by("name"),
        "can_submit": workflow.team.can_submit(request.user),
        "can_manage": workflow.team.can_manage(request.user),
        "validate_form": ValidateForm(),
        **extra,
    }


def workflow_detail(request: HttpRequest, pk: int) -> HttpResponse:
    workflow = workflow_for(request.user, pk)
    return render(request, "workflows/detail.html", detail_context(request, workflow))


@require_http_methods(["GET", "POST"])
def workflow_create(request: HttpRequest) -> HttpResponse:
    form = WorkflowForm(request.POST or None, request.FILES or None, user=request.user)
    if not form.fields["team"].queryset.exists():
        raise PermissionDenied(
            "You are not a member (or admin) of any team that can add workflows."
        )
    if request.method == "POST" and form.is_valid():
        workflow = store.create_workflow(
            team=form.cleaned_data["team"], user=request.user, **form.saved_fields()
        )
        messages.success(request, f"Workflow “{workflow.name}” saved as version 1.")
        warn_unrunnable(request, workflow.current_version)
        return redirect("workflows:workflow_detail", pk=workflow.pk)
    return render(request, "workflows/form.html", {"form": form, "workflow": None})


@require_http_methods(["GET", "POST"])
def workflow_edit(request: HttpRequest, pk: int) -> HttpResponse:
    workflow = workflow_for(request.user, pk)
    require(workflow.team.can_submit(request.user), "edit workflows")
    form = WorkflowForm(
        request.POST or None, request.FILES or None, user=request.user, workflow=workflow
    )
    if request.method == "POST" and form.is_valid():
        version = store.update_workflow(workflow, user=request.user, **form.saved_fields())
        if version is not None:
            messages.success(request, f"Saved as version {version.number}.")
            warn_unrunnable(request, version)
        else:
            messages.success(request, "Details saved; the graph is unchanged.")
        return redirect("workflows:workflow_detail", pk=workflow.pk)
    return render(request, "workflows/form.html", {"form": form, "workflow": workflow})


@require_http_methods(["GET", "POST"])
def workflow_delete(request: HttpRequest, pk: int) -> HttpResponse:
    workflow = workflow_for(request.user, pk)
    require(workflow.team.can_manage(request.user), "delete workflows")
    if request.method == "POST":
        try:
            store.delete_workflow(workflow)
        except store.WorkflowInUse as refused:
            messages.error(request, str(refused))
            return redirect("workflows:workflow_detail", pk=workflow.pk)
        messages.success(request, f"Workflow “{workflow.name}” deleted.")
        return redirect("workflows:workflows")
    context = {
        "workflow": workflow,
        "task_count": store.tasks_using(workflow),
        "template_count": workflow.team.templates.filter(
            workflow_version__workflow=workflow
        ).count(),
    }
    return render(request, "workflows/delete.html", context)


@require_POST
def workflow_validate(request: HttpRequest, pk: int) -> HttpResponse:
    """Validate the shown version against one server's catalogue (fetched now, on request)."""
    workflow = workflow_for(request.user, pk)
    form = ValidateForm(request.POST)
    extra: dict = {"validate_form": form}
    if form.is_valid():
        server = form.cleaned_data["server"]
        version = version_from_post(request, workflow)
        try:
            catalogue = fetch_catalogue(server)
        except CatalogueUnavailable as exc:
            report = ValidationReport()
            report.add("server_unavailable", str(exc))
            report.checked_against = server.name
        else:
            report = validate_graph(version.graph, catalogue, server_name=server.name)
        extra["report"] = report
    context = detail_context(request, workflow, **extra)
    return render(request, "workflows/detail.html", context)


def version_from_post(request: HttpRequest, workflow: Workflow) -> WorkflowVersion:
    number = request.POST.get("version", "")
    if number.isdigit():
        return get_object_or_404(workflow.versions, number=int(number))
    return workflow.current_version
