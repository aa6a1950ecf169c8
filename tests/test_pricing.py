"""Prices: genai-prices for known models, config overrides, GPU-hour prices, cached tokens
priced apart, errors that name the field — and `evalkit estimate` before any call."""

from __future__ import annotations

import json

import pytest
from genai_prices import Usage as GUsage
from genai_prices import calc_price
from openai_server import FIXTURES, KEY, FakeOpenAI, cli

from evalkit.config import ConfigError
from evalkit.providers.base import Usage
from evalkit.providers.pricing import PriceBook, UnknownPrice


def test_known_model_priced_by_genai_prices_with_cached_tokens_apart():
    book = PriceBook()
    usage = Usage(input_tokens=12_000, output_tokens=700, cached_input_tokens=8_000)
    reference = calc_price(GUsage(input_tokens=12_000, cache_read_tokens=8_000,
                                  output_tokens=700), "gpt-4o-mini", provider_id="openai")
    price = book.price("gpt-4o-mini")
    assert price.source == "genai-prices:openai/gpt-4o-mini"
    assert book.cost("gpt-4o-mini", usage) == pytest.approx(float(reference.total_price))
    uncached = book.cost("gpt-4o-mini", Usage(input_tokens=12_000, output_tokens=700))
    assert price.cached_input_per_mtok < price.input_per_mtok
    assert book.cost("gpt-4o-mini", usage) < uncached


def test_openai_fine_tune_names_resolve_to_fine_tune_prices():
    book = PriceBook()
    ft = book.price("ft:gpt-4o-mini-2024-07-18:acme::abc123")
    assert ft.source.startswith("genai-prices:openai/ft:gpt-4o-mini")
    assert ft.input_per_mtok > book.price("gpt-4o-mini").input_per_mtok


def test_config_overrides_exact_then_pattern_and_beat_genai_prices():
    book = PriceBook.from_section({"models": {
        "gpt-4o-mini": {"input_per_mtok": 1.0, "cached_input_per_mtok": 0.5,
                        "output_per_mtok": 2.0},
        "acme-*": {"input_per_mtok": 3.0, "output_per_mtok": 3.0},
    }})
    usage = Usage(input_tokens=1000, output_tokens=100, cached_input_tokens=400)
    # (600 uncached x $1 + 400 cached x $0.5 + 100 out x $2) per million = $0.001
    assert book.cost("gpt-4o-mini", usage) == pytest.approx(0.001)
    assert book.price("gpt-4o-mini").source == "config"
    # cached price defaults to the input price: (1000 x 3 + 100 x 3) / 1e6
    assert book.cost("acme-lora-7b", usage) == pytest.approx(0.0033)


def test_gpu_hour_price_from_measured_throughput():
    book = PriceBook.from_section({"models": {"my-lora": {
        "usd_per_gpu_hour": 3.6, "tokens_per_second": 1000, "cached_input_per_mtok": 0}}})
    price = book.price("my-lora")
    # $3.6/h = $0.001/s; 1000 tok/s -> $1e-6 a token -> $1 per million
    assert price.input_per_mtok == pytest.approx(1.0) and price.output_per_mtok == 1.0
    usage = Usage(input_tokens=2000, output_tokens=500, cached_input_tokens=1000)
    assert book.cost("my-lora", usage) == pytest.approx((1000 + 500) / 1e6)


def test_unknown_model_raises_with_the_fix_or_counts_free_when_asked():
    with pytest.raises(UnknownPrice, match=r"pricing\.models"):
        PriceBook(path="exp.yaml").price("llama3.2:1b-house")
    assert PriceBook(on_unknown="zero").cost("llama3.2:1b-house", Usage(100, 10)) == 0.0


@pytest.mark.parametrize("section, field", [
    ({"models": {"m": {"input_per_mtok": 1}}}, "pricing.models.m.output_per_mtok"),
    ({"models": {"m": {"input_per_mtok": -1, "output_per_mtok": 1}}},
     "pricing.models.m.input_per_mtok"),
    ({"models": {"m": {"input_per_mtok": 1, "output_per_mtok": 1, "typo": 1}}},
     "pricing.models.m.typo"),
    ({"models": {"m": {"usd_per_gpu_hour": 2}}}, "pricing.models.m"),
    ({"models": {"m": {"usd_per_gpu_hour": 2, "tokens_per_second": 0}}},
     "pricing.models.m.tokens_per_second"),
    ({"modles": {}}, "pricing.modles"),
    ({"on_unknown": "maybe"}, "pricing.on_unknown"),
    ({"training_per_mtok": {"x": "cheap"}}, "pricing.training_per_mtok.x"),
])
def test_config_errors_name_file_and_field(section, field):
    with pytest.raises(ConfigError) as err:
        PriceBook.from_section(section, path="exp.yaml")
    assert err.value.field == field and "exp.yaml" in str(err.value)


