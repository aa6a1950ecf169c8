"""Pre-flight, provider half: the refusals `run` used to make only after building its
providers (an unpriced model, `--batch` with no batch API to use, OpenAI itself without a
key, a judge that cannot be priced) are the shared pre-flight's, so `testset check` with
the same flags refuses with the same message, before the leakage scan, and never calls
anything.

Everything here talks to the loopback server of tests/openai_server.py, never the network:
the one combination that would reach api.openai.com (no --base-url with a key set) is left
out of the property test, and the key-less one is refused before any socket is opened."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai_server import FIXTURES, KEY, FakeOpenAI, openai_env  # noqa: F401  (autouse)

from evalkit.cli import main
from evalkit.pipeline import preflight

INTENTS = FIXTURES / "tiny-intents"
UNPRICED = "my-lora"  # genai-prices knows no such model
PRICED_CONFIG = (f"pricing:\n  models:\n    {UNPRICED}: {{usd_per_gpu_hour: 1.2, "
                 f"tokens_per_second: 2000}}\n")


def _check(*flags):
    return CliRunner().invoke(main, ["testset", "check", str(INTENTS), *map(str, flags)])


def _run(tmp: Path, *flags):
    return CliRunner().invoke(main, ["run", str(INTENTS), "--no-progress", "--no-report",
                                     "--reports-dir", str(tmp / "reports"),
                                     "--cache-dir", str(tmp / "cache"),
                                     "--finetune-dir", str(tmp / "ft"),
                                     "--batch-poll-interval", "0.01", *map(str, flags)])


def _refused_alike(check, run, check_name: str) -> str:
    """check exits 1 naming the refusal; run exits 2 with the same message; returns it."""
    assert check.exit_code == 1, check.output
    line = next(x for x in check.output.splitlines() if x.startswith(f"refused ({check_name}): "))
    message = line.split(": ", 1)[1]
    assert run.exit_code == 2, run.output
    assert f"error: {message}" in run.output, (message, run.output)
    assert "leakage and detectable difference: not computed" in check.output  # cheap first
    return message


@pytest.fixture
def scans(monkeypatch):
    """Counts leakage scans: a provider refusal must come before the scan, in both."""
    seen = []
    real = preflight.find_leaks
    monkeypatch.setattr(preflight, "find_leaks",
                        lambda *a, **k: seen.append(1) or real(*a, **k))
    return seen


def test_an_unpriced_model_is_refused_by_check_and_run_alike(tmp_path, scans):
    with FakeOpenAI() as server:
        flags = ["--variants", "prompt-only,few-shot", "--provider", "openai",
                 "--base-url", server.base_url, "--model", UNPRICED]
        message = _refused_alike(_check(*flags), _run(tmp_path, *flags), "price")
        assert not server.chat_calls()
    assert message.startswith("variant 'prompt-only' cannot be priced, so its cost and budget "
                              f"could not be kept: no price known for model '{UNPRICED}'")
    assert scans == []
    assert not list((tmp_path / "reports").glob("*"))  # no empty run folder either


def test_the_config_s_price_lets_it_start(tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(PRICED_CONFIG)
    with FakeOpenAI() as server:
        flags = ["--variants", "prompt-only", "--provider", "openai", "--base-url",
                 server.base_url, "--model", UNPRICED, "--config", cfg]
        check = _check(*flags)
        assert check.exit_code == 0, check.output
        assert _run(tmp_path, *flags).exit_code == 0
        assert server.chat_calls()


@pytest.mark.parametrize("why,flags", [
    ("the local provider has no batch API", ["--batch"]),
    ("two epochs are two providers", ["--batch", "--provider", "openai", "--epochs", "2"]),
])
def test_batch_the_run_cannot_honour_is_refused_alike(tmp_path, scans, why, flags):
    with FakeOpenAI() as server:
        url = ["--base-url", server.base_url] if "openai" in flags else []
        both = ["--variants", "prompt-only", *flags, *url]
        message = _refused_alike(_check(*both), _run(tmp_path, *both), "batch")
        assert not server.requests
    assert message == preflight.BATCH_REFUSAL
    assert scans == []


def test_batch_on_one_openai_server_passes(tmp_path):
    with FakeOpenAI(batch_polls=1) as server:
        flags = ["--variants", "prompt-only,few-shot", "--provider", "openai", "--batch",
                 "--base-url", server.base_url]
        check = _check(*flags)
        assert check.exit_code == 0, check.output
        ran = _run(tmp_path, *flags)
        assert ran.exit_code == 0, ran.output
        assert server.batch_creations() >= 1


def test_openai_itself_without_a_key_is_refused_alike(tmp_path, monkeypatch, scans):
    monkeypatch.delenv("OPENAI_API_KEY")
    flags = ["--variants", "prompt-only", "--provider", "openai"]
    message = _refused_alike(_check(*flags), _run(tmp_path, *flags), "provider")
    assert message == ("set OPENAI_API_KEY in the environment to call api.openai.com; the key "
                       "is never read from flags or files")
    assert scans == []


def test_a_local_server_needs_no_key(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with FakeOpenAI() as server:  # no api_key: it accepts any bearer, as vLLM without one
        flags = ["--variants", "prompt-only", "--provider", "openai", "--base-url",
                 server.base_url]
        assert _check(*flags).exit_code == 0
        assert _run(tmp_path, *flags).exit_code == 0
        assert server.chat_calls()


def test_several_provider_refusals_are_all_listed(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY")
    check = _check("--variants", "prompt-only,few-shot", "--provider", "openai", "--batch",
                   "--epochs", "2")
    assert check.exit_code == 1
    refused = [x.split(")")[0] for x in check.output.splitlines() if x.startswith("refused (")]
    # the key once (both rungs share the provider), then the batch; nothing left to price
    assert refused == ["refused (provider", "refused (batch"]
    # a fine-tuned rung with no recorded model hides nothing about the others' provider
    check = _check("--variants", "prompt-only,fine-tuned", "--provider", "openai",
                   "--finetune-dir", tmp_path / "ft")
    refused = [x.split(")")[0] for x in check.output.splitlines() if x.startswith("refused (")]
    assert refused == ["refused (fine-tune", "refused (provider"]


def test_a_judge_that_cannot_be_priced_is_refused_before_the_run_not_after(tmp_path, scans):
    """It used to be found after the leakage scan and the local fine-tune's training."""
    with FakeOpenAI() as server:
        cfg = tmp_path / "exp.yaml"
        cfg.write_text(_judge_config(server))
        flags = ["--variants", "prompt-only,fine-tuned", "--config", cfg]
        message = _refused_alike(_check(*flags), _run(tmp_path, *flags), "judge")
        assert not server.requests
    assert message.startswith("the judge (my-judge) cannot be priced, so its cost could not "
                              "be kept: no price known for model 'my-judge'")
    assert scans == [] and not (tmp_path / "ft").exists()  # nothing trained


