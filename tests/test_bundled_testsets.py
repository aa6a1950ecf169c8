"""The bundled test sets keep their size and their invariants (a later edit cannot shrink them)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from evalkit.data.leakage import find_leaks
from evalkit.data.testset import load_testset

ROOT = Path(__file__).parent.parent / "testsets"


@pytest.fixture(scope="module")
def intents():
    return load_testset(ROOT / "support-intents")


@pytest.fixture(scope="module")
def policy():
    return load_testset(ROOT / "policy-qa")


def test_support_intents_size_and_balance(intents):
    assert intents.task.type == "classification"
    assert len(intents.task.labels) >= 14
    assert all(intents.task.labels.values()), "every label has a description"
    test_counts = Counter(it.expected for it in intents.test)
    train_counts = Counter(it.expected for it in intents.train)
    assert set(test_counts) == set(train_counts) == set(intents.task.labels)
    assert min(test_counts.values()) >= 25 and len(intents.test) >= 350
    assert min(train_counts.values()) >= 40 and len(intents.train) >= 560


def test_support_intents_has_one_article_per_intent(intents):
    docs = {d.id: d for d in intents.docs}
    for label in intents.task.labels:
        article = docs[label.replace("_", "-")]
        assert len(article.text.split()) >= 150
    assert all(it.doc_ids == (it.expected.replace("_", "-"),) for it in intents.test)


def test_policy_qa_size_and_shape(policy):
    assert policy.task.type == "qa"
    assert len(policy.docs) >= 30
    assert all(150 <= len(d.text.split()) <= 700 for d in policy.docs)
    assert len(policy.test) >= 300 and len(policy.train) >= 300
    for split in (policy.test, policy.train):
        unanswerable = [it for it in split if not it.answerable]
        multi = [it for it in split if len(it.doc_ids) >= 2]
        assert 0.03 <= len(unanswerable) / len(split) <= 0.08
        assert 0.07 <= len(multi) / len(split) <= 0.14
        for it in split:
            if not it.answerable:  # expected: null, the corpus cannot answer it
                assert it.expected is None and it.doc_ids == (), it.id
                assert it.cluster == "unanswerable", it.id
            else:
                assert isinstance(it.expected, list) and it.expected, it.id
                assert it.doc_ids and it.cluster == it.doc_ids[0], it.id


def test_policy_qa_answers_are_in_their_documents(policy):
    """An answerable single-document question's answer is stated in the document it cites."""
    text = {d.id: " ".join(d.text.replace("**", "").lower().split()) for d in policy.docs}
    missing = [it.id for it in policy.test if len(it.doc_ids) == 1
               and not any(" ".join(r.lower().split()) in text[it.doc_ids[0]]
                           for r in it.references)]
    assert missing == []


@pytest.mark.parametrize("name", ["support-intents", "policy-qa"])
def test_no_leakage_and_no_repeated_questions(name):
    ts = load_testset(ROOT / name)
    assert find_leaks(ts.test, ts.train, threshold=0.9) == []
    assert len({it.input for it in (*ts.test, *ts.train)}) == len(ts.test) + len(ts.train)
