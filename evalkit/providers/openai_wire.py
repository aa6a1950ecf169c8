"""The openai provider's hot path: one chat request, built once by the SDK, sent many times.

`AsyncOpenAI.post` builds every request from scratch — request options (a pydantic model),
merged headers, the URL parsed again, an httpx2 Request and Response around an aiohttp one —
which was most of evalkit's client CPU per call (`benchmarks/sdk_floor.py`). Everything it
builds is the same for every chat call of one client except the body and the
`x-stainless-retry-count` header, so `ChatWire.build` asks the SDK's own client to build one
chat request (its `_prepare_options` and `_build_request`: its auth header, base URL, default
and platform headers, timeout) and keeps its URL, headers and timeout. Each call then posts
the prebuilt JSON body on the aiohttp session that the SDK's transport owns (one pool, closed
with the client), and reads the answer's bytes.

The SDK still owns the policy, not a copy of it: each attempt's outcome goes through its
`_should_retry` (408/409/429/5xx, `x-should-retry`, a too-long `Retry-After`),
`_calculate_retry_timeout` (`Retry-After` / `retry-after-ms`, else its backoff with jitter)
and `_make_status_error_from_response` (RateLimitError, AuthenticationError, ... with the
response and body), and transport failures through the vendored transport's own aiohttp ->
httpx2 exception map into `APITimeoutError` / `APIConnectionError`, retried as the SDK
retries them. The loop mirrors `AsyncAPIClient.request` for a replayable body.

Only a plain client takes this path: a static key, the SDK's aiohttp transport without a
proxy, no provider runtime, workload identity, custom auth or httpx event hooks. Anything
else (or the httpx transport) goes through `SdkPost`, the SDK's low-level `post`, as before.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

# Headers the SDK's request carries that the session sets per request itself: the host and
# the body's length, the connection, and the encodings (aiohttp decodes what it asks for).
_SESSION_HEADERS = ("host", "content-length", "connection", "accept-encoding")
_RETRY_COUNT = "x-stainless-retry-count"
JSON_OPTIONS = {"headers": {"Content-Type": "application/json"}}  # the body is prebuilt JSON
CHAT_PATH = "/chat/completions"


def http_library() -> Any:
    """The SDK's HTTP library (httpx2 in openai >= 3, httpx before)."""
    try:
        import httpx2 as http
    except ImportError:  # older openai releases are built on httpx
        import httpx as http
    return http


class SdkPost:
    """A chat call through the SDK's low-level `post`: any transport, proxies, refreshable
    keys. `post(body)` returns the answer's bytes and its send-to-last-byte seconds."""

    fast = False

    def __init__(self, client: Any):
        self.client = client

    async def post(self, content: bytes) -> tuple[bytes, float]:
        start = time.perf_counter()
        raw = await self.client.post(CHAT_PATH, content=content, options=JSON_OPTIONS,
                                     cast_to=http_library().Response)
        try:  # the HTTP library's own clock, final attempt only
            latency = raw.elapsed.total_seconds()
        except Exception:
            latency = time.perf_counter() - start
        return raw.content, latency


