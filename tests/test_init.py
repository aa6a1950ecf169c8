"""`evalkit init` and its importers: from a user's own file to a run with no hand-written file."""

from __future__ import annotations

import csv
import functools
import json
import random
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import write_jsonl

from evalkit.cli import main
from evalkit.data import importers, scaffold
from evalkit.data.testset import TestsetError, load_testset

N_LABELS, PER_LABEL = 40, 50  # dozens of labels, 2,000 rows


def _words(rng: random.Random, n: int, length: int = 7) -> list[str]:
    return ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(length))
            for _ in range(n)]


def _intent_csv(path: Path) -> Path:
    """A `text,category` CSV: each label has its own keywords, every row its own fillers, so
    the labels are learnable and no two rows are near-duplicates."""
    rng = random.Random(7)
    filler = _words(rng, 3000, 6)
    keywords = {f"intent_{i:02d}": _words(rng, 4) for i in range(N_LABELS)}
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["text", "category"])
        for label, keys in keywords.items():
            for _ in range(PER_LABEL):
                text = rng.sample(filler, 8) + rng.sample(keys, 2)
                rng.shuffle(text)
                out.writerow([" ".join(text), label])
    return path


def _run(root: Path, tmp_path: Path, *flags: str):
    return CliRunner().invoke(main, ["run", str(root), "--no-progress", "--no-report",
                                     "--reports-dir", str(tmp_path / "reports"),
                                     "--cache-dir", str(tmp_path / "cache"),
                                     "--finetune-dir", str(tmp_path / "ft"), *flags])


def test_init_from_one_intent_csv_then_run_the_ladder(tmp_path):
    source = _intent_csv(tmp_path / "banking.csv")
    out = tmp_path / "sets" / "banking"
    init = CliRunner().invoke(main, ["init", str(source), str(out)], input="y\n")
    assert init.exit_code == 0, init.output
    assert "type: classification (inferred" in init.output
    assert f"labels: {N_LABELS} (intent_00, intent_01" in init.output
    assert "write " in init.output and "[Y/n]" in init.output  # asked, and confirmed
    assert "--variants prompt-only,few-shot,fine-tuned" in init.output  # no docs: no rag

    task = yaml.safe_load((out / "task.yaml").read_text())
    assert task["type"] == "classification" and len(task["labels"]) == N_LABELS
    assert task["labels"]["intent_07"] == "intent 07"  # stubbed from the name
    assert task["metrics"] == {"primary": "accuracy", "secondary": ["macro_f1"]}
    ts = load_testset(out)
    assert len(ts.test) == N_LABELS * 10 and len(ts.train) == N_LABELS * 40  # 20 %, per label
    assert {it.expected for it in ts.test} == set(task["labels"])
    assert "seed 0" in (out / "README.md").read_text()

    ran = _run(out, tmp_path, "--variants", "prompt-only,few-shot,fine-tuned")
    assert ran.exit_code == 0, ran.output
    summary = json.loads((tmp_path / "reports" / "latest" / "summary.json").read_text())
    assert summary["variants"]["fine-tuned"]["metrics"]["accuracy"]["mean"] > 0.5


def test_the_split_is_seeded_and_keeps_duplicates_together():
    items = [{"id": f"i{n}", "input": f"text {n % 30}", "expected": "ab"[n % 2]}
             for n in range(60)]  # each text twice
    a = scaffold.stratified_split(items, test_size=0.25, seed=3, key=lambda it: it["expected"])
    b = scaffold.stratified_split(items, test_size=0.25, seed=3, key=lambda it: it["expected"])
    c = scaffold.stratified_split(items, test_size=0.25, seed=4, key=lambda it: it["expected"])
    assert a == b and a != c
    test_texts = {it["input"] for it in a[0]}
    assert not test_texts & {it["input"] for it in a[1]}
    assert {it["expected"] for it in a[0]} == {"a", "b"}


def _qa_files(tmp_path: Path) -> tuple[Path, Path]:
    """A corpus of product docs (title + one long paragraph) and questions, a quarter of
    them unanswerable (expected null, answers [], or is_impossible)."""
    rng = random.Random(11)
    docs, rows = [], []
    for i in range(40):
        name, colour, city = _words(rng, 3)
        seats = rng.randint(2, 90)
        docs.append({"id": f"plan-{i:02d}", "title": f"The {name} plan",
                     "text": f"The {name} plan comes in {colour} and seats {seats} people. "
                             + " ".join(_words(rng, 60, 5)) + f" It ships from {city}."})
        rows.append({"id": f"q{i:02d}a", "question": f"How many people does the {name} "
                     f"plan seat {' '.join(_words(rng, 3, 5))}?",
                     "answers": [f"{seats} people", str(seats)], "doc_ids": [f"plan-{i:02d}"]})
        rows.append({"id": f"q{i:02d}b", "question": f"Which city ships {name} "
                     f"{' '.join(_words(rng, 3, 5))}?", "answer": city,
                     "gold_passages": [f"plan-{i:02d}"]})
        unanswerable = [{"answers": []}, {"answers": None}, {"is_impossible": True}][i % 3]
        rows.append({"id": f"q{i:02d}c", "question": f"What does the {name} plan cost "
                     f"{' '.join(_words(rng, 3, 5))}?", **unanswerable})
    corpus = write_jsonl(tmp_path / "corpus.jsonl", docs)
    return write_jsonl(tmp_path / "qa.jsonl", rows), corpus


