"""`python manage.py comfyui_sim --count 3`: simulated ComfyUI servers.

Needs no database: the simulator keeps everything in memory and its data dir.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from servers.simulator.runner import add_arguments, serve


class Command(BaseCommand):
    help = "Start N simulated ComfyUI servers on consecutive ports until Ctrl-C/SIGTERM."
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        namespace = argparse.Namespace(**options)
        try:
            asyncio.run(serve(namespace, out=self.stdout))
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        except OSError as exc:
            raise CommandError(f"cannot listen: {exc}") from exc
