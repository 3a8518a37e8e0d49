"""Prometheus metrics, read from PostgreSQL and Redis when scraped (issue 17, item 4).

Nothing here counts in process memory: every figure is read from the database and
Redis by one custom collector at scrape time, so any of N web processes answers
a scrape with the same numbers, and no process that dies takes its counts with it
(prometheus_client's multiprocess mode, per-process files that a registry
merges, is only needed for counters kept in memory: there are none).

Durations are *gauge histograms* of the recent rows (the tasks dispatched, or
finished, in the last `WINDOW`), not counters that only grow: a counter would
have to be kept somewhere across processes and restarts, and all that exists to
count from is the task rows, which clean-up deletes. Graph them with
`histogram_quantile(0.9, comfyweb_task_duration_seconds_bucket)`, without
`rate()`. Summaries would fix the quantiles here; buckets let Grafana pick them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.utils import timezone
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from comfyweb import health

logger = logging.getLogger(__name__)

# How far back the duration histograms look; rows are also bounded by creation (a
# day before the window), so each scrape reads a bounded range of the task index.
WINDOW = timedelta(minutes=15)
OLDEST_CREATED = timedelta(days=1)
DISPATCH_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
DURATION_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class ComfyWebCollector(Collector):
    """Each part on its own: the database being down still leaves Redis's figures
    (and `comfyweb_up`, which says so) in the answer, never a 500."""

    def collect(self) -> Iterator[Metric]:
        part_ok = GaugeMetricFamily(
            "comfyweb_metrics_part_ok",
            "1 when this part of the scrape could be read",
            labels=["part"],
        )
        for part in (components, queue, tasks, servers, durations):
            try:
                yield from part()
            except Exception:
                logger.exception("metrics: %s could not be read", part.__name__)
                part_ok.add_metric([part.__name__], 0)
            else:
                part_ok.add_metric([part.__name__], 1)
        yield part_ok


def components() -> Iterator[Metric]:
    report = health.collect()
    up = GaugeMetricFamily("comfyweb_up", "1 when the component is healthy", labels=["component"])
    for component in report.components:
        up.add_metric([component.name], 1 if component.ok else 0)
    yield up
    extras = {c.name: c.extra for c in report.components}
    yield from monitors(extras.get("monitor", {}).get("monitors", []))
    yield from worker_clusters(extras.get("worker", {}).get("clusters", []))


def monitors(beats: list[dict[str, Any]]) -> Iterator[Metric]:
    yield _gauge("comfyweb_monitors_alive", "Monitors whose heartbeat is current", len(beats))
    yield _per(
        beats, "comfyweb_monitor_heartbeat_age_seconds", "Since the monitor's last beat", "age_s"
    )
    yield _per(beats, "comfyweb_monitor_servers", "Servers the monitor watches", "servers")
    leased = [beat for beat in beats if beat.get("leases") is not None]
    yield _per(leased, "comfyweb_monitor_leases", "Server leases the monitor holds", "leases")


def worker_clusters(clusters: list[dict[str, Any]]) -> Iterator[Metric]:
    yield _gauge("comfyweb_worker_clusters_alive", "Running qclusters", len(clusters))
    yield _per(
        clusters,
        "comfyweb_worker_cluster_heartbeat_age_seconds",
        "Since the cluster's last beat",
        "age_s",
        label="cluster",
    )
    yield _per(
        clusters, "comfyweb_worker_cluster_workers", "Worker processes", "workers", "cluster"
    )


def queue() -> Iterator[Metric]:
    from tasks.models import Priority, Status, Task

    depth = GaugeMetricFamily(
        "comfyweb_queue_depth", "Pending tasks by team and priority", labels=["team", "priority"]
    )
    rows = (
        Task.objects.filter(status=Status.PENDING)
        .values_list("team__slug", "priority")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for team, priority, n in rows:
        depth.add_metric([team, Priority(priority).label.lower()], n)
    yield depth


def tasks() -> Iterator[Metric]:
    from tasks.models import Status, Task

    counts = dict(Task.objects.values_list("status").annotate(n=Count("pk")).order_by())
    family = GaugeMetricFamily("comfyweb_tasks", "Tasks by state", labels=["state"])
    for state in Status.values:
        family.add_metric([state], counts.get(state, 0))
    yield family


def servers() -> Iterator[Metric]:
    from servers.models import Health, Server

    fleet = list(Server.objects.select_related("state").order_by("name"))
    per_server: dict[str, Callable[[Server, Any], float | None]] = {
        "enabled": lambda server, state: int(server.enabled),
        "healthy": lambda server, state: int(state is not None and state.health == Health.HEALTHY),
        "inflight": lambda server, state: state.inflight if state else 0,
        "max_inflight": lambda server, state: server.max_inflight,
        "utilisation": lambda server, state: (
            (state.inflight if state else 0) / max(1, server.max_inflight)
        ),
        "comfyui_queue_pending": lambda server, state: state.queue_pending if state else None,
        "comfyui_queue_running": lambda server, state: state.queue_running if state else None,
        "event_rate": lambda server, state: (
            (state.event_stats or {}).get("events_per_second") if state else None
        ),
    }
    for what, value in per_server.items():
        family = GaugeMetricFamily(f"comfyweb_server_{what}", _SERVER_HELP[what], labels=["server"])
        for server in fleet:
            number = value(server, getattr(server, "state", None))
            if number is not None:
                family.add_metric([server.name], float(number))
        yield family
    inflight = sum(s.state.inflight for s in fleet if getattr(s, "state", None))
    yield _gauge("comfyweb_inflight", "Prompts on the whole fleet now", inflight)
    yield _gauge(
        "comfyweb_max_inflight", "Prompts allowed on the fleet", settings.COMFYWEB_MAX_INFLIGHT
    )


_SERVER_HELP = {
    "enabled": "1 when the server is enabled",
    "healthy": "1 when the monitor last found the server healthy",
    "inflight": "ComfyWeb's prompts on the server now",
    "max_inflight": "The server's slots",
    "utilisation": "inflight / max_inflight",
    "comfyui_queue_pending": "Prompts pending in ComfyUI's own queue (last /queue read)",
    "comfyui_queue_running": "Prompts running in ComfyUI (last /queue read)",
    "event_rate": "ComfyUI events per second on the server's stream",
}


def durations(now=None) -> Iterator[Metric]:
    from tasks.models import Task

    now = now or timezone.now()
    recent = Task.objects.filter(created_at__gte=now - WINDOW - OLDEST_CREATED)
    yield _window_histogram(
        "comfyweb_dispatch_latency_seconds",
        f"Submission to dispatch, tasks dispatched in the last {_minutes(WINDOW)}",
        recent.filter(dispatched_at__gte=now - WINDOW),
        F("dispatched_at") - F("created_at"),
        DISPATCH_BUCKETS,
    )
    yield _window_histogram(
        "comfyweb_task_duration_seconds",
        f"Start to end of the prompt, tasks finished in the last {_minutes(WINDOW)}",
        recent.filter(finished_at__gte=now - WINDOW, started_at__isnull=False),
        F("finished_at") - F("started_at"),
        DURATION_BUCKETS,
    )


def _window_histogram(name, documentation, rows, span, buckets) -> Metric:
    """One query: a count per bucket (`<= le`), the total and the sum, in the database."""
    rows = rows.annotate(span=ExpressionWrapper(span, output_field=DurationField()))
    counts = {
        f"le{i}": Count("pk", filter=Q(span__lte=timedelta(seconds=b)))
        for i, b in enumerate(buckets)
    }
    figures = rows.aggregate(total=Count("pk"), sum=Sum("span"), **counts)
    cumulative = [(_le(b), figures[f"le{i}"]) for i, b in enumerate(buckets)]
    total = figures["total"]
    seconds = figures["sum"].total_seconds() if figures["sum"] else 0.0
    family = GaugeHistogramMetricFamily(name, documentation)
    family.add_metric([], [*cumulative, ("+Inf", total)], gsum_value=seconds)
    return family


def _le(bound: float) -> str:
    return str(float(bound))


def _minutes(span: timedelta) -> str:
    return f"{span.total_seconds() / 60:g} min"


def _gauge(name: str, documentation: str, value: float) -> Metric:
    return GaugeMetricFamily(name, documentation, value=value)


def _per(
    rows: Iterable[dict[str, Any]], name: str, documentation: str, key: str, label: str = "monitor"
) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for row in rows:
        family.add_metric([str(row["id"])], float(row[key] or 0))
    return family


registry = CollectorRegistry(auto_describe=False)
registry.register(ComfyWebCollector())
