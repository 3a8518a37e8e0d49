"""Workflow graph validation before anything is queued (S2).

Two levels. `validate_graph(graph)` checks the structure of an API-format graph
on its own: nodes with `class_type` and `inputs`, links that point at existing
nodes, at least one output node, and a UI-format export refused with how to
export the API format. Given a server's node catalogue (its `/object_info`,
fetched on an explicit user action by `fetch_catalogue`) it also checks what
ComfyUI's own `validate_prompt` would, with ComfyUI's error type names
(PROTOCOL.md §6) so a message here reads like the one the server would give.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync

from comfyweb import guard
from comfyweb.nul import MESSAGE as NUL_MESSAGE
from comfyweb.nul import find_nul
from servers.clients import client_for
from servers.comfyui import ComfyUIError
from servers.models import FleetSettings, Server
from servers.requirements import SEED_INPUTS, SEED_MAX

# Output nodes of core ComfyUI; with a catalogue, `output_node` decides instead.
OUTPUT_CLASSES = frozenset(
    {
        "SaveImage",
        "PreviewImage",
        "SaveImageWebsocket",
        "SaveAnimatedWEBP",
        "SaveAnimatedPNG",
        "SaveLatent",
        "SaveVideo",
        "SaveWEBM",
        "SaveAudio",
        "PreviewAny",
    }
)
# Inputs whose combo lists the server's input files: the file is uploaded at
# dispatch time, so it need not be on the server yet.
_UPLOADED_INPUTS = frozenset({("LoadImage", "image"), ("LoadImageMask", "image")})

UI_FORMAT_HINT = (
    "This is the workflow as the ComfyUI editor saves it (UI format, with "
    '"nodes" and "links" lists), not the API format ComfyWeb runs. In ComfyUI, '
    'open Settings, enable "Dev mode" (Settings → Comfy → Dev Mode), then use '
    'Workflow → Export (API) — older versions: the "Save (API Format)" button — '
    "and upload that file."
)


@dataclass(frozen=True)
class Issue:
    """One top-level problem: a ComfyUI-style type and a message for people."""

    type: str
    message: str


@dataclass
class ValidationReport:
    """The outcome of validating a graph; `as_json()` is the API's shape."""

    errors: list[Issue] = field(default_factory=list)
    # node id -> [{"type", "message", "details", "input_name"}]
    node_errors: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    checked_against: str = ""  # the server whose catalogue was used, if any

    @property
    def valid(self) -> bool:
        return not self.errors and not self.node_errors

    @property
    def messages(self) -> list[str]:
        return [issue.message for issue in self.errors]

    @property
    def types(self) -> set[str]:
        """Every error type reported, top-level and per node (for tests and summaries)."""
        kinds = {issue.type for issue in self.errors}
        kinds.update(e["type"] for errors in self.node_errors.values() for e in errors)
        return kinds

    def add(self, kind: str, message: str) -> None:
        self.errors.append(Issue(kind, message))

    def add_node(
        self, node_id: str, kind: str, message: str, *, details: str = "", input_name: str = ""
    ) -> None:
        entry = {"type": kind, "message": message, "details": details, "input_name": input_name}
        self.node_errors.setdefault(str(node_id), []).append(entry)

    def all_messages(self) -> list[str]:
        """Top-level messages then 'Node 3 (Class): message', for forms and flash messages."""
        lines = list(self.messages)
        for node_id, errors in self.node_errors.items():
            lines.extend(f"Node {node_id}: {e['message']}" for e in errors)
        return lines

    def as_json(self) -> dict[str, Any]:
        return {"valid": self.valid, "errors": self.messages, "node_errors": self.node_errors}


def parse_graph_text(text: str | bytes) -> tuple[Any, ValidationReport]:
    """JSON text → (data, report); data is None when the text is not JSON."""
    report = ValidationReport()
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError:
            report.add("invalid_json", "The file is not UTF-8 text; upload the workflow's .json.")
            return None, report
    if not text.strip():
        report.add("invalid_json", "The workflow is empty.")
        return None, report
    try:
        # Strict: NaN, Infinity and 1e400 are no numbers PostgreSQL's jsonb stores.
        return guard.loads(text), report
    except json.JSONDecodeError as exc:
        report.add(
            "invalid_json",
            f"Not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.",
        )
        return None, report
    except guard.Unstorable as exc:
        report.add("invalid_json", str(exc))
        return None, report
    except ValueError as exc:  # a number of more than 4300 digits: Python won't read it
        report.add("invalid_json", f"Not valid JSON: {exc}.")
        return None, report