def test_init_from_qa_jsonl_with_unanswerable_rows_and_a_corpus_then_run(tmp_path):
    qa, corpus = _qa_files(tmp_path)
    out = tmp_path / "sets" / "plans"
    init = CliRunner().invoke(main, ["init", str(qa), str(out), "--corpus", str(corpus),
                                     "--yes"])
    assert init.exit_code == 0, init.output
    assert "type: qa (inferred" in init.output
    assert "unanswerable: 40 items (expected: null)" in init.output and "docs: 40" in init.output
    ts = load_testset(out)
    assert len(ts.docs) == 40 and ts.docs[0].text.startswith("# The ")
    none = [it for it in (*ts.test, *ts.train) if it.expected is None]
    assert len(none) == 40 and sum(it.expected is None for it in ts.test) == 8  # stratified
    assert next(it for it in ts.train + ts.test if it.id == "q00b").doc_ids == ("plan-00",)

    check = CliRunner().invoke(main, ["testset", "check", str(out)])
    assert check.exit_code == 0, check.output
    ran = _run(out, tmp_path)  # the whole default ladder, rag included
    assert ran.exit_code == 0, ran.output
    summary = json.loads((tmp_path / "reports" / "latest" / "summary.json").read_text())
    assert set(summary["variants"]) == {"prompt-only", "few-shot", "rag", "fine-tuned",
                                        "rag+fine-tuned"}
    # the answers are spans of the gold passages: reading them beats answering "unknown"
    means = {v: m["metrics"]["token_f1"]["mean"] for v, m in summary["variants"].items()}
    assert means["rag"] > means["prompt-only"] + 0.2, means



MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]


def _squad_v2_files(tmp_path: Path) -> tuple[Path, Path]:
    """SQuAD 2.0's shape: a titled context per article, answerable questions whose answers
    are spans of it (`answers: {text, answer_start}`, the offsets checked), and, about the
    same contexts, questions it does not answer (`is_impossible`): the retriever finds
    the right passage for them too, which is what makes them hard."""
    rng = random.Random(5)
    docs, rows = [], []
    for i in range(45):
        name, founder, city = (w.capitalize() for w in _words(rng, 3))
        seats, days = rng.randint(2, 90), rng.randint(2, 30)
        launched = f"{MONTHS[rng.randrange(12)]} {rng.randint(1, 28)}, {rng.randint(1990, 2024)}"
        context = (f"The {name} plan was launched on {launched} by {founder}. "
                   f"It seats {seats} people in each meeting room. "
                   f"Every {name} order ships from {city}. "
                   f"Delivery takes {days} days after the order is confirmed. "
                   f"{' '.join(_words(rng, 9, 6)).capitalize()}.")
        docs.append({"id": f"art-{i:02d}", "title": f"The {name} plan", "text": context})

        ask = functools.partial(_squad_row, rows, f"art-{i:02d}", context)
        ask(f"q{i:02d}a", f"How many people does the {name} plan seat?", f"{seats} people")
        ask(f"q{i:02d}b", f"When was the {name} plan launched?", launched)
        ask(f"q{i:02d}c", f"Which city does a {name} order ship from?", city)
        ask(f"q{i:02d}d", f"How long does delivery of the {name} plan take?", f"{days} days")
        ask(f"q{i:02d}e", f"What does the {name} plan cost per month?", None)
        ask(f"q{i:02d}f", f"Who designed the logo of the {name} plan?", None)
    return write_jsonl(tmp_path / "squad.jsonl", rows), write_jsonl(tmp_path / "arts.jsonl", docs)


def _squad_row(rows: list[dict], doc_id: str, context: str, qid: str, question: str,
               answer: str | None) -> None:
    row: dict = {"id": qid, "question": question, "doc_ids": [doc_id]}
    if answer is None:
        row.update(is_impossible=True, answers={"text": [], "answer_start": []})
    else:
        assert answer in context  # a span of the gold passage
        row["answers"] = {"text": [answer], "answer_start": [context.index(answer)]}
    rows.append(row)


def test_a_squad_v2_set_rag_reads_the_gold_passage_and_abstains_where_it_says_nothing(tmp_path):
    """The local reader answers from the passage sentence that states the fact, not from the
    title the chunker prefixes each passage with (which outscored it: token_f1 0 at recall
    1.0), and declines when the retrieved passage is only on topic."""
    qa, corpus = _squad_v2_files(tmp_path)
    out = tmp_path / "sets" / "squad"
    init = CliRunner().invoke(main, ["init", str(qa), str(out), "--corpus", str(corpus),
                                     "--yes"])
    assert init.exit_code == 0, init.output
    ran = _run(out, tmp_path, "--variants", "prompt-only,rag")
    assert ran.exit_code == 0, ran.output
    summary = json.loads((tmp_path / "reports" / "latest" / "summary.json").read_text())
    rag, prompt = (summary["variants"][v]["metrics"] for v in ("rag", "prompt-only"))
    assert rag["recall_at_k"]["mean"] >= 0.95  # retrieval finds the gold passage
    assert rag["token_f1"]["mean"] >= prompt["token_f1"]["mean"] + 0.4
    assert rag["answerable_f1"]["mean"] >= 0.8
    assert rag["abstain_recall"]["mean"] >= 0.9 and rag["abstain_precision"]["mean"] >= 0.9


