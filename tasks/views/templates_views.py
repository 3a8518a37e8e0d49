"""Template pages (S3): list, create/edit/delete with a parameter formset, the submit form."""

from __future__ import annotations

import json

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from servers.models import Server
from tasks import access, templating
from tasks.forms_templates import (
    ParameterFormSet,
    SubmitForm,
    TemplateForm,
    field_name,
    seed_field_name,
)
from tasks.models import ParameterType, Task, Team, Template, WorkflowVersion
from tasks.templating import expand_runs, known_models, preview_batch, suggest_parameters
from tasks.validation import CatalogueUnavailable, fetch_catalogue, validate_graph
from tasks.views.workflow_helpers import submit_and_report, submitted_redirect


def template_list(request: HttpRequest) -> HttpResponse:
    templates = Template.objects.for_user(request.user).select_related(
        "team", "workflow_version__workflow"
    )
    query = request.GET.get("q", "").strip()
    templates = templating.search(templates, query)
    context = {"templates": templates.order_by("name")[:500], "query": query}
    return render(request, "tasks/workflows/template_list.html", context)


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
    workflow = access.workflow_for(request.user, pk)
    access.require(workflow.team.can_submit(request.user), "create templates")
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
    template = access.template_for(request.user, pk)
    access.require(template.team.can_submit(request.user), "edit templates")
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
    return render(request, "tasks/workflows/template_form.html", context)


@require_http_methods(["GET", "POST"])
def template_delete(request: HttpRequest, pk: int) -> HttpResponse:
    template = access.template_for(request.user, pk)
    access.require(template.team.can_manage(request.user), "delete templates")
    workflow = template.workflow_version.workflow
    if request.method == "POST":
        template.delete()  # its tasks keep their graph and values (template is SET_NULL)
        messages.success(request, f"Template “{template.name}” deleted.")
        return redirect("tasks:workflow_detail", pk=workflow.pk)
    return render(request, "tasks/workflows/template_delete.html", {"template": template})


def _initial_values(request: HttpRequest, template: Template) -> dict:
    """Run again: initial values from the query (`?width=512&prompt=...`, as the
    gallery and task pages link) or from one of the user's tasks (`?task=<id>`)."""
    params = [p for p in template.parameters.all() if p.type != ParameterType.IMAGE]
    values: dict = {}
    task_id = request.GET.get("task", "")
    if task_id.isdigit():
        task = Task.objects.filter(
            pk=int(task_id), template=template, team__in=Team.objects.for_user(request.user)
        ).first()
        values = dict(task.params) if task is not None else {}
    values |= {p.name: request.GET[p.name] for p in params if p.name in request.GET}
    # Seeds no parameter sets are in a task's params as "<node>.<input>" (templating).
    seeds = templating.unbound_seeds(template)
    values |= {key: request.GET[key] for key in seeds if key in request.GET}
    initial = {field_name(p): values[p.name] for p in params if p.name in values}
    return initial | {seed_field_name(key): values[key] for key in seeds if key in values}


@require_http_methods(["GET", "POST"])
def template_submit(request: HttpRequest, pk: int) -> HttpResponse:
    """The template's page: its generated form; Preview renders, Submit queues."""
    template = access.template_for(request.user, pk)
    can_submit = template.team.can_submit(request.user)
    data = request.POST if request.method == "POST" else None
    initial = _initial_values(request, template) if data is None else {}
    form = SubmitForm(data, request.FILES or None, template=template, initial=initial)
    context = {
        "template": template,
        "form": form,
        "can_submit": can_submit,
        "can_manage": template.team.can_manage(request.user),
    }
    if data is not None and form.is_valid():
        version = template.workflow_version
        if request.POST.get("action") == "preview":
            preview = preview_batch(template, form.preview_values(), **form.batch_options())
            context["preview"] = preview
            context["preview_graph"] = json.dumps(preview.graph, indent=2)
        else:
            access.require(can_submit, "submit work")
            form.store_uploads()
            runs = expand_runs(template=template, values=form.values, **form.batch_options())
            report = validate_graph(runs[0].graph)
            if not report.valid:  # e.g. a template whose version changed under it
                messages.error(request, "Not queued: " + " ".join(report.all_messages()))
                return render(request, "tasks/workflows/template_detail.html", context)
            result = submit_and_report(
                request,
                team=template.team,
                runs=runs,
                version=version,
                template=template,
                priority=form.cleaned_data["priority"],
                description=f"{template.name}, {len(runs)} runs",
                form=form,
            )
            if result is None and form.errors:  # unrunnable, or a foreign upload
                return render(request, "tasks/workflows/template_detail.html", context, status=400)
            return submitted_redirect(request, result, fallback=("tasks:template_detail", pk))
    return render(request, "tasks/workflows/template_detail.html", context)
