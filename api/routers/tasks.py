"""Tasks and batches (S4, A2, A5, A6): submit, list, follow, cancel.

Submitting goes through the same steps as the workflow and template pages:
`expand_runs` makes the runs, `submit_runs` queues them (and checks the team),
`cancel_task`/`cancel_batch` cancel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal

from django.core.exceptions import PermissionDenied
from django.core.paginator import EmptyPage
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from ninja import Query, Router, Schema, Status
from pydantic import Field, create_model

from accounting.quotas import QuotaExceeded
from api import idempotency
from api.errors import ERRORS, ApiError, ErrorOut, invalid
from api.idempotency import IdempotencyKey
from api.lookup import PRIORITIES, PRIORITY_NAMES, team_to_create_in
from api.routers.templates import clean_params
from api.routers.usage import QuotaOut, quota_json
from api.schemas import Id, PathId, QueryId, Ref, ref
from fairness.limits import QueueLimitReached
from tasks import access, eta, listing, rerun, task_updates
from tasks import waiting as waits
from tasks.cancel import cancel_task
from tasks.models import Output, Task
from tasks.submission import SubmitResult, submit_runs
from teams.access import require
from webhooks import submissions as submission_webhooks
from workflows.access import template_for, workflow_for
from workflows.models import ParameterType, Template
from workflows.runnable import Unrunnable
from workflows.templating import MAX_RUNS, ValueList, clean_value, expand_runs, parameters_of
from workflows.validation import validate_graph

router = Router(tags=["tasks"])

PriorityName = Literal["low", "normal", "high", "urgent"]
StatusName = Literal["pending", "dispatched", "running", "completed", "failed", "canceled"]
PAGE_SIZE = 50


class Sweep(Schema):
    param: str = Field(description="A template parameter (not an image).")
    values: list[Any] = Field(
        min_length=1, max_length=MAX_RUNS, description="One run per value; nothing else changes."
    )


class TaskIn(Schema):
    workflow: Id | None = Field(None, description="Run this workflow's current version...")
    version: int | None = Field(None, description="...or this version number of it.")
    template: Id | None = Field(None, description="Run this template with `params`.")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description='By parameter name; "<node_id>.<input_name>" sets a seed no parameter '
        "sets. A task's `params` record every value set on its graph: given back, "
        "they run the same graph again.",
    )
    graph: dict[str, Any] | None = Field(None, description="Run this API-format graph.")
    team: Id | None = Field(None, description="For a graph, when you are in several teams.")
    priority: PriorityName = "normal"
    count: int = Field(
        1,
        ge=1,
        le=MAX_RUNS,
        description="Runs; if > 1 each draws fresh seeds (on the template's seed parameters, "
        'else on seeds no parameter sets, recorded as "<node_id>.<input_name>").',
    )
    sweep: Sweep | None = Field(None, description="Template only: one run per value.")
    description: str = Field("", max_length=200)
    webhook: str | None = Field(
        None,
        max_length=2048,
        description="Also tell this URL when each task ends (and the batch): signed with "
        "the team's submission secret (Standard Webhooks); see the Webhooks page.",
    )


class ProgressOut(Schema):
    """One definition (tasks/progress.py): fraction = (nodes done + the current
    node's value/max) / nodes in the graph; live, as the task page shows it."""

    fraction: float
    percent: int = Field(description="Of the whole graph, rounded down; 100 once completed.")
    summary: str = Field(description='E.g. "node 2 of 3 · step 38/150 · 41 % overall".')
    node: str | None = Field(description="The node running (or last run).")
    node_title: str | None
    node_type: str | None
    value: int = Field(description="The current node's step (a sampler's 38 of 150).")
    max: int
    nodes_done: int
    nodes_total: int


# "class" is a Python keyword: the schema is built so the field keeps that name.
TaskErrorOut = create_model(
    "TaskErrorOut",
    __base__=Schema,
    type=(str, ...),
    message=(str, ...),
    node_id=(str | None, ...),
    **{
        "class": (
            str | None,
            Field(
                None,
                description="validation, missing_model, out_of_memory, node_error, "
                "server_lost or interrupted: what kind of failure, and so whether it "
                "was retried (README: Retries that know the error)",
            ),
        )
    },
)


class OutputOut(Schema):
    id: int
    filename: str
    content_type: str
    width: int | None
    height: int | None
    size: int
    url: str


class TaskOut(Schema):
    id: int
    status: StatusName
    priority: PriorityName
    team: Ref
    workflow: Ref | None
    version: int | None
    template: Ref | None
    params: dict[str, Any]
    server: Ref | None
    prompt_id: str
    attempts: int
    max_attempts: int
    cancel_requested: bool
    progress: ProgressOut
    error: TaskErrorOut | None
    waiting_reason: str | None = Field(
        description="Why a pending task is not on a server yet (a paused queue, a retry "
        "backing off, no free or capable server), as its page shows; null when not known."
    )
    outputs: list[OutputOut]
    queue_position: int | None = Field(
        description="A pending task's place in the dispatch order (1: dispatched next); null "
        "once on a server, or while held back (a paused queue, a retry's backoff)."
    )
    eta_seconds: float | None = Field(
        description="Seconds until the task is expected to be done, from the servers' measured "
        "speeds and the work ahead of it (`tasks.eta`); null once ended or when no server can "
        "take work."
    )
    created_at: datetime
    dispatched_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    batch: int | None


class SubmittedOut(Schema):
    tasks: list[TaskOut]
    batch: int | None
    quota: QuotaOut | None = Field(
        None, description="The team's GPU quota this month, when it has one (80 % warnings)."
    )


class TaskPage(Schema):
    items: list[TaskOut]
    count: int
    page: int
    pages: int
    page_size: int


class TaskCancelOut(TaskOut):
    outcome: Literal["canceled", "requested", "finished", "unreachable"] = Field(
        description="canceled; requested (its server confirms later); finished (it had "
        "ended: nothing was canceled); unreachable (its server did not answer, retried later)"
    )


def output_json(output) -> dict[str, Any]:
    return {
        "id": output.pk,
        "filename": output.original_name or output.file.name.rsplit("/", 1)[-1],
        "content_type": output.content_type,
        "width": output.width,
        "height": output.height,
        "size": output.size,
        "url": reverse("api:output_file", args=[output.pk]),
    }


def task_json(
    task: Task,
    progress: task_updates.ProgressView | None = None,
    *,
    waiting: Mapping[int, str] | None = None,
    estimates: Mapping[int, eta.Estimate] | None = None,
) -> dict[str, Any]:
    """`progress`: the task's from `task_updates.progress_views` (a page of tasks at once);
    `waiting`: reasons from `tasks.waiting.reasons` and `estimates` from `tasks.eta.forecast`
    for the same page."""
    version = task.workflow_version
    progress = progress or task_updates.progress_view_from_task(task)
    now = timezone.now()
    estimate = (eta.forecast([task], now=now) if estimates is None else estimates).get(task.pk)
    return {
        "id": task.pk,
        "status": task.status,
        "priority": PRIORITY_NAMES[task.priority],
        "team": ref(task.team),
        "workflow": ref(version.workflow) if version else None,
        "version": version.number if version else None,
        "template": ref(task.template),
        "params": task.params,
        "server": ref(task.server),
        "prompt_id": task.prompt_id,
        "attempts": task.attempts,
        "max_attempts": task.max_attempts,
        "cancel_requested": task.cancel_requested,
        "progress": task_updates.progress_data(progress),
        "error": (
            {
                "type": task.error_type or "error",
                "message": task.error_message,
                "node_id": task.error_node or None,
                "class": task.error_class or None,
            }
            if task.error_type or task.error_message
            else None
        ),
        "waiting_reason": (waits.reasons([task]) if waiting is None else waiting).get(task.pk),
        "outputs": [output_json(o) for o in task.outputs.all()],
        "queue_position": estimate.queue_position if estimate else None,
        "eta_seconds": estimate.eta_seconds(now) if estimate else None,
        "created_at": task.created_at,
        "dispatched_at": task.dispatched_at,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
        "batch": task.batch_id,
    }


def _visible_tasks(user):
    return (
        Task.objects.for_user(user)
        .select_related("server", "team", "template", "workflow_version__workflow")
        .prefetch_related("outputs")
    )


def _list_rows(tasks):
    """A list page's rows, with their outputs (what `output_json` reads of them)."""
    outputs = Output.objects.only(
        "task_id", "original_name", "file", "content_type", "width", "height", "size"
    )
    return listing.rows(tasks).prefetch_related(Prefetch("outputs", queryset=outputs))


def _one_source(payload: TaskIn) -> str:
    given = [
        name for name in ("workflow", "template", "graph") if getattr(payload, name) is not None
    ]
    if len(given) != 1:
        raise invalid(
            [
                (
                    "request",
                    "Give exactly one of workflow, template or graph"
                    + (f"; got {', '.join(given)}." if given else "."),
                )
            ]
        )
    if payload.sweep is not None and given[0] != "template":
        raise invalid([("sweep", "A sweep sets a template parameter: give a template.")])
    if payload.sweep is not None and payload.count != 1:
        raise invalid([("count", "Give either count or sweep: a sweep makes one run per value.")])
    if payload.params and given[0] != "template":
        raise invalid([("params", "Parameters belong to a template: give a template.")])
    return given[0]


def _sweep(template: Template, sweep: Sweep) -> ValueList:
    params = {p.name: p for p in parameters_of(template)}
    param = params.get(sweep.param)
    if param is None or param.type == ParameterType.IMAGE:
        listable = ", ".join(n for n, p in params.items() if p.type != ParameterType.IMAGE)
        raise invalid(
            [("sweep.param", f"Sweep one of the template's parameters: {listable or 'none'}.")]
        )
    values, problems = [], []
    for index, raw in enumerate(sweep.values):
        try:
            values.append(clean_value(param, raw))
        except ValueError as exc:
            problems.append((f"sweep.values[{index}]", str(exc)))
    if problems:
        raise invalid(problems)
    return ValueList(param.name, values)


def _runs(request, payload: TaskIn, source: str):
    """(team, runs, version, template, description) for what the payload names."""
    if source == "workflow":
        workflow = workflow_for(request.user, payload.workflow)
        version = workflow.current_version
        if payload.version is not None:
            version = get_object_or_404(workflow.versions, number=payload.version)
        if version is None:
            raise ApiError(409, "This workflow has no version to run.")
        runs = expand_runs(graph=version.graph, count=payload.count)
        return workflow.team, runs, version, None, f"{workflow.name} v{version.number}"
    if source == "template":
        template = template_for(request.user, payload.template)
        values = clean_params(template, payload.params)
        if payload.sweep is not None:
            runs = expand_runs(
                template=template, values=values, value_list=_sweep(template, payload.sweep)
            )
        else:
            runs = expand_runs(template=template, values=values, count=payload.count)
        _check_graph(runs[0].graph)
        return template.team, runs, template.workflow_version, template, template.name
    team = team_to_create_in(request.user, payload.team)
    _check_graph(payload.graph)
    runs = expand_runs(graph=payload.graph, count=payload.count)
    return team, runs, None, None, "graph"


def _check_graph(graph: dict[str, Any]) -> None:
    report = validate_graph(graph)
    if not report.valid:
        raise invalid(
            [("graph", message) for message in report.all_messages()],
            errors=report.messages,
            node_errors=report.node_errors,
        )


@router.post(
    "/tasks",
    response={201: SubmittedOut, **ERRORS, **idempotency.ERRORS, 429: ErrorOut},
    summary="Submit work",
)
def submit(request, payload: TaskIn, idempotency_key: IdempotencyKey = None):
    """Exactly one of `workflow`, `template` (+ `params`) or `graph`; more than one run
    (`count` > 1 or a `sweep`) makes a batch. With an `Idempotency-Key`, sending the
    request again answers as the first time and submits nothing more."""
    return idempotency.once(
        request, idempotency_key, SubmittedOut, lambda: _submit(request, payload)
    )


def _submit(request, payload: TaskIn) -> Status:
    source = _one_source(payload)
    team, runs, version, template, label = _runs(request, payload, source)
    if not team.can_submit(request.user):
        raise PermissionDenied("Your role in this team does not allow you to submit work.")
    webhook = submission_webhooks.checked(team, payload.webhook)
    result = unless_unrunnable(
        lambda: submit_runs(
            team=team,
            submitter=request.user,
            runs=runs,
            workflow_version=version,
            template=template,
            priority=PRIORITIES[payload.priority],
            description=payload.description
            or f"{label}, {len(runs)} run{'s' if len(runs) != 1 else ''}",
        )
    )
    submission_webhooks.remember(result, webhook)
    return _submitted(request, result)


def unless_unrunnable[T](action: Callable[[], T]) -> T:
    """`action()`; work no enabled server can run is a 400 of type `unrunnable`,
    work past a queued limit a 429 of type `queue_limit` with the numbers."""
    try:
        return action()
    except Unrunnable as refused:
        raise ApiError(
            400, refused.message, type="unrunnable", details=refused.verdict.as_json()
        ) from refused
    except QuotaExceeded as spent:
        # The month's hard GPU quota is used: the numbers, and when it resets.
        raise ApiError(
            429, spent.message_text, type="quota_exceeded", details=spent.state.as_json()
        ) from spent
    except QueueLimitReached as full:
        raise ApiError(429, full.message_text, type="queue_limit", details=full.as_json()) from full


def _submitted(request, result: SubmitResult) -> Status:
    ids = [task.pk for task in result.tasks]
    tasks = sorted(_visible_tasks(request.user).filter(pk__in=ids), key=lambda t: ids.index(t.pk))
    estimates = eta.forecast(tasks)
    return Status(
        201,
        {
            "tasks": [task_json(t, estimates=estimates) for t in tasks],
            "batch": result.batch and result.batch.pk,
            "quota": quota_json(result.admission),
        },
    )


@router.get("/tasks", response={200: TaskPage, **ERRORS}, summary="List tasks, newest first")
def list_tasks(
    request,
    status: StatusName | None = None,
    batch: QueryId = None,
    priority: PriorityName | None = None,
    team: QueryId = None,
    page: int = Query(1, ge=1),
    page_size: int = Query(PAGE_SIZE, ge=1, le=200),
) -> dict[str, Any]:
    tasks = listing.visible_tasks(request.user)
    if status is not None:
        tasks = tasks.filter(status=status)
    if batch is not None:
        tasks = tasks.filter(batch_id=batch)
    if priority is not None:
        tasks = tasks.filter(priority=PRIORITIES[priority])
    if team is not None:
        tasks = tasks.filter(team_id=team)
    paginator = listing.TaskPaginator(tasks, page_size, rows_of=_list_rows)
    try:
        items = list(paginator.page(page))
    except EmptyPage:
        items = []  # past the end: an empty page, not an error, for simple loops
    progress = task_updates.progress_views(items)
    waiting = waits.reasons(items)
    estimates = eta.forecast(items)
    return {
        "items": [
            task_json(t, progress[t.pk], waiting=waiting, estimates=estimates) for t in items
        ],
        "count": paginator.count,
        "page": page,
        "pages": paginator.num_pages,
        "page_size": page_size,
    }


@router.get("/tasks/{task_id}", response={200: TaskOut, **ERRORS}, summary="One task")
def get_task(request, task_id: PathId) -> dict[str, Any]:
    return task_json(get_object_or_404(_visible_tasks(request.user), pk=task_id))


@router.post(
    "/tasks/{task_id}/cancel", response={200: TaskCancelOut, **ERRORS}, summary="Cancel a task"
)
def cancel(request, task_id: PathId) -> dict[str, Any]:
    """Pending: canceled at once. On a server: removed or interrupted there, and
    `canceled` once the server confirms (`cancel_requested` until then). A task
    that had already ended is left as it is (`outcome: finished`)."""
    task = access.task_for(request.user, task_id)
    require(task.team.can_submit(request.user), "cancel tasks")
    outcome = cancel_task(task.pk, by=request.user)
    task_updates.publish_task(task.pk)
    task = get_object_or_404(_visible_tasks(request.user), pk=task_id)
    return task_json(task) | {"outcome": outcome}


# -- Retry and Run again (issue 16): `tasks.rerun`, as on the task page ------------------


class RunAgainIn(Schema):
    new_seeds: bool = Field(
        False,
        description="Draw fresh seeds (on the inputs a batch of the same submission would "
        "re-seed) instead of running the stored graph with its own seeds.",
    )


@router.post(
    "/tasks/{task_id}/retry", response={200: TaskOut, **ERRORS, 409: ErrorOut}, summary="Retry"
)
def retry(request, task_id: PathId) -> dict[str, Any]:
    """A failed or canceled task goes back to pending in place: the same task, graph and
    seeds, its attempts counted afresh, its timeline kept. Any other state is a 409."""
    task = access.task_for(request.user, task_id)
    require(task.team.can_submit(request.user), "retry tasks")
    if task.status not in rerun.RETRYABLE:
        raise ApiError(
            409, f"Task {task.pk} is {task.status}: only failed or canceled tasks are retried."
        )
    unless_unrunnable(lambda: rerun.retry([task.pk], by=request.user))
    return task_json(get_object_or_404(_visible_tasks(request.user), pk=task_id))


@router.post(
    "/tasks/{task_id}/run-again",
    response={201: SubmittedOut, **ERRORS, **idempotency.ERRORS, 429: ErrorOut},
    summary="Run a task again",
)
def run_task_again(
    request,
    task_id: PathId,
    payload: RunAgainIn | None = None,
    idempotency_key: IdempotencyKey = None,
):
    """A new task with this task's stored graph (seeds included, unless `new_seeds`),
    team, workflow version, template and priority."""
    task = access.task_for(request.user, task_id)
    require(task.team.can_submit(request.user), "run tasks again")
    return run_again_once(request, [task.pk], payload, idempotency_key)


def run_again_once(
    request, task_ids: list[int], payload: RunAgainIn | None, key: str | None
) -> Status:
    """Run `task_ids` again (one task, or a batch's tasks): 201 with the new tasks, or
    the first answer again for an `Idempotency-Key` seen before."""
    new_seeds = bool(payload and payload.new_seeds)

    def create() -> Status:
        result = unless_unrunnable(
            lambda: rerun.run_again(task_ids, by=request.user, new_seeds=new_seeds)
        )
        return _submitted(request, result)

    return idempotency.once(request, key, SubmittedOut, create)
