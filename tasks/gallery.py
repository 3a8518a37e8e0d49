"""The gallery's query: a team's outputs, filtered the way the page offers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django import forms
from django.db.models import QuerySet
from django.utils import timezone

from tasks.models import Output, Status
from teams.models import Team
from workflows.models import Template, Workflow


def _any(model, label: str) -> forms.ModelChoiceField:
    # "Any team", not Django's "---------": an empty choice means no filter.
    return forms.ModelChoiceField(
        queryset=model.objects.none(), required=False, empty_label=f"Any {label}"
    )


def _day(label: str) -> forms.DateField:
    return forms.DateField(
        label=label, required=False, widget=forms.DateInput(attrs={"type": "date"})
    )


class GalleryFilter(forms.Form):
    team = _any(Team, "team")
    workflow = _any(Workflow, "workflow")
    template = _any(Template, "template")
    status = forms.ChoiceField(
        label="Task status", choices=[("", "Any status"), *Status.choices], required=False
    )
    since = _day("From")
    until = _day("Until")

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        teams = Team.objects.for_user(user)
        self.fields["team"].queryset = teams
        self.fields["workflow"].queryset = Workflow.objects.filter(team__in=teams)
        self.fields["template"].queryset = Template.objects.filter(team__in=teams)

    def clean(self) -> dict:
        cleaned = super().clean()
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            raise forms.ValidationError("The start date is after the end date.")
        return cleaned


@dataclass(frozen=True)
class GalleryQuery:
    outputs: QuerySet[Output]
    form: GalleryFilter


def gallery_for(user, params, *, after: int = 0) -> GalleryQuery:
    """Outputs `user` may see, narrowed by the valid filters in `params`; with
    `after`, only those newer than that output (what arrived since a page loaded)."""
    form = GalleryFilter(params or None, user=user)
    outputs = (
        Output.objects.for_user(user)
        .select_related("task", "team", "task__template", "task__workflow_version__workflow")
        .order_by("-created_at", "-pk")
    )
    if after:
        outputs = outputs.filter(pk__gt=after)
    if form.is_valid():
        data = form.cleaned_data
        if data["team"]:
            outputs = outputs.filter(team=data["team"])
        if data["workflow"]:
            outputs = outputs.filter(task__workflow_version__workflow=data["workflow"])
        if data["template"]:
            outputs = outputs.filter(task__template=data["template"])
        if data["status"]:
            outputs = outputs.filter(task__status=data["status"])
        if data["since"]:
            outputs = outputs.filter(created_at__gte=_day_start(data["since"]))
        if data["until"]:
            outputs = outputs.filter(created_at__lt=_day_start(data["until"], next_day=True))
    return GalleryQuery(outputs, form)


def _day_start(day: date, *, next_day: bool = False) -> datetime:
    start = timezone.make_aware(datetime.combine(day, time.min))
    return start + timedelta(days=1) if next_day else start
