"""Submitting work from the pages (S3, S4): run a workflow's version as it is, or
fill a template's generated form; the outcome becomes a flash message."""

from __future__ import annotations

import json
from collections.abc import Sequence

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.forms import Form
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_http_methods, require_POST

from tasks.forms import RunForm, SubmitForm, field_name, seed_field_name
from tasks.models import Priority, Task
from tasks.submission import SubmitResult, submit_runs
from teams.access import require
from teams.models import Team
from workflows.access import template_for, workflow_for
from workflows.models import ParameterType, Template, WorkflowVersion
from workflows.runnable import Unrunnable
from workflows.templating import Run, expand_runs, preview_batch, unbound_seeds
from workflows.uploads import ForbiddenUpload
from workflows.validation import validate_graph
from workflows.views.workflows import detail_context, version_from_post


@require_POST
def workflow_run(request: HttpRequest, pk: int) -> HttpResponse:
    workflow = workflow_for(request.user, pk)
    require(workflow.team.can_submit(request.user), "run workflows")
    form = RunForm(request.POST)
    version = version_from_post(request, workflow)
    if not form.is_valid():
        context = detail_context(request, workflow, run_form=form)
        return render(request, "workflows/detail.html", context, status=400)
    runs = expand_runs(graph=version.graph, count=form.cleaned_data["count"])
    result = submit_and_report(
        request,
        team=workflow.team,
        runs=runs,
        version=version,
        priority=form.cleaned_data["priority"],
        description=f"{workflow.name} v{version.number}, {len(runs)} runs",
        form=form,
    )
    if result is None and form.errors:  # unrunnable, or a foreign upload: say so beside the form
        context = detail_context(request, workflow, run_form=form)
        return render(request, "workflows/detail.html", context, status=400)
    return submitted_redirect(request, result, fallback=("workflows:workflow_detail", workflow.pk))


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
    seeds = unbound_seeds(template)
    values |= {key: request.GET[key] for key in seeds if key in request.GET}
    initial = {field_name(p): values[p.name] for p in params if p.name in values}
    return initial | {seed_field_name(key): values[key] for key in seeds if key in values}


@require_http_methods(["GET", "POST"])
def template_submit(request: HttpRequest, pk: int) -> HttpResponse:
    """The template's page: its generated form; Preview renders, Submit queues."""
    template = template_for(request.user, pk)
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
            require(can_submit, "submit work")
            form.store_uploads()
            runs = expand_runs(template=template, values=form.values, **form.batch_options())
            report = validate_graph(runs[0].graph)
            if not report.valid:  # e.g. a template whose version changed under it
                messages.error(request, "Not queued: " + " ".join(report.all_messages()))
                return render(request, "tasks/template_submit.html", context)
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
                return render(request, "tasks/template_submit.html", context, status=400)
            return submitted_redirect(request, result, fallback=("tasks:template_detail", pk))
    return render(request, "tasks/template_submit.html", context)


def submit_and_report(
    request: HttpRequest,
    *,
    team,
    runs: Sequence[Run],
    version: WorkflowVersion,
    template: Template | None = None,
    priority: int = Priority.NORMAL,
    description: str = "",
    form: Form | None = None,
) -> SubmitResult | None:
    """Queue the runs; the outcome becomes a flash message. None if refused.

    Work no server can run, or a graph naming a file that is not one of the
    team's uploads, is refused as an error of `form`, when given, so the page
    shows it next to what was submitted (a 400).
    """
    try:
        result = submit_runs(
            team=team,
            submitter=request.user,
            runs=runs,
            workflow_version=version,
            template=template,
            priority=priority,
            description=description,
        )
    except (Unrunnable, ForbiddenUpload) as refused:
        if form is None:
            messages.error(request, f"Not queued: {refused.message}")
        else:
            form.add_error(None, f"Not queued: {refused.message}")
        return None
    except (PermissionDenied, ValidationError) as exc:
        messages.error(request, f"Not queued: {_reason(exc)}")
        return None
    count = len(result.tasks)
    label = Priority(result.tasks[0].priority).label.lower()  # the GPU quota may lower it
    if result.batch is not None:
        messages.success(request, f"Queued a batch of {count} tasks at {label} priority.")
    else:
        messages.success(request, f"Queued 1 task at {label} priority.")
    if result.admission is not None:
        for said in filter(None, [result.admission.note, *result.admission.warnings]):
            messages.warning(request, said[0].upper() + said[1:] + ".")
    return result


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return str(exc)


def submitted_redirect(
    request: HttpRequest, result: SubmitResult | None, *, fallback: tuple[str, int]
) -> HttpResponse:
    """After a submit: the task list when the tasks area has one, else back where we were."""
    if result is not None:
        try:
            return redirect(reverse("tasks:tasks"))
        except NoReverseMatch:
            pass
    return redirect(fallback[0], pk=fallback[1])
