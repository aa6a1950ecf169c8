"""The openai provider's prebuilt chat request (evalkit/providers/openai_wire.py) against the
loopback server: it sends what the SDK's own `post` sends, keeps the SDK's retry policy and
typed errors, counts its attempts, and steps aside for any client it cannot take."""

from __future__ import annotations

import asyncio
import socket

import pytest
from openai_server import KEY, FakeOpenAI, openai_env

from evalkit.providers.openai import OpenAIProvider, _named_error
from evalkit.providers.openai_wire import _SESSION_HEADERS, ChatWire, SdkPost
from evalkit.strategies.request import Request

_env = openai_env  # autouse: the test key in the environment, no OPENAI_BASE_URL
QUESTION = Request("qa", "Answer briefly.", "when is the office open?")


def _sent_headers(server) -> list[dict[str, str]]:
    return [{k: v for k, v in c.headers.items() if k not in _SESSION_HEADERS}
            for c in server.chat_calls()]


def test_the_prebuilt_request_carries_exactly_the_sdks_headers_and_body():
    with FakeOpenAI(api_key=KEY) as server:
        provider = OpenAIProvider(base_url=server.base_url)

        async def both():
            wire = await provider._wire(server.base_url)
            ours = await provider.complete(QUESTION)
            sdk = SdkPost(wire.client)  # the SDK's own post, same client and transport
            answer, _ = await sdk.post(provider_body(provider))
            await provider.aclose()
            return wire, ours, answer

        wire, ours, answer = asyncio.run(both())
        calls = server.chat_calls()
        fast, sdk = _sent_headers(server)
    assert wire.fast and ours.text
    assert fast == sdk  # auth, user agent, x-stainless-* (retry count, timeout), content type
    assert fast["authorization"] == f"Bearer {KEY}" and fast["x-stainless-retry-count"] == "0"
    assert fast["user-agent"].startswith("AsyncOpenAI/Python ")  # the SDK's own name
    assert calls[0].body == calls[1].body


def provider_body(provider: OpenAIProvider) -> bytes:
    import json

    return json.dumps(provider.body(QUESTION), ensure_ascii=False,
                      separators=(",", ":")).encode()


def test_retries_count_up_in_the_header_and_in_the_meter():
    with FakeOpenAI(api_key=KEY, fault_rate=1.0, fault_attempts=2,
                    fault_retry_after=0.01) as server:
        provider = OpenAIProvider(base_url=server.base_url, max_retries=3)
        completion = asyncio.run(provider.complete(QUESTION))
        calls = server.chat_calls()
    assert completion.text
    assert [c.status for c in calls] == [429, 500, 200]
    assert [c.retry_count for c in calls] == ["0", "1", "2"]
    assert provider.transport_counts()["http_attempts"] == 3


def test_a_status_error_past_the_retries_is_the_sdks_typed_error_with_its_response():
    import openai

    with FakeOpenAI(api_key=KEY, fault_rate=1.0, fault_attempts=5,
                    fault_retry_after=0.01) as server:
        provider = OpenAIProvider(base_url=server.base_url, max_retries=0)

        async def raw_error():
            wire = await provider._wire(server.base_url)
            try:
                await wire.post(provider_body(provider))
            finally:
                await provider.aclose()

        with pytest.raises(openai.RateLimitError) as caught:
            asyncio.run(raw_error())
        with pytest.raises(_named_error("InternalServerError")):  # the next fault is a 500
            asyncio.run(provider.complete(Request("qa", "Answer briefly.", "another one")))
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "0.01"
    assert caught.value.body["message"]  # the error body, parsed as the SDK parses it


