from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone
from PIL import Image

from tasks.models import Output, Status, Task
from tests.factories import make_team, make_user
from workflows.models import Template, Workflow, WorkflowVersion

pytestmark = pytest.mark.django_db

GRAPH = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, "PNG")
    return buffer.getvalue()


def make_output(
    team, *, workflow=None, template=None, status=Status.COMPLETED, age_days=0, metadata=None
):
    version = None
    if workflow is not None:
        version = workflow.versions.first() or WorkflowVersion.objects.create(
            workflow=workflow, number=1, graph=GRAPH
        )
    task = Task.objects.create(
        team=team, graph=GRAPH, workflow_version=version, template=template, status=status
    )
    data = _png()
    output = Output(
        task=task,
        team=team,
        content_type="image/png",
        width=8,
        height=8,
        size=len(data),
        metadata=metadata or {},
    )
    output.file.save("ignored.png", ContentFile(data), save=False)
    output.thumbnail.save("ignored.webp", ContentFile(_png()), save=False)
    output.created_at = timezone.now() - timedelta(days=age_days)
    output.save()
    return output


def test_gallery_shows_only_the_users_teams_outputs(client):
    ours, theirs = make_team("Ours"), make_team("Theirs")
    mine, other = make_output(ours), make_output(theirs)
    client.force_login(make_user(team=ours))
    page = client.get("/gallery/")
    shown = [output.pk for output in page.context["page"].object_list]
    assert shown == [mine.pk]
    assert client.get(f"/gallery/{other.pk}/").status_code == 404
    assert client.get(f"/gallery/{mine.pk}/").status_code == 200


def test_gallery_filters_by_workflow_template_status_and_date(client):
    team = make_team()
    portraits = Workflow.objects.create(team=team, name="Portraits")
    landscapes = Workflow.objects.create(team=team, name="Landscapes")
    old = make_output(team, workflow=portraits, age_days=10)
    new = make_output(team, workflow=landscapes)
    failed = make_output(team, workflow=landscapes, status=Status.FAILED)
    template = Template.objects.create(
        team=team, workflow_version=portraits.versions.first(), name="Headshot"
    )
    templated = make_output(team, workflow=portraits, template=template)
    client.force_login(make_user(team=team))

    def shown(query: str) -> set[int]:
        return {o.pk for o in client.get(f"/gallery/?{query}").context["page"].object_list}

    assert shown(f"workflow={portraits.pk}") == {old.pk, templated.pk}
    assert shown(f"template={template.pk}") == {templated.pk}
    assert shown("status=failed") == {failed.pk}
    since = (timezone.now() - timedelta(days=1)).date().isoformat()
    assert shown(f"since={since}") == {new.pk, failed.pk, templated.pk}


def test_a_reversed_date_range_is_explained_not_applied(client):
    team = make_team()
    make_output(team)
    client.force_login(make_user(team=team))
    response = client.get("/gallery/?since=2026-05-02&until=2026-05-01")
    assert "The start date is after the end date." in response.content.decode()
    assert len(response.context["page"].object_list) == 1


def test_gallery_pages_through_many_outputs(client):
    team = make_team()
    for _ in range(50):
        make_output(team)
    client.force_login(make_user(team=team))
    first = client.get("/gallery/")
    assert len(first.context["page"].object_list) == 48
    assert len(client.get("/gallery/?page=2").context["page"].object_list) == 2


def test_empty_gallery_says_how_to_fill_it(client):
    client.force_login(make_user(team=make_team()))
    assert "run a workflow and its outputs appear here" in client.get("/gallery/").content.decode()


def test_filters_say_any_team_workflow_and_template_instead_of_dashes(client):
    team = make_team()
    client.force_login(make_user(team=team))
    page = client.get("/gallery/").content.decode()
    for label in ("Any team", "Any workflow", "Any template", "Any status"):
        assert f">{label}</option>" in page
    assert "---------" not in page
    assert "Task status" in page
    assert "From" in page
    assert "Until" in page


def test_each_tile_carries_the_seed_and_parameters_the_viewer_shows_beside_it(client):
    team = make_team()
    output = make_output(
        team, metadata={"seeds": {"3": 123456789}, "params": {"prompt": "a red fox", "steps": 20}}
    )
    client.force_login(make_user(team=team))
    page = client.get("/gallery/").content.decode()
    tile = page[page.index(f'id="output-{output.pk}"') :]
    assert f'data-full="/outputs/{output.pk}/file/"' in tile
    assert f'data-download="/outputs/{output.pk}/file/?download=1"' in tile
    assert 'data-seed="123456789"' in tile
    assert "a red fox" in tile
    assert f'value="{output.pk}" form="gallery-zip"' in tile


def test_new_items_are_those_after_the_newest_shown_that_match_the_filters(client):
    team = make_team()
    portraits = Workflow.objects.create(team=team, name="Portraits")
    shown = make_output(team)
    newer_portrait = make_output(team, workflow=portraits)
    newer_other = make_output(team)
    client.force_login(make_user(team=team))

    def arrived(query: str) -> list[int]:
        page = client.get(f"/gallery/items/?{query}")
        assert page.status_code == 200
        return [o.pk for o in page.context["outputs"]]

    assert arrived(f"after={shown.pk}") == [newer_other.pk, newer_portrait.pk]
    assert arrived(f"after={shown.pk}&workflow={portraits.pk}") == [newer_portrait.pk]
    assert arrived(f"after={newer_other.pk}") == []
    # Nonsense in `after` is no filter, not an error.
    assert len(arrived("after=-5")) == 3
    assert len(arrived("after=99999999999999999999999")) == 3


def test_another_teams_outputs_never_arrive_as_new_items(client):
    ours, theirs = make_team(), make_team()
    make_output(theirs)
    client.force_login(make_user(team=ours))
    assert client.get("/gallery/items/?after=0").context["outputs"].count() == 0
    assert client.get(f"/gallery/items/?after=0&team={theirs.pk}").content.strip() == b""


def test_the_gallery_listens_for_new_outputs_of_each_of_the_users_teams(client):
    ours, theirs = make_team(), make_team()
    client.force_login(make_user(team=ours))
    page = client.get("/gallery/").content.decode()
    assert f'id="outputs-new-{ours.pk}" hidden data-live-topic="team-pictures"' in page
    assert f"outputs-new-{theirs.pk}" not in page