class ChatWire:
    """The SDK's chat request for one client, prebuilt; `post(body)` sends it (see above)."""

    fast = True

    def __init__(self, client: Any, session: Any, meter: Any, url: Any, headers: list,
                 timeout: Any, options: Any):
        import aiohttp
        from multidict import CIMultiDict
        from openai import APIConnectionError, APITimeoutError, OpenAIError
        from openai._httpx2 import request_exceptions, timeout_exceptions

        self.client, self.session, self.meter = client, session, meter
        self.url, self.timeout, self.options = url, timeout, options
        self._base_headers = [(k, v) for k, v in headers if k.lower() not in _SESSION_HEADERS
                              and k.lower() != _RETRY_COUNT]
        self._by_retry: list = []  # the headers of attempt n (its retry count), made once
        self._multidict = CIMultiDict
        self._redirects = bool(getattr(client._client, "follow_redirects", True))
        self._timeouts = timeout_exceptions()
        self._request_errors = request_exceptions()
        self._aiohttp_errors = (aiohttp.ClientError, OSError, asyncio.TimeoutError)
        self._sdk_errors = (APIConnectionError, APITimeoutError, OpenAIError)  # looked up once
        self.deadlines: Deadlines | None = None  # the read timeout (see `Deadlines`)

    @classmethod
    async def build(cls, client: Any, meter: Any) -> ChatWire | SdkPost:
        """This client's chat request as the SDK builds it, or `SdkPost` when the client is
        not a plain one (see the module docstring)."""
        transport = _plain_aiohttp_transport(client)
        if transport is None:
            return SdkPost(client)
        from openai._base_client import get_platform
        from openai._models import FinalRequestOptions
        from openai._utils import asyncify
        from yarl import URL

        if client._platform is None:  # as AsyncAPIClient.request does before its first call
            client._platform = await asyncify(get_platform)()
        options = FinalRequestOptions.construct(method="post", url=CHAT_PATH, content=b"{}",
                                                **JSON_OPTIONS)
        options = await client._prepare_options(options)
        request = client._build_request(options, retries_taken=0)
        await client._prepare_request(request)
        if not isinstance(transport.client, _client_session()):
            transport.client = transport.get_client()  # the SDK's session: one pool for both
        timeout = request.extensions.get("timeout", {})
        deadlines = Deadlines.for_seconds(timeout.get("read"))
        wire = cls(client, transport.client, meter, URL(str(request.url), encoded=True),
                   list(request.headers.multi_items()),
                   _client_timeout(timeout, sock_read=deadlines is None), options)
        wire.deadlines = deadlines
        return wire

    def headers(self, retries_taken: int, key: str | None = None) -> Any:
        """Attempt `retries_taken`'s headers; `key`: the call's idempotency key, if the client
        sends one (none for OpenAI today), the same for every attempt of a call."""
        while len(self._by_retry) <= retries_taken:
            self._by_retry.append(self._multidict(
                [*self._base_headers, (_RETRY_COUNT, str(len(self._by_retry)))]))
        headers = self._by_retry[retries_taken]
        idempotency = self.client._idempotency_header
        if idempotency and key is not None:
            headers = self._multidict(headers)
            headers[idempotency] = key
        return headers

    async def post(self, content: bytes) -> tuple[bytes, float]:
        """Send `content` with the SDK's retry policy; the answer's bytes and the seconds
        from sending the final attempt to reading its last byte."""
        APIConnectionError, APITimeoutError, OpenAIError = self._sdk_errors
        client = self.client
        key = client._idempotency_key() if client._idempotency_header else None
        max_retries = self.options.get_max_retries(client.max_retries)
        meter = self.meter
        for retries_taken in range(max_retries + 1):
            remaining = max_retries - retries_taken
            meter.attempts += 1  # `meter.attempt(self._send, ...)`, inline: no coroutine more
            try:
                try:
                    status, headers, body, latency = await self._send(content, retries_taken, key)
                except meter.connect_errors() as exc:
                    status, headers, body, latency = await meter.after_connect_failure(
                        exc, self._send, content, retries_taken, key)
                else:
                    meter.answered()
            except self._timeouts as err:
                if remaining > 0:
                    await self._sleep(remaining, None)
                    continue
                raise APITimeoutError(request=self._request(content, retries_taken, key)) from err
            except OpenAIError:
                raise  # e.g. the meter's Unreachable: the SDK passes these up unretried
            except self._request_errors as err:
                if remaining > 0:
                    await self._sleep(remaining, None)
                    continue
                raise APIConnectionError(
                    request=self._request(content, retries_taken, key)) from err
            if status < 400:
                return body, latency
            response = self._response(status, headers, body, content, retries_taken, key)
            if remaining > 0 and client._should_retry(response):
                await self._sleep(remaining, response.headers)
                continue
            raise client._make_status_error_from_response(response) from None
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    async def _send(self, content: bytes, retries_taken: int, key: str | None):
        """One attempt: (status, raw headers, body, seconds from send to the last byte)."""
        deadlines = self.deadlines
        task = asyncio.current_task() if deadlines is not None else None
        try:
            start = time.perf_counter()
            if task is not None:
                deadlines.arm(task)
            response = await self.session.request(
                "POST", self.url, data=content, headers=self.headers(retries_taken, key),
                timeout=self.timeout, allow_redirects=self._redirects)
            try:
                body = await response.read()
            finally:
                response.release()
            return response.status, response.raw_headers, body, time.perf_counter() - start
        except asyncio.CancelledError:
            if task is None or not deadlines.expired(task):
                raise  # a cancel of the run's, not the read timeout's
            timed_out = _read_timeout_error()
        except self._aiohttp_errors:
            from openai._vendor.httpx_aiohttp.transport import map_aiohttp_exceptions

            with map_aiohttp_exceptions():  # the transport's own aiohttp -> httpx2 mapping
                raise
        finally:
            if task is not None:
                deadlines.disarm(task)
        from openai._vendor.httpx_aiohttp.transport import map_aiohttp_exceptions

        with map_aiohttp_exceptions():  # as aiohttp's own sock_read timeout is mapped
            raise timed_out

    async def _sleep(self, remaining: int, headers: Any) -> None:
        await asyncio.sleep(self.client._calculate_retry_timeout(remaining, self.options,
                                                                 headers))

    def _request(self, content: bytes, retries_taken: int, key: str | None) -> Any:
        """The attempt as an httpx2 Request, for the SDK's error types (failures only)."""
        return http_library().Request("POST", str(self.url), content=content,
                                      headers=list(self.headers(retries_taken, key).items()))

    def _response(self, status: int, raw_headers: Any, body: bytes, content: bytes,
                  retries_taken: int, key: str | None) -> Any:
        """An error answer as the httpx2 Response the SDK's retry and error code read. The
        body is already decoded, so its Content-Encoding is not passed on."""
        headers = [(k, v) for k, v in raw_headers
                   if k.lower() not in (b"content-encoding", b"content-length")]
        return http_library().Response(status, headers=headers, content=body,
                                       request=self._request(content, retries_taken, key))


