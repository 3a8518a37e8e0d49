"""The extra-model-paths file every local instance is started with.

ComfyUI reads `--extra-model-paths-config FILE`: YAML groups of a `base_path` and
`folder: subdirectory` lines, added to the model folders it searches (its own
`models/` stays first). Ours points every folder of the library's one list
(`library.folders.FOLDERS`) at the models library, `settings.COMFYWEB_MODELS_DIR`,
so whatever a download may put there, ComfyUI finds.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings

from library.folders import FOLDERS

GROUP = "comfyweb_library"


def render(models_dir: Path) -> str:
    # A JSON string is a valid YAML double-quoted scalar: any path stays one value.
    lines = [f"{GROUP}:", f"    base_path: {json.dumps(str(models_dir))}"]
    lines += [f"    {folder}: {folder}" for folder in FOLDERS]
    return "\n".join(lines) + "\n"


def write(path: Path, models_dir: Path | None = None) -> Path:
    """Write the file (replacing it whole, so a reader never sees half of it)."""
    models_dir = Path(models_dir or settings.COMFYWEB_MODELS_DIR).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(render(models_dir), encoding="utf-8")
    partial.replace(path)
    return path
