"""Secrets nowhere: the scrubber, the config's credential refusal in every section and flag,
and a 200 non-JSON body echoing the key that must reach no file under run, cache or report."""

from __future__ import annotations

import pytest
from openai_server import KEY, FakeOpenAI, assert_key_nowhere, cli, openai_env, read_jsonl
from test_openai_provider import INTENTS, _config, _latest_run, _run

from evalkit.config import ConfigError, load_config, refuse_flag_secrets
from evalkit.providers.openai import OpenAIProvider, redact_url
from evalkit.run.journal import Journal, Prediction
from evalkit.secrets import REDACTED, credential_in, register_key_env, scrub

__all__ = ["openai_env"]


@pytest.mark.parametrize("secret", ["sk-proj-abcdef123456", "Bearer abc.def-123456",
                                    "ghp_abcdefghijklmnop1234", "github_pat_11ABCDEFG_xyz12345"])
def test_key_shaped_values_are_scrubbed(secret):
    out = scrub(f"<html>proxy login for {secret}</html>")
    assert secret not in out and REDACTED in out and out.startswith("<html>proxy login for ")


def test_the_substring_precheck_passes_over_nothing_the_patterns_would_scrub():
    """scrub() runs its two patterns only on text holding one of their literals; on any text
    the result must be what running both patterns on it gives."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from evalkit.secrets import _KEY_SHAPED, _USERINFO

    pieces = st.sampled_from(["sk-", "gh", "ghp_", "gho_", "github_pat_", "Bearer", "Bearer ",
                              "://", "http://", "@", "u:p@", "/", " ", "\t", "abcdefgh",
                              "ABC123", "_-.~+=", "x", "\u00e9"])

    @settings(max_examples=400, deadline=None)
    @given(st.lists(pieces, max_size=12).map("".join))
    def same(text):
        full = _USERINFO.sub(lambda m: m.group("scheme") + REDACTED + "@",
                             _KEY_SHAPED.sub(REDACTED, text))
        assert scrub(text) == full

    same()


def test_url_userinfo_and_the_configured_key_are_scrubbed(monkeypatch):
    monkeypatch.setenv("MY_PROVIDER_KEY", "plain-looking-value-42")
    register_key_env("MY_PROVIDER_KEY")
    out = scrub("GET http://user:pa55@host:8080/v1 with plain-looking-value-42 and "
                f"{KEY}")
    assert out == f"GET http://{REDACTED}@host:8080/v1 with {REDACTED} and {REDACTED}"


def test_the_journal_scrubs_output_and_error_before_writing(tmp_path):
    journal = Journal(tmp_path / "predictions.jsonl")
    journal.append(Prediction("v", "i1", output=f"echo {KEY}", error="Bearer abcdefgh123"))
    journal.close()
    [row] = read_jsonl(tmp_path / "predictions.jsonl")
    assert row["output"] == f"echo {REDACTED}" and row["error"] == REDACTED
    assert_key_nowhere(tmp_path)


@pytest.mark.parametrize("text, field", [
    ("judge: {api_token: ghp_abcdefghijklmnop1234}\n", "judge.api_token"),
    ("judge: {model: ghp_abcdefghijklmnop1234}\n", "judge.model"),
    ("provider: {base_url: 'http://user:pass@127.0.0.1:9/v1'}\n", "provider.base_url"),
    ("provider: {embedding_base_url: 'http://u:p@h/v1'}\n", "provider.embedding_base_url"),
    ("judge: {base_url: 'https://tok@h/v1'}\n", "judge.base_url"),
    ("provider: {embedding_model: sk-abcdefghijkl}\n", "provider.embedding_model"),
])
def test_config_refuses_credentials_in_every_section(tmp_path, text, field):
    with pytest.raises(ConfigError) as err:
        load_config(_config(tmp_path, text))
    assert err.value.field == field and "experiment.yaml" in str(err.value)


def test_config_keeps_token_counts_and_plain_urls(tmp_path):
    cfg = load_config(_config(tmp_path, "provider: {max_completion_tokens: 16, base_url: "
                                        "'http://127.0.0.1:9/v1', api_key_env: MY_KEY}\n"))
    assert cfg.section("provider")["max_completion_tokens"] == 16


def test_flags_with_credentials_are_refused(tmp_path):
    with pytest.raises(ConfigError) as err:
        refuse_flag_secrets({"base_url": "http://user:pass@127.0.0.1:9/v1"})
    assert err.value.field == "base_url" and "--base-url" in str(err.value)
    result = cli("run", INTENTS, "--provider", "openai", "--base-url",
                 "http://user:pass@127.0.0.1:9/v1", "--reports-dir", tmp_path / "reports",
                 ok=False)
    assert result.exit_code != 0 and "--base-url" in result.output
    assert "pass@" not in result.output and not (tmp_path / "reports").exists()


def test_a_200_html_body_echoing_the_key_reaches_no_file(tmp_path):
    with FakeOpenAI(api_key=KEY, html_login=("board view crashes",)) as server:
        _run(server, tmp_path, variants="prompt-only")
        hits = [r for r in server.chat_calls() if "board view crashes" in r.last_user]
    preds = read_jsonl(_latest_run(tmp_path) / "predictions.jsonl")
    broken = [p for p in preds if p["error_class"] == "MalformedResponse"]
    assert hits and broken and all(REDACTED in p["error"] for p in broken)
    assert assert_key_nowhere(tmp_path) >= 3  # run folder, cache and report


QUERY_KEY = "qs0secretVALUE998877"  # a key some gateways take as ?api-key= (not sk-shaped)


@pytest.mark.parametrize("url", [
    f"http://127.0.0.1:9/v1?api-key={QUERY_KEY}",
    f"http://127.0.0.1:9/v1?api-version=2024-06-01&key={QUERY_KEY}",
    f"http://127.0.0.1:9/v1?access_token={QUERY_KEY}#frag",
    f"http://127.0.0.1:9/v1?sig={QUERY_KEY}",
])
def test_a_key_in_the_base_urls_query_string_is_refused_and_scrubbed(tmp_path, url):
    """A gateway key in the URL's query is as much a credential as user:pass@: the flag, the
    config and the provider refuse it (run.json and index.html record the URL), and text that
    quotes such a URL (an error naming the request) loses the value."""
    result = cli("run", INTENTS, "--variants", "prompt-only", "--provider", "openai",
                 "--base-url", url, "--reports-dir", tmp_path / "reports", ok=False)
    assert result.exit_code == 2, result.output
    assert "--base-url" in result.output and QUERY_KEY not in result.output
    assert not (tmp_path / "reports").exists()
    with pytest.raises(ConfigError) as err:
        load_config(_config(tmp_path, f"provider: {{base_url: '{url}'}}\n"))
    assert err.value.field == "provider.base_url" and QUERY_KEY not in str(err.value)
    with pytest.raises(ValueError, match="not in the base URL"):
        OpenAIProvider(base_url=url, require_key=False)
    said = scrub(f"GET {url} failed")
    assert QUERY_KEY not in said and "127.0.0.1:9/v1?" in said


def test_plain_query_strings_are_kept():
    url = "http://127.0.0.1:9/v1?api-version=2024-06-01&monkey=1"
    assert scrub(url) == url and credential_in(url) is None and redact_url(url) == url