def test_openai_chat_jsonl_becomes_the_train_split(tmp_path):
    system = "Classify the message as billing or login."
    chat = write_jsonl(tmp_path / "ft.jsonl", [
        {"messages": [{"role": "system", "content": system},
                      {"role": "user", "content": f"message {w} number {i}"},
                      {"role": "assistant", "content": "billing" if i % 2 else "login"}]}
        for i, w in enumerate(_words(random.Random(1), 20))])
    test = write_jsonl(tmp_path / "test.jsonl", [
        {"id": f"t{i}", "text": f"held out {w}", "label": "billing" if i % 2 else "login"}
        for i, w in enumerate(_words(random.Random(2), 6))])
    d = scaffold.draft(test, train_file=chat)
    assert d.type == "classification" and len(d.train) == 20 and len(d.test) == 6
    assert d.instructions == system and set(d.labels) == {"billing", "login"}
    assert d.train[0]["input"].startswith("message ") and d.train[0]["expected"] == "login"


def test_extraction_jsonl_imports_fields(tmp_path):
    rows = [{"id": f"e{i}", "text": f"Invoice {i} from Acme for {i * 10} EUR",
             "target": {"vendor": "Acme", "amount": i * 10}} for i in range(10)]
    d = scaffold.draft(write_jsonl(tmp_path / "invoices.jsonl", rows))
    assert d.type == "extraction" and list(d.fields) == ["vendor", "amount"]
    assert d.test[0]["expected"]["vendor"] == "Acme"


def test_an_existing_folder_gets_a_task_yaml(tmp_path, copy_fixture):
    root = copy_fixture("tiny-intents")
    (root / "task.yaml").unlink()
    result = CliRunner().invoke(main, ["init", str(root), "--yes"])
    assert result.exit_code == 0, result.output
    ts = load_testset(root)
    assert ts.task.type == "classification" and set(ts.task.labels) == {
        "refund", "login", "export", "bug"}
    assert len(ts.docs) == 4


@pytest.mark.parametrize("rows,words", [
    ([{"text": "a"}], "no label field"),
    ([{"text": "a", "label": "x"}, {"text": "", "label": "y"}], ":2: field 'text'"),
    ([{"question": "q", "answers": [True]}], "field 'answers'"),
    ([{"messages": [{"role": "user", "content": "hi"}]}], "needs a user turn followed"),
])
def test_importer_errors_name_file_line_and_field(tmp_path, rows, words):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(TestsetError) as err:
        if "messages" in rows[0]:
            importers.from_openai_chat(path)
        elif "question" in rows[0]:
            importers.from_qa_jsonl(path)
        else:
            importers.from_jsonl_classification(path)
    assert "bad.jsonl" in str(err.value) and words in str(err.value)


def test_corpus_ids_must_be_file_names(tmp_path):
    path = write_jsonl(tmp_path / "corpus.jsonl", [{"id": "../etc", "text": "x"}])
    with pytest.raises(TestsetError, match=r"corpus.jsonl:1: field 'id'"):
        importers.corpus_from_jsonl(path)


def test_the_split_keeps_near_duplicates_together_so_run_finds_no_leak(tmp_path):
    """Templated rows (the same sentence with one word changed) are near-duplicates the run's
    leakage check pairs at cosine >= 0.9; split apart, `evalkit run` would refuse the very
    split init wrote."""
    from evalkit.data.leakage import find_leaks

    rng = random.Random(5)
    rows = []
    for n in range(30):
        base = " ".join(_words(rng, 12, 6))
        for variant in range(3):  # three near-copies of each sentence, one word apart
            rows.append({"id": f"r{n}-{variant}", "text": f"{base} {_words(rng, 1, 3)[0]}",
                         "label": "ab"[n % 2]})
    d = scaffold.draft(write_jsonl(tmp_path / "templated.jsonl", rows))
    assert len(d.test) + len(d.train) == 90
    assert "90 exact or near-duplicate items (in 30 groups) kept on one side" in d.split
    ts = scaffold.write_testset(d, tmp_path / "out")
    assert ts.test and not find_leaks(ts.test, ts.train)


