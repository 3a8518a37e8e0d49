"""The task list (page and API) costs the same with many tasks as with few (#15):
a fixed number of queries, no graph or other big JSON loaded, and paging that
still returns every task once, newest first (tasks/listing.py, tasks/graph_facts.py).

The timings are bench/bench_task_list.py's; these tests hold what makes them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tasks import task_updates
from tasks.models import Batch, Output, Status, Task
from teams.models import Role
from tests.api.callers import caller_for
from tests.factories import (
    make_server,
    make_task,
    make_team,
    make_template,
    make_user,
    make_workflow,
    shared_workflow,
)

pytestmark = pytest.mark.django_db

# Columns of big JSON a list row never shows: tasks' and versions' graphs, outputs' metadata.
BIG_COLUMNS = {"graph", "metadata", "node_classes", "model_files"}


class World:
    """A member of two teams (a viewer in the second), a team of strangers, a
    server and a template; `add` makes tasks of every kind in all three teams."""

    def __init__(self) -> None:
        self.team, self.second, self.other = make_team(), make_team(), make_team()
        self.user = make_user(team=self.team, role=Role.MEMBER)
        self.second.memberships.create(user=self.user, role=Role.VIEWER)
        self.server = make_server()
        workflow = make_workflow(self.team, graph=shared_workflow("slow_progress"))
        self.template = make_template(workflow.current_version)
        self.made = 0

    def add(self, count: int) -> None:
        """`count` more tasks, one second apart, newer than those made before:
        pending, running, completed with two outputs, failed, in turn."""
        teams = (self.team, self.second, self.other)
        start = timezone.now() - timedelta(days=1)
        for n in range(self.made, self.made + count):
            team, kind = teams[n % 3], n % 4
            fields = {
                "created_at": start + timedelta(seconds=n),
                "submitter": self.user,
                "template": self.template,
                "workflow_version": self.template.workflow_version,
                "graph": shared_workflow("slow_progress"),
            }
            if kind == 1:
                fields |= {"dispatched_to": self.server, "status": Status.RUNNING}
                fields |= {"progress_node": "2", "progress_node_type": "SlowProgress"}
            elif kind == 2:
                fields |= {"dispatched_to": self.server, "status": Status.COMPLETED}
            elif kind == 3:
                fields |= {"status": Status.FAILED, "error_type": "OOM", "error_node": "2"}
            task = make_task(team, **fields)
            if kind == 2:
                for _ in range(2):
                    Output.objects.create(
                        task=task, team=team, file="outputs/x.png", content_type="image/png"
                    )
        self.made += count

    def page_client(self) -> Client:
        client = Client()
        client.force_login(self.user)
        return client


@pytest.fixture
def world() -> World:
    return World()


@contextlib.contextmanager
def columns_read() -> Iterator[set[str]]:
    """The names of the columns every query in the block returned."""
    names: set[str] = set()

    def record(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        description = context["cursor"].description
        names.update(column[0] for column in description or ())
        return result

    with connection.execute_wrapper(record):
        yield names


def queries(get, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = get(url)
    assert response.status_code == 200, response.content[:300]
    return len(captured.captured_queries)


def getter(world: World, url: str):
    """GET as the world's member: the page signed in, the API with a token."""
    if url.startswith("/tasks"):
        return world.page_client().get
    caller = caller_for(world.user)
    return lambda path: caller.client.get(path, HTTP_AUTHORIZATION=f"Bearer {caller.token}")


@pytest.mark.parametrize(
    "url",
    [
        "/tasks/",
        "/tasks/?page=2",
        "/tasks/?status=running",
        "/api/v1/tasks",
        "/api/v1/tasks?page=2&page_size=3",
        "/api/v1/tasks?status=pending",
    ],
)
def test_a_list_page_runs_as_many_queries_for_many_tasks_as_for_few(world, url):
    world.add(12)
    get = getter(world, url)
    get(url)  # a token's last use is written at most once a minute: not in the count
    few = queries(get, url)
    world.add(300)
    many = queries(get, url)
    assert many == few
    # The list itself, five for the expected times of its unfinished tasks
    # (tasks/eta.py: servers, speeds, the work on servers, the queue's pause and order)
    # and one for the running limits that may hold its pending tasks (fairness.limits).
    assert many <= 8 + 5 + 1


def test_the_page_runs_as_many_queries_for_a_member_of_many_teams_as_of_two(world):
    world.add(12)
    get = getter(world, "/tasks/")
    two = queries(get, "/tasks/")
    for role in [Role.VIEWER, Role.MEMBER, Role.ADMIN] * 3:
        make_team().memberships.create(user=world.user, role=role)
    assert queries(get, "/tasks/") == two


