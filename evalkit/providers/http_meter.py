"""What the HTTP layer under the OpenAI SDK did: attempts sent, and a server that cannot be reached.

The SDK retries inside one call, so the provider alone cannot say how many HTTP requests a
run sent. `HttpMeter.metered(client)` wraps the `send` of the SDK's HTTP client (httpx2, or
its aiohttp transport): every attempt (first try or retry) is counted there, and so are
connection failures (refused, reset before a response, connect timeout).

Connection failures in a row are what a dead server looks like. Before the server has
answered anything, the meter retries a refused connection itself, quickly (0.1 s, doubling,
capped at 1 s), instead of the SDK's 0.5-8 s backoff on every item; after `connect_attempts`
failures in a row it raises `Unreachable`, an `openai.OpenAIError`, which the SDK passes up
without retrying. Any response (even a 4xx/5xx) resets the count. The same count applies
later in the run (between the SDK's retries), so a server that dies mid-run stops the run
after `connect_attempts` failed connections rather than failing every remaining item slowly.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

_FIRST_PAUSE_S, _MAX_PAUSE_S = 0.1, 1.0


def _httpx() -> Any:
    """The HTTP library the installed SDK is built on (httpx2 for openai 3, httpx before)."""
    try:
        import httpx2
        return httpx2
    except ImportError:  # pragma: no cover - older SDKs
        import httpx
        return httpx


class HttpMeter:
    """Counts HTTP attempts and connection failures; says when a server is unreachable."""

    def __init__(self, *, connect_attempts: int = 5):
        self.connect_attempts = connect_attempts
        self.attempts = 0
        self.connect_failures = 0          # over the run
        self.failures_in_a_row = 0         # since the last response
        self.reached = False               # any response seen

    def counts(self) -> dict[str, int]:
        return {"http_attempts": self.attempts, "connect_failures": self.connect_failures}

    def unreachable(self, exc: BaseException) -> bool:
        """Whether `exc` (as the SDK raised it) is the meter's own give-up."""
        return isinstance(exc, _unreachable_class())

    def metered(self, client: Any) -> Any:
        """`client` (the SDK's httpx2/aiohttp client) with its `send` counted and watched."""
        ref, cls_send = weakref.ref(client), type(client).send  # no cycle: freed as before

        async def send(request, **kwargs):
            return await cls_send(ref(), request, **kwargs)

        async def metered_send(request, **kwargs):
            return await self.attempt(send, request, **kwargs)

        client.send = metered_send  # the SDK calls client.send(request, ...) per attempt
        return client

    async def attempt(self, send, *args, **kwargs):
        """`await send(*args, **kwargs)`, one HTTP attempt, counted and watched: the SDK's
        client's `send`, or the provider's own prebuilt-request send (evalkit.providers.
        openai_wire, which makes these calls itself rather than through one more coroutine
        per call), which raises the same httpx2 errors."""
        self.attempts += 1
        try:
            response = await send(*args, **kwargs)
        except self.connect_errors() as exc:
            return await self.after_connect_failure(exc, send, *args, **kwargs)
        self.answered()
        return response

    @staticmethod
    def connect_errors() -> tuple[type, ...]:
        """The failures that are a connection not made (refused, reset, timed out)."""
        httpx = _httpx()
        return (httpx.ConnectError, httpx.ConnectTimeout)

    def answered(self) -> None:
        """An attempt got a response (any status): the server is there."""
        self.reached = True
        self.failures_in_a_row = 0

    async def after_connect_failure(self, exc: BaseException, send, *args, **kwargs):
        """After `send` failed to connect (`exc`): count it, and raise `Unreachable` after
        `connect_attempts` in a row; re-raise it for the SDK's own retry and backoff once the
        server has answered before (or on a connect timeout), as for any transient failure;
        else, never answered yet, retry fast, right here, until it answers or gives up."""
        pause = _FIRST_PAUSE_S
        while True:
            self.connect_failures += 1
            self.failures_in_a_row += 1
            if self.failures_in_a_row >= self.connect_attempts:
                raise _unreachable_class()(str(exc) or type(exc).__name__) from exc
            if self.reached or isinstance(exc, _httpx().ConnectTimeout):
                raise exc
            await asyncio.sleep(pause)
            pause = min(pause * 2, _MAX_PAUSE_S)
            self.attempts += 1
            try:
                response = await send(*args, **kwargs)
            except self.connect_errors() as again:
                exc = again
                continue
            self.answered()
            return response


_UNREACHABLE: list[type] = []


def _unreachable_class() -> type:
    """`Unreachable(openai.OpenAIError)`, made on first use so importing this loads no SDK."""
    if not _UNREACHABLE:
        from openai import OpenAIError

        _UNREACHABLE.append(type("Unreachable", (OpenAIError,), {
            "__doc__": "Too many connection failures in a row; the SDK does not retry this."}))
    return _UNREACHABLE[0]