def test_training_prices_known_and_overridable():
    assert PriceBook().training_price("gpt-4o-mini-2024-07-18") == 3.0
    assert PriceBook().training_price("some-base") is None
    book = PriceBook.from_section({"training_per_mtok": {"some-*": 0.4}})
    assert book.training_price("some-base") == 0.4


def test_estimate_makes_no_call_and_is_near_the_server_count(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    dirs = ["--cache-dir", tmp_path / "cache"]
    with FakeOpenAI() as server:
        out = cli("estimate", FIXTURES / "tiny-intents", "--provider", "openai",
                  "--base-url", server.base_url,
                  "--variants", "prompt-only,few-shot", "--json", *dirs).output
        assert server.requests == []
        est = json.loads(out)
        cli("run", FIXTURES / "tiny-intents", "--provider", "openai", "--base-url",
            server.base_url, "--variants", "prompt-only,few-shot", "--no-progress",
            "--reports-dir", tmp_path / "reports", *dirs)
        counted = sum(server.prompt_tokens[r.content_key] for r in server.chat_calls(200))
        again = json.loads(cli("estimate", FIXTURES / "tiny-intents", "--provider", "openai",
                               "--base-url",
                               server.base_url, "--variants", "prompt-only,few-shot",
                               "--json", *dirs).output)
    estimated = sum(v["input_tokens"] for v in est["variants"])
    assert 0.5 * counted <= estimated <= 2.0 * counted
    assert est["total_to_spend_usd"] > 0 and all(v["cached"] == 0 for v in est["variants"])
    assert all(v["cached"] == v["items"] == 8 for v in again["variants"])
    assert again["total_to_spend_usd"] == 0
    assert again["variants"][0]["notional_usd"] == est["variants"][0]["notional_usd"]



@pytest.mark.parametrize("provider_id, model", [("openai", "gpt-4o-mini"), ("openai", "gpt-4.1"),
                                                ("openai", "o3-mini"),
                                                ("anthropic", "claude-sonnet-4-0"),
                                                ("google", "gemini-2.5-pro")])
def test_a_flat_price_is_computed_directly_and_equals_genai_prices_to_the_last_bit(
        provider_id, model):
    """Price.cost skips genai-prices' unit machinery (~70 us a call) for a flat price: its
    per-token Decimal rates must give genai-prices' own total for any usage; a tiered price
    (gemini-2.5-pro's long-context tier) keeps asking genai-prices."""
    import random

    from evalkit.providers.pricing import _genai_total, _linear_rates

    price = PriceBook(provider_id=provider_id).price(model)
    tiered = _linear_rates(price._genai) is None
    assert tiered == (model == "gemini-2.5-pro")
    rng = random.Random(7)
    for _ in range(200):
        i = rng.randint(0, 400_000)
        c, o = rng.randint(0, i), rng.randint(0, 70_000)
        assert price.cost(Usage(i, o, c)) == float(_genai_total(price._genai, i, c, o))


def test_estimate_takes_the_configs_variants_as_run_does(tmp_path):
    """Without --variants, `run` starts the config's declared variants and `estimate`
    priced the default ladder instead (a helper's config: $0.0026 estimated, $0.0058 for
    what the run would start)."""
    config = tmp_path / "exp.yaml"
    config.write_text("provider: {model: gpt-4o-mini}\nvariants:\n"
                      "  - {name: p-v1, base: prompt-only, instructions: Classify it.}\n"
                      "  - {name: p-hot, base: prompt-only, temperature: 0.9}\n")
    est = json.loads(cli("estimate", FIXTURES / "tiny-intents", "--provider", "openai",
                         "--config", config, "--json", "--cache-dir", tmp_path / "c").output)
    assert [v["variant"] for v in est["variants"]] == ["p-v1", "p-hot"]
    given = json.loads(cli("estimate", FIXTURES / "tiny-intents", "--provider", "openai",
                           "--config", config, "--variants", "prompt-only", "--json",
                           "--cache-dir", tmp_path / "c").output)
    assert [v["variant"] for v in given["variants"]] == ["prompt-only"]
