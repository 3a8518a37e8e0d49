"""Storing outputs (A8): generated names only, types checked by opening, thumbnails."""

from __future__ import annotations

import io
import pathlib

import pytest
from PIL import Image

from servers.comfyui import FileRef
from tasks.outputs import Downloaded, display_name, seeds_in, store_output
from tests.factories import make_server, make_task, shared_workflow

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]


def downloaded(tmp_path: pathlib.Path, data: bytes, ref: FileRef, node_id: str = "9") -> Downloaded:
    path = tmp_path / "download"
    path.write_bytes(data)
    return Downloaded(node_id=node_id, ref=ref, path=path)


def image_bytes(fmt: str, size=(640, 320)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "blue").save(buffer, format=fmt)
    return buffer.getvalue()


HOSTILE = [
    FileRef(filename="../../etc/passwd", subfolder="..", type="output"),
    FileRef(filename="/etc/shadow", subfolder="../../..", type="output"),
    FileRef(filename="..\\..\\boot.ini", subfolder="/tmp", type="temp"),
    FileRef(filename="x.png\x00.sh", subfolder="", type="output"),
]


@pytest.mark.parametrize("ref", HOSTILE)
def test_hostile_server_file_names_never_reach_the_storage_path(tmp_path, ref):
    task = make_task(dispatched_to=make_server(), graph=shared_workflow("empty_save"))
    output = store_output(task, downloaded(tmp_path, image_bytes("PNG"), ref))
    name = output.file.name
    assert name.startswith(f"outputs/team-{task.team_id}/")
    assert name.endswith(".png")
    assert ".." not in name
    assert "etc" not in name
    assert "boot" not in name
    assert pathlib.Path(output.file.path).resolve().is_relative_to(tmp_path / "media")
    assert "/" not in output.original_name
    assert "\\" not in output.original_name
    assert output.original_name.isprintable()


def test_the_type_comes_from_the_bytes_not_the_name(tmp_path):
    task = make_task(dispatched_to=make_server(), graph=shared_workflow("empty_save"))
    jpeg = store_output(task, downloaded(tmp_path, image_bytes("JPEG"), FileRef("a.png")))
    assert jpeg.content_type == "image/jpeg"
    assert jpeg.file.name.endswith(".jpg")
    fake = store_output(task, downloaded(tmp_path, b"<script>alert(1)</script>", FileRef("b.png")))
    assert fake.content_type == "application/octet-stream"
    assert fake.file.name.endswith(".bin")
    assert not fake.thumbnail
    assert fake.width is None


def test_images_get_a_small_webp_thumbnail_and_their_size(tmp_path):
    task = make_task(dispatched_to=make_server(), graph=shared_workflow("empty_save"))
    output = store_output(task, downloaded(tmp_path, image_bytes("PNG"), FileRef("c.png")))
    assert (output.width, output.height) == (640, 320)
    assert output.size > 0
    with Image.open(output.thumbnail.path) as thumb:
        assert thumb.format == "WEBP"
        assert max(thumb.size) <= 320


def test_metadata_keeps_what_it_takes_to_run_it_again(tmp_path):
    graph = {
        "3": {"class_type": "KSampler", "inputs": {"seed": 1234, "steps": 20}},
        "4": {"class_type": "KSamplerAdvanced", "inputs": {"noise_seed": 99}},
        "5": {"class_type": "KSampler", "inputs": {"seed": ["7", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {}},
    }
    task = make_task(dispatched_to=make_server(name="gpu-9"), graph=graph, params={"seed": 1234})
    output = store_output(task, downloaded(tmp_path, image_bytes("PNG"), FileRef("d.png")))
    meta = output.metadata
    assert meta["seeds"] == {"3": 1234, "4": 99}
    assert meta["params"] == {"seed": 1234}
    assert meta["server"] == "gpu-9"
    assert meta["node_class"] == "SaveImage"
    assert meta["prompt_id"] == task.prompt_id


def test_display_names_keep_only_the_last_segment():
    assert display_name(FileRef("../../etc/passwd", "..")) == "passwd"
    assert display_name(FileRef("..", "")) == "output"
    assert seeds_in(shared_workflow("empty_save")) == {}


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "I;16"])
def test_any_png_mode_is_kept_as_an_image(tmp_path, mode):
    buffer = io.BytesIO()
    Image.new(mode, (40, 30)).save(buffer, format="PNG")
    task = make_task(dispatched_to=make_server(), graph=shared_workflow("empty_save"))
    output = store_output(task, downloaded(tmp_path, buffer.getvalue(), FileRef("m.png")))
    assert output.content_type == "image/png"
    assert (output.width, output.height) == (40, 30)