def is_ui_format(data: Any) -> bool:
    """The ComfyUI editor's own save format: top-level `nodes` and `links` lists."""
    return (
        isinstance(data, Mapping)
        and isinstance(data.get("nodes"), list)
        and isinstance(data.get("links", []), list)
        and ("links" in data or "last_node_id" in data or "version" in data)
    )


def validate_graph(
    data: Any, catalogue: Mapping[str, Mapping[str, Any]] | None = None, *, server_name: str = ""
) -> ValidationReport:
    """Check an API-format graph; with `catalogue` (/object_info) check inputs too."""
    report = ValidationReport(checked_against=server_name if catalogue is not None else "")
    if is_ui_format(data):
        report.add("ui_format", UI_FORMAT_HINT)
        return report
    if not isinstance(data, Mapping):
        report.add(
            "invalid_prompt",
            "A workflow is a JSON object of nodes, {node_id: {class_type, inputs}}, "
            f"not a {_json_type(data)}.",
        )
        return report
    if not data:
        report.add("invalid_prompt", "The workflow has no nodes.")
        return report
    if "prompt" in data and isinstance(data["prompt"], Mapping) and len(data) <= 3:
        report.add(
            "invalid_prompt",
            'This looks like a POST /prompt body; upload only the graph under "prompt".',
        )
        return report
    if (where := find_nul(data)) is not None:
        report.add("invalid_prompt", f"{NUL_MESSAGE} (at {where}): they cannot be stored.")
        return report
    for node_id, node in data.items():
        _check_node_structure(str(node_id), node, data, report)
    _check_cycles(data, report)
    if catalogue is not None:
        _check_against_catalogue(data, catalogue, report, server_name)
    if not _output_nodes(data, catalogue):
        report.add(
            "prompt_no_outputs",
            "Prompt has no outputs: the workflow needs at least one output node "
            "(SaveImage, PreviewImage, SaveImageWebsocket, ...), or nothing would run.",
        )
    return report


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return type(value).__name__


def _check_node_structure(
    node_id: str, node: Any, graph: Mapping[str, Any], report: ValidationReport
) -> None:
    if not isinstance(node, Mapping):
        report.add_node(
            node_id, "invalid_prompt", f"A node must be an object, not a {_json_type(node)}."
        )
        return
    class_type = node.get("class_type")
    if not isinstance(class_type, str) or not class_type:
        report.add_node(
            node_id,
            "invalid_prompt",
            "Cannot execute because a node is missing the class_type property.",
            details=f"Node ID '#{node_id}'",
        )
    inputs = node.get("inputs")
    if not isinstance(inputs, Mapping):
        report.add_node(
            node_id,
            "invalid_prompt",
            'The node has no "inputs" object (write "inputs": {} for a node without inputs).',
        )
        return
    for name, value in inputs.items():
        if isinstance(value, list):
            _check_link(node_id, str(name), value, graph, report)
        elif name in SEED_INPUTS and isinstance(value, int) and value > SEED_MAX:
            # Any server refuses it, but only once the prompt is sent: say so now.
            report.add_node(
                node_id,
                "value_bigger_than_max",
                f"Value {value} bigger than max of {SEED_MAX}: {name} (a seed is at most "
                "2**64 - 1).",
                details=name,
                input_name=str(name),
            )


