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
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from evalkit import secrets
from evalkit.providers.base import Completion, FineTuneOptions, Provider, ProviderSetup, Usage
from evalkit.providers.pricing import PriceBook
from evalkit.strategies.request import Request

NO_KEY_PLACEHOLDER = "not-needed"  # local servers without auth still need a non-empty key
_OPENAI_HOSTS = ("api.openai.com",)


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


def redact_url(url: str | None) -> str | None:
    """The URL without user:password@, for anything that may be written down."""
    if not url:
        return url
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
                 max_tokens_param: str = "max_completion_tokens", max_retries: int = 5,
                 timeout_s: float = 60.0, routes: Mapping[str, str] | None = None,
                 pricing: PriceBook | Mapping[str, Any] | None = None,
                 default_output_tokens: int = 256, require_key: bool = True,
                 http_transport: str = "auto", response_format: str = "auto"):
        if max_tokens_param not in ("max_completion_tokens", "max_tokens"):
            raise ValueError("max_tokens_param must be 'max_completion_tokens' or 'max_tokens' "
                             "(older OpenAI-compatible servers only know max_tokens)")
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
        self.max_tokens_param = max_tokens_param
        self.max_retries = max_retries
        self.timeout_s = float(timeout_s)
        self.routes = dict(routes or {})
        self.prices = pricing if isinstance(pricing, PriceBook) else PriceBook.from_section(pricing)
        self.default_output_tokens = default_output_tokens
        self._clients: dict[str | None, tuple[Any, Any]] = {}
        self._max_output_seen = 0
        self._input_ratio = 1.0  # server-counted / estimated prompt tokens, the largest seen
        for url in {self.base_url, *self.routes.values()} if require_key else ():
            self._api_key(url)  # fail now, not once per item, when OpenAI itself has no key

    # --- the Provider interface -------------------------------------------------------------

    @classmethod
    def from_config(cls, setup: ProviderSetup) -> OpenAIProvider:
        """Options from the config's `provider:` section < CLI flags, prices from `pricing:`,
        and a route to the fine-tuned model when the record names another server."""
        opts = options_from_config(setup.config_path, setup.options, setup.fine_tune)
        return cls(**opts, require_key=setup.calls)

    @classmethod
    def fine_tune(cls, testset, finetune_dir: str, options: FineTuneOptions):
        """A job on an OpenAI-compatible fine-tuning API (files + fine_tuning.jobs)."""
        from evalkit.providers import openai_finetune

        return openai_finetune.train(
            testset, finetune_dir, base_model=options.base_model, base_url=options.base_url,
            config_path=options.config_path, n_epochs=options.n_epochs,
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
                  "routes": {m: redact_url(u) for m, u in sorted(self.routes.items())}}
        if self.response_format != "auto":  # absent by default: older cache keys still hit
            params["response_format_mode"] = self.response_format
        return params

    def body(self, request: Request) -> dict[str, Any]:
        """The Chat Completions request body for `request` (also one Batch API line's body)."""
        body: dict[str, Any] = {"model": self.model_for(request), "messages": request.messages()}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.seed is not None:
            body["seed"] = self.seed
        if self.max_completion_tokens is not None:
            body[self.max_tokens_param] = self.max_completion_tokens
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
        client = self._client(self.routes.get(model, self.base_url))
        body = self.body(request)
        messages = body["messages"]
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        start = time.perf_counter()
        try:
            raw = await self._post(client, content)
        except Exception as exc:
            if "response_format" not in body or not _refuses_response_format(exc):
                raise self._translate(exc) from None
            # a server without structured output (some vLLM/Ollama builds 400 on it): ask
            # once more with the prompt's instructions only, and remember the server
            self._no_response_format.add(self.server_for(model))
            body = self.body(request)
            content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
            start = time.perf_counter()
            try:
                raw = await self._post(client, content)
            except Exception as again:
                raise self._translate(again) from None
        latency = _elapsed(raw, since=start)
        text, usage = self._read(_json_body(raw), messages)
        self._max_output_seen = max(self._max_output_seen, usage.output_tokens)
        # calibrate the tokenizer-free estimate against what the server counted
        self._input_ratio = max(self._input_ratio, usage.input_tokens / approx_tokens(messages))
        return Completion(text=text, usage=usage, latency_s=latency, cost_usd=price.cost(usage),
                          model=model)

    @staticmethod
    async def _post(client: Any, content: bytes) -> Any:
        # the SDK's low-level post: its auth, base URL, retries (Retry-After) and typed
        # errors, without create()'s parameter transform or pydantic parsing of the answer
        return await client.post("/chat/completions", content=content, options=_JSON,
                                 cast_to=_http_response_type())

    def completion_from_body(self, body: dict[str, Any], *, model: str,
                             batch: bool = False) -> Completion:
        """A Completion from a chat completion's JSON body (a Batch API result line), priced
        for the requested `model`, at the batch rate (`pricing.batch_price_factor` of the
        live price) when `batch`."""
        text, usage = self._read(body, [])
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
        """An upper-end guess of one call's cost, for the runner's budget check.

        Output: `max_completion_tokens` when set (a true bound), else the longest answer seen
        so far, else `default_output_tokens`. Input: the estimate, scaled up by the largest
        ratio of server-counted to estimated tokens seen so far."""
        model = self.model_for(request)
        out = self.max_completion_tokens or self._max_output_seen or self.default_output_tokens
        est_in = math.ceil(approx_tokens(request.messages()) * self._input_ratio)
        return self.prices.price(model).cost(Usage(input_tokens=est_in, output_tokens=out))

    async def aclose(self) -> None:
        """Close the HTTP clients of the running loop (the runner calls this when it ends)."""
        import asyncio

        loop = asyncio.get_running_loop()
        for url, (owner, client) in list(self._clients.items()):
            if owner is loop:
                await client.close()
                del self._clients[url]

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

        from openai import AsyncOpenAI

        loop = asyncio.get_running_loop()
        held = self._clients.get(base_url)
        if held is None or held[0] is not loop:
            client = AsyncOpenAI(api_key=self._api_key(base_url), base_url=base_url,
                                 max_retries=self.max_retries, timeout=self.timeout_s,
                                 http_client=_http_client(self.http_transport,
                                                          self.timeout_s))
            self._clients[base_url] = held = (loop, client)
        return held[1]

    def _read(self, data: Any, messages: list[dict[str, str]]) -> tuple[str, Usage]:
        """Text and usage from a chat completion's JSON; anything else is a MalformedResponse.

        Reads only the fields evalkit uses, from the parsed JSON (no pydantic models: that
        parse was a tenth of the client's time per call)."""
        try:
            text = data["choices"][0]["message"]["content"]
        except (IndexError, TypeError, KeyError):
            text = None
        if not isinstance(text, str):
            raise MalformedResponse("the response has no choices[0].message.content string: "
                                    f"{secrets.scrub(json.dumps(data, default=str)[:200])}")
        u = data.get("usage")
        if not isinstance(u, dict) or type(u.get("prompt_tokens")) is not int:
            # some servers omit usage; estimate rather than pretend the call was free
            return text, Usage(input_tokens=approx_tokens(messages),
                               output_tokens=math.ceil(len(text) / 4))
        details = u.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else 0
        output = u.get("completion_tokens")
        return text, Usage(input_tokens=u["prompt_tokens"],
                           output_tokens=output if type(output) is int else 0,
                           cached_input_tokens=cached if type(cached) is int else 0)

    def _translate(self, exc: Exception) -> Exception:
        """The SDK's error as ours, same class name, key scrubbed from the message."""
        message = self._scrub(str(exc))
        if isinstance(exc, json.JSONDecodeError):
            return MalformedResponse(f"the response body is not valid JSON: {message}")
        if isinstance(exc, OpenAIProviderError):
            return type(exc)(message)
        return _named_error(type(exc).__name__)(message)

    def _scrub(self, text: str) -> str:
        return secrets.scrub(text)


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

    try:
        import httpx2 as http
    except ImportError:
        import httpx as http
    limits = http.Limits(max_connections=POOL, max_keepalive_connections=POOL)
    if transport in ("auto", "aiohttp"):
        try:
            import aiohttp  # noqa: F401  (the SDK's transport needs it)
        except ImportError:
            if transport == "aiohttp":
                raise ValueError("http_transport: aiohttp needs the aiohttp package "
                                 "(pip install 'openai[aiohttp]')") from None
        else:
            return openai.DefaultAioHttpClient(limits=limits, timeout=timeout_s)
    return openai.DefaultAsyncHttpxClient(limits=limits, timeout=timeout_s)