def test_squad_style_inline_contexts_become_the_corpus_and_gold_doc_ids(tmp_path):
    """SQuAD v2 rows carry their passage inline (`context`, `title`); init used to drop it,
    leaving a reading-comprehension set with no documents for any rung to read."""
    passages = [f"Beyoncé paragraph {i}. She released album {i} in {1990 + i}." for i in range(5)]
    rows = [{"id": f"q{i}", "title": "Beyoncé", "context": passages[i % 5],
             "question": f"When did she release album {i % 5} (asked {i})?",
             "answers": ({"text": [], "answer_start": []} if i % 3 == 0 else
                         {"text": [str(1990 + i % 5)], "answer_start": [40]})}
            for i in range(20)]
    d = scaffold.draft(write_jsonl(tmp_path / "squad.jsonl", rows))
    assert d.type == "qa" and len(d.docs) == 5  # one document per distinct passage
    assert "docs: 5 (the rows' distinct context passages" in d.summary()
    ts = scaffold.write_testset(d, tmp_path / "out")
    by_id = {it.id: it for it in (*ts.test, *ts.train)}
    texts = {doc.id: doc.text for doc in ts.docs}
    assert texts[by_id["q7"].doc_ids[0]].startswith("# Beyoncé\n\n" + passages[2])
    assert by_id["q7"].doc_ids == by_id["q2"].doc_ids  # the same passage, the same doc
    assert by_id["q3"].expected is None and by_id["q3"].doc_ids  # unanswerable, still gold
    assert all(doc_id.startswith("Beyonce-") for doc_id in texts)  # a file name, accent-free


def test_corpus_ids_that_are_titles_get_file_names_and_the_questions_follow(tmp_path):
    """Wikipedia-title ids (SQuAD, HotpotQA) are not file names; init refused the whole
    corpus at the first (`'Beyoncé' cannot be a file name`). It now names each document's
    file after its id, and rewrites the questions' gold doc_ids to match."""
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [
        {"id": "Beyoncé", "title": "Beyoncé", "text": "Beyoncé was born in Houston in 1981."},
        {"id": "Victoria_(Australia)", "text": "Victoria is a state; Melbourne is its capital."},
        {"id": "Zoe", "text": "Zoe is a name, plain already."},
        {"id": "Zoë", "text": "Zoë, with a diaeresis, would take Zoe's file name."}])
    qa = write_jsonl(tmp_path / "qa.jsonl", [
        {"id": f"q{i}", "question": f"Question {i} {' '.join(_words(random.Random(i), 4))}?",
         "answers": [] if i % 4 == 3 else [f"answer {i}"],
         "doc_ids": [["Beyoncé", "Victoria_(Australia)", "Zoe", "Zoë"][i % 4]]}
        for i in range(16)])
    d = scaffold.draft(qa, corpus=corpus)
    assert d.renamed == {"Beyoncé": "Beyonce", "Victoria_(Australia)": "Victoria_-Australia",
                         "Zoë": "Zoe-2"}
    assert "3 ids that cannot be file names renamed, e.g. 'Beyoncé' -> 'Beyonce'" in d.summary()
    ts = scaffold.write_testset(d, tmp_path / "out")
    gold = {it.id: it.doc_ids for it in (*ts.test, *ts.train)}
    assert gold["q0"] == ("Beyonce",) and gold["q2"] == ("Zoe",) and gold["q3"] == ("Zoe-2",)
    assert {doc.id for doc in ts.docs} == {"Beyonce", "Victoria_-Australia", "Zoe", "Zoe-2"}
    assert "| Zoë | Zoe-2 |" in (tmp_path / "out" / "README.md").read_text()


def test_init_warns_of_numeric_and_rare_labels_and_sorts_numbers_as_numbers(tmp_path):
    """A Hugging Face export has labels 0..N (the prompt-only rung then knows them by the
    stub descriptions '0', '1', ...), and banking77-style sets have labels with a handful of
    rows; init said neither, and listed the labels 0, 1, 10, 11, 2."""
    rng = random.Random(3)
    rows = [{"text": " ".join(_words(rng, 8)), "label": label}
            for label in range(12) for _ in range(2 if label == 11 else 20)]
    d = scaffold.draft(write_jsonl(tmp_path / "hf.jsonl", rows))
    assert list(d.labels)[:4] == ["0", "1", "2", "3"] and list(d.labels)[-1] == "11"
    summary = d.summary()
    assert "warning: the labels are numbers;" in summary
    assert "warning: 1 label with fewer than 5 items: 11 (2);" in summary


def test_squad_json_answer_objects_are_read_as_answers(tmp_path):
    """SQuAD's own JSON lists answers as objects ({"text", "answer_start"}); flattened to
    JSONL that shape was refused ('must be an answer or a list of answers')."""
    path = write_jsonl(tmp_path / "squad.jsonl", [
        {"id": "a", "question": "When?", "answers": [{"text": "1981", "answer_start": 3},
                                                     {"text": "in 1981", "answer_start": 0}]},
        {"id": "b", "question": "Who?", "answers": []}])
    items = importers.from_qa_jsonl(path)
    assert [it["expected"] for it in items] == [["1981", "in 1981"], None]


def test_asqa_annotations_are_read_as_their_long_answers(tmp_path):
    """ASQA keeps its long-form references as annotations [{"long_answer", "knowledge"}]:
    read as those answers, not refused as objects."""
    path = write_jsonl(tmp_path / "asqa.jsonl", [
        {"id": "a", "ambiguous_question": "Who won?",
         "annotations": [{"long_answer": "Ann won in 1990; Bob in 1991.", "knowledge": []},
                         {"long_answer": "Both Ann (1990) and Bob (1991).", "knowledge": []}]}])
    items = importers.from_qa_jsonl(path, question_key="ambiguous_question",
                                    answer_key="annotations")
    assert items[0]["expected"] == ["Ann won in 1990; Bob in 1991.",
                                    "Both Ann (1990) and Bob (1991)."]


