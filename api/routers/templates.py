"""Templates (S3): saved through the pages' template form and parameter formset,
so a parameter is checked against the graph exactly as in the editor."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from django.db import transaction
from django.shortcuts import get_object_or_404
from ninja import Router, Schema, Status
from pydantic import Field

from api import idempotency
from api.errors import ERRORS, ApiError, form_problems, invalid
from api.idempotency import IdempotencyKey
from api.schemas import Id, PathId, QueryId, Ref, ref
from teams.access import require
from workflows import templating
from workflows.access import template_for, workflow_for
from workflows.forms.templates import ParameterFormSet, TemplateForm
from workflows.models import Template, WorkflowVersion

router = Router(tags=["templates"])

ParameterKind = Literal["int", "float", "text", "bool", "choice", "seed", "image"]
# Parameter form field -> API field.
PARAMETER_FIELDS = {
    "node_id": "node",
    "input_name": "input",
    "minimum": "min",
    "maximum": "max",
    "default_text": "default",
    "choices_text": "choices",
}


class ParameterIn(Schema):
    name: str = Field(min_length=1, max_length=64, description="Letters, digits, - and _.")
    node: str = Field(min_length=1, max_length=64, description="The node id in the graph.")
    input: str = Field(min_length=1, max_length=100, description="The node's input it sets.")
    type: ParameterKind
    default: Any = None
    min: float | None = None
    max: float | None = None
    choices: list[Any] | None = None
    label: str = Field("", max_length=100)
    help: str = Field("", max_length=300)


class ParameterOut(Schema):
    name: str
    label: str
    help: str
    node: str
    input: str
    type: ParameterKind
    default: Any = None
    min: float | None
    max: float | None
    choices: list[Any]


class TemplateOut(Schema):
    id: int
    name: str
    description: str
    team: Ref
    workflow: Ref
    version: int
    parameters: list[ParameterOut]
    created_at: datetime
    updated_at: datetime


class TemplateIn(Schema):
    workflow: Id
    version: int | None = Field(None, description="A version number; default the current one.")
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    parameters: list[ParameterIn] = []


class TemplatePatch(Schema):
    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = None
    version: int | None = Field(None, description="Move to another version of its workflow.")
    parameters: list[ParameterIn] | None = Field(None, description="Replaces all parameters.")


class PreviewIn(Schema):
    params: dict[str, Any] = {}


class PreviewOut(Schema):
    graph: dict[str, Any]
    params: dict[str, Any]
    changes: list[dict[str, Any]]


def template_json(template: Template) -> dict[str, Any]:
    version = template.workflow_version
    return {
        "id": template.pk,
        "name": template.name,
        "description": template.description,
        "team": ref(template.team),
        "workflow": ref(version.workflow),
        "version": version.number,
        "parameters": [
            {
                "name": p.name,
                "label": p.label,
                "help": p.help,
                "node": p.node_id,
                "input": p.input_name,
                "type": p.type,
                "default": p.default,
                "min": p.minimum,
                "max": p.maximum,
                "choices": list(p.choices or []),
            }
            for p in templating.parameters_of(template)
        ],
        "created_at": template.created_at,
        "updated_at": template.updated_at,
    }


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _parameter_rows(template: Template, parameters: list[ParameterIn]) -> dict[str, str]:
    """The formset's POST data: every existing parameter deleted, the given ones added."""
    prefix = ParameterFormSet.get_default_prefix()
    existing = list(template.parameters.values_list("pk", flat=True)) if template.pk else []
    data = {
        f"{prefix}-TOTAL_FORMS": str(len(existing) + len(parameters)),
        f"{prefix}-INITIAL_FORMS": str(len(existing)),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }
    for index, pk in enumerate(existing):
        data |= {f"{prefix}-{index}-id": str(pk), f"{prefix}-{index}-DELETE": "on"}
    for index, param in enumerate(parameters, start=len(existing)):
        row = {
            "name": param.name,
            "label": param.label,
            "help": param.help,
            "type": param.type,
            "node_id": param.node,
            "input_name": param.input,
            "minimum": "" if param.min is None else repr(param.min),
            "maximum": "" if param.max is None else repr(param.max),
            "default_text": "" if param.default is None else _as_text(param.default),
            "choices_text": "\n".join(_as_text(choice) for choice in param.choices or []),
        }
        data |= {f"{prefix}-{index}-{name}": value for name, value in row.items()}
    return data


