"""Node catalogues (`/object_info`) as the monitor last read them, for graph validation.

The monitor stores each server's catalogue here when it refreshes its
capabilities (`store`); whatever validates a graph against the fleet reads them
back (`catalogues_by_server`) without asking any server. A catalogue is stored
once per distinct content and parsed once per process: rows are
content-addressed, so a parsed copy can never be stale.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import IntegrityError, transaction

from servers.models import NodeCatalogue, ServerState

# What graph validation reads of an entry; the rest (descriptions, categories,
# tooltips) is half the size and changes nothing about what a server accepts.
KEPT_KEYS = ("input", "output", "output_name", "output_node")
# Parsed catalogues kept per process; a fleet rarely has more distinct ones.
_PARSED_LIMIT = 8

Catalogue = Mapping[str, Mapping[str, Any]]

_parsed: OrderedDict[str, Catalogue] = OrderedDict()
_lock = threading.Lock()


def trim(object_info: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The parts of a `/object_info` reply that validation uses."""
    return {
        str(name): {key: info[key] for key in KEPT_KEYS if key in info}
        for name, info in object_info.items()
        if isinstance(info, Mapping)
    }


def digest_of(catalogue: Mapping[str, Any]) -> str:
    text = json.dumps(catalogue, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def store(server_id: int, object_info: Mapping[str, Any]) -> None:
    """Keep `object_info` as the server's catalogue; drop catalogues nobody uses any more."""
    catalogue = trim(object_info)
    digest = digest_of(catalogue)
    for attempt in (1, 2):
        try:
            with transaction.atomic():
                row, _ = NodeCatalogue.objects.get_or_create(
                    digest=digest, defaults={"object_info": catalogue}
                )
                ServerState.objects.filter(server_id=server_id).update(catalogue=row)
            break
        except IntegrityError:
            # Another server's watcher deleted the row as unused between the two
            # statements; the second attempt creates it afresh.
            if attempt == 2:
                raise
    try:
        with transaction.atomic():
            NodeCatalogue.objects.filter(states__isnull=True).delete()
    except IntegrityError:
        pass  # a watcher started using one meanwhile; the next refresh cleans up


def catalogues_by_server(server_ids: Iterable[int]) -> dict[int, Catalogue]:
    """server id -> its stored catalogue, for the servers that have one."""
    digests = dict(
        ServerState.objects.filter(
            server_id__in=list(server_ids), catalogue__isnull=False
        ).values_list("server_id", "catalogue__digest")
    )
    parsed = _load(set(digests.values()))
    return {server_id: parsed[digest] for server_id, digest in digests.items() if digest in parsed}


def _load(digests: set[str]) -> dict[str, Catalogue]:
    with _lock:
        found = {d: _parsed[d] for d in digests if d in _parsed}
    missing = digests - found.keys()
    if missing:
        rows = NodeCatalogue.objects.filter(digest__in=missing).values_list("digest", "object_info")
        found.update(dict(rows))
    with _lock:
        for digest, catalogue in found.items():
            _parsed[digest] = catalogue
            _parsed.move_to_end(digest)
        while len(_parsed) > _PARSED_LIMIT:
            _parsed.popitem(last=False)
    return found
