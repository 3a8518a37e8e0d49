"""Dispatch against real simulated servers: claims, slots, limits, failures, retries, uploads."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db.models import CharField, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from servers import catalogues
from servers.comfyui import ComfyUIClient
from servers.containers.models import Container
from servers.models import BalancerDecision, Server, ServerState
from tasks import dispatch, queue
from tasks.models import Status, Task, TaskEvent
from tasks.transitions import attempt_history
from tests.factories import make_docker_host, make_pool, make_task, make_team, trivial_graph
from tests.simulator_thread import register, register_known

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("own_dispatch_keys")]


def inflight(server) -> int:
    return ServerState.objects.get(server=server).inflight


def history_item(sims, sim, prompt_id: str):
    async def look():
        async with ComfyUIClient(sim.base_url) as client:
            return await client.get_history(prompt_id)

    sims.wait_idle(sim)
    return sims.run(look())


def make_due(task: Task) -> None:
    """Skip the backoff wait (the test is about where the retry goes, not when)."""
    Task.objects.filter(pk=task.pk).update(not_before=timezone.now() - timedelta(seconds=1))


def test_a_pending_task_is_sent_with_the_servers_client_id_and_our_prompt_id(sim_thread):
    (sim,) = sim_thread.start(1)
    server = register(sim)
    task = make_task()
    assert dispatch.dispatch_pending() == 1
    task.refresh_from_db()
    assert task.status == Status.DISPATCHED
    assert task.server_id == server.pk
    assert task.dispatched_at is not None
    assert task.attempts == 1  # runs started: its first is attempt 1
    entry = history_item(sim_thread, sim, task.prompt_id)
    assert entry is not None
    assert entry.item.client_id == server.client_id
    assert entry.item.extra_data["comfyweb_task"] == task.pk
    messages = list(TaskEvent.objects.filter(task=task).values_list("message", flat=True))
    assert messages[-1] == f"accepted by {server.name}"
    assert server.state.__class__.objects.get(server=server).last_affinity_key == task.affinity_key


def test_a_pass_notes_every_accepted_prompt_and_each_servers_last_affinity(sim_thread):
    servers = [register(sim, max_inflight=2) for sim in sim_thread.start(2)]
    tasks = [make_task(graph=trivial_graph(seed=n)) for n in range(4)]
    Task.objects.filter(pk__in=[t.pk for t in tasks]).update(
        affinity_key=Concat(Value("wf-"), Cast("pk", CharField()))
    )
    assert dispatch.dispatch_pending() == 4
    sent = {t.pk: t for t in Task.objects.filter(pk__in=[t.pk for t in tasks])}
    for task in sent.values():
        messages = TaskEvent.objects.filter(task=task).values_list("message", flat=True)
        assert f"accepted by {task.server.name}" in messages
        assert task.sending_until is None  # its send lease ended
    for server in servers:
        mine = sorted((t for t in sent.values() if t.server_id == server.pk), key=lambda t: t.pk)
        assert len(mine) == 2
        # Claimed in dispatch order: the later one was sent last.
        assert ServerState.objects.get(server=server).last_affinity_key == mine[-1].affinity_key


def test_no_server_gets_more_than_its_max_inflight(sim_thread):
    servers = [register(sim, max_inflight=2) for sim in sim_thread.start(2)]
    for _ in range(10):
        make_task()
    assert dispatch.dispatch_pending() == 4
    assert [inflight(s) for s in servers] == [2, 2]
    assert Task.objects.filter(status=Status.DISPATCHED).count() == 4
    assert dispatch.dispatch_pending() == 0  # still full: nothing more goes


def test_the_global_limit_holds_across_servers(sim_thread, settings):
    settings.COMFYWEB_MAX_INFLIGHT = 3
    for sim in sim_thread.start(2):
        register(sim, max_inflight=2)
    for _ in range(10):
        make_task()
    assert dispatch.dispatch_pending() == 3
    assert Task.objects.filter(status__in=Status.active()).count() == 3


def test_a_freed_slot_lets_the_next_task_go(sim_thread):
    from tasks.transitions import transition

    (sim,) = sim_thread.start(1)
    server = register(sim, max_inflight=1)
    first, second = make_task(), make_task()
    dispatch.dispatch_pending()
    first.refresh_from_db()
    assert first.status == Status.DISPATCHED
    # What the execution handler does when the prompt ends:
    transition(first.pk, Status.active(), Status.COMPLETED, message="done")
    assert inflight(server) == 0
    assert dispatch.dispatch_pending() == 1
    assert Task.objects.get(pk=second.pk).status == Status.DISPATCHED


def test_a_rejected_prompt_fails_at_once_with_the_servers_per_node_message(sim_thread):
    (sim,) = sim_thread.start(1)
    server = register(sim)
    graph = trivial_graph()
    graph["3"]["inputs"]["steps"] = 0  # below KSampler's minimum of 1
    task = make_task(graph=graph)
    dispatch.dispatch_pending()
    task.refresh_from_db()
    assert task.status == Status.FAILED
    assert task.error_node == "3"
    assert "steps" in task.error_message
    assert task.error_type
    assert task.attempts == 1  # it was sent once, and not retried: the server refuses the graph
    assert inflight(server) == 0
    event = TaskEvent.objects.filter(task=task, to_status=Status.FAILED).get()
    assert "3" in event.data["node_errors"]


def test_a_transient_failure_is_retried_with_backoff_on_another_server(sim_thread):
    flaky, steady = sim_thread.start(2)
    flaky.faults.http_status = 500
    flaky.faults.failing_paths = frozenset({"/prompt"})
    # The flaky server is preferred by configuration: only the retry avoids it.
    bad = register(flaky, max_inflight=4)
    bad.__class__.objects.filter(pk=bad.pk).update(priority=1)
    good = register(steady, max_inflight=4)
    task = make_task()
    before = timezone.now()
    dispatch.dispatch_pending()
    task.refresh_from_db()
    assert task.status == Status.PENDING
    assert task.attempts == 1
    assert task.server_id is None
    assert task.prompt_id == ""
    # backoff_delay(0): 1 s plus up to 0.5 s jitter.
    assert before + timedelta(seconds=1) <= task.not_before
    assert task.not_before <= timezone.now() + timedelta(seconds=1.5)
    assert inflight(bad) == 0
    assert dispatch.dispatch_pending() == 0  # still backing off
    make_due(task)
    assert dispatch.dispatch_pending() == 1
    task.refresh_from_db()
    assert task.status == Status.DISPATCHED
    assert task.attempts == 2
    assert task.server_id == good.pk
    assert [a["failed_server"] for a in attempt_history(task.pk)] == [bad.pk]


def test_after_max_attempts_the_task_fails_with_the_history_of_its_attempts(sim_thread):
    (sim,) = sim_thread.start(1)
    sim.faults.http_status = 503
    server = register(sim)
    task = make_task(max_attempts=2)
    dispatch.dispatch_pending()
    make_due(task)
    dispatch.dispatch_pending()
    task.refresh_from_db()
    assert task.status == Status.FAILED
    assert task.attempts == 2
    assert task.error_message.startswith("gave up after 2 attempts")
    final = TaskEvent.objects.filter(task=task, to_status=Status.FAILED).get()
    assert [a["attempt"] for a in final.data["attempts"]] == [1, 2]
    assert inflight(server) == 0


def test_a_server_whose_catalogue_rejects_the_inputs_is_passed_over_for_one_that_runs_them(
    sim_thread,
):
    older, newer = sim_thread.start(2)
    preferred = register_known(sim_thread, older)
    Server.objects.filter(pk=preferred.pk).update(priority=1)  # chosen first, if it can
    other = register_known(sim_thread, newer)
    # As an older ComfyUI would list it: KSampler without the "euler" sampler.
    object_info = sim_thread.run(object_info_of(older))
    samplers = object_info["KSampler"]["input"]["required"]["sampler_name"]
    samplers[0] = [name for name in samplers[0] if name != "euler"]
    catalogues.store(preferred.pk, object_info)
    task = make_task(graph=trivial_graph())  # sampler_name "euler"
    assert dispatch.dispatch_pending() == 1
    task.refresh_from_db()
    assert (task.status, task.server_id) == (Status.DISPATCHED, other.pk)
    excluded = BalancerDecision.objects.latest("pk").excluded
    assert "rejects the graph" in excluded[preferred.name]
    assert "euler" in excluded[preferred.name]
    assert history_item(sim_thread, newer, task.prompt_id).succeeded


async def object_info_of(sim) -> dict:
    async with ComfyUIClient(sim.base_url) as client:
        return await client.object_info()


def test_a_paused_queue_sends_nothing_until_resumed(sim_thread):
    (sim,) = sim_thread.start(1)
    register(sim)
    task = make_task()
    queue.pause(task.team)
    assert dispatch.dispatch_pending() == 0
    queue.resume(task.team)
    assert dispatch.dispatch_pending() == 1


def test_a_task_no_server_can_take_waits_with_the_balancers_reason(sim_thread):
    (sim,) = sim_thread.start(1)
    register(sim, max_inflight=1)
    running = make_task()
    dispatch.dispatch_pending()
    waiting = make_task()
    assert dispatch.dispatch_pending() == 0
    waiting.refresh_from_db()
    assert waiting.status == Status.PENDING
    assert running.pk != waiting.pk
    # Claim-after-pick: no server chosen, so the task never left pending.
    assert not TaskEvent.objects.filter(task=waiting, to_status=Status.DISPATCHED).exists()


def test_a_task_waiting_for_a_server_says_which_pool_is_starting_containers_for_it():
    task = make_task()
    assert dispatch.dispatch_pending() == 0  # no server at all
    before = dispatch.waiting_reason(task)
    assert before
    pool = make_pool("sdxl")
    Container.objects.create(pool=pool, host=make_docker_host(), port=20000)
    Container.objects.create(pool=pool, host=make_docker_host(), port=20000)

    assert (
        dispatch.waiting_reason(task) == f"{before}; container pool sdxl is starting 2 containers"
    )


def test_a_task_nobody_can_run_does_not_hold_up_the_ones_behind_it(sim_thread):
    (sim,) = sim_thread.start(1)
    register(sim)
    graph = trivial_graph()
    graph["1"]["inputs"]["ckpt_name"] = "absent.safetensors"
    stuck = make_task(graph=graph, priority=3)
    runnable = make_task(priority=0)
    assert dispatch.dispatch_pending() == 1
    assert Task.objects.get(pk=runnable.pk).status == Status.DISPATCHED
    stuck.refresh_from_db()
    assert "absent.safetensors" in (dispatch.waiting_reason(stuck) or "")
    dispatch.dispatch_pending()  # asked again: the timeline says it once
    waits = TaskEvent.objects.filter(task=stuck, message__startswith="waiting: ")
    assert waits.count() == 1
    assert "absent.safetensors" in waits.get().message


def test_an_image_parameter_is_uploaded_to_the_chosen_server_and_named_in_the_graph(
    sim_thread, settings, tmp_path
):
    from io import BytesIO

    from PIL import Image

    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    buffer = BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, "PNG")
    team = make_team()
    path = default_storage.save(f"uploads/team-{team.pk}/cat.png", ContentFile(buffer.getvalue()))
    (sim,) = sim_thread.start(1)
    register(sim)
    graph = trivial_graph()
    graph["7"] = {"class_type": "LoadImage", "inputs": {"image": {"upload": path}}}
    task = make_task(team, graph=graph, params={"image": {"upload": path}})
    assert dispatch.dispatch_pending() == 1
    entry = history_item(sim_thread, sim, Task.objects.get(pk=task.pk).prompt_id)
    assert entry.item.prompt["7"]["inputs"]["image"] == "cat.png"
    assert (sim.dirs.input / "cat.png").exists()
    # What ran is what was recorded: nothing else of the stored graph changed on the way.
    graph["7"]["inputs"]["image"] = "cat.png"
    assert entry.item.prompt == graph


def test_a_missing_input_image_fails_the_task_without_retry(sim_thread, settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    (sim,) = sim_thread.start(1)
    register(sim)
    graph = trivial_graph()
    team = make_team()
    gone = f"uploads/team-{team.pk}/gone.png"
    graph["7"] = {"class_type": "LoadImage", "inputs": {"image": {"upload": gone}}}
    task = make_task(team, graph=graph)
    dispatch.dispatch_pending()
    task.refresh_from_db()
    assert task.status == Status.FAILED
    assert task.error_type == "MissingUpload"


def test_a_retry_waiting_for_another_server_does_not_hold_back_fresh_tasks(sim_thread):
    failed_on, other = (register(sim, max_inflight=1) for sim in sim_thread.start(2))
    ServerState.objects.filter(server=other).update(inflight=1)  # busy
    retried = make_task(created_at=timezone.now() - timedelta(minutes=5), attempts=1)
    TaskEvent.objects.create(
        task=retried,
        from_status="dispatched",
        to_status="pending",
        message="attempt 1 failed",
        data={"failed_server": failed_on.pk, "attempt": 1},
    )
    fresh = make_task()
    assert retried.workflow_key == fresh.workflow_key != ""
    assert dispatch.dispatch_pending() == 1
    assert Task.objects.get(pk=retried.pk).status == Status.PENDING  # waits for `other`
    sent = Task.objects.get(pk=fresh.pk)
    assert sent.status == Status.DISPATCHED
    assert sent.server_id == failed_on.pk
