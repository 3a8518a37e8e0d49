"""The server form the API saves through, so model validation (URL, weight, tags) applies."""

from __future__ import annotations

from django import forms

from servers.models import Server

EDITABLE = [
    "name",
    "base_url",
    "kind",
    "enabled",
    "is_primary",
    "priority",
    "weight",
    "max_inflight",
    "tags",
]


class ServerForm(forms.ModelForm):
    class Meta:
        model = Server
        fields = EDITABLE

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Omitted fields keep the model's defaults (create) or current values (edit).
        for field in self.fields.values():
            field.required = field.required and not isinstance(field, forms.BooleanField)
