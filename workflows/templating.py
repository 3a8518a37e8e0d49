"""Templates at run time (S3): clean values, render graphs, expand batches, suggest.

Everything here is pure (no database writes, no HTTP): a template's parameters
are read, never saved. `expand_runs` is what the submit views hand to
`tasks.submission.submit_runs`.

Image parameters: the submit form stores the upload in Django storage under
uploads/team-<id>/<generated name>; the value is `{"upload": "<storage path>",
"name": "<generated file name>"}` and `render` puts `{"upload": "<storage path>"}`
on the node input. Dispatch (tasks/dispatch_send.py) uploads that file to the
chosen server (POST /upload/image) and replaces the input with the name the
server answers, since a server only knows files uploaded to it. A marker may
name only the task's own team's uploads (workflows/uploads.py): submission refuses
any other path and dispatch checks again.

Seeds: a task's `params` record every value set on its graph. A seed-like input
(servers.requirements.SEED_INPUTS) that no parameter binds is recorded, when a
batch draws it or the user pins it, under the key "<node_id>.<input_name>"
(parameter names are slugs, so the dot cannot clash); `render` sets those keys
too, so rendering a task's params on its version's graph gives its graph, and
"run again" reproduces it. A value a parameter binds is never re-seeded.
"""

from __future__ import annotations

import copy
import difflib
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet

from servers.models import ServerState
from servers.requirements import MODEL_INPUTS, SEED_INPUTS, SEED_MAX, model_index
from workflows.models import ParameterType, Template, TemplateParameter, WorkflowVersion
from workflows.store import match_every_word
from workflows.validation import input_specs, node_order

# Fresh seeds stay below 2**32: every seed input of core ComfyUI accepts that.
SEED_LIMIT = 2**32
MAX_RUNS = 1000


@dataclass(frozen=True)
class Run:
    """One task to create: the rendered API-format graph and the parameter values."""

    graph: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SeedSweep:
    """N runs with seeds start, start+1, ... on one seed parameter."""

    parameter: str
    start: int


@dataclass(frozen=True)
class ValueList:
    """One run per value of one parameter (values already cleaned)."""

    parameter: str
    values: Sequence[Any]


# -- values ------------------------------------------------------------------------


def search(templates: QuerySet[Template], query: str) -> QuerySet[Template]:
    """Every word must match the name, description or the workflow's name."""
    return match_every_word(
        templates, query, ["name", "description", "workflow_version__workflow__name"]
    )


def parameters_of(template: Template) -> list[TemplateParameter]:
    cached = getattr(template, "_prefetched_objects_cache", {}).get("parameters")
    return list(cached) if cached is not None else list(template.parameters.all())


def clean_value(param: TemplateParameter, raw: Any) -> Any:
    """One raw value (form text or JSON) → the typed value; ValueError says why."""
    kind = param.type
    if kind == ParameterType.IMAGE:
        if isinstance(raw, Mapping) and raw.get("upload"):
            return dict(raw)
        if isinstance(raw, str) and raw:
            return raw  # a file name already on the servers
        raise ValueError("Upload an image.")
    if kind == ParameterType.BOOL:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in {"1", "true", "on", "yes"}:
            return True
        if text in {"", "0", "false", "off", "no"}:
            return False
        raise ValueError("Enter yes or no.")
    if kind == ParameterType.TEXT:
        return "" if raw is None else str(raw)
    if kind == ParameterType.CHOICE:
        for choice in param.choices or []:
            if raw == choice or str(raw) == str(choice):
                return choice
        raise ValueError(
            f"{raw!r} is not one of the choices: {', '.join(map(str, param.choices))}."
        )
    if kind in (ParameterType.INT, ParameterType.SEED):
        value = _to_int(raw)
        if kind == ParameterType.SEED or param.input_name in SEED_INPUTS:
            check_seed(value)
    else:
        value = _to_float(raw)
    if param.minimum is not None and value < param.minimum:
        raise ValueError(f"At least {_number(param.minimum)}.")
    if param.maximum is not None and value > param.maximum:
        raise ValueError(f"At most {_number(param.maximum)}.")
    return value


