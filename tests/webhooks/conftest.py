"""The webhooks tests' world: a receiver on loopback (private addresses allowed, as
the tests' only network is loopback), a team admin, and retries without waiting."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from teams.models import Role
from tests.factories import make_team, make_user
from tests.webhooks.receiver import Receiver
from webhooks import delivery


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


@pytest.fixture
def allow_private(settings) -> None:
    settings.COMFYWEB_WEBHOOKS_ALLOW_PRIVATE = True


@pytest.fixture
def retries_due_at_once(monkeypatch) -> None:
    """A failed try is due again at once (the schedule itself is comfyweb.backoff's)."""
    monkeypatch.setattr(delivery, "RETRY_BASE", 0.0)
    monkeypatch.setattr(delivery, "RETRY_JITTER", 0.0)


@pytest.fixture
def studio(db):
    team = make_team("Studio")
    return team, make_user("ada", team=team, role=Role.ADMIN)


# The API tests' world (a team with one caller per role), for the webhooks API.
from tests.api.conftest import world  # noqa: E402, F401
