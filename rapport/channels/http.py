"""One HTTP request to a provider, with failures classified: what the webhook, SMS and push adapters share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from rapport.channels.base import http_error, transport_error
from rapport.errors import Terminal

ErrorText = Callable[[httpx.Response], str]
"""Pulls a provider's own error code and message out of an error response (its JSON error shape)."""


async def post(
    client: httpx.AsyncClient | None,
    provider: str,
    url: str,
    *,
    timeout: float,
    error_text: ErrorText | None = None,
    **request: Any,
) -> httpx.Response:
    """POST to ``url`` and return the 2xx response.

    Raises ``Transient`` for connection failures, timeouts, 408/429 and 5xx, and ``Terminal`` for every
    other status, each naming the status and the provider's text. Without a ``client``, a short-lived
    one is used (fine for tests and low volume; a worker passes its pooled client).
    """
    try:
        if client is None:
            async with httpx.AsyncClient(timeout=timeout) as own:
                response = await own.post(url, **request)
        else:
            response = await client.post(url, timeout=timeout, **request)
    except httpx.TransportError as exc:
        raise transport_error(provider, exc) from exc
    if not response.is_success:
        raise http_error(provider, response, _safe_text(response, error_text))
    return response


def _safe_text(response: httpx.Response, error_text: ErrorText | None) -> str:
    """The provider's error text, falling back to the raw body when its JSON is not what we expect."""
    if error_text is not None:
        try:
            return error_text(response)
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    return response.text


def json_object(response: httpx.Response, provider: str) -> dict[str, Any]:
    """A 2xx response body that must be a JSON object; anything else means the endpoint is not the
    provider we think it is, which retrying will not change."""
    try:
        body = response.json()
    except ValueError as exc:
        raise Terminal(f"{provider} accepted the request but answered with no JSON: {response.text[:100]!r}") from exc
    if not isinstance(body, dict):
        raise Terminal(f"{provider} accepted the request but answered with JSON that is not an object")
    return body