def _check_link(
    node_id: str, name: str, value: list[Any], graph: Mapping[str, Any], report: ValidationReport
) -> None:
    if len(value) != 2 or not isinstance(value[1], int) or isinstance(value[1], bool):
        report.add_node(
            node_id,
            "bad_linked_input",
            f"Input {name}: a link must be [node_id, output_index], got {json.dumps(value)}.",
            details=name,
            input_name=name,
        )
        return
    source, slot = value
    if isinstance(source, int) and str(source) in graph:
        report.add_node(
            node_id,
            "bad_linked_input",
            f'Input {name}: write the node id as a string, ["{source}", {slot}].',
            details=name,
            input_name=name,
        )
        return
    if not isinstance(source, str) or source not in graph:
        report.add_node(
            node_id,
            "exception_during_validation",
            f"Input {name} links to node {source}, which is not in the workflow.",
            details=f"'{source}'",
            input_name=name,
        )
        return
    if slot < 0:
        report.add_node(
            node_id,
            "bad_linked_input",
            f"Input {name}: output index {slot} of node {source} is negative.",
            details=name,
            input_name=name,
        )


def _sources(graph: Mapping[str, Any], node_id: str) -> list[str]:
    """Ids of the nodes whose outputs `node_id`'s inputs link to."""
    node = graph.get(node_id)
    inputs = node.get("inputs") if isinstance(node, Mapping) else None
    if not isinstance(inputs, Mapping):
        return []
    return [
        v[0]
        for v in inputs.values()
        if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and v[0] in graph
    ]


def upstream(graph: Mapping[str, Any], node_id: str) -> set[str]:
    """`node_id` and every node it (indirectly) takes an input from."""
    seen = {node_id}
    pending = [node_id]
    while pending:
        for source in _sources(graph, pending.pop()):
            if source not in seen:
                seen.add(source)
                pending.append(source)
    return seen


