"""The work a team does: teams, workflows and templates, tasks and the queue, outputs."""

from __future__ import annotations

from tasks.models.outputs import Output
from tasks.models.teams import Membership, Role, Team, TeamQuerySet
from tasks.models.work import Batch, Priority, QueuePause, Status, Task, TaskEvent
from tasks.models.workflows import (
    ParameterType,
    Template,
    TemplateParameter,
    Workflow,
    WorkflowVersion,
)

__all__ = [
    "Batch",
    "Membership",
    "Output",
    "ParameterType",
    "Priority",
    "QueuePause",
    "Role",
    "Status",
    "Task",
    "TaskEvent",
    "Team",
    "TeamQuerySet",
    "Template",
    "TemplateParameter",
    "Workflow",
    "WorkflowVersion",
]
