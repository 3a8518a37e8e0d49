"""What a browser may subscribe to over the live socket, and who may.

Each app registers its topics (in its AppConfig.ready): a permission check that
the consumer runs on subscribe and again on every event, and a snapshot that is
sent right after subscribing so a (re)connected page is never stale.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

type User = AbstractBaseUser | AnonymousUser
# (target element id, outer HTML) pairs.
type Snapshot = list[tuple[str, str]]


@dataclass(frozen=True)
class Topic:
    name: str
    allowed: Callable[[User, str | None], bool]
    snapshot: Callable[[User, str | None], Snapshot]


_registry: dict[str, Topic] = {}


def register(topic: Topic) -> Topic:
    _registry[topic.name] = topic
    return topic


def get(name: str) -> Topic | None:
    return _registry.get(name)
