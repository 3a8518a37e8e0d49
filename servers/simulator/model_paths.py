"""Model files on disk, found the way ComfyUI finds them.

ComfyUI lists a model folder (`/models/{folder}`, the options of a loader node in
`/object_info`) by walking every directory registered for it: its own
`models/<folder>`, then those an `--extra-model-paths-config` file adds. It keeps
files with a model extension, names them by their path below the directory (with
`/`), and sorts them. It notices new files on the next request (its cache checks
the directories' mtimes), so a download that lands in a directory shows up at
once. The simulator does the same, rescanning on every request: its folders are
small.

The config file is YAML: groups of an optional `base_path` (relative paths are
taken from the file's own directory), an optional `is_default`, and `folder:
path` entries whose value may hold several paths, one per line
(ComfyUI's utils/extra_config.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import yaml

# folder_paths.supported_pt_extensions
MODEL_EXTENSIONS = frozenset(
    {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
)
# Folders ComfyUI filters by other extensions.
EXTENSIONS_BY_FOLDER = {"configs": frozenset({".yaml"})}
# folder_paths.map_legacy: the old names ComfyUI still accepts.
LEGACY_NAMES = {"clip": "text_encoders", "unet": "diffusion_models"}


class ModelPathsError(ValueError):
    """An extra-model-paths file ComfyUI would refuse too."""


def canonical(folder: str) -> str:
    return LEGACY_NAMES.get(folder, folder)


def read_config(path: Path) -> dict[str, list[Path]]:
    """folder -> directories, in the file's order (ComfyUI's load_extra_path_config)."""
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ModelPathsError(f"{path}: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelPathsError(f"{path}: expected groups of folder: path entries")
    folders: dict[str, list[Path]] = {}
    for group in config.values():
        if not isinstance(group, dict):
            continue
        group = dict(group)
        base = group.pop("base_path", None)
        group.pop("is_default", None)
        base_path = None
        if base:
            base_path = Path(os.path.expandvars(os.path.expanduser(str(base))))
            if not base_path.is_absolute():
                base_path = path.parent / base_path
        for folder, value in group.items():
            for line in str(value).split("\n"):
                if not line:
                    continue
                directory = Path(line)
                if base_path is not None:
                    directory = base_path / directory
                elif not directory.is_absolute():
                    directory = path.parent / directory
                folders.setdefault(canonical(str(folder)), []).append(
                    Path(os.path.normpath(directory))
                )
    return folders


def models_dir_folders(models_dir: Path, folders: Iterable[str]) -> dict[str, list[Path]]:
    """ComfyUI's own `models/` directory: one subdirectory per folder name."""
    return {folder: [models_dir / folder] for folder in folders}


def merge(*mappings: dict[str, list[Path]]) -> dict[str, list[Path]]:
    merged: dict[str, list[Path]] = {}
    for mapping in mappings:
        for folder, directories in mapping.items():
            merged.setdefault(canonical(folder), []).extend(directories)
    return merged


def list_files(folder: str, directories: Iterable[Path]) -> list[str]:
    """Model files under `directories`, as ComfyUI names them (relative, with `/`)."""
    extensions = EXTENSIONS_BY_FOLDER.get(folder, MODEL_EXTENSIONS)
    names: set[str] = set()
    for directory in directories:
        if not directory.is_dir():
            continue
        for root, dirs, files in os.walk(directory, followlinks=True):
            dirs[:] = [d for d in dirs if d != ".git"]  # folder_paths.recursive_search
            for file in files:
                if Path(file).suffix.lower() in extensions:
                    names.add(Path(root, file).relative_to(directory).as_posix())
    return sorted(names)
