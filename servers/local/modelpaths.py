"""The extra-model-paths file every local instance is started with.

ComfyUI reads `--extra-model-paths-config FILE`: YAML groups of a `base_path` and
`folder: subdirectory` lines, added to the model folders it searches (its own
`models/` stays first). Ours points every model folder at the models library,
`settings.COMFYWEB_MODELS_DIR`, laid out with ComfyUI's own folder names.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings

# ComfyUI's model folders (folder_paths.py); `clip` and `unet` are its older names
# of text_encoders and diffusion_models, which it maps itself.
MODEL_FOLDERS: tuple[str, ...] = (
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "vae_approx",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "controlnet",
    "gligen",
    "upscale_models",
    "latent_upscale_models",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
)
GROUP = "comfyweb_library"


def render(models_dir: Path) -> str:
    # A JSON string is a valid YAML double-quoted scalar: any path stays one value.
    lines = [f"{GROUP}:", f"    base_path: {json.dumps(str(models_dir))}"]
    lines += [f"    {folder}: {folder}" for folder in MODEL_FOLDERS]
    return "\n".join(lines) + "\n"


def write(path: Path, models_dir: Path | None = None) -> Path:
    """Write the file (replacing it whole, so a reader never sees half of it)."""
    models_dir = Path(models_dir or settings.COMFYWEB_MODELS_DIR).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(render(models_dir), encoding="utf-8")
    partial.replace(path)
    return path
