"""The balancer's database side: snapshots, recorded decisions, dispatch marks."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from servers import balancer, fleet
from servers.models import BalancerDecision, FleetSettings, Server, ServerState
from servers.requirements import affinity_key_of, workflow_key_of
from tests.factories import make_server, shared_workflow, trivial_graph
from tests.servers.balancer_inputs import CATALOGUE, healthy_state

pytestmark = pytest.mark.django_db

GRAPH = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5.safetensors"}},
    "2": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": 7}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}},
}


def test_snapshot_reads_config_and_state_in_one_query():
    now = timezone.now()
    make_server("gpu-a", priority=5, weight=2.0, tags=["a100"], state=healthy_state(now))
    make_server("gpu-b", enabled=False, state={"health": "unhealthy", "unhealthy_since": now})
    make_server("gpu-c")
    with CaptureQueriesContext(connection) as queries:
        servers = {s.name: s for s in fleet.snapshot()}
    assert len(queries) == 1
    a = servers["gpu-a"]
    assert (a.priority, a.weight, a.tags, a.health) == (5, 2.0, {"a100"}, "healthy")
    assert a.node_classes == CATALOGUE
    assert a.model_files is not None
    assert "v1-5.safetensors" in a.model_files["checkpoints"]
    assert (servers["gpu-b"].enabled, servers["gpu-b"].unhealthy_since) == (False, now)
    # Never fetched: capabilities unknown, not "has nothing".
    assert (servers["gpu-c"].node_classes, servers["gpu-c"].model_files) == (None, None)


def test_snapshot_merges_legacy_model_folders():
    now = timezone.now()
    make_server(state=healthy_state(now, model_files={"clip": ["t5.safetensors"], "vae": "bad"}))
    (server,) = fleet.snapshot()
    assert server.model_files == {
        "text_encoders": frozenset({"t5.safetensors"}),
        "vae": frozenset(),
    }


def test_snapshot_of_a_server_without_a_state_row_counts_it_as_unknown():
    Server.objects.bulk_create([Server(name="raw", base_url="http://raw:8188")])
    (server,) = fleet.snapshot()
    assert (server.name, server.health, server.node_classes) == ("raw", "unknown", None)


def test_policy_comes_from_the_fleet_settings():
    settings = FleetSettings.load()
    settings.auto_switch, settings.affinity_window, settings.load_cache_age = False, 45, 20
    settings.save()
    assert fleet.policy() == balancer.Policy(
        auto_switch=False,
        affinity_window=timedelta(seconds=45),
        load_cache_age=timedelta(seconds=20),
    )


def test_pick_server_records_and_logs_its_decision(caplog):
    now = timezone.now()
    busy = make_server("gpu-busy", state=healthy_state(now, queue_pending=2))
    idle = make_server("gpu-idle", state=healthy_state(now))
    make_server("gpu-off", enabled=False)
    with caplog.at_level(logging.INFO, logger="servers.balancer"):
        decision = fleet.pick_server(GRAPH)
    assert (decision.mode, decision.server_id) == ("balanced", idle.pk)
    row = BalancerDecision.objects.get()
    assert (row.chosen, row.mode, row.reason) == (idle, "balanced", decision.reason)
    assert row.workflow_key == workflow_key_of(GRAPH)
    assert [c["server"] for c in row.candidates] == ["gpu-idle", "gpu-busy"]
    assert row.candidates[1]["load"] == 2
    assert row.excluded == {"gpu-off": "disabled"}
    (log,) = caplog.records
    assert log.getMessage() == f"balancer balanced → gpu-idle: {decision.reason}"
    assert (log.chosen, log.mode, log.excluded) == ("gpu-idle", "balanced", {"gpu-off": "disabled"})
    json.dumps(log.candidates)  # structured extra must serialise
    assert busy.pk in {c["id"] for c in log.candidates}


def test_a_decision_among_many_servers_keeps_the_leaders_and_counts_the_rest(caplog):
    now = timezone.now()
    for index in range(14):
        make_server(f"gpu-idle-{index:02}", state=healthy_state(now, queue_pending=index % 3))
    for index in range(12):
        make_server(f"gpu-full-{index:02}", max_inflight=1, state=healthy_state(now, inflight=1))
    for index in range(3):
        make_server(f"gpu-off-{index}", enabled=False)
    with caplog.at_level(logging.INFO, logger="servers.balancer"):
        decision = fleet.pick_server(GRAPH)
    row = BalancerDecision.objects.get()
    leaders = [c.name for c in decision.candidates[: fleet.KEPT]]
    assert [c["server"] for c in row.candidates] == leaders
    assert (row.candidates_total, row.excluded_total) == (14, 15)
    # Those left out for a reason other than a full slot are named first.
    assert len(row.excluded) == fleet.KEPT
    assert {f"gpu-off-{index}" for index in range(3)} <= row.excluded.keys()
    (log,) = caplog.records
    assert [c["server"] for c in log.candidates] == leaders
    assert (log.candidates_total, log.excluded_total, log.excluded) == (14, 15, row.excluded)


def test_pick_server_says_why_a_task_waits():
    now = timezone.now()
    for name in ("a", "b", "c"):
        make_server(name, state=healthy_state(now, health="unhealthy"))
    decision = fleet.pick_server(GRAPH)
    assert decision.waiting
    assert decision.reason == "all 3 servers are unhealthy"
    assert BalancerDecision.objects.get().chosen is None


def test_pick_server_without_recording_writes_nothing():
    make_server(state=healthy_state(timezone.now()))
    assert not fleet.pick_server(GRAPH, record=False).waiting
    assert not BalancerDecision.objects.exists()


def test_pick_server_falls_back_to_the_primary_when_the_balancer_fails(monkeypatch, caplog):
    primary = make_server("main", is_primary=True, state=healthy_state(timezone.now()))

    def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(balancer, "choose", broken)
    with caplog.at_level(logging.INFO, logger="servers.balancer"):
        decision = fleet.pick_server(GRAPH)
    assert (decision.mode, decision.server_id) == ("primary", primary.pk)
    assert decision.reason.startswith("balancer failed (RuntimeError: bug); single-server mode")
    assert caplog.records[0].exc_info is not None


def test_only_the_newest_decisions_are_kept(monkeypatch):
    monkeypatch.setattr(fleet, "KEEP_DECISIONS", 5)
    make_server(state=healthy_state(timezone.now()))
    keys = [f"wf-{n}" for n in range(8)]
    for key in keys:
        fleet.pick_server(GRAPH, workflow_key=key)
    assert BalancerDecision.objects.count() == 5
    assert [d.workflow_key for d in fleet.recent_decisions()] == keys[:2:-1]
    assert [d.workflow_key for d in fleet.recent_decisions(limit=2)] == ["wf-7", "wf-6"]


def test_recent_decisions_of_one_server_for_its_page():
    now = timezone.now()
    first = make_server("gpu-1", priority=1, state=healthy_state(now))
    second = make_server("gpu-2", priority=2, state=healthy_state(now, inflight=1))
    fleet.pick_server(GRAPH, workflow_key="to-first")
    ServerState.objects.filter(server=first).update(inflight=2)
    fleet.pick_server(GRAPH, workflow_key="to-second")
    with CaptureQueriesContext(connection) as queries:
        mine = fleet.recent_decisions(server_id=second.pk)
        names = [d.chosen.name for d in mine]
    assert [d.workflow_key for d in mine] == ["to-second"]
    assert names == ["gpu-2"]
    assert len(queries) == 1


def test_a_long_reason_is_cut_to_fit_the_column():
    now = timezone.now()
    graph = {str(n): {"class_type": f"Custom{n:03d}Node" * 8, "inputs": {}} for n in range(40)}
    make_server(state=healthy_state(now, node_classes=[]))
    decision = fleet.pick_server(graph)
    row = BalancerDecision.objects.get()
    assert len(row.reason) <= 300
    assert len(decision.reason) > 300
    assert row.reason == decision.reason[:299] + "…"


def test_note_dispatched_marks_affinity_and_last_use():
    server = make_server()
    at = timezone.now() - timedelta(seconds=3)
    assert fleet.note_dispatched(server.pk, "wf-portrait", now=at)
    state = ServerState.objects.get(server=server)
    assert (state.last_used_at, state.last_affinity_key, state.last_affinity_at) == (
        at,
        "wf-portrait",
        at,
    )
    assert state.affinity_key(timedelta(seconds=30), now=at + timedelta(seconds=1)) == (
        "wf-portrait"
    )
    assert not fleet.note_dispatched(server.pk + 1000, "wf-portrait")


def test_runs_of_one_template_stay_on_the_server_that_has_their_models_loaded():
    """Affinity is keyed on the models and the workflow version, not on parameter
    values: another prompt text or step count keeps the server."""
    now = timezone.now()
    first = make_server("gpu-1", priority=1, state=healthy_state(now))
    second = make_server("gpu-2", priority=2, state=healthy_state(now))
    ServerState.objects.update(node_classes=sorted(CATALOGUE | {"EmptyLatentImage"}))
    graph = trivial_graph(seed=1)
    graph["1"]["inputs"]["ckpt_name"] = "v1-5.safetensors"
    key = affinity_key_of(graph, 7)
    assert fleet.pick_server(graph, affinity_key=key).server_id == first.pk  # priority, first
    fleet.note_dispatched(second.pk, key)
    graph["3"]["inputs"] |= {"steps": 30, "seed": 2}
    graph["4"]["inputs"]["text"] = "a dog"
    assert affinity_key_of(graph, 7) == key
    assert fleet.pick_server(graph, affinity_key=key).server_id == second.pk
    # Another workflow version, or other models, is another key.
    assert affinity_key_of(graph, 8) != key
    graph["1"]["inputs"]["ckpt_name"] = "sdxl.safetensors"
    assert affinity_key_of(graph, 7) != key


def test_a_graph_that_loads_no_model_has_no_affinity():
    assert affinity_key_of(shared_workflow("slow_progress"), 7) == ""
