"""The embedded local provider and its fine-tune, on small fixtures.

Every answer here must come from the Request: label descriptions, examples, passages, or a
model trained on the train split. Tests that change only the Request and see the answer
change prove it is not answering from memory.
"""

from __future__ import annotations

import asyncio
import json
import pickle

import pytest
from click.testing import CliRunner
from conftest import append_jsonl

from evalkit.cli import main
from evalkit.data.testset import load_testset
from evalkit.providers import get_provider
from evalkit.providers.local import LocalProvider, answer_question, classify
from evalkit.strategies.finetune import (
    LeakageError,
    QAMemory,
    check_record_for,
    ensure_local,
    load_local_model,
    load_record,
    train_local,
)
from evalkit.strategies.request import Example, Request
from evalkit.strategies.retrieval import Passage

LABELS = (
    ("refund", "Wants money back for a charge already made."),
    ("login", "Cannot sign in, forgot the password, or the account is locked."),
    ("export", "Wants to download or export their data as CSV or JSON."),
    ("bug", "Something in the product is broken, crashes or shows an error."),
)
RETENTION = ("Deleted projects are kept in the trash for 30 days before permanent deletion. "
             "Audit logs are retained for 365 days on the Enterprise plan.")
PRICING = ("The Team plan costs €12 per user per month. The Business plan costs €24 per user "
           "per month. Enterprise pricing is agreed by contract.")
PASSAGES = (Passage("retention", 0, RETENTION), Passage("pricing", 0, PRICING))


def _complete(provider, request):
    return asyncio.run(provider.complete(request))


def _clf(text, labels=LABELS, **kw):
    return Request("classification", "Classify.", text, labels=labels, **kw)


# --- zero-shot and few-shot classification ----------------------------------------------------

@pytest.mark.parametrize("text,label", [
    ("I forgot my password and cannot sign in", "login"),
    ("please give me my money back for this charge", "refund"),
    ("how can I export my data as CSV", "export"),
    ("the app crashes with an error", "bug"),
])
def test_zero_shot_picks_the_obviously_described_label(text, label):
    assert classify(_clf(text)) == label


def test_zero_shot_follows_the_descriptions_not_the_label_names():
    # the same input, with the descriptions of login and refund swapped
    swapped = ((LABELS[0][0], LABELS[1][1]), (LABELS[1][0], LABELS[0][1]), *LABELS[2:])
    assert classify(_clf("I forgot my password and cannot sign in", labels=swapped)) == "refund"


GENERIC = (("alpha", "first kind"), ("beta", "second kind"))
EXAMPLES = (Example("the sky is blue and clear today", "alpha"),
            Example("cats purr softly on warm laps", "beta"),
            Example("clouds drift across the blue sky", "alpha"),
            Example("my cat purrs and naps", "beta"))


def test_knn_vote_follows_the_examples():
    assert classify(_clf("a cat purring softly", labels=GENERIC, examples=EXAMPLES)) == "beta"
    assert classify(_clf("blue sky with clouds", labels=GENERIC, examples=EXAMPLES)) == "alpha"
    relabelled = tuple(Example(e.input, "alpha" if e.output == "beta" else "beta")
                       for e in EXAMPLES)
    assert classify(_clf("a cat purring softly", labels=GENERIC,
                         examples=relabelled)) == "alpha"
    assert classify(_clf("blue sky with clouds", labels=GENERIC,
                         examples=relabelled)) == "beta"


def test_classification_needs_labels():
    with pytest.raises(ValueError, match="needs labels"):
        classify(Request("classification", "Classify.", "hello"))


# --- extractive QA ----------------------------------------------------------------------------

def _qa(question, **kw):
    return Request("qa", "Answer.", question, **kw)


@pytest.mark.parametrize("question,span", [
    ("How long are projects kept in the trash once deleted?", "30 days"),
    ("How long are audit logs retained?", "365 days"),
    ("What does the Team plan cost?", "€12 per user per month"),
])
def test_extractive_qa_returns_the_span(question, span):
    assert answer_question(_qa(question, passages=PASSAGES), min_support=0.12) == span


def test_qa_unknown_when_passages_do_not_support_an_answer():
    q = "Which office does Brightlane have in Japan?"
    assert answer_question(_qa(q, passages=PASSAGES), min_support=0.12) == "unknown"


def test_qa_unknown_without_passages_even_for_answerable_questions():
    q = "How long are projects kept in the trash once deleted?"
    assert answer_question(_qa(q), min_support=0.12) == "unknown"


