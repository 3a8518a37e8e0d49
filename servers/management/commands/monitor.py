"""`python manage.py monitor`: watch every enabled ComfyUI server until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from comfyweb.signals import monitor_started
from servers.monitor.heartbeat import MonitorIdInUse
from servers.monitor.monitor import DEFAULT_TICK, Monitor


async def run_until_signalled(monitor: Monitor) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await monitor.run(stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


class Command(BaseCommand):
    help = "Watch the ComfyUI fleet: health and load checks, event streams, heartbeat."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--tick",
            type=float,
            default=DEFAULT_TICK,
            help="seconds between looks at the server list, stats writes and heartbeats",
        )

    def handle(self, *args: Any, tick: float, **options: Any) -> None:
        # httpx logs every request at INFO: two per server per health interval
        # would drown the monitor's own (selection-relevant) lines.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        self.stdout.write(f"monitor running (pid in heartbeat), tick {tick:g}s; Ctrl-C stops it")
        monitor_started.send(sender=self.__class__)
        try:
            asyncio.run(run_until_signalled(Monitor(tick=tick)))
        except MonitorIdInUse as error:
            raise CommandError(str(error)) from error
        self.stdout.write("monitor stopped")
