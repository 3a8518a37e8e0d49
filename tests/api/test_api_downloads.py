"""/api/v1/downloads and /api/v1/models (#14): everyone signed in reads the library and
the downloads with their live figures; staff ask for, cancel and retry downloads,
checked by library.requests (400 naming the fields); a download's headers are
write-only. And one download end to end: through the API, fetched from a real local
range server by the worker's job, completed and in the library."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.utils import timezone

from library import jobs, store
from library.enqueue import RUN_DOWNLOAD
from library.models import Download, DownloadState, ModelFile
from tests.api.callers import error_of, fields_named
from tests.range_server import Content, MiB, RangeServer

pytestmark = pytest.mark.django_db

URL = "http://127.0.0.1:9/files/sd15.safetensors"
SECRET = "s3cret-token-value"
DOWNLOAD_FIELDS = {
    "id",
    "url",
    "folder",
    "filename",
    "size",
    "downloaded",
    "fraction",
    "speed_bps",
    "eta_seconds",
    "connections",
    "active_connections",
    "state",
    "sha256",
    "expected_sha256",
    "error",
    "created_at",
    "started_at",
    "finished_at",
}
NON_STAFF = ["admin", "member", "viewer", "stranger"]


@pytest.fixture
def models_dir(settings, tmp_path) -> Path:
    settings.COMFYWEB_MODELS_DIR = tmp_path / "models"
    return settings.COMFYWEB_MODELS_DIR


@pytest.fixture
def ask(world, models_dir, enqueued, django_capture_on_commit_callbacks):
    """`ask(body, caller=world.staff)`: POST /downloads, its on-commit work (the job
    queued) done before the answer is returned."""

    def post(body, caller=None):
        with django_capture_on_commit_callbacks(execute=True):
            return (caller or world.staff)("POST", "downloads", body)

    return post


def make_download(**fields) -> Download:
    values = {"url": URL, "folder": "checkpoints", "filename": "sd15.safetensors"} | fields
    return Download.objects.create(**values)


def test_staff_ask_for_a_download_and_its_job_is_queued(ask, enqueued):
    response = ask({"url": URL, "folder": "checkpoints", "connections": 8})

    assert response.status_code == 201, response.content
    made = response.json()
    assert set(made) == DOWNLOAD_FIELDS
    download = Download.objects.get()
    assert made | {"created_at": None} == {
        "id": download.pk,
        "url": URL,
        "folder": "checkpoints",
        "filename": "sd15.safetensors",  # from the URL
        "size": None,
        "downloaded": 0,
        "fraction": None,
        "speed_bps": 0,
        "eta_seconds": None,
        "connections": 8,
        "active_connections": 0,
        "state": "queued",
        "sha256": "",
        "expected_sha256": "",
        "error": "",
        "created_at": None,
        "started_at": None,
        "finished_at": None,
    }
    assert enqueued == [(RUN_DOWNLOAD, download.pk)]


def test_headers_are_never_in_an_answer(ask, world):
    body = {
        "url": URL,
        "folder": "loras",
        "filename": "style.safetensors",
        "sha256": "AB" * 32,  # any case: stored lowercase
        "headers": {"Authorization": f"Bearer {SECRET}", "X-Api-Key": SECRET},
    }
    created = ask(body)
    assert created.status_code == 201, created.content
    download = Download.objects.get()
    assert download.headers == body["headers"]  # kept, for the worker
    assert download.expected_sha256 == "ab" * 32
    answers = [
        created,
        world.staff("GET", f"downloads/{download.pk}"),
        world.staff("GET", "downloads"),
        world.viewer("GET", f"downloads/{download.pk}"),
        world.viewer("GET", "downloads"),
    ]
    for answer in answers:
        assert answer.status_code in (200, 201)
        assert SECRET.encode() not in answer.content
        assert b"Authorization" not in answer.content
        assert b"headers" not in answer.content

    # Refused: the error names the field, never the value.
    refused = ask(body | {"filename": "other.safetensors", "headers": {"X-Key": SECRET + "\r\n"}})
    assert refused.status_code == 400
    assert fields_named(refused) == {"headers"}
    assert SECRET.encode() not in refused.content
    refused = ask(body | {"filename": "other.safetensors", "headers": {"X-Key": 5}})
    assert refused.status_code == 400
    assert {field.split(".")[0] for field in fields_named(refused)} == {"headers"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"folder": "../checkpoints"}, "folder"),
        ({"folder": "custom_nodes"}, "folder"),
        ({"filename": "../x"}, "filename"),
        ({"filename": "a/b"}, "filename"),
        ({"filename": ".hidden"}, "filename"),
        ({"filename": "a\\b"}, "filename"),
        ({"filename": "model.safetensors.part"}, "filename"),
        ({"url": "http://127.0.0.1:9/files/..%2F..%2Fx"}, "filename"),  # the URL's name
        ({"url": "file:///etc/passwd", "filename": "x.bin"}, "url"),
        ({"url": "ftp://127.0.0.1/x.bin"}, "url"),
        ({"url": "javascript:alert(1)", "filename": "x.bin"}, "url"),
        ({"connections": 0}, "connections"),
        ({"connections": 17}, "connections"),
        ({"sha256": "abc"}, "sha256"),
        ({"headers": {"Bad Name": "x"}}, "headers"),
        ({"headers": {"Host": "example.org"}}, "headers"),
        ({"headers": ["Authorization", "x"]}, "headers"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_nothing_is_queued(ask, enqueued, change, field):
    response = ask({"url": URL, "folder": "checkpoints"} | change)
    assert response.status_code == 400, response.content
    assert error_of(response)["type"] == "validation_error"
    assert field in fields_named(response)
    assert not Download.objects.exists()
    assert enqueued == []


def test_a_nul_in_the_filename_is_a_400_saying_where(ask):
    response = ask({"url": URL, "folder": "checkpoints", "filename": "a\x00b"})
    assert response.status_code == 400
    assert "filename" in error_of(response)["message"]
    assert not Download.objects.exists()


def test_a_name_already_in_the_library_or_being_fetched_is_refused(ask):
    assert ask({"url": URL, "folder": "checkpoints"}).status_code == 201
    again = ask({"url": URL, "folder": "checkpoints"})
    assert again.status_code == 400
    assert fields_named(again) == {"filename"}


def test_only_staff_write_and_everyone_signed_in_reads(world, ask, enqueued):
    download = make_download(state=DownloadState.FAILED, error="boom")
    body = {"url": URL, "folder": "vae", "filename": "v.safetensors"}
    for role in NON_STAFF:
        caller = getattr(world, role)
        assert ask(body, caller).status_code == 403
        assert caller("DELETE", f"downloads/{download.pk}").status_code == 403
        assert caller("POST", f"downloads/{download.pk}/retry").status_code == 403
        assert caller("GET", f"downloads/{download.pk}").status_code == 200
        assert [d["id"] for d in caller("GET", "downloads").json()] == [download.pk]
        assert caller("GET", "models").status_code == 200
    assert Download.objects.count() == 1
    assert Download.objects.get().state == DownloadState.FAILED
    assert enqueued == []
    for method, path in [
        ("GET", "downloads"),
        ("POST", "downloads"),
        ("GET", f"downloads/{download.pk}"),
        ("DELETE", f"downloads/{download.pk}"),
        ("POST", f"downloads/{download.pk}/retry"),
        ("GET", "models"),
    ]:
        response = world.anonymous(method, path, body if method == "POST" else None)
        assert response.status_code == 401, (method, path)
        assert error_of(response)["type"] == "not_authenticated"
    assert world.viewer("GET", "downloads/999999").status_code == 404


def test_readers_who_are_not_staff_get_the_url_without_its_query(world):
    download = make_download(url="https://user:pw@models.example:8443/f/m.safetensors?token=abc")
    staff = world.staff("GET", f"downloads/{download.pk}").json()
    viewer = world.viewer("GET", f"downloads/{download.pk}").json()
    assert staff["url"] == download.url
    assert viewer["url"] == "https://models.example:8443/f/m.safetensors"


def test_a_running_download_says_how_far_how_fast_and_how_long(world):
    download = make_download(
        state=DownloadState.RUNNING,
        size=1000 * MiB,
        downloaded=250 * MiB,
        speed_bps=50 * MiB,
        active_connections=3,
        started_at=timezone.now(),
    )
    shown = world.viewer("GET", f"downloads/{download.pk}").json()
    assert (shown["fraction"], shown["eta_seconds"]) == (0.25, 15.0)
    assert (shown["speed_bps"], shown["active_connections"]) == (50 * MiB, 3)
    Download.objects.filter(pk=download.pk).update(state=DownloadState.FAILED, speed_bps=0)
    shown = world.viewer("GET", f"downloads/{download.pk}").json()
    assert (shown["fraction"], shown["eta_seconds"]) == (0.25, None)


def test_cancel_a_queued_download_removes_its_partial_file(world, models_dir):
    download = make_download()
    download.part_path.parent.mkdir(parents=True)
    download.part_path.write_bytes(b"partial")

    response = world.staff("DELETE", f"downloads/{download.pk}")

    assert response.status_code == 200, response.content
    assert response.json()["state"] == "canceled"
    assert response.json()["finished_at"] is not None
    assert not download.part_path.exists()
    # Again: it is canceled already, nothing more to do.
    assert world.staff("DELETE", f"downloads/{download.pk}").json()["state"] == "canceled"


def test_cancel_of_a_download_a_worker_holds_is_accepted_and_left_to_the_worker(world):
    download = make_download(
        state=DownloadState.RUNNING, runner=store.new_runner(), heartbeat_at=timezone.now()
    )
    response = world.staff("DELETE", f"downloads/{download.pk}")
    assert response.status_code == 202, response.content
    assert response.json()["state"] == "running"
    download.refresh_from_db()
    assert download.cancel_requested


@pytest.mark.parametrize("state", [DownloadState.COMPLETED, DownloadState.FAILED])
def test_cancel_of_a_download_that_ended_is_a_409(world, state):
    download = make_download(state=state)
    response = world.staff("DELETE", f"downloads/{download.pk}")
    assert response.status_code == 409
    assert error_of(response)["type"] == "conflict"
    assert Download.objects.get().state == state


def test_retry_queues_a_failed_download_again(world, enqueued, django_capture_on_commit_callbacks):
    download = make_download(state=DownloadState.FAILED, error="503 from 127.0.0.1")
    with django_capture_on_commit_callbacks(execute=True):
        response = world.staff("POST", f"downloads/{download.pk}/retry")
    assert response.status_code == 200, response.content
    assert (response.json()["state"], response.json()["error"]) == ("queued", "")
    assert enqueued == [(RUN_DOWNLOAD, download.pk)]


@pytest.mark.parametrize("state", [DownloadState.COMPLETED, DownloadState.QUEUED])
def test_retry_of_a_download_that_is_not_failed_or_canceled_is_a_409(world, enqueued, state):
    download = make_download(state=state)
    response = world.staff("POST", f"downloads/{download.pk}/retry")
    assert response.status_code == 409
    error = error_of(response)
    assert error["type"] == "conflict"
    assert "failed or canceled" in error["message"]
    assert Download.objects.get().state == state
    assert enqueued == []


def test_the_models_list_is_the_library_by_folder(world):
    ModelFile.objects.create(folder="loras", filename="b.safetensors", size=2, sha256="b" * 64)
    ModelFile.objects.create(folder="checkpoints", filename="a.safetensors", size=1, sha256="")
    listed = world.viewer("GET", "models").json()
    assert listed == [
        {"folder": "checkpoints", "filename": "a.safetensors", "size": 1, "sha256": ""},
        {"folder": "loras", "filename": "b.safetensors", "size": 2, "sha256": "b" * 64},
    ]
    assert [m["filename"] for m in world.viewer("GET", "models", folder="loras").json()] == [
        "b.safetensors"
    ]
    refused = world.viewer("GET", "models", folder="../loras")
    assert refused.status_code == 400
    assert fields_named(refused) == {"folder"}


def test_a_retried_post_with_the_same_idempotency_key_asks_once(world, models_dir, enqueued):
    body = json.dumps({"url": URL, "folder": "checkpoints"})
    headers = {"HTTP_AUTHORIZATION": f"Bearer {world.staff.token}", "HTTP_IDEMPOTENCY_KEY": "k1"}
    answers = [
        world.staff.client.post(
            "/api/v1/downloads", data=body, content_type="application/json", **headers
        )
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [201, 201]
    assert answers[0].json()["id"] == answers[1].json()["id"]
    assert Download.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_download_through_the_api_is_fetched_and_lands_in_the_library(
    world, models_dir, enqueued
):
    """Real bytes over loopback: the job the POST queued, run as the worker runs it."""
    with RangeServer(Content(3 * MiB + 4321, seed=7), rate=64 * MiB) as server:
        created = world.staff(
            "POST",
            "downloads",
            {
                "url": server.url("tiny.safetensors"),
                "folder": "loras",
                "headers": {"Authorization": f"Bearer {SECRET}"},
                "sha256": server.content.sha256(),
                "connections": 2,
            },
        )
        assert created.status_code == 201, created.content
        download_id = created.json()["id"]
        assert enqueued == [(RUN_DOWNLOAD, download_id)]

        assert jobs.run_download(download_id) == "completed"

        requests = [r for r in server.requests if r.method == "GET"]
        assert requests
        assert all(r.headers["authorization"] == f"Bearer {SECRET}" for r in requests)
        expected = server.content.sha256()

    shown = world.viewer("GET", f"downloads/{download_id}")
    assert SECRET.encode() not in shown.content
    done = shown.json()
    assert (done["state"], done["sha256"], done["fraction"]) == ("completed", expected, 1.0)
    assert done["size"] == done["downloaded"] == 3 * MiB + 4321
    assert done["finished_at"] is not None
    assert world.viewer("GET", "models", folder="loras").json() == [
        {
            "folder": "loras",
            "filename": "tiny.safetensors",
            "size": 3 * MiB + 4321,
            "sha256": expected,
        }
    ]
    assert (models_dir / "loras" / "tiny.safetensors").stat().st_size == 3 * MiB + 4321
