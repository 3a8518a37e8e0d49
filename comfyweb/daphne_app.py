"""daphne as an installed app (its ASGI `runserver`), without Twisted in every process.

daphne's own AppConfig imports `daphne.server` (Twisted, autobahn, pyOpenSSL:
~24 MB of memory) so that its asyncio reactor is installed before anything else
imports `twisted.internet.reactor`. Every process loads the installed apps, but
only the web process needs Twisted: `python -m daphne` imports the server before
it loads ComfyWeb, the `runserver` command module imports it too, and no
ComfyWeb code imports Twisted. The worker, the monitor, the launcher and `serve`
itself are the lighter for it (issue 15, goal 7).
"""

from __future__ import annotations

from django.apps import AppConfig


class DaphneRunserverConfig(AppConfig):
    name = "daphne"
    label = "daphne"
    verbose_name = "Daphne"
