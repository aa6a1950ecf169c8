"""Fine-tuning through an OpenAI-compatible API and registering models trained elsewhere,
against loopback servers; then the whole ladder, fine-tuned rungs included, on those models."""

from __future__ import annotations

import json
import shutil

import pytest
from openai_server import FIXTURES, KEY, FakeOpenAI, assert_key_nowhere, cli, read_jsonl

from evalkit.finetune import LeakageError, load_record
from evalkit.finetune_openai import FineTuneError, build_lines, validate
from evalkit.request import Request
from evalkit.testset import load_testset

INTENTS = FIXTURES / "tiny-intents"
LADDER = "prompt-only,few-shot,rag,fine-tuned,rag+fine-tuned"


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def _dirs(tmp_path):
    return ["--reports-dir", tmp_path / "reports", "--cache-dir", tmp_path / "cache",
            "--finetune-dir", tmp_path / "finetunes", "--no-progress"]


def test_training_lines_are_the_prompt_only_messages_plus_the_reference():
    testset = load_testset(INTENTS)
    lines = build_lines(testset)
    assert len(lines) == len(testset.train) == 12
    for item, line in zip(testset.train, lines, strict=True):
        prompt = Request(task_type="classification", instructions=testset.task.instructions,
                         input=item.input, labels=tuple(testset.task.labels.items()))
        assert line["messages"][:-1] == prompt.messages()
        assert line["messages"][-1] == {"role": "assistant", "content": item.expected}


def test_validation_needs_ten_examples_and_non_empty_turns():
    lines = build_lines(load_testset(INTENTS))
    with pytest.raises(FineTuneError, match="9 training examples; .* at least 10"):
        validate(lines[:9], "train.jsonl")
    lines[3]["messages"][-1]["content"] = " "
    with pytest.raises(FineTuneError, match="train.jsonl: line 4: field 'content' is empty"):
        validate(lines, "train.jsonl")


def test_leaking_test_item_is_refused_before_any_upload(tmp_path):
    leaky = tmp_path / "leaky"
    shutil.copytree(INTENTS, leaky)
    first_test = (leaky / "test.jsonl").read_text().splitlines()[0]
    row = json.loads(first_test) | {"id": "tr-leak"}
    with (leaky / "train.jsonl").open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    with FakeOpenAI(api_key=KEY) as server:
        result = cli("finetune", leaky, "--provider", "openai", "--base-url", server.base_url,
                     "--finetune-dir", tmp_path / "ft", ok=False)
        assert server.requests == []
    assert result.exit_code == 2 and "leak" in result.output
    with pytest.raises(LeakageError):
        from evalkit.finetune_openai import prepare
        from evalkit.pricing import PriceBook
        prepare(load_testset(leaky), base_model="gpt-4o-mini-2024-07-18", prices=PriceBook())


def test_job_flow_records_model_tokens_cost_and_the_ladder_runs_on_it(tmp_path):
    """Done when: the whole ladder, fine-tuned rungs included, against the test server."""
    with FakeOpenAI(api_key=KEY, polls_per_stage=2, fault_rate=0.1,
                    fault_retry_after=0.01) as server:
        out = cli("finetune", INTENTS, "--provider", "openai", "--base-url", server.base_url,
                  "--finetune-dir", tmp_path / "finetunes", "--poll-interval", "0.01",
                  "--epochs", "2").output
        record = load_record(tmp_path / "finetunes", "tiny-intents-openai")
        job = server.jobs[record.job_id]
        uploaded = [json.loads(x) for x in server.files[job.training_file].decode().splitlines()]
        run = cli("run", INTENTS, "--provider", "openai", "--base-url", server.base_url,
                  "--variants", LADDER, *_dirs(tmp_path)).output
        ft_calls = [r for r in server.chat_calls(200) if r.model == record.fine_tuned_model]
        assert server.answered_twice() == []
    assert "estimated training cost $" in out and "event: Job entered running" in out
    assert uploaded == build_lines(load_testset(INTENTS))
    assert record.status == "succeeded" and job.n_epochs == 2
    assert record.fine_tuned_model == f"ft:gpt-4o-mini-2024-07-18:evalkit::{record.job_id}"
    assert record.trained_tokens == server.trained_tokens(job) > 0
    # $3.00 per million trained tokens for gpt-4o-mini-2024-07-18
    assert record.training_cost_usd == pytest.approx(record.trained_tokens * 3.0 / 1e6)
    preds = read_jsonl((tmp_path / "reports" / "latest").resolve() / "predictions.jsonl")
    assert len(preds) == 40 and all(p["error_class"] is None for p in preds), run
    ft_preds = [p for p in preds if p["variant"] in ("fine-tuned", "rag+fine-tuned")]
    assert {p["model"] for p in ft_preds} == {record.fine_tuned_model}
    assert len(ft_calls) == 16 and all(p["cost_usd"] > 0 for p in ft_preds)
    setup = json.loads(((tmp_path / "reports" / "latest").resolve() / "run.json")
                       .read_text())["setup"]
    assert setup["fine_tune"]["training_cost_usd"] == record.training_cost_usd
    assert assert_key_nowhere(tmp_path) >= 5


