"""How `/healthz` logs an answer that is not ok: warming up is news, not an error.

A web process that starts beside its worker and monitor (as `serve` starts them)
answers 503 until their first heartbeats arrive, and Django logs every 5xx as an
ERROR ("Service Unavailable: /healthz"): each start-up printed errors that were
none. Until this process has seen every component healthy once, within
WARM_UP_SECONDS of its first health check, a 503 is logged at INFO as warming up;
after that it is an ERROR naming the components that fail. Either way the line is
ours, with those names, so Django's generic one is skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.http import HttpResponse

from comfyweb.health import HealthReport

logger = logging.getLogger(__name__)

# Generous: on a loaded two-core machine the worker and monitor may take a minute
# to write their first heartbeats.
WARM_UP_SECONDS = 120.0


class WarmUp:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started: float | None = None
        self.seen_ok = False

    def warming_up(self) -> bool:
        if self.started is None:
            self.started = self.clock()
        return not self.seen_ok and self.clock() - self.started < WARM_UP_SECONDS

    def record(self, report: HealthReport, response: HttpResponse) -> None:
        warming_up = self.warming_up()
        if report.ok:
            self.seen_ok = True
            return
        failing = [c.name for c in report.components if not c.ok]
        level = logging.INFO if warming_up else logging.ERROR
        state = "warming up, waiting for" if warming_up else "degraded:"
        logger.log(
            level,
            "healthz %s: %s %s",
            response.status_code,
            state,
            ", ".join(failing),
            extra={"status_code": response.status_code, "failing": failing},
        )
        # Django's log_response skips a response marked as logged already.
        response._has_been_logged = True


warm_up = WarmUp()
