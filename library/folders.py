"""ComfyUI's model folders: the one list ComfyWeb keeps.

The library is laid out with these names (`<COMFYWEB_MODELS_DIR>/<folder>/`),
downloads may go into any of them (`library.validation`), and every local
instance's extra-model-paths file points each of them at the library
(`servers.local.modelpaths`), so a file in any folder a download may use is one
ComfyUI finds.
"""

from __future__ import annotations

# ComfyUI's own (folder_paths.py: folder_names_and_paths), in its order, without
# `custom_nodes`, which holds code, not models.
COMFYUI_FOLDERS: tuple[str, ...] = (
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
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

# The older names of text_encoders and diffusion_models. ComfyUI maps them itself
# (map_legacy), also in an extra-model-paths file, and many guides still say them.
LEGACY_FOLDERS: tuple[str, ...] = ("clip", "unet")

# Folders that popular custom nodes register (ComfyUI_IPAdapter_plus, InstantID,
# PuLID, AnimateDiff-Evolved, facerestore, Impact Pack's SAM). ComfyUI adds a name
# it does not know from the extra-model-paths file, and the node finds it there.
CUSTOM_NODE_FOLDERS: tuple[str, ...] = (
    "ipadapter",
    "instantid",
    "pulid",
    "animatediff_models",
    "animatediff_motion_lora",
    "facerestore_models",
    "sams",
)

FOLDERS: tuple[str, ...] = COMFYUI_FOLDERS + LEGACY_FOLDERS + CUSTOM_NODE_FOLDERS
