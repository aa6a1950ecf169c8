"""Loading and validating test sets: every bad input names its file, line and field."""

from __future__ import annotations

import re

import pytest
from conftest import append_jsonl, write_jsonl

from evalkit.data.testset import TestsetError, load_testset


def _error(path) -> TestsetError:
    with pytest.raises(TestsetError) as info:
        load_testset(path)
    return info.value


def _lines(path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


# --- the good fixtures load -------------------------------------------------------------------

def test_fixture_loads_with_items_labels_docs_and_hashes(intents_dir):
    ts = load_testset(intents_dir)
    assert ts.name == "tiny-intents" and ts.task.type == "classification"
    assert [it.id for it in ts.test] == [f"te-0{i}" for i in range(1, 9)]
    assert len(ts.train) == 12
    assert set(ts.task.labels) == {"refund", "login", "export", "bug"}
    assert ts.task.labels["export"].startswith("Wants to download")
    assert {d.id for d in ts.docs} == {"refunds", "signing-in", "exporting-data",
                                       "reporting-bugs"}
    assert ts.test[2].doc_ids == ("signing-in",) and ts.test[2].line == 3
    assert ts.task.corpus.chunk_size == 60 and ts.task.corpus.k == 2 and ts.task.few_shot_k == 3
    assert ts.task.metrics == ("accuracy", "macro_f1")
    assert set(ts.file_hashes) == {"task.yaml", "test.jsonl", "train.jsonl",
                                   "docs/refunds.md", "docs/signing-in.md",
                                   "docs/exporting-data.md", "docs/reporting-bugs.md"}
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in ts.file_hashes.values())


def test_qa_fixture_keeps_list_answers_and_clusters(qa_dir):
    ts = load_testset(qa_dir)
    first = ts.test[0]
    assert first.expected == ["€12 per user per month", "€12"]
    assert first.references == ["€12 per user per month", "€12"]
    assert first.cluster == "pricing"
    assert ts.task.primary_metric == "token_f1"


def test_hashes_follow_content(copy_fixture):
    root = copy_fixture("tiny-intents")
    before = load_testset(root)
    assert load_testset(root).hash == before.hash  # deterministic
    (root / "test.jsonl").write_text((root / "test.jsonl").read_text().replace(
        "locked out of my account", "locked out of my account again"))
    after_test = load_testset(root)
    assert after_test.hash != before.hash
    assert after_test.corpus_hash == before.corpus_hash  # docs unchanged
    (root / "docs" / "refunds.md").write_text("# Refunds\nNo refunds after 7 days.\n")
    after_doc = load_testset(root)
    assert after_doc.corpus_hash != before.corpus_hash
    assert after_doc.file_hashes["docs/refunds.md"] != before.file_hashes["docs/refunds.md"]


def test_train_split_is_optional(copy_fixture):
    root = copy_fixture("tiny-intents")
    (root / "train.jsonl").unlink()
    ts = load_testset(root)
    assert ts.train == () and len(ts.test) == 8


def test_blank_lines_are_skipped_but_line_numbers_stay_physical(copy_fixture):
    root = copy_fixture("tiny-intents")
    lines = _lines(root / "test.jsonl")
    write_jsonl(root / "test.jsonl", [lines[0], "", lines[1]])
    ts = load_testset(root)
    assert [it.line for it in ts.test] == [1, 3]


# --- bad inputs -------------------------------------------------------------------------------

def test_malformed_json_names_file_and_line(copy_fixture):
    root = copy_fixture("tiny-intents")
    lines = _lines(root / "test.jsonl")
    lines[2] = lines[2][:-1]  # drop the closing brace of line 3
    write_jsonl(root / "test.jsonl", lines)
    err = _error(root)
    assert str(root / "test.jsonl") in str(err)
    assert "test.jsonl:3:" in str(err)
    assert "malformed JSON" in str(err)
    assert (err.line, err.field) == (3, None)


def test_missing_field_names_file_line_and_field(copy_fixture):
    root = copy_fixture("tiny-intents")
    write_jsonl(root / "test.jsonl", [
        _lines(root / "test.jsonl")[0],
        {"id": "te-x", "input": "where is my refund"},  # no expected
    ])
    err = _error(root)
    assert "test.jsonl:2:" in str(err)
    assert "field 'expected'" in str(err)
    assert "missing required field" in str(err)
    assert (err.line, err.field) == (2, "expected")


