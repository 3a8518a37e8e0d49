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

from servers.simulator.config import SimulatorConfig, default_models
from servers.simulator.server import SimulatedComfyUI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=1, help="number of servers (default 1)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--base-port",
        "--port",
        dest="base_port",
        type=int,
        default=8188,
        help="port of the first server; the others follow (0 = free ports)",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiplies simulated node durations (0.1 = ten times faster)",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="speed factor of the servers (2 = twice as fast); divides --time-scale",
    )
    parser.add_argument(
        "--models",
        default=None,
        help="comma-separated checkpoint file names (default: a small built-in list)",
    )
    parser.add_argument(
        "--failure-rate", type=float, default=0.0, help="probability that a prompt fails"
    )
    parser.add_argument(
        "--data-dir",
        type=pathlib.Path,
        default=None,
        help="directory for each server's input/output/temp (server-N/ below it)",
    )


def build_servers(options: argparse.Namespace, root: pathlib.Path) -> list[SimulatedComfyUI]:
    if options.count < 1:
        raise ValueError("--count must be at least 1")
    if options.speed <= 0:
        raise ValueError("--speed must be positive")
    servers = []
    for index in range(options.count):
        models = default_models()
        if options.models is not None:
            models["checkpoints"] = [m.strip() for m in options.models.split(",") if m.strip()]
        config = SimulatorConfig(
            time_scale=options.time_scale / options.speed,
            models=models,
            failure_rate=options.failure_rate,
        )
        port = options.base_port + index if options.base_port else 0
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
    return 0
