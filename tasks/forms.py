"""Forms that submit work (S4, S3): run a workflow as it is, or a template's
generated form with its batch options."""

from __future__ import annotations

import pathlib
import uuid
from typing import Any

from django import forms
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile

from servers.requirements import SEED_INPUTS, SEED_MAX
from tasks.models import Priority
from workflows.models import ParameterType, Template, TemplateParameter
from workflows.templating import (
    MAX_RUNS,
    SeedSweep,
    ValueList,
    clean_value,
    parameters_of,
    unbound_seeds,
)
from workflows.uploads import upload_area


class RunForm(forms.Form):
    """Run a workflow's current version as it is: priority and how many times."""

    priority = forms.TypedChoiceField(choices=Priority.choices, coerce=int, initial=Priority.NORMAL)
    count = forms.IntegerField(
        min_value=1,
        max_value=1000,
        initial=1,
        help_text="Each run gets a fresh random seed when more than one.",
    )


_IMAGE_EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}


def field_name(param: TemplateParameter) -> str:
    return f"p_{param.name}"


def seed_field_name(key: str) -> str:
    """The field of a seed no parameter sets ("2.nonce" → "s_2.nonce")."""
    return f"s_{key}"


class SubmitForm(forms.Form):
    """Fields generated from a template's parameters, then priority and batch options."""

    priority = forms.TypedChoiceField(choices=Priority.choices, coerce=int, initial=Priority.NORMAL)
    mode = forms.ChoiceField(
        label="Runs",
        choices=[
            ("count", "Run N times"),
            ("sweep", "Seed sweep: N runs, seeds start … start+N-1"),
            ("list", "One run per value of a parameter"),
        ],
        initial="count",
        widget=forms.RadioSelect,
    )
    count = forms.IntegerField(
        label="N",
        min_value=1,
        max_value=MAX_RUNS,
        initial=1,
        help_text="With N > 1, “Run N times” gives every run a fresh random seed; "
        "one run per value changes only that parameter.",
    )
    sweep_parameter = forms.ChoiceField(label="Seed parameter", required=False)
    sweep_start = forms.IntegerField(
        label="First seed", required=False, min_value=0, max_value=SEED_MAX
    )
    list_parameter = forms.ChoiceField(label="Parameter", required=False)
    list_values = forms.CharField(
        label="Values",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One value per line.",
    )

    def __init__(self, *args, template: Template, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.template = template
        self.params = parameters_of(template)
        generated = {field_name(p): _field_for(p) for p in self.params}
        graph = template.workflow_version.graph
        self.seed_keys = list(unbound_seeds(template))
        pinned = {
            seed_field_name(key): _seed_field(graph, *target)
            for key, target in unbound_seeds(template).items()
        }
        self.fields = generated | pinned | self.fields
        seeds = [(p.name, p.label or p.name) for p in self.params if p.type == ParameterType.SEED]
        listable = [
            (p.name, p.label or p.name) for p in self.params if p.type != ParameterType.IMAGE
        ]
        self.fields["sweep_parameter"].choices = seeds
        self.fields["list_parameter"].choices = listable
        if not seeds:
            # No seed parameter, no sweep: the form offers only what can run.
            self.fields["mode"].choices = [
                c for c in self.fields["mode"].choices if c[0] != "sweep"
            ]
            del self.fields["sweep_parameter"], self.fields["sweep_start"]
        self.values: dict[str, Any] = {}

    def parameter_fields(self) -> list[forms.BoundField]:
        return [self[field_name(p)] for p in self.params]

    def seed_fields(self) -> list[forms.BoundField]:
        """Seeds of the graph no parameter sets: blank keeps the version's value."""
        return [self[seed_field_name(key)] for key in self.seed_keys]

    def batch_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if not name.startswith(("p_", "s_"))]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        for param in self.params:
            name = field_name(param)
            if name not in cleaned:
                continue  # the field's own validation failed
            raw = cleaned[name]
            if param.type == ParameterType.IMAGE:
                # No file posted: the field gives back its initial, the default.
                if isinstance(raw, UploadedFile):
                    self.values[param.name] = {"upload": None, "file": raw}
                    continue
                raw = param.default
            elif raw is None or (raw == "" and param.type != ParameterType.TEXT):
                raw = param.default  # left blank: the template's default
            try:
                self.values[param.name] = clean_value(param, raw)
            except ValueError as exc:
                self.add_error(name, str(exc))
        for key in self.seed_keys:
            if cleaned.get(seed_field_name(key)) is not None:
                self.values[key] = cleaned[seed_field_name(key)]
        self._clean_batch(cleaned)
        return cleaned

    def _clean_batch(self, cleaned: dict[str, Any]) -> None:
        mode = cleaned.get("mode")
        if mode == "sweep":
            if not cleaned.get("sweep_parameter"):
                self.add_error("sweep_parameter", "Choose the seed parameter to sweep.")
            if cleaned.get("sweep_start") is None:
                self.add_error("sweep_start", "Enter the first seed.")
            else:
                self._clean_sweep_range(cleaned)
        elif mode == "list":
            by_name = {p.name: p for p in self.params}
            param = by_name.get(cleaned.get("list_parameter", ""))
            lines = [v for v in cleaned.get("list_values", "").splitlines() if v.strip()]
            if param is None:
                self.add_error("list_parameter", "Choose the parameter the values are for.")
            elif not lines:
                self.add_error("list_values", "Enter at least one value, one per line.")
            elif len(lines) > MAX_RUNS:
                self.add_error("list_values", f"At most {MAX_RUNS} values.")
            else:
                values, problems = [], []
                for number, line in enumerate(lines, 1):
                    text = line if param.type == ParameterType.TEXT else line.strip()
                    try:
                        values.append(clean_value(param, text))
                    except ValueError as exc:
                        problems.append(f"Line {number} ({line.strip()}): {exc}")
                if problems:
                    self.add_error("list_values", problems)
                cleaned["value_list"] = ValueList(param.name, values)

    def _clean_sweep_range(self, cleaned: dict[str, Any]) -> None:
        """Every seed start … start+N-1 must be one the parameter takes."""
        param = next((p for p in self.params if p.name == cleaned.get("sweep_parameter")), None)
        count = cleaned.get("count")
        if param is None or count is None:
            return
        first, last = cleaned["sweep_start"], cleaned["sweep_start"] + count - 1
        for seed in (first, last):
            try:
                clean_value(param, seed)
            except ValueError as exc:
                self.add_error("sweep_start", f"The sweep runs seeds {first} … {last}: {exc}")
                return

    def batch_options(self) -> dict[str, Any]:
        """Keyword arguments of `expand_runs` for the chosen batch mode."""
        data = self.cleaned_data
        if data["mode"] == "sweep":
            return {
                "count": data["count"],
                "sweep": SeedSweep(data["sweep_parameter"], data["sweep_start"]),
            }
        if data["mode"] == "list":
            return {"value_list": data["value_list"]}
        return {"count": data["count"]}

    def store_uploads(self) -> None:
        """Save uploaded images under uploads/team-<id>/ with generated names (never theirs)."""
        for name, value in self.values.items():
            if isinstance(value, dict) and value.get("file") is not None:
                upload = value.pop("file")
                image = getattr(upload, "image", None)
                suffix = _IMAGE_EXTENSIONS.get(getattr(image, "format", ""), ".png")
                generated = f"{uuid.uuid4().hex}{suffix}"
                path = default_storage.save(
                    f"{upload_area(self.template.team_id)}{generated}", upload
                )
                value.update(upload=path, name=pathlib.PurePosixPath(path).name)
                self.values[name] = value

    def preview_values(self) -> dict[str, Any]:
        """Values for a preview: an image not yet stored shows as a placeholder name."""
        shown = dict(self.values)
        for name, value in shown.items():
            if isinstance(value, dict) and value.get("file") is not None:
                shown[name] = {"upload": "(stored on submit)", "name": value["file"].name}
        return shown


