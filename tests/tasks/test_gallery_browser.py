"""Pictures where people look, in a real Chromium (issue 16 parts 3-4): thumbnails and
the live preview in task list rows, the dashboard's recent results, and the gallery
as a viewer: lightbox, arrows, zoom, Escape, copy seed, a zip of a selection, and a
new image arriving while the gallery is open."""

from __future__ import annotations

import zipfile

import httpx
import pytest

from tests.browser import log_in, register_server, screenshot
from tests.serve_process import manage
from tests.servers.simulator.helpers import empty_image, slow_prompt

pytestmark = [pytest.mark.browser, pytest.mark.slow]

IMAGE_SIZE = 96


def graph(nonce: int, *, steps: int = 2, seconds_per_step: float = 0.05) -> dict:
    """A square of its own colour that sends previews; the nonce is its seed (and keeps
    ComfyUI's cache out)."""
    prompt = slow_prompt(steps, seconds_per_step, nonce)
    prompt["1"] = empty_image(IMAGE_SIZE, IMAGE_SIZE, (nonce * 2654435761) % 0xFFFFFF)
    prompt["2"]["inputs"]["preview"] = True
    return prompt


def test_pictures_inline_and_the_gallery_as_a_viewer(page, running_serve, simulator_thread):
    serve = running_serve
    missing = []
    page.on("response", lambda r: r.status == 404 and missing.append(r.url))
    log_in(page, serve)
    register_server(page, serve, "viewer-1", simulator_thread.port)
    page.goto(f"{serve.url}servers/")
    page.wait_for_selector("#server-rows tr:has-text('viewer-1')[data-health='healthy']")
    token = manage(serve, "create_api_token", serve.username, "--name", "viewer").strip()

    def submit(body: dict) -> int:
        response = httpx.post(
            f"{serve.url}api/v1/tasks",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        return response.json()["tasks"][0]["id"]

    # Three quick tasks: their rows show their outputs once stored, without a reload.
    quick = [submit({"graph": graph(nonce)}) for nonce in (101, 202, 303)]
    page.goto(f"{serve.url}tasks/")
    page.wait_for_selector("body[data-live='open']", timeout=15_000)
    for task_id in quick:
        page.wait_for_selector(
            f"#task-row-{task_id}-pictures img[src*='/thumbnail/']", timeout=60_000
        )

    # A slow one sends previews: its row shows the newest, live.
    slow = submit({"graph": graph(404, steps=80, seconds_per_step=0.25)})
    page.reload()
    page.wait_for_selector(f"img#task-{slow}-preview-thumb", timeout=60_000)
    first_preview = page.get_attribute(f"img#task-{slow}-preview-thumb", "src")
    page.wait_for_function(
        f"() => document.querySelector('img#task-{slow}-preview-thumb')?.getAttribute('src')"
        f" !== {first_preview!r}",
        timeout=30_000,
    )
    screenshot(page, "task-list-thumbnails.png")

    # The dashboard's recent results: the running task's preview and the newest outputs.
    page.goto(serve.url)
    page.wait_for_selector(f"#recent-results img#task-{slow}-preview-thumb", timeout=30_000)
    assert page.locator("#recent-results img[src*='/thumbnail/']").count() >= 3
    screenshot(page, "dashboard-recent-results.png")

    # Its own page shows the preview in a panel of its own, at a size one can see.
    page.goto(f"{serve.url}tasks/{slow}/")
    panel_image = f"#task-{slow}-preview:not([hidden]) img.preview-image"
    page.wait_for_selector(panel_image, timeout=30_000)
    page.wait_for_function(f"() => document.querySelector('{panel_image}')?.complete")
    width = page.evaluate(f"() => document.querySelector('{panel_image}').clientWidth")
    assert 256 <= width <= 512
    screenshot(page, "task-live-preview.png")

    # The gallery: open the newest image in the viewer.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=serve.url)
    page.goto(f"{serve.url}gallery/")
    page.wait_for_selector("body[data-live='open']", timeout=15_000)
    page.evaluate("window.notReloaded = true")
    tiles = page.locator(".gallery-item[data-full]")
    count = tiles.count()
    assert count >= 3
    tiles.first.locator("a.open").click()
    viewer = page.locator("dialog#viewer")
    page.wait_for_selector("dialog#viewer[open]")
    page.wait_for_function("() => document.getElementById('viewer-image').complete")
    assert page.text_content("#viewer-position") == f"1 of {count}"
    first_src = page.get_attribute("#viewer-image", "src")
    assert "/file/" in first_src
    assert page.get_attribute("#viewer-download", "href").endswith("?download=1")
    assert page.locator("#viewer-facts code.seed").count() == 1

    # Arrows move through the images and wrap around; the facts follow.
    page.keyboard.press("ArrowRight")
    assert page.text_content("#viewer-position") == f"2 of {count}"
    assert page.get_attribute("#viewer-image", "src") != first_src
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    assert page.text_content("#viewer-position") == f"{count} of {count}"
    page.keyboard.press("ArrowRight")
    assert page.get_attribute("#viewer-image", "src") == first_src

    # Fit fills the stage (a 96 px image is scaled up); 100 % shows it pixel for pixel.
    page.wait_for_function("() => document.getElementById('viewer-image').naturalWidth > 0")
    size = "() => ((i) => [i.clientWidth, i.naturalWidth])(document.getElementById('viewer-image'))"
    shown, natural = page.evaluate(size)
    assert natural == IMAGE_SIZE
    assert shown > natural
    page.click("dialog#viewer [data-viewer='zoom']")
    assert viewer.get_attribute("data-zoom") == "actual"
    assert page.get_attribute("dialog#viewer [data-viewer='zoom']", "aria-pressed") == "true"
    shown, natural = page.evaluate(size)
    assert shown == natural == IMAGE_SIZE
    page.keyboard.press("z")
    assert viewer.get_attribute("data-zoom") == "fit"

    # Copy seed puts the seed shown beside the image on the clipboard.
    seed = page.text_content("#viewer-facts code.seed")
    assert seed in {"101", "202", "303", "404"}
    page.click("#viewer-facts .copy-seed")
    page.wait_for_selector("#viewer-facts .copy-seed:text('Copied')")
    assert page.evaluate("navigator.clipboard.readText()") == seed
    screenshot(page, "gallery-lightbox.png")

    page.keyboard.press("Escape")
    page.wait_for_selector("dialog#viewer:not([open])", state="attached")
    assert not viewer.evaluate("d => d.open")

    # Select two and download them as one zip.
    wanted = []
    for index in (0, 1):
        tile = tiles.nth(index)
        tile.locator("input[name='ids']").check()
        wanted.append(tile.get_attribute("data-output-id"))
    assert page.text_content("#gallery-selected") == "2"
    with page.expect_download() as download:
        page.click("#gallery-zip-button")
    with zipfile.ZipFile(download.value.path()) as archive:
        names = archive.namelist()
        assert archive.testzip() is None
    assert len(names) == 2
    assert sorted(name.rsplit("-output-", 1)[1] for name in names) == sorted(
        f"{output_id}.png" for output_id in wanted
    )

    # A task finishing while the gallery is open shows up at the top, with no reload.
    arriving = submit({"graph": graph(505)})
    page.wait_for_selector(
        ".gallery-item.arrived template.viewer-facts", state="attached", timeout=60_000
    )
    page.wait_for_function(
        f"() => [...document.querySelectorAll('.gallery-item.arrived template.viewer-facts')]"
        f".some((t) => t.innerHTML.includes('/tasks/{arriving}/'))",
        timeout=60_000,
    )
    assert page.evaluate("window.notReloaded") is True
    assert int(page.text_content("#gallery-count")) > count
    assert page.console_errors == [], missing
