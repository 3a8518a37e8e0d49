"""The browsable API docs work in a real browser under our self-only CSP."""

from __future__ import annotations

import pytest

from tests.browser import log_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_signed_in_person_browses_the_api_docs(page, running_serve):
    log_in(page, running_serve)
    page.goto(f"{running_serve.url}api/v1/docs")
    page.wait_for_selector(".opblock-tag-section .opblock")
    assert page.locator(".opblock").count() >= 25
    screenshot(page, "api-docs.png")
    assert page.console_errors == []