def _save(template: Template, fields: dict[str, Any], parameters: list[ParameterIn] | None):
    form = TemplateForm(
        {"name": fields["name"], "description": fields["description"]},
        instance=template,
        team=template.team,
    )
    # All in one transaction: the old parameters are deleted first (so a new one may
    # reuse a name: the formset checks names against the table), and a refusal rolls
    # the deletion back.
    with transaction.atomic():
        formset = None
        if parameters is not None:
            if template.pk:
                template.parameters.all().delete()
            formset = ParameterFormSet(
                _parameter_rows(template, parameters),
                instance=template,
                form_kwargs={"graph": template.workflow_version.graph},
            )
        form_ok = form.is_valid()
        if not form_ok or (formset is not None and not formset.is_valid()):
            problems = list(form_problems(form))
            if formset is not None:
                skipped = formset.initial_form_count()
                for index, param_form in enumerate(formset.forms[skipped:]):
                    problems += form_problems(
                        param_form, rename=PARAMETER_FIELDS, prefix=f"parameters[{index}]."
                    )
                problems += [("parameters", message) for message in formset.non_form_errors()]
            raise invalid(problems)
        form.save()
        if formset is not None:
            formset.instance = template
            formset.save()  # in the order they were given (BaseParameterFormSet.save)


def _version(workflow, number: int | None) -> WorkflowVersion:
    if number is None:
        if workflow.current_version is None:
            raise ApiError(409, "This workflow has no version yet.")
        return workflow.current_version
    return get_object_or_404(workflow.versions, number=number)


@router.get("/templates", response={200: list[TemplateOut], **ERRORS}, summary="List templates")
def list_templates(request, q: str = "", workflow: QueryId = None) -> list[dict[str, Any]]:
    templates = Template.objects.for_user(request.user).select_related(
        "team", "workflow_version__workflow"
    )
    if workflow is not None:
        templates = templates.filter(workflow_version__workflow_id=workflow)
    templates = templating.search(templates, q).prefetch_related("parameters")
    return [template_json(t) for t in templates.order_by("name")[:500]]


@router.post(
    "/templates",
    response={201: TemplateOut, **ERRORS, **idempotency.ERRORS},
    summary="Create a template",
)
def create_template(request, payload: TemplateIn, idempotency_key: IdempotencyKey = None):
    return idempotency.once(
        request, idempotency_key, TemplateOut, lambda: _create_template(request, payload)
    )


def _create_template(request, payload: TemplateIn) -> Status:
    workflow = workflow_for(request.user, payload.workflow)
    require(workflow.team.can_submit(request.user), "create templates")
    template = Template(
        team=workflow.team,
        workflow_version=_version(workflow, payload.version),
        created_by=request.user,
    )
    _save(template, payload.model_dump(), payload.parameters)
    return Status(201, template_json(template_for(request.user, template.pk)))


@router.get(
    "/templates/{template_id}", response={200: TemplateOut, **ERRORS}, summary="One template"
)
def get_template(request, template_id: PathId) -> dict[str, Any]:
    return template_json(template_for(request.user, template_id))


@router.patch(
    "/templates/{template_id}", response={200: TemplateOut, **ERRORS}, summary="Change a template"
)
def update_template(request, template_id: PathId, payload: TemplatePatch) -> dict[str, Any]:
    template = template_for(request.user, template_id)
    require(template.team.can_submit(request.user), "edit templates")
    changes = payload.model_dump(exclude_unset=True)
    fields = {"name": template.name, "description": template.description} | {
        k: v for k, v in changes.items() if k in {"name", "description"}
    }
    parameters = payload.parameters
    if payload.version is not None:
        # Another version re-checks every parameter against its graph.
        template.workflow_version = _version(template.workflow_version.workflow, payload.version)
        if parameters is None:
            parameters = [ParameterIn(**p) for p in template_json(template)["parameters"]]
    _save(template, fields, parameters)
    return template_json(template_for(request.user, template.pk))


@router.delete("/templates/{template_id}", response={204: None, **ERRORS}, summary="Delete")
def delete_template(request, template_id: PathId):
    """Its tasks keep their graph and values."""
    template = template_for(request.user, template_id)
    require(template.team.can_manage(request.user), "delete templates")
    template.delete()
    return Status(204, None)


@router.post(
    "/templates/{template_id}/preview",
    response={200: PreviewOut, **ERRORS},
    summary="Render the graph for these values",
)
def preview_template(request, template_id: PathId, payload: PreviewIn) -> dict[str, Any]:
    template = template_for(request.user, template_id)
    values = clean_params(template, payload.params)
    graph = templating.render(template, values)
    return {
        "graph": graph,
        "params": values,
        "changes": templating.graph_diff(template.workflow_version.graph, graph),
    }


def clean_params(template: Template, raw: dict[str, Any]) -> dict[str, Any]:
    """Typed values with the defaults filled in, or a 400 naming every bad one.

    Besides parameter names, "<node_id>.<input_name>" pins a seed no parameter
    sets, as a task's `params` record it: a task's params given back reproduce it."""
    known = {p.name for p in templating.parameters_of(template)}
    seeds = set(templating.unbound_seeds(template))
    has = ", ".join(sorted(known)) or "none"
    if seeds:
        has += f"; and seeds no parameter sets: {', '.join(sorted(seeds))}"
    problems = [
        (f"params.{name}", f"The template has no parameter {name}; it has {has}.")
        for name in raw
        if name not in known | seeds
    ]
    values, errors = templating.clean_values(template, raw)
    problems += [(f"params.{name}", message) for name, message in errors.items()]
    if problems:
        raise invalid(problems)
    return values
