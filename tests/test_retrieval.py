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


# A corpus shaped like the ones that used to give title-only chunks: a title over one long
# paragraph, stacked headings, short sections to pack, a long list, a fenced block whose
# comment lines start with '#', and a heading at the very end.
STRUCTURED = {
    "title-over-paragraph": "# Refund policy\n" + " ".join(f"refund{i}" for i in range(70)),
    "stacked": "# Plans\n## Team plan\n" + " ".join(f"team{i}" for i in range(15))
               + "\n## Business plan\n" + " ".join(f"biz{i}" for i in range(15))
               + "\n## Enterprise plan\nAsk sales.\n",
    "long-list": "# Limits\n\n## API\n" + "\n".join(f"- limit {i}: {i * 10} calls per minute"
                                                    for i in range(20)),
    "fenced": "# Export script\nRun it nightly.\n```sh\n# not a heading\n"
              + "\n".join(f"echo step{i}" for i in range(10)) + "\n```\n## Notes\nKeep logs.\n",
    "trailing-heading": "# FAQ\nShort answer here.\n## See also\n",
    "headings-only": "# Just a title\n## And a subtitle\n",
}


def _is_heading(line: str) -> bool:
    return retrieval._HEADING.match(line) is not None


def _structured_chunks(size=20, overlap=5):
    return {doc_id: chunk_document(Document(doc_id, text), size=size, overlap=overlap)
            for doc_id, text in STRUCTURED.items()}


def test_no_chunk_holds_only_a_title():
    for doc_id, chunks in _structured_chunks().items():
        assert chunks, doc_id
        if doc_id == "headings-only":  # nothing but headings: they are the text
            assert [c.text for c in chunks] == ["# Just a title\n## And a subtitle"]
            continue
        for c in chunks:
            assert not all(_is_heading(line) for line in c.text.splitlines()), (doc_id, c.text)


def test_no_bundled_policy_qa_chunk_is_title_only():
    ts = load_testset("testsets/policy-qa")
    c = ts.task.corpus
    chunks = [p for d in ts.docs for p in chunk_document(d, size=c.chunk_size,
                                                         overlap=c.chunk_overlap)]
    assert len(chunks) > len(ts.docs)
    title_only = [p for p in chunks if all(_is_heading(x) for x in p.text.splitlines())]
    assert title_only == []


def test_a_long_section_keeps_its_heading_in_every_window_and_every_word():
    chunks = _structured_chunks()["title-over-paragraph"]
    assert len(chunks) > 1
    for c in chunks:
        heading, body = c.text.split("\n", 1)
        assert heading == "# Refund policy"
        assert 0 < len(body.split()) <= 20
    seen = {w for c in chunks for w in c.text.split()}
    assert {f"refund{i}" for i in range(70)} <= seen


def test_short_sections_are_packed_and_fences_are_not_headings():
    stacked = [c.text for c in _structured_chunks()["stacked"]]
    # the title and first sub-heading share a section; each plan section fits in 20 words
    assert stacked[0].startswith("# Plans\n## Team plan\nteam0")
    assert any("## Business plan" in t for t in stacked)
    assert any("## Enterprise plan\nAsk sales." in t for t in stacked)
    fenced = "\n".join(c.text for c in _structured_chunks(size=200)["fenced"])
    assert "# not a heading" in fenced  # kept as body inside the fence
    assert len(_structured_chunks(size=200)["fenced"]) == 1  # one section pack, not split


def test_a_trailing_heading_joins_the_section_before_it():
    texts = [c.text for c in _structured_chunks()["trailing-heading"]]
    assert texts == ["# FAQ\nShort answer here.\n## See also"]


def test_a_new_chunker_version_does_not_reuse_old_indexes(corpus_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(retrieval, "_MEMO", {})
    cache = tmp_path / "cache"
    first = _index(corpus_dir, cache_dir=cache)
    monkeypatch.setattr(retrieval, "_MEMO", {})
    monkeypatch.setattr(retrieval, "CHUNKER_VERSION", retrieval.CHUNKER_VERSION + 1)
    again = _index(corpus_dir, cache_dir=cache)
    assert again is not first
    assert len(list((cache / "index").glob("*.pkl"))) == 2
