"""The limits page's two forms: the team's limits, and one member's override."""

from __future__ import annotations

from django import forms

from fairness.models import TeamLimits


class TeamLimitsForm(forms.ModelForm):
    class Meta:
        model = TeamLimits
        fields = ["max_running", "max_queued", "user_max_running", "user_max_queued"]
        labels = {
            "max_running": "Team: running at once",
            "max_queued": "Team: waiting",
            "user_max_running": "Each member: running at once",
            "user_max_queued": "Each member: waiting",
        }


class UserLimitForm(forms.Form):
    """Blank in both fields removes the member's override (the team's default applies)."""

    user = forms.ModelChoiceField(queryset=None, label="Member")
    max_running = forms.IntegerField(min_value=0, required=False, label="Running at once")
    max_queued = forms.IntegerField(min_value=0, required=False, label="Waiting")

    def __init__(self, *args, team, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["user"].queryset = team.members.order_by("username")
