"""The balancer's rules, on snapshots: no database, no network."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servers.balancer import UNHEALTHY, Decision, Policy, ServerSnapshot, choose, single_server
from servers.requirements import (
    Requirements,
    has_model,
    model_index,
    requirements_from_graph,
    workflow_key_of,
)
from servers.simulator.catalogue import class_names
from tests.factories import shared_workflow, shared_workflow_names
from tests.servers.balancer_inputs import NOW, needs, snap

POLICY = Policy(
    auto_switch=True, affinity_window=timedelta(seconds=30), load_cache_age=timedelta(seconds=15)
)
STALE = NOW - timedelta(minutes=5)


def pick(servers: list[ServerSnapshot], requirements=None, policy: Policy = POLICY) -> Decision:
    return choose(servers, requirements or needs(), policy, NOW)


# --- Candidates and their exclusion reasons -----------------------------------


def test_lowest_effective_load_wins():
    decision = pick(
        [snap(1, queue_pending=3), snap(2, queue_running=1), snap(3, inflight=1, queue_pending=1)]
    )
    assert decision.server_id == 2
    assert decision.mode == "balanced"
    assert decision.reason == "gpu-2: lowest load 1 (next gpu-3 at 2)"


def test_load_counts_our_inflight_and_both_queues():
    decision = pick(
        [snap(1, inflight=1, queue_running=1, queue_pending=1, max_inflight=3), snap(2)]
    )
    assert [c.load for c in decision.candidates] == [0, 3]


def test_weight_divides_load_so_a_fast_server_takes_more():
    fast = snap(1, weight=3, inflight=1, queue_pending=1)  # 2 prompts / 3 = 0.67
    slow = snap(2, weight=1, queue_pending=1)  # 1
    assert pick([slow, fast]).server_name == "gpu-1"


def test_disabled_server_is_excluded():
    decision = pick([snap(1, enabled=False), snap(2, queue_pending=5)])
    assert decision.server_id == 2
    assert decision.excluded == {"gpu-1": "disabled"}


def test_a_draining_server_takes_no_new_prompt_however_idle():
    decision = pick([snap(1, draining=True), snap(2, queue_pending=5)])
    assert decision.server_id == 2
    assert decision.excluded == {"gpu-1": "draining: takes no new prompts"}


def test_unhealthy_server_is_excluded_with_the_time_it_went_down():
    since = NOW - timedelta(minutes=3)
    decision = pick([snap(1, health=UNHEALTHY, unhealthy_since=since), snap(2, queue_pending=5)])
    assert decision.server_id == 2
    assert decision.excluded["gpu-1"] == "unhealthy since 11:57:00 UTC (3 min ago)"


def test_server_not_health_checked_yet_is_not_a_candidate():
    decision = pick([snap(1, health="unknown"), snap(2, queue_pending=5)])
    assert decision.server_id == 2
    assert decision.excluded["gpu-1"] == "health unknown: not checked yet"


def test_full_server_is_excluded():
    decision = pick([snap(1, inflight=2, max_inflight=2), snap(2, queue_pending=9)])
    assert decision.server_id == 2
    assert decision.excluded["gpu-1"] == "full: 2/2 in flight"


def test_server_without_a_node_of_the_graph_is_excluded():
    decision = pick([snap(1, node_classes=frozenset({"SaveImage"})), snap(2, queue_pending=4)])
    assert decision.server_id == 2
    assert decision.excluded["gpu-1"] == "missing nodes: KSampler"


def test_server_without_a_model_file_of_the_graph_is_excluded():
    requirements = needs(models=[("checkpoints", "x.safetensors")])
    lacking = snap(1)
    having = snap(2, queue_pending=4, model_files={"checkpoints": frozenset({"x.safetensors"})})
    decision = pick([lacking, having], requirements)
    assert decision.server_id == 2
    assert decision.excluded["gpu-1"] == "missing model checkpoints/x.safetensors"


def test_text_encoders_are_found_in_the_legacy_clip_folder():
    old_comfyui = {"clip": frozenset({"t5xxl.safetensors"})}
    assert has_model(old_comfyui, "text_encoders", "t5xxl.safetensors")
    requirements = needs(models=[("text_encoders", "t5xxl.safetensors")])
    assert pick([snap(1, model_files=old_comfyui)], requirements).server_id == 1


def test_server_whose_capabilities_are_unknown_is_excluded():
    decision = pick([snap(1, node_classes=None, model_files=None), snap(2, queue_pending=4)])
    assert decision.server_id == 2
    assert decision.excluded["gpu-1"] == "capabilities unknown"


def test_task_tags_must_all_be_on_the_server():
    requirements = needs(tags=["a100", "sdxl"])
    decision = pick(
        [snap(1, tags=frozenset({"sdxl"})), snap(2, tags=frozenset({"a100", "sdxl", "x"}))],
        requirements,
    )
    assert decision.server_id == 2
    assert decision.excluded["gpu-1"] == "missing tags: a100"


def test_a_full_server_that_lacks_a_node_is_excluded_for_the_node():
    decision = pick([snap(1, inflight=2, node_classes=frozenset({"SaveImage"})), snap(2)])
    assert decision.excluded["gpu-1"] == "missing nodes: KSampler"


def test_every_gap_of_an_incapable_server_is_named():
    requirements = needs(
        "KSampler", "BarNode", "FooNode2", models=[("loras", "y.safetensors")], tags=["a100"]
    )
    decision = pick(
        [
            snap(1),
            snap(
                2,
                node_classes=frozenset({"KSampler", "BarNode", "FooNode2"}),
                model_files={"loras": frozenset({"y.safetensors"})},
                tags=frozenset({"a100"}),
            ),
        ],
        requirements,
    )
    assert decision.excluded["gpu-1"] == (
        "missing nodes: BarNode, FooNode2; missing model loras/y.safetensors; missing tags: a100"
    )


# --- Affinity ------------------------------------------------------------------


def ran(key: str = "wf-portrait", seconds_ago: float = 10) -> dict:
    return {"last_affinity_key": key, "last_affinity_at": NOW - timedelta(seconds=seconds_ago)}


def test_affinity_keeps_a_workflow_on_a_server_less_than_one_slot_more_loaded():
    # Weight 2: one prompt is 0.5 load. Its 0.5 is less than 0.25 + 0.5.
    keeper = snap(1, weight=2, inflight=1, **ran())
    other = snap(2, weight=4, inflight=1)
    decision = pick([other, keeper])
    assert decision.server_id == 1
    assert decision.candidates[0].affinity
    assert decision.reason.startswith("gpu-1: keeps its workflow, load 0.5 is within one slot")


def test_affinity_is_lost_when_more_loaded_by_a_whole_slot():
    keeper = snap(1, inflight=1, **ran())  # load 1 = best 0 + one slot of 1
    assert pick([keeper, snap(2)]).server_id == 2


def test_affinity_wins_a_load_tie_over_priority():
    keeper = snap(1, priority=50, **ran())
    decision = pick([snap(2, priority=1), keeper])
    assert decision.server_id == 1
    assert decision.reason == "gpu-1: tied on load 0 with gpu-2, keeps its workflow"


def test_affinity_ends_with_the_affinity_window():
    keeper = snap(1, priority=50, **ran(seconds_ago=30))
    assert pick([snap(2, priority=1), keeper]).server_id == 2


def test_another_workflow_gets_no_affinity():
    keeper = snap(1, priority=50, **ran(key="wf-landscape"))
    decision = pick([snap(2, priority=1), keeper])
    assert decision.server_id == 2
    assert not any(c.affinity for c in decision.candidates)


def test_a_slow_affinity_server_is_allowed_more_load():
    # Weight 0.5: one prompt is 2 load units, so load 2 vs best 1 is within a slot.
    keeper = snap(1, weight=0.5, inflight=1, **ran())
    assert pick([snap(2, queue_pending=1), keeper]).server_id == 1


# --- Tie-breaks --------------------------------------------------------------------


def test_priority_breaks_load_ties_lower_first():
    decision = pick([snap(1, priority=20), snap(2, priority=10), snap(3, priority=30)])
    assert [c.name for c in decision.candidates] == ["gpu-2", "gpu-1", "gpu-3"]
    assert decision.reason == "gpu-2: tied on load 0 with gpu-1, priority 10 before 20"


def test_least_recently_used_breaks_priority_ties_never_used_first():
    earlier, later = NOW - timedelta(minutes=5), NOW - timedelta(minutes=1)
    decision = pick([snap(1, last_used_at=later), snap(2, last_used_at=earlier), snap(3)])
    assert [c.name for c in decision.candidates] == ["gpu-3", "gpu-2", "gpu-1"]
    assert (
        decision.reason == "gpu-3: tied on load 0 with gpu-2 and on priority, least recently used"
    )


def test_lowest_id_breaks_the_last_tie():
    decision = pick([snap(7), snap(3), snap(5)])
    assert decision.server_id == 3
    assert decision.reason.endswith("lower id")


def test_a_single_candidate_says_so():
    decision = pick([snap(1), snap(2, enabled=False)])
    assert decision.reason == "gpu-1: the only candidate (1 excluded), load 0"


# --- Degraded modes (B6) ----------------------------------------------------------


def test_stale_load_data_falls_back_to_the_primary():
    servers = [
        snap(1, load_checked_at=STALE),
        snap(2, is_primary=True, queue_pending=4, load_checked_at=STALE),
    ]
    decision = pick(servers)
    assert (decision.mode, decision.server_id) == ("primary", 2)
    assert decision.reason == (
        "health data is stale (newest load report 5 min old, limit 15 s): using the primary gpu-2"
    )
    assert decision.excluded["gpu-1"].startswith("not the primary (health data is stale")


def test_without_any_load_report_the_primary_is_used_even_if_its_health_is_unknown():
    servers = [snap(1, load_checked_at=None, health="unknown", node_classes=None, is_primary=True)]
    decision = pick(servers)
    assert (decision.mode, decision.server_id) == ("primary", 1)
    assert decision.reason == "no load report from the monitor yet: using the primary gpu-1"


def test_a_dead_primary_is_never_sent_work_on_stale_data():
    since = NOW - timedelta(minutes=2)
    servers = [
        snap(1, is_primary=True, health=UNHEALTHY, unhealthy_since=since, load_checked_at=STALE),
        snap(2, load_checked_at=STALE),
    ]
    decision = pick(servers)
    assert decision.waiting
    assert decision.mode == "waiting"
    assert decision.reason.endswith("; primary gpu-1: unhealthy since 11:58:00 UTC (2 min ago)")


def test_a_dead_primary_is_skipped_while_others_are_healthy():
    servers = [snap(1, is_primary=True, health=UNHEALTHY), snap(2, queue_pending=3)]
    assert pick(servers).server_id == 2


def test_a_full_primary_on_stale_data_makes_the_task_wait():
    servers = [snap(1, is_primary=True, inflight=2, load_checked_at=STALE)]
    assert pick(servers).reason.endswith("; primary gpu-1: full: 2/2 in flight")


def test_a_primary_known_to_lack_a_node_is_not_used_on_stale_data():
    servers = [snap(1, is_primary=True, node_classes=frozenset(), load_checked_at=STALE)]
    assert pick(servers).reason.endswith("; primary gpu-1: missing nodes: KSampler, SaveImage")


def test_stale_data_without_a_primary_waits():
    decision = pick([snap(1, load_checked_at=STALE)])
    assert decision.waiting
    assert decision.reason.endswith(", and no enabled primary server is configured")


def test_automatic_failover_off_uses_only_the_primary():
    off = Policy(auto_switch=False)
    decision = pick([snap(1), snap(2, is_primary=True, queue_pending=5)], policy=off)
    assert (decision.mode, decision.server_id) == ("primary", 2)
    assert decision.reason == "automatic failover is off: using the primary gpu-2"
    assert decision.excluded == {"gpu-1": "not the primary (automatic failover is off)"}


def test_automatic_failover_off_waits_for_a_dead_primary():
    off = Policy(auto_switch=False)
    decision = pick([snap(1), snap(2, is_primary=True, health=UNHEALTHY)], policy=off)
    assert decision.waiting
    assert decision.reason == "automatic failover is off; primary gpu-2: unhealthy"


def test_automatic_failover_off_applies_the_normal_rules_to_the_primary_on_fresh_data():
    off = Policy(auto_switch=False)
    decision = pick([snap(1, is_primary=True, health="unknown")], policy=off)
    assert (
        decision.reason
        == "automatic failover is off; primary gpu-1: health unknown: not checked yet"
    )


def test_every_server_down_waits_with_a_clear_reason():
    decision = pick([snap(i, health=UNHEALTHY) for i in (1, 2, 3)])
    assert decision.waiting
    assert decision.reason == "all 3 servers are unhealthy"
    assert decision.candidates == ()
    assert set(decision.excluded) == {"gpu-1", "gpu-2", "gpu-3"}


def test_waiting_reasons_name_the_most_fundamental_problem():
    cases = [
        ([], "no servers are configured"),
        ([snap(1, enabled=False)], "the only server, gpu-1, is disabled"),
        ([snap(1, node_classes=frozenset({"KSampler"}))], "no server has the node SaveImage"),
        ([snap(1, health=UNHEALTHY)], "the only server, gpu-1, is unhealthy"),
        (
            [snap(1, health=UNHEALTHY), snap(2, enabled=False)],
            "the only enabled server, gpu-1, is unhealthy",
        ),
        (
            [snap(1, health=UNHEALTHY), snap(2, health="unknown")],
            "no healthy server (1 unhealthy, 1 not checked yet)",
        ),
        ([snap(1, health="unknown")], "no server has passed a health check yet (1 unknown)"),
        ([snap(1, inflight=2), snap(2, inflight=3, max_inflight=3)], "all 2 servers are full"),
        (
            [snap(1, inflight=2), snap(2, node_classes=None)],
            "the only server that can run it, gpu-1, is full: 2/2 in flight",
        ),
        (
            [
                snap(1, node_classes=frozenset({"KSampler"})),
                snap(2, node_classes=frozenset({"SaveImage"})),
            ],
            "no healthy server can run it (gpu-1: missing nodes: SaveImage; "
            "gpu-2: missing nodes: KSampler)",
        ),
        (
            [snap(1, node_classes=None), snap(2, node_classes=None)],
            "capabilities of the 2 healthy servers are not known yet",
        ),
    ]
    assert [pick(servers).reason for servers, _ in cases] == [reason for _, reason in cases]


def test_no_server_with_a_model_says_which_model():
    requirements = needs(models=[("checkpoints", "sdxl.safetensors")])
    assert pick([snap(1), snap(2)], requirements).reason == (
        "no server has the model checkpoints/sdxl.safetensors"
    )


def test_single_server_mode_uses_a_live_primary_when_the_balancer_fails():
    decision = single_server([snap(1), snap(2, is_primary=True)], "ValueError: boom")
    assert (decision.mode, decision.server_id) == ("primary", 2)
    dead = single_server([snap(2, is_primary=True, health=UNHEALTHY)], "ValueError: boom")
    assert dead.waiting
    assert dead.reason.endswith("primary gpu-2 is unhealthy")


# --- Properties ----------------------------------------------------------------------

NODES = ("A", "B", "C")
FILES = (("checkpoints", "m1"), ("loras", "m2"), ("text_encoders", "m3"))
TAGS = ("a100", "sdxl")


def _models(files: frozenset[tuple[str, str]]) -> dict[str, frozenset[str]]:
    grouped: dict[str, set[str]] = {}
    for folder, name in files:
        grouped.setdefault(folder, set()).add(name)
    return {folder: frozenset(names) for folder, names in grouped.items()}


def _moment(max_seconds: int):
    return st.none() | st.integers(0, max_seconds).map(lambda s: NOW - timedelta(seconds=s))


@st.composite
def fleets(draw) -> list[ServerSnapshot]:
    count = draw(st.integers(0, 7))
    servers = []
    for index in range(1, count + 1):
        servers.append(
            ServerSnapshot(
                id=index,
                name=f"s{index}",
                enabled=draw(st.booleans()),
                health=draw(st.sampled_from(["healthy", "healthy", "unhealthy", "unknown"])),
                inflight=draw(st.integers(0, 3)),
                max_inflight=draw(st.integers(1, 3)),
                queue_running=draw(st.integers(0, 1)),
                queue_pending=draw(st.integers(0, 4)),
                weight=draw(st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0])),
                priority=draw(st.integers(0, 2)),
                is_primary=draw(st.booleans()),
                tags=draw(st.frozensets(st.sampled_from(TAGS))),
                node_classes=draw(st.none() | st.frozensets(st.sampled_from(NODES))),
                model_files=draw(st.none() | st.frozensets(st.sampled_from(FILES)).map(_models)),
                last_used_at=draw(_moment(600)),
                last_affinity_key=draw(st.sampled_from(["", "wf", "other"])),
                last_affinity_at=draw(_moment(60)),
                load_checked_at=draw(_moment(30)),
            )
        )
    return servers


requirements_st = st.builds(
    Requirements,
    workflow_key=st.just("wf"),
    affinity_key=st.just("wf"),
    node_classes=st.frozensets(st.sampled_from(NODES), min_size=1),
    model_files=st.frozensets(st.sampled_from(FILES)),
    tags=st.frozensets(st.sampled_from(TAGS), max_size=1),
)
policies = st.builds(
    Policy,
    auto_switch=st.booleans(),
    affinity_window=st.just(timedelta(seconds=30)),
    load_cache_age=st.just(timedelta(seconds=15)),
)
PROPERTY = settings(max_examples=300, deadline=None)


def _capable(s: ServerSnapshot, r: Requirements) -> bool:
    return (
        s.node_classes is not None
        and r.node_classes <= s.node_classes
        # Unknown model lists only matter when the task names model files.
        and (
            not r.model_files
            or (
                s.model_files is not None
                and all(has_model(s.model_files, folder, name) for folder, name in r.model_files)
            )
        )
        and r.tags <= s.tags
    )


def _eligible(s: ServerSnapshot, r: Requirements) -> bool:
    return s.enabled and s.health == "healthy" and s.inflight < s.max_inflight and _capable(s, r)


def _fresh(servers: list[ServerSnapshot], policy: Policy) -> bool:
    return any(
        s.enabled and s.load_checked_at and NOW - s.load_checked_at <= policy.load_cache_age
        for s in servers
    )


def _affine(s: ServerSnapshot, r: Requirements, policy: Policy) -> bool:
    return (
        s.last_affinity_key == r.affinity_key
        and s.last_affinity_at is not None
        and NOW - s.last_affinity_at < policy.affinity_window
    )


@PROPERTY
@given(fleets(), requirements_st, policies)
def test_never_picks_a_disabled_unhealthy_full_or_incapable_server(servers, requirements, policy):
    decision = choose(servers, requirements, policy, NOW)
    if decision.waiting:
        return
    chosen = next(s for s in servers if s.id == decision.server_id)
    assert chosen.enabled
    assert chosen.health != UNHEALTHY
    assert chosen.inflight < chosen.max_inflight
    # What is known about its capabilities must fit, in every mode.
    assert chosen.node_classes is None or requirements.node_classes <= chosen.node_classes
    assert chosen.model_files is None or all(
        has_model(chosen.model_files, f, n) for f, n in requirements.model_files
    )
    assert requirements.tags <= chosen.tags
    if decision.mode == "balanced":
        assert policy.auto_switch
        assert _eligible(chosen, requirements)
    else:
        # Failover off or stale data: the primary or nobody.
        assert chosen.is_primary


@PROPERTY
@given(fleets(), requirements_st)
def test_picks_a_minimum_load_candidate_unless_affinity_keeps_it(servers, requirements):
    decision = choose(servers, requirements, POLICY, NOW)
    if not _fresh(servers, POLICY):
        assert decision.mode in {"primary", "waiting"}
        return
    eligible = [s for s in servers if _eligible(s, requirements)]
    assert {c.server_id for c in decision.candidates} == {s.id for s in eligible}
    if not eligible:
        return
    best = min(s.load for s in eligible)
    chosen = next(s for s in eligible if s.id == decision.server_id)
    keepers = [s for s in eligible if _affine(s, requirements, POLICY) and s.load < best + s.slot]
    if keepers:
        assert chosen in keepers
    else:
        assert chosen.load == best


@PROPERTY
@given(fleets(), requirements_st, policies)
def test_same_snapshot_same_decision_whatever_the_order(servers, requirements, policy):
    first = choose(servers, requirements, policy, NOW)
    assert choose(servers, requirements, policy, NOW) == first
    assert choose(list(reversed(servers)), requirements, policy, NOW) == first


@PROPERTY
@given(fleets(), requirements_st, policies)
def test_every_server_is_a_candidate_or_excluded_with_a_reason(servers, requirements, policy):
    decision = choose(servers, requirements, policy, NOW)
    candidates = [c.name for c in decision.candidates]
    assert len(candidates) == len(set(candidates))
    assert set(candidates).isdisjoint(decision.excluded)
    assert set(candidates) | set(decision.excluded) == {s.name for s in servers}
    assert all(decision.excluded.values())
    if not decision.waiting:
        assert candidates[0] == decision.server_name


@PROPERTY
@given(fleets(), requirements_st, policies)
def test_waits_only_when_no_candidate_exists_and_says_why(servers, requirements, policy):
    decision = choose(servers, requirements, policy, NOW)
    assert decision.waiting == (decision.candidates == ())
    assert decision.waiting == (decision.mode == "waiting")
    assert decision.reason


# --- Requirements from a graph ---------------------------------------------------------


WORKFLOW_NAMES = shared_workflow_names()


def test_the_shared_workflows_are_there():
    assert len(WORKFLOW_NAMES) >= 10


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_a_shared_workflow_needs_exactly_its_node_classes(name):
    graph = shared_workflow(name)
    requirements = requirements_from_graph(graph)
    assert requirements.node_classes == {node["class_type"] for node in graph.values()}
    # They build images from scratch or from an uploaded input: no model files.
    assert requirements.model_files == frozenset()
    assert len(requirements.workflow_key) == 16
    int(requirements.workflow_key, 16)


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_the_simulator_can_run_every_shared_workflow_with_known_nodes(name):
    simulator = snap(1, node_classes=frozenset(class_names()))
    decision = choose([simulator], requirements_from_graph(shared_workflow(name)), POLICY, NOW)
    if name == "invalid_unknown_class":
        assert decision.reason == "no server has the node NoSuchNode"
    else:
        assert decision.server_id == 1


def _loader(class_type: str, **inputs) -> dict:
    return {"class_type": class_type, "inputs": inputs}


def test_loader_inputs_map_to_comfyui_model_folders():
    graph = {
        "1": _loader("CheckpointLoaderSimple", ckpt_name="sd15.safetensors"),
        "2": _loader("LoraLoader", lora_name="detail.safetensors", model=["1", 0], clip=["1", 1]),
        "3": _loader("VAELoader", vae_name="mse.safetensors"),
        "4": _loader("DualCLIPLoader", clip_name1="l.safetensors", clip_name2="t5.safetensors"),
        "5": _loader("CLIPLoader", clip_name="g.safetensors", type="sd3"),
        "6": _loader("UNETLoader", unet_name="flux.safetensors", weight_dtype="default"),
        "7": _loader("ControlNetLoader", control_net_name="canny.safetensors"),
        "8": _loader("UpscaleModelLoader", model_name="4x.pth"),
        "9": _loader("CLIPVisionLoader", clip_name="vit-h.safetensors"),
        "10": _loader("KSampler", model=["2", 0], seed=5, sampler_name="euler"),
    }
    assert requirements_from_graph(graph).model_files == {
        ("checkpoints", "sd15.safetensors"),
        ("loras", "detail.safetensors"),
        ("vae", "mse.safetensors"),
        ("text_encoders", "l.safetensors"),
        ("text_encoders", "t5.safetensors"),
        ("text_encoders", "g.safetensors"),
        ("diffusion_models", "flux.safetensors"),
        ("controlnet", "canny.safetensors"),
        ("upscale_models", "4x.pth"),
        ("clip_vision", "vit-h.safetensors"),
    }


def test_links_virtual_vaes_and_empty_choices_are_not_files():
    graph = {
        "1": _loader("VAELoader", vae_name="taesdxl"),
        "2": _loader("LoraLoader", lora_name=["9", 0]),
        "3": _loader("SomeCustomLoader", lora_name="None", model_name="not-an-upscaler"),
        "4": _loader("CLIPTextEncode", text="embedding:easynegative, blurry", clip=["1", 1]),
    }
    assert requirements_from_graph(graph).model_files == frozenset()


def test_windows_sub_folder_names_match_either_slash():
    graph = {"1": _loader("CheckpointLoaderSimple", ckpt_name="SDXL\\base.safetensors")}
    requirements = requirements_from_graph(graph)
    assert requirements.model_files == {("checkpoints", "SDXL/base.safetensors")}
    server = model_index({"checkpoints": ["SDXL\\base.safetensors"], "unet": ["f.gguf"]})
    assert server == {
        "checkpoints": frozenset({"SDXL/base.safetensors"}),
        "diffusion_models": frozenset({"f.gguf"}),
    }


def test_a_seed_sweep_keeps_one_workflow_key():
    graph = shared_workflow("slow_progress")
    sweep = json.loads(json.dumps(graph))
    sweep["2"]["inputs"]["nonce"] = 41
    sweep["2"]["_meta"] = {"title": "renamed in the UI"}
    assert workflow_key_of(sweep) == workflow_key_of(graph)
    changed = json.loads(json.dumps(graph))
    changed["2"]["inputs"]["steps"] = 6
    assert workflow_key_of(changed) != workflow_key_of(graph)


def test_workflow_key_ignores_key_order_and_can_be_given():
    graph = shared_workflow("empty_save")
    reordered = dict(reversed(list(graph.items())))
    assert workflow_key_of(reordered) == workflow_key_of(graph)
    given_key = requirements_from_graph(graph, workflow_key="template-7", tags=["a100"])
    assert (given_key.workflow_key, given_key.tags) == ("template-7", {"a100"})
    with pytest.raises(ValueError, match="at most 64"):
        requirements_from_graph(graph, workflow_key="x" * 65)