def test_staff_list_every_team_in_as_many_queries(world):
    staff = make_user(staff=True)
    client = Client()
    client.force_login(staff)
    world.add(4)
    few = queries(client.get, "/tasks/")
    world.add(120)
    assert queries(client.get, "/tasks/") == few


@pytest.mark.parametrize("url", ["/tasks/", "/api/v1/tasks"])
def test_a_list_loads_no_graph_and_no_other_big_json(world, url):
    world.add(12)
    get = getter(world, url)
    with columns_read() as columns:
        response = get(url)
    assert response.status_code == 200
    assert "status" in columns  # the wrapper saw the task rows
    assert not columns & BIG_COLUMNS


def test_paging_the_api_returns_every_visible_task_once_newest_first(world):
    world.add(23)
    # A batch submitted at once: its tasks share their creation time.
    same_time = timezone.now()
    batch = Batch.objects.create(team=world.team)
    for _ in range(7):
        make_task(world.team, batch=batch, created_at=same_time)
    caller = caller_for(world.user)
    seen: list[int] = []
    for page in range(1, 20):
        body = caller("GET", "tasks", page=page, page_size=4).json()
        seen += [item["id"] for item in body["items"]]
        if page >= body["pages"]:
            break
    visible = Task.objects.filter(team__in=[world.team, world.second])
    assert seen == list(visible.order_by("-created_at", "-pk").values_list("pk", flat=True))
    assert len(seen) == len(set(seen)) == body["count"]


def test_paging_the_page_returns_every_visible_task_once_newest_first(world):
    world.add(160)  # three pages of 50 for the member's two teams
    client = world.page_client()
    expected = list(
        Task.objects.filter(team__in=[world.team, world.second])
        .order_by("-created_at", "-pk")
        .values_list("pk", flat=True)
    )
    seen: list[int] = []
    for page in (1, 2, 3):
        seen += [task.pk for task in client.get(f"/tasks/?page={page}").context["page_obj"]]
    assert seen == expected


def test_a_list_row_shows_the_progress_its_task_page_shows():
    """The list reads of the graph only its node count and the row's node
    (graph_facts); the task's own page reads the whole graph. Both say the same,
    whatever the node: titled, untitled, missing from the graph, not an object."""
    team = make_team()
    user = make_user(team=team)
    graph = shared_workflow("slow_progress") | {
        "7": {"class_type": "SaveImage", "inputs": {}, "_meta": {"title": "Keep it"}},
        "8": {"class_type": "PreviewImage", "inputs": {}, "_meta": {"title": ""}},
        "9": "not a node",
    }
    server = make_server()
    for node in ("7", "8", "2", "42", "9", ""):
        for status in (Status.RUNNING, Status.COMPLETED, Status.FAILED):
            make_task(
                team,
                dispatched_to=server,
                status=status,
                graph=graph,
                progress_node=node,
                progress_nodes_done=1,
            )
    caller = caller_for(user)
    listed = caller("GET", "tasks", page_size=100).json()["items"]
    assert len(listed) == 18
    for item in listed:
        assert item["progress"] == caller("GET", f"tasks/{item['id']}").json()["progress"]
    titles = {item["progress"]["node_title"] for item in listed}
    assert {"Keep it", "PreviewImage", "42", "9", None} <= titles


def test_a_running_rows_title_follows_the_pushed_progress():
    """The monitor's pushes run ahead of the row: the list names the node pushed,
    which the row's graph facts do not cover."""
    team = make_team()
    user = make_user(team=team)
    graph = shared_workflow("slow_progress")
    graph["3"]["_meta"] = {"title": "Saved at last"}
    task = make_task(
        team,
        dispatched_to=make_server(),
        status=Status.RUNNING,
        graph=graph,
        progress_node="1",
        progress_nodes_done=0,
    )
    view = task_updates.progress_view_from_task(task)
    pushed = task_updates._live_part(view | {"node": "3", "node_title": "Saved at last"})
    cache.set(task_updates._snapshot_key(task.pk, task.prompt_id), pushed, 60)
    caller = caller_for(user)
    listed = caller("GET", "tasks").json()["items"][0]["progress"]
    assert listed["node"] == "3"
    assert listed["node_title"] == "Saved at last"
    assert listed == caller("GET", f"tasks/{task.pk}").json()["progress"]


def test_cancel_shows_only_in_teams_the_user_may_submit_to(world):
    world.add(8)
    html = world.page_client().get("/tasks/?status=pending").content.decode()
    for task in Task.objects.filter(status=Status.PENDING):
        cancel = f'action="/tasks/{task.pk}/cancel/"'
        if task.team == world.team:
            assert cancel in html
        else:
            assert cancel not in html  # a viewer in the second team, a stranger to the third
