"""Template pages (S3): list, create/edit/delete with a parameter formset (a template's
own page is its submit form, tasks/views/submit.py)."""

from __future__ import annotations

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from servers.models import Server
from teams.access import require
from workflows import templating
from workflows.access import template_for, workflow_for
from workflows.forms.templates import (
    ParameterFormSet,
    TemplateForm,
)
from workflows.models import Template, WorkflowVersion
from workflows.templating import known_models, suggest_parameters
from workflows.validation import CatalogueUnavailable, fetch_catalogue


def template_list(request: HttpRequest) -> HttpResponse:
    templates = Template.objects.for_user(request.user).select_related(
        "team", "workflow_version__workflow"
    )
    query = request.GET.get("q", "").strip()
    templates = templating.search(templates, query)
    context = {"templates": templates.order_by("name")[:500], "query": query}
    return render(request, "workflows/template_list.html", context)


def _catalogue_for(request: HttpRequest) -> dict | None:
    """`?server=<id>`: that server's catalogue for bounds and choices (an explicit request)."""
    server_id = request.GET.get("server", "")
    if not server_id.isdigit():
        return None
    server = Server.objects.enabled().filter(pk=int(server_id)).first()
    if server is None:
        return None
    try:
        return fetch_catalogue(server)
    except CatalogueUnavailable as exc:
        messages.warning(request, f"Suggestions use built-in bounds: {exc}")
        return None


def _suggested_initial(version: WorkflowVersion, catalogue: dict | None) -> list[dict]:
    return [
        {
            "name": s.name,
            "label": s.label,
            "help": s.help,
            "node_id": s.node_id,
            "input_name": s.input_name,
            "type": s.type,
            "default": s.default,
            "minimum": s.minimum,
            "maximum": s.maximum,
            "choices": s.choices,
        }
        for s in suggest_parameters(version, catalogue, models=known_models())
    ]


@require_http_methods(["GET", "POST"])
def template_create(request: HttpRequest, pk: int) -> HttpResponse:
    workflow = workflow_for(request.user, pk)
    require(workflow.team.can_submit(request.user), "create templates")
    number = request.GET.get("version") or request.POST.get("version") or ""
    version = (
        get_object_or_404(workflow.versions, number=int(number))
        if number.isdigit()
        else workflow.current_version
    )
    template = Template(team=workflow.team, workflow_version=version, created_by=request.user)
    initial = (
        _suggested_initial(version, _catalogue_for(request)) if request.method == "GET" else []
    )
    return _edit_template(request, template, initial=initial, created=True)


@require_http_methods(["GET", "POST"])
def template_edit(request: HttpRequest, pk: int) -> HttpResponse:
    template = template_for(request.user, pk)
    require(template.team.can_submit(request.user), "edit templates")
    # Moving a template to another version of its workflow (say v2 after an
    # edit) re-checks every parameter against that version's graph.
    number = request.POST.get("version", "") if request.method == "POST" else ""
    if number.isdigit():
        workflow = template.workflow_version.workflow
        template.workflow_version = get_object_or_404(workflow.versions, number=int(number))
    return _edit_template(request, template, initial=[], created=False)


def _edit_template(
    request: HttpRequest, template: Template, *, initial: list[dict], created: bool
) -> HttpResponse:
    data = request.POST if request.method == "POST" else None
    form = TemplateForm(data, instance=template, team=template.team)
    formset = ParameterFormSet(
        data,
        instance=template,
        initial=initial or None,
        form_kwargs={"graph": template.workflow_version.graph},
    )
    if initial:
        formset.extra = len(initial) + 1  # the suggestions, and an empty row for one more
    if data is not None and form.is_valid() and formset.is_valid():
        with transaction.atomic():
            form.save()
            formset.instance = template
            formset.save()
        messages.success(request, f"Template “{template.name}” saved.")
        return redirect("tasks:template_detail", pk=template.pk)
    context = {
        "form": form,
        "formset": formset,
        "template": template,
        "version": template.workflow_version,
        "workflow": template.workflow_version.workflow,
        "created": created,
        "servers": Server.objects.enabled() if created else [],
        "versions": template.workflow_version.workflow.versions.all(),
    }
    return render(request, "workflows/template_form.html", context)


@require_http_methods(["GET", "POST"])
def template_delete(request: HttpRequest, pk: int) -> HttpResponse:
    template = template_for(request.user, pk)
    require(template.team.can_manage(request.user), "delete templates")
    workflow = template.workflow_version.workflow
    if request.method == "POST":
        template.delete()  # its tasks keep their graph and values (template is SET_NULL)
        messages.success(request, f"Template “{template.name}” deleted.")
        return redirect("workflows:workflow_detail", pk=workflow.pk)
    return render(request, "workflows/template_delete.html", {"template": template})