def test_qa_answer_comes_from_the_passages_given():
    q = "How long are projects kept in the trash once deleted?"
    edited = (Passage("retention", 0, RETENTION.replace("30 days", "45 days")),)
    assert answer_question(_qa(q, passages=edited), min_support=0.12) == "45 days"


def test_qa_reuses_the_answer_of_a_near_identical_example():
    ex = (Example("How many days do I have to ask for a refund?", "14 days"),
          Example("Who is the CEO?", "unknown"))
    req = _qa("How many days do I have to ask for a refund on my plan?", examples=ex)
    assert answer_question(req, min_support=0.12) == "14 days"
    far = _qa("What colour is the logo?", examples=ex)
    assert answer_question(far, min_support=0.12) == "unknown"


# --- the provider object ----------------------------------------------------------------------

def test_provider_completion_counts_tokens_and_prices_them():
    provider = get_provider("local", finetune_dir="unused")
    assert isinstance(provider, LocalProvider)
    req = _qa("How long are projects kept in the trash once deleted?", passages=PASSAGES)
    c = _complete(provider, req)
    assert c.text == "30 days"
    assert c.model == "local-tfidf" and provider.model_for(req) == "local-tfidf"
    assert c.usage.input_tokens == sum(len(m["content"].split()) for m in req.messages())
    assert c.usage.output_tokens == 2
    expected_cost = (c.usage.input_tokens * 0.05 + 2 * 0.20) / 1e6
    assert c.cost_usd == pytest.approx(expected_cost)
    assert _complete(provider, req).cost_usd == c.cost_usd  # deterministic
    assert c.cached is False


def test_provider_rejects_unsupported_task_type_and_unknown_provider():
    with pytest.raises(NotImplementedError, match="'poetry'"):  # no answerer registered
        _complete(LocalProvider(), Request("poetry", "Write.", "a poem"))
    with pytest.raises(ValueError, match="unknown provider 'nope'"):
        get_provider("nope")


def test_cache_params_carry_no_secrets_and_change_with_settings():
    a, b = LocalProvider(), LocalProvider(qa_min_support=0.3)
    assert a.cache_params() != b.cache_params()
    assert "key" not in json.dumps(a.cache_params()).lower()


# --- local fine-tune --------------------------------------------------------------------------

def test_finetune_saves_record_and_artifact_with_training_time(intents_dir, tmp_path):
    ts = load_testset(intents_dir)
    record = train_local(ts, tmp_path / "ft")
    assert record.provider == "local" and record.status == "succeeded"
    assert record.trained_examples == 12
    assert record.training_time_s > 0 and record.training_cost_usd > 0
    assert record.train_hash == ts.file_hashes["train.jsonl"]
    assert record.fine_tuned_model == f"local-ft:tiny-intents-local@{record.train_hash[:12]}"
    saved = json.loads((tmp_path / "ft" / "tiny-intents-local.json").read_text())
    assert saved["training_time_s"] == record.training_time_s
    assert load_record(tmp_path / "ft", "tiny-intents-local") == record
    with (tmp_path / "ft" / "tiny-intents-local.pkl").open("rb") as fh:
        model = pickle.load(fh)
    assert set(model.classes_) == {"refund", "login", "export", "bug"}


def test_provider_answers_with_the_fine_tuned_model(intents_dir, tmp_path):
    """With misleading descriptions, zero-shot fails and the trained model still gets it."""
    ts = load_testset(intents_dir)
    record = train_local(ts, tmp_path / "ft")
    names, descs = zip(*LABELS, strict=True)
    rotated = tuple(zip(names, descs[1:] + descs[:1], strict=True))
    provider = LocalProvider(finetune_dir=tmp_path / "ft")
    zero_shot, tuned = [], []
    for it in ts.test:
        zero_shot.append(_complete(provider, _clf(it.input, labels=rotated)).text)
        c = _complete(provider, _clf(it.input, labels=rotated, model=record.fine_tuned_model))
        assert c.model == record.fine_tuned_model
        tuned.append(c.text)
    expected = [it.expected for it in ts.test]
    assert tuned == expected
    assert sum(z == e for z, e in zip(zero_shot, expected, strict=True)) <= 2


def test_fine_tuned_calls_cost_more(intents_dir, tmp_path):
    record = train_local(load_testset(intents_dir), tmp_path / "ft")
    provider = LocalProvider(finetune_dir=tmp_path / "ft")
    base = _complete(provider, _clf("locked out"))
    tuned = _complete(provider, _clf("locked out", model=record.fine_tuned_model))
    assert tuned.usage == base.usage
    assert tuned.cost_usd == pytest.approx(2.0 * base.cost_usd)


