"""The node implementations behind the catalogue.

Image nodes do real Pillow work (in a thread, like ComfyUI's worker thread, so
the server keeps answering); model nodes stand in for GPU work with scaled
sleeps and deterministic pictures. `SlowProgress` and `FailNode` behave as the
two test nodes installed on the recorded server (PROTOCOL.md intro).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from servers.simulator import frames, images
from servers.simulator.config import DataDirs, SimulatorConfig
from servers.simulator.hub import Hub
from servers.simulator.progress import ProgressRegistry


class Interrupted(Exception):
    """ComfyUI's InterruptProcessingException."""


class OutOfMemoryError(RuntimeError):
    """torch.OutOfMemoryError: ComfyUI reports it as exception_type "torch.OutOfMemoryError"."""


OutOfMemoryError.__module__ = "torch"
OUT_OF_MEMORY_MESSAGE = (
    "Allocation on device 0 would exceed allowed memory. (out of memory)\n"
    "Currently allocated     : 7.21 GiB\n"
    "Requested               : 1.50 GiB\n"
    "Device limit            : 8.00 GiB\n"
    "Free (according to CUDA): 0 bytes\n"
    "PyTorch limit (set by user-supplied memory fraction)\n"
    "                        : 17179869184.00 GiB"
)


@dataclass
class NodeResult:
    outputs: tuple[Any, ...]
    ui: dict[str, Any] | None = None


@dataclass
class NodeContext:
    node_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    dirs: DataDirs
    config: SimulatorConfig
    hub: Hub
    registry: ProgressRegistry
    client_id: str | None
    interrupted: Callable[[], bool]
    rng: random.Random = field(default_factory=random.Random)
    # This node object's own state, kept across prompts (see cache.NodeObjects).
    state: dict[str, Any] = field(default_factory=dict)

    def check_interrupt(self) -> None:
        if self.interrupted():
            raise Interrupted("Processing interrupted")

    async def sleep(self, nominal_seconds: float) -> None:
        """Work for `nominal_seconds` (scaled), noticing interrupts every 50 ms (scaled)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.seconds(nominal_seconds)
        poll = max(0.001, self.config.seconds(0.05))
        while (remaining := deadline - loop.time()) > 0:
            await asyncio.sleep(min(poll, remaining))
            self.check_interrupt()
        if self.config.pace is not None:
            await self.config.pace(self.client_id)
            self.check_interrupt()

    def progress(self, value: float, total: float, preview: images.Batch | None = None) -> None:
        """A ProgressBar update: raises Interrupted first if an interrupt is pending."""
        self.check_interrupt()
        encoded = ("PNG", images.preview_png(preview[0])) if preview else None
        self.registry.progress_bar(self.node_id, value, total, encoded)

    def text(self, text: str) -> None:
        self.hub.send_sync(frames.TEXT, frames.progress_text(self.node_id, text), self.client_id)

    def png_text(self) -> dict[str, Any]:
        text: dict[str, Any] = {"prompt": self.prompt}
        text.update(self.extra_data.get("extra_pnginfo") or {})
        return text


NodeFunction = Callable[[NodeContext, dict[str, Any]], Awaitable[NodeResult]]


async def _empty_image(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    batch = await asyncio.to_thread(
        images.empty, i["width"], i["height"], i["batch_size"], i["color"]
    )
    return NodeResult((batch,))


async def _load_image(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    name = str(i["image"]).removesuffix(" [input]")
    batch, mask = await asyncio.to_thread(images.load, ctx.dirs.input / name)
    return NodeResult((batch, mask))


async def _invert(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    return NodeResult((await asyncio.to_thread(images.invert, i["image"]),))


async def _blur(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    batch = await asyncio.to_thread(images.blur, i["image"], i["blur_radius"], i["sigma"])
    return NodeResult((batch,))


async def _scale(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    batch = await asyncio.to_thread(
        images.scale, i["image"], i["upscale_method"], i["width"], i["height"], i["crop"]
    )
    return NodeResult((batch,))


async def _save_image(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    results = await asyncio.to_thread(
        images.save_batch,
        i["images"],
        ctx.dirs.output,
        i.get("filename_prefix", "ComfyUI"),
        "output",
        text=ctx.png_text(),
        compress_level=4,
    )
    return NodeResult((), {"images": results})


async def _preview_image(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    results = await asyncio.to_thread(
        images.save_batch,
        i["images"],
        ctx.dirs.temp,
        ctx.state.setdefault("prefix", images.temp_prefix(ctx.rng)),
        "temp",
        text=ctx.png_text(),
        compress_level=1,
    )
    return NodeResult((), {"images": results})


async def _save_image_websocket(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    batch = i["images"]
    for step, image in enumerate(batch):
        ctx.progress(step, len(batch), [image])
    return NodeResult(())


async def _checkpoint_loader(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    await ctx.sleep(ctx.config.node_seconds.get("CheckpointLoaderSimple", 0.0))
    name = i["ckpt_name"]
    return NodeResult(({"model": name}, {"clip": name}, {"vae": name}))


async def _clip_text_encode(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    await ctx.sleep(ctx.config.node_seconds.get("CLIPTextEncode", 0.0))
    return NodeResult(({"text": i["text"], "clip": i["clip"]},))


async def _empty_latent(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    latent = {"width": i["width"], "height": i["height"], "batch_size": i["batch_size"]}
    return NodeResult((latent,))


async def _ksampler(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    steps = i["steps"]
    per_step = ctx.config.node_seconds.get("KSampler", 0.0)
    for step in range(1, steps + 1):
        await ctx.sleep(per_step)
        ctx.progress(step, steps)
    latent = dict(i["latent_image"], seed=i["seed"])
    return NodeResult((latent,))


async def _vae_decode(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    await ctx.sleep(ctx.config.node_seconds.get("VAEDecode", 0.0))
    latent = i["samples"]
    seed = int(latent.get("seed", 0))

    def decode() -> images.Batch:
        return [
            images.synthetic(latent["width"], latent["height"], seed, index)
            for index in range(latent["batch_size"])
        ]

    return NodeResult((await asyncio.to_thread(decode),))


async def _slow_progress(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    steps = i["steps"]
    for step in range(1, steps + 1):
        await ctx.sleep(i["seconds_per_step"])
        if i.get("send_text"):
            ctx.text(f"step {step}/{steps}")
        ctx.progress(step, steps, i["image"] if i.get("preview") else None)
    return NodeResult((i["image"],))


async def _fail(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    raise RuntimeError(i.get("message", "comfyweb test failure"))


NODES: dict[str, NodeFunction] = {
    "EmptyImage": _empty_image,
    "LoadImage": _load_image,
    "ImageInvert": _invert,
    "ImageBlur": _blur,
    "ImageScale": _scale,
    "SaveImage": _save_image,
    "PreviewImage": _preview_image,
    "SaveImageWebsocket": _save_image_websocket,
    "CheckpointLoaderSimple": _checkpoint_loader,
    "CLIPTextEncode": _clip_text_encode,
    "EmptyLatentImage": _empty_latent,
    "KSampler": _ksampler,
    "VAEDecode": _vae_decode,
    "SlowProgress": _slow_progress,
    "FailNode": _fail,
}