def test_gold_doc_ids_without_their_documents_are_refused_before_anything_is_written(
        tmp_path):
    """Rows naming gold passages, and no --corpus: init wrote the folder, then its own load
    refused it ('is not a file in docs/'), leaving a half-written set that the next init
    would not overwrite without --force."""
    qa, corpus = _qa_files(tmp_path)
    out = tmp_path / "sets" / "plans"
    result = CliRunner().invoke(main, ["init", str(qa), str(out), "--yes"])
    assert result.exit_code != 0
    assert f"{qa}:1: field 'doc_ids': 80 rows name gold passages that are not in the " \
           "documents (none were given): 'plan-00'" in result.output
    assert "--corpus" in result.output and not out.exists()
    ok = CliRunner().invoke(main, ["init", str(qa), str(out), "--corpus", str(corpus), "--yes"])
    assert ok.exit_code == 0, ok.output


@pytest.mark.parametrize("row", [
    {"text": "Order 7 by Zoë", "label": {"customer": "Zoë", "order": 7}},  # record as label
    {"text": "Order 7 by Zoë", "output": '{"customer": "Zoë", "order": 7}'},  # as a string
])
def test_a_json_record_under_label_or_as_a_string_is_extraction(tmp_path, row):
    """Fine-tuning exports keep the target as a JSON string, and span sets often put the
    record under `label`: inferred as qa (every row then a question) or refused as 'must be
    one label'."""
    rows = [{**row, "text": f"{row['text']} ({i})"} for i in range(10)]
    d = scaffold.draft(write_jsonl(tmp_path / "spans.jsonl", rows))
    assert d.type == "extraction" and list(d.fields) == ["customer", "order"]
    assert {"customer": "Zoë", "order": 7} in [it["expected"] for it in (*d.test, *d.train)]


def test_capitalised_column_names_are_found(tmp_path):
    """Kaggle and spreadsheet exports capitalise headers (`Text,Label`, `Question`); the key
    guess was case-sensitive and init asked for a flag ('header has Text, Label')."""
    csv_path = tmp_path / "caps.csv"
    csv_path.write_text("Text,Label\n" + "".join(f"message {i},{'ab'[i % 2]}\n"
                                                 for i in range(10)))
    d = scaffold.draft(csv_path)
    assert d.type == "classification" and set(d.labels) == {"a", "b"}
    qa = write_jsonl(tmp_path / "caps.jsonl", [{"Question": f"Who {i}?", "Answers": [f"x{i}"]}
                                              for i in range(10)])
    d = scaffold.draft(qa)
    assert d.type == "qa" and ["x0"] in [it["expected"] for it in (*d.test, *d.train)]


def test_init_warns_of_a_text_given_two_labels(tmp_path):
    """The same text under two labels (label noise, a merged export) caps every rung below
    100% whatever it does; init kept the copies together silently."""
    rows = [{"text": f"message number {i}", "label": "ab"[i % 2]} for i in range(20)]
    rows += [{"text": "Hello  there", "label": "a"}, {"text": "hello there", "label": "b"}]
    summary = scaffold.draft(write_jsonl(tmp_path / "noisy.jsonl", rows)).summary()
    assert ("warning: 1 text appears with more than one label, e.g. 'hello there' as a and b;"
            in summary)


def test_a_file_with_no_answer_field_is_not_read_as_all_unanswerable_qa(tmp_path):
    """A span/NER file (`entities` lists) fit no type but qa's fallback, and was drafted as
    20 unanswerable questions: a rung that always abstains would have scored 1.0."""
    rows = [{"text": f"Zoë met Acme {i}", "entities": [{"start": 0, "end": 3, "label": "PER"}]}
            for i in range(20)]
    path = write_jsonl(tmp_path / "ner.jsonl", rows)
    with pytest.raises(TestsetError, match=r"ner.jsonl:1: field 'answers': no answer field on "
                                           r"any row .*this line has text, entities"):
        scaffold.draft(path)
    unanswerable = write_jsonl(tmp_path / "none.jsonl", [{"question": f"q{i}?", "answers": []}
                                                         for i in range(5)])
    assert all(it["expected"] is None for it in importers.from_qa_jsonl(unanswerable))


@pytest.mark.parametrize("reader,rows", [
    (importers.from_jsonl_classification, [{"text": "a", "label": "x"}, {"text": "", "label": "y"},
                                           {"label": "x"}, {"text": " ", "label": "y"}]),
    (importers.from_qa_jsonl, [{"text": "q?", "answers": []}, {"text": "", "answers": []},
                               {"answers": []}, {"text": " ", "answers": ["a"]}]),
    (importers.from_extraction_jsonl, [{"text": "t", "target": {}}, {"text": "", "target": {}},
                                       {"target": {}}, {"text": " ", "target": {"a": 1}}]),
])
def test_every_jsonl_row_without_text_is_named_in_one_error(tmp_path, reader, rows):
    """As for a CSV: a JSONL export with a few blank texts was refused one row at a time."""
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    with pytest.raises(TestsetError, match=r"rows.jsonl:2: field 'text': must be a non-empty "
                                           r"string; 3 rows lack one, at lines 2, 3, 4$"):
        reader(path)


