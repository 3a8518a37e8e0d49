"""Work no server can run is refused when it is submitted, judged from the node
catalogues the monitor read from real simulated servers (#10, items 2 and 3)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from servers.comfyui import ComfyUIClient, PromptRejected
from servers.models import Server, ServerState
from servers.simulator import SimulatorConfig
from tasks import dispatch
from tasks.models import Status, Task
from tasks.submission import submit_runs
from tests.factories import make_team, make_user
from tests.simulator_thread import TIME_SCALE, register, register_known
from workflows.runnable import Unrunnable, judge
from workflows.templating import Run

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("own_dispatch_keys")]

GREEN: dict[str, Any] = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 65280},
    },
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}


def green(node_id: str, name: str, value: Any) -> dict[str, Any]:
    """GREEN with one input of one node changed (None: left out)."""
    graph = copy.deepcopy(GREEN)
    graph[node_id]["inputs"][name] = value
    if value is None:
        del graph[node_id]["inputs"][name]
    return graph


def with_unknown_node() -> dict[str, Any]:
    graph = copy.deepcopy(GREEN)
    graph["3"] = {"class_type": "NoSuchNode", "inputs": {"image": ["1", 0]}}
    graph["2"]["inputs"]["images"] = ["3", 0]
    return graph


def with_checkpoint(name: str) -> dict[str, Any]:
    graph = copy.deepcopy(GREEN)
    graph["9"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": name}}
    return graph


def submit(graph: dict[str, Any], *more: dict[str, Any]) -> list[Task]:
    team = make_team()
    runs = [Run(graph=g) for g in (graph, *more)]
    return submit_runs(team=team, submitter=make_user(team=team), runs=runs).tasks


def server_says(sims, sim, graph: dict[str, Any]) -> str:
    """What the simulated ComfyUI itself answers to POST /prompt: "accepted" or the error."""

    async def post() -> str:
        async with ComfyUIClient(sim.base_url) as client:
            try:
                await client.submit(graph)
            except PromptRejected as rejected:
                kinds = {e.type for n in rejected.node_errors.values() for e in n.errors}
                return " ".join([rejected.error.type, *sorted(kinds)])
            return "accepted"

    return sims.run(post())


def test_work_using_a_node_no_server_has_is_refused_naming_it_and_the_servers_checked(
    sim_thread,
):
    sims = sim_thread.start(2)
    servers = [register_known(sim_thread, sim) for sim in sims]
    assert server_says(sim_thread, sims[0], with_unknown_node()).startswith("invalid_prompt")
    with pytest.raises(Unrunnable) as refused:
        submit(with_unknown_node())
    message = refused.value.message
    assert "missing nodes: NoSuchNode" in message
    assert all(server.name in message for server in servers)
    assert not Task.objects.exists()


def test_work_needing_a_model_no_server_has_is_refused(sim_thread):
    (sim,) = sim_thread.start(1)
    server = register_known(sim_thread, sim)
    with pytest.raises(Unrunnable) as refused:
        submit(with_checkpoint("absent.safetensors"))
    assert "checkpoints/absent.safetensors" in refused.value.message
    assert server.name in refused.value.message
    assert not Task.objects.exists()


def test_work_one_server_can_run_is_accepted_though_another_lacks_its_model(sim_thread):
    full = sim_thread.start(1)[0]
    small_config = SimulatorConfig(time_scale=TIME_SCALE, models={"checkpoints": []})
    small = sim_thread.start(1, config=small_config)[0]
    able, lacking = register_known(sim_thread, full), register_known(sim_thread, small)
    graph = with_checkpoint("v1-5-pruned-emaonly.safetensors")
    (task,) = submit(graph)
    assert task.status == Status.PENDING
    verdicts = {v.name: v for v in judge(graph).servers}
    assert verdicts[able.name].ok
    assert not verdicts[lacking.name].ok
    assert "v1-5-pruned-emaonly.safetensors" in "; ".join(verdicts[lacking.name].reasons)


def test_work_is_accepted_and_says_why_it_waits_while_a_servers_catalogue_is_unknown(
    sim_thread,
):
    known_sim, unknown_sim = sim_thread.start(2)
    register_known(sim_thread, known_sim)
    never_read = register(unknown_sim)
    ServerState.objects.filter(server=never_read).update(capabilities_at=None)
    (task,) = submit(with_unknown_node())
    assert task.status == Status.PENDING
    dispatch.dispatch_pending()
    reason = dispatch.waiting_reason(task) or ""
    assert "NoSuchNode" in reason
    assert "not known yet" in reason


@pytest.mark.parametrize("fleet", ["none", "never reached"])
def test_work_is_accepted_as_before_when_no_catalogue_is_known(fleet):
    if fleet == "never reached":
        Server.objects.create(name="far-away", base_url="http://127.0.0.1:9")
    (task,) = submit(with_unknown_node())
    assert task.status == Status.PENDING


def test_only_enabled_servers_are_asked(sim_thread):
    full = sim_thread.start(1)[0]
    small = sim_thread.start(
        1, config=SimulatorConfig(time_scale=TIME_SCALE, models={"checkpoints": []})
    )[0]
    able = register_known(sim_thread, full)
    Server.objects.filter(pk=able.pk).update(enabled=False)
    lacking = register_known(sim_thread, small)
    with pytest.raises(Unrunnable) as refused:
        submit(with_checkpoint("v1-5-pruned-emaonly.safetensors"))
    assert f"checked {lacking.name})" in refused.value.message


@pytest.mark.parametrize(
    ("graph", "comfyui_error", "our_words"),
    [
        (green("2", "images", None), "required_input_missing", "Required input is missing"),
        (green("1", "width", 0), "value_smaller_than_min", "smaller than min of 1"),
        (green("1", "width", 99999), "value_bigger_than_max", "bigger than max of 16384"),
        (green("1", "width", "wide"), "invalid_input_type", "Failed to convert"),
    ],
    ids=["missing input", "below min", "above max", "not a number"],
)
def test_a_graph_every_server_would_reject_is_refused_with_the_servers_reason(
    sim_thread, graph, comfyui_error, our_words
):
    (sim,) = sim_thread.start(1)
    server = register_known(sim_thread, sim)
    assert comfyui_error in server_says(sim_thread, sim, graph)
    with pytest.raises(Unrunnable) as refused:
        submit(graph)
    assert our_words in refused.value.message
    assert server.name in refused.value.message
    (verdict,) = refused.value.verdict.servers
    assert not verdict.ok
    assert comfyui_error in {e["type"] for errors in verdict.node_errors.values() for e in errors}


def test_a_value_not_in_a_servers_list_is_refused(sim_thread):
    (sim,) = sim_thread.start(1)
    register_known(sim_thread, sim)
    graph = copy.deepcopy(GREEN)
    graph["3"] = {
        "class_type": "ImageScale",
        "inputs": {
            "image": ["1", 0],
            "upscale_method": "magic",
            "width": 32,
            "height": 32,
            "crop": "disabled",
        },
    }
    graph["2"]["inputs"]["images"] = ["3", 0]
    assert "value_not_in_list" in server_says(sim_thread, sim, graph)
    with pytest.raises(Unrunnable) as refused:
        submit(graph)
    assert "'magic'" in refused.value.message


def test_a_broken_node_that_feeds_no_output_does_not_refuse_the_work(sim_thread):
    """ComfyUI validates only what its outputs need; neither do we."""
    (sim,) = sim_thread.start(1)
    register_known(sim_thread, sim)
    graph = copy.deepcopy(GREEN)
    graph["7"] = {"class_type": "ImageInvert", "inputs": {}}  # its image is missing
    assert server_says(sim_thread, sim, graph) == "accepted"
    (task,) = submit(graph)
    assert task.status == Status.PENDING


def test_an_output_a_server_would_skip_is_named_but_the_rest_runs(sim_thread):
    (sim,) = sim_thread.start(1)
    server = register_known(sim_thread, sim)
    graph = copy.deepcopy(GREEN)
    graph["3"] = {"class_type": "SaveImage", "inputs": {"filename_prefix": "lost"}}
    assert server_says(sim_thread, sim, graph) == "accepted"
    (task,) = submit(graph)
    assert task.status == Status.PENDING
    (verdict,) = judge(graph).servers
    assert verdict.ok
    assert verdict.name == server.name
    assert "output node 3" in " ".join(verdict.skipped)


def test_a_batch_is_refused_when_one_of_its_runs_cannot_run(sim_thread):
    (sim,) = sim_thread.start(1)
    register_known(sim_thread, sim)
    with pytest.raises(Unrunnable) as refused:
        submit(green("1", "width", 64), green("1", "width", 0))
    assert "smaller than min" in refused.value.message
    assert not Task.objects.exists()
