"""Workflows (S2) and templates (S3): what a team can run.

A workflow's graph never changes once saved: editing makes a new
`WorkflowVersion`, and tasks point at the exact version they ran. A template
binds named, typed parameters to inputs of one version's nodes.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from servers.requirements import requirements_from_graph
from teams.models import Team, TeamScopedQuerySet


class TeamNamedModel(models.Model):
    """What a workflow and a template share: a name unique within its team, who made it, when.

    Each model declares its own `team`, whose related name (`team.workflows`,
    `team.templates`) the migrations record as written. `%(class)s` gives each its
    own constraint name (`unique_workflow_name_per_team`).
    """

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TeamScopedQuerySet.as_manager()

    class Meta:
        abstract = True
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="unique_%(class)s_name_per_team")
        ]

    def __str__(self) -> str:
        return self.name


class Workflow(TeamNamedModel):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="workflows")
    tags = models.JSONField(default=list, blank=True)
    current_version = models.ForeignKey(
        "WorkflowVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta(TeamNamedModel.Meta):
        db_table = "tasks_workflow"  # created by the tasks app, whose table names it keeps


class WorkflowVersion(models.Model):
    """One immutable API-format graph of a workflow, with what it needs from a server."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    graph = models.JSONField()
    # Derived from the graph on creation (servers.requirements): for search,
    # the detail page, and the balancer's capability check.
    node_classes = models.JSONField(default=list)
    model_files = models.JSONField(default=list)  # [[folder, file name], ...]
    workflow_key = models.CharField(max_length=64, db_index=True)
    note = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "tasks_workflowversion"  # created by the tasks app, whose table names it keeps
        ordering = ["workflow", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "number"], name="unique_version_number")
        ]

    def __str__(self) -> str:
        return f"{self.workflow} v{self.number}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise ValidationError("A workflow version is immutable; save a new version instead.")
        needs = requirements_from_graph(self.graph)
        self.node_classes = sorted(needs.node_classes)
        self.model_files = sorted([list(pair) for pair in needs.model_files])
        self.workflow_key = needs.workflow_key
        super().save(*args, **kwargs)


class ParameterType(models.TextChoices):
    INT = "int", "Whole number"
    FLOAT = "float", "Number"
    TEXT = "text", "Text"
    BOOL = "bool", "Yes/no"
    CHOICE = "choice", "Choice"
    SEED = "seed", "Seed"
    IMAGE = "image", "Image upload"


class Template(TeamNamedModel):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="templates")
    workflow_version = models.ForeignKey(
        WorkflowVersion, on_delete=models.PROTECT, related_name="templates"
    )

    class Meta(TeamNamedModel.Meta):
        db_table = "tasks_template"  # created by the tasks app, whose table names it keeps


class TemplateParameter(models.Model):
    """A named input of a template, bound to `inputs[input_name]` of node `node_id`."""

    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="parameters")
    name = models.SlugField(max_length=64)
    label = models.CharField(max_length=100, blank=True)
    help = models.CharField(max_length=300, blank=True)
    node_id = models.CharField(max_length=64)
    input_name = models.CharField(max_length=100)
    type = models.CharField(max_length=10, choices=ParameterType.choices)
    default = models.JSONField(null=True, blank=True)
    minimum = models.FloatField(null=True, blank=True)
    maximum = models.FloatField(null=True, blank=True)
    choices = models.JSONField(default=list, blank=True)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        db_table = "tasks_templateparameter"  # created by the tasks app, whose table names it keeps
        ordering = ["template", "position", "name"]
        constraints = [
            models.UniqueConstraint(fields=["template", "name"], name="unique_parameter_name")
        ]

    def __str__(self) -> str:
        return f"{self.template}: {self.name} → {self.node_id}.{self.input_name}"
