"""Many outputs as one zip (tasks/zips.py): the gallery's multi-select and the API's
`POST /api/v1/outputs/zip`, streamed, only of the user's teams' outputs, capped."""

from __future__ import annotations

import io
import zipfile

import pytest
from asgiref.sync import async_to_sync

from tasks import zips
from tasks.models import Output
from teams.models import Role
from tests.api.callers import caller_for, error_of
from tests.factories import make_team, make_user
from tests.tasks.test_gallery import make_output

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]


async def _gather(chunks) -> list[bytes]:
    return [chunk async for chunk in chunks]


def streamed(response) -> tuple[list[bytes], zipfile.ZipFile]:
    """The chunks as the web server would send them (asynchronously), and the zip."""
    assert response.streaming
    assert response.is_async  # daphne would otherwise read it all before sending
    chunks = async_to_sync(_gather)(response.streaming_content)
    return chunks, zipfile.ZipFile(io.BytesIO(b"".join(chunks)))


@pytest.fixture
def team():
    return make_team("Studio")


@pytest.fixture
def member_client(client, team):
    client.force_login(make_user(team=team, role=Role.VIEWER))  # viewers may download
    return client


def test_selected_outputs_stream_as_one_zip_of_their_stored_files(member_client, team):
    first, second = make_output(team), make_output(team)
    response = member_client.post("/gallery/zip/", {"ids": [second.pk, first.pk]})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == 'attachment; filename="comfyweb-2-images.zip"'
    chunks, archive = streamed(response)
    assert len(chunks) > 2  # sent as it is written, not in one piece
    names = [f"task-{o.task_id}-output-{o.pk}.png" for o in (second, first)]
    assert archive.namelist() == names
    assert archive.testzip() is None
    for name, output in zip(names, (second, first), strict=True):
        with output.file.open("rb") as stored:
            assert archive.read(name) == stored.read()
        assert archive.getinfo(name).compress_type == zipfile.ZIP_STORED


def test_a_repeated_id_is_zipped_once(member_client, team):
    output = make_output(team)
    response = member_client.post("/gallery/zip/", {"ids": [output.pk, output.pk]})
    assert len(streamed(response)[1].namelist()) == 1


def test_another_teams_output_is_refused_like_a_missing_one(member_client, team):
    ours, theirs = make_output(team), make_output(make_team("Elsewhere"))
    for ids in ([ours.pk, theirs.pk], [ours.pk, 999_999]):
        response = member_client.post("/gallery/zip/", {"ids": ids})
        assert response.status_code == 404
        assert not response.streaming
        assert f"No such output: {ids[1]}." in response.content.decode()


@pytest.mark.parametrize(
    "bad",
    ["abc", "-1", "0", "1e3", "1.5", "9" * 30, "\uff11", "", "1; DROP TABLE", "../1"],
)
def test_hostile_ids_are_a_400(member_client, team, bad):
    output = make_output(team)
    response = member_client.post("/gallery/zip/", {"ids": [output.pk, bad]})
    assert response.status_code == 400
    assert "Not an output id" in response.content.decode()


def test_no_selection_and_too_many_ids_are_a_400(member_client, team):
    assert member_client.post("/gallery/zip/", {}).status_code == 400
    response = member_client.post("/gallery/zip/", {"ids": range(1, zips.MAX_FILES + 2)})
    assert response.status_code == 400
    assert f"At most {zips.MAX_FILES} images" in response.content.decode()


def test_a_selection_heavier_than_the_cap_is_a_413_before_anything_is_read(member_client, team):
    light, heavy = make_output(team), make_output(team)
    Output.objects.filter(pk=heavy.pk).update(size=zips.MAX_BYTES)
    response = member_client.post("/gallery/zip/", {"ids": [light.pk, heavy.pk]})
    assert response.status_code == 413
    assert "one zip holds" in response.content.decode()


def test_an_output_whose_file_is_gone_is_a_404_not_a_broken_zip(member_client, team):
    output = make_output(team)
    output.file.storage.delete(output.file.name)
    response = member_client.post("/gallery/zip/", {"ids": [output.pk]})
    assert response.status_code == 404
    assert f"The file of output {output.pk} is missing." in response.content.decode()


def test_reading_is_not_enough_a_get_is_refused(member_client, team):
    output = make_output(team)
    assert member_client.get(f"/gallery/zip/?ids={output.pk}").status_code == 405


def test_the_api_zips_the_same_way_and_refuses_with_the_error_envelope(team):
    output = make_output(team)
    api = caller_for(make_user(team=team))
    response = api("POST", "outputs/zip", {"ids": [output.pk]})
    assert response.status_code == 200
    assert streamed(response)[1].namelist() == [f"task-{output.task_id}-output-{output.pk}.png"]

    foreign = make_output(make_team("Elsewhere"))
    refused = api("POST", "outputs/zip", {"ids": [output.pk, foreign.pk]})
    assert refused.status_code == 404
    assert error_of(refused)["type"] == "not_found"
    for body in ({"ids": []}, {"ids": [-3]}, {"ids": ["x"]}, {"ids": [2**70]}, {}):
        bad = api("POST", "outputs/zip", body)
        assert bad.status_code == 400, body
        assert error_of(bad)["type"] == "validation_error"
    Output.objects.filter(pk=output.pk).update(size=zips.MAX_BYTES + 1)
    heavy = api("POST", "outputs/zip", {"ids": [output.pk]})
    assert heavy.status_code == 413
    assert error_of(heavy)["type"] == "too_large"