def _field_for(param: TemplateParameter) -> forms.Field:
    common = {
        "label": param.label or param.name.replace("_", " ").capitalize(),
        "help_text": param.help,
        "initial": param.default,
    }
    required = param.default is None
    low = param.minimum
    high = param.maximum
    if param.type in (ParameterType.INT, ParameterType.SEED):
        is_seed = param.type == ParameterType.SEED or param.input_name in SEED_INPUTS
        if is_seed:  # ComfyUI refuses a seed outside 0 … 2**64-1, but only once sent
            low = 0 if low is None else max(low, 0)
            high = SEED_MAX if high is None else min(high, SEED_MAX)
        return forms.IntegerField(
            required=required,
            min_value=int(low) if low is not None else None,
            max_value=int(high) if high is not None else None,
            **common,
        )
    if param.type == ParameterType.FLOAT:
        return forms.FloatField(
            required=required,
            min_value=low,
            max_value=high,
            widget=forms.NumberInput(attrs={"step": "any"}),
            **common,
        )
    if param.type == ParameterType.BOOL:
        return forms.BooleanField(required=False, **common)
    if param.type == ParameterType.CHOICE:
        choices = [(str(c), str(c)) for c in param.choices]
        common["initial"] = None if param.default is None else str(param.default)
        return forms.ChoiceField(choices=choices, required=required, **common)
    if param.type == ParameterType.IMAGE:
        return forms.ImageField(required=param.default in (None, ""), **common)
    long_text = param.input_name == "text" or len(str(param.default or "")) > 60
    widget = forms.Textarea(attrs={"rows": 3}) if long_text else forms.TextInput()
    return forms.CharField(required=False, strip=False, widget=widget, **common)


def _seed_field(graph: dict[str, Any], node_id: str, input_name: str) -> forms.IntegerField:
    node = graph[node_id]
    return forms.IntegerField(
        label=f"{input_name} of node {node_id} ({node.get('class_type', '')})",
        required=False,
        min_value=0,
        max_value=SEED_MAX,
        help_text=f"Blank: {node['inputs'][input_name]}, the version's own "
        "(with “Run N times”, a fresh seed per run).",
    )
