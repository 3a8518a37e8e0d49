"""ComfyUIClient: the only code in ComfyWeb that speaks ComfyUI's HTTP API.

Every call has a timeout, every failure is a `ComfyUIError` that says whether it
is permanent, and every answer is checked against the shapes recorded in
PROTOCOL.md before it is returned. Idempotent GETs are retried a bounded number
of times on connection errors and 5xx; POSTs never are (a retried POST /prompt
would queue the prompt twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import os
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import httpx

from comfyweb.backoff import backoff_delay

from .errors import (
    BadRequest,
    Forbidden,
    NotFound,
    ProtocolError,
    RequestRejected,
    ServerError,
    ServerTimeout,
    ServerUnavailable,
    prompt_rejected_from_body,
)
from .responses import (
    FileRef,
    HistoryEntry,
    PromptReceipt,
    QueueState,
    SystemStats,
    expect_list,
    expect_mapping,
    expect_str_list,
    parse_history,
)


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed per phase of a request (httpx's four timeouts)."""

    connect: float = 5.0
    read: float = 30.0
    write: float = 30.0
    pool: float = 5.0

    def to_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


class ComfyUIClient:
    """Async client of one ComfyUI server. Use as `async with ComfyUIClient(url) as c:`."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeouts: Timeouts | None = None,
        get_retries: int = 1,
        retry_base: float = 0.2,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        scheme = base_url.split("://", 1)[0].lower() if "://" in base_url else ""
        if scheme not in ("http", "https"):
            raise ValueError(f"ComfyUI base URL must be http(s)://..., not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeouts = timeouts or Timeouts()
        self._get_retries = max(0, get_retries)
        self._retry_base = retry_base
        # Auth headers (a reverse proxy in front of ComfyUI) go on every request.
        # No Origin header is ever sent: ComfyUI would check it (PROTOCOL.md §1).
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=dict(headers or {}),
            timeout=self.timeouts.to_httpx(),
            transport=transport,
        )

    async def __aenter__(self) -> ComfyUIClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- prompts and the queue --------------------------------------------------

    async def submit(
        self,
        prompt: Mapping[str, Any],
        *,
        client_id: str | None = None,
        prompt_id: str | None = None,
        front: bool = False,
        number: float | None = None,
        extra_data: Mapping[str, Any] | None = None,
        partial_execution_targets: Sequence[str] | None = None,
    ) -> PromptReceipt:
        """POST /prompt. Raises `PromptRejected` (permanent) on a 400.

        Choose `prompt_id` yourself (default: a fresh uuid4) and listen on the
        EventStream before calling: events may outrun this reply.
        `client_id` must be the EventStream's, or the run's events go elsewhere
        (without one ComfyUI sends no lifecycle events at all: poll /history).
        """
        body: dict[str, Any] = {"prompt": dict(prompt), "prompt_id": prompt_id or str(uuid.uuid4())}
        if client_id is not None:
            body["client_id"] = client_id
        if front:
            body["front"] = True
        if number is not None:
            body["number"] = number
        if extra_data is not None:
            body["extra_data"] = dict(extra_data)
        if partial_execution_targets is not None:
            body["partial_execution_targets"] = list(partial_execution_targets)
        response = await self._request("POST", "/prompt", json=body, prompt=True)
        return PromptReceipt.from_json(_json(response))

    async def queue_remaining(self, *, timeouts: Timeouts | None = None) -> int:
        """GET /prompt: pending + running, the cheapest load probe."""
        data = expect_mapping(_json(await self._get("/prompt", timeouts=timeouts)), "GET /prompt")
        exec_info = expect_mapping(data.get("exec_info"), "exec_info")
        remaining = exec_info.get("queue_remaining")
        if not isinstance(remaining, int) or isinstance(remaining, bool):
            raise ProtocolError("malformed response: queue_remaining is not an integer")
        return remaining

    async def get_queue(self, *, timeouts: Timeouts | None = None) -> QueueState:
        return QueueState.from_json(_json(await self._get("/queue", timeouts=timeouts)))

    async def delete_queued(self, prompt_ids: Iterable[str]) -> None:
        """Remove pending prompts. Unknown ids and the running prompt are ignored by
        ComfyUI: use `interrupt` for the running one."""
        await self._request("POST", "/queue", json={"delete": list(prompt_ids)})

    async def clear_queue(self) -> None:
        await self._request("POST", "/queue", json={"clear": True})

    async def interrupt(self, prompt_id: str) -> None:
        """Interrupt `prompt_id` if it is the one running; a no-op otherwise."""
        await self._request("POST", "/interrupt", json={"prompt_id": prompt_id})

    async def interrupt_running(self) -> None:
        """Interrupt whatever runs, whoever submitted it (PROTOCOL.md gotcha 7)."""
        await self._request("POST", "/interrupt", json={})

    # -- history ------------------------------------------------------------------

    async def get_history(self, prompt_id: str) -> HistoryEntry | None:
        """The finished prompt's entry; None while unknown, pending or still running."""
        path = f"/history/{_segment(prompt_id)}"
        entries = parse_history(_json(await self._get(path)))
        return entries.get(prompt_id)

    async def get_histories(
        self, *, max_items: int | None = None, offset: int | None = None
    ) -> dict[str, HistoryEntry]:
        """GET /history: entries in completion order, oldest first."""
        params = {
            k: str(v) for k, v in (("max_items", max_items), ("offset", offset)) if v is not None
        }
        return parse_history(_json(await self._get("/history", params=params)))

    async def delete_history(self, prompt_ids: Iterable[str]) -> None:
        await self._request("POST", "/history", json={"delete": list(prompt_ids)})

    async def clear_history(self) -> None:
        await self._request("POST", "/history", json={"clear": True})

    # -- files ----------------------------------------------------------------------

    async def iter_view(self, ref: FileRef, *, chunk_size: int = 64 * 1024) -> AsyncIterator[bytes]:
        """GET /view, streamed. Raises NotFound (missing), BadRequest, Forbidden."""
        params = {"filename": ref.filename, "subfolder": ref.subfolder, "type": ref.type}
        with _translate(f"{self.base_url}/view"):
            async with self._http.stream("GET", "/view", params=params) as response:
                if response.status_code != 200:
                    await response.aread()
                    _raise_for_status(response)
                async for chunk in response.aiter_bytes(chunk_size):
                    yield chunk

    async def view_bytes(self, ref: FileRef) -> bytes:
        return b"".join([chunk async for chunk in self.iter_view(ref)])

    async def download(self, ref: FileRef, dest: Path) -> int:
        """Stream an output into `dest` (written whole or not at all); returns its size."""
        partial = dest.with_name(dest.name + ".part")
        size = 0
        try:
            async with await anyio.open_file(partial, "wb") as fh:
                async for chunk in self.iter_view(ref):
                    await fh.write(chunk)
                    size += len(chunk)
            await asyncio.to_thread(os.replace, partial, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                await anyio.Path(partial).unlink()
            raise
        return size

    async def upload_image(
        self,
        image: bytes | Path,
        filename: str | None = None,
        *,
        type: str = "input",
        subfolder: str = "",
        overwrite: bool = False,
    ) -> FileRef:
        """POST /upload/image. The returned name may differ from `filename`:
        ComfyUI renames a different file of the same name to `name (1).png`."""
        if isinstance(image, Path):
            filename = filename or image.name
            image = await anyio.Path(image).read_bytes()
        if not filename:
            raise ValueError("upload_image needs a filename for raw bytes")
        form = {"type": type, "subfolder": subfolder}
        if overwrite:
            form["overwrite"] = "true"
        mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        files = {"image": (filename, image, mime)}
        response = await self._request("POST", "/upload/image", data=form, files=files)
        return FileRef.from_json(_json(response))

    # -- the server -----------------------------------------------------------------

    async def system_stats(self, *, timeouts: Timeouts | None = None) -> SystemStats:
        return SystemStats.from_json(_json(await self._get("/system_stats", timeouts=timeouts)))

    async def features(self) -> dict[str, Any]:
        return dict(expect_mapping(_json(await self._get("/features")), "GET /features"))

    async def object_info(self) -> dict[str, dict[str, Any]]:
        """The whole node catalogue, `{class_type: info}` (~0.5 MB on a real server)."""
        data = expect_mapping(_json(await self._get("/object_info")), "GET /object_info")
        return {str(k): dict(expect_mapping(v, f"object_info {k}")) for k, v in data.items()}

    async def node_info(self, class_type: str) -> dict[str, Any] | None:
        """One node's catalogue entry; None if the server has no such node."""
        path = f"/object_info/{_segment(class_type)}"
        data = expect_mapping(_json(await self._get(path)), "GET /object_info/{class}")
        info = data.get(class_type)
        return None if info is None else dict(expect_mapping(info, f"object_info {class_type}"))

    async def model_folders(self) -> list[str]:
        """GET /models: the model folder names (checkpoints, loras, vae, ...)."""
        return expect_str_list(_json(await self._get("/models")), "GET /models")

    async def models(self, folder: str) -> list[str]:
        """GET /models/{folder}: the model files the server has there."""
        path = f"/models/{_segment(folder)}"
        return expect_str_list(_json(await self._get(path)), f"GET /models/{folder}")

    async def embeddings(self) -> list[str]:
        return [str(e) for e in expect_list(_json(await self._get("/embeddings")), "embeddings")]

    async def free(self, *, unload_models: bool = False, free_memory: bool = False) -> None:
        """POST /free; the worker applies it when idle (`free_memory` also drops the cache)."""
        body = {"unload_models": unload_models, "free_memory": free_memory}
        await self._request("POST", "/free", json=body)

    # -- plumbing -------------------------------------------------------------------

    async def _get(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        timeouts: Timeouts | None = None,
    ) -> httpx.Response:
        attempt = 0
        while True:
            try:
                return await self._request("GET", path, params=params, timeouts=timeouts)
            except (ServerTimeout, ProtocolError, RequestRejected):
                # A timeout retried doubles the caller's wait; the others won't change.
                raise
            except (ServerUnavailable, ServerError):
                if attempt >= self._get_retries:
                    raise
            await asyncio.sleep(backoff_delay(attempt, base=self._retry_base, cap=5.0, jitter=0))
            attempt += 1

    async def _request(
        self,
        method: str,
        path: str,
        *,
        prompt: bool = False,
        timeouts: Timeouts | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        url = f"{self.base_url}{path}"
        if timeouts is not None:
            kwargs["timeout"] = timeouts.to_httpx()
        with _translate(url):
            response = await self._http.request(method, path, **kwargs)
        _raise_for_status(response, prompt=prompt)
        return response


def _segment(value: str) -> str:
    """A path segment; quoted so an id cannot walk to another route."""
    return quote(value, safe="")


@contextlib.contextmanager
def _translate(url: str) -> Iterator[None]:
    """httpx's exceptions, as the error family."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ServerTimeout(f"timed out: {type(exc).__name__}", url=url) from exc
    except httpx.TransportError as exc:
        raise ServerUnavailable(f"unreachable: {type(exc).__name__}: {exc}", url=url) from exc
    except httpx.HTTPError as exc:  # undecodable body, redirect loop, ...
        raise ProtocolError(f"HTTP failure: {type(exc).__name__}: {exc}", url=url) from exc


def _raise_for_status(response: httpx.Response, *, prompt: bool = False) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    url = str(response.request.url)
    snippet = response.text[:200].strip() if response.content else ""
    message = f"HTTP {status}" + (f": {snippet}" if snippet else "")
    if status == 400 and prompt:
        with contextlib.suppress(ValueError):
            rejected = prompt_rejected_from_body(response.json(), url=url)
            if rejected is not None:
                raise rejected
    if status >= 500 or status in (408, 429):
        raise ServerError(message, url=url, status=status)
    error = {400: BadRequest, 401: Forbidden, 403: Forbidden, 404: NotFound}.get(
        status, RequestRejected
    )
    raise error(message, url=url, status=status)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError) as exc:
        kind = response.headers.get("content-type", "no content type")
        raise ProtocolError(
            f"malformed response: not JSON ({kind})", url=str(response.request.url)
        ) from exc
