"""Forms of templates (S3): the template and its parameters (the submit form is tasks/forms.py)."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.forms.models import BaseInlineFormSet, inlineformset_factory

from workflows.models import ParameterType, Template, TemplateParameter
from workflows.templating import clean_value
from workflows.validation import node_order


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
