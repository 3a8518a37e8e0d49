"""Run N simulated ComfyUI servers until SIGINT/SIGTERM.

Shared by `python -m servers.simulator` and `manage.py comfyui_sim`, so both
take the same options and print the same lines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import pathlib
import signal
import sys
import tempfile
from collections.abc import Sequence
from typing import TextIO

from servers.simulator import model_paths
from servers.simulator.config import (
    MODEL_FOLDERS,
    SimulatorConfig,
    default_models,
    default_node_seconds,
)
from servers.simulator.server import SimulatedComfyUI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--count",
        type=int,
        default=None,
        help="number of servers (default 1, or as many as --ports names)",
    )
    parser.add_argument(
        "--host",
        "--listen",
        dest="host",
        nargs="?",
        const="0.0.0.0",  # noqa: S104 - ComfyUI's bare --listen means every interface
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; a bare --listen, as ComfyUI: 0.0.0.0)",
    )
    parser.add_argument(
        "--base-port",
        "--port",
        dest="base_port",
        type=int,
        default=8188,
        help="port of the first server; the others follow (0 = free ports)",
    )
    parser.add_argument(
        "--ports",
        type=port_list,
        default=None,
        help="each server's port, e.g. 9000-9099 or 9000,9005,9100-9109 (instead of "
        "--base-port: a deployment restarts a process on the ports it first had)",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiplies simulated node durations (0.1 = ten times faster)",
    )
    parser.add_argument(
        "--speed",
        default="1",
        help="speed factor (2 = twice as fast; divides --time-scale); a comma-separated "
        "list gives each server its own, repeating the list (heterogeneous fleet)",
    )
    parser.add_argument(
        "--models",
        default=None,
        help="comma-separated checkpoint file names (default: a small built-in list); "
        "separate per-server lists with ';', repeated over the servers",
    )
    parser.add_argument(
        "--node-seconds",
        default="",
        help="simulated work per node class, e.g. KSampler=0.05,VAEDecode=0.1 "
        "(KSampler: per step), before time scaling",
    )
    parser.add_argument(
        "--failure-rate", type=float, default=0.0, help="probability that a prompt fails"
    )
    parser.add_argument(
        "--vram",
        type=float,
        default=None,
        metavar="GB",
        help="report a GPU with this much VRAM, all free, instead of this machine's RAM "
        "(which moves with the machine's use, on every server at once)",
    )
    parser.add_argument(
        "--models-dir",
        type=pathlib.Path,
        default=None,
        help="ComfyUI's own models/ directory (checkpoints/, loras/, ...): its model files "
        "are listed alongside the built-in ones",
    )
    parser.add_argument(
        "--extra-model-paths-config",
        type=pathlib.Path,
        action="append",
        default=[],
        help="a ComfyUI extra_model_paths.yaml whose folders are searched too (repeatable)",
    )
    parser.add_argument(
        "--data-dir",
        type=pathlib.Path,
        default=None,
        help="directory for each server's input/output/temp (server-N/ below it)",
    )


def port_list(text: str) -> list[int]:
    """`9000-9002,9010` -> [9000, 9001, 9002, 9010]: ranges inclusive, order kept."""
    ports: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, _, last = part.partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a port or range: {part!r}") from None
        if not 0 < low <= high < 65536:
            raise argparse.ArgumentTypeError(f"not a port range within 1-65535: {part!r}")
        ports += range(low, high + 1)
    if not ports or len(set(ports)) != len(ports):
        raise argparse.ArgumentTypeError("--ports names no port, or one port twice")
    return ports


def server_ports(options: argparse.Namespace) -> list[int]:
    """One port per server (0: a free one), from --ports or --base-port and --count."""
    if options.ports is not None:
        if options.count not in (None, len(options.ports)):
            raise ValueError(f"--count {options.count} but --ports names {len(options.ports)}")
        return options.ports
    count = 1 if options.count is None else options.count
    if count < 1:
        raise ValueError("--count must be at least 1")
    return [options.base_port + index if options.base_port else 0 for index in range(count)]


def _speeds(text: str) -> list[float]:
    try:
        speeds = [float(part) for part in str(text).split(",") if part.strip()]
    except ValueError as exc:
        raise ValueError(f"--speed: {exc}") from exc
    if not speeds or any(speed <= 0 for speed in speeds):
        raise ValueError("--speed must be positive")
    return speeds


def _node_seconds(text: str) -> dict[str, float]:
    seconds = default_node_seconds()
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        try:
            seconds[name.strip()] = float(value)
        except ValueError as exc:
            raise ValueError(f"--node-seconds: expected Class=seconds, got {part!r}") from exc
    return seconds


def _model_dirs(options: argparse.Namespace) -> dict[str, list[pathlib.Path]]:
    own = {}
    if options.models_dir is not None:
        own = model_paths.models_dir_folders(options.models_dir, MODEL_FOLDERS)
    try:
        extra = [model_paths.read_config(path) for path in options.extra_model_paths_config]
    except model_paths.ModelPathsError as exc:
        raise ValueError(f"--extra-model-paths-config: {exc}") from exc
    return model_paths.merge(own, *extra)


def build_servers(options: argparse.Namespace, root: pathlib.Path) -> list[SimulatedComfyUI]:
    ports = server_ports(options)
    if options.vram is not None and options.vram <= 0:
        raise ValueError("--vram must be positive")
    speeds = _speeds(options.speed)
    model_lists = None
    if options.models is not None:
        model_lists = [
            [name.strip() for name in group.split(",") if name.strip()]
            for group in options.models.split(";")
        ]
    model_dirs = _model_dirs(options)
    servers = []
    for index, port in enumerate(ports):
        models = default_models()
        if model_lists is not None:
            models["checkpoints"] = model_lists[index % len(model_lists)]
        config = SimulatorConfig(
            time_scale=options.time_scale / speeds[index % len(speeds)],
            models=models,
            model_dirs=model_dirs,
            node_seconds=_node_seconds(options.node_seconds),
            failure_rate=options.failure_rate,
            vram=None if options.vram is None else int(options.vram * 2**30),
        )
        servers.append(
            SimulatedComfyUI(
                options.host, port, data_dir=root / f"server-{index + 1}", config=config
            )
        )
    return servers


async def serve(options: argparse.Namespace, out: TextIO = sys.stdout) -> None:
    """Start the servers, print their URLs, wait for a signal, stop them."""
    with contextlib.ExitStack() as stack:
        root = options.data_dir
        if root is None:
            root = pathlib.Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="comfyui-sim-"))
            )
        servers = build_servers(options, root)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            for index, server in enumerate(servers, start=1):
                await server.start()
                _say(out, f"comfyui-sim {index} {server.base_url}")
            _say(out, "ready")
            await stop.wait()
        finally:
            for server in servers:
                await server.stop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        _say(out, "stopped")


def _say(out: TextIO, line: str) -> None:
    # One write per line: Django's OutputWrapper would double a print()'s "\n".
    out.write(line + "\n")
    out.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m servers.simulator", description="Run simulated ComfyUI servers."
    )
    add_arguments(parser)
    options = parser.parse_args(argv)
    try:
        asyncio.run(serve(options))
    except ValueError as exc:
        parser.error(str(exc))
    except OSError as exc:
        # Typically "address already in use": say so without a traceback.
        print(f"comfyui-sim: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0
