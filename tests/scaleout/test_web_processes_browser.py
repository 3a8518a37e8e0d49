"""Two real browsers, each on its own web process, see a task canceled by a third process.

The exactly-once count is test_web_processes.py's; this one shows the whole path
in Chromium: a task's detail page open on each of two daphne processes sharing
one Redis, the task canceled by another process (as a worker or the API of a
third web process would), and each page's status swapped in live. Each page
first shows its subscription's snapshot swap of the status (so its process has
joined the task's group), then the cancel is made: only the group's publish can
bring it. Screenshots: test-artifacts/scaleout-web-{1,2}-canceled.png.
"""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from playwright.sync_api import expect

from tasks.task_updates import target
from tests.browser import open_page, screenshot
from tests.django_process import DjangoProcess, shared_database
from tests.factories import make_task, make_team, make_user
from tests.scaleout.processes import flushed_redis_db, redis_db_url, session_cookie, web_process

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    shared_database,
    pytest.mark.django_db(transaction=True),
]

REDIS_DB = 12
# The status fragments this page swapped in (installed before live.js runs).
COUNT_SWAPS = """
window.swapped = [];
document.addEventListener("live:swapped", (event) => window.swapped.push(event.detail.target));
"""
_CANCEL = """
import sys
from tasks.cancel import cancel_task
print("outcome", cancel_task(int(sys.argv[1]), by=None), flush=True)
"""


def test_a_task_canceled_elsewhere_updates_its_page_on_each_web_process(tmp_path):
    flushed_redis_db(REDIS_DB)
    team = make_team()
    user = make_user(team=team)
    task = make_task(team)
    status = target(task.pk, "status")
    cookie = session_cookie(user).split("=", 1)[1]
    webs = [web_process(REDIS_DB) for _ in range(2)]
    try:
        with open_page() as first:
            # One browser, a window on each process, signed in as the same user.
            second = first.context.browser.new_page(viewport={"width": 1280, "height": 800})
            second.console_errors = []
            second.on("console", lambda m: m.type == "error" and second.console_errors.append(m))
            pages = [first, second]
            for page, web in zip(pages, webs, strict=True):
                page.context.add_cookies(
                    [{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": web.url}]
                )
                page.add_init_script(COUNT_SWAPS)
                page.goto(f"{web.url}tasks/{task.pk}/")
                page.wait_for_function("(id) => window.swapped.includes(id)", arg=status)
            canceler = DjangoProcess.python(_CANCEL, str(task.pk), REDIS_URL=redis_db_url(REDIS_DB))
            assert canceler.wait_for_line("outcome") == "outcome canceled"
            canceler.stop()
            for index, page in enumerate(pages, start=1):
                expect(page.locator(f"#{status}")).to_contain_text(re.compile("cancel", re.I))
                screenshot(page, f"scaleout-web-{index}-canceled.png")
                assert page.console_errors == []
    finally:
        for web in webs:
            web.stop()