@pytest.mark.parametrize("field", ["id", "input"])
def test_missing_or_empty_id_and_input(copy_fixture, field):
    root = copy_fixture("tiny-intents")
    row = {"id": "te-x", "input": "where is my refund", "expected": "refund"}
    row[field] = ""
    write_jsonl(root / "test.jsonl", [row])
    err = _error(root)
    assert "test.jsonl:1:" in str(err) and f"field '{field}'" in str(err)


def test_non_string_input_is_an_error(copy_fixture):
    root = copy_fixture("tiny-intents")
    write_jsonl(root / "test.jsonl", [{"id": "te-x", "input": 42, "expected": "refund"}])
    err = _error(root)
    assert "test.jsonl:1:" in str(err) and "field 'input'" in str(err)
    assert "must be a string" in str(err)


def test_duplicate_id_names_both_lines(copy_fixture):
    root = copy_fixture("tiny-intents")
    append_jsonl(root / "test.jsonl",
                 {"id": "te-02", "input": "another message", "expected": "bug"})
    err = _error(root)
    assert "test.jsonl:9:" in str(err)
    assert "field 'id'" in str(err)
    assert "duplicate id 'te-02'" in str(err)
    assert "first on line 2" in str(err)


def test_unknown_label_names_label_line_and_known_labels(copy_fixture):
    root = copy_fixture("tiny-intents")
    append_jsonl(root / "train.jsonl",
                 {"id": "tr-99", "input": "please give me my money", "expected": "refnd"})
    err = _error(root)
    assert "train.jsonl:13:" in str(err)  # train is validated too, and named as such
    assert "field 'expected'" in str(err)
    assert "unknown label 'refnd'" in str(err)
    assert "bug, export, login, refund" in str(err)


@pytest.mark.parametrize("content", ["", "\n\n   \n"])
def test_empty_file_names_the_file(copy_fixture, content):
    root = copy_fixture("tiny-intents")
    (root / "test.jsonl").write_text(content)
    err = _error(root)
    assert str(err).startswith(str(root / "test.jsonl") + ":")
    assert "empty" in str(err)


def test_missing_test_file_names_it(copy_fixture):
    root = copy_fixture("tiny-intents")
    (root / "test.jsonl").unlink()
    err = _error(root)
    assert str(root / "test.jsonl") in str(err) and "not found" in str(err)


def test_missing_task_yaml_names_it(copy_fixture):
    root = copy_fixture("tiny-intents")
    (root / "task.yaml").unlink()
    err = _error(root)
    assert str(root / "task.yaml") in str(err)
    assert "missing task.yaml" in str(err)