def test_a_refused_connection_fails_as_through_the_sdks_post_after_its_retries():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    failures = []
    for sdk in (False, True):
        provider = OpenAIProvider(base_url=f"http://127.0.0.1:{port}/v1", max_retries=1,
                                  connect_attempts=100)
        provider.meter.reached = True  # past the first answer: the SDK's retry and backoff

        async def call(provider=provider, sdk=sdk):
            wire = await provider._wire(provider.base_url)
            try:
                await (SdkPost(wire.client) if sdk else wire).post(b"{}")
            except Exception as exc:
                failures.append((type(exc), provider.transport_counts()))
            finally:
                await provider.aclose()

        asyncio.run(call())
    (ours, ours_counts), (theirs, theirs_counts) = failures
    # the vendored transport maps aiohttp's refusal to httpx2's ConnectTimeout, so the SDK
    # says APITimeoutError; the prebuilt request uses the same map and says the same
    assert ours is theirs and ours.__module__ == "openai"
    assert ours_counts == theirs_counts == {"http_attempts": 2, "connect_failures": 2}


def test_clients_it_cannot_take_go_through_the_sdks_post():
    with FakeOpenAI(api_key=KEY) as server:
        httpx = OpenAIProvider(base_url=server.base_url, http_transport="httpx")
        hooked = OpenAIProvider(base_url=server.base_url)

        async def kinds():
            client = hooked._client(server.base_url)
            client._client.event_hooks = {"request": [_hook], "response": []}
            seen = [await httpx._wire(server.base_url), await hooked._wire(server.base_url)]
            texts = [(await p.complete(QUESTION)).text for p in (httpx, hooked)]
            for p in (httpx, hooked):
                await p.aclose()
            return seen, texts

        seen, texts = asyncio.run(kinds())
        calls = server.chat_calls()
    assert [type(w) for w in seen] == [SdkPost, SdkPost] and all(texts)
    assert len(calls) == 2 and _HOOKED == [True]


_HOOKED: list[bool] = []


async def _hook(request) -> None:
    _HOOKED.append(True)


def test_concurrent_first_calls_build_one_request_and_a_new_loop_builds_again():
    with FakeOpenAI(api_key=KEY) as server:
        provider = OpenAIProvider(base_url=server.base_url)
        built = []
        original = ChatWire.build.__func__

        async def counting(cls, client, meter):
            built.append(client)
            return await original(cls, client, meter)

        async def many():
            await asyncio.gather(*(provider.complete(QUESTION) for _ in range(8)))
            await provider.aclose()

        ChatWire.build = classmethod(counting)
        try:
            asyncio.run(many())
            asyncio.run(many())  # a second run: fresh loop, fresh client and session
        finally:
            ChatWire.build = classmethod(original)
        assert len(server.chat_calls()) == 16
    assert len(built) == 2 and built[0] is not built[1]


def test_the_worst_case_input_bound_is_rounded_up_by_at_most_a_32nd():
    from evalkit.providers.openai import _coarse

    for n in [*range(0, 300), 700, 1023, 1024, 1025, 4097, 123_457, 10**7 + 1]:
        assert n <= _coarse(n) <= n + n / 32
    assert _coarse(63) == 63 and _coarse(700) == 704  # exact below 64; 16-token steps at 700


def test_the_posted_body_is_the_request_body_with_the_messages_serialised_once():
    import json

    from evalkit.providers.openai import _content

    provider = OpenAIProvider(base_url="http://127.0.0.1:9/v1", require_key=False)
    for request in (QUESTION, Request("classification", "Klassifiziere. 日本", 'a "q"\u2028',
                                      labels=(("billing", "Geld"),)),
                    Request("extraction", "Extract.", "x",
                            response_format={"type": "json_object"})):
        body = provider.body(request)
        assert json.loads(_content(body, request)) == body
        assert request.messages_json() == json.dumps(request.messages(), sort_keys=True,
                                                     ensure_ascii=False)
        for _ in range(2):  # the second time the part after the messages is the kept one
            limit = provider.output_limit(request)
            content, structured = provider._content(request, provider.model_for(request), limit)
            assert json.loads(content) == body and structured == ("response_format" in body)
    # kept per model and limit: another model's or task's body is its own
    other = Request("qa", "Answer briefly.", "when?", model="gpt-4.1-mini")
    content, _ = provider._content(other, "gpt-4.1-mini", provider.output_limit(other))
    assert json.loads(content) == provider.body(other)


