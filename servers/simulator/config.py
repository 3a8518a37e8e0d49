"""Settings of one simulated ComfyUI server.

Everything that makes one simulated server differ from another lives here, so a
heterogeneous fleet is a list of `SimulatorConfig`s: model files (for
model-aware routing), a speed factor, node durations and a failure rate.
"""

from __future__ import annotations

import pathlib
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from servers.simulator import model_paths

# Folder names GET /models answered on the recorded server, in its order.
MODEL_FOLDERS: tuple[str, ...] = (
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
    "custom_nodes",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
)


def default_models() -> dict[str, list[str]]:
    """A small plausible model set so KSampler workflows validate out of the box."""
    return {
        "checkpoints": ["v1-5-pruned-emaonly.safetensors", "sd_xl_base_1.0.safetensors"],
        "vae": ["vae-ft-mse-840000-ema-pruned.safetensors"],
        "loras": [],
    }


def default_node_seconds() -> dict[str, float]:
    """Simulated work per node (KSampler: per step), before `time_scale`.

    Image nodes do real Pillow work and need no extra delay; the model nodes
    stand in for GPU work, so they take a little time to make queues visible.
    """
    return {
        "CheckpointLoaderSimple": 0.05,
        "CLIPTextEncode": 0.01,
        "KSampler": 0.02,
        "VAEDecode": 0.02,
    }


@dataclass
class SimulatorConfig:
    # Multiplies every simulated duration (SlowProgress.seconds_per_step,
    # node_seconds). Tests use 0.1; 1.0 matches the recorded timings roughly.
    time_scale: float = 1.0
    # Model file names per folder ("checkpoints", "vae", ...). Folders not
    # listed are empty, as on the recorded peer.
    models: dict[str, list[str]] = field(default_factory=default_models)
    # Directories searched per folder, as ComfyUI's models/ and an
    # --extra-model-paths-config add them: their model files join `models`,
    # rescanned on every request, so a file copied in shows up at once.
    model_dirs: dict[str, list[pathlib.Path]] = field(default_factory=dict)
    node_seconds: dict[str, float] = field(default_factory=default_node_seconds)
    # Probability that a prompt fails at its first executed node with a
    # RuntimeError, to exercise retry paths. 0 means never.
    failure_rate: float = 0.0
    # Seed for the failure-rate and PreviewImage-name random generators.
    seed: int | None = None
    # A GPU of this many bytes of VRAM, all free (an idle GPU's figure does not move);
    # None: this machine's RAM, as ComfyUI reports a CPU device (it moves with the
    # machine's use, on every simulated server of the machine at once).
    vram: int | None = None
    # Awaited (with the executing prompt's client id) at the end of every
    # simulated stretch of work, before its result is reported. None runs freely;
    # the conformance replay holds the work there until it has done what the
    # recording did before the next message, so a busy machine cannot reorder them.
    pace: Callable[[str | None], Awaitable[None]] | None = field(
        default=None, repr=False, compare=False
    )

    def seconds(self, nominal: float) -> float:
        return max(0.0, nominal * self.time_scale)

    def model_list(self, folder: str) -> list[str]:
        folder = model_paths.canonical(folder)
        on_disk = model_paths.list_files(folder, self.model_dirs.get(folder, ()))
        return sorted({*self.models.get(folder, []), *on_disk})


@dataclass(frozen=True)
class DataDirs:
    """ComfyUI's input/, output/ and temp/ under one data directory."""

    root: pathlib.Path

    @property
    def input(self) -> pathlib.Path:
        return self.root / "input"

    @property
    def output(self) -> pathlib.Path:
        return self.root / "output"

    @property
    def temp(self) -> pathlib.Path:
        return self.root / "temp"

    def by_type(self, folder_type: str) -> pathlib.Path | None:
        return {"input": self.input, "output": self.output, "temp": self.temp}.get(folder_type)

    def prepare(self) -> None:
        """Create the folders; wipe temp/ as ComfyUI does at start and exit."""
        self.wipe_temp()
        for folder in (self.input, self.output, self.temp):
            folder.mkdir(parents=True, exist_ok=True)

    def wipe_temp(self) -> None:
        shutil.rmtree(self.temp, ignore_errors=True)
