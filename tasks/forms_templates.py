"""Forms of templates (S3): the template and its parameters, and the generated submit form."""

from __future__ import annotations

import json
import pathlib
import uuid
from typing import Any

from django import forms
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.forms.models import BaseInlineFormSet, inlineformset_factory

from servers.requirements import SEED_INPUTS, SEED_MAX
from tasks.models import ParameterType, Priority, Template, TemplateParameter
from tasks.templating import (
    MAX_RUNS,
    SeedSweep,
    ValueList,
    clean_value,
    node_order,
    parameters_of,
    unbound_seeds,
)
from tasks.uploads import upload_area


class TemplateForm(forms.ModelForm):
    class Meta:
        model = Template
        fields = ["name", "description"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, team, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.team = team

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        clash = Template.objects.filter(team=self.team, name__iexact=name)
        if self.instance.pk:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise forms.ValidationError(f"{self.team} already has a template named “{name}”.")
        return name


def parse_choices(text: str) -> list[Any]:
    """One choice per line; numbers stay numbers (a ComfyUI INT input wants 255, not "255")."""
    choices: list[Any] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            value = json.loads(line)
        except ValueError:  # not JSON, or a number too long for Python to read
            value = line
        if isinstance(value, list | dict) or value is None:
            value = line
        if value not in choices:
            choices.append(value)
    return choices


class InputSelect(forms.Select):
    """The literal inputs of every node, one group per node; each option names its
    node (data-node) so static/js/template_editor.js can offer the chosen node's only."""

    group_nodes: dict[str, str]

    def optgroups(self, name, value, attrs=None):
        groups = super().optgroups(name, value, attrs)
        for group_name, options, _index in groups:
            node_id = getattr(self, "group_nodes", {}).get(group_name)
            for option in options if node_id is not None else []:
                option["attrs"]["data-node"] = node_id
        return groups


def _literal_inputs(node: dict[str, Any]) -> list[str]:
    """A node's inputs that hold a value (a link, [node_id, output], is no parameter)."""
    inputs = node.get("inputs")
    if not isinstance(inputs, dict):
        return []
    return sorted(n for n, v in inputs.items() if not isinstance(v, list))


def _node_label(node_id: str, node: Any) -> str:
    class_type = node.get("class_type", "") if isinstance(node, dict) else ""
    return f"{node_id} · {class_type}"


class TemplateParameterForm(forms.ModelForm):
    default_text = forms.CharField(
        label="Default", required=False, widget=forms.TextInput(attrs={"size": 14})
    )
    choices_text = forms.CharField(
        label="Choices",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 18}),
        help_text="One per line.",
    )

    class Meta:
        model = TemplateParameter
        fields = ["name", "label", "type", "node_id", "input_name", "minimum", "maximum", "help"]
        widgets = {
            "name": forms.TextInput(attrs={"size": 12}),
            "label": forms.TextInput(attrs={"size": 14}),
            "node_id": forms.Select(attrs={"class": "param-node"}),
            "input_name": InputSelect(attrs={"class": "param-input"}),
            "minimum": forms.NumberInput(attrs={"step": "any", "class": "narrow"}),
            "maximum": forms.NumberInput(attrs={"step": "any", "class": "narrow"}),
            "help": forms.TextInput(attrs={"size": 18}),
        }

    def __init__(self, *args, graph: dict[str, Any], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.graph = graph
        source = self.instance if self.instance.pk else None
        default = source.default if source else self.initial.get("default")
        choices = source.choices if source else self.initial.get("choices") or []
        if default is not None:
            text = default if isinstance(default, str) else json.dumps(default)
            self.initial.setdefault("default_text", text)
        if choices:
            self.initial.setdefault("choices_text", "\n".join(map(str, choices)))
        self._offer_graph()

    def _offer_graph(self) -> None:
        """Node and input are picked from the graph; a value not in it stays shown."""
        nodes = sorted(
            ((str(k), v) for k, v in self.graph.items() if isinstance(v, dict)),
            key=lambda kv: node_order(kv[0]),
        )
        node_id = str(self._current("node_id") or "")
        input_name = str(self._current("input_name") or "")
        node_choices = [("", "— node —")] + [(k, _node_label(k, v)) for k, v in nodes]
        if node_id and node_id not in self.graph:
            node_choices.append((node_id, f"{node_id} (not in this graph)"))
        # The row's own node first: its input is the one shown selected without JS.
        nodes.sort(key=lambda kv: kv[0] != node_id)
        groups = [(_node_label(k, v), _literal_inputs(v)) for k, v in nodes]
        groups = [(label, [(n, n) for n in names]) for label, names in groups if names]
        input_choices: list[Any] = [("", "— input —"), *groups]
        if input_name and not any(input_name == n for _, g in groups for n, _ in g):
            input_choices.append((input_name, f"{input_name} (not an input of the node)"))
        for name in ("node_id", "input_name"):
            self.fields[name].widget.attrs.pop("maxlength", None)  # a select has none
        self.fields["node_id"].widget.choices = node_choices
        widget = self.fields["input_name"].widget
        widget.choices = input_choices
        widget.group_nodes = {_node_label(k, v): k for k, v in nodes}

    def _current(self, name: str) -> Any:
        if self.is_bound:
            return self.data.get(self.add_prefix(name))
        return self.initial.get(name) or getattr(self.instance, name, "")

    def has_changed(self) -> bool:
        # A suggested row arrives filled in: it is meant to be saved unless deleted.
        return super().has_changed() or bool(self.initial.get("name"))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        node_id, input_name = cleaned.get("node_id"), cleaned.get("input_name")
        node = self.graph.get(node_id) if node_id else None
        if node_id and not isinstance(node, dict):
            self.add_error("node_id", f"There is no node {node_id} in this version's graph.")
        elif node_id and input_name:
            inputs = node.get("inputs") or {}
            if input_name not in inputs:
                names = ", ".join(sorted(inputs)) or "none"
                self.add_error(
                    "input_name",
                    f"Node {node_id} ({node.get('class_type')}) has no input {input_name}; "
                    f"its inputs are {names}.",
                )
            elif isinstance(inputs[input_name], list):
                self.add_error(
                    "input_name",
                    f"{input_name} of node {node_id} is a link to another node, not a value.",
                )
        low, high = cleaned.get("minimum"), cleaned.get("maximum")
        if low is not None and high is not None and low > high:
            self.add_error("maximum", "The maximum is below the minimum.")
        kind = cleaned.get("type")
        choices = parse_choices(cleaned.get("choices_text", ""))
        if kind == ParameterType.CHOICE and not choices:
            self.add_error("choices_text", "A choice parameter needs at least one choice.")
        self.instance.choices = choices if kind == ParameterType.CHOICE else []
        self.instance.default = self._clean_default(cleaned, kind, choices)
        return cleaned

    def _clean_default(self, cleaned: dict[str, Any], kind: str | None, choices: list) -> Any:
        text = cleaned.get("default_text", "")
        if kind is None or (text == "" and kind != ParameterType.TEXT):
            return None
        probe = TemplateParameter(
            type=kind,
            minimum=cleaned.get("minimum"),
            maximum=cleaned.get("maximum"),
            choices=choices,
        )
        try:
            return clean_value(probe, text)
        except ValueError as exc:
            self.add_error("default_text", str(exc))
            return None


class BaseParameterFormSet(BaseInlineFormSet):
    def save(self, commit: bool = True) -> list[TemplateParameter]:
        # The submit form lists parameters in the order the editor (or the API) gave them.
        for position, form in enumerate(self.forms):
            form.instance.position = position
        return super().save(commit)

    def clean(self) -> None:
        super().clean()
        names: set[str] = set()
        bound: set[tuple[str, str]] = set()
        for form in self.forms:
            if not form.has_changed() or self._should_delete_form(form):
                continue
            data = getattr(form, "cleaned_data", {})
            name, target = data.get("name"), (data.get("node_id"), data.get("input_name"))
            if name in names:
                form.add_error("name", f"Two parameters are named {name}.")
            if target in bound and all(target):
                form.add_error("input_name", "Another parameter already sets this input.")
            names.add(name)
            bound.add(target)


ParameterFormSet = inlineformset_factory(
    Template,
    TemplateParameter,
    form=TemplateParameterForm,
    formset=BaseParameterFormSet,
    extra=1,
    can_delete=True,
)


# -- the generated submit form -----------------------------------------------------

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