def test_repeated_ids_are_named_with_their_lines(tmp_path):
    """A merged export repeating ids was refused as "id 'a3' appears twice across the
    splits", with no line to look at."""
    rows = [{"id": f"a{i % 8}", "text": f"message {i}", "label": "xy"[i % 2]} for i in range(10)]
    with pytest.raises(TestsetError, match=r"ids.jsonl:1: field 'id': 2 ids appear more than "
                                           r"once: 'a0' on lines 1, 9; 'a1' on lines 2, 10;"):
        scaffold.draft(write_jsonl(tmp_path / "ids.jsonl", rows))


def test_triviaqa_answer_objects_are_the_value_and_its_aliases(tmp_path):
    """TriviaQA keeps its answer as an object (`value`, `aliases`, normalised copies); the
    importer looked only for SQuAD's `text` inside it, so every question was drafted as
    unanswerable (60 of 60 on a TriviaQA-shaped file) and an always-abstaining rung scored
    1.0. An object with neither shape is refused, naming its keys, not taken as no answer."""
    path = write_jsonl(tmp_path / "triviaqa.jsonl", [
        {"question_id": "tc_1", "question": "Who wrote 1984?",
         "answer": {"value": "George Orwell", "aliases": ["George Orwell", "Eric Blair"],
                    "normalized_aliases": ["george orwell", "eric blair"],
                    "normalized_value": "george orwell", "type": "WikipediaEntity"}},
        {"question_id": "tc_2", "question": "Which planet is red?",
         "answer": {"value": "Mars", "aliases": []}}])
    items = importers.from_qa_jsonl(path)
    assert [it["expected"] for it in items] == [["George Orwell", "Eric Blair"], ["Mars"]]
    bad = write_jsonl(tmp_path / "bad.jsonl", [
        {"question": "Who?", "answer": {"span": "Orwell", "start": 3}}])
    with pytest.raises(TestsetError) as err:
        importers.from_qa_jsonl(bad)
    assert "bad.jsonl:1" in str(err.value) and "'answer'" in str(err.value)
    assert "span, start" in str(err.value)


@pytest.mark.parametrize("shape", ["json", "hf"])
def test_hotpotqa_context_pairs_become_docs_and_supporting_titles_the_gold(tmp_path, shape):
    """HotpotQA carries its passages as a list of [title, sentences] pairs (the Hugging Face
    copy as {title: [...], sentences: [[...]]}); init read only a string `context`, so the
    passages were dropped (docs: 0) and a multi-hop set was imported closed-book. Each
    paragraph is a document; the gold ones are those supporting_facts names, the rest are
    the distractors they are in the data set."""
    rows = []
    for i in range(12):
        paras = [[f"Person {i}", [f"Person {i} is a painter.", f" Born in Town {i}."]],
                 [f"Town {i}", [f"Town {i} is in Kent.", " It has a river."]],
                 ["Distractor", ["An unrelated paragraph.", " Shared by every row."]]]
        facts = [[f"Person {i}", 1], [f"Town {i}", 0]]
        if shape == "hf":
            paras = {"title": [t for t, _ in paras], "sentences": [s for _, s in paras]}
            facts = {"title": [t for t, _ in facts], "sent_id": [n for _, n in facts]}
        rows.append({"id": f"h{i}", "question": f"Which county is Person {i}'s town in?",
                     "answer": "Kent", "type": "bridge", "level": "hard",
                     "supporting_facts": facts, "context": paras})
    d = scaffold.draft(write_jsonl(tmp_path / "hotpot.jsonl", rows))
    assert d.type == "qa" and len(d.docs) == 12 * 2 + 1  # the shared distractor once
    ts = scaffold.write_testset(d, tmp_path / "out")
    texts = {doc.id: doc.text for doc in ts.docs}
    gold = {it.id: it.doc_ids for it in (*ts.test, *ts.train)}["h3"]
    assert len(gold) == 2
    assert texts[gold[0]] == "# Person 3\n\nPerson 3 is a painter. Born in Town 3.\n"
    assert texts[gold[1]].startswith("# Town 3\n\nTown 3 is in Kent.")


def test_the_named_label_column_decides_the_type(tmp_path):
    """--label-column names the target, but the type was inferred without it: TREC's
    `label-coarse` (numbers 0..5) was drafted as QA, scored by token F1 against '5', and a
    CORD-style `ground_truth` (a string holding a JSON record) as QA with the record's JSON
    text as the reference answer. The named column's value now takes part in the fit."""
    rng = random.Random(5)
    trec = write_jsonl(tmp_path / "trec.jsonl", [
        {"label-coarse": i % 6, "label-fine": i % 40, "text": " ".join(_words(rng, 6)) + " ?"}
        for i in range(60)])
    d = scaffold.draft(trec, label_column="label-coarse")
    assert d.type == "classification" and list(d.labels) == ["0", "1", "2", "3", "4", "5"]
    cord = write_jsonl(tmp_path / "cord.jsonl", [
        {"text": f"Latte {i} 1 {30 + i},000\nTOTAL {50 + i},000",
         "ground_truth": json.dumps({"menu": [{"nm": f"Latte {i}", "price": f"{30 + i},000"}],
                                     "total": {"total_price": f"{50 + i},000"}})}
        for i in range(20)])
    d = scaffold.draft(cord, label_column="ground_truth")
    assert d.type == "extraction" and list(d.fields) == ["menu", "total"]
    assert d.test[0]["expected"]["total"]["total_price"].endswith(",000")
    squad = write_jsonl(tmp_path / "squad.jsonl", [
        {"question": f"When {i}?", "answers": {"text": [str(1990 + i)], "answer_start": [0]}}
        for i in range(10)])
    assert scaffold.draft(squad, label_column="answers").type == "qa"  # a key fit knows


