"""Looking up workflows and templates for a user: another team's are a 404, exactly
like missing ones (no existence leak)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404

from workflows.models import Template, Workflow


def workflow_for(user, pk: int) -> Workflow:
    queryset = Workflow.objects.for_user(user).select_related("team", "current_version")
    return get_object_or_404(queryset, pk=pk)


def template_for(user, pk: int) -> Template:
    queryset = Template.objects.for_user(user).select_related("team", "workflow_version__workflow")
    return get_object_or_404(queryset.prefetch_related("parameters"), pk=pk)
