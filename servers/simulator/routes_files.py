"""File endpoints: GET /view and POST /upload/image, with ComfyUI's rules."""

from __future__ import annotations

import asyncio
import hashlib
import io
import mimetypes
import os
import pathlib
from typing import TYPE_CHECKING

from aiohttp import web
from PIL import Image

from servers.simulator.config import DataDirs
from servers.simulator.keys import SIM_KEY

if TYPE_CHECKING:
    from servers.simulator.server import SimulatedComfyUI

routes = web.RouteTableDef()

_DOWNLOAD_ONLY = {"text/html", "text/html-sandboxed", "application/xhtml+xml", "text/javascript"}


def _sim(request: web.Request) -> SimulatedComfyUI:
    return request.app[SIM_KEY]


def _annotated(name: str) -> tuple[str, str | None]:
    for folder_type in ("output", "input", "temp"):
        suffix = f" [{folder_type}]"
        if name.endswith(suffix):
            return name[: -len(suffix)], folder_type
    return name, None


@routes.get("/view")
async def view(request: web.Request) -> web.StreamResponse:
    sim = _sim(request)
    query = dict(request.rel_url.query)
    status, path = await asyncio.to_thread(_locate, sim.dirs, query)
    if path is None:
        return web.Response(status=status)
    if "preview" in query or query.get("channel", "rgba") != "rgba":
        return await asyncio.to_thread(
            _converted, path, query.get("preview"), query.get("channel", "rgba")
        )
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if content_type in _DOWNLOAD_ONLY:
        content_type = "application/octet-stream"
    headers = {"Content-Disposition": f'filename="{path.name}"', "Content-Type": content_type}
    return web.FileResponse(path, headers=headers)


def _locate(dirs: DataDirs, query: dict[str, str]) -> tuple[int, pathlib.Path | None]:
    """(error status, None) or (200, file) for a /view query, by ComfyUI's checks."""
    if "filename" not in query:
        return 404, None
    filename, folder_type = _annotated(query["filename"])
    if not filename:
        return 400, None
    if filename[0] == "/" or ".." in filename:
        return 400, None
    folder = dirs.by_type(folder_type or query.get("type", "output"))
    if folder is None:
        return 400, None
    root = str(folder.resolve())
    if "subfolder" in query:
        full = os.path.abspath(os.path.join(root, query["subfolder"]))
        if os.path.commonpath((full, root)) != root:
            return 403, None
        root = full
    path = pathlib.Path(root) / os.path.basename(filename)
    if not path.is_file():
        return 404, None
    return 200, path


def _converted(path: pathlib.Path, preview: str | None, channel: str) -> web.Response:
    """`preview=webp;90` re-encodes; `channel=rgb|a` strips or keeps alpha."""
    with Image.open(path) as image:
        image.load()
        if channel == "rgb":
            image = image.convert("RGB")
        elif channel == "a":
            alpha = image.convert("RGBA").getchannel("A")
            image = Image.merge("RGBA", (alpha, alpha, alpha, alpha))
        buffer = io.BytesIO()
        if preview:
            image_format, _, quality = preview.partition(";")
            image_format = (
                image_format.lower() if image_format.lower() in ("webp", "jpeg") else "webp"
            )
            if image_format == "jpeg":
                image = image.convert("RGB")
            image.save(buffer, format=image_format, quality=int(quality or 90))
            content_type = f"image/{image_format}"
        else:
            image.save(buffer, format="PNG")
            content_type = "image/png"
    return web.Response(
        body=buffer.getvalue(),
        content_type=content_type,
        headers={"Content-Disposition": f'filename="{path.name}"'},
    )


def _same_bytes(path: pathlib.Path, data: bytes) -> bool:
    return hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()


@routes.post("/upload/image")
async def upload_image(request: web.Request) -> web.Response:
    sim = _sim(request)
    post = await request.post()
    image = post.get("image")
    folder_type = str(post.get("type") or "input")
    folder = sim.dirs.by_type(folder_type)
    if folder is None or not isinstance(image, web.FileField) or not image.filename:
        return web.Response(status=400)
    subfolder = str(post.get("subfolder", ""))
    overwrite = str(post.get("overwrite", "")) in ("true", "1")
    data = image.file.read()
    name = await asyncio.to_thread(_store, folder, subfolder, image.filename, data, overwrite)
    if name is None:
        return web.Response(status=400)
    return web.json_response({"name": name, "subfolder": subfolder, "type": folder_type})


def _store(
    folder: pathlib.Path, subfolder: str, filename: str, data: bytes, overwrite: bool
) -> str | None:
    """Write an upload by ComfyUI's naming rules; the stored name, or None if unsafe."""
    root = str(folder.resolve())
    target_folder = os.path.join(root, os.path.normpath(subfolder))
    target = os.path.abspath(os.path.join(target_folder, filename))
    if os.path.commonpath((root, target)) != root:
        return None
    os.makedirs(target_folder, exist_ok=True)
    if not overwrite:
        stem, ext = os.path.splitext(filename)
        counter = 1
        while os.path.exists(target):
            # Same name and identical bytes: ComfyUI keeps the existing file.
            if _same_bytes(pathlib.Path(target), data):
                return filename
            filename = f"{stem} ({counter}){ext}"
            target = os.path.join(target_folder, filename)
            counter += 1
    pathlib.Path(target).write_bytes(data)
    return filename
