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


class GalleryFilter(forms.Form):
    team = forms.ModelChoiceField(queryset=Team.objects.none(), required=False)
    workflow = forms.ModelChoiceField(queryset=Workflow.objects.none(), required=False)
    template = forms.ModelChoiceField(queryset=Template.objects.none(), required=False)
    status = forms.ChoiceField(choices=[("", "Any status"), *Status.choices], required=False)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

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


def gallery_for(user, params) -> GalleryQuery:
    """Outputs `user` may see, narrowed by the valid filters in `params`."""
    form = GalleryFilter(params or None, user=user)
    outputs = (
        Output.objects.for_user(user)
        .select_related("task", "team", "task__template", "task__workflow_version__workflow")
        .order_by("-created_at", "-pk")
    )
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
