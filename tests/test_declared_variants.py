"""Variants declared in the experiment config (issue 15.1) and the config read once.

The done-when: two prompt versions x two models — one served by the loopback OpenAI-compatible
server, one by the local provider — in one `evalkit run`, with summary.json and the report
naming the four variants and their recorded specs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openai_server import FIXTURES, FakeOpenAI, cli, openai_env, read_jsonl, run_dirs_args

from evalkit.config import ConfigError, load_config
from evalkit.data.testset import load_testset
from evalkit.run.cache import request_key
from evalkit.strategies.variants import VARIANT_KINDS, declared_variant, resolve

assert openai_env  # the autouse fixture: the test key in the environment

V1 = "Classify the customer's message into one support intent."
V2_FILE = "prompts/v2.txt"
V2 = "You triage support mail. Read the message and answer with exactly one intent label."


def _config(tmp_path: Path, base_url: str) -> Path:
    (tmp_path / "prompts").mkdir(exist_ok=True)
    (tmp_path / V2_FILE).write_text(V2 + "\n")
    path = tmp_path / "exp.yaml"
    path.write_text(f"""\
variants:
  - name: v1-server
    base: prompt-only
    provider: openai
    base_url: {base_url}
    model: gpt-4o-mini
    instructions: "{V1}"
    temperature: 0
  - name: v2-server
    base: prompt-only
    provider: openai
    base_url: {base_url}
    model: gpt-4o-mini
    instructions: {V2_FILE}
  - name: v1-local
    base: few-shot
    provider: local
    instructions: "{V1}"
    few_shot: {{k: 2, selection: fixed}}
  - name: v2-local
    base: few-shot
    provider: local
    instructions: {V2_FILE}
