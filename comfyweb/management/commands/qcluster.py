"""`qcluster` that a SIGTERM to its whole process group stops cleanly (django-q2's, plus that).

django-q2's sentinel restores the default SIGTERM action, so a TERM sent to the
whole group (systemd's default KillMode=control-group, `kill -TERM -<pgid>`, a
container runtime stopping its init) kills the sentinel while the leader is
telling it to stop, and the leader then waits forever for the dead sentinel to
acknowledge (multiprocessing's Condition.notify) until something sends SIGKILL.

Here the sentinel, and the pusher, workers and monitor it forks, ignore SIGTERM:
only the leader acts on it, and the cluster stops as it does on Ctrl-C (whose
SIGINT django-q2 already ignores below the leader) — the pusher first, then each
worker after the job it is running, then the monitor. The price: a worker stuck
past its job timeout in code that ignores SIGALRM is replaced but not killed by
the sentinel; the service manager's final SIGKILL still ends it.
"""

from __future__ import annotations

import signal

from django_q import cluster
from django_q.management.commands import qcluster

from comfyweb.signals import cluster_started


class GroupSafeSentinel(cluster.Sentinel):
    def start(self) -> None:
        # Sentinel.__init__ has just set SIGTERM to SIG_DFL; what it forks from
        # here on inherits this.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        super().start()


class Command(qcluster.Command):
    help = "Starts the worker cluster (django-q2); SIGTERM to its process group stops it cleanly."

    def handle(self, *args, **options) -> None:
        # Cluster.start forks the sentinel by this module-level name.
        cluster.Sentinel = GroupSafeSentinel
        super().handle(*args, **options)
        if not options.get("run_once"):
            cluster_started.send_robust(sender=self.__class__)