def test_an_idempotency_key_is_one_per_call_across_its_retries_even_when_calls_overlap():
    with FakeOpenAI(api_key=KEY, fault_rate=1.0, fault_attempts=1,
                    fault_retry_after=0.05) as server:
        provider = OpenAIProvider(base_url=server.base_url, max_retries=2)

        async def two():
            provider._client(server.base_url)._idempotency_header = "Idempotency-Key"
            await asyncio.gather(provider.complete(QUESTION),
                                 provider.complete(Request("qa", "Answer.", "another")))
            await provider.aclose()

        asyncio.run(two())
        calls = server.chat_calls()
    keys: dict[str, set[str]] = {}
    for call in calls:
        keys.setdefault(call.last_user, set()).add(call.headers["idempotency-key"])
    assert len(calls) == 4 and all(len(k) == 1 for k in keys.values())
    assert len(set.union(*keys.values())) == 2


def test_every_client_shares_one_verifying_tls_context():
    """The CA bundle is loaded once per process (19 ms of CPU per client before): every
    client's transport gets the same context, and it still verifies certificates and
    hostnames as the SDK's default does."""
    import ssl

    from evalkit.providers.openai import _http_client

    first, second = _http_client("aiohttp", 5.0), _http_client("aiohttp", 7.0)
    context = first._transport.ssl_context
    assert second._transport.ssl_context is context
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_an_attempt_past_the_read_timeout_times_out_on_the_prebuilt_path_and_is_retried():
    """The read timeout is the wire's own deadline (`Deadlines`), not aiohttp's sock_read:
    an unanswered attempt still ends as the SDK's APITimeoutError after its retries."""
    import time

    with FakeOpenAI(api_key=KEY, slow={"office": 2.0}) as server:
        provider = OpenAIProvider(base_url=server.base_url, timeout_s=0.3, max_retries=1)

        async def call():
            wire = await provider._wire(server.base_url)
            start = time.perf_counter()
            try:
                await provider.complete(QUESTION)
            except Exception as exc:
                return wire, exc, time.perf_counter() - start, wire.deadlines._handle
            finally:
                await provider.aclose()
            return wire, None, 0.0, None

        wire, exc, took, handle = asyncio.run(call())
    assert wire.fast and wire.deadlines is not None and wire.deadlines.seconds == 0.3
    assert type(exc).__name__ == "APITimeoutError"
    assert provider.meter.attempts == 2  # the first try and its one retry, each cut short
    assert 0.6 <= took < 1.9  # two deadlines of 0.3 s (and a backoff), not the 2 s answer
    assert handle is None  # nothing in flight: the deadline timer stopped


def test_a_cancel_during_a_call_stays_a_cancel_not_a_timeout():
    with FakeOpenAI(api_key=KEY, slow={"office": 2.0}) as server:
        provider = OpenAIProvider(base_url=server.base_url, timeout_s=0.2, max_retries=0)

        async def cancelled_then_timed_out():
            wire = await provider._wire(server.base_url)
            task = asyncio.ensure_future(provider.complete(QUESTION))
            await asyncio.sleep(0.05)
            task.cancel()  # a second Ctrl-C, before the deadline
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not wire.deadlines._due  # disarmed by the cancel
            # the deadline then passes for nothing: no stray cancel lands anywhere (it would
            # raise out of this sleep)
            await asyncio.sleep(0.4)
            assert not wire.deadlines._expired and wire.deadlines._handle is None
            await provider.aclose()

        asyncio.run(cancelled_then_timed_out())


def test_the_deadline_timer_runs_only_while_attempts_are_in_flight():
    from evalkit.providers.openai_wire import Deadlines

    async def go():
        d = Deadlines(10.0)
        assert d.tick == 1.0 and Deadlines(0.05).tick == 0.005
        task = asyncio.current_task()
        d.arm(task)
        assert d._handle is not None
        d.disarm(task)
        d._check()  # the next tick finds nothing armed and stops
        assert d._handle is None and not d.expired(task)
        assert Deadlines.for_seconds(None) is None

    asyncio.run(go())
