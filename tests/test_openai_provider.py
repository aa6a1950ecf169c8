"""The openai provider against a loopback OpenAI-compatible server: retries, faults, budget,
resume, parameters, usage, embeddings — and the API key never reaching the disk."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from openai_server import (
    FIXTURES,
    KEY,
    FakeOpenAI,
    assert_key_nowhere,
    cli,
    openai_env,
    read_jsonl,
    run_dirs_args,
)

from evalkit.data.testset import load_testset
from evalkit.providers import get_provider
from evalkit.providers.base import Provider, Usage
from evalkit.providers.openai import OpenAIProvider
from evalkit.providers.pricing import PriceBook
from evalkit.run.cache import ResponseCache
from evalkit.run.journal import Journal
from evalkit.run.runner import Job, run_jobs
from evalkit.strategies.request import Request

INTENTS = FIXTURES / "tiny-intents"
QA = FIXTURES / "tiny-qa"
NO_FT = "prompt-only,few-shot,rag"


_env = openai_env  # autouse: the test key in the environment, no OPENAI_BASE_URL
_dirs = run_dirs_args


def _run(server, tmp_path, *extra, testset=INTENTS, variants=NO_FT, ok=True):
    return cli("run", testset, "--provider", "openai", "--base-url", server.base_url,
               "--variants", variants, *_dirs(tmp_path), *extra, ok=ok)


def _latest_run(tmp_path: Path) -> Path:
    return (tmp_path / "reports" / "latest").resolve()


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "experiment.yaml"
    path.write_text(text)
    return path


def test_ten_percent_429_and_500_lose_nothing_and_repeat_no_answered_call(tmp_path):
    with FakeOpenAI(api_key=KEY, fault_rate=0.1, fault_retry_after=0.01) as server:
        out = _run(server, tmp_path, "--concurrency", 4).output
        run_dir = _latest_run(tmp_path)
        preds = read_jsonl(run_dir / "predictions.jsonl")
        assert len(preds) == 24 and all(p["error_class"] is None for p in preds), out
        statuses = [r.status for r in server.chat_calls()]
        assert statuses.count(429) >= 1 and statuses.count(500) >= 1
        assert statuses.count(200) == 24  # every fault was retried by the SDK, once
        retried = [r for r in server.chat_calls(200) if r.retry_count not in (None, "0")]
        assert len(retried) == statuses.count(429) + statuses.count(500)
        assert server.answered_twice() == []
        # run.json counts every HTTP attempt, as the server counted them, and the retries
        totals = json.loads((run_dir / "run.json").read_text())["totals"]
        assert totals["http_attempts"] == len(statuses) == len(server.requests)
        assert totals["retries"] == statuses.count(429) + statuses.count(500) == len(retried)
        # resume and a cached re-run: no call for anything already journaled or cached
        cli("run", "--resume", run_dir.name, *_dirs(tmp_path))
        _run(server, tmp_path)
        assert len(server.chat_calls()) == len(statuses)
    assert assert_key_nowhere(tmp_path) > 3


def test_permanent_400_is_recorded_per_item_and_the_rest_finish(tmp_path):
    refused = "password reset link never shows up"  # te-03's message
    with FakeOpenAI(api_key=KEY, permanent_400=(refused,)) as server:
        out = _run(server, tmp_path).output
        preds = read_jsonl(_latest_run(tmp_path) / "predictions.jsonl")
        bad = [p for p in preds if p["error_class"]]
        assert {(p["variant"], p["item_id"]) for p in bad} == {
            (v, "te-03") for v in NO_FT.split(",")}
        assert all(p["error_class"] == "BadRequestError" and "permanent 400" in p["error"]
                   for p in bad)
        assert sum(p["error_class"] is None and bool(p["output"]) for p in preds) == 21
        assert "errors: 3" in out
        # a 400 is final: the SDK does not retry it
        assert sum(refused in (r.last_user or "") for r in server.chat_calls()) == 3
    assert_key_nowhere(tmp_path)


def test_max_cost_usd_stops_before_the_cap_with_real_costs(tmp_path):
    config = _config(tmp_path, "provider: {max_completion_tokens: 8}\n")
    with FakeOpenAI(api_key=KEY) as server:
        _run(server, tmp_path / "full", "--config", config)
        full = json.loads((_latest_run(tmp_path / "full") / "run.json").read_text())["totals"]
        cap = full["spent_usd"] * 0.4
        result = _run(server, tmp_path / "capped", "--max-cost-usd", cap, "--concurrency", 8,
                      "--config", config, ok=False)
        out = result.output
        assert result.exit_code == 3, out  # the budget stop's own exit code
        run_dir = _latest_run(tmp_path / "capped")
        totals = json.loads((run_dir / "run.json").read_text())["totals"]
        preds = read_jsonl(run_dir / "predictions.jsonl")
    assert 0 < totals["spent_usd"] <= cap
    assert sum(p["cost_usd"] for p in preds) <= cap
    assert totals["skipped_budget"] > 0 and "skipped for budget" in out
    assert totals["calls"] == len(preds) < 24


def test_budget_holds_with_many_calls_in_flight(tmp_path):
    """Eight workers start at once: the cap must count calls still in flight."""

    class Priced(Provider):
        name, model = "priced", "m"
        calls = 0

        def model_for(self, request):
            return "m"

        def cache_params(self):
            return {}

        def worst_case_cost(self, request):
            return 1.0

        async def complete(self, request):
            Priced.calls += 1
            await asyncio.sleep(0.02)
            from evalkit.providers.base import Completion
            return Completion("x", Usage(1, 1), 0.02, 1.0, "m")

    testset = load_testset(INTENTS)
    jobs = [Job("v", it, lambda it: Request("qa", "Answer.", it.input)) for it in testset.test]
    stats = asyncio.run(run_jobs(jobs, total=len(jobs), provider=Priced(), cache=None,
                                 journal=Journal(tmp_path / "p.jsonl"), concurrency=8,
                                 max_cost_usd=3.5, progress=False))
    assert Priced.calls == 3 and stats.spent_usd == 3.0 and stats.skipped_budget == 5


def test_parameters_usage_and_cached_tokens_priced_apart(tmp_path):
    prices = PriceBook.from_section({"models": {"house-model": {
        "input_per_mtok": 1.0, "cached_input_per_mtok": 0.25, "output_per_mtok": 4.0}}})
    request = Request("classification", "Pick the intent.", "I need my money back",
                      labels=(("refund", "money back"), ("login", "cannot sign in")))
    with FakeOpenAI(api_key=KEY) as server:
        provider = OpenAIProvider(model="house-model", base_url=server.base_url, seed=7,
                                  temperature=0.0, max_completion_tokens=5, pricing=prices)

        async def twice():
            return await provider.complete(request), await provider.complete(request)

        first, second = asyncio.run(twice())
        sent = [r.body for r in server.chat_calls()]
    assert sent[0]["seed"] == 7 and sent[0]["temperature"] == 0.0
    # a server that is not OpenAI gets the limit under both names (llama.cpp reads max_tokens)
    assert sent[0]["max_completion_tokens"] == sent[0]["max_tokens"] == 5
    assert first.text == "refund" and first.usage.cached_input_tokens == 0
    u = second.usage
    assert 0 < u.cached_input_tokens < u.input_tokens
    expected = ((u.input_tokens - u.cached_input_tokens) * 1.0 + u.cached_input_tokens * 0.25
                + u.output_tokens * 4.0) / 1e6
    assert second.cost_usd == pytest.approx(expected) and second.cost_usd < first.cost_usd
    assert "key" not in json.dumps(provider.cache_params()).lower()


def test_output_limit_names_per_server_and_defaults_per_task_type():
    openai_proper = OpenAIProvider(base_url="https://api.openai.com/v1", require_key=False)
    other = OpenAIProvider(base_url="http://127.0.0.1:9/v1")
    # OpenAI refuses both names at once (and its o-series refuse max_tokens)
    assert openai_proper._limit_params("gpt-4o-mini") == ("max_completion_tokens",)
    assert other._limit_params("m") == ("max_completion_tokens", "max_tokens")
    labels = (("refund", "money back"), ("a_very_long_label_name_indeed_here", "x"))
    assert other.output_limit(Request("classification", "Pick.", "x", labels=labels[:1])) == 16
    assert other.output_limit(Request("classification", "Pick.", "x", labels=labels)) == 36
    assert other.output_limit(Request("qa", "Answer.", "x")) == 64
    assert other.output_limit(Request("generation", "Write.", "x")) == 512
    assert other.output_limit(Request("some-new-type", "Do.", "x")) == 256  # the fallback
    tuned = OpenAIProvider(base_url="http://127.0.0.1:9/v1", output_limits={"qa": 200})
    assert tuned.output_limit(Request("qa", "Answer.", "x")) == 200
    capped = OpenAIProvider(base_url="http://127.0.0.1:9/v1", max_completion_tokens=8)
    assert capped.output_limit(Request("qa", "Answer.", "x")) == 8
    with pytest.raises(ValueError, match="output_limits.qa must be an integer >= 1"):
        OpenAIProvider(base_url="http://127.0.0.1:9/v1", output_limits={"qa": 0})


def test_max_tokens_param_for_older_servers():
    with FakeOpenAI() as server:
        provider = OpenAIProvider(base_url=server.base_url, max_completion_tokens=9,
                                  max_tokens_param="max_tokens")
        asyncio.run(provider.complete(Request("qa", "Answer.", "hours?")))
        body = server.chat_calls()[0].body
    assert body["max_tokens"] == 9 and "max_completion_tokens" not in body


def test_retry_after_is_honoured():
    with FakeOpenAI(api_key=KEY, retry_after={"slow down please": 1.0}) as server:
        provider = OpenAIProvider(base_url=server.base_url, max_retries=2)
        completion = asyncio.run(provider.complete(Request("qa", "Answer.", "slow down please")))
        calls = server.chat_calls()
    assert completion.text and [c.status for c in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 0.95  # the server asked for 1 s; backoff alone is <0.5


def test_timeouts_and_malformed_bodies_are_recorded_per_item(tmp_path):
    config = _config(tmp_path, "provider: {timeout_s: 0.3, max_retries: 1}\n")
    with FakeOpenAI(api_key=KEY, slow={"renewed by accident": 1.0},
                    malformed=("board view crashes",)) as server:
        _run(server, tmp_path, "--config", config, variants="prompt-only")
        preds = {p["item_id"]: p for p in read_jsonl(_latest_run(tmp_path) /
                                                     "predictions.jsonl")}
        slow_calls = [r for r in server.chat_calls() if "renewed by accident" in r.last_user]
    assert preds["te-02"]["error_class"] == "APITimeoutError"
    assert len(slow_calls) == 2  # the first try and max_retries=1 retry
    broken = [p for p in preds.values() if p["error_class"] == "MalformedResponse"]
    assert broken and all("not valid JSON" in p["error"] for p in broken)
    assert sum(p["error_class"] is None for p in preds.values()) == 8 - 1 - len(broken)


def test_key_is_scrubbed_from_errors_and_never_stored(tmp_path):
    with FakeOpenAI(api_key="the-right-key") as server:  # rejects KEY, echoing it back
        result = _run(server, tmp_path, variants="prompt-only", ok=False)
        assert result.exit_code == 1 and "every call failed" in result.output
        preds = read_jsonl(_latest_run(tmp_path) / "predictions.jsonl")
    assert all(p["error_class"] == "AuthenticationError" for p in preds)
    assert all("[redacted]" in p["error"] for p in preds)
    run = json.loads((_latest_run(tmp_path) / "run.json").read_text())
    assert run["config"]["provider_options"] == {"base_url": server.base_url}
    assert assert_key_nowhere(tmp_path) >= 3


def test_openai_itself_needs_a_key_from_the_environment(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        get_provider("openai")
    with pytest.raises(ValueError, match="credentials"):
        get_provider("openai", base_url="http://user:pw@127.0.0.1:1/v1")
    # a local server without auth needs none
    assert get_provider("openai", base_url="http://127.0.0.1:1/v1").name == "openai"


def test_unpriced_model_fails_before_any_call(tmp_path):
    with FakeOpenAI() as server:
        result = _run(server, tmp_path, "--model", "my-own-llm", variants="prompt-only",
                      ok=False)
        assert server.chat_calls() == []
    assert result.exit_code == 2  # one error before any call, not one per item
    assert "variant 'prompt-only' cannot be priced" in result.output
    assert "pricing.models" in result.output
    assert not (tmp_path / "reports").exists() or not list((tmp_path / "reports").iterdir())


def test_embeddings_retriever_costs_setup_once_and_queries_per_query(tmp_path):
    config = _config(tmp_path, "provider: {embedding_model: text-embedding-3-small}\n")
    with FakeOpenAI(api_key=KEY) as server:
        _run(server, tmp_path, "--config", config, testset=QA, variants="prompt-only,rag")
        first = json.loads((_latest_run(tmp_path) / "run.json").read_text())["setup"]
        preds = read_jsonl(_latest_run(tmp_path) / "predictions.jsonl")
        emb_calls = [r for r in server.requests if r.path == "/v1/embeddings"]
        _run(server, tmp_path, "--config", config, testset=QA, variants="prompt-only,rag")
        second = json.loads((_latest_run(tmp_path) / "run.json").read_text())["setup"]
        emb_after = [r for r in server.requests if r.path == "/v1/embeddings"]
    r1, r2 = first["retrieval"], second["retrieval"]
    assert all(c.body["encoding_format"] == "float" and c.status == 200 for c in emb_calls)
    assert len(emb_calls) == 2  # one batch for the corpus, one for the 5 queries
    assert r1["indexing_usd"] > 0 and r1["indexing_usd_spent"] == r1["indexing_usd"]
    assert r1["queries"] == 5 and r1["query_usd_per_query"] == pytest.approx(r1["query_usd"] / 5)
    assert len(emb_after) == 2  # the index and the query vectors came from the cache
    assert r2["indexing_usd"] == r1["indexing_usd"] and r2["indexing_usd_spent"] == 0
    assert r2["query_usd_spent"] == 0
    rag = [p for p in preds if p["variant"] == "rag"]
    assert rag and all(p["retrieved"] for p in rag)
    assert_key_nowhere(tmp_path)


def test_cache_key_excludes_the_key(tmp_path, monkeypatch):
    with FakeOpenAI() as server:
        provider = OpenAIProvider(base_url=server.base_url)
        cache = ResponseCache(tmp_path / "c.sqlite")
        testset = load_testset(INTENTS)
        jobs = [Job("v", it, lambda it: Request("qa", "Answer.", it.input))
                for it in testset.test[:2]]
        asyncio.run(run_jobs(jobs, total=2, provider=provider, cache=cache,
                             journal=Journal(tmp_path / "a.jsonl"), progress=False))
        monkeypatch.setenv("OPENAI_API_KEY", "another-key-entirely")
        provider2 = OpenAIProvider(base_url=server.base_url)
        stats = asyncio.run(run_jobs(jobs, total=2, provider=provider2, cache=cache,
                                     journal=Journal(tmp_path / "b.jsonl"), progress=False))
        cache.close()
    assert stats.cache_hits == 2 and stats.calls == 0
    assert_key_nowhere(tmp_path)


def test_first_call_latency_is_measured():
    with FakeOpenAI(slow={"take your time": 0.2}) as server:
        provider = OpenAIProvider(base_url=server.base_url)
        t0 = time.perf_counter()
        c = asyncio.run(provider.complete(Request("qa", "Answer.", "take your time")))
    assert 0.2 <= c.latency_s <= time.perf_counter() - t0


def test_unknown_provider_option_in_the_config_names_the_field(tmp_path):
    config = _config(tmp_path, "provider: {temprature: 0.2}\n")
    result = cli("run", INTENTS, "--provider", "openai", "--base-url", "http://127.0.0.1:9/v1",
                 "--variants", "prompt-only", "--config", config, *_dirs(tmp_path), ok=False)
    assert result.exit_code == 2 and "field 'provider.temprature'" in result.output


def test_a_capped_run_that_would_pay_for_embeddings_is_refused_before_any(tmp_path):
    """The index and the query vectors are embedded at setup, before the budget that keeps
    --max-cost-usd starts, and it never counted them: a helper's run spent $0.0102 under a
    $0.002 cap that said it held. Such a run is refused before any embedding call; once the
    embeddings were made (a run without the cap), the capped run goes ahead, paying for its
    calls only."""
    config = _config(tmp_path, "provider: {embedding_model: text-embedding-3-small}\n")
    with FakeOpenAI(api_key=KEY) as server:
        refused = _run(server, tmp_path, "--config", config, "--max-cost-usd", "1",
                       testset=QA, variants="prompt-only,rag", ok=False)
        assert refused.exit_code == 2, refused.output
        assert "would first embed its corpus and questions (up to $" in refused.output
        assert [r for r in server.requests if r.path == "/v1/embeddings"] == []
        assert server.chat_calls() == []
        _run(server, tmp_path, "--config", config, testset=QA, variants="prompt-only,rag")
        made = len([r for r in server.requests if r.path == "/v1/embeddings"])
        _run(server, tmp_path, "--config", config, "--max-cost-usd", "1",
             testset=QA, variants="prompt-only,rag")
        assert len([r for r in server.requests if r.path == "/v1/embeddings"]) == made


def test_a_tfidf_rung_is_not_charged_for_the_embedding_index(tmp_path):
    """setup.retrieval is the embedding index of task.yaml's chunking, and its query
    embeddings; every retrieving rung was charged both, a TF-IDF one too (a helper's run)."""
    config = _config(tmp_path, "provider: {embedding_model: text-embedding-3-small}\n"
                               "variants:\n  - {name: rag-tfidf, base: rag, "
                               "rag: {retriever: tfidf}}\n  - {name: rag, base: rag}\n")
    with FakeOpenAI(api_key=KEY) as server:
        _run(server, tmp_path, "--config", config, testset=QA, variants="rag-tfidf,rag")
    run_dir = _latest_run(tmp_path)
    assert json.loads((run_dir / "run.json").read_text())["setup"]["retrieval"]["chunk_size"]
    costs = {v: s["cost"] for v, s in
             json.loads((run_dir / "summary.json").read_text())["variants"].items()}
    sources = {v: {i["source"] for i in c["setup_items"] if i["item"] == "indexing"}
               for v, c in costs.items()}
    assert sources["rag"] == {"run.json setup.retrieval.indexing_usd"}
    assert sources["rag-tfidf"] == {
        "run.json setup.indexing_time_s x economics.compute_usd_per_hour"}
    assert costs["rag"]["per_query_retrieval_usd"] > 0
    assert costs["rag-tfidf"]["per_query_retrieval_usd"] == 0
