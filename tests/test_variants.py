"""What each rung of the ladder puts in its Request, how it renders, and that nothing peeks."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import FIXTURES

from evalkit.data.testset import load_testset
from evalkit.strategies.request import Example, Request
from evalkit.strategies.retrieval import Passage
from evalkit.strategies.variants import LADDER, Variant, VariantContext, default_variant

FT_MODEL = "local-ft:tiny-intents-local@abc123"


@pytest.fixture
def intents(intents_dir):
    return load_testset(intents_dir)


@pytest.fixture
def ctx(intents, tmp_path):
    return VariantContext(intents, cache_dir=tmp_path / "cache", fine_tuned_model=FT_MODEL)


def _build(name, ts, ctx, item_id):
    item = next(it for it in ts.test if it.id == item_id)
    return default_variant(name, ts).build(item, ctx)


def test_prompt_only_has_instructions_and_labels_only(intents, ctx):
    req = _build("prompt-only", intents, ctx, "te-01")
    assert req.task_type == "classification"
    assert req.instructions == intents.task.instructions
    assert req.input == "I want my money back for the charge on my card"
    assert req.labels == tuple(intents.task.labels.items())
    assert req.examples == () and req.passages == () and req.model is None


def test_few_shot_takes_k_similar_train_examples_most_similar_first(intents, ctx):
    req = _build("few-shot", intents, ctx, "te-05")  # "export our tasks as a CSV file"
    assert len(req.examples) == intents.task.few_shot_k == 3
    train = {it.input: it.expected for it in intents.train}
    assert all(ex.input in train and ex.output == train[ex.input] for ex in req.examples)
    assert req.examples[0] == Example("how do I export all my projects to CSV", "export")
    assert req.examples[1].output == "export"
    assert req.passages == () and req.model is None


def test_similar_examples_differ_per_item_and_follow_the_input(intents, ctx):
    login = _build("few-shot", intents, ctx, "te-03")  # password reset never shows up
    bug = _build("few-shot", intents, ctx, "te-07")    # board view crashes
    assert login.examples[0].output == "login"
    assert bug.examples[0].output == "bug"
    assert login.examples != bug.examples


def test_fixed_examples_are_the_same_for_every_item_and_stable(intents, ctx, tmp_path):
    variant = default_variant("few-shot-fixed", intents)
    assert variant.few_shot_selection == "fixed"
    per_item = {variant.build(it, ctx).examples for it in intents.test}
    assert len(per_item) == 1
    (examples,) = per_item
    assert len(examples) == 3
    assert len({ex.output for ex in examples}) == 3  # round-robin over labels
    fresh = VariantContext(intents, cache_dir=tmp_path / "other")
    assert variant.build(intents.test[0], fresh).examples == examples  # same seed, same set
    other_seed = [VariantContext(intents, seed=s).examples_for(intents.test[0], k=3,
                                                               selection="fixed")
                  for s in range(1, 6)]
    assert any(ex != examples for ex in other_seed)  # the seed matters


def test_few_shot_examples_never_include_test_items(intents, ctx):
    test_inputs = {it.input for it in intents.test}
    for it in intents.test:
        for selection in ("similar", "fixed"):
            exs = ctx.examples_for(it, k=12, selection=selection)
            assert not test_inputs & {ex.input for ex in exs}


def test_few_shot_without_train_is_an_error(copy_fixture, tmp_path):
    root = copy_fixture("tiny-intents")
    (root / "train.jsonl").unlink()
    ts = load_testset(root)
    with pytest.raises(ValueError, match="train.jsonl"):
        default_variant("few-shot", ts).build(ts.test[0], VariantContext(ts))


def test_rag_takes_k_passages_with_doc_ids(intents, ctx):
    req = _build("rag", intents, ctx, "te-03")
    assert len(req.passages) == intents.task.corpus.k == 2
    assert req.passages[0].doc_id == "signing-in"
    assert "reset link" in req.passages[0].text
    assert all(isinstance(p, Passage) for p in req.passages)
    assert req.passages[0].score >= req.passages[1].score
    assert req.examples == () and req.model is None


def test_fine_tuned_runs_on_the_pinned_model(intents, ctx):
    req = _build("fine-tuned", intents, ctx, "te-01")
    assert req.model == FT_MODEL
    assert req.examples == () and req.passages == ()


def test_rag_plus_fine_tuned_has_both(intents, ctx):
    req = _build("rag+fine-tuned", intents, ctx, "te-01")
    assert req.model == FT_MODEL
    assert len(req.passages) == 2 and req.passages[0].doc_id == "refunds"


def test_unknown_variant_and_rag_without_docs(intents, copy_fixture):
    with pytest.raises(ValueError, match="unknown variant 'chain-of-thought'"):
        default_variant("chain-of-thought", intents)
    root = copy_fixture("tiny-intents")
    for doc in (root / "docs").iterdir():
        doc.unlink()
    (root / "test.jsonl").write_text('{"id": "a", "input": "refund", "expected": "refund"}\n')
    (root / "train.jsonl").unlink()
    with pytest.raises(ValueError, match="needs a docs/ corpus"):
        default_variant("rag", load_testset(root))


def test_messages_render_labels_examples_and_passages(intents, ctx):
    variant = Variant("everything", few_shot_k=2, rag_k=2)
    item = intents.test[2]
    req = variant.build(item, ctx)
    msgs = req.messages()
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant",
                                         "user"]
    system = msgs[0]["content"]
    assert system.startswith(intents.task.instructions)
    for label, desc in intents.task.labels.items():
        assert f"- {label}: {desc}" in system
    assert msgs[1]["content"] == req.examples[0].input
    assert msgs[2]["content"] == req.examples[0].output == "login"
    last = msgs[-1]["content"]
    assert f"[1] ({req.passages[0].doc_id}) {req.passages[0].text}" in last
    assert f"[2] ({req.passages[1].doc_id})" in last
    assert last.rstrip().endswith(f"Question: {item.input}")


def test_prompt_only_messages_are_system_then_input(intents, ctx):
    msgs = _build("prompt-only", intents, ctx, "te-04").messages()
    assert msgs == [msgs[0], {"role": "user", "content": "locked out of my account"}]


def test_qa_request_has_no_label_block(qa_dir, tmp_path):
    ts = load_testset(qa_dir)
    ctx = VariantContext(ts, cache_dir=tmp_path / "c")
    req = default_variant("rag", ts).build(ts.test[1], ctx)
    assert req.labels == ()
    assert req.passages[0].doc_id == "retention"
    assert "Answer with exactly one of these labels" not in req.messages()[0]["content"]


def _everything(req: Request) -> str:
    return json.dumps(dataclasses.asdict(req), default=str) + json.dumps(req.messages())


@pytest.mark.parametrize("set_name", ["tiny-intents", "tiny-qa"])
@pytest.mark.parametrize("variant_name", [*LADDER, "few-shot-fixed"])
def test_no_peeking_request_does_not_depend_on_expected(set_name, variant_name, tmp_path):
    """Swapping an item's `expected` for a sentinel changes nothing in its Request.

    A literal "expected never appears" check cannot work: a label is in every classification
    prompt, and a train example or passage may rightly carry the same answer. What must hold is
    that the Request is a function of the input alone, which the sentinel proves.
    """
    ts = load_testset(FIXTURES / set_name)
    ctx = VariantContext(ts, cache_dir=tmp_path / "cache", fine_tuned_model=FT_MODEL)
    variant = default_variant(variant_name, ts)
    for item in ts.test:
        sentinel = f"SENTINEL-{item.id}-EXPECTED"
        planted = dataclasses.replace(item, expected=[sentinel], doc_ids=("nope",))
        req = variant.build(planted, ctx)
        assert req == variant.build(item, ctx)
        assert sentinel not in _everything(req)
        assert "nope" not in {p.doc_id for p in req.passages}


@pytest.mark.parametrize("text", ["refund please", "  padded\n\n", "\t{{ braces }} {% if %}", "",
                                  "日本語の質問？", "line one\nline two\r\n", "a\u2028b  "])
def test_the_user_message_without_passages_is_what_the_template_renders(text):
    """Request._render_messages skips jinja for a passage-less string input; the result must
    be the template's own."""
    from evalkit.strategies.request import _render, _user

    assert _user(text, ()) == _render("user.j2", input=text, passages=())
    passage = Passage(doc_id="d1", text="Opening hours are 9-5.", chunk=0)
    assert _user(text, (passage,)) == _render("user.j2", input=text, passages=(passage,))