def test_status_resumes_polling_from_the_record(tmp_path):
    from evalkit.finetune_openai import client, prepare, start
    from evalkit.pricing import PriceBook

    with FakeOpenAI(api_key=KEY, polls_per_stage=1) as server:
        testset = load_testset(INTENTS)
        training = prepare(testset, base_model="gpt-4o-mini-2024-07-18", prices=PriceBook())
        start(testset, tmp_path / "ft", sdk=client(server.base_url), base_model=
              "gpt-4o-mini-2024-07-18", training=training, base_url=server.base_url)
        # the process that started the job died here; a new one picks it up from the record
        pending = load_record(tmp_path / "ft", "tiny-intents-openai")
        out = cli("finetune", "status", "tiny-intents-openai", "--finetune-dir", tmp_path / "ft",
                  "--poll-interval", "0.01").output
    assert pending.status == "validating_files" and not pending.fine_tuned_model
    done = load_record(tmp_path / "ft", "tiny-intents-openai")
    assert done.status == "succeeded" and done.fine_tuned_model and done.trained_tokens
    assert "status: succeeded" in out
    assert_key_nowhere(tmp_path)


def test_register_a_model_served_by_a_second_server(tmp_path):
    config = tmp_path / "experiment.yaml"
    config.write_text("pricing:\n  models:\n    acme-intents-lora:\n"
                      "      {usd_per_gpu_hour: 1.8, tokens_per_second: 500}\n")
    with FakeOpenAI(api_key=KEY, served_models=("gpt-4o-mini",)) as base, \
            FakeOpenAI(api_key=KEY, served_models=("acme-intents-lora",)) as lora:
        out = cli("finetune", "register", "tiny-intents-openai", "--model", "acme-intents-lora",
                  "--base-url", lora.base_url, "--gpu-hours", "0.5", "--usd-per-hour", "2.0",
                  "--base-model", "Qwen2.5-1.5B-Instruct", "--testset", INTENTS,
                  "--finetune-dir", tmp_path / "finetunes").output
        cli("run", INTENTS, "--provider", "openai", "--base-url", base.base_url,
            "--variants", "prompt-only,fine-tuned", "--config", config, *_dirs(tmp_path))
        base_models = {r.model for r in base.chat_calls()}
        lora_models = {r.model for r in lora.chat_calls()}
        lora_200 = lora.chat_calls(200)
    record = load_record(tmp_path / "finetunes", "tiny-intents-openai")
    assert record.training_cost_usd == pytest.approx(1.0) and record.job_id is None
    assert record.base_url == lora.base_url and record.trained_examples == 12
    assert "training cost $1.0000" in out
    assert base_models == {"gpt-4o-mini"} and lora_models == {"acme-intents-lora"}
    preds = read_jsonl((tmp_path / "reports" / "latest").resolve() / "predictions.jsonl")
    assert all(p["error_class"] is None for p in preds) and len(preds) == 16
    ft = [p for p in preds if p["variant"] == "fine-tuned"]
    assert len(lora_200) == 8 and all(p["model"] == "acme-intents-lora" for p in ft)
    # GPU-hour price: $1.8/h at 500 tok/s = $1 per million tokens
    assert all(p["cost_usd"] == pytest.approx((p["input_tokens"] + p["output_tokens"]) / 1e6)
               for p in ft)
    assert_key_nowhere(tmp_path)


def test_register_refuses_half_a_gpu_price(tmp_path):
    result = cli("finetune", "register", "x", "--model", "m", "--gpu-hours", "2",
                 "--finetune-dir", tmp_path, ok=False)
    assert result.exit_code == 2 and "--usd-per-hour" in result.output
