"""The `openai` provider: OpenAI and every OpenAI-compatible server through the official SDK.

One `AsyncOpenAI` client per base URL (vLLM, llama.cpp server, Ollama, LM Studio all speak
Chat Completions). The key comes from the environment only (`api_key_env`, default
OPENAI_API_KEY) and is never stored: not in the cache key, not in run.json, and it is scrubbed
from any error message before the runner journals it. The SDK does the retrying — 408/409/429/
5xx, timeouts and connection errors, with exponential backoff or the server's `Retry-After` /
`retry-after-ms` (up to 120 s; longer ones are not retried) — `max_retries` times; whatever still
fails is raised as an error named after the SDK's class, so the journal says e.g.
`RateLimitError: Error code: 429 ...` for that item and the run goes on.

Costs come from a `PriceBook` (evalkit.providers.pricing), resolved *before* the call, so a
model with no known price fails without spending anything.
`usage.prompt_tokens_details.cached_tokens` is recorded apart and priced at the cached rate.

Every request carries an output limit (`output_limit`): `max_completion_tokens` if configured,
else the task type's default (`TaskType.default_output_tokens`, overridable per type by
`output_limits`). It is sent as `max_completion_tokens` to OpenAI itself (which refuses both
at once, and whose o-series refuse `max_tokens`) and as both names to any other server
(llama.cpp's server honours only `max_tokens`); `max_tokens_param` overrides that choice.
`estimate_cost(request)` is what the runner's budget reserves for a call, its worst case: an
upper bound of the prompt's tokens (`input_token_bound`) at the input price plus the output
limit at the output price. A server that answers past the limit is marked as ignoring it
(`output_limit_ignored`): that answer is billed at its real usage, and from then on the
output bound is the longest answer seen times `untrusted_output_factor`, not the limit: an
estimate (nothing bounds what such a server may send), so the budget is a guarantee only
against servers that honour one of the two names.

A server that cannot be reached fails fast: `connect_attempts` connection failures in a row
raise `ServerUnreachable` (evalkit.providers.http_meter; it also counts HTTP attempts).
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from evalkit import secrets
from evalkit.config import ConfigError, ExperimentConfig
from evalkit.providers.base import (
    Completion,
    FineTuneOptions,
    Provider,
    ProviderSetup,
    ServerUnreachable,
    Usage,
)
from evalkit.providers.http_meter import HttpMeter
from evalkit.providers.pricing import PriceBook
from evalkit.strategies.request import Request
from evalkit.tasks import output_token_defaults

NO_KEY_PLACEHOLDER = "not-needed"  # local servers without auth still need a non-empty key
_OPENAI_HOSTS = ("api.openai.com",)

_LIMIT_PARAMS = {"both": ("max_completion_tokens", "max_tokens"),
                 "max_completion_tokens": ("max_completion_tokens",),
                 "max_tokens": ("max_tokens",)}
# Tokens a chat template adds around each message (role, separators) and once per request;
# generous next to OpenAI's 3-4 and Llama/ChatML's 4-6, since the bound must never be short.
_MESSAGE_OVERHEAD_TOKENS = 12
_REQUEST_OVERHEAD_TOKENS = 12


class OpenAIProviderError(RuntimeError):
    """Base of the errors this provider raises; subclasses carry the SDK's class name."""


class MalformedResponse(OpenAIProviderError):
    """The server answered 2xx with a body that is not a chat completion."""


_ERROR_CLASSES: dict[str, type[OpenAIProviderError]] = {}


def _named_error(name: str) -> type[OpenAIProviderError]:
    """An exception class named like the SDK's (RateLimitError, ...), for the journal."""
    if name not in _ERROR_CLASSES:
        _ERROR_CLASSES[name] = type(name, (OpenAIProviderError,), {"__module__": __name__})
    return _ERROR_CLASSES[name]


def approx_tokens(messages: list[dict[str, str]]) -> int:
    """A tokenizer-free token estimate: ~4 characters a token plus OpenAI's per-message framing.

    No tokenizer is bundled on purpose (tiktoken downloads its vocabularies at run time); the
    estimate is for budgets and `evalkit estimate`, never for billing — bills use `usage`.
    """
    return sum(math.ceil(len(m.get("content", "")) / 4) + 4 for m in messages) + 3