@pytest.mark.parametrize("row", [
    {"tokens": ["John", "lives", "in", "Paris"], "ner_tags": [1, 0, 0, 5], "langs": ["en"] * 4,
     "spans": ["PER: John", "LOC: Paris"]},  # WikiANN
    {"id": "0", "tokens": ["EU", "rejects", "German", "call"], "pos_tags": [22, 42, 16, 21],
     "chunk_tags": [11, 21, 11, 12], "ner_tags": [3, 0, 7, 0]}])  # CoNLL-2003
def test_a_token_tagging_file_is_refused_saying_what_init_needs_instead(tmp_path, row):
    """A CoNLL or WikiANN file (tokens and tag ids) fit no type but qa's fallback and was
    refused with 'no question field; give it with a flag', a fix no flag can make: the text
    is a list of tokens and the target a list of tag ids. The error says so, and what to
    convert it to."""
    path = write_jsonl(tmp_path / "ner.jsonl", [row] * 3)
    result = CliRunner().invoke(main, ["init", str(path), str(tmp_path / "out"), "--yes"])
    assert result.exit_code != 0
    assert f"{path}:1:" in result.output and "tokens" in result.output
    assert "token-tagging file" in result.output and "--type extraction" in result.output


def test_a_massive_file_imports_with_no_flag(tmp_path):
    """Amazon MASSIVE (and SLURP) keep the utterance under `utt`, beside `annot_utt` (its slot
    markup), `intent`, `scenario` and `locale`; init refused it with 'no text field'. The
    intent is the label, the plain utterance the text, the slot markup never the input."""
    rng = random.Random(11)
    rows = [{"id": str(i), "locale": "en-US", "partition": "test", "scenario": "alarm",
             "intent": ["alarm_set", "alarm_query"][i % 2],
             "utt": f"wake me up at {i % 12 + 1} am {' '.join(_words(rng, 3))}",
             "annot_utt": f"wake me up at [time : {i % 12 + 1} am]", "worker_id": "8"}
            for i in range(20)]
    d = scaffold.draft(write_jsonl(tmp_path / "massive.jsonl", rows))
    assert d.type == "classification" and list(d.labels) == ["alarm_query", "alarm_set"]
    assert all(it["input"].startswith("wake me up at ") and "[" not in it["input"]
               for it in (*d.test, *d.train))


def _eli5_rows(n: int) -> list[dict]:
    rng = random.Random(13)
    return [{"q_id": f"q{i}", "title": f"Why does {' '.join(_words(rng, 2))} happen (ELI5 {i})?",
             "selftext": "", "subreddit": "explainlikeimfive",
             "answers": {"a_id": ["a1", "a2"], "score": [12, 3], "text": [
                 " ".join(_words(rng, 40)), " ".join(_words(rng, 30))]}}
            for i in range(n)]


def test_a_long_form_set_is_drafted_as_generation_and_scored_over_every_reference(tmp_path):
    """ELI5 / ASQA-style: several long reference answers per question. init could only draft
    qa (its --type offered classification, extraction, qa), so long answers were scored by
    SQuAD token F1 and an answer holding the word 'unknown' counted as abstaining. A file
    whose answers run long (a median of 25 words or more) is now drafted as generation
    (ROUGE, best over the references), and --type generation is offered."""
    path = write_jsonl(tmp_path / "eli5.jsonl", _eli5_rows(40))
    d = scaffold.draft(path, text_column="title")
    assert d.type == "generation" and len(d.test[0]["expected"]) == 2
    assert "metrics: primary rouge_l" in d.summary()
    scaffold.write_testset(d, tmp_path / "out")
    result = _run(tmp_path / "out", tmp_path, "--variants", "prompt-only,few-shot")
    assert result.exit_code == 0, result.output
    from rouge_score import rouge_scorer
    run = (tmp_path / "reports" / "latest").resolve()
    preds = [json.loads(line) for line in (run / "predictions.jsonl").open()]
    refs = {it["id"]: it["expected"] for it in map(json.loads, (tmp_path / "out" /
                                                                "test.jsonl").open())}
    scores = {(r["variant"], r["item_id"]): float(r["value"])
              for r in csv.DictReader((run / "scores.csv").open()) if r["metric"] == "rouge_l"}
    rs = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    for p in preds:
        best = max(rs.score(ref, p["output"])["rougeL"].fmeasure for ref in refs[p["item_id"]])
        assert scores[(p["variant"], p["item_id"])] == pytest.approx(best)
    short = write_jsonl(tmp_path / "nq.jsonl", [{"question": f"where {i}", "answer": ["x y"]}
                                                for i in range(10)])
    assert scaffold.draft(short).type == "qa"  # short answers stay qa


