"""Asking for a download: hostile input refused with the fields named, the name taken
from the URL, the job queued; a file the library already has (same sha256) placed
under the new name at once; headers never shown."""

from __future__ import annotations

import hashlib
import os

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from library.models import Download, DownloadState, ModelFile
from library.progress import summary
from library.requests import request_download
from tests.factories import make_user
from tests.range_server import MiB

pytestmark = pytest.mark.django_db

URL = "http://127.0.0.1:9/files/model.safetensors"


def refused(**fields) -> dict[str, list[str]]:
    arguments = {"url": URL, "folder": "checkpoints"} | fields
    with pytest.raises(ValidationError) as caught:
        request_download(**arguments)
    return caught.value.message_dict


@pytest.mark.parametrize(
    "filename",
    [
        "../escape.safetensors",
        "..",
        ".",
        ".hidden",
        "a/b.safetensors",
        "a\\b.safetensors",
        "nul\x00byte",
        "line\nbreak",
        "x" * 256,
        "é" * 200,  # 400 bytes in UTF-8
        "model..safetensors",
        "model.safetensors.part",
        " spaced",
        "/etc/passwd",
    ],
)
def test_hostile_filenames_are_refused(models_dir, enqueued, filename):
    assert "filename" in refused(filename=filename)
    assert not Download.objects.exists()
    assert enqueued == []


def test_a_hostile_name_in_the_url_is_refused_too(models_dir, enqueued):
    assert "filename" in refused(url="http://127.0.0.1:9/files/..%2F..%2Fx")
    assert "filename" in refused(url="http://127.0.0.1:9/")


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"folder": "../checkpoints"}, "folder"),
        ({"folder": "custom_nodes"}, "folder"),
        ({"url": "file:///etc/passwd", "filename": "x.bin"}, "url"),
        ({"url": "ftp://127.0.0.1/x.bin"}, "url"),
        ({"url": "not a url", "filename": "x.bin"}, "url"),
        ({"sha256": "abc"}, "expected_sha256"),
        ({"sha256": "g" * 64}, "expected_sha256"),
        ({"connections": 0}, "connections"),
        ({"connections": 17}, "connections"),
        ({"headers": ["Authorization", "x"]}, "headers"),
        ({"headers": {"Bad Name": "x"}}, "headers"),
        ({"headers": {"X-Token": "a\r\nInjected: 1"}}, "headers"),
        ({"headers": {"Range": "bytes=0-"}}, "headers"),
        ({"headers": {"Host": "example.org"}}, "headers"),
        ({"headers": {"X-Token": 5}}, "headers"),
    ],
)
def test_bad_fields_are_refused_by_name(models_dir, enqueued, fields, named):
    assert named in refused(**fields)
    assert enqueued == []


def test_errors_about_headers_never_quote_their_values(models_dir):
    errors = refused(headers={"X-Token": "s3cret\n"})
    assert "s3cret" not in str(errors)
    assert "X-Token" in str(errors)


def test_a_download_is_queued_with_the_name_from_the_url(models_dir, enqueued):
    download = request_download(
        "https://127.0.0.1:9/repo/resolve/main/sd%20xl.safetensors?download=true",
        "checkpoints",
        headers={"Authorization": "Bearer s3cret"},
    )
    assert download.filename == "sd xl.safetensors"
    assert download.state == DownloadState.QUEUED
    assert download.connections == 4
    assert enqueued == []  # queued when the transaction commits


def test_the_job_is_queued_when_the_request_commits(
    models_dir, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        download = request_download(URL, "loras", filename="mine.safetensors", connections=8)
    assert enqueued == [("library.jobs.run_download", download.pk)]
    assert download.final_path == models_dir / "loras" / "mine.safetensors"


def test_a_name_already_in_the_library_or_being_fetched_is_refused(models_dir, enqueued):
    (models_dir / "vae").mkdir(parents=True)
    (models_dir / "vae" / "taken.safetensors").write_bytes(b"x")
    assert "filename" in refused(folder="vae", filename="taken.safetensors")
    request_download(URL, "vae", filename="busy.safetensors")
    assert "filename" in refused(folder="vae", filename="busy.safetensors")
    assert Download.objects.count() == 1


def library_file(models_dir, folder: str, name: str, data: bytes) -> ModelFile:
    path = models_dir / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    return ModelFile.objects.create(folder=folder, filename=name, size=len(data), sha256=digest)


def test_a_file_the_library_has_is_linked_under_the_new_name_without_fetching(
    models_dir, enqueued, range_server
):
    server = range_server(MiB)
    original = library_file(models_dir, "checkpoints", "a.safetensors", b"weights" * 1000)
    download = request_download(
        server.url(), "loras", filename="b.safetensors", sha256=original.sha256.upper()
    )
    assert download.state == DownloadState.COMPLETED
    assert (download.sha256, download.size) == (original.sha256, original.size)
    copy = models_dir / "loras" / "b.safetensors"
    assert copy.read_bytes() == original.path.read_bytes()
    assert os.stat(copy).st_ino == os.stat(original.path).st_ino  # a hard link
    assert download.error == "already in the library as checkpoints/a.safetensors: " + (
        "stored as a hard link to it"
    )
    assert ModelFile.objects.filter(folder="loras", filename="b.safetensors").exists()
    assert server.requests == []
    assert enqueued == []


def test_asking_again_for_a_file_already_there_with_that_hash_completes(models_dir, enqueued):
    there = library_file(models_dir, "vae", "v.safetensors", b"vae")
    download = request_download(URL, "vae", filename="v.safetensors", sha256=there.sha256)
    assert download.state == DownloadState.COMPLETED
    assert enqueued == []


def test_a_twin_whose_file_is_gone_is_not_used(models_dir, enqueued):
    gone = library_file(models_dir, "vae", "v.safetensors", b"vae")
    gone.path.unlink()
    download = request_download(URL, "vae", filename="w.safetensors", sha256=gone.sha256)
    assert download.state == DownloadState.QUEUED


def test_headers_are_write_only(models_dir, enqueued, admin_client):
    download = request_download(URL, "vae", headers={"Authorization": "Bearer s3cret"})
    assert download.headers == {"Authorization": "Bearer s3cret"}
    assert "s3cret" not in str(download)
    assert "s3cret" not in repr(download)
    assert "headers" not in summary(download)
    assert "s3cret" not in str(summary(download))
    for url in (
        f"/admin/library/download/{download.pk}/change/",
        "/admin/library/download/",
    ):
        page = admin_client.get(url)
        assert page.status_code == 200
        assert b"s3cret" not in page.content
        assert b"Bearer" not in page.content


def test_the_downloads_topic_is_for_signed_in_users(db):
    from django.contrib.auth.models import AnonymousUser

    from comfyweb import topics

    topic = topics.get("downloads")
    assert topic is not None
    assert topic.allowed(make_user("ada"), None)
    assert not topic.allowed(AnonymousUser(), None)
    assert not topic.allowed(make_user("off", active=False), None)


def test_the_migration_matches_the_models():
    call_command("makemigrations", "library", "--check", "--dry-run", verbosity=0)