def input_token_bound(messages: list[dict[str, str]]) -> int:
    """An upper bound of a prompt's tokens under any byte-level BPE tokenizer, without one.

    Every token of a byte-level BPE (OpenAI's cl100k/o200k, Llama 3, Qwen) or of a
    SentencePiece model with byte fallback covers at least one UTF-8 byte, so the byte count
    bounds the token count whatever the text (CJK, emoji, digits); chars/4 undercounts those
    several times over. tiktoken would be exact for OpenAI models but downloads its
    vocabularies on first use, which a run must not depend on.
    """
    return sum(_utf8_len(m.get("content", "")) + _utf8_len(m.get("role", ""))
               + _MESSAGE_OVERHEAD_TOKENS for m in messages) + _REQUEST_OVERHEAD_TOKENS


def _utf8_len(text: str) -> int:
    """len(text.encode("utf-8")), without encoding an ASCII text (`isascii` is O(1) on a
    str: CPython records it), which most prompts are."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _content(body: dict[str, Any], request: Request) -> bytes:
    """`body` as the JSON bytes posted, its messages embedded from `request.messages_json()`
    (serialised once per request, shared with the cache key) instead of encoded again."""
    return f'{{"messages":{request.messages_json()}{_tail(body)}'.encode()


def _tail(body: dict[str, Any]) -> str:
    """What follows the messages in `body`'s JSON: `,"model":...}` (or `}`)."""
    rest = json.dumps({k: v for k, v in body.items() if k != "messages"},
                      ensure_ascii=False, separators=(",", ":"))
    return "}" if rest == "{}" else "," + rest[1:]