def _check_cycles(graph: Mapping[str, Any], report: ValidationReport) -> None:
    """A node that (indirectly) feeds itself can never run; ComfyUI fails it at execution."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for start in graph:
        if state.get(start):
            continue
        stack = [(start, iter(_sources(graph, start)))]
        state[start] = 1
        while stack:
            node_id, pending = stack[-1]
            nxt = next(pending, None)
            if nxt is None:
                state[node_id] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                path = [n for n, _ in stack]
                loop = [*path[path.index(nxt) :], nxt]
                report.add_node(
                    nxt,
                    "dependency_cycle",
                    "The graph has a cycle: node "
                    + " ← ".join(loop)
                    + "; a node cannot feed itself.",
                )
                return
            elif not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(_sources(graph, nxt))))


def _output_nodes(
    graph: Mapping[str, Any], catalogue: Mapping[str, Mapping[str, Any]] | None
) -> list[str]:
    found = []
    for node_id, node in graph.items():
        class_type = node.get("class_type") if isinstance(node, Mapping) else None
        if not isinstance(class_type, str):
            continue
        if catalogue is not None and class_type in catalogue:
            is_output = bool(catalogue[class_type].get("output_node"))
        else:
            is_output = class_type in OUTPUT_CLASSES
        if is_output:
            found.append(str(node_id))
    return found


@dataclass(frozen=True)
class ServerAnswer:
    """What a server with a given catalogue would answer to POST /prompt of a graph.

    ComfyUI refuses the whole prompt for a node class it lacks, for a graph with
    no output node, and when no output node validates (each with everything it
    takes inputs from). Otherwise it runs the outputs that validate and skips
    the others; nodes that feed no output are never looked at.
    """

    accepted: bool
    reasons: list[str]  # why it would answer 400
    skipped: list[str]  # accepted, but these outputs would be left out, and why
    report: ValidationReport  # every problem, including ones ComfyUI ignores


def server_answer(
    graph: Mapping[str, Any], catalogue: Mapping[str, Mapping[str, Any]], *, server_name: str = ""
) -> ServerAnswer:
    report = validate_graph(graph, catalogue, server_name=server_name)
    fatal = [
        f"Node {node_id}: {e['message']}"
        for node_id, errors in report.node_errors.items()
        for e in errors
        if e["type"] in {"invalid_prompt", "dependency_cycle"}
    ]
    if report.errors or fatal:
        return ServerAnswer(False, report.messages + fatal, [], report)
    outputs = _output_nodes(graph, catalogue)
    failing: dict[str, list[str]] = {}
    for output in outputs:
        broken = upstream(graph, output) & report.node_errors.keys()
        if broken:
            failing[output] = sorted(broken, key=node_order)
    if len(failing) == len(outputs):
        culprits = sorted({n for nodes in failing.values() for n in nodes}, key=node_order)
        reasons = [f"Node {n}: {e['message']}" for n in culprits for e in report.node_errors[n]]
        return ServerAnswer(False, reasons, [], report)
    skipped = [
        f"output node {output} (problems in node {', '.join(nodes)})"
        for output, nodes in failing.items()
    ]
    return ServerAnswer(True, [], skipped, report)


def node_order(node_id: str) -> tuple[int, str]:
    """How every page and message lists a graph's nodes: numeric ids in numeric order,
    then the others."""
    node_id = str(node_id)
    return (int(node_id), "") if node_id.isdigit() else (1 << 30, node_id)


# -- against a catalogue ---------------------------------------------------------


def _check_against_catalogue(
    graph: Mapping[str, Any],
    catalogue: Mapping[str, Mapping[str, Any]],
    report: ValidationReport,
    server_name: str,
) -> None:
    where = f" on {server_name}" if server_name else ""
    for node_id, node in graph.items():
        node_id = str(node_id)
        if not isinstance(node, Mapping) or not isinstance(node.get("class_type"), str):
            continue
        class_type = node["class_type"]
        info = catalogue.get(class_type)
        if info is None:
            report.add_node(
                node_id,
                "invalid_prompt",
                f"Cannot execute because node {class_type} does not exist{where} "
                "(a custom node that is not installed there?).",
                details=f"Node ID '#{node_id}'",
            )
            continue
        inputs = node.get("inputs")
        if isinstance(inputs, Mapping):
            _check_inputs(node_id, class_type, inputs, info, graph, catalogue, report)


def input_specs(info: Mapping[str, Any]) -> tuple[dict[str, list], dict[str, list]]:
    """(required, optional) `{name: [TYPE or choices, opts]}` of one catalogue entry."""
    spec = info.get("input") or {}
    return dict(spec.get("required") or {}), dict(spec.get("optional") or {})


def _check_inputs(
    node_id: str,
    class_type: str,
    inputs: Mapping[str, Any],
    info: Mapping[str, Any],
    graph: Mapping[str, Any],
    catalogue: Mapping[str, Mapping[str, Any]],
    report: ValidationReport,
) -> None:
    required, optional = input_specs(info)
    for name, spec in [*required.items(), *optional.items()]:
        if not isinstance(spec, list | tuple) or not spec:
            continue
        kind = spec[0]
        opts = spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {}
        if name not in inputs:
            if name in required:
                report.add_node(
                    node_id,
                    "required_input_missing",
                    f"Required input is missing: {name} ({_kind_name(kind)}).",
                    details=name,
                    input_name=name,
                )
            continue
        value = inputs[name]
        if isinstance(value, list):
            _check_link_types(node_id, name, value, kind, graph, catalogue, report)
        else:
            _check_value(node_id, class_type, name, value, kind, opts, report)


def _kind_name(kind: Any) -> str:
    return "choice" if isinstance(kind, list) else str(kind)


def _check_link_types(node_id, name, value, kind, graph, catalogue, report) -> None:
    if len(value) != 2 or not isinstance(value[0], str) or value[0] not in graph:
        return  # reported by the structure check
    source = graph[value[0]]
    source_class = source.get("class_type") if isinstance(source, Mapping) else None
    source_info = catalogue.get(source_class) if isinstance(source_class, str) else None
    if source_info is None or not isinstance(value[1], int):
        return
    outputs = list(source_info.get("output") or [])
    slot = value[1]
    if slot >= len(outputs):
        report.add_node(
            node_id,
            "bad_linked_input",
            f"Input {name} links to output {slot} of node {value[0]} ({source_class}), "
            f"which has {len(outputs)} output{'s' if len(outputs) != 1 else ''}.",
            details=name,
            input_name=name,
        )
        return
    received = outputs[slot]
    if not _types_match(received, kind):
        report.add_node(
            node_id,
            "return_type_mismatch",
            f"Input {name} expects {_kind_name(kind)} but node {value[0]} ({source_class}) "
            f"output {slot} gives {_kind_name(received)}.",
            details=f"{name}, received_type({received}) mismatch input_type({kind})",
            input_name=name,
        )


def _types_match(received: Any, expected: Any) -> bool:
    if isinstance(expected, list) or isinstance(received, list):
        # A combo fed by a link: ComfyUI accepts the matching COMBO/list output.
        return True
    if "*" in (received, expected):
        return True
    wanted = {t.strip() for t in str(expected).split(",")}
    given = {t.strip() for t in str(received).split(",")}
    return bool(wanted & given)


_CONVERTERS = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}


# Types that only ever come from another node's output (never a literal value).
_LINK_ONLY_TYPES = frozenset(
    {
        "IMAGE", "LATENT", "MODEL", "CLIP", "VAE", "CONDITIONING", "MASK", "CONTROL_NET",
        "CLIP_VISION", "CLIP_VISION_OUTPUT", "STYLE_MODEL", "UPSCALE_MODEL", "GLIGEN",
        "AUDIO", "VIDEO", "NOISE", "SAMPLER", "SIGMAS", "GUIDER",
    }
)  # fmt: skip


def _check_value(node_id, class_type, name, value, kind, opts, report) -> None:
    if kind == "COMBO" and isinstance(opts.get("options"), list):
        kind = opts["options"]  # newer nodes spell a combo as ["COMBO", {"options": [...]}]
    if isinstance(kind, list):
        if (class_type, name) in _UPLOADED_INPUTS or opts.get("image_upload"):
            return  # the file is uploaded to the server at dispatch time
        if value not in kind:
            shown = ", ".join(repr(c) for c in kind[:12]) + (", ..." if len(kind) > 12 else "")
            report.add_node(
                node_id,
                "value_not_in_list",
                f"Value not in list: {name} {value!r} is not one of [{shown}]"
                if kind
                else f"Value not in list: {name} {value!r} — the server has no files to choose "
                "from here (model not installed?).",
                details=f"{name}: {value!r} not in {kind[:12]!r}",
                input_name=name,
            )
        return
    converter = _CONVERTERS.get(kind) if isinstance(kind, str) else None
    if converter is None:
        if kind in _LINK_ONLY_TYPES:
            # A node-typed input (IMAGE, MODEL, ...) takes a link, never a literal.
            report.add_node(
                node_id,
                "bad_linked_input",
                f"Input {name} takes a {kind} from another node's output; "
                f"link it as [node_id, output_index] instead of {json.dumps(value)}.",
                details=name,
                input_name=name,
            )
        return
    try:
        converted = converter(value)
    except (TypeError, ValueError) as exc:
        report.add_node(
            node_id,
            "invalid_input_type",
            f"Failed to convert an input value to a {kind} value: {name} = {value!r}.",
            details=f"{name}, {value}, {exc}",
            input_name=name,
        )
        return
    if isinstance(converted, bool) or not isinstance(converted, int | float):
        return
    minimum, maximum = opts.get("min"), opts.get("max")
    if minimum is not None and converted < minimum:
        report.add_node(
            node_id,
            "value_smaller_than_min",
            f"Value {value} smaller than min of {minimum} ({name}).",
            details=name,
            input_name=name,
        )
    elif maximum is not None and converted > maximum:
        report.add_node(
            node_id,
            "value_bigger_than_max",
            f"Value {value} bigger than max of {maximum} ({name}).",
            details=name,
            input_name=name,
        )


# -- fetching a server's catalogue -----------------------------------------------


class CatalogueUnavailable(Exception):
    """The server could not give its node catalogue; the message says why."""


def fetch_catalogue(server: Server) -> dict[str, dict[str, Any]]:
    """GET /object_info from `server` with the fleet's timeout (an explicit user action)."""
    fleet = FleetSettings.load()

    async def load() -> dict[str, dict[str, Any]]:
        async with client_for(server, "catalogue", fleet=fleet) as client:
            return await client.object_info()

    try:
        return async_to_sync(load)()
    except ComfyUIError as exc:
        raise CatalogueUnavailable(f"{server.name}: could not read /object_info — {exc}") from exc