def test_a_judge_s_missing_labels_file_is_refused_before_the_run_not_after(tmp_path, scans):
    """The labels are read after every answer is graded; a path that does not resolve (or a
    malformed file) was found then, with the run and the judge paid and no summary written."""
    with FakeOpenAI() as server:
        cfg = tmp_path / "exp.yaml"
        cfg.write_text(f"judge:\n  model: gpt-4o-mini\n  base_url: {server.base_url}\n"
                       f"  score: true\n  labels: {tmp_path / 'no-such-labels.jsonl'}\n")
        flags = ["--variants", "prompt-only", "--config", cfg]
        message = _refused_alike(_check(*flags), _run(tmp_path, *flags), "judge")
        assert not server.requests
    assert message == f"{tmp_path / 'no-such-labels.jsonl'}: labels file not found"
    assert scans == []


def _judge_config(server: FakeOpenAI) -> str:
    return f"judge:\n  model: my-judge\n  base_url: {server.base_url}\n  score: true\n"


def test_server_flags_on_the_local_provider_are_refused_alike(tmp_path):
    flags = ["--variants", "prompt-only", "--model", "gpt-4o-mini"]
    _refused_alike(_check(*flags), _run(tmp_path, *flags), "provider")


# --- the property: check's exit status is whether run refuses before its first call -------

