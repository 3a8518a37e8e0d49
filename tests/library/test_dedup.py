"""The same bytes stored once: a download whose sha256 the library has already (under
another name) becomes a hard link to that file, and a download of a URL fetched
before, that the server still describes the same way, fetches nothing at all."""

from __future__ import annotations

import os

import pytest

from library.models import Download, DownloadState, ModelFile
from tests.range_server import Faults, MiB

pytestmark = pytest.mark.django_db(transaction=True)

SIZE = 3 * MiB + 17


def inode(path) -> int:
    return os.stat(path).st_ino


def bodies(server) -> list[str]:
    """The requests that asked for bytes (the probe's HEAD asks for none)."""
    return [r.method for r in server.requests if r.method != "HEAD"]


def test_bytes_the_library_has_become_a_hard_link_after_the_download(range_server, fetch):
    server = range_server(SIZE)
    first = fetch(server.url("a.safetensors"), "checkpoints")
    assert first.state == DownloadState.COMPLETED, first.error
    assert first.error == ""

    # Another URL (so nothing says beforehand that it is the same file), no sha256.
    second = fetch(server.url("b.safetensors"), "loras")
    assert second.state == DownloadState.COMPLETED, second.error
    assert server.bytes_served == 2 * SIZE  # fetched and hashed: only then known
    assert second.sha256 == first.sha256 == server.content.sha256()
    assert inode(second.final_path) == inode(first.final_path)
    assert os.stat(first.final_path).st_nlink == 2
    assert second.final_path.read_bytes() == server.content.read()
    assert "checkpoints/a.safetensors" in second.error
    assert "hard link" in second.error
    assert not second.part_path.exists()
    assert ModelFile.objects.get(folder="loras", filename="b.safetensors").sha256 == first.sha256


def test_other_bytes_are_kept_as_they_are(range_server, fetch):
    first = fetch(range_server(SIZE, seed=1).url(), "checkpoints")
    other = fetch(range_server(SIZE, seed=2).url(), "loras")
    assert other.state == DownloadState.COMPLETED, other.error
    assert other.sha256 != first.sha256
    assert inode(other.final_path) != inode(first.final_path)
    assert other.error == ""


def test_a_url_fetched_before_and_unchanged_is_linked_without_fetching(range_server, fetch):
    server = range_server(SIZE, faults=Faults())
    url = server.url("model.safetensors")
    first = fetch(url, "checkpoints")
    assert first.state == DownloadState.COMPLETED, first.error
    served, asked = server.bytes_served, len(bodies(server))

    again = fetch(url, "loras", filename="same.safetensors")
    assert again.state == DownloadState.COMPLETED, again.error
    assert server.bytes_served == served  # not one byte more
    assert len(bodies(server)) == asked  # only the probe's HEAD
    assert server.requests[-1].method == "HEAD"
    assert (again.size, again.downloaded, again.sha256) == (SIZE, SIZE, first.sha256)
    assert (again.etag, again.last_modified) == (first.etag, first.last_modified)
    assert inode(again.final_path) == inode(first.final_path)
    assert "checkpoints/model.safetensors" in again.error
    assert ModelFile.objects.filter(folder="loras", filename="same.safetensors").exists()
    assert again.finished_at is not None


def test_a_url_fetched_before_is_not_taken_for_a_download_expecting_other_bytes(
    range_server, fetch
):
    server = range_server(SIZE)
    fetch(server.url(), "checkpoints")
    wrong = "0" * 64
    again = fetch(server.url(), "loras", sha256=wrong)
    assert again.state == DownloadState.FAILED
    assert server.bytes_served == 2 * SIZE
    assert wrong in again.error
    assert not again.final_path.exists()


def test_a_url_fetched_before_is_fetched_again_once_the_server_changed_it(range_server, fetch):
    server = range_server(SIZE)
    url = server.url()
    first = fetch(url, "checkpoints")
    server.state.content = type(server.content)(SIZE, seed=5)  # a new ETag, same size

    again = fetch(url, "loras")
    assert again.state == DownloadState.COMPLETED, again.error
    assert server.bytes_served == 2 * SIZE
    assert again.sha256 == server.content.sha256() != first.sha256
    assert again.etag != first.etag
    assert again.error == ""


def test_a_url_fetched_before_is_fetched_again_once_its_file_is_gone(range_server, fetch):
    server = range_server(SIZE)
    first = fetch(server.url(), "checkpoints")
    first.final_path.unlink()

    again = fetch(server.url(), "loras")
    assert again.state == DownloadState.COMPLETED, again.error
    assert server.bytes_served == 2 * SIZE
    assert again.sha256 == first.sha256
    assert again.error == ""  # nothing left to link to


def test_a_server_without_validators_is_never_taken_at_its_word(range_server, fetch):
    server = range_server(SIZE)
    first = fetch(server.url(), "checkpoints")
    # As if the server had named neither an ETag nor a Last-Modified.
    Download.objects.filter(pk=first.pk).update(etag="", last_modified="")
    server.state.content.etag = ""
    server.state.content.last_modified = ""

    again = fetch(server.url(), "loras")
    assert again.state == DownloadState.COMPLETED, again.error
    assert server.bytes_served == 2 * SIZE
    # Fetched, hashed, and then found to be bytes the library has: linked all the same.
    assert inode(again.final_path) == inode(first.final_path)
