"""`python manage.py launcher`: own the local ComfyUI instances until SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from servers.local.launcher import Launcher, LauncherConfig


class Command(BaseCommand):
    help = "Start, stop, restart and watch the local ComfyUI instances; adopt running ones."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--tick",
            type=float,
            default=LauncherConfig.tick,
            help="seconds between looks at the instances (a request wakes it sooner)",
        )
        parser.add_argument(
            "--leave-running",
            action="store_true",
            help="on SIGTERM leave the instances running (the next launcher adopts them); "
            "by default they are stopped with ComfyWeb",
        )

    def handle(self, *args: Any, tick: float, leave_running: bool, **options: Any) -> None:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a probe per starting instance
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, stop)
        launcher = Launcher(LauncherConfig.from_settings(tick=tick))
        self.stdout.write(f"launcher running, tick {tick:g}s; Ctrl-C stops it")
        self.stdout.flush()
        launcher.run(lambda: stopping, leave_running=leave_running)
        self.stdout.write("launcher stopped")
