"""Forms of workflows (S2): create and edit from a file or pasted JSON, validate.

Template forms are in forms/templates.py; the run and submit forms are the tasks
app's (tasks/forms.py).
"""

from __future__ import annotations

from typing import Any

from django import forms

from servers.models import Server
from teams.models import Team
from workflows.models import Workflow
from workflows.validation import (
    CatalogueUnavailable,
    ValidationReport,
    fetch_catalogue,
    parse_graph_text,
    validate_graph,
)

MAX_GRAPH_BYTES = 5 * 1024 * 1024
SAVED_FIELDS = ("name", "description", "tags", "graph", "note")


def submit_teams(user) -> list[Team]:
    """Teams the user may create things in (members and team admins; staff all)."""
    return [team for team in Team.objects.for_user(user) if team.can_submit(user)]


def parse_tags(text: str) -> list[str]:
    seen: list[str] = []
    for tag in text.replace("\n", ",").split(","):
        tag = tag.strip().lower()
        if tag and tag not in seen:
            seen.append(tag[:40])
    return seen


class GraphInputMixin(forms.Form):
    """A graph from an uploaded .json file or pasted text, validated structurally."""

    graph_file = forms.FileField(
        label="Workflow file",
        required=False,
        help_text="The API-format .json (ComfyUI: Workflow → Export (API)).",
        widget=forms.ClearableFileInput(attrs={"accept": ".json,application/json"}),
    )
    graph_text = forms.CharField(
        label="…or paste the JSON",
        required=False,
        widget=forms.Textarea(attrs={"rows": 10, "class": "code", "spellcheck": "false"}),
    )
    check_server = forms.ModelChoiceField(
        label="Also check against server",
        queryset=Server.objects.enabled(),
        required=False,
        empty_label="— structure only —",
        help_text="Reads the server's node catalogue now: unknown nodes, missing inputs, "
        "values out of range or not in the list.",
    )
    graph_required = True
    report: ValidationReport | None = None

    def clean_graph(self) -> dict[str, Any] | None:
        upload = self.cleaned_data.get("graph_file")
        text = self.cleaned_data.get("graph_text", "")
        if upload and text.strip():
            raise forms.ValidationError("Upload a file or paste the JSON, not both.")
        if upload:
            if upload.size > MAX_GRAPH_BYTES:
                raise forms.ValidationError("The file is larger than 5 MB; is it a workflow?")
            source: str | bytes = upload.read()
        elif text.strip():
            source = text
        elif self.graph_required:
            raise forms.ValidationError("Upload the workflow's .json file or paste its JSON.")
        else:
            return None
        data, report = parse_graph_text(source)
        if data is not None:
            report = self._validate(data)
        self.report = report
        if not report.valid:
            raise forms.ValidationError(report.all_messages())
        return data

    def _validate(self, data: Any) -> ValidationReport:
        server = self.cleaned_data.get("check_server")
        if server is None:
            return validate_graph(data)
        structure = validate_graph(data)
        if not structure.valid:
            return structure  # a broken graph first; the server would only repeat it
        try:
            catalogue = fetch_catalogue(server)
        except CatalogueUnavailable as exc:
            self.add_error("check_server", str(exc))  # the graph itself is fine
            return structure
        return validate_graph(data, catalogue, server_name=server.name)


class WorkflowForm(GraphInputMixin):
    team = forms.ModelChoiceField(queryset=Team.objects.none(), empty_label=None)
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    tags = forms.CharField(required=False, help_text="Comma-separated, e.g. sdxl, portrait")
    note = forms.CharField(
        label="Version note", required=False, max_length=200, help_text="What this version changes."
    )

    field_order = [
        "team",
        "name",
        "description",
        "tags",
        "graph_file",
        "graph_text",
        "check_server",
        "note",
    ]

    def __init__(self, *args, user, workflow: Workflow | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.workflow = workflow
        if workflow is None:
            teams = submit_teams(user)
            self.fields["team"].queryset = Team.objects.filter(pk__in=[t.pk for t in teams])
            if len(teams) == 1:
                self.fields["team"].initial = teams[0]
                self.fields["team"].widget = forms.HiddenInput()
        else:
            # A workflow stays in its team; edits that change the graph add a version.
            del self.fields["team"]
            self.graph_required = False
            self.fields["graph_file"].help_text = "Leave both empty to keep the current graph."
            self.initial.setdefault("name", workflow.name)
            self.initial.setdefault("description", workflow.description)
            self.initial.setdefault("tags", ", ".join(workflow.tags))

    def clean_tags(self) -> list[str]:
        return parse_tags(self.cleaned_data.get("tags", ""))

    def saved_fields(self) -> dict[str, Any]:
        """Of a valid form, what `store.create_workflow` and `store.update_workflow`
        both take (creating adds the team)."""
        return {name: self.cleaned_data[name] for name in SAVED_FIELDS}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        try:
            cleaned["graph"] = self.clean_graph()
        except forms.ValidationError as exc:
            self.add_error("graph_text" if cleaned.get("graph_text") else "graph_file", exc)
        team = self.workflow.team if self.workflow else cleaned.get("team")
        name = cleaned.get("name")
        if team is not None and name:
            clash = Workflow.objects.filter(team=team, name__iexact=name)
            if self.workflow is not None:
                clash = clash.exclude(pk=self.workflow.pk)
            if clash.exists():
                self.add_error("name", f"{team} already has a workflow named “{name}”.")
        return cleaned


class ValidateForm(forms.Form):
    server = forms.ModelChoiceField(
        queryset=Server.objects.enabled(),
        empty_label=None,
        help_text="Checks the graph against this server's node catalogue (GET /object_info).",
    )
