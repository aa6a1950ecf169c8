"""What users run: llama.cpp's server, Ollama and vLLM answer Chat Completions a little unlike
OpenAI — `content: null`, a usage with fields missing or null, no `system_fingerprint`, any
model name echoed, chatty small models. Each case goes through `evalkit run` (and the scores
it writes) against the loopback server answering that way, and checks the run records what
the server did: what it billed, what the model said, and a score that says why."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from openai_server import FIXTURES, FakeOpenAI, cli, openai_env, read_jsonl, run_dirs_args

from evalkit.providers.pricing import PriceBook

_env = openai_env
INTENTS = FIXTURES / "tiny-intents"
QA = FIXTURES / "tiny-qa"
MODEL = "gpt-4o-mini"  # priced by genai-prices: no pricing section needed


def _run(server: FakeOpenAI, testset: Path, tmp_path: Path, *extra: str) -> Path:
    cli("run", testset, "--provider", "openai", "--base-url", server.base_url, "--model", MODEL,
        "--variants", "prompt-only", *run_dirs_args(tmp_path), *extra)
    return (tmp_path / "reports" / "latest").resolve()


def _scores(run_dir: Path, metric: str) -> dict[str, float]:
    with (run_dir / "scores.csv").open() as fh:
        return {r["item_id"]: float(r["value"]) for r in csv.DictReader(fh)
                if r["metric"] == metric}


def _billed(server: FakeOpenAI) -> float:
    return server.billed_usd(PriceBook.from_section(None))


def _message(payload: dict, **fields) -> dict:
    payload["choices"][0]["message"].update(fields)
    return payload


def test_content_null_is_an_empty_answer_billed_at_its_usage(tmp_path):
    # vLLM's reasoning parser, a model that spent its limit thinking, a tool-call-shaped reply:
    # a 200 with a usage and `content: null`. The server billed it; the model said nothing
    with FakeOpenAI(reshape=lambda p: _message(p, content=None)) as server:
        run_dir = _run(server, INTENTS, tmp_path)
        billed = _billed(server)
    preds = read_jsonl(run_dir / "predictions.jsonl")
    assert [p["error_class"] for p in preds] == [None] * 8
    assert all(p["output"] == "" for p in preds)
    assert sum(p["cost_usd"] for p in preds) == pytest.approx(billed) and billed > 0
    assert set(_scores(run_dir, "accuracy").values()) == {0.0}  # wrong, not left out as NaN


def _drop_completion_tokens(payload: dict) -> dict:
    usage = payload["usage"] = dict(payload["usage"])  # the server keeps what it counted
    del usage["completion_tokens"]
    usage["prompt_tokens_details"] = {"cached_tokens": None}
    return payload


def test_a_usage_without_completion_tokens_bills_the_answer_at_its_bound(tmp_path):
    # some Ollama/vLLM builds and proxies send prompt_tokens but leave completion_tokens out
    # (or null), and cached_tokens null: the answer was not free
    with FakeOpenAI(reshape=_drop_completion_tokens) as server:
        run_dir = _run(server, QA, tmp_path)
        billed = _billed(server)
        told = [u["completion_tokens"] for _, u in server.usages]
    preds = read_jsonl(run_dir / "predictions.jsonl")
    assert [p["error_class"] for p in preds] == [None] * 5
    # bytes bound tokens under any byte-level tokenizer: never below what the server counted
    assert all(p["output_tokens"] >= len(p["output"].encode()) > 0 for p in preds)
    assert sum(p["output_tokens"] for p in preds) >= sum(told)
    assert sum(p["cost_usd"] for p in preds) >= billed > 0


def _intents_csv(path: Path) -> Path:
    """A user's own labelled file, labels spelt as code identifiers (refund_request)."""
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["text", "label"])
        for i in range(20):
            out.writerow([f"I want my money back for charge {i}, refund it", "refund_request"])
            out.writerow([f"Please cancel my order {i} before it ships", "cancel_order"])
    return path


def _chatty_label(payload: dict) -> dict:
    label = payload["choices"][0]["message"]["content"]  # the label, as the server chose it
    return _message(payload, content=f"Sure! The intent is **{label.replace('_', ' ').title()}**.")


def test_a_chatty_answer_naming_the_label_in_words_is_that_label(tmp_path):
    cli("init", _intents_csv(tmp_path / "intents.csv"), tmp_path / "intents", "-y")
    with FakeOpenAI() as plain:
        right = _scores(_run(plain, tmp_path / "intents", tmp_path / "a"), "accuracy")
    with FakeOpenAI(reshape=_chatty_label) as chatty:
        run_dir = _run(chatty, tmp_path / "intents", tmp_path / "b")
    outputs = {p["output"] for p in read_jsonl(run_dir / "predictions.jsonl")}
    assert outputs <= {"Sure! The intent is **Refund Request**.",
                       "Sure! The intent is **Cancel Order**."} and len(outputs) == 2
    assert set(right.values()) == {1.0}
    assert _scores(run_dir, "accuracy") == right  # the same labels, written as words


def _abstaining_as(words: str):
    def reshape(payload: dict) -> dict:  # the server's "unknown", as a chatty model says it
        said = payload["choices"][0]["message"]["content"]
        return _message(payload, content=words) if said == "unknown" else payload
    return reshape


@pytest.mark.parametrize("words", ["I’m sorry, I don’t know.",  # typographic apostrophes
                                   "I do not know.",
                                   "I cannot answer that from the provided documents.",
                                   "I can’t answer this question."])