def test_qa_fine_tune_recalls_train_answers(qa_dir, tmp_path):
    ts = load_testset(qa_dir)
    record = train_local(ts, tmp_path / "ft")
    memory = load_local_model(tmp_path / "ft", record.fine_tuned_model)
    assert isinstance(memory, QAMemory)
    answer, confidence = memory.recall("What is the per-seat monthly price of Business?")
    assert answer == "€24 per user per month" and confidence == pytest.approx(1.0)
    provider = LocalProvider(finetune_dir=tmp_path / "ft")
    paraphrase = _qa("What is the monthly seat price for the Business tier?",
                     model=record.fine_tuned_model)
    assert _complete(provider, paraphrase).text == "€24 per user per month"
    unrelated = _qa("Which office does Brightlane have in Japan?", model=record.fine_tuned_model)
    assert _complete(provider, unrelated).text == "unknown"


def test_missing_artifact_says_how_to_train(tmp_path):
    provider = LocalProvider(finetune_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="evalkit finetune --provider local"):
        _complete(provider, _clf("locked out", model="local-ft:nothing@123"))


def test_ensure_local_reuses_then_retrains_when_train_changes(copy_fixture, tmp_path):
    root = copy_fixture("tiny-intents")
    first = ensure_local(load_testset(root), tmp_path / "ft")
    artifact = tmp_path / "ft" / "tiny-intents-local.pkl"
    mtime = artifact.stat().st_mtime_ns
    assert ensure_local(load_testset(root), tmp_path / "ft") == first
    assert artifact.stat().st_mtime_ns == mtime
    append_jsonl(root / "train.jsonl", {"id": "tr-13", "input": "two factor code never comes",
                                        "expected": "login"})
    second = ensure_local(load_testset(root), tmp_path / "ft")
    assert second.trained_examples == 13
    assert second.fine_tuned_model != first.fine_tuned_model
    artifact.unlink()
    third = ensure_local(load_testset(root), tmp_path / "ft")
    assert artifact.is_file() and third.trained_examples == 13


def test_check_record_for_flags_a_local_model_trained_on_an_older_train_split(copy_fixture,
                                                                               tmp_path):
    root = copy_fixture("tiny-intents")
    record = train_local(load_testset(root), tmp_path / "ft")
    assert check_record_for(load_testset(root), record) == []
    append_jsonl(root / "train.jsonl", {"id": "tr-13", "input": "two factor code never comes",
                                        "expected": "login"})
    [warning] = check_record_for(load_testset(root), record)
    assert f"{record.fine_tuned_model} was trained" in warning
    assert record.train_hash[:12] in warning


def test_finetune_refuses_leaking_data(copy_fixture, tmp_path):
    root = copy_fixture("tiny-intents")
    append_jsonl(root / "test.jsonl", {"id": "te-09", "expected": "bug",
                                       "input": "Clicking save throws error 500 every time!"})
    ts = load_testset(root)
    with pytest.raises(LeakageError, match=r"te-09 ~ tr-12") as info:
        train_local(ts, tmp_path / "ft")
    assert "refusing to fine-tune" in str(info.value)
    assert not (tmp_path / "ft").exists()
    record = train_local(ts, tmp_path / "ft", allow_leakage=True)
    assert (tmp_path / "ft" / f"{record.name}.pkl").is_file()


def test_finetune_cli_trains_and_refuses_leaks(copy_fixture, tmp_path):
    root = copy_fixture("tiny-intents")
    ft_dir = tmp_path / "ft"
    ok = CliRunner().invoke(main, ["finetune", "--provider", "local", "--finetune-dir",
                                   str(ft_dir), str(root)])
    assert ok.exit_code == 0, ok.output
    assert "trained local-ft:tiny-intents-local@" in ok.output
    assert "on 12 examples in" in ok.output
    assert str(ft_dir / "tiny-intents-local.json") in ok.output

    append_jsonl(root / "test.jsonl", {"id": "te-09", "expected": "bug",
                                       "input": "Clicking save throws error 500 every time!"})
    refused = CliRunner().invoke(main, ["finetune", "--finetune-dir", str(ft_dir), str(root)])
    assert refused.exit_code == 2
    assert "te-09 ~ tr-12" in refused.output and "refusing to fine-tune" in refused.output
