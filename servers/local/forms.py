"""The form staff fill in to add or change a local instance on its pages.

The model's validators do the checking (the admin and the API use the same ones);
this form only turns what people type into the model's JSON fields: arguments as
a shell would split them, environment as NAME=value lines, GPUs separated by
commas. Launcher-written fields are never on it.
"""

from __future__ import annotations

import shlex

from django import forms
from django.core.exceptions import ValidationError

from servers.local.models import CONFIGURATION_FIELDS, LocalInstance

MONO = {"spellcheck": "false", "autocomplete": "off", "class": "mono"}


class ShellWordsField(forms.CharField):
    """A list of strings typed as one line, quoted as in a shell."""

    def prepare_value(self, value):
        return shlex.join(value) if isinstance(value, list) else value

    def to_python(self, value) -> list[str]:
        try:
            return shlex.split(super().to_python(value) or "")
        except ValueError as exc:  # an unclosed quote
            raise ValidationError(f"Arguments: {exc}.", code="quoting") from exc


class EnvironmentField(forms.CharField):
    """A mapping typed as NAME=value lines (blank lines skipped)."""

    widget = forms.Textarea(attrs={"rows": 3, **MONO})

    def prepare_value(self, value):
        if isinstance(value, dict):
            return "\n".join(f"{name}={text}" for name, text in value.items())
        return value

    def to_python(self, value) -> dict[str, str]:
        environment: dict[str, str] = {}
        for number, line in enumerate((super().to_python(value) or "").splitlines(), 1):
            if not line.strip():
                continue
            name, equals, text = line.partition("=")
            if not equals or not name.strip():
                raise ValidationError(f"Line {number} is not NAME=value.", code="line")
            environment[name.strip()] = text
        return environment


class CommaListField(forms.CharField):
    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list) else value

    def to_python(self, value) -> list[str]:
        text = super().to_python(value) or ""
        return [part.strip() for part in text.split(",") if part.strip()]


class LocalInstanceForm(forms.ModelForm):
    args = ShellWordsField(
        label="Extra arguments",
        required=False,
        widget=forms.TextInput(attrs=MONO),
        help_text="Passed to main.py after the launcher's own flags, quoted as in a shell: "
        "--lowvram --preview-method auto",
    )
    environment = EnvironmentField(
        required=False, help_text="One NAME=value per line, added to a minimal environment."
    )
    gpus = CommaListField(
        label="GPU device ids",
        required=False,
        help_text="CUDA_VISIBLE_DEVICES, separated by commas (0, 1); empty: whatever the "
        "machine gives.",
    )

    class Meta:
        model = LocalInstance
        fields = CONFIGURATION_FIELDS
        widgets = {
            "comfyui_dir": forms.TextInput(attrs={"placeholder": "/opt/ComfyUI", **MONO}),
            "start_script": forms.TextInput(attrs=MONO),
            "python": forms.TextInput(attrs=MONO),
        }
