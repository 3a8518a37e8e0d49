"""What container pools are doing for work that waits, in words for a task's page and the API."""

from __future__ import annotations

from django.db.models import Count

from servers.containers.models import Container, ContainerState


def pools_growing() -> str:
    """'container pool sdxl is starting 2 containers' for each pool with containers on
    their way; '' when none is starting one."""
    starting = (
        Container.objects.holding()
        .filter(state=ContainerState.STARTING)
        .order_by()
        .values("pool__name")
        .annotate(n=Count("pk"))
        .order_by("pool__name")
    )
    return "; ".join(
        f"container pool {row['pool__name']} is starting {row['n']} "
        f"container{'s' if row['n'] != 1 else ''}"
        for row in starting
    )
