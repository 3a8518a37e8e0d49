"""The Models page in a real Chromium (issue #14): staff add a download of a model
from a local range server (throttled, so it takes a few seconds), the running
`serve`'s worker fetches it, and the row's progress and state follow it live —
running with a growing bar, then completed, the file in the library — without a
reload. The headers typed into the form are sent to the server and never shown."""

from __future__ import annotations

import uuid

import pytest

from tests.browser import log_in, screenshot
from tests.range_server import Content, MiB, RangeServer
from tests.serve_process import manage

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SECRET = "s3cret-browser-token"
SIZE = 16 * MiB
RATE = 1.5 * MiB  # per connection: two connections take about five seconds
RECORD_SWAPS = (
    "window.swaps = [];"
    " document.addEventListener('live:swapped', (e) => window.swaps.push(e.detail.target));"
)
# Progress values the row showed while it was running, sampled on every swap.
RECORD_PROGRESS = """(name) => {
  window.seen = [];
  document.addEventListener('live:swapped', () => {
    for (const row of document.querySelectorAll('#downloads-panel tr[data-state]')) {
      if (!row.textContent.includes(name)) continue;
      const bar = row.querySelector('progress');
      window.seen.push([row.dataset.state, bar ? Number(bar.value) : null]);
    }
  });
}"""
CLEAN_UP = """
from library.models import Download, ModelFile
for download in Download.objects.filter(filename={name!r}):
    download.final_path.unlink(missing_ok=True)
    download.part_path.unlink(missing_ok=True)
    download.delete()
ModelFile.objects.filter(filename={name!r}).delete()
"""


def test_staff_add_a_download_and_its_progress_follows_it_live_to_completed(page, running_serve):
    name = f"browser-{uuid.uuid4().hex[:8]}.safetensors"
    log_in(page, running_serve)
    with RangeServer(Content(SIZE, seed=11), rate=RATE) as server:
        try:
            page.add_init_script(RECORD_SWAPS)
            page.goto(f"{running_serve.url}library/downloads/")
            page.fill("#download-add input[name=url]", server.url("remote-name.bin"))
            page.select_option("#download-add select[name=folder]", "loras")
            page.fill("#download-add input[name=filename]", name)
            page.fill("#download-add input[name=sha256]", server.content.sha256())
            page.fill("#download-add textarea[name=headers]", f"Authorization: Bearer {SECRET}")
            page.fill("#download-add input[name=connections]", "2")
            page.click("#download-add button[type=submit]")

            page.wait_for_selector(f".messages :text('loras/{name}: Queued.')")
            assert page.input_value("#download-add textarea[name=headers]") == ""
            # The socket's snapshot has come: what changes next is pushed.
            page.wait_for_function("() => window.swaps.includes('downloads-panel')")
            page.evaluate(RECORD_PROGRESS, name)
            page.evaluate("window.notReloaded = true")
            row = f"#downloads-panel tr:has-text('{name}')"
            assert page.get_attribute(row, "data-state") in ("queued", "running")

            page.wait_for_function(
                "() => window.seen.some(([state, value]) => state === 'running' && value > 0)",
                timeout=30_000,
            )
            page.wait_for_selector(f"{row}[data-state='running'] progress")
            screenshot(page, "downloads-running.png")
            page.wait_for_selector(f"{row}[data-state='completed']", timeout=60_000)

            assert page.evaluate("window.notReloaded") is True
            text = page.text_content(row).replace("\xa0", " ")  # filesizeformat's spaces
            assert "Completed" in text
            assert "16.0 MB / 16.0 MB" in text
            assert "(100.0 %)" in text
            assert f"sha256 {server.content.sha256()[:12]}" in text
            running = [value for state, value in page.evaluate("window.seen") if state == "running"]
            assert any(0 < value < 100 for value in running), running
            library = page.text_content("#library-panel table[data-folder='loras']")
            library = library.replace("\xa0", " ")
            assert name in library
            assert "16.0 MB" in library
            assert SECRET not in page.content()
            screenshot(page, "downloads.png")
            assert page.console_errors == []

            gets = [r for r in server.requests if r.method == "GET"]
            assert gets
            assert all(r.headers.get("authorization") == f"Bearer {SECRET}" for r in gets)
            assert server.max_active == 2
        finally:
            manage(running_serve, "shell", "--no-imports", "-c", CLEAN_UP.format(name=name))
