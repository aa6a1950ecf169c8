"""Retrieval: chunking, TF-IDF ranking of planted queries, and index reuse per corpus hash."""

from __future__ import annotations

import pytest

from evalkit.data.testset import Document, load_testset
from evalkit.strategies import retrieval
from evalkit.strategies.retrieval import Passage, TfidfIndex, build_index, chunk_document

DOCS = {
    "billing": "Invoices are issued on the first day of each month. You can change the billing "
               "address and VAT number under Settings, Billing. Payment by card or bank transfer.",
    "passwords": "To reset a forgotten password, click Forgot password on the sign-in page. The "
                 "reset link expires after one hour. Two-factor authentication can be enabled "
                 "in your profile.",
    "exports": "Export projects to CSV or JSON from Settings, Export. Large exports are emailed "
               "as a zip archive within ten minutes.",
    "integrations": "Connect Slack or Microsoft Teams to receive notifications. The GitHub "
                    "integration links commits and pull requests to tasks.",
    "deletion": "Deleted projects stay in the trash for thirty days. After that they are purged "
                "permanently and cannot be restored by support.",
}

PLANTED = [
    ("how do I change the VAT number on my invoices", "billing"),
    ("pasword resett link expired", "passwords"),  # typos: character n-grams still match
    ("can I get my deleted project back from the trash", "deletion"),
    ("send notifications to slack", "integrations"),
    ("download a zip of my projects as json", "exports"),
    ("github pull request links", "integrations"),
]


@pytest.fixture
def corpus_dir(tmp_path):
    """A small test set whose docs/ holds the corpus above."""
    root = tmp_path / "help-center"
    (root / "docs").mkdir(parents=True)
    for doc_id, text in DOCS.items():
        (root / "docs" / f"{doc_id}.md").write_text(f"# {doc_id}\n{text}\n")
    (root / "task.yaml").write_text(
        "name: help-center\ntype: qa\ninstructions: Answer.\n"
        "corpus: {chunk_size: 12, chunk_overlap: 3, k: 3}\n")
    (root / "test.jsonl").write_text(
        '{"id": "q1", "input": "when are invoices issued", "expected": "first day",'
        ' "doc_ids": ["billing"]}\n')
    return root


def _index(root, **kw):
    ts = load_testset(root)
    c = ts.task.corpus
    return build_index(ts.docs, chunk_size=c.chunk_size, chunk_overlap=c.chunk_overlap,
                       corpus_hash=ts.corpus_hash, **kw)


def test_chunks_overlap_and_cover_every_word():
    doc = Document("d", " ".join(f"w{i}" for i in range(10)))
    chunks = chunk_document(doc, size=4, overlap=1)
    assert [c.text for c in chunks] == ["w0 w1 w2 w3", "w3 w4 w5 w6", "w6 w7 w8 w9"]
    assert [c.chunk for c in chunks] == [0, 1, 2]
    assert {c.doc_id for c in chunks} == {"d"}


def test_short_and_empty_documents():
    assert [c.text for c in chunk_document(Document("d", "just three words"), size=50,
                                           overlap=10)] == ["just three words"]
    assert chunk_document(Document("d", "   "), size=5, overlap=1) == []


@pytest.mark.parametrize("query,gold", PLANTED)
def test_gold_doc_ranks_first_for_planted_queries(corpus_dir, tmp_path, query, gold):
    index = _index(corpus_dir, cache_dir=tmp_path / "cache")
    top = index.search(query, 3)
    assert len(top) == 3
    assert top[0].doc_id == gold
    assert top[0].score > 0
    assert [p.score for p in top] == sorted((p.score for p in top), reverse=True)
    assert all(isinstance(p, Passage) and p.text for p in top)


def test_search_k_bounds(corpus_dir):
    index = _index(corpus_dir)
    assert index.search("invoices", 0) == []
    n = len(index.passages)
    assert len(index.search("invoices", n + 5)) == n


def test_empty_corpus_is_refused():
    with pytest.raises(ValueError, match="empty corpus"):
        TfidfIndex([])


def test_index_is_built_once_per_corpus_and_reused_from_disk(corpus_dir, tmp_path,
                                                             monkeypatch):
    monkeypatch.setattr(retrieval, "_MEMO", {})
    cache = tmp_path / "cache"
    first = _index(corpus_dir, cache_dir=cache)
    assert _index(corpus_dir, cache_dir=cache) is first  # same process: memoised
    pickles = list((cache / "index").glob("*.pkl"))
    assert len(pickles) == 1

    monkeypatch.setattr(retrieval, "_MEMO", {})  # a new process: read back from disk
    chunked = []
    real_chunk = retrieval.chunk_document
    monkeypatch.setattr(retrieval, "chunk_document",
                        lambda doc, **kw: chunked.append(doc.id) or real_chunk(doc, **kw))
    again = _index(corpus_dir, cache_dir=cache)
    assert chunked == []  # nothing was re-chunked or re-fitted
    assert again is not first
    assert [p.doc_id for p in again.search(PLANTED[0][0], 3)] == \
        [p.doc_id for p in first.search(PLANTED[0][0], 3)]


def test_changed_corpus_or_chunking_gets_a_new_index(corpus_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(retrieval, "_MEMO", {})
    cache = tmp_path / "cache"
    first = _index(corpus_dir, cache_dir=cache)
    (corpus_dir / "docs" / "billing.md").write_text("# billing\nInvoices arrive weekly now.\n")
    changed = _index(corpus_dir, cache_dir=cache)
    assert changed is not first
    assert any("weekly" in p.text for p in changed.passages)
    assert not any("weekly" in p.text for p in first.passages)
    ts = load_testset(corpus_dir)
    other = build_index(ts.docs, chunk_size=40, chunk_overlap=5, corpus_hash=ts.corpus_hash,
                        cache_dir=cache)
    assert other is not changed and len(other.passages) < len(changed.passages)
    assert len(list((cache / "index").glob("*.pkl"))) == 3
