"""The simulator finds model files on disk as ComfyUI does: its own models/ and the
folders of an --extra-model-paths-config, rescanned on every request."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import httpx
import pytest

from servers.simulator import model_paths
from servers.simulator.config import SimulatorConfig
from servers.simulator.server import SimulatedComfyUI
from tests.serve_process import PROJECT, free_port


def _write(path: pathlib.Path, text: str = "x") -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_config_base_path_is_taken_from_the_files_own_directory(tmp_path: pathlib.Path) -> None:
    config = _write(
        tmp_path / "conf" / "extra.yaml",
        "library:\n"
        "    base_path: ../models\n"
        "    checkpoints: |\n"
        "        checkpoints\n"
        "        more_checkpoints\n"
        "    clip: text_encoders\n"
        "other:\n"
        "    loras: /srv/loras\n",
    )
    folders = model_paths.read_config(config)
    assert folders["checkpoints"] == [
        tmp_path / "models/checkpoints",
        tmp_path / "models/more_checkpoints",
    ]
    # ComfyUI maps its legacy folder names.
    assert folders["text_encoders"] == [tmp_path / "models/text_encoders"]
    assert folders["loras"] == [pathlib.Path("/srv/loras")]


def test_a_config_comfyui_cannot_read_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(model_paths.ModelPathsError):
        model_paths.read_config(_write(tmp_path / "bad.yaml", "a: [unclosed"))
    with pytest.raises(model_paths.ModelPathsError):
        model_paths.read_config(tmp_path / "missing.yaml")


def test_files_are_named_by_their_path_below_the_folder_and_filtered_by_extension(
    tmp_path: pathlib.Path,
) -> None:
    root = tmp_path / "checkpoints"
    _write(root / "sd15.safetensors")
    _write(root / "sdxl" / "base.ckpt")
    _write(root / "big.safetensors.part")  # a download still running
    _write(root / "notes.txt")
    _write(root / ".git" / "hidden.safetensors")
    assert model_paths.list_files("checkpoints", [root, tmp_path / "absent"]) == [
        "sd15.safetensors",
        "sdxl/base.ckpt",
    ]


async def test_a_file_copied_into_a_model_folder_shows_up_on_the_next_request(
    tmp_path: pathlib.Path,
) -> None:
    library = tmp_path / "library"
    config = SimulatorConfig(
        models={"checkpoints": ["builtin.safetensors"]},
        model_dirs={"checkpoints": [library / "checkpoints"]},
    )
    sim = SimulatedComfyUI(data_dir=tmp_path / "data", config=config)
    await sim.start()
    try:
        async with httpx.AsyncClient(base_url=sim.base_url) as client:
            assert (await client.get("/models/checkpoints")).json() == ["builtin.safetensors"]
            _write(library / "checkpoints" / "downloaded.safetensors")
            assert (await client.get("/models/checkpoints")).json() == [
                "builtin.safetensors",
                "downloaded.safetensors",
            ]
            info = (await client.get("/object_info/CheckpointLoaderSimple")).json()
            options = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
            assert "downloaded.safetensors" in options
    finally:
        await sim.stop()


def test_the_stand_in_install_takes_comfyuis_flags(tmp_path: pathlib.Path) -> None:
    """servers/simulator/comfyui/main.py runs as `python main.py --listen --port
    --extra-model-paths-config`, as the launcher starts ComfyUI."""
    _write(tmp_path / "models" / "loras" / "style.safetensors")
    config = _write(
        tmp_path / "extra.yaml", f"lib:\n    base_path: {tmp_path / 'models'}\n    loras: loras\n"
    )
    port = free_port()
    child = subprocess.Popen(
        [
            sys.executable,
            "main.py",
            "--listen",
            "127.0.0.1",
            "--port",
            str(port),
            "--extra-model-paths-config",
            str(config),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        cwd=PROJECT / "servers/simulator/comfyui",
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.strip() == "ready":
                break
        else:
            pytest.fail(f"the stand-in exited with {child.wait()}")
        answer = httpx.get(f"http://127.0.0.1:{port}/models/loras")
        assert answer.json() == ["style.safetensors"]
    finally:
        child.terminate()
        child.wait()
