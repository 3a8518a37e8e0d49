"""Output files over the API: the bytes, under the task's access rules (api/routers/outputs.py)."""

from __future__ import annotations

import io

import pytest
from django.core.files.base import ContentFile
from PIL import Image

from tasks.models import Output, Status
from tests.api.callers import error_of
from tests.factories import make_task

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]

MISSING = 999_999


def image(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 2), "red").save(buffer, fmt)
    return buffer.getvalue()


def make_output(team, content_type: str = "image/png", data: bytes | None = None) -> Output:
    task = make_task(team, status=Status.COMPLETED)
    data = image("PNG") if data is None else data
    output = Output(task=task, team=team, content_type=content_type, size=len(data))
    output.file.save("ignored", ContentFile(data), save=False)
    output.save()
    return output


def download(caller, output_id: int):
    return caller("GET", f"outputs/{output_id}/file")


@pytest.mark.parametrize(
    ("content_type", "fmt", "extension"),
    [("image/png", "PNG", "png"), ("image/jpeg", "JPEG", "jpg"), ("image/webp", "WEBP", "webp")],
)
def test_the_file_comes_with_its_stored_content_type(world, content_type, fmt, extension):
    data = image(fmt)
    output = make_output(world.team, content_type, data)
    response = download(world.member, output.pk)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == data
    assert response["Content-Type"] == content_type
    name = f"task-{output.task_id}-output-{output.pk}.{extension}"
    assert response["Content-Disposition"] == f'attachment; filename="{name}"'
    assert response["Cache-Control"] == "private, max-age=3600"


def test_bytes_of_an_unknown_kind_are_sent_as_stored(world):
    output = make_output(world.team, "application/octet-stream", b"\x00\x01 not an image")
    response = download(world.member, output.pk)
    assert b"".join(response.streaming_content) == b"\x00\x01 not an image"
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].endswith('.bin"')


@pytest.mark.parametrize("who", ["viewer", "admin", "staff"])
def test_everyone_who_may_see_the_task_may_download(world, who):
    output = make_output(world.team)
    assert download(getattr(world, who), output.pk).status_code == 200


def test_another_teams_output_is_a_404_like_a_missing_one(world):
    theirs = download(world.stranger, make_output(world.team).pk)
    missing = download(world.stranger, MISSING)
    assert theirs.status_code == missing.status_code == 404
    assert error_of(theirs) == error_of(missing)
    assert error_of(theirs)["type"] == "not_found"


def test_an_output_without_a_file_is_a_404(world):
    output = make_output(world.team)
    Output.objects.filter(pk=output.pk).update(file="")
    response = download(world.member, output.pk)
    assert response.status_code == 404
    assert error_of(response)["message"] == "This output has no file."


def test_an_output_whose_file_is_gone_from_disk_is_a_404(world):
    output = make_output(world.team)
    output.file.storage.delete(output.file.name)
    response = download(world.member, output.pk)
    assert response.status_code == 404
    assert error_of(response)["type"] == "not_found"


def test_downloading_anonymously_is_a_401(world):
    response = download(world.anonymous, make_output(world.team).pk)
    assert response.status_code == 401
    assert error_of(response)["type"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_token_from_a_signed_in_browser_is_not_needed(world, client):
    """The page's session works too, so an <img src> of the url loads."""
    output = make_output(world.team)
    client.force_login(world.users["viewer"])
    response = client.get(f"/api/v1/outputs/{output.pk}/file")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == image("PNG")


@pytest.mark.parametrize("url", ["/outputs/{}/file/", "/outputs/{}/thumbnail/"])
def test_the_pages_answer_404_too_when_a_stored_file_is_gone(world, url):
    """The gallery's own file views share the rule (tasks.access.open_stored)."""
    output = make_output(world.team)
    output.thumbnail.save("ignored", ContentFile(image("WEBP")))
    for field in (output.file, output.thumbnail):
        field.storage.delete(field.name)
    world.member.client.force_login(world.users["member"])
    assert world.member.client.get(url.format(output.pk)).status_code == 404