OPTIONS = st.fixed_dictionaries({
    "provider": st.sampled_from(["local", "openai"]),
    # where the base URL comes from: none (api.openai.com), the flag, OPENAI_BASE_URL
    "url": st.sampled_from(["none", "flag", "env"]),
    "key": st.booleans(),
    "model": st.sampled_from([None, "gpt-4o-mini", UNPRICED]),
    "config": st.sampled_from([None, "prices", "zero", "judge"]),
    "batch": st.booleans(),
    "epochs": st.sampled_from([1, 2]),
    "ladder": st.sampled_from(["prompt-only", "prompt-only,few-shot"]),
})
CONFIGS = {"prices": PRICED_CONFIG, "zero": "pricing:\n  on_unknown: zero\n"}


def _flags(o: dict, server: FakeOpenAI, tmp: Path) -> list[str]:
    flags = ["--variants", o["ladder"], "--provider", o["provider"], "--epochs", o["epochs"]]
    if o["url"] == "flag":
        flags += ["--base-url", server.base_url]
    if o["model"]:
        flags += ["--model", o["model"]]
    if o["config"]:
        text = _judge_config(server) if o["config"] == "judge" else CONFIGS[o["config"]]
        (tmp / "exp.yaml").write_text(text)
        flags += ["--config", tmp / "exp.yaml"]
    if o["batch"]:
        flags.append("--batch")
    return flags


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(o=OPTIONS)
def test_check_fails_exactly_when_run_refuses_before_its_first_call(o):
    if o["url"] == "none" and o["key"] and o["provider"] == "openai":
        o = {**o, "key": False}  # would call api.openai.com for real: never from a test
    with FakeOpenAI(batch_polls=1) as server, pytest.MonkeyPatch.context() as env, \
            tempfile.TemporaryDirectory() as tmp:
        env.delenv("OPENAI_BASE_URL", raising=False)
        if o["url"] == "env":
            env.setenv("OPENAI_BASE_URL", server.base_url)
        if o["key"]:
            env.setenv("OPENAI_API_KEY", KEY)
        else:
            env.delenv("OPENAI_API_KEY", raising=False)
        flags = _flags(o, server, Path(tmp))
        check = _check(*flags)
        run = _run(Path(tmp), *flags)
        answered = list(Path(tmp, "reports").glob("*/predictions.jsonl"))
        refused = run.exit_code == 2 and not answered and not server.requests
        assert check.exit_code in (0, 1), check.output
        assert (check.exit_code == 1) == refused, (o, check.output, run.output)
        if refused:  # for a reason check gave, in the same words (a usage error stops the
            # run at the first; check lists every one)
            said = run.output.split("error: ", 1)[1].strip()
            assert said and all(x in check.output
                                for x in said.splitlines()), (o, said, check.output)
        else:
            assert run.exit_code == 0, (o, run.output)


# ---- the embedding retriever: its key and price, before the corpus is indexed ---------------

@pytest.mark.parametrize("why,section,drop_key", [
    ("no price for the embedding model", "  embedding_model: my-embedder\n"
                                         "  embedding_base_url: {url}\n", False),
    ("OpenAI itself with no key", "  embedding_model: text-embedding-3-small\n", True),
])
def test_an_embedding_index_that_cannot_be_built_is_refused_alike(tmp_path, monkeypatch, scans,
                                                                  why, section, drop_key):
    if drop_key:
        monkeypatch.delenv("OPENAI_API_KEY")
        monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with FakeOpenAI() as server:
        cfg = tmp_path / "exp.yaml"
        cfg.write_text("provider:\n" + section.format(url=server.base_url))
        flags = ["--variants", "prompt-only,rag", "--config", cfg]
        message = _refused_alike(_check(*flags), _run(tmp_path, *flags), "embeddings")
        assert not server.requests  # nothing embedded, nothing answered
    assert ("set OPENAI_API_KEY" in message) is drop_key, why
    assert ("no price known for model 'my-embedder'" in message) is not drop_key, why
    assert scans == []


def test_embeddings_are_not_asked_of_a_ladder_that_does_not_retrieve(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("provider:\n  embedding_model: text-embedding-3-small\n")
    assert _check("--variants", "prompt-only,few-shot", "--config", cfg).exit_code == 0