_JSON = {"headers": {"Content-Type": "application/json"}}  # the body is prebuilt JSON bytes


def _http_response_type() -> type:
    """The SDK's HTTP library's Response class: post(cast_to=Response) returns the raw
    response, unparsed (httpx2 in openai >= 3, httpx before)."""
    try:
        import httpx2 as http
    except ImportError:  # older openai releases are built on httpx
        import httpx as http
    return http.Response


def _json_body(raw: Any) -> Any:
    """The parsed body of a 2xx response; a body that is not JSON is a MalformedResponse
    (key scrubbed: a proxy's login page may echo it)."""
    try:
        return json.loads(raw.content)
    except ValueError:
        text = raw.content[:200].decode("utf-8", "replace")
        raise MalformedResponse("the response body is not valid JSON (expected a chat "
                                f"completion): {secrets.scrub(text)!r}") from None


def _elapsed(raw: Any, *, since: float) -> float:
    """Seconds from sending the request to its last byte (the HTTP library's own clock, the
    final attempt only), so waiting for retries or a busy event loop before sending is not
    counted as the model's latency; the wall time since `since` when it is unavailable."""
    try:
        return raw.elapsed.total_seconds()
    except Exception:
        return time.perf_counter() - since


# Keys of the config's `provider:` section that are the retriever's, not the chat provider's.
RETRIEVAL_KEYS = ("embedding_model", "embedding_base_url", "embedding_batch_size")


def options_from_config(config_path: str | None, cli_options: Mapping[str, Any],
                        fine_tune: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Provider options for a run: config `provider:` section < CLI flags, plus prices and the
    route to a fine-tuned model served elsewhere. Nothing secret passes through here."""
    from evalkit.config import ConfigError, load_config

    cfg = load_config(config_path)
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