def _coarse(tokens: int) -> int:
    """`tokens` rounded up to six significant bits (at most 1/32 more, exact below 64).

    Still an upper bound, and the bounds of similar prompts now repeat, so the price book's
    memo answers them instead of genai-prices' unit machinery (~50 us a call, the largest
    per-call cost left in the runner before this)."""
    step = 1 << max(0, tokens.bit_length() - 6)
    return -(-tokens // step) * step


@functools.lru_cache(maxsize=64)
def _hostname(url: str) -> str | None:
    """The URL's host, parsed once per URL (every request body asks which server it goes to)."""
    return urlsplit(url).hostname


@functools.lru_cache(maxsize=256)
def _longest_label(labels: tuple[tuple[str, str], ...]) -> int:
    """The longest label's UTF-8 length; one task's labels are the same tuple every call."""
    return max((len(label.encode()) for label, _ in labels), default=0)


def redact_url(url: str | None) -> str | None:
    """The URL without user:password@ or a credential-named query parameter's value (?api-key=),
    for anything that may be written down."""
    if not url:
        return url
    url = secrets.scrub_query(url)
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


class OpenAIProvider(Provider):
    """Chat Completions against OpenAI or an OpenAI-compatible server.

    `routes` maps a model name to the base URL that serves it (a LoRA registered on another
    server); every other model goes to `base_url`.
    """

    name = "openai"
    cost_is_notional = False  # a server that may bill (a self-hosted one priced per GPU-hour)

    def __init__(self, *, model: str = "gpt-4o-mini", base_url: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", temperature: float | None = 0.0,
                 seed: int | None = 0, max_completion_tokens: int | None = None,
                 output_limits: Mapping[str, int] | None = None,
                 max_tokens_param: str = "auto", max_retries: int = 5,
                 timeout_s: float = 60.0, routes: Mapping[str, str] | None = None,
                 pricing: PriceBook | Mapping[str, Any] | None = None,
                 default_output_tokens: int = 256, untrusted_output_factor: float = 2.0,
                 connect_attempts: int = 5, require_key: bool = True,
                 http_transport: str = "auto", response_format: str = "auto"):
        if max_tokens_param not in ("auto", *_LIMIT_PARAMS):
            raise ValueError("max_tokens_param must be auto, both, max_completion_tokens or "
                             "max_tokens (auto: max_completion_tokens for OpenAI, both for "
                             "other servers)")
        # per request type, each task type's own default (TaskType.default_output_tokens: a
        # label, a short answer, a JSON object, a long-form answer; the judge's verdict), then
        # the config's `output_limits`; a type with neither gets `default_output_tokens`
        limits = {**output_token_defaults(), **dict(output_limits or {})}
        for name, value in [("max_completion_tokens", max_completion_tokens),
                            ("default_output_tokens", default_output_tokens),
                            *((f"output_limits.{k}", v) for k, v in limits.items())]:
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(connect_attempts, int) or connect_attempts < 1:
            raise ValueError(f"connect_attempts must be an integer >= 1, got {connect_attempts!r}")
        if http_transport not in HTTP_TRANSPORTS:
            raise ValueError(f"http_transport must be one of {', '.join(HTTP_TRANSPORTS)}, "
                             f"got {http_transport!r}")
        self.http_transport = http_transport
        if response_format not in RESPONSE_FORMATS:
            raise ValueError(f"response_format must be one of {', '.join(RESPONSE_FORMATS)} "
                             f"(auto: what the task asks; json_object: JSON mode for servers "
                             f"without json_schema; none: instructions only), got "
                             f"{response_format!r}")
        self.response_format = response_format
        # servers that answered 400 to a response_format: asked with instructions only since
        self._no_response_format: set[str | None] = set()
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        for url in (self.base_url, *(routes or {}).values()):
            if url and redact_url(url) != url:
                raise ValueError("put credentials in the environment (api_key_env), not in the "
                                 "base URL: the URL is recorded in run.json")
        self.api_key_env = api_key_env
        secrets.register_key_env(api_key_env)
        self.temperature = temperature
        self.seed = seed
        self.max_completion_tokens = max_completion_tokens
        self.output_limits = limits
        self.max_tokens_param = max_tokens_param
        self.untrusted_output_factor = float(untrusted_output_factor)
        self.max_retries = max_retries
        self.timeout_s = float(timeout_s)
        self.routes = dict(routes or {})
        self.prices = pricing if isinstance(pricing, PriceBook) else PriceBook.from_section(pricing)
        self.default_output_tokens = default_output_tokens
        self.meter = HttpMeter(connect_attempts=connect_attempts)
        self._clients: dict[str | None, tuple[Any, Any]] = {}
        # base URL -> (loop, its client's prebuilt chat request, or the future of its build)
        self._wires: dict[str | None, tuple[Any, Any, Any]] = {}
        self._limits: dict[tuple[str, int], tuple[Any, int]] = {}  # see output_limit
        self._worst: dict[tuple[str, int, int], float] = {}  # see estimate_cost
        # (model, output limit) -> the body's JSON after its messages (see _content)
        self._tails: dict[tuple[str, int], str] = {}
        self._max_output_seen = 0
        self._cut = 0  # answers cut at the output limit (finish_reason "length")
        self._estimated = 0  # answers the server gave no token count for (billed at bounds)
        self._limit_ignored: str | None = None  # how the server showed it ignores limits
        for url in {self.base_url, *self.routes.values()} if require_key else ():
            self._api_key(url)  # fail now, not once per item, when OpenAI itself has no key

    # --- the Provider interface -------------------------------------------------------------

    @classmethod
    def from_config(cls, setup: ProviderSetup) -> OpenAIProvider:
        """Options from the config's `provider:` section < CLI flags, prices from `pricing:`,
        and a route to the fine-tuned model when the record names another server."""
        opts = options_from_config(setup.config, setup.options, setup.fine_tune)
        g = setup.generation
        for name, value in (("temperature", g.temperature), ("seed", g.seed),
                            ("max_completion_tokens", g.max_tokens)):
            if value is not None:
                opts[name] = value
        if g.epoch and opts.get("seed", 0) is not None:  # a fresh sample per epoch
            opts["seed"] = opts.get("seed", 0) + g.epoch
        return cls(**opts, require_key=setup.calls)

    @classmethod
    def fine_tune(cls, testset, finetune_dir: str, options: FineTuneOptions):
        """A job on an OpenAI-compatible fine-tuning API (files + fine_tuning.jobs)."""
        from evalkit.providers import openai_finetune

        return openai_finetune.train(
            testset, finetune_dir, base_model=options.base_model, base_url=options.base_url,
            config=options.config, n_epochs=options.n_epochs,
            allow_leakage=options.allow_leakage, dry_run=options.dry_run, out=options.out,
            interval_s=options.interval_s, force=options.force, echo=options.echo)

    def price_book(self) -> PriceBook:
        return self.prices

    @property
    def max_output_tokens(self) -> int | None:
        return self.max_completion_tokens

    def model_for(self, request: Request) -> str:
        return request.model or self.model

    def cache_params(self) -> dict[str, Any]:
        """What changes an answer besides model and messages. Never the key."""
        params = {"base_url": redact_url(self.base_url), "temperature": self.temperature,
                  "seed": self.seed, "max_completion_tokens": self.max_completion_tokens,
                  "output_limits": dict(sorted(self.output_limits.items())),
                  "default_output_tokens": self.default_output_tokens,
                  "routes": {m: redact_url(u) for m, u in sorted(self.routes.items())}}
        if self.response_format != "auto":  # absent by default: older cache keys still hit
            params["response_format_mode"] = self.response_format
        return params

    def output_limit(self, request: Request) -> int:
        """The output tokens this request may use: the configured cap, else its task's."""
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        # one task's requests share one labels tuple: its limit is worked out once
        memo = (request.task_type, id(request.labels))
        held = self._limits.get(memo)
        if held is None or held[0] is not request.labels:
            limit = self.output_limits.get(request.task_type, self.default_output_tokens)
            limit = max(limit, _longest_label(request.labels) + 2)  # never too short a label
            held = self._limits[memo] = (request.labels, limit)
        return held[1]

    def body(self, request: Request) -> dict[str, Any]:
        """The Chat Completions request body for `request` (also one Batch API line's body)."""
        body: dict[str, Any] = {"model": self.model_for(request), "messages": request.messages()}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.seed is not None:
            body["seed"] = self.seed
        limit = self.output_limit(request)
        for param in self._limit_params(body["model"]):
            body[param] = limit
        wanted = self._response_format(request)
        if wanted is not None:  # structured output the task type asks for
            body["response_format"] = wanted
        return body

    def _response_format(self, request: Request) -> dict[str, Any] | None:
        """What this server gets as `response_format`: the task's (a strict json_schema or
        JSON mode), JSON mode instead of a schema with `response_format: json_object`, and
        nothing with `none` or once the server refused one (the prompt still asks for JSON)."""
        wanted = request.response_format
        if (wanted is None or self.response_format == "none"
                or self.server_for(self.model_for(request)) in self._no_response_format):
            return None
        if self.response_format == "json_object" and wanted.get("type") == "json_schema":
            return {"type": "json_object"}
        return wanted

    async def complete(self, request: Request) -> Completion:
        model = self.model_for(request)
        price = self.prices.price(model)  # before the call: no spend on an unpriceable model
        url = self.routes.get(model, self.base_url)
        held = self._wires.get(url)  # built for this loop already: no coroutine to await
        wire = (held[1] if held is not None and held[2] is None
                and held[0] is asyncio.get_running_loop() else await self._wire(url))
        limit = self.output_limit(request)
        content, structured = self._content(request, model, limit)
        try:
            answer, latency = await wire.post(content)
        except Exception as exc:
            if not structured or not _refuses_response_format(exc):
                raise self._translate(exc, url) from None
            # a server without structured output (some vLLM/Ollama builds 400 on it): ask
            # once more with the prompt's instructions only, and remember the server
            self._no_response_format.add(url)
            content, _ = self._content(request, model, limit)
            try:
                answer, latency = await wire.post(content)
            except Exception as again:
                raise self._translate(again, url) from None
        data = _json_body(answer)
        text, usage = self._read(data, request.rendered())
        self._check_limit(usage, limit, usage_reported=_counts_output(data))
        self._cut += _was_cut(data)
        return Completion(text=text, usage=usage, latency_s=latency, cost_usd=price.cost(usage),
                          model=model)

    def _content(self, request: Request, model: str, limit: int) -> tuple[bytes, bool]:
        """`body(request)` as the JSON bytes posted, and whether it asks for a
        response_format. The messages are embedded from `request.messages_json()` (made once
        per request, shared with the cache key); what follows them is the same for every
        request of one model and output limit without a response_format, so it is
        serialised once (`_tails`)."""
        if request.response_format is None:
            tail = self._tails.get((model, limit))
            if tail is None:
                tail = self._tails[(model, limit)] = _tail(self.body(request))
            return f'{{"messages":{request.messages_json()}{tail}'.encode(), False
        body = self.body(request)
        return _content(body, request), "response_format" in body

    def completion_from_body(self, body: dict[str, Any], *, model: str,
                             batch: bool = False) -> Completion:
        """A Completion from a chat completion's JSON body (a Batch API result line), priced
        for the requested `model`, at the batch rate (`pricing.batch_price_factor` of the
        live price) when `batch`."""
        text, usage = self._read(body, [])
        self._cut += _was_cut(body)
        factor = self.prices.batch_price_factor if batch else 1.0
        return Completion(text=text, usage=usage, latency_s=0.0,
                          cost_usd=self.prices.price(model).cost(usage) * factor, model=model)

    supports_batches = True

    def server_for(self, model: str) -> str | None:
        return self.routes.get(model, self.base_url)

    def batches(self, base_url: str | None = None):
        """The Batch API client for this provider's server (evalkit.providers.openai_batch)."""
        from evalkit.providers.openai_batch import OpenAIBatches

        return OpenAIBatches(self, base_url=base_url)

    def estimate_cost(self, request: Request) -> float:
        """The most one call can cost, for the runner's budget: an upper bound of its input
        tokens at the full input price (no prompt-cache discount) plus its output limit at
        the output price — or, once the server has ignored a limit, the longest answer seen
        times `untrusted_output_factor`."""
        model = self.model_for(request)
        out = self.output_limit(request)
        if self._limit_ignored is not None:
            out = max(out, math.ceil(self._max_output_seen * self.untrusted_output_factor))
        tokens = _coarse(input_token_bound(request.rendered()))
        memo = (model, tokens, out)  # coarse bounds repeat: priced once each
        worst = self._worst.get(memo)
        if worst is None:
            worst = self.prices.price(model).cost(Usage(input_tokens=tokens, output_tokens=out))
            if len(self._worst) < 4096:
                self._worst[memo] = worst
        return worst

    def transport_counts(self) -> dict[str, int]:
        return self.meter.counts()

    @property
    def output_limit_ignored(self) -> str | None:
        return self._limit_ignored

    def cut_at_limit(self) -> int:
        return self._cut

    def usage_estimated(self) -> int:
        return self._estimated

    def _check_limit(self, usage: Usage, limit: int, *, usage_reported: bool) -> None:
        """Remember the longest answer, and a server that answered past the limit."""
        self._max_output_seen = max(self._max_output_seen, usage.output_tokens)
        if usage.output_tokens > limit and self._limit_ignored is None:
            # without usage from the server, bytes stand in for tokens (perhaps a false
            # alarm; the bound that follows is what this answer was billed at anyway)
            unit = "tokens" if usage_reported else "bytes"
            self._limit_ignored = (f"the server answered {usage.output_tokens} {unit} to a "
                                   f"{limit}-token limit")

    def _limit_params(self, model: str) -> tuple[str, ...]:
        """Which names carry the output limit: OpenAI refuses both at once (and its o-series
        refuse max_tokens); llama.cpp's server reads only max_tokens; vLLM reads either."""
        if self.max_tokens_param != "auto":
            return _LIMIT_PARAMS[self.max_tokens_param]
        url = self.routes.get(model, self.base_url)
        host = _hostname(url) if url else "api.openai.com"
        return _LIMIT_PARAMS["max_completion_tokens" if host in _OPENAI_HOSTS else "both"]

    async def aclose(self) -> None:
        """Close the HTTP clients of the running loop (the runner calls this when it ends)."""
        import asyncio

        loop = asyncio.get_running_loop()
        for url, (owner, client) in list(self._clients.items()):
            if owner is loop:
                await client.close()  # and the aiohttp session its transport and wire share
                del self._clients[url]
                self._wires.pop(url, None)

    # --- internals --------------------------------------------------------------------------

    def _api_key(self, base_url: str | None) -> str:
        key = os.environ.get(self.api_key_env, "")
        if key:
            return key
        host = urlsplit(base_url).hostname if base_url else "api.openai.com"
        if host in _OPENAI_HOSTS:
            raise ValueError(f"set {self.api_key_env} in the environment to call "
                                      f"{host}; the key is never read from flags or files")
        return NO_KEY_PLACEHOLDER  # vLLM/Ollama/llama.cpp without --api-key accept anything

    def _client(self, base_url: str | None):
        """One client per base URL and event loop (each `asyncio.run` gets fresh connections)."""
        import asyncio

        loop = asyncio.get_running_loop()
        held = self._clients.get(base_url)
        if held is None or held[0] is not loop:
            client = _client_class()(api_key=self._api_key(base_url), base_url=base_url,
                                     max_retries=self.max_retries, timeout=self.timeout_s,
                                     http_client=self.meter.metered(
                                         _http_client(self.http_transport, self.timeout_s)))
            self._clients[base_url] = held = (loop, client)
        return held[1]

    async def _wire(self, base_url: str | None):
        """The chat request of `base_url`'s client, prebuilt by the SDK once per client and
        event loop (evalkit.providers.openai_wire.ChatWire; `SdkPost` for a client it cannot
        take). The first calls of a run wait for the one build instead of each building."""
        import asyncio

        loop = asyncio.get_running_loop()
        held = self._wires.get(base_url)
        if held is not None and held[0] is loop:
            return held[1] if held[2] is None else await held[2]
        from evalkit.providers.openai_wire import ChatWire, SdkPost

        client = self._client(base_url)
        building = loop.create_future()
        self._wires[base_url] = (loop, None, building)
        try:
            wire = (SdkPost(client) if self.http_transport == "httpx"
                    else await ChatWire.build(client, self.meter))
        except BaseException as exc:
            self._wires.pop(base_url, None)
            building.set_exception(exc)
            building.exception()  # retrieved: the waiters (if any) raise it themselves
            raise
        self._wires[base_url] = (loop, wire, None)
        building.set_result(wire)
        return wire

    def _read(self, data: Any, messages: list[dict[str, str]]) -> tuple[str, Usage]:
        """Text and usage from a chat completion's JSON; anything else is a MalformedResponse.

        Reads only the fields evalkit uses, from the parsed JSON (no pydantic models: that
        parse was a tenth of the client's time per call). A message whose `content` is null
        (vLLM's reasoning parser when the limit ran out thinking, a tool-call-shaped reply,
        OpenAI's `refusal`) is an answer that says nothing, or its refusal text: the server
        billed it, so it is priced at its usage and scored as the wrong answer it is, not
        dropped from the scores as a failed call whose cost reads $0."""
        try:
            message = data["choices"][0]["message"]
            text = message["content"] if "content" in message else None
        except (IndexError, TypeError, KeyError):
            message = text = None
        if text is None and isinstance(message, dict):
            refusal = message.get("refusal")
            text = refusal if isinstance(refusal, str) else ""
        if not isinstance(text, str):
            raise MalformedResponse("the response has no choices[0].message.content string: "
                                    f"{secrets.scrub(json.dumps(data, default=str)[:200])}")
        text = well_formed(text)
        if text[:16].lstrip().startswith("<think>"):
            text = without_reasoning(text)
        u = data.get("usage")
        if not isinstance(u, dict) or type(u.get("prompt_tokens")) is not int:
            # some servers omit usage: bill the upper bounds rather than pretend it was cheap
            self._estimated += 1
            return text, Usage(input_tokens=input_token_bound(messages),
                               output_tokens=len(text.encode("utf-8")))
        details = u.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else 0
        output = u.get("completion_tokens")
        if type(output) is not int:  # left out or null (some Ollama/vLLM builds, proxies):
            output = len(text.encode("utf-8"))  # its bound, as with no usage at all
            self._estimated += 1
        return text, Usage(input_tokens=u["prompt_tokens"], output_tokens=output,
                           cached_input_tokens=cached if type(cached) is int else 0)

    def _translate(self, exc: Exception, base_url: str | None) -> Exception:
        """The SDK's error as ours, same class name, key scrubbed from the message."""
        message = self._scrub(str(exc))
        if self.meter.unreachable(exc):
            return ServerUnreachable(
                f"cannot reach the server at {redact_url(base_url) or 'https://api.openai.com/v1'}"
                f": {self.meter.connect_attempts} connection attempts in a row failed "
                f"({message}); is it running? (--base-url, provider.base_url or OPENAI_BASE_URL;"
                f" provider.connect_attempts sets how many failures stop the run)")
        if isinstance(exc, json.JSONDecodeError):
            return MalformedResponse(f"the response body is not valid JSON: {message}")
        if isinstance(exc, OpenAIProviderError):
            return type(exc)(message)
        return _named_error(type(exc).__name__)(message)

    def _scrub(self, text: str) -> str:
        return secrets.scrub(text)


_CLIENT_CLASS: list[type] = []


def _client_class() -> type:
    """`AsyncOpenAI`, remembering each request path's full URL for its base URL.

    The SDK parses and joins the base URL and the path again on every request (about a tenth
    of its client CPU per call under cProfile); the result depends on those two only and its
    URL objects are immutable, so one per path is kept. Auth, headers, retries and errors
    stay the SDK's own code."""
    if not _CLIENT_CLASS:
        from openai import AsyncOpenAI

        class Client(AsyncOpenAI):  # named AsyncOpenAI below: the SDK's User-Agent names it
            def _prepare_url(self, url: str):
                memo = self.__dict__.setdefault("_evalkit_urls", {})
                base, held = memo.get(url, (None, None))
                if base is not self._base_url:  # first use, or base_url was reassigned
                    base, held = self._base_url, super()._prepare_url(url)
                    memo[url] = (base, held)
                return held

        Client.__name__ = Client.__qualname__ = "AsyncOpenAI"
        _CLIENT_CLASS.append(Client)
    return _CLIENT_CLASS[0]


HTTP_TRANSPORTS = ("auto", "aiohttp", "httpx")
# Connections per client: never fewer than the runner's workers (--concurrency <= 1024), and
# all of them kept alive between calls, so no call waits for or re-opens a connection.
POOL = 1024


RESPONSE_FORMATS = ("auto", "json_object", "none")


def _refuses_response_format(exc: Exception) -> bool:
    """A 400 whose message names response_format: the server does not do structured output."""
    import openai

    return isinstance(exc, openai.BadRequestError) and "response_format" in str(exc).lower()


def _http_client(transport: str, timeout_s: float):
    """The SDK's HTTP client: its aiohttp transport where installed (about half the client
    CPU per call of its default httpx2 one, measured by benchmarks/sdk_floor.py), else its
    default; the pool sized for any concurrency."""
    import openai

    limits = _http().Limits(max_connections=POOL, max_keepalive_connections=POOL)
    if transport in ("auto", "aiohttp"):
        try:
            import aiohttp  # noqa: F401  (the SDK's transport needs it)
        except ImportError:
            if transport == "aiohttp":
                raise ValueError("http_transport: aiohttp needs the aiohttp package "
                                 "(pip install 'openai[aiohttp]')") from None
        else:
            return openai.DefaultAioHttpClient(limits=limits, timeout=timeout_s,
                                               verify=_ssl_context())
    return openai.DefaultAsyncHttpxClient(limits=limits, timeout=timeout_s,
                                          verify=_ssl_context())


@functools.lru_cache(maxsize=1)
def _ssl_context():
    """The SDK's default TLS context (its HTTP library's, honouring SSL_CERT_FILE and
    SSL_CERT_DIR), made once per process: loading the CA bundle is ~20 ms of CPU, paid
    by every client the SDK builds otherwise (one per base URL and event loop; at 1,000
    items that was 20 us per item). A context is safe to share; its settings are not changed
    after it is made."""
    return _http().create_ssl_context(verify=True, trust_env=True)


@functools.lru_cache(maxsize=1)
def _http():
    """The SDK's HTTP library (httpx2 in openai >= 3, httpx before), looked up once: its
    Limits size the pool."""
    from evalkit.providers.openai_wire import http_library

    return http_library()


def well_formed(text: str) -> str:
    """`text`, with any lone UTF-16 surrogate replaced by U+FFFD.

    JSON may escape half of a surrogate pair (`"\\ud83d"`, a model cut off mid-emoji), and
    json.loads keeps it as a lone surrogate: a str that UTF-8 cannot encode, so the cache key,
    the journal and the report would each fail on it mid-run. The answer is untrusted input;
    what cannot be text is made text once, here, before anything records it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # in a str every surrogate is lone: json.loads joins pairs
        return _SURROGATE.sub("\ufffd", text)
    return text


_SURROGATE = re.compile("[\ud800-\udfff]")


def without_reasoning(text: str) -> str:
    """`text` without the `<think>...</think>` block a reasoning model (Qwen3, DeepSeek-R1)
    opens its content with when its server has no reasoning parser (llama.cpp's server with
    --reasoning-format none, Ollama's older builds). The thoughts name every label and draft
    records, so scored as the answer they made a right label ambiguous and a draft the
    record; vLLM's parser moves them to `reasoning_content`, which evalkit does not read
    either. A block never closed (cut at the limit while thinking) leaves no answer."""
    _, closed, answer = text.partition("</think>")
    return answer.strip() if closed else ""


def _was_cut(data: Any) -> bool:
    """Whether the answer stopped at the output limit (finish_reason "length", which OpenAI,
    vLLM, llama.cpp's server and Ollama all send for it)."""
    try:
        return data["choices"][0]["finish_reason"] == "length"
    except (IndexError, TypeError, KeyError):
        return False


def _counts_output(data: Any) -> bool:
    """Whether the server counted the answer's tokens (else `_read` billed its bytes)."""
    usage = data.get("usage") if isinstance(data, dict) else None
    return isinstance(usage, dict) and type(usage.get("completion_tokens")) is int


def _json_body(content: bytes) -> Any:
    """The parsed body of a 2xx response; a body that is not JSON is a MalformedResponse
    (key scrubbed: a proxy's login page may echo it)."""
    try:
        return json.loads(content)
    except ValueError:
        text = content[:200].decode("utf-8", "replace")
        raise MalformedResponse("the response body is not valid JSON (expected a chat "
                                f"completion): {secrets.scrub(text)!r}") from None


# Keys of the config's `provider:` section that are the retriever's, not the chat provider's.
RETRIEVAL_KEYS = ("embedding_model", "embedding_base_url", "embedding_batch_size")


def options_from_config(cfg: ExperimentConfig, cli_options: Mapping[str, Any],
                        fine_tune: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Provider options for a run: config `provider:` section < CLI flags, plus prices and the
    route to a fine-tuned model served elsewhere. Nothing secret passes through here."""
    section = {k: v for k, v in cfg.section("provider").items() if k not in RETRIEVAL_KEYS}
    for secret in ("api_key", "key", "token"):
        if secret in section:
            raise ConfigError(cfg.path, "keys never go in files; set the environment variable "
                              "named by provider.api_key_env (default OPENAI_API_KEY)",
                              field=f"provider.{secret}")
    import inspect

    known = set(inspect.signature(OpenAIProvider.__init__).parameters) - {"self", "pricing"}
    for name in section:
        if name not in known:
            raise ConfigError(cfg.path, f"unknown option; known: {', '.join(sorted(known))}, "
                              f"{', '.join(RETRIEVAL_KEYS)}", field=f"provider.{name}")
    opts = {**section, **{k: v for k, v in cli_options.items() if v is not None}}
    opts["pricing"] = PriceBook.from_section(cfg.section("pricing"), path=cfg.path)
    if fine_tune and fine_tune.get("base_url") and fine_tune.get("fine_tuned_model"):
        opts["routes"] = {**opts.get("routes", {}),
                          fine_tune["fine_tuned_model"]: fine_tune["base_url"]}
    return opts
