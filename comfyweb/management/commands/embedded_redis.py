from __future__ import annotations

import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from comfyweb import embedded_redis


class Command(BaseCommand):
    help = "Run the embedded Redis in the foreground (only when REDIS_URL is unset)."

    def handle(self, *args, **options):
        if not settings.EMBEDDED_REDIS:
            raise CommandError("REDIS_URL is set: ComfyWeb uses that Redis, not an embedded one")
        socket_path = settings.EMBEDDED_REDIS_SOCKET
        if embedded_redis.is_answering(socket_path):
            raise CommandError(f"an embedded Redis already answers on {socket_path}")
        socket_path.unlink(missing_ok=True)
        self.stdout.write(f"embedded Redis on unix://{socket_path}")
        argv = embedded_redis.command(socket_path)
        os.execv(argv[0], argv)  # noqa: S606 - replace this process: signals reach redis directly
