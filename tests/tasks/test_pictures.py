"""Pictures where people look (tasks/pictures.py): thumbnails and live previews in
task list rows, the dashboard's recent results, the task page's preview panel, and
their live updates, each only to the task's team."""

from __future__ import annotations

import io
import pathlib

import pytest
from asgiref.sync import sync_to_async
from PIL import Image

from tasks import previews
from tasks.execution import TaskEventHandler
from tasks.models import Status, Task
from tests.factories import make_server, make_task, make_team, make_user, shared_workflow
from tests.live_socket import connected_as
from tests.monitoring import simulator
from tests.tasks.test_execution import run_task
from tests.tasks.test_execution_live import drain, subscribe
from tests.tasks.test_gallery import make_output


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "blue").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def kept_preview():
    """Previews of the test's tasks, dropped afterwards (they live in the shared cache)."""
    kept: list[int] = []

    def keep(task: Task) -> int:
        kept.append(task.pk)
        return previews.store(task.pk, "image/png", png())

    yield keep
    for task_id in kept:
        previews.discard(task_id)


@pytest.mark.django_db
@pytest.mark.usefixtures("media")
def test_task_list_rows_show_their_outputs_or_their_live_preview(client, kept_preview):
    team = make_team()
    done = make_output(team).task
    many = make_task(team, status=Status.COMPLETED)
    for _ in range(5):  # three shown, "+2"
        output = make_output(team)
        output.task, output.task_id = many, many.pk
        output.save()
    previewing = make_task(team, status=Status.RUNNING)
    kept_preview(previewing)
    waiting_for_one = make_task(team, status=Status.RUNNING)
    pending = make_task(team)
    client.force_login(make_user(team=team))
    page = client.get("/tasks/").content.decode()

    def cell(task) -> str:
        start = page.index(f'id="task-row-{task.pk}-pictures"')
        return page[start : page.index("</td>", start)]

    assert f"/outputs/{done.outputs.get().pk}/thumbnail/" in cell(done)
    assert cell(many).count("/thumbnail/") == 3
    assert "+2" in cell(many)
    assert f'src="/tasks/{previewing.pk}/preview/?v=' in cell(previewing)
    assert f'id="task-{previewing.pk}-preview-thumb"' in cell(previewing)
    assert "thumb-slot" in cell(waiting_for_one)  # where its first preview will land
    assert "<img" not in cell(pending)
    assert f'data-live-topic="team-pictures" data-live-key="{team.pk}"' in page


@pytest.mark.django_db
@pytest.mark.usefixtures("media")
def test_recent_results_show_the_newest_outputs_and_running_previews_of_ones_teams(
    client, kept_preview
):
    ours, theirs = make_team(), make_team()
    mine, foreign = make_output(ours), make_output(theirs)
    running = make_task(ours, status=Status.RUNNING)
    kept_preview(running)
    kept_preview(make_task(theirs, status=Status.RUNNING))
    client.force_login(make_user(team=ours))

    for url in ("/", "/results/recent/"):
        page = client.get(url).content.decode()
        panel = page[page.index('id="recent-results"') :]
        assert f"/outputs/{mine.pk}/thumbnail/" in panel
        assert f"/gallery/#output-{mine.pk}" in panel
        assert f"/outputs/{foreign.pk}/" not in panel
        assert "Running now" in panel
        assert f"/tasks/{running.pk}/preview/?v=" in panel
        assert panel.count("/preview/?v=") == 1


@pytest.mark.django_db
def test_recent_results_say_where_images_will_appear_when_there_are_none(client):
    client.force_login(make_user(team=make_team()))
    assert "No images yet" in client.get("/results/recent/").content.decode()


@pytest.mark.django_db
def test_the_task_page_shows_the_live_preview_in_its_own_panel_once_there_is_one(
    client, kept_preview
):
    team = make_team()
    task = make_task(team, status=Status.RUNNING)
    client.force_login(make_user(team=team))

    def panel() -> str:
        page = client.get(f"/tasks/{task.pk}/").content.decode()
        start = page.index(f'id="task-{task.pk}-preview"')
        return page[page.rindex("<section", 0, start) : page.index("</section>", start)]

    assert " hidden" in panel()
    kept_preview(task)
    shown = panel()
    assert " hidden" not in shown
    assert "Live preview" in shown
    assert 'class="preview-image"' in shown


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("sync_jobs")
async def test_a_run_pushes_its_pictures_to_its_teams_pages_only(tmp_path: pathlib.Path):
    def build():
        team, other = make_team(), make_team()
        return team, make_user(team=team), make_user(team=other)

    team, member, outsider = await sync_to_async(build)()
    async with simulator(tmp_path / "comfyui") as sim:

        def dispatched() -> Task:
            server = make_server(base_url=sim.base_url)
            graph = shared_workflow("slow_progress_preview_text")
            task = make_task(team, dispatched_to=server, graph=graph)
            return Task.objects.select_related("server").get(pk=task.pk)

        task = await sync_to_async(dispatched)()
        watcher = await connected_as(member)
        assert (await subscribe(watcher, "team-pictures", team.pk))["type"] == "subscribed"
        stranger = await connected_as(outsider)
        assert (await subscribe(stranger, "team-pictures", team.pk))["type"] == "error"
        await drain(watcher)

        await run_task(sim, task, TaskEventHandler())

    messages = await drain(watcher)
    fragments = [m for m in messages if m["type"] == "fragment.update"]
    by_target: dict[str, list[str]] = {}
    for message in fragments:
        by_target.setdefault(message["target"], []).append(message["html"])
    previews_pushed = by_target[f"task-{task.pk}-preview-thumb"]
    assert all(f"/tasks/{task.pk}/preview/?v=" in html for html in previews_pushed)
    rows = by_target[f"task-row-{task.pk}-pictures"]
    assert "thumb-slot" in rows[0]  # running: where the preview lands
    output = await task.outputs.afirst()
    assert f"/outputs/{output.pk}/thumbnail/" in rows[-1]
    news = by_target[f"outputs-new-{team.pk}"]
    assert f'data-newest="{output.pk}"' in news[-1]
    hints = [m for m in messages if m["type"] == "fragment.refresh"]
    assert {(m["target"], m["url"]) for m in hints} == {("recent-results", "/results/recent/")}
    assert await stranger.receive_nothing(timeout=0.3)
    await watcher.disconnect()
    await stranger.disconnect()


@pytest.mark.django_db
def test_a_preview_asked_for_by_version_after_its_prompt_ended_is_nothing_not_an_error(client):
    team = make_team()
    task = make_task(team, status=Status.RUNNING)
    client.force_login(make_user(team=team))
    previews.discard(task.pk)
    gone = client.get(f"/tasks/{task.pk}/preview/?v=123")
    assert gone.status_code == 204
    assert gone["Cache-Control"] == "private, no-store"
    assert client.get(f"/tasks/{task.pk}/preview/").status_code == 404