def test_missing_folder(tmp_path):
    err = _error(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(err) and "not found" in str(err)


@pytest.mark.parametrize("field", ["name", "type", "instructions"])
def test_task_yaml_required_fields(copy_fixture, field):
    root = copy_fixture("tiny-intents")
    lines = [ln for ln in _lines(root / "task.yaml") if not ln.startswith(f"{field}:")]
    (root / "task.yaml").write_text("\n".join(lines) + "\n")
    err = _error(root)
    assert "task.yaml" in str(err) and f"field '{field}'" in str(err)
    assert "is required" in str(err)


def test_task_yaml_bad_type_and_too_few_labels(copy_fixture):
    root = copy_fixture("tiny-intents")
    text = (root / "task.yaml").read_text()
    (root / "task.yaml").write_text(text.replace("type: classification", "type: ranking"))
    err = _error(root)
    assert "field 'type'" in str(err) and "'ranking'" in str(err)

    labels_block = text[text.index("labels:"):text.index("metrics:")]
    (root / "task.yaml").write_text(text.replace(
        labels_block, "labels:\n  refund: Wants money back.\n"))
    err = _error(root)
    assert "task.yaml" in str(err) and "field 'labels'" in str(err)
    assert "at least two labels" in str(err)


def test_task_yaml_invalid_yaml_names_line(copy_fixture):
    root = copy_fixture("tiny-intents")
    lines = _lines(root / "task.yaml")
    lines.insert(3, "labels: [unclosed")
    (root / "task.yaml").write_text("\n".join(lines) + "\n")
    err = _error(root)
    assert "task.yaml:" in str(err) and "invalid YAML" in str(err)
    assert err.line is not None and err.line >= 4


def test_unknown_doc_id_names_file_line_field_and_item(copy_fixture):
    root = copy_fixture("tiny-intents")
    lines = _lines(root / "test.jsonl")
    lines[4] = lines[4].replace('"exporting-data"', '"exporting"')  # te-05, line 5
    write_jsonl(root / "test.jsonl", lines)
    err = _error(root)
    assert "test.jsonl:5:" in str(err)
    assert "field 'doc_ids'" in str(err)
    assert "'exporting'" in str(err) and "'te-05'" in str(err)


def test_doc_ids_must_be_a_list(copy_fixture):
    root = copy_fixture("tiny-intents")
    write_jsonl(root / "test.jsonl", [
        {"id": "te-x", "input": "refund me", "expected": "refund", "doc_ids": "refunds"}])
    err = _error(root)
    assert "test.jsonl:1:" in str(err) and "field 'doc_ids'" in str(err)


def test_empty_document_is_an_error(copy_fixture):
    root = copy_fixture("tiny-intents")
    (root / "docs" / "refunds.md").write_text("  \n")
    err = _error(root)
    assert str(root / "docs" / "refunds.md") in str(err) and "empty" in str(err)


def test_non_object_line(copy_fixture):
    root = copy_fixture("tiny-intents")
    write_jsonl(root / "test.jsonl", ['["te-1", "refund me", "refund"]'])
    err = _error(root)
    assert "test.jsonl:1:" in str(err) and "JSON object" in str(err)


def test_non_utf8_line_names_file_and_line(copy_fixture):
    root = copy_fixture("tiny-intents")
    with (root / "test.jsonl").open("ab") as fh:  # a Latin-1 "é", as a spreadsheet export writes it
        fh.write(b'{"id": "te-09", "input": "caf\xe9 refund", "expected": "refund"}\n')
    err = _error(root)
    assert "test.jsonl:9:" in str(err) and "UTF-8" in str(err)


def test_utf8_bom_is_accepted(copy_fixture):
    root = copy_fixture("tiny-intents")
    path = root / "test.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_testset(root).test[0].id == "te-01"


@pytest.mark.parametrize("old,new,field", [
    ("chunk_size: 60", "chunk_size: 6O", "corpus.chunk_size"),
    ("k: 2}", "k: two}", "corpus.k"),
    ("chunk_size: 60", "chunk_size: 0", "corpus.chunk_size"),
    ("few_shot: {k: 3}", "few_shot: {k: 3.5}", "few_shot.k"),
    ("few_shot: {k: 3}", "few_shot: 3", "few_shot"),
])
def test_task_yaml_numbers_name_their_field(copy_fixture, old, new, field):
    root = copy_fixture("tiny-intents")
    text = (root / "task.yaml").read_text()
    assert old in text
    (root / "task.yaml").write_text(text.replace(old, new))
    err = _error(root)
    assert "task.yaml" in str(err) and f"field '{field}'" in str(err)


# --- metric names and value types (task.yaml and items) -----------------------------------------

@pytest.mark.parametrize("metrics_yaml, field, words", [
    ("metrics: [accuracy]", "metrics", "must be a mapping"),
    ("metrics: {primary: acuracy}", "metrics.primary", "'acuracy' cannot be the primary"),
    ("metrics: {primary: macro_f1}", "metrics.primary", "cannot be the primary"),
    ("metrics: {secondary: macro_f1}", "metrics.secondary", "must be a list"),
    ("metrics: {secondary: [macro_f1, f1]}", "metrics.secondary", "unknown metric 'f1'"),
])
def test_metric_names_are_checked_against_the_task_type(copy_fixture, metrics_yaml, field, words):
    root = copy_fixture("tiny-intents")
    text = (root / "task.yaml").read_text()
    text = re.sub(r"metrics:\n(  .*\n)+", metrics_yaml + "\n", text)
    (root / "task.yaml").write_text(text)
    err = str(_error(root))
    assert "task.yaml" in err and f"field '{field}'" in err and words in err


def test_qa_scores_exactly_the_metrics_task_yaml_asks_for(copy_fixture):
    from evalkit.run.journal import Prediction
    from evalkit.scoring.score import quality_metrics, score_item

    root = copy_fixture("tiny-qa")
    text = (root / "task.yaml").read_text()
    (root / "task.yaml").write_text(re.sub(r"secondary: \[.*\]", "secondary: [contains]", text))
    ts = load_testset(root)
    assert quality_metrics(ts.task) == ("token_f1", "contains")
    scored = score_item(ts.task, ts.test[0], Prediction("rag", ts.test[0].id, "€12"))
    assert set(scored) == {"token_f1", "contains", "latency_s", "input_tokens",
                           "output_tokens", "cost_usd"}


@pytest.mark.parametrize("row, field, words", [
    ({"id": "x1", "input": "hi", "expected": ["refund", "bug"]}, "expected", "one label"),
    ({"id": "x1", "input": "hi", "expected": "bug", "metadata": "abc"}, "metadata",
     "JSON object"),
])
def test_item_value_types_name_line_and_field(copy_fixture, row, field, words):
    root = copy_fixture("tiny-intents")
    append_jsonl(root / "test.jsonl", row)
    line = len(_lines(root / "test.jsonl"))
    err = str(_error(root))
    assert f"test.jsonl:{line}:" in err and f"field '{field}'" in err and words in err


def test_a_document_that_is_not_utf8_is_named(copy_fixture):
    root = copy_fixture("tiny-intents")
    (root / "docs" / "latin1.md").write_bytes("caf\xe9 prices".encode("latin-1"))
    err = str(_error(root))
    assert "latin1.md" in err and "not valid UTF-8" in err


# --- task.yaml strictness: keys, types, labels as text, reserved types, huge inputs -------------

def _task_error(root, old, new) -> TestsetError:
    """Replace `old` by `new` in task.yaml and return the load error."""
    text = (root / "task.yaml").read_text()
    assert old in text
    (root / "task.yaml").write_text(text.replace(old, new, 1))
    return _error(root)


def _line_of(root, needle) -> int:
    return next(i for i, ln in enumerate(_lines(root / "task.yaml"), 1) if needle in ln)


@pytest.mark.parametrize("old, new, field, hint", [
    ("few_shot: {k: 3}", "few_shots: {k: 3}", "few_shots", "did you mean 'few_shot'?"),
    ("metrics:", "metric:", "metric", "did you mean 'metrics'?"),
    ("{chunk_size: 60,", "{chunk_szie: 60,", "corpus.chunk_szie", "did you mean 'chunk_size'?"),
    ("few_shot: {k: 3}", "few_shot: {k: 3, kk: 2}", "few_shot.kk", "did you mean 'k'?"),
    ("  primary: accuracy", "  primery: accuracy", "metrics.primery", "did you mean 'primary'?"),
])
def test_unknown_task_keys_are_refused_with_a_suggestion(copy_fixture, old, new, field, hint):
    root = copy_fixture("tiny-intents")
    err = _task_error(root, old, new)
    line = _line_of(root, new.strip().split(":")[0].strip("{ "))
    assert f"task.yaml:{line}:" in str(err) and f"field '{field}'" in str(err)
    assert "unknown key" in str(err) and hint in str(err)
    assert err.line == line and err.field == field


@pytest.mark.parametrize("old, new, field, words", [
    ("name: tiny-intents", "name: [a, b]", "name", "must be a string"),
    ("instructions: Classify the customer's message into one support intent.",
     "instructions: 12345", "instructions", "must be a string"),
    ("chunk_size: 60", "chunk_size: 60.5", "corpus.chunk_size", "whole number"),
    ("chunk_overlap: 10", "chunk_overlap: true", "corpus.chunk_overlap", "whole number"),
    ("few_shot: {k: 3}", "few_shot: {k: '3'}", "few_shot.k", "whole number"),
    ("chunk_overlap: 10", "chunk_overlap: 60", "corpus.chunk_overlap",
     "smaller than chunk_size (60)"),
    ("chunk_overlap: 10", "chunk_overlap: 90", "corpus.chunk_overlap", "got 90"),
    ("few_shot: {k: 3}", "few_shot: {k: 3}\nmax_input_chars: lots", "max_input_chars",
     "whole number >= 1"),
])
def test_task_value_types_name_file_line_and_field(copy_fixture, old, new, field, words):
    root = copy_fixture("tiny-intents")
    err = _task_error(root, old, new)
    line = _line_of(root, new.splitlines()[-1])
    assert f"task.yaml:{line}:" in str(err) and f"field '{field}'" in str(err)
    assert words in str(err)


def test_reserved_task_types_are_refused_at_load(copy_fixture, monkeypatch):
    """Every type the design names is built now; one whose module is not loaded (here:
    generation, taken out of the registry for this test) is refused at load."""
    from evalkit import tasks

    built = {k: v for k, v in tasks.TASK_TYPES._items.items() if k != "generation"}
    monkeypatch.setattr(tasks.TASK_TYPES, "_items", built)
    root = copy_fixture("tiny-qa")
    err = _task_error(root, "type: qa", "type: generation")
    assert "task.yaml:2:" in str(err) and "field 'type'" in str(err)
    assert "not built yet" in str(err) and "classification, extraction, qa" in str(err)


def test_labels_yaml_would_turn_into_booleans_stay_their_literal_text(copy_fixture):
    root = copy_fixture("tiny-intents")
    text = (root / "task.yaml").read_text()
    block = text[text.index("labels:"):text.index("metrics:")]
    (root / "task.yaml").write_text(text.replace(block, (
        "labels:\n  yes: The customer agrees.\n  no: The customer declines.\n"
        "  on: Switch it on.\n  1: The first option.\n")))
    rows = [{"id": f"y{i}", "input": f"message {i}", "expected": lab}
            for i, lab in enumerate(["yes", "no", "on", "1"])]
    write_jsonl(root / "test.jsonl", rows)
    write_jsonl(root / "train.jsonl", rows[:2])
    ts = load_testset(root)  # test.jsonl's "yes" matches task.yaml's unquoted yes
    assert list(ts.task.labels) == ["yes", "no", "on", "1"]
    assert ts.task.labels["yes"] == "The customer agrees."
    assert [it.expected for it in ts.test] == ["yes", "no", "on", "1"]


def test_a_label_without_a_text_description_names_its_line(copy_fixture):
    root = copy_fixture("tiny-intents")
    err = _task_error(root, "  bug: Something in the product is broken, crashes or shows an error.",
                      "  bug: [a, b]")
    line = _line_of(root, "  bug:")
    assert f"task.yaml:{line}:" in str(err) and "field 'labels.bug'" in str(err)


@pytest.mark.parametrize("expected, words", [
    (True, "must be a string or a list"),
    ([], "empty list of answers"),
    (["€12", False], "must be a string or a list"),
    ({"a": 1}, "must be a string or a list"),
])
def test_qa_expected_must_hold_answers(copy_fixture, expected, words):
    root = copy_fixture("tiny-qa")
    append_jsonl(root / "test.jsonl", {"id": "bad-1", "input": "How much?",
                                       "expected": expected})
    line = len(_lines(root / "test.jsonl"))
    err = str(_error(root))
    assert f"test.jsonl:{line}:" in err and "field 'expected'" in err and words in err


def test_a_huge_input_loads_with_a_warning_naming_file_and_line(copy_fixture):
    from evalkit.data.testset import TestsetWarning

    root = copy_fixture("tiny-qa")
    text = (root / "task.yaml").read_text()
    (root / "task.yaml").write_text(text + "max_input_chars: 500\n")
    append_jsonl(root / "test.jsonl", {"id": "huge-1", "input": "x" * 501, "expected": "y"})
    line = len(_lines(root / "test.jsonl"))
    with pytest.warns(TestsetWarning, match=rf"test\.jsonl:{line}: field 'input': 501 "):
        ts = load_testset(root)
    assert ts.task.max_input_chars == 500 and len(ts.warnings) == 1
    assert "above the limit of 500" in ts.warnings[0]


def test_no_size_warning_under_the_default_limit(qa_dir):
    import warnings

    from evalkit.data.testset import DEFAULT_MAX_INPUT_CHARS

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ts = load_testset(qa_dir)
    assert ts.warnings == () and ts.task.max_input_chars == DEFAULT_MAX_INPUT_CHARS == 100_000


@pytest.mark.parametrize("name", ["policy-qa", "support-intents"])
def test_bundled_sets_load_without_errors_or_warnings(name):
    from pathlib import Path

    ts = load_testset(Path(__file__).parent.parent / "testsets" / name)
    assert ts.name == name and ts.warnings == () and len(ts.test) > 0