""")
    return path


def test_two_prompts_and_two_models_run_in_one_run(tmp_path):
    with FakeOpenAI() as server:
        cfg = _config(tmp_path, server.base_url)
        result = cli("run", FIXTURES / "tiny-intents", "--config", cfg,
                     *run_dirs_args(tmp_path))
        served = server.chat_calls(status=200)
    run_dir = (tmp_path / "reports" / "latest-tiny-intents").resolve()
    names = ["v1-server", "v2-server", "v1-local", "v2-local"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["ladder"] == names and list(summary["variants"]) == names
    for name in names:
        assert f"\n{name} " in result.output  # a table row each
    specs = {n: summary["variants"][n]["spec"] for n in names}
    assert specs["v1-server"]["provider"] == "openai"
    assert specs["v1-server"]["base_url"] == server.base_url
    assert specs["v1-server"]["temperature"] == 0.0
    assert specs["v2-server"]["instructions"] == V2
    assert specs["v2-server"]["instructions_file"] == V2_FILE
    assert specs["v1-local"]["kind"] == "few-shot" and specs["v1-local"]["few_shot_k"] == 2
    assert specs["v1-local"]["few_shot_selection"] == "fixed"
    assert specs["v2-local"]["provider"] == "local"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["variant_specs"] == specs  # summary shows what run.json recorded
    # the server answered exactly the server variants' items, each prompt version its own
    assert len(served) == 2 * 8
    systems = {c.body.get("model") for c in served}
    assert systems == {"gpt-4o-mini"}
    preds = read_jsonl(run_dir / "predictions.jsonl")
    by_variant = {n: [p for p in preds if p["variant"] == n] for n in names}
    assert all(len(v) == 8 for v in by_variant.values())
    assert {p["model"] for p in by_variant["v1-server"]} == {"gpt-4o-mini"}
    assert {p["model"] for p in by_variant["v1-local"]} == {"local-tfidf"}
    cli("report", run_dir)
    html = (run_dir / "index.html").read_text()
    assert 'id="variant-specs"' in html
    for name in names:
        assert f"<tr><td>{name}</td>" in html
    assert "<code>instructions_file</code>: prompts/v2.txt" in html
    assert f"<code>base_url</code>: {server.base_url}" in html


def test_variants_names_pick_from_presets_and_the_config(tmp_path):
    with FakeOpenAI() as server:
        cfg = _config(tmp_path, server.base_url)
        cli("run", FIXTURES / "tiny-intents", "--config", cfg, "--variants",
            "prompt-only,v1-local", *run_dirs_args(tmp_path))
        assert server.chat_calls() == []
    summary = json.loads((tmp_path / "reports" / "latest-tiny-intents" / "summary.json")
                         .read_text())
    assert summary["ladder"] == ["prompt-only", "v1-local"]
    assert summary["variants"]["prompt-only"]["spec"]["kind"] == "prompt-only"
    refused = cli("run", FIXTURES / "tiny-intents", "--config", cfg, "--variants",
                  "prompt-only,v3-local", *run_dirs_args(tmp_path), ok=False)
    assert refused.exit_code == 2
    assert "unknown variant 'v3-local'" in refused.output and "v1-local" in refused.output


def test_cache_keys_differ_for_variants_that_differ_in_any_override(tmp_path):
    """Same base, one override apart: never one cache entry for two variants."""
    from evalkit.pipeline.routing import Providers

    base = "  - name: a\n    base: rag\n    provider: openai\n    base_url: http://127.0.0.1:9/v1\n"
    overrides = ["model: gpt-4o", "temperature: 0.7", "max_tokens: 7", "seed: 3",
                 "base_url: http://127.0.0.1:8/v1", "instructions: Be brief.",
                 "rag: {k: 1}", "rag: {chunk_size: 20, chunk_overlap: 5}",
                 "few_shot: {k: 1}", "fine_tuned_model: ft:gpt-4o-mini:x"]
    text = "variants:\n" + base + "".join(
        f"  - name: b{i}\n    base: rag\n    provider: openai\n"
        + ("" if o.startswith("base_url") else "    base_url: http://127.0.0.1:9/v1\n")
        + f"    {o}\n" for i, o in enumerate(overrides))
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    cfg = load_config(path)
    testset = load_testset(FIXTURES / "tiny-intents")
    variants = resolve([v.name for v in cfg.variants], testset, cfg)
    from evalkit.strategies.variants import VariantContext

    ctx = VariantContext(testset, cache_dir=tmp_path / "cache")
    providers = Providers("local", {}, cfg)
    item = testset.test[0]
    keys = {v.name: request_key(providers.for_variant(v), v.build(item, ctx)) for v in variants}
    assert len(set(keys.values())) == len(keys), keys


@pytest.mark.parametrize("entry, field, line, message", [
    ("  - name: x\n    base: prompt-only\n    modle: gpt-4o\n", "variants[0].modle", 4,
     "did you mean 'model'"),
    ("  - name: x\n    base: prompt-olny\n", "variants[0].base", 2, "did you mean 'prompt-only'"),
    ("  - name: x\n    base: rag\n    rag: {k: three}\n", "variants[0].rag.k", 4,
     "whole number"),
    ("  - name: x\n    base: rag\n    rag: {chunk_szie: 9}\n", "variants[0].rag.chunk_szie", 4,
     "did you mean 'chunk_size'"),
    ("  - name: x\n    base: prompt-only\n    temperature: hot\n", "variants[0].temperature", 4,
     "a number from 0 to 2"),
    ("  - name: x\n    base: prompt-only\n    max_tokens: true\n", "variants[0].max_tokens", 4,
     "whole number >= 1"),
    ("  - name: x\n    base: prompt-only\n    instructions: missing.txt\n",
     "variants[0].instructions", 4, "not found"),
    ("  - name: x\n    base: prompt-only\n  - name: x\n    base: rag\n", "variants[1].name", 4,
     "declared twice"),
    ("  - {base: rag}\n", "variants[0]", 2, "name is required"),
    # names reach terminals and CI logs: an ANSI escape or a bidi override is refused
    ('  - name: "ok\\e[2Kfake PASS"\n    base: prompt-only\n', "variants[0].name", 2,
     "no control or invisible format characters"),
    ('  - name: "rag\\u202eevil"\n    base: rag\n', "variants[0].name", 2,
     "no control or invisible format characters"),
    ("  - name: x\n    base: prompt-only\n    few_shot: {selection: best}\n",
     "variants[0].few_shot.selection", 4, "'similar' or 'fixed'"),
])
def test_bad_variant_entries_name_file_line_and_field(tmp_path, entry, field, line, message):
    path = tmp_path / "exp.yaml"
    path.write_text("economics: {}\nvariants:\n" + entry)
    with pytest.raises(ConfigError) as info:
        cfg = load_config(path)
        resolve([v.name for v in cfg.variants], load_testset(FIXTURES / "tiny-intents"), cfg)
    text = str(info.value)
    assert f"exp.yaml:{line + 1}:" in text and f"field '{field}'" in text and message in text


def test_epochs_and_credentials_are_checked_too(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("epochs: 0\n")
    with pytest.raises(ConfigError, match=r"exp\.yaml:1: field 'epochs': must be a whole"):
        load_config(path)
    path.write_text("variants:\n  - name: x\n    base: rag\n    base_url: http://u:p@h/v1\n")
    with pytest.raises(ConfigError, match=r"exp\.yaml:4: field 'variants\[0\]\.base_url'"):
        load_config(path)


def test_a_local_variant_with_a_model_is_refused_before_any_call(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("variants:\n  - name: x\n    base: prompt-only\n    model: gpt-4o\n")
    result = cli("run", FIXTURES / "tiny-intents", "--config", path,
                 *run_dirs_args(tmp_path), ok=False)
    assert result.exit_code == 2
    assert "exp.yaml:2:" in result.output and "local provider has no server" in result.output
    assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").iterdir())


def test_one_registry_of_kinds_and_a_declared_variant_is_its_base_plus_overrides(tmp_path):
    assert VARIANT_KINDS.names() == ("prompt-only", "few-shot", "few-shot-fixed", "rag",
                                     "fine-tuned", "rag+fine-tuned")
    path = tmp_path / "exp.yaml"
    path.write_text("variants:\n  - name: big-rag\n    base: rag\n    rag: {k: 1}\n"
                    "    fine_tuned_model: ft:m\n")
    cfg = load_config(path)
    v = declared_variant(cfg.variants[0], load_testset(FIXTURES / "tiny-intents"), config=cfg)
    assert (v.kind, v.rag_k, v.fine_tuned, v.fine_tuned_model) == ("rag", 1, True, "ft:m")
    assert not v.needs_recorded_fine_tune


def test_the_config_file_is_read_once_per_run(tmp_path, monkeypatch):
    """Every load goes through config._Lines, however load_config was imported."""
    from evalkit import config as config_module

    reads = []
    real = config_module._Lines.__init__

    def counting(self, path, root):
        reads.append(str(path))
        real(self, path, root)

    monkeypatch.setattr(config_module._Lines, "__init__", counting)
    path = tmp_path / "exp.yaml"
    path.write_text("economics: {queries_per_month: 500}\n")
    cli("run", FIXTURES / "tiny-intents", "--config", path, "--variants", "prompt-only,rag",
        *run_dirs_args(tmp_path))
    assert reads == [str(path)]


def test_a_fine_tuned_variant_on_its_own_provider_gets_that_providers_fine_tune(tmp_path):
    """The run's provider is openai, the declared fine-tuned rung names the local one: its
    fine-tune is the local provider's (trained on demand), not an OpenAI record the run
    would look up under the run's provider (and, finding none, refuse to start)."""
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("variants:\n  - name: ft-local\n    base: fine-tuned\n    provider: local\n")
    with FakeOpenAI() as server:
        cli("run", FIXTURES / "tiny-intents", "--config", cfg, "--provider", "openai",
            "--base-url", server.base_url, "--model", "gpt-4o-mini",
            "--variants", "prompt-only,ft-local", *run_dirs_args(tmp_path))
        assert len(server.chat_calls(status=200)) == 8  # prompt-only only
    preds = read_jsonl(tmp_path / "reports" / "latest-tiny-intents" / "predictions.jsonl")
    models = {p["variant"]: p["model"] for p in preds}
    assert models["prompt-only"] == "gpt-4o-mini"
    assert models["ft-local"].startswith("local-ft:")


def test_fine_tuned_rungs_on_two_providers_are_named_not_mixed(tmp_path):
    """A run carries one recorded fine-tune: two providers' fine-tuned rungs are an error
    that names them, not one of them silently calling the other's model."""
    from evalkit.pipeline.routing import fine_tune_provider

    cfg = tmp_path / "exp.yaml"
    cfg.write_text("variants:\n  - name: ft-local\n    base: fine-tuned\n    provider: local\n"
                   "  - name: ft-own\n    base: fine-tuned\n    provider: local\n"
                   "    fine_tuned_model: local-ft:other\n")
    testset = load_testset(FIXTURES / "tiny-intents")
    variants = resolve(["prompt-only", "fine-tuned", "ft-local", "ft-own"], testset,
                       load_config(cfg))
    assert fine_tune_provider(variants[2:], "openai") == "local"  # ft-own names its model
    assert fine_tune_provider(variants[:1], "openai") is None
    with pytest.raises(ValueError, match=r"\(fine-tuned, ft-local\) run on local and openai"):
        fine_tune_provider(variants, "openai")
