"""Which servers this monitor watches (issue 17): each enabled server is leased by
exactly one monitor at a time (`servers.models.ServerLease`).

Every tick a monitor, with conditional UPDATEs and no lock held (so any number of
monitors agree, on SQLite and PostgreSQL alike):

1. renews what it holds (`WHERE monitor_id = me`): a lease another monitor took
   while this one stalled stays theirs. (The monitor's keep-alive also renews,
   `renew`, on a thread of its own every tick, so that a long tick does not let
   them lapse);
2. takes servers nobody holds (a lease that expired or was given back, a new
   server) up to its fair share: enabled servers ÷ monitors alive, rounded up. A
   server without a holder for longer than a lease is taken whatever the share (a
   few a tick), so none stays unwatched while a dead monitor's heartbeat lingers;
3. gives back what it holds above its share while a monitor alive holds less than
   its own (one that joined), `give_back_per_tick` at a time and those with the
   fewest prompts in flight first: a joining monitor takes its share without the
   whole fleet changing hands at once. (Not for a while after it had to take
   servers nobody took in time: a monitor that beats but takes nothing would only
   see them orphaned again.)

Of monitors taking one server at once, the `WHERE expires_at <= now` of the UPDATE
lets one win, and each learns what it holds from the round's token.

A monitor that stops gives its leases back at once; one that dies loses them
`lease_seconds` after it last renewed. Taking over then costs at most a lease, one
tick of the monitor that takes it, and the reconnect (≤ 15 s with the defaults:
8 s leases, 2 s ticks). Monitors compare `expires_at` with their own clocks: run
them with synchronised clocks (NTP), as PostgreSQL's host is.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from servers.models import Server, ServerLease, ServerState

# After taking servers nobody took in time, a monitor gives none back for this many
# lease periods.
KEEP_LEASES = 10


def fair_share(servers: int, monitors: int) -> int:
    return math.ceil(servers / max(1, monitors))


class Leases:
    """One monitor's leases. `step` is sync (ORM): call it through
    `database_sync_to_async`."""

    def __init__(self, monitor_id: str, lease_seconds: float | None = None) -> None:
        self.monitor_id = monitor_id
        self.lease_seconds = float(lease_seconds or settings.COMFYWEB_MONITOR_LEASE_SECONDS)
        self.held: frozenset[int] = frozenset()
        self._keep_until: datetime | None = None  # gives nothing back until then

    def step(
        self, peers: Mapping[str, int | None] | None, now: datetime | None = None
    ) -> frozenset[int]:
        """Renew, take, give back; the servers this monitor holds now.

        `peers`: monitor id → leases held, of every monitor alive (their
        heartbeats), or None when that is unknown (Redis away): then the monitors
        holding a lease count as alive, and nothing is given back."""
        now = now or timezone.now()
        until = now + timedelta(seconds=self.lease_seconds)
        token = uuid.uuid4().hex
        enabled = set(Server.objects.enabled().values_list("pk", flat=True))
        rows = {
            server_id: (monitor_id, expires_at)
            for server_id, monitor_id, expires_at in ServerLease.objects.values_list(
                "server_id", "monitor_id", "expires_at"
            )
        }
        new = enabled - rows.keys()
        if new:
            # Free from the start, but not orphaned: taken by fair shares.
            ServerLease.objects.bulk_create(
                [ServerLease(server_id=pk, expires_at=now) for pk in new], ignore_conflicts=True
            )
            rows |= dict.fromkeys(new, ("", now))
        mine = {pk for pk, (monitor_id, _) in rows.items() if monitor_id == self.monitor_id}
        self._renew(mine - enabled, until, token, now)

        alive = self._alive(peers, rows, now)
        share = fair_share(len(enabled), len(alive))
        free = [pk for pk in enabled if pk not in mine and (not rows[pk][0] or rows[pk][1] <= now)]
        orphaned = {pk for pk in free if rows[pk][1] < now - timedelta(seconds=self.lease_seconds)}
        random.shuffle(free)  # monitors taking at once mostly ask for different servers
        free.sort(key=lambda pk: pk not in orphaned)  # the longest unwatched first
        wanted = set(free[: max(0, share - len(mine & enabled))])
        # Beyond the share only orphans, and a few a tick: a monitor that finds the
        # whole fleet orphaned (all the others starved at once) must not take it all
        # in one tick and then be too busy starting watchers to renew in time.
        beyond = [pk for pk in free if pk in orphaned and pk not in wanted]
        wanted |= set(beyond[: self.give_back_per_tick(share)])
        if wanted:
            ServerLease.objects.filter(server_id__in=wanted, expires_at__lte=now).update(
                monitor_id=self.monitor_id, expires_at=until, acquired_at=now, token=token
            )

        held = set(
            ServerLease.objects.filter(monitor_id=self.monitor_id, token=token).values_list(
                "server_id", flat=True
            )
        )
        if orphaned & held:
            # A monitor alive by its heartbeat left servers untaken (it hangs, or
            # cannot reach the database): giving servers back to it would only see
            # them orphaned again.
            self._keep_until = now + timedelta(seconds=KEEP_LEASES * self.lease_seconds)
        giving = peers is not None and (self._keep_until is None or now >= self._keep_until)
        if giving and len(held) > share and _someone_short(peers, share):
            given = self._give_back(held, min(self.give_back_per_tick(share), len(held) - share))
            held -= given
        self.held = frozenset(held)
        return self.held

    def renew(self) -> int:
        """Sync (ORM): extend every lease this monitor holds, and nothing else: the
        monitor's keep-alive runs it on a thread of its own, beside `step`, so the
        round token `step` reads back by is left alone."""
        until = timezone.now() + timedelta(seconds=self.lease_seconds)
        return ServerLease.objects.filter(monitor_id=self.monitor_id).update(expires_at=until)

    def release(self) -> None:
        """Sync: give every lease back, for other monitors to take at their next tick."""
        ServerLease.objects.filter(monitor_id=self.monitor_id).update(
            monitor_id="", expires_at=timezone.now(), token=""
        )
        self.held = frozenset()

    @staticmethod
    def give_back_per_tick(share: int) -> int:
        return max(4, math.ceil(share / 8))

    def _renew(self, disabled: set[int], until, token, now) -> None:
        ours = ServerLease.objects.filter(monitor_id=self.monitor_id)
        if disabled:  # no longer watched: their leases go back
            ours.filter(server_id__in=disabled).update(monitor_id="", expires_at=now, token="")
        ours.exclude(server_id__in=disabled).update(expires_at=until, token=token)

    def _alive(self, peers, rows, now) -> set[str]:
        if peers is not None:
            return {*peers, self.monitor_id}
        holders = {monitor for monitor, expires in rows.values() if monitor and expires > now}
        return holders | {self.monitor_id}

    def _give_back(self, held: set[int], count: int) -> set[int]:
        # Those with the fewest prompts on them first: the monitor that takes one
        # reconciles what it missed of them.
        order = (
            ServerState.objects.filter(server_id__in=held)
            .order_by("inflight", "server_id")
            .values_list("server_id", flat=True)
        )
        chosen = set(order[:count])
        chosen |= set(sorted(held - chosen)[: count - len(chosen)])  # servers without a state
        ServerLease.objects.filter(server_id__in=chosen, monitor_id=self.monitor_id).update(
            monitor_id="", expires_at=timezone.now(), token=""
        )
        return chosen


def _someone_short(peers: Mapping[str, int | None], share: int) -> bool:
    """Whether a monitor alive holds fewer than its share (one that joined: its
    heartbeat says so), so that what others hold above theirs should move to it."""
    return any(leases is not None and leases < share for leases in peers.values())
