"""The only code that calls the simulator's own demo controls (routes_control.py)."""

from __future__ import annotations

import httpx

# Here, not in routes_control.py: the pages that call it need no aiohttp.
OUTAGE_PATH = "/comfyweb-sim/outage"
TIMEOUT = httpx.Timeout(5.0)


class ControlError(RuntimeError):
    pass


async def simulate_outage(base_url: str, seconds: float) -> None:
    """Ask a simulated server to go down for `seconds`; raises ControlError if it can't."""
    url = base_url.rstrip("/") + OUTAGE_PATH
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            response = await client.post(url, json={"seconds": seconds})
    except httpx.HTTPError as error:
        raise ControlError(f"{type(error).__name__}: {error}") from error
    if response.status_code != 202:
        raise ControlError(f"HTTP {response.status_code}: {response.text[:200]}")
