"""An upload marker ({"upload": "<storage path>"}) may name only its own team's uploads.

Submitting a graph that names another team's upload or output, or anything outside
the team's upload area, is a 400 (API and pages); a task row that names one anyway
(forged, or from before the check) fails at dispatch without the file leaving our
storage, and no error shown to users carries a server filesystem path.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from tasks import dispatch
from tasks.models import Status, Task, TaskEvent
from teams.models import Role
from tests.api.callers import caller_for, error_of
from tests.factories import (
    make_task,
    make_team,
    make_template,
    make_user,
    make_workflow,
    shared_workflow,
    trivial_graph,
)
from tests.simulator_thread import register
from workflows.models import ParameterType

pytestmark = pytest.mark.django_db


def png() -> bytes:
    buffer = BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def media(settings, tmp_path) -> Path:
    """A storage of the test's own, so the files it holds are known."""
    root = tmp_path / "media"
    settings.MEDIA_ROOT = str(root)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(root)},
        },
    }
    return root


@pytest.fixture
def teams(media):
    """Team A with a stored upload and output; team B, whose member tries to read them."""
    team_a, team_b = make_team("A"), make_team("B")
    upload = default_storage.save(f"uploads/team-{team_a.pk}/secret.png", ContentFile(png()))
    output = default_storage.save(f"outputs/team-{team_a.pk}/result.png", ContentFile(png()))
    outside = media.parent / "outside.png"
    outside.write_bytes(png())
    return {
        "a": team_a,
        "b": team_b,
        "member_b": make_user("bob", team=team_b, role=Role.MEMBER),
        "upload_a": upload,
        "output_a": output,
        "outside": outside,
    }


def foreign_paths(teams, media) -> dict[str, str]:
    b = teams["b"].pk
    return {
        "another team's upload": teams["upload_a"],
        "another team's output": teams["output_a"],
        "climbing out of the own area": f"uploads/team-{b}/../team-{teams['a'].pk}/secret.png",
        "a file outside storage": f"uploads/team-{b}/../../../outside.png",
        "an absolute path into storage": str(media / teams["upload_a"]),
        "an absolute path outside storage": str(teams["outside"]),
        "outputs of the own team": f"outputs/team-{b}/result.png",
        "a sub-folder of the own area": f"uploads/team-{b}/sub/x.png",
        "a backslash": f"uploads\\team-{b}\\x.png",
    }


FOREIGN = [
    "another team's upload",
    "another team's output",
    "climbing out of the own area",
    "a file outside storage",
    "an absolute path into storage",
    "an absolute path outside storage",
    "outputs of the own team",
    "a sub-folder of the own area",
    "a backslash",
]


def with_marker(path: str) -> dict:
    graph = trivial_graph()
    graph["7"] = {"class_type": "LoadImage", "inputs": {"image": {"upload": path}}}
    return graph


# -- submitting -----------------------------------------------------------------------


@pytest.mark.parametrize("what", FOREIGN)
def test_an_api_graph_naming_a_file_outside_the_teams_uploads_is_a_400(teams, media, what):
    path = foreign_paths(teams, media)[what]
    response = caller_for(teams["member_b"])("POST", "tasks", {"graph": with_marker(path)})
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["type"] == "validation_error"
    assert "upload" in error["message"]
    assert str(media) not in response.content.decode()
    assert not Task.objects.exists()


def test_an_api_graph_naming_the_teams_own_upload_is_queued(teams):
    own = default_storage.save(f"uploads/team-{teams['b'].pk}/mine.png", ContentFile(png()))
    response = caller_for(teams["member_b"])("POST", "tasks", {"graph": with_marker(own)})
    assert response.status_code == 201, response.content
    assert Task.objects.get().graph["7"]["inputs"]["image"] == {"upload": own}


def image_template(team, default=None):
    version = make_workflow(team, graph=shared_workflow("load_invert_save")).current_version
    return make_template(
        version,
        parameters=[
            {
                "name": "image",
                "node_id": "1",
                "input_name": "image",
                "type": ParameterType.IMAGE,
                "default": default,
            }
        ],
    )


