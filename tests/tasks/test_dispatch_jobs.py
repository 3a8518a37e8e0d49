"""The django-q2 side: wake-ups, the jobs by dotted path (sync mode), schedules, avoidance."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django_q.models import Schedule

from servers import fleet
from servers.monitor import work
from tasks import enqueue, jobs
from tasks.execution import TaskEventHandler
from tasks.models import Status
from tasks.submission import submit_runs
from tests.factories import make_task, make_team, make_user, trivial_graph
from tests.simulator_thread import register
from workflows.templating import Run

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("own_dispatch_keys")]


def test_a_cluster_that_starts_dispatches_though_a_lost_wake_up_still_holds_the_key(enqueued):
    from django.core.cache import cache

    from comfyweb.signals import cluster_started

    # A dispatch job was queued, then died with the cluster that held it.
    cache.set(enqueue.WAKE_KEY, 1, timeout=enqueue.WAKE_TTL)
    enqueue.wake_dispatch()
    assert enqueued == []  # the key says a pass is coming: none is queued
    cluster_started.send(sender=None)  # the restarted qcluster
    assert enqueued == [(enqueue.DISPATCH,)]


def test_wake_ups_before_the_job_starts_queue_one_job(enqueued):
    for _ in range(5):
        enqueue.wake_dispatch()
    assert enqueued == [("tasks.jobs.dispatch",)]


def test_a_wake_up_while_the_job_runs_queues_another_pass(enqueued):
    enqueue.wake_dispatch()
    enqueue.woken()  # the job started
    enqueue.wake_dispatch()
    assert len(enqueued) == 2


@pytest.mark.usefixtures("sync_jobs")
def test_a_submission_is_dispatched_by_the_job_after_commit(
    sim_thread, django_capture_on_commit_callbacks
):
    (sim,) = sim_thread.start(1)
    server = register(sim)
    team = make_team()
    with django_capture_on_commit_callbacks(execute=True):
        result = submit_runs(
            team=team, submitter=make_user(team=team), runs=[Run(trivial_graph(), {})]
        )
    (task,) = result.tasks
    task.refresh_from_db()
    assert task.status == Status.DISPATCHED
    assert task.server_id == server.pk
    assert task.prompt_id in sim_thread.prompts_seen(sim)


@pytest.mark.usefixtures("sync_jobs")
def test_the_jobs_run_by_dotted_path_and_a_missed_success_ends_completed(
    sim_thread, settings, tmp_path
):
    from django_q.tasks import async_task, result

    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }

    def run(job: str, *args):
        # Successful jobs are not kept (save_limit -1): this one's result is asked for.
        return result(async_task(job, *args, save=True))

    (sim,) = sim_thread.start(1)
    server = register(sim)
    task = make_task()
    assert run("tasks.jobs.dispatch") == 1
    assert run("tasks.jobs.reconcile") == {}  # nothing on a server for long
    sim_thread.wait_idle(sim)
    # No monitor heard the prompt end: reconciliation hands it to output collection.
    assert run("tasks.jobs.reconcile_server", server.pk) == {"succeeded": 1}
    task.refresh_from_db()
    assert task.status == Status.COMPLETED
    assert task.outputs.count() == 1


def test_the_safety_net_schedules_exist_after_migrate():
    Schedule.objects.all().delete()
    call_command("migrate", verbosity=0)
    funcs = dict(Schedule.objects.values_list("name", "func"))
    assert funcs["tasks.dispatch"] == "tasks.jobs.dispatch"
    assert funcs["tasks.reconcile"] == "tasks.jobs.reconcile"
    assert jobs.wake_dispatch is enqueue.wake_dispatch


def test_pick_server_avoids_a_failed_server_while_another_can_take_the_task(sim_thread):
    from servers.models import ServerState

    first, second = (register(sim) for sim in sim_thread.start(2))
    preferred = fleet.pick_server(trivial_graph(), record=False)
    other = second if preferred.server_id == first.pk else first
    avoided = fleet.pick_server(trivial_graph(), record=False, avoid={preferred.server_id})
    assert avoided.server_id == other.pk
    # The other one is only busy: wait for it rather than go back.
    ServerState.objects.filter(server=other).update(inflight=other.max_inflight)
    busy = fleet.pick_server(trivial_graph(), record=False, avoid={preferred.server_id})
    assert busy.waiting
    assert "full" in busy.reason
    # Nobody else could run it at all: the failed server beats waiting forever.
    other.enabled = False
    other.save()
    fallback = fleet.pick_server(trivial_graph(), record=False, avoid={preferred.server_id})
    assert fallback.server_id == preferred.server_id


def test_the_monitor_wakes_dispatch_and_asks_for_reconciliation(enqueued):
    hooks = work.new_hooks()  # what TasksConfig.ready() registered
    assert isinstance(hooks, TaskEventHandler)
    hooks.server_can_take_work(7)
    hooks.server_needs_reconcile(7)
    assert enqueued == [("tasks.jobs.dispatch",), ("tasks.jobs.reconcile_server", 7)]


def test_a_broker_outage_does_not_break_the_monitors_loop(monkeypatch):
    def down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr("django_q.tasks.async_task", down)
    hooks = TaskEventHandler()
    hooks.server_can_take_work(7)
    hooks.server_needs_reconcile(7)
