"""The account page's form for a new API token."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import forms
from django.utils import timezone

EXPIRY_CHOICES = [("30", "30 days"), ("90", "90 days"), ("365", "1 year"), ("", "Never")]


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="What uses it, e.g. “render farm CI”.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    # A select of days, not a date: nobody needs a token that dies on a given Tuesday.
    expires_in_days = forms.TypedChoiceField(
        label="Expires",
        choices=EXPIRY_CHOICES,
        coerce=int,
        empty_value=None,
        required=False,
        initial="90",
    )

    def expires_at(self, now: datetime | None = None) -> datetime | None:
        days = self.cleaned_data.get("expires_in_days")
        if days is None:
            return None
        return (now or timezone.now()) + timedelta(days=days)
