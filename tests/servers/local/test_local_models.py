"""A local instance's configuration: what it refuses, and how its server is listed."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from servers.local.models import LocalInstance, LocalState
from servers.models import Server, ServerKind

pytestmark = pytest.mark.django_db


def instance(**fields) -> LocalInstance:
    values = {"name": "studio", "comfyui_dir": "/opt/ComfyUI", "port": 8190} | fields
    return LocalInstance(**values)


def errors(candidate: LocalInstance) -> dict[str, list[str]]:
    try:
        candidate.full_clean()
    except ValidationError as error:
        return error.message_dict
    return {}


def test_a_plain_install_is_valid():
    assert errors(instance(args=["--lowvram"], gpus=["0"], environment={"HF_HOME": "/srv"})) == {}
    assert errors(instance(comfyui_dir="", start_script="/opt/ComfyUI/run.sh")) == {}


@pytest.mark.parametrize(
    "fields",
    [
        {"comfyui_dir": "", "start_script": ""},
        {"start_script": "/opt/ComfyUI/run.sh"},  # both
    ],
)
def test_exactly_one_of_directory_and_start_script(fields):
    assert "comfyui_dir" in errors(instance(**fields))


@pytest.mark.parametrize(
    "path",
    ["relative/ComfyUI", "/opt/../etc", "/opt//ComfyUI", "/opt/ComfyUI/", "/opt/Comfy\nUI"],
)
def test_hostile_or_relative_paths_are_refused(path):
    assert "comfyui_dir" in errors(instance(comfyui_dir=path))
    assert "start_script" in errors(instance(comfyui_dir="", start_script=path))


@pytest.mark.parametrize("python", ["python3; rm -rf /", "../venv/bin/python", "bin/python", ""])
def test_the_interpreter_is_a_command_or_an_absolute_path(python):
    assert "python" in errors(instance(python=python))


ANY = "0.0.0.0"  # noqa: S104 - what the arguments must not reach


@pytest.mark.parametrize(
    "args", [["--listen", ANY], [f"--listen={ANY}"], ["--liste", ANY], ["--port", "1"]]
)
def test_arguments_cannot_move_it_off_loopback_or_its_port(args):
    assert "args" in errors(instance(args=args))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("args", "--lowvram"),
        ("args", ["a\x00b"]),
        ("environment", {"bad name": "x"}),
        ("environment", {"CUDA_VISIBLE_DEVICES": "0"}),
        ("gpus", ["0", "0"]),
        ("gpus", ["0,1"]),
        ("name", "../etc"),
        ("port", 80),
    ],
)
def test_malformed_fields_are_refused(field, value):
    assert field in errors(instance(**{field: value}))


def test_local_servers_are_in_the_fleet_only_while_their_instance_runs():
    server = Server.objects.create(name="local-studio", base_url="http://127.0.0.1:8190")
    Server.objects.filter(pk=server.pk).update(kind=ServerKind.LOCAL)
    orphan = Server.objects.create(name="local-gone", base_url="http://127.0.0.1:8191")
    Server.objects.filter(pk=orphan.pk).update(kind=ServerKind.LOCAL)
    fixed = Server.objects.create(name="gpu-1", base_url="http://10.0.0.1:8188")
    studio = instance(server=server, state=LocalState.RUNNING)
    studio.save()
    instance(name="idle", port=8192, state=LocalState.STOPPED).save()  # no server: a NULL

    assert set(Server.objects.in_fleet()) == {server, fixed}
    LocalInstance.objects.filter(pk=studio.pk).update(state=LocalState.STOPPED)
    assert set(Server.objects.in_fleet()) == {fixed}


def test_a_local_server_cannot_be_added_by_hand():
    server = Server(name="mine", base_url="http://127.0.0.1:8190", kind=ServerKind.LOCAL)
    with pytest.raises(ValidationError) as raised:
        server.full_clean()
    assert "kind" in raised.value.message_dict
