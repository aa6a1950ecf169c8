"""The openai provider's client remembers each path's URL (evalkit/providers/openai.py
`_client_class`): the URL it sends to must be exactly the SDK's own, also after `base_url`
is reassigned (the memo is per base URL object, not a stale first answer)."""

from __future__ import annotations

from openai import AsyncOpenAI

from evalkit.providers.openai import _client_class


def test_remembered_urls_are_the_sdks_own_and_follow_a_new_base_url():
    ours = _client_class()(api_key="sk-test", base_url="http://127.0.0.1:9/v1")
    sdk = AsyncOpenAI(api_key="sk-test", base_url="http://127.0.0.1:9/v1")
    for path in ("/chat/completions", "chat/completions", "/files", "/batches?limit=5"):
        first = ours._prepare_url(path)
        assert first == sdk._prepare_url(path)
        assert ours._prepare_url(path) is first  # the second request reuses it
    ours.base_url = sdk.base_url = "http://127.0.0.1:8/proxy/v2"
    moved = ours._prepare_url("/chat/completions")
    assert str(moved) == "http://127.0.0.1:8/proxy/v2/chat/completions"
    assert moved == sdk._prepare_url("/chat/completions")
