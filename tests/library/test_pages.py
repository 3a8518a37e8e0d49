"""The Models page (issue #14): the library by folder, the downloads with their live
figures, staff's form (headers never shown again) and Cancel / Retry buttons, and
the refresh hints that keep it live."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.utils import timezone

from library import store
from library.enqueue import RUN_DOWNLOAD
from library.models import Download, DownloadState, ModelFile
from library.progress import publish_progress
from tests.factories import make_user
from tests.live_socket import connected_as
from tests.range_server import MiB

PAGE = "/library/downloads/"
PANEL = "/library/downloads/panel"
URL = "http://127.0.0.1:9/files/sd15.safetensors"
SECRET = "s3cret-token-value"


@pytest.fixture
def staff_client(client):
    client.force_login(make_user("stef", staff=True))
    return client


@pytest.fixture
def add(staff_client, models_dir, enqueued, django_capture_on_commit_callbacks):
    """`add(**fields)`: staff post the form (its on-commit work done); the answer."""

    def post(**fields):
        data = {"url": URL, "folder": "checkpoints", "connections": "4"} | fields
        with django_capture_on_commit_callbacks(execute=True):
            return staff_client.post(PAGE, data)

    return post


def make_download(**fields) -> Download:
    values = {"url": URL, "folder": "checkpoints", "filename": "sd15.safetensors"} | fields
    return Download.objects.create(**values)


@pytest.mark.django_db
def test_the_page_lists_the_library_by_folder_and_the_downloads_with_their_figures(client):
    ModelFile.objects.create(
        folder="loras", filename="style.safetensors", size=3 * MiB, sha256="ab12cd34ef56" + "0" * 52
    )
    ModelFile.objects.create(folder="checkpoints", filename="base.safetensors", size=2048)
    running = make_download(
        url="https://models.example/f/big.safetensors?token=signed",
        filename="big.safetensors",
        state=DownloadState.RUNNING,
        size=100 * MiB,
        downloaded=25 * MiB,
        speed_bps=5 * MiB,
        connections=4,
        active_connections=3,
        headers={"Authorization": f"Bearer {SECRET}"},
    )
    failed = make_download(
        filename="gone.safetensors", state=DownloadState.FAILED, error="404 from 127.0.0.1"
    )
    client.force_login(make_user())

    html = client.get(PAGE).content.decode()

    assert 'data-folder="checkpoints"' in html
    assert 'data-folder="loras"' in html
    assert "style.safetensors" in html
    assert "3.0\xa0MB" in html
    assert '<code title="ab12cd34ef56' in html  # the short sha, the full one on hover
    assert "not hashed" in html  # base.safetensors
    assert 'data-live-topic="downloads"' in html
    row = html.split(f'id="download-{running.pk}"')[1].split("</tr>")[0]
    assert 'data-state="running"' in html
    assert "badge status-running" in row
    assert 'max="100" value="25.0"' in row
    assert "25.0\xa0MB / 100.0\xa0MB" in row
    assert "(25.0 %)" in row
    assert "5.0\xa0MB/s" in row
    assert "3 / 4" in row  # connections: fetching / asked for
    assert "15 s" in row  # ETA: 75 MB at 5 MB/s
    assert "https://models.example/f/big.safetensors" in row
    assert "token=signed" not in html  # not staff: no query string
    assert SECRET not in html
    assert "404 from 127.0.0.1" in html.split(f'id="download-{failed.pk}"')[1]
    assert "Cancel</button>" not in html  # staff only
    assert "Retry</button>" not in html
    assert 'id="download-add"' not in html


@pytest.mark.django_db
def test_staff_see_the_full_url_the_form_and_the_buttons_with_the_pages_forms(staff_client):
    make_download(url=URL + "?token=signed", state=DownloadState.RUNNING)
    failed = make_download(filename="f.safetensors", state=DownloadState.FAILED)
    html = staff_client.get(PAGE).content.decode()
    assert URL + "?token=signed" in html
    assert 'id="download-add"' in html
    assert '<select name="folder"' in html
    assert "Cancel</button>" in html
    assert f'formaction="/library/downloads/{failed.pk}/retry"' in html
    # The buttons live in a pushed fragment: the token is in the page's own forms.
    assert '<form id="download-action" method="post" hidden>' in html
    assert 'name="csrfmiddlewaretoken"' in html


@pytest.mark.django_db
def test_staff_add_a_download_and_its_job_is_queued_and_the_headers_are_not_shown(
    add, staff_client, enqueued
):
    response = add(
        filename="model.safetensors",
        sha256="AB" * 32,
        headers=f"Authorization: Bearer {SECRET}\n\nX-Api-Key:  {SECRET}  \n",
        connections="6",
    )

    assert response.status_code == 302
    assert response["Location"] == PAGE
    download = Download.objects.get()
    assert (download.filename, download.expected_sha256, download.connections) == (
        "model.safetensors",
        "ab" * 32,
        6,
    )
    assert download.headers == {"Authorization": f"Bearer {SECRET}", "X-Api-Key": SECRET}
    assert enqueued == [(RUN_DOWNLOAD, download.pk)]
    page = staff_client.get(PAGE)
    html = page.content.decode()
    assert "checkpoints/model.safetensors: Queued." in [str(m) for m in page.context["messages"]]
    assert f'id="download-{download.pk}"' in html
    assert SECRET not in html
    assert "Bearer" not in html.split('id="downloads-panel"')[1]
    assert SECRET not in staff_client.get(PANEL).content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"filename": "../escape.safetensors"}, "filename"),
        ({"filename": ".hidden"}, "filename"),
        ({"url": "file:///etc/passwd"}, "url"),
        ({"sha256": "abc"}, "sha256"),
        ({"connections": "17"}, "connections"),
        ({"folder": "custom_nodes"}, "folder"),
        ({"headers": "Authorization Bearer nocolon"}, "headers"),
        ({"headers": "Bad Name: x"}, "headers"),
        ({"headers": "Range: bytes=0-"}, "headers"),
    ],
)
def test_a_refused_download_shows_the_error_on_its_field_keeps_the_rest_but_not_the_headers(
    add, enqueued, fields, field
):
    typed = {
        "url": URL,
        "folder": "loras",
        "filename": "kept.safetensors",
        "sha256": "cd" * 32,
        "connections": "3",
        "headers": f"Authorization: Bearer {SECRET}",
    }
    response = add(**(typed | fields))

    assert response.status_code == 200
    form = response.context["form"]
    assert list(form.errors) == [field]
    html = response.content.decode()
    assert 'class="field has-error"' in html
    assert SECRET not in html
    assert "nocolon" not in html
    assert '<textarea name="headers"' in html
    assert (
        html.split('<textarea name="headers"')[1].split(">", 1)[1].strip().startswith("</textarea>")
    )
    for name, value in typed.items():
        if name not in (field, "headers"):
            assert f'value="{value}"' in html or f'<option value="{value}" selected' in html
    assert not Download.objects.exists()
    assert enqueued == []


@pytest.mark.django_db
def test_only_staff_add_downloads(client, models_dir, enqueued):
    data = {"url": URL, "folder": "checkpoints", "connections": "4"}
    anonymous = client.post(PAGE, data)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/login/")
    assert client.get(PAGE)["Location"].startswith("/login/")
    client.force_login(make_user())
    assert client.post(PAGE, data).status_code == 403
    assert not Download.objects.exists()
    assert enqueued == []


@pytest.mark.django_db
def test_staff_cancel_a_download_and_its_partial_file_goes(staff_client, models_dir):
    download = make_download()
    download.part_path.parent.mkdir(parents=True)
    download.part_path.write_bytes(b"partial")

    response = staff_client.post(
        f"/library/downloads/{download.pk}/cancel", {"next": PAGE}, follow=True
    )

    download.refresh_from_db()
    assert download.state == DownloadState.CANCELED
    assert not download.part_path.exists()
    assert "checkpoints/sd15.safetensors: canceled." in response.content.decode()
    again = staff_client.post(f"/library/downloads/{download.pk}/cancel", follow=True)
    assert "has canceled already" in again.content.decode()


@pytest.mark.django_db
def test_cancelling_a_download_a_worker_holds_asks_the_worker(staff_client, models_dir):
    download = make_download(
        state=DownloadState.RUNNING, runner=store.new_runner(), heartbeat_at=timezone.now()
    )
    response = staff_client.post(f"/library/downloads/{download.pk}/cancel", follow=True)
    download.refresh_from_db()
    assert (download.state, download.cancel_requested) == (DownloadState.RUNNING, True)
    assert "checkpoints/sd15.safetensors: stopping." in response.content.decode()


@pytest.mark.django_db
def test_staff_retry_a_failed_download(staff_client, enqueued, django_capture_on_commit_callbacks):
    download = make_download(state=DownloadState.FAILED, error="503")
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(f"/library/downloads/{download.pk}/retry", follow=True)
    download.refresh_from_db()
    assert (download.state, download.error) == (DownloadState.QUEUED, "")
    assert enqueued == [(RUN_DOWNLOAD, download.pk)]
    assert "queued again" in response.content.decode()
    refused = staff_client.post(f"/library/downloads/{download.pk}/retry", follow=True)
    assert "only a failed or canceled download is retried" in refused.content.decode()


@pytest.mark.django_db
def test_others_cannot_cancel_or_retry(client):
    download = make_download(state=DownloadState.FAILED)
    client.force_login(make_user())
    for action in ("cancel", "retry"):
        response = client.post(f"/library/downloads/{download.pk}/{action}")
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
    assert Download.objects.get().state == DownloadState.FAILED


@pytest.mark.django_db
def test_the_navigation_links_the_models_page(client):
    client.force_login(make_user())
    navigation = client.get(PAGE).context["navigation"]
    assert {"label": "Models", "url": PAGE, "active": True} in navigation


@pytest.mark.django_db(transaction=True)
async def test_progress_has_pages_refetch_their_panel_and_the_snapshot_has_both_sections():
    user = await sync_to_async(make_user)()
    socket = await connected_as(user)
    await socket.send_json_to({"action": "subscribe", "topic": "downloads"})
    assert (await socket.receive_json_from(timeout=5))["type"] == "subscribed"
    snapshots = [await socket.receive_json_from(timeout=5) for _ in range(2)]
    assert [s["target"] for s in snapshots] == ["downloads-panel", "library-panel"]
    assert "No downloads yet." in snapshots[0]["html"]

    download = await sync_to_async(make_download)(
        state=DownloadState.RUNNING,
        size=10 * MiB,
        downloaded=5 * MiB,
        headers={"Authorization": f"Bearer {SECRET}"},
    )
    await sync_to_async(publish_progress)(download)

    received = [await socket.receive_json_from(timeout=5) for _ in range(2)]
    data, hint = sorted(received, key=lambda m: m["type"])
    assert (data["type"], data["data"]["fraction"]) == ("data.update", 0.5)
    assert SECRET not in str(data)
    assert (hint["type"], hint["target"], hint["url"]) == (
        "fragment.refresh",
        "downloads-panel",
        PANEL,
    )
    browser = Client()
    await sync_to_async(browser.force_login)(user)
    html = (await sync_to_async(browser.get)(hint["url"])).content.decode()
    assert f'<tr id="download-{download.pk}" data-state="running">' in html
    assert '<section id="library-panel"' in html
    assert SECRET not in html
    await socket.disconnect()