def test_an_api_template_image_param_naming_another_teams_upload_is_a_400(teams):
    template = image_template(teams["b"])
    response = caller_for(teams["member_b"])(
        "POST",
        "tasks",
        {"template": template.pk, "params": {"image": {"upload": teams["upload_a"]}}},
    )
    assert response.status_code == 400, response.content
    assert error_of(response)["type"] == "validation_error"
    assert not Task.objects.exists()


def test_running_a_workflow_page_whose_graph_names_another_teams_output_is_a_400(client, teams):
    workflow = make_workflow(teams["b"], graph=with_marker(teams["output_a"]))
    client.force_login(teams["member_b"])
    response = client.post(f"/workflows/{workflow.pk}/run/", {"priority": 1, "count": 1})
    assert response.status_code == 400
    assert "upload" in response.content.decode()
    assert not Task.objects.exists()


def test_a_template_page_whose_image_default_names_another_teams_upload_is_a_400(client, teams):
    # A default the editor cannot make (it takes text), but a row may hold.
    template = image_template(teams["b"], default={"upload": teams["upload_a"]})
    client.force_login(teams["member_b"])
    response = client.post(
        f"/templates/{template.pk}/",
        {"priority": 1, "mode": "count", "count": 1, "action": "submit"},
    )
    assert response.status_code == 400
    assert "upload" in response.content.decode()
    assert not Task.objects.exists()


# -- dispatching a row that names one anyway ------------------------------------------


def shown_to_users(task: Task) -> str:
    """Every error text users see of a task: its row, its timeline, the API."""
    task.refresh_from_db()
    events = TaskEvent.objects.filter(task=task).values_list("message", "data")
    owner = make_user(team=task.team, role=Role.VIEWER)
    api = caller_for(owner)("GET", f"tasks/{task.pk}").content.decode()
    return "\n".join([task.error_message, *(f"{m} {d}" for m, d in events), api])


@pytest.mark.usefixtures("own_dispatch_keys")
@pytest.mark.parametrize("what", FOREIGN)
def test_a_task_row_naming_a_file_outside_its_teams_uploads_fails_at_dispatch_unsent(
    sim_thread, teams, media, what
):
    (sim,) = sim_thread.start(1)
    register(sim)
    task = make_task(teams["b"], graph=with_marker(foreign_paths(teams, media)[what]))
    dispatch.dispatch_pending()
    task.refresh_from_db()
    assert task.status == Status.FAILED  # at once: no retry can make it the team's
    assert task.error_type == "ForeignUpload"
    assert list(sim.dirs.input.iterdir()) == []  # nothing reached the server
    assert task.prompt_id not in sim_thread.prompts_seen(sim)
    shown = shown_to_users(task)
    assert str(media) not in shown
    assert str(media.parent) not in shown


@pytest.mark.usefixtures("own_dispatch_keys")
def test_a_missing_upload_fails_without_naming_a_filesystem_path(sim_thread, teams, media):
    (sim,) = sim_thread.start(1)
    register(sim)
    gone = f"uploads/team-{teams['b'].pk}/gone.png"
    task = make_task(teams["b"], graph=with_marker(gone))
    dispatch.dispatch_pending()
    task.refresh_from_db()
    assert task.status == Status.FAILED
    assert task.error_type == "MissingUpload"
    assert gone in task.error_message  # the storage name says which image
    assert str(media) not in shown_to_users(task)


def test_a_template_page_runs_an_image_default_naming_a_servers_file_as_is(client, teams):
    # No file posted: the default (a file name already on the servers) is used, not stored.
    template = image_template(teams["b"], default="example.png")
    client.force_login(teams["member_b"])
    response = client.post(
        f"/templates/{template.pk}/",
        {"priority": 1, "mode": "count", "count": 1, "action": "submit"},
    )
    assert response.status_code == 302
    assert Task.objects.get().graph["1"]["inputs"]["image"] == "example.png"
