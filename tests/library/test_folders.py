"""One list of model folders: what a download may go into, what the library scans
and what every local instance's extra-model-paths file points at the library."""

from __future__ import annotations

import pytest
import yaml
from django.core.exceptions import ValidationError

from library import files
from library.folders import CUSTOM_NODE_FOLDERS, FOLDERS, LEGACY_FOLDERS
from library.models import Download, ModelFile
from library.validation import validate_folder
from servers.local import modelpaths
from servers.simulator.config import MODEL_FOLDERS as RECORDED_COMFYUI_FOLDERS


def test_the_extra_model_paths_file_points_every_folder_at_the_library(tmp_path):
    models = tmp_path / "my models"
    written = modelpaths.write(tmp_path / "paths.yaml", models)
    groups = yaml.safe_load(written.read_text())
    assert list(groups) == [modelpaths.GROUP]
    group = groups[modelpaths.GROUP]
    assert group.pop("base_path") == str(models.resolve())
    assert group == {folder: folder for folder in FOLDERS}


def test_every_folder_is_one_a_download_may_use_and_nothing_else_is():
    for folder in FOLDERS:
        validate_folder(folder)
    for field in (Download._meta.get_field("folder"), ModelFile._meta.get_field("folder")):
        assert [value for value, _ in field.choices] == list(FOLDERS)
    for folder in ("custom_nodes", "models", "../checkpoints", "Checkpoints"):
        with pytest.raises(ValidationError):
            validate_folder(folder)


def test_the_list_holds_what_comfyui_answers_its_legacy_names_and_custom_node_folders():
    # The folders a recorded ComfyUI answered GET /models with (the simulator's copy),
    # less custom_nodes, which holds code.
    assert set(RECORDED_COMFYUI_FOLDERS) - {"custom_nodes"} <= set(FOLDERS)
    assert {"clip", "unet"} == set(LEGACY_FOLDERS) <= set(FOLDERS)
    assert "ipadapter" in CUSTOM_NODE_FOLDERS
    assert len(set(FOLDERS)) == len(FOLDERS)
    assert all(len(folder) <= Download._meta.get_field("folder").max_length for folder in FOLDERS)


@pytest.mark.django_db
def test_a_scan_finds_files_in_every_folder(models_dir):
    for folder in FOLDERS:
        (models_dir / folder).mkdir(parents=True)
        (models_dir / folder / f"{folder}.safetensors").write_bytes(folder.encode())
    result = files.scan(hash_new=False)
    assert sorted((m.folder, m.filename) for m in result.added) == sorted(
        (folder, f"{folder}.safetensors") for folder in FOLDERS
    )