def check_seed(value: int) -> int:
    """A seed ComfyUI accepts: 0 … 2**64 - 1, or ValueError naming the bound."""
    if value < 0:
        raise ValueError("A seed is 0 or more.")
    if value > SEED_MAX:
        raise ValueError(f"A seed is at most 2**64 - 1 ({SEED_MAX}).")
    return value


def _to_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError("Enter a whole number.")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    try:
        return int(str(raw).strip())
    except ValueError:
        raise ValueError("Enter a whole number.") from None


def _to_float(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError("Enter a number.")
    try:
        value = float(str(raw).strip()) if not isinstance(raw, int | float) else float(raw)
    except OverflowError:  # an int beyond a float's range
        raise ValueError("Enter a finite number.") from None
    except ValueError:
        raise ValueError("Enter a number.") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("Enter a finite number.")
    return value


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def clean_values(
    template: Template, raw: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Raw values by parameter name → (typed values, errors by name); defaults fill gaps."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for param in parameters_of(template):
        given = raw.get(param.name)
        if given is None or (given == "" and param.type != ParameterType.TEXT):
            if param.default is None and param.type != ParameterType.BOOL:
                errors[param.name] = "This value is required."
                continue
            given = param.default if param.default is not None else False
        try:
            values[param.name] = clean_value(param, given)
        except ValueError as exc:
            errors[param.name] = str(exc)
    for key in unbound_seeds(template):
        given = raw.get(key)
        if given is None or given == "":
            continue  # not pinned: the version's value (or a fresh one in a batch)
        try:
            values[key] = check_seed(_to_int(given))
        except ValueError as exc:
            errors[key] = str(exc)
    return values, errors


def seed_key(node_id: str, input_name: str) -> str:
    """The params key of a seed-like input no parameter binds."""
    return f"{node_id}.{input_name}"


def seed_inputs(graph: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Every literal seed-like input of a graph (a link is no seed), by its key."""
    found: dict[str, tuple[str, str]] = {}
    for node_id, node in graph.items():
        inputs = node.get("inputs") if isinstance(node, Mapping) else None
        if not isinstance(inputs, Mapping):
            continue
        for name in sorted(SEED_INPUTS):
            value = inputs.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                found[seed_key(str(node_id), name)] = (str(node_id), name)
    return found


def _unbound(
    graph: Mapping[str, Any], params: Iterable[TemplateParameter]
) -> dict[str, tuple[str, str]]:
    bound = {(p.node_id, p.input_name) for p in params}
    return {key: target for key, target in seed_inputs(graph).items() if target not in bound}


def unbound_seeds(template: Template) -> dict[str, tuple[str, str]]:
    """The seed-like inputs of the template's graph that no parameter sets, by key."""
    return _unbound(template.workflow_version.graph, parameters_of(template))


# -- rendering ---------------------------------------------------------------------


def graph_value(param: TemplateParameter, value: Any) -> Any:
    """What goes into the graph for a value: an upload becomes dispatch's marker."""
    if isinstance(value, Mapping) and "upload" in value:
        return {"upload": value["upload"]}  # exactly this shape: uploads.upload_inputs
    return value


def render_graph(
    graph: Mapping[str, Any], params: Iterable[TemplateParameter], values: Mapping[str, Any]
) -> dict[str, Any]:
    """The graph with each parameter's value, and each "<node>.<input>" seed no
    parameter binds, set on its input."""
    params = list(params)
    rendered = copy.deepcopy(dict(graph))
    for key, (node_id, input_name) in _unbound(graph, params).items():
        if key in values:
            rendered[node_id]["inputs"][input_name] = values[key]
    for param in params:
        if param.name not in values:
            continue
        node = rendered.get(param.node_id)
        if not isinstance(node, dict) or not isinstance(node.get("inputs"), dict):
            raise KeyError(f"Node {param.node_id} is not in the graph")
        node["inputs"][param.input_name] = graph_value(param, values[param.name])
    return rendered


def render(template: Template, values: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of the template's graph with the (cleaned) values set on their inputs."""
    return render_graph(template.workflow_version.graph, parameters_of(template), values)


def graph_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Inputs whose value differs: [{node_id, class_type, input_name, before, after}]."""
    changes = []
    for node_id, node in after.items():
        old_inputs = (before.get(node_id) or {}).get("inputs") or {}
        for name, value in (node.get("inputs") or {}).items():
            if old_inputs.get(name) != value:
                changes.append(
                    {
                        "node_id": node_id,
                        "class_type": node.get("class_type", ""),
                        "input_name": name,
                        "before": old_inputs.get(name),
                        "after": value,
                    }
                )
    return changes


def unified_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    old = json.dumps(before, indent=2, sort_keys=True).splitlines()
    new = json.dumps(after, indent=2, sort_keys=True).splitlines()
    return "\n".join(difflib.unified_diff(old, new, "version", "rendered", lineterm="", n=2))


# -- batches -----------------------------------------------------------------------


def fresh_seed() -> int:
    return secrets.randbelow(SEED_LIMIT)


def expand_runs(
    *,
    graph: Mapping[str, Any] | None = None,
    template: Template | None = None,
    values: Mapping[str, Any] | None = None,
    count: int = 1,
    sweep: SeedSweep | None = None,
    value_list: ValueList | None = None,
) -> list[Run]:
    """The runs one submission makes; each run's params record every value set on its graph.

    A plain `graph` run `count` times gets, when count > 1, fresh seeds on its
    seed-like inputs per run (recorded as "<node>.<input>"). A `template` with
    cleaned `values`: `sweep` gives `count` runs with seeds start..start+count-1
    on one seed parameter; `value_list` one run per value, nothing else changing;
    otherwise `count` runs, and when count > 1 each gets fresh seeds on the
    template's seed parameters (or, when it has none, on the seed-like inputs no
    parameter binds). A value an int/choice/... parameter binds is never re-seeded.
    """
    return [run for run, _ in _expand(graph, template, values, count, sweep, value_list)]


def _expand(
    graph: Mapping[str, Any] | None,
    template: Template | None,
    values: Mapping[str, Any] | None,
    count: int,
    sweep: SeedSweep | None,
    value_list: ValueList | None,
) -> list[tuple[Run, frozenset[str]]]:
    """(run, the keys of its params drawn at random) per run."""
    if (graph is None) == (template is None):
        raise ValueError("Give either a graph or a template.")
    if not 1 <= count <= MAX_RUNS:
        raise ValueError(f"count must be between 1 and {MAX_RUNS}")
    if sweep is not None and not 0 <= sweep.start <= sweep.start + count - 1 <= SEED_MAX:
        raise ValueError(f"A sweep's seeds must stay within 0 … 2**64 - 1 ({SEED_MAX}).")
    if value_list is not None and len(value_list.values) > MAX_RUNS:
        raise ValueError(f"at most {MAX_RUNS} values")
    source = template.workflow_version.graph if template is not None else graph
    params = parameters_of(template) if template is not None else []
    base = dict(values or {})
    if sweep is not None:
        variants = [base | {sweep.parameter: sweep.start + i} for i in range(count)]
    elif value_list is not None:
        variants = [base | {value_list.parameter: v} for v in value_list.values]
    else:
        variants = [dict(base) for _ in range(count)]
    fresh: list[str] = []
    if sweep is None and value_list is None and count > 1:
        # Run N times: N different images, so every run draws its seeds.
        fresh = [p.name for p in params if p.type == ParameterType.SEED]
        fresh = fresh or list(_unbound(source, params))
    runs = []
    for variant in variants:
        variant.update({key: fresh_seed() for key in fresh})
        runs.append((Run(render_graph(source, params, variant), variant), frozenset(fresh)))
    return runs


@dataclass
class BatchPreview:
    """What a submission would run: inputs set alike in every run, and a row per run
    of the inputs that vary (`random` columns are drawn anew on submit)."""

    graph: dict[str, Any]  # the first run's
    runs: int
    common: list[dict[str, Any]]
    columns: list[dict[str, Any]]
    rows: list[list[dict[str, Any]]]  # per run, per column: {"value", "random"}

    @property
    def has_random(self) -> bool:
        return any(column["random"] for column in self.columns)


def preview_batch(template: Template, values: Mapping[str, Any], **batch: Any) -> BatchPreview:
    """`expand_runs(template=..., values=..., **batch)` described for the preview."""
    expanded = _expand(
        None,
        template,
        values,
        batch.get("count", 1),
        batch.get("sweep"),
        batch.get("value_list"),
    )
    version = template.workflow_version.graph
    graphs = [run.graph for run, _ in expanded]
    targets = {(p.node_id, p.input_name): p.name for p in parameters_of(template)}
    targets |= {target: key for key, target in unbound_seeds(template).items()}
    random = expanded[0][1]
    varying: list[tuple[str, str]] = []
    for node_id, node in graphs[0].items():
        for name, value in (node.get("inputs") or {}).items():
            key = targets.get((node_id, name))
            if key in random or any(g[node_id]["inputs"].get(name) != value for g in graphs):
                varying.append((node_id, name))
    columns = [
        {
            "node_id": node_id,
            "class_type": graphs[0][node_id].get("class_type", ""),
            "input_name": name,
            "key": targets.get((node_id, name), seed_key(node_id, name)),
            "before": (version.get(node_id) or {}).get("inputs", {}).get(name),
            "random": targets.get((node_id, name)) in random,
        }
        for node_id, name in varying
    ]
    rows = [
        [
            {"value": g[node_id]["inputs"].get(name), "random": column["random"]}
            for (node_id, name), column in zip(varying, columns, strict=True)
        ]
        for g in graphs
    ]
    common = [
        change
        for change in graph_diff(version, graphs[0])
        if (change["node_id"], change["input_name"]) not in varying
    ]
    return BatchPreview(graphs[0], len(graphs), common, columns, rows)


# -- suggestions -------------------------------------------------------------------


@dataclass
class Suggestion:
    """A parameter the template editor offers, ready to become a TemplateParameter."""

    name: str
    label: str
    node_id: str
    input_name: str
    type: str
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: list[Any] = field(default_factory=list)
    help: str = ""


# input name -> (type, label, fallback min, fallback max)
_NUMERIC = {
    "steps": (ParameterType.INT, "Steps", 1, 150),
    "cfg": (ParameterType.FLOAT, "CFG scale", 0.0, 30.0),
    "denoise": (ParameterType.FLOAT, "Denoise", 0.0, 1.0),
    "width": (ParameterType.INT, "Width", 16, 8192),
    "height": (ParameterType.INT, "Height", 16, 8192),
    "batch_size": (ParameterType.INT, "Batch size", 1, 64),
    "blur_radius": (ParameterType.INT, "Blur radius", 1, 31),
    "sigma": (ParameterType.FLOAT, "Sigma", 0.1, 10.0),
    "scale_by": (ParameterType.FLOAT, "Scale", 0.01, 8.0),
    "strength": (ParameterType.FLOAT, "Strength", 0.0, 2.0),
}
_TEXT = {("CLIPTextEncode", "text"), ("FailNode", "message")}
_COMBO_LABELS = {"sampler_name": "Sampler", "scheduler": "Scheduler"}


def suggest_parameters(
    version: WorkflowVersion,
    catalogue: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    models: Mapping[str, Iterable[str]] | None = None,
) -> list[Suggestion]:
    """Inputs of the graph worth exposing, typed, with bounds from the catalogue if known.

    `models` is folder -> file names known on the fleet (for checkpoint choices).
    """
    found: list[Suggestion] = []
    prompts = 0
    for node_id, node in sorted(version.graph.items(), key=lambda kv: node_order(kv[0])):
        class_type = node.get("class_type", "")
        inputs = node.get("inputs") or {}
        info = (catalogue or {}).get(class_type) or {}
        required, optional = input_specs(info) if info else ({}, {})
        specs = required | optional
        for name, value in inputs.items():
            if isinstance(value, list):
                continue  # links are not parameters
            spec = specs.get(name) or []
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {}
            suggestion = _suggest(node_id, class_type, name, value, spec, opts, models)
            if suggestion is None:
                continue
            if suggestion.type == ParameterType.TEXT and class_type == "CLIPTextEncode":
                prompts += 1
                suggestion.label = "Prompt" if prompts == 1 else "Negative prompt"
            found.append(suggestion)
    return _unique_names(found)


def _suggest(node_id, class_type, name, value, spec, opts, models) -> Suggestion | None:
    base = {"node_id": node_id, "input_name": name, "default": value}
    if name in SEED_INPUTS and isinstance(value, int):
        return Suggestion(
            name="seed",
            label="Seed",
            type=ParameterType.SEED,
            minimum=0,
            help="Same seed, same image; a batch can sweep seeds.",
            **base,
        )
    if name in _NUMERIC and isinstance(value, int | float) and not isinstance(value, bool):
        kind, label, low, high = _NUMERIC[name]
        return Suggestion(
            name=name,
            label=label,
            type=kind,
            minimum=opts.get("min", low),
            maximum=_upper_bound(name, opts.get("max", high), high),
            **base,
        )
    if (class_type, name) in _TEXT:
        return Suggestion(name="prompt", label="Prompt", type=ParameterType.TEXT, **base)
    if name in MODEL_INPUTS and isinstance(value, str):
        folder = MODEL_INPUTS[name]
        choices = sorted(set((models or {}).get(folder, [])) | {value})
        if spec and isinstance(spec[0], list) and spec[0]:
            choices = sorted(set(spec[0]) | {value})
        return Suggestion(
            name=name.removesuffix("_name") or name,
            label="Checkpoint" if name == "ckpt_name" else name.replace("_", " ").capitalize(),
            type=ParameterType.CHOICE,
            choices=choices,
            help=f"A file in the servers' {folder} folder.",
            **base,
        )
    if (class_type, name) == ("LoadImage", "image"):
        return Suggestion(name="image", label="Input image", type=ParameterType.IMAGE, **base)
    if name in _COMBO_LABELS and spec and isinstance(spec[0], list):
        return Suggestion(
            name=name,
            label=_COMBO_LABELS[name],
            type=ParameterType.CHOICE,
            choices=list(spec[0]),
            **base,
        )
    return None


def _upper_bound(name: str, catalogue_max: float, sensible: float) -> float:
    # A catalogue allows 10000 steps or 4096 images at once; a form offering
    # that invites mistakes, so those two keep the sensible bound.
    return min(catalogue_max, sensible) if name in ("steps", "batch_size") else catalogue_max


def _unique_names(found: list[Suggestion]) -> list[Suggestion]:
    seen: dict[str, int] = {}
    for suggestion in found:
        count = seen.get(suggestion.name, 0) + 1
        seen[suggestion.name] = count
        if count > 1:
            suggestion.name = f"{suggestion.name}_{suggestion.node_id}"
    return found


def known_models() -> dict[str, list[str]]:
    """Model files the fleet reported (ServerState.model_files), folder -> names."""
    merged: dict[str, set[str]] = {}
    for files in ServerState.objects.values_list("model_files", flat=True):
        for folder, names in model_index(files or {}).items():
            merged.setdefault(folder, set()).update(names)
    return {folder: sorted(names) for folder, names in merged.items()}
