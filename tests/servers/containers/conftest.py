"""Fixtures of the container tests that run on the two real Docker engines."""

from __future__ import annotations

import pytest

from tests.docker_engines import DockerEngines


@pytest.fixture
def deployment(docker_engines: DockerEngines, settings) -> str:
    """This test's deployment id: what the engines fixture removes afterwards."""
    settings.COMFYWEB_DEPLOYMENT = docker_engines.deployment
    return docker_engines.deployment
