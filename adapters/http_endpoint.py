"""The HTTP client the http extractor and embedder share.

:class:`JsonEndpoint` talks to an OpenAI-compatible API with httpx: it POSTs JSON, turns
transport failures and HTTP error statuses into named errors that say whether a retry may help
and which ``MEMSAGA_`` setting to check, and heartbeats while it waits for the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from adapters.errors import AdapterNotConfigured, EndpointUnavailable
from sagas.memory_extraction.ports import AdapterError, Heartbeat


@asynccontextmanager
async def heartbeating(heartbeat: Heartbeat | None, interval: float) -> AsyncIterator[None]:
    """Call ``heartbeat()`` now and every ``interval`` seconds until the block ends."""
    if heartbeat is None:
        yield
        return
    beat = heartbeat

    async def tick() -> None:
        while True:
            beat()
            await asyncio.sleep(interval)

    ticker = asyncio.create_task(tick())
    try:
        yield
    finally:
        ticker.cancel()
        await asyncio.wait([ticker])  # unlike awaiting it, never swallows our own cancellation
        error = None if ticker.cancelled() else ticker.exception()
        if error is not None:
            raise error


class JsonEndpoint:
    """An OpenAI-compatible HTTP API: POSTs JSON, turns failures into named errors, heartbeats meanwhile."""

    def __init__(
        self,
        base_url: str,
        *,
        variables: str,
        api_key: str | None = None,
        timeout_seconds: float = 30.0,
        heartbeat_interval: float = 1.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.variables = variables  # e.g. "MEMSAGA_LLM": names the settings to fix in messages
        self.heartbeat_interval = heartbeat_interval
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 5.0))
        self._client = client

    async def post(
        self,
        path: str,
        body: dict[str, Any],
        *,
        heartbeat: Heartbeat | None,
        unavailable: type[EndpointUnavailable],
        invalid: type[AdapterError],
    ) -> Any:
        """The decoded JSON answer. :raises unavailable: unreachable or refused; ``invalid``: not JSON."""
        url = f"{self.base_url}/{path}"
        async with heartbeating(heartbeat, self.heartbeat_interval):
            response = await self._send(url, body, unavailable)
        if response.status_code >= 400:
            raise unavailable(
                url,
                self._refusal(response),
                retryable=_retryable(response.status_code),
                status=response.status_code,
            )
        try:
            return response.json()
        except ValueError as exc:
            raise invalid(f"{url} answered with a body that is not JSON: {response.text[:200]!r}") from exc

    async def _send(
        self, url: str, body: dict[str, Any], unavailable: type[EndpointUnavailable]
    ) -> httpx.Response:
        try:
            if self._client is not None:
                return await self._client.post(url, json=body, headers=self._headers, timeout=self._timeout)
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                return await client.post(url, json=body, headers=self._headers)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            detail = f"invalid URL ({exc}); fix {self.variables}_BASE_URL"
            raise unavailable(url, detail, retryable=False) from exc
        except httpx.TimeoutException as exc:
            detail = f"no answer in time ({type(exc).__name__}); retry later"
            raise unavailable(url, detail, retryable=True) from exc
        except httpx.TransportError as exc:
            raise unavailable(
                url,
                f"cannot connect ({type(exc).__name__}: {exc}); start the server or fix "
                f"{self.variables}_BASE_URL",
                retryable=True,
            ) from exc

    def _refusal(self, response: httpx.Response) -> str:
        status = response.status_code
        hint = {
            401: f"check {self.variables}_API_KEY",
            403: f"check {self.variables}_API_KEY",
            404: f"check {self.variables}_BASE_URL (usually ends in /v1) and {self.variables}_MODEL",
        }
        advice = hint.get(status, "retry later" if _retryable(status) else f"check {self.variables}_MODEL")
        return f"HTTP {status} {response.text[:200]!r}; {advice}"


def _retryable(status: int) -> bool:
    return status >= 500 or status in (408, 409, 425, 429)


def configured_endpoint(
    role: str, variables: str, base_url: str | None, api_key: str | None, timeout_seconds: float
) -> JsonEndpoint:
    """The endpoint an ``http`` adapter talks to; ``variables`` is its settings prefix (``MEMSAGA_LLM``).

    :raises AdapterNotConfigured: no base URL is set.
    """
    if not base_url:
        raise AdapterNotConfigured(role, f"{variables}_BASE_URL")
    return JsonEndpoint(base_url, variables=variables, api_key=api_key, timeout_seconds=timeout_seconds)