def test_the_official_squad_json_file_is_read_as_its_questions(tmp_path):
    """SQuAD's own files (train-v2.0.json, dev-v2.0.json) are one JSON object, articles ->
    paragraphs -> questions, not JSONL; init read that object as one row and refused it with
    'no question field; give it with a flag (this line has version, data)', a fix no flag
    makes. Its questions are now the rows, each with its paragraph as inline context."""
    data = {"version": "v2.0", "data": [
        {"title": "Normans", "paragraphs": [
            {"context": f"The Normans gave their name to Normandy in {900 + p}.",
             "qas": [{"id": f"n{p}-{q}", "question": f"When did Normandy get its name {p}-{q}?",
                      "answers": [] if q == 2 else [{"text": str(900 + p), "answer_start": 42}],
                      "is_impossible": q == 2, **({"plausible_answers": [
                          {"text": "Normandy", "answer_start": 30}]} if q == 2 else {})}
                     for q in range(3)]} for p in range(4)]}]}
    path = tmp_path / "dev-v2.0.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    d = scaffold.draft(path)
    items = {it["id"]: it for it in (*d.test, *d.train)}
    assert d.type == "qa" and len(items) == 12 and len(d.docs) == 4
    assert items["n1-0"]["expected"] == ["901"] and items["n1-2"]["expected"] is None
    assert items["n1-0"]["doc_ids"] == items["n1-2"]["doc_ids"]  # the same paragraph


def test_the_summary_says_a_type_given_with_type_was_given_not_inferred(tmp_path):
    """`init --type generation` printed 'type: generation (inferred; --type to override)', as
    if the file had been read as generation on its own and the flag were still to be used."""
    path = write_jsonl(tmp_path / "eli5.jsonl", _eli5_rows(10))
    assert scaffold.draft(path, text_column="title").summary().startswith(
        "type: generation (inferred; --type to override)")
    given = scaffold.draft(path, text_column="title", kind="qa").summary()
    assert given.startswith("type: qa (given with --type)")


def test_asqa_shaped_rows_are_found_and_inferred_long_form(tmp_path):
    """ASQA's rows have their references only under `annotations`: init refused them ('no
    answer field on any row'), and with --label-column annotations inferred short-answer QA
    (SQuAD F1 and 'reply unknown' on 30-word answers), since the type's fit skipped answer
    objects. Both now read the long answers, so the type is generation."""
    long = ("The first prize went to Ann in 1990 and then to Bob in 1991 after the rules "
            "changed, which is why sources disagree about who won the contest first.")
    path = write_jsonl(tmp_path / "asqa.jsonl", [
        {"sample_id": f"s{i}", "question": f"Who won contest {i}?",
         "annotations": [{"long_answer": f"{long} ({i})", "knowledge": []}]}
        for i in range(12)])
    for column in (None, "annotations"):
        d = scaffold.draft(path, label_column=column)
        assert d.type == "generation", column
        assert all(it["expected"][0].endswith(")") for it in (*d.test, *d.train))


def test_a_first_row_without_a_record_does_not_make_a_set_of_records_qa(tmp_path):
    """Twenty rows of {text, target: {...}}, the first with target null: the type was
    guessed from the first row alone (QA), and the error spoke of an answer field no row
    has. Now most rows decide, and the row at fault is named."""
    rows = [{"id": f"r{i}", "text": f"invoice {i} total {i}",
             "target": None if i == 0 else {"total": str(i)}} for i in range(20)]
    path = write_jsonl(tmp_path / "firstnull.jsonl", rows)
    with pytest.raises(TestsetError) as info:
        scaffold.draft(path)
    assert str(info.value) == (f"{path}:1: field 'target': must be a JSON object "
                               f"(fields -> values)")
    rows[0]["target"] = {"total": "0"}
    assert scaffold.draft(write_jsonl(tmp_path / "ok.jsonl", rows)).type == "extraction"


def test_a_split_that_leaves_no_test_items_is_said_not_a_missing_file(tmp_path):
    """A CSV whose every 'label' is a one-row JSON text: the split put each in train, init
    printed '0 test' and then failed on 'test.jsonl: file not found', a file it was to write."""
    path = tmp_path / "inv.csv"
    path.write_text("text,target\n" + "".join(
        f'invoice {i},"{{""total"": ""{i}""}}"\n' for i in range(20)))
    with pytest.raises(TestsetError, match=r"the split left no test items out of 20"):
        scaffold.draft(path, label_column="target")
    with pytest.raises(TestsetError, match=r"give extraction items as JSONL"):
        scaffold.draft(path, kind="extraction")


def test_init_warns_of_a_field_spelled_two_ways(tmp_path):
    rows = [{"id": f"r{i}", "text": f"invoice {i} for {i * 3} dollars, ref {i * 7}",
             "target": {("Total" if i == 0 else "total"): str(i * 3)}} for i in range(20)]
    summary = scaffold.draft(write_jsonl(tmp_path / "inv.jsonl", rows)).summary()
    assert "fields that differ only in case or separators: 'Total' / 'total'" in summary \
        or "fields that differ only in case or separators: 'total' / 'Total'" in summary