def test_a_chatty_abstention_is_an_abstention(tmp_path, words):
    with FakeOpenAI() as plain:
        said_unknown = _scores(_run(plain, QA, tmp_path / "a"), "token_f1")
    with FakeOpenAI(reshape=_abstaining_as(words)) as chatty:
        run_dir = _run(chatty, QA, tmp_path / "b")
    assert words in {p["output"] for p in read_jsonl(run_dir / "predictions.jsonl")}
    assert said_unknown["qte-04"] == 1.0  # tiny-qa's unanswerable question
    assert _scores(run_dir, "token_f1") == said_unknown


def test_answers_cut_at_the_output_limit_are_counted_and_said(tmp_path):
    # a chatty model runs past the task's output limit (qa: 64 tokens); the server cuts it
    # with finish_reason "length", and the cut answer is what gets scored: the run says so
    with FakeOpenAI(answer_tokens=100) as server:
        out = cli("run", QA, "--provider", "openai", "--base-url", server.base_url,
                  "--variants", "prompt-only", *run_dirs_args(tmp_path)).output
    run = json.loads(((tmp_path / "reports" / "latest").resolve() / "run.json").read_text())
    assert run["sessions"][-1]["cut_at_limit"] == 5 and run["totals"]["cut_at_limit"] == 5
    run_dir = (tmp_path / "reports" / "latest").resolve()
    cli("report", run_dir)
    report = (run_dir / "index.html").read_text()
    assert "answers cut at the output limit</td><td>5 " in report  # the report says so too
    assert ("warning: 5 answers were cut at the output limit (finish_reason \"length\")"
            in out)
    with FakeOpenAI() as server:  # answers within the limit: nothing to say
        out = cli("run", QA, "--provider", "openai", "--base-url", server.base_url,
                  "--variants", "prompt-only", *run_dirs_args(tmp_path / "b")).output
    assert "cut at the output limit" not in out


def test_a_cap_crossed_by_a_server_that_ignores_every_limit_is_said(tmp_path):
    # a server honouring neither max_tokens nor max_completion_tokens: the first answer shows
    # it (one call in flight until then) but that answer's cost had no bound. The run stops
    # there, and must not leave "spent $2.683 of the $1.000 cap" to be read as within it
    config = tmp_path / "exp.yaml"
    config.write_text("pricing:\n  models:\n    m: {input_per_mtok: 1000, output_per_mtok: 4000}\n")
    with FakeOpenAI(answer_tokens=650, obeys=()) as server:
        out = cli("run", INTENTS, "--provider", "openai", "--base-url", server.base_url,
                  "--model", "m", "--config", config, "--variants", "prompt-only",
                  "--max-cost-usd", "1", *run_dirs_args(tmp_path), ok=False).output
        answered = len(server.chat_calls(200))
    assert answered == 1  # the budget stop came right after the answer that crossed it
    assert "warning: the run spent $2.683, over its $1.000 cap:" in out
    assert "the server ignores output limits" in out


def _thinking_first(payload: dict) -> dict:
    # a reasoning model (Qwen3, DeepSeek-R1) behind llama.cpp or Ollama with no reasoning
    # parser: its thoughts come first in content, naming every label and a draft record
    said = payload["choices"][0]["message"]["content"]
    return _message(payload, content="<think>\nIs it refund, login, export or bug? A draft: "
                                     '{"order_id": "KP-000000"}. Decided.\n</think>\n\n' + said)


def test_a_reasoning_models_think_block_is_not_its_answer(tmp_path):
    with FakeOpenAI() as plain:
        right = _scores(_run(plain, INTENTS, tmp_path / "a"), "accuracy")
    with FakeOpenAI(reshape=_thinking_first) as thinking:
        run_dir = _run(thinking, INTENTS, tmp_path / "b")
    preds = read_jsonl(run_dir / "predictions.jsonl")
    assert all("<think>" not in p["output"] for p in preds)
    assert _scores(run_dir, "accuracy") == right and sum(right.values()) > 0
    # cut at the limit while still thinking: it never answered
    with FakeOpenAI(reshape=lambda p: _message(p, content="<think>\nrefund or login")) as cut:
        run_dir = _run(cut, INTENTS, tmp_path / "c")
    assert {p["output"] for p in read_jsonl(run_dir / "predictions.jsonl")} == {""}


def test_answers_billed_at_bounds_for_want_of_usage_are_said(tmp_path):
    # a server that sends no usage: each answer is billed at its UTF-8 bytes (a bound the
    # budget needs), several times its tokens, so its cost reads high: on tiny-qa the gate
    # saw +541% cost per query against the same server with usage. The run says so
    with FakeOpenAI(report_usage=False) as server:
        out = cli("run", QA, "--provider", "openai", "--base-url", server.base_url,
                  "--variants", "prompt-only", *run_dirs_args(tmp_path)).output
    run = json.loads(((tmp_path / "reports" / "latest").resolve() / "run.json").read_text())
    assert run["sessions"][-1]["usage_estimated"] == 5
    assert "warning: the server counted no tokens for 5 answers" in out
    with FakeOpenAI() as server:
        out = cli("run", QA, "--provider", "openai", "--base-url", server.base_url,
                  "--variants", "prompt-only", *run_dirs_args(tmp_path / "b")).output
    assert "counted no tokens" not in out
