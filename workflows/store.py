"""Saving and finding workflows (S2): create, edit (a changed graph is a new version),
delete, search.

The pages and the API both save through here, after their form has checked the
input, so a version is numbered, made current and protected the same way.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from functools import reduce
from typing import Any

from django.db import transaction
from django.db.models import Count, Q, QuerySet

from workflows.models import Workflow, WorkflowVersion


class WorkflowInUse(Exception):
    """Deleting a workflow whose versions tasks ran (they keep a reference to the graph)."""


def create_workflow(
    *, team, name: str, description: str, tags: list[str], graph: dict[str, Any], user, note=""
) -> Workflow:
    with transaction.atomic():
        workflow = Workflow.objects.create(
            team=team, name=name, description=description, tags=tags, created_by=user
        )
        add_version(workflow, graph, user, note)
    return workflow


def update_workflow(
    workflow: Workflow,
    *,
    name: str,
    description: str,
    tags: list[str],
    graph: dict[str, Any] | None,
    user,
    note: str = "",
) -> WorkflowVersion | None:
    """Save the details; a graph that differs from the current one becomes a new version
    (returned). Metadata is not part of what runs, so it never makes a version."""
    with transaction.atomic():
        workflow.name, workflow.description, workflow.tags = name, description, tags
        workflow.save(update_fields=["name", "description", "tags", "updated_at"])
        current = workflow.current_version
        if graph is not None and (current is None or graph != current.graph):
            return add_version(workflow, graph, user, note)
    return None


def add_version(workflow: Workflow, graph: dict, user, note: str = "") -> WorkflowVersion:
    last = workflow.versions.order_by("-number").values_list("number", flat=True).first() or 0
    version = WorkflowVersion.objects.create(
        workflow=workflow, number=last + 1, graph=graph, note=note, created_by=user
    )
    workflow.current_version = version
    workflow.save(update_fields=["current_version", "updated_at"])
    return version


def tasks_using(workflow: Workflow) -> int:
    # Through the tasks' reverse relation (Task.workflow_version): no import of the tasks app.
    return workflow.versions.aggregate(tasks=Count("tasks"))["tasks"]


def delete_workflow(workflow: Workflow) -> None:
    """Delete it with its templates; refused while tasks reference one of its versions."""
    count = tasks_using(workflow)
    if count:
        raise WorkflowInUse(
            f"“{workflow.name}” cannot be deleted: {count} task{'s' if count != 1 else ''} "
            "ran its versions and keep a reference to the exact graph. Delete those tasks "
            "first, or keep the workflow."
        )
    with transaction.atomic():
        # Templates protect their version; they go with the workflow they belong to.
        workflow.team.templates.filter(workflow_version__workflow=workflow).delete()
        workflow.delete()


def search(workflows: QuerySet[Workflow], query: str) -> QuerySet[Workflow]:
    """Every word must match the name, description, tags or a node type."""
    return match_every_word(
        workflows, query, ["name", "description", "tags", "current_version__node_classes"]
    )


def match_every_word(rows: QuerySet, query: str, fields: Sequence[str]) -> QuerySet:
    """The rows in which each word of `query` is part of one of `fields` (any case).

    How the workflow and template lists search (templating.search is the other).
    """
    for word in query.split():
        rows = rows.filter(reduce(operator.or_, (Q(**{f"{f}__icontains": word}) for f in fields)))
    return rows
