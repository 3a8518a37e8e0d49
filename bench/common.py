"""What several benchmarks share: a throwaway Django, a trivial graph, percentiles.

Not a benchmark itself (`make bench` runs `bench_*.py`). The scripts put the
repository root on `sys.path` before importing it as `bench.common`.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any


def setup_django(data_dir: pathlib.Path):
    """Django on a fresh SQLite database in `data_dir`, with an embedded Redis.

    Returns the Redis process, for the caller to stop.
    """
    os.environ["COMFYWEB_DATA_DIR"] = str(data_dir)
    os.environ["DATABASE_URL"] = f"sqlite:///{data_dir / 'bench.sqlite3'}"
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("SECRET_KEY", "bench-only")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "comfyweb.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from comfyweb import embedded_redis

    redis_process = embedded_redis.start(settings.EMBEDDED_REDIS_SOCKET)
    call_command("migrate", verbosity=0)
    return redis_process


def trivial_graph(color: int) -> dict[str, Any]:
    """An 8x8 image sent back over the socket; `color` makes each prompt distinct."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color},
        },
        "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}},
    }


def percentile(samples: list[float], fraction: float) -> float:
    """The sample at `fraction` of the sorted samples (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]