def _client_session() -> type:
    from aiohttp import ClientSession

    return ClientSession


def _client_timeout(timeout: dict, *, sock_read: bool = True) -> Any:
    """The SDK's timeout as its aiohttp transport makes it aiohttp's; without `sock_read`,
    the read timeout is left to `Deadlines`: aiohttp's `sock_read` arms a timer when a
    request starts and re-arms it on every chunk received (two to three timer handles per
    call, ~10 us of the loop's CPU at L = 0: as much as the whole journal line), while its
    pool (`connect`) and `sock_connect` timers cost nothing on a pooled connection."""
    from aiohttp import ClientTimeout

    return ClientTimeout(sock_connect=timeout.get("connect"), connect=timeout.get("pool"),
                         sock_read=timeout.get("read") if sock_read else None)


def _read_timeout_error() -> Exception:
    from aiohttp import SocketTimeoutError

    return SocketTimeoutError("Timeout on reading data from socket")


class Deadlines:
    """The SDK's read timeout for every attempt in flight, kept by one timer instead of
    aiohttp's per-call ones: an attempt not answered within `seconds` of being sent is
    cancelled and raises the timeout aiohttp's `sock_read` raises (mapped, as the SDK's
    transport maps it, to its ReadTimeout, then retried or raised as APITimeoutError).

    A chat completion that is not streamed arrives all at once after the model is done, so
    the wait for its first byte is the whole of what `sock_read` measured; a body that
    trickles in for longer than `seconds` in all is now cut where `sock_read` would have
    let each chunk restart its clock. The clock starts as the attempt is handed to aiohttp,
    so a new connection's set-up counts in it (a pooled one, every call but a run's first
    few, has none; a connect that stalls meets aiohttp's own `sock_connect`, the same
    length, first). The check runs every `tick` (a tenth of `seconds`, at most 1 s) while
    attempts are in flight, so a timeout fires within that much of its due time, and stops
    when none is. Python 3.10 cannot tell this cancel from a Ctrl-C's that lands with it
    (no `Task.uncancel`), so there `for_seconds` gives None and aiohttp keeps `sock_read`."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.tick = min(1.0, max(0.005, seconds / 10))
        self._due: dict[asyncio.Task, float] = {}
        self._expired: set[asyncio.Task] = set()
        self._handle: asyncio.TimerHandle | None = None

    @classmethod
    def for_seconds(cls, seconds: float | None) -> Deadlines | None:
        if seconds is None or not hasattr(asyncio.Task, "uncancel"):
            return None
        return cls(float(seconds))

    def arm(self, task: asyncio.Task) -> None:
        loop = asyncio.get_running_loop()
        self._due[task] = loop.time() + self.seconds
        if self._handle is None:
            self._handle = loop.call_later(self.tick, self._check)

    def disarm(self, task: asyncio.Task) -> None:
        self._due.pop(task, None)
        if task in self._expired:  # cancelled, but it never surfaced as a CancelledError in
            self._expired.discard(task)  # `_send` (aiohttp raised something else): undo the
            task.uncancel()              # count, so a later cancel is not taken for this one

    def expired(self, task: asyncio.Task) -> bool:
        """Whether `task`'s cancel was this timeout's (and only its: a Ctrl-C that came too
        stays a cancel)."""
        if task not in self._expired:
            return False
        self._expired.discard(task)
        return task.uncancel() == 0  # 0: no other cancel is pending on it

    def _check(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for task, due in list(self._due.items()):
            if due <= now:
                del self._due[task]
                self._expired.add(task)
                task.cancel()
        self._handle = loop.call_later(self.tick, self._check) if self._due else None


def _plain_aiohttp_transport(client: Any) -> Any:
    """The SDK's aiohttp transport that would carry this client's chat calls, if nothing
    but the SDK's request building stands between them (else None: use `SdkPost`)."""
    try:
        from openai._vendor.httpx_aiohttp.transport import AiohttpTransport
    except ImportError:
        return None
    http = client._client
    if (client.custom_auth is not None or getattr(client, "_provider_runtime", None) is not None
            or getattr(client, "_api_key_provider", None) is not None
            or getattr(client, "_workload_identity_auth", None) is not None
            or any(getattr(http, "_event_hooks", {}).values())
            or getattr(http, "_auth", None) is not None or len(getattr(http, "cookies", ()))):
        return None
    try:
        transport = http._transport_for_url(client._prepare_url(CHAT_PATH))
    except Exception:
        return None
    if (type(transport) is not AiohttpTransport or transport.proxy is not None
            or transport.uds is not None):
        return None
    return transport
