"""Real image work with Pillow, and ComfyUI's rules for naming saved files.

An IMAGE value is a batch: a list of RGB `PIL.Image`s. Output files are real
PNGs with ComfyUI's text chunks (`prompt`, plus one per `extra_pnginfo` key).
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import random
from typing import Any

from PIL import Image, ImageFilter, ImageOps
from PIL.PngImagePlugin import PngInfo

Batch = list[Image.Image]

_RESAMPLING = {
    "nearest-exact": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "area": Image.Resampling.BOX,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "bislerp": Image.Resampling.BICUBIC,
}
# PreviewImage's alphabet, typo included ("stupvxyz"), as in ComfyUI's nodes.py.
_TEMP_ALPHABET = "abcdefghijklmnopqrstupvxyz"


def empty(width: int, height: int, batch_size: int, color: int) -> Batch:
    rgb = ((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF)
    return [Image.new("RGB", (width, height), rgb) for _ in range(batch_size)]


def invert(batch: Batch) -> Batch:
    return [ImageOps.invert(image) for image in batch]


def blur(batch: Batch, radius: int, sigma: float) -> Batch:
    # ComfyUI convolves a (2r+1) Gaussian kernel of `sigma`; Pillow's Gaussian
    # blur takes the standard deviation, which is what decides the look.
    del radius
    return [image.filter(ImageFilter.GaussianBlur(sigma)) for image in batch]


def scale(batch: Batch, method: str, width: int, height: int, crop: str) -> Batch:
    out = []
    for image in batch:
        w, h = width, height
        if w == 0 and h == 0:
            out.append(image.copy())
            continue
        if w == 0:
            w = max(1, round(image.width * h / image.height))
        elif h == 0:
            h = max(1, round(image.height * w / image.width))
        if crop == "center":
            # Crop to the target aspect ratio around the centre, then resize.
            out.append(ImageOps.fit(image, (w, h), method=_RESAMPLING[method]))
        else:
            out.append(image.resize((w, h), _RESAMPLING[method]))
    return out


def synthetic(width: int, height: int, seed: int, batch_index: int = 0) -> Image.Image:
    """A deterministic picture for a seed: what KSampler + VAEDecode "generate"."""
    rng = random.Random(seed * 7919 + batch_index)  # noqa: S311 - a picture, not a secret
    small = Image.frombytes("RGB", (8, 8), rng.randbytes(8 * 8 * 3))
    return small.resize((width, height), Image.Resampling.BICUBIC)


def load(path: pathlib.Path) -> tuple[Batch, Batch]:
    """LoadImage: (RGB image, mask from the alpha channel, 1 where transparent)."""
    with Image.open(path) as opened:
        opened.load()
        image = ImageOps.exif_transpose(opened) or opened
        if "A" in image.getbands():
            mask = ImageOps.invert(image.getchannel("A"))
        else:
            mask = Image.new("L", image.size, 0)
        return [image.convert("RGB")], [mask]


def encode_png(
    image: Image.Image, *, text: dict[str, Any] | None = None, compress_level: int = 4
) -> bytes:
    info = None
    if text:
        info = PngInfo()
        for key, value in text.items():
            info.add_text(key, json.dumps(value))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=compress_level)
    return buffer.getvalue()


def preview_png(image: Image.Image, max_size: int = 512) -> bytes:
    """The preview a ProgressBar sends: downscaled PNG, fast compression."""
    thumb = image.copy()
    thumb.thumbnail((max_size, max_size))
    return encode_png(thumb, compress_level=1)


def next_save_path(output_dir: pathlib.Path, prefix: str) -> tuple[pathlib.Path, str, int, str]:
    """ComfyUI's get_save_image_path: (folder, base name, next counter, subfolder).

    The counter continues from the highest existing `<name>_NNNNN_` file, so it
    survives restarts. A `/` in the prefix becomes a subfolder.
    """
    normalized = os.path.normpath(prefix)
    subfolder = os.path.dirname(normalized)
    name = os.path.basename(normalized)
    folder = (output_dir / subfolder).resolve()
    root = output_dir.resolve()
    if os.path.commonpath((root, folder)) != str(root):
        raise ValueError(
            "**** ERROR: Saving image outside the output folder is not allowed."
            f"\n full_output_folder: {folder}\n         output_dir: {root}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    counter = 0
    for existing in os.listdir(folder):
        head = existing[: len(name) + 1]
        if head[:-1].lower() != name.lower() or head[-1:] != "_":
            continue
        try:
            counter = max(counter, int(existing[len(name) + 1 :].split("_")[0]))
        except ValueError:
            continue
    return folder, name, counter + 1, subfolder


def temp_prefix(rng: random.Random) -> str:
    return "ComfyUI_temp_" + "".join(rng.choice(_TEMP_ALPHABET) for _ in range(5))


def save_batch(
    batch: Batch,
    directory: pathlib.Path,
    prefix: str,
    folder_type: str,
    *,
    text: dict[str, Any] | None,
    compress_level: int,
) -> list[dict[str, str]]:
    """Write each image as `<name>_<counter:05d>_.png`; return the UI entries."""
    folder, name, counter, subfolder = next_save_path(directory, prefix)
    results = []
    for index, image in enumerate(batch):
        filename = f"{name.replace('%batch_num%', str(index))}_{counter:05}_.png"
        data = encode_png(image, text=text, compress_level=compress_level)
        (folder / filename).write_bytes(data)
        results.append({"filename": filename, "subfolder": subfolder, "type": folder_type})
        counter += 1
    return results


def tensor_repr(batch: Batch) -> str:
    """An IMAGE in execution_error.current_inputs: ComfyUI shows the tensor's
    str(), abbreviated like torch does; the first pixel stands for the rest."""
    if not batch:
        return "tensor([])"
    pixel = batch[0].convert("RGB").getpixel((0, 0))
    row = "[" + ", ".join(f"{channel / 255:.4f}" for channel in pixel) + "]"
    return f"tensor([[[[{row},\n          ...,\n          {row}]]]])"
