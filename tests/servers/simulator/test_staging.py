"""Execution order: ComfyUI's ExecutionList picks outputs first, then feeders."""

from __future__ import annotations

from typing import Any

from servers.simulator import catalogue
from servers.simulator.staging import ExecutionPlan


def _order(prompt: dict[str, Any], outputs: list[str], cached: set[str] = frozenset()) -> list[str]:
    plan = ExecutionPlan(
        prompt,
        is_cached=lambda n: n in cached,
        is_output=lambda n: catalogue.is_output_node(prompt[n]["class_type"]),
    )
    for output in outputs:
        plan.add_output(output)
    order = []
    while not plan.empty():
        node = plan.pick()
        order.append(node)
        plan.complete(node)
    return order


TWO_OUTPUTS = {
    "1": {"class_type": "EmptyImage", "inputs": {}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
    "3": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
}


def test_a_ready_output_runs_before_other_ready_nodes() -> None:
    # As recorded, whichever order validation listed the outputs in.
    assert _order(TWO_OUTPUTS, ["4", "2"]) == ["1", "2", "3", "4"]
    assert _order(TWO_OUTPUTS, ["2", "4"]) == ["1", "2", "3", "4"]


def test_cached_upstream_nodes_are_not_scheduled() -> None:
    assert _order(TWO_OUTPUTS, ["4", "2"], cached={"1"}) == ["2", "3", "4"]


def test_a_fully_cached_output_is_still_visited() -> None:
    chain = {
        "1": {"class_type": "EmptyImage", "inputs": {}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}},
    }
    assert _order(chain, ["3"], cached={"1", "2", "3"}) == ["3"]
