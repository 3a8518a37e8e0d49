from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from teams.models import Team
from webhooks.addresses import validate_url
from webhooks.models import EVENT_CHOICES, EVENT_TYPES


class EndpointForm(forms.Form):
    team = forms.ModelChoiceField(queryset=Team.objects.none())
    url = forms.CharField(max_length=2048, label="URL")
    events = forms.MultipleChoiceField(
        choices=EVENT_CHOICES, initial=list(EVENT_TYPES), widget=forms.CheckboxSelectMultiple
    )
    description = forms.CharField(max_length=200, required=False)

    def __init__(self, *args, teams, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = teams
        if teams.count() == 1:
            self.fields["team"].initial = teams.first()

    def clean_url(self) -> str:
        try:
            return validate_url(self.cleaned_data["url"])
        except ValidationError as error:
            raise ValidationError(error.messages) from error
