"""`qcluster`: django-q2's worker cluster, run with this process as its sentinel.

django-q2's `qcluster` is a leader process that only waits for a signal, a
sentinel it forks, and what the sentinel forks: the pusher (broker → task
queue), the workers and the monitor (results). Here this process is the
sentinel (issue 15, goal 7: one process, and its ~100 MB of resident pages,
fewer), and it fixes django-q2's stop on a group-wide SIGTERM:

django-q2's sentinel restores the default SIGTERM action, so a TERM sent to the
whole group (systemd's default KillMode=control-group, `kill -TERM -<pgid>`, a
container runtime stopping its init) killed the sentinel while the leader was
telling it to stop, and the leader then waited forever for the dead sentinel to
acknowledge (multiprocessing's Condition.notify) until something sent SIGKILL.

Here SIGINT and SIGTERM are blocked before anything is forked, so the pusher,
the workers and the monitor never act on them, and a thread of this process
waits for them (`sigwait`) and sets the stop event the sentinel's guard loop
watches: the cluster stops as django-q2's does on Ctrl-C — the pusher first,
then each worker after the job it is running, then the monitor — whether the
signal went to this process or to its whole group. The price: a worker stuck
past its job timeout in code that ignores SIGALRM is replaced but not killed by
the sentinel; the service manager's final SIGKILL still ends it.

Memory: the cluster's processes are forked from this one and share its pages
until either side writes them. So before forking it imports what they import
anyway (every app's `jobs` module, the URLconf of the pages they render), once
for all instead of once in each, and freezes the garbage collector's view of
what exists by then (`gc.freeze`): a collection in a child no longer walks, and
so copies, every page the parent filled.

`--run-once` is django-q2's own (start, then stop at once).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import signal
import threading
import uuid
from collections.abc import Callable

from django.conf import settings
from django.urls import get_resolver
from django.utils.module_loading import autodiscover_modules
from django_q import cluster
from django_q.humanhash import humanize
from django_q.management.commands import qcluster

from comfyweb.signals import cluster_started

logger = logging.getLogger("django-q")

STOPPING = {signal.SIGINT, signal.SIGTERM}


class Command(qcluster.Command):
    help = "Starts the worker cluster (django-q2); SIGTERM to its process group stops it cleanly."

    def handle(self, *args, **options) -> None:
        if options.get("run_once"):
            super().handle(*args, **options)
            return
        if options.get("cluster_name"):  # as django-q2's: the broker's queue name
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        settings.SECRET_KEY  # noqa: B018 - as django-q2's: signing needs it, fail now
        share_before_fork()
        run_cluster(on_running=lambda: cluster_started.send_robust(sender=self.__class__))


def share_before_fork() -> None:
    """Import what every forked process needs, then keep the collector off it."""
    autodiscover_modules("jobs")
    get_resolver().url_patterns  # noqa: B018 - imports the URLconf and every view
    gc.collect()
    gc.freeze()


def run_cluster(on_running: Callable[[], None]) -> None:
    """The sentinel's work in this process, until SIGINT or SIGTERM (module docstring)."""
    # First, while this is the only thread: every thread and process made from here
    # on has them blocked too, and only `sigwait` below takes them.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOPPING)
    stop, started = multiprocessing.Event(), multiprocessing.Event()
    threading.Thread(
        target=_stop_on_signal, args=(stop,), name="qcluster signals", daemon=True
    ).start()
    cluster_id = uuid.uuid4()
    name = humanize(cluster_id.hex)
    logger.info("Q Cluster %s starting.", name)
    sentinel = cluster.Sentinel(stop, started, cluster_id, start=False)
    sentinel.parent_pid = os.getpid()  # the cluster's pid in its status
    sentinel.broker.ping()
    sentinel.spawn_cluster()
    on_running()
    # Until `stop` is set; then it stops the pusher, the workers and the monitor.
    sentinel.guard()
    logger.info("Q Cluster %s has stopped.", name)


def _stop_on_signal(stop) -> None:
    signum = signal.sigwait(STOPPING)
    logger.info("qcluster got %s: stopping", signal.Signals(signum).name)
    stop.set()
