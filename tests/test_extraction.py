"""The extraction task type: parsing, the metrics (hand-worked and against scikit-learn), and
loading task.yaml's schema and fields with located errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from sklearn.metrics import precision_recall_fscore_support
from sklearn.preprocessing import MultiLabelBinarizer

from evalkit import tasks
from evalkit.data.testset import TestsetError, load_testset
from evalkit.tasks.extraction import (
    extract_json,
    field_accuracy,
    is_empty,
    normalize_value,
    response_format,
    slot_counts,
    slot_prf,
    values_match,
)

# A hand-worked set: an extra predicted field, a value for an empty gold field, a wrong value,
# an empty gold record, and an answer that is not JSON.
GOLD = [
    {"order_id": "A-12345", "product": "Desk Lamp", "quantity": 2, "email": None},
    {"order_id": "B-2", "product": "Chair", "quantity": None},
    {},
    {"order_id": "C-9"},
]
PRED = [
    # order id, product and quantity match after normalisation (3 TP); the email for an empty
    # field and the extra field `colour` are false positives (2 FP)
    {"order_id": "a12345", "product": "desk lamp!", "quantity": "2", "email": "x@y.example",
     "colour": "red"},
    {"order_id": "B-3", "product": " CHAIR ", "quantity": None},  # 1 TP, 1 FP, 1 FN
    {},  # nothing to find, nothing found
    None,  # invalid JSON: the gold pair is missed (1 FN), nothing predicted
]


def test_slot_counts_by_hand():
    assert [slot_counts(g, p) for g, p in zip(GOLD, PRED)] == [
        (3, 2, 0), (1, 1, 1), (0, 0, 0), (0, 0, 1)]


def test_slot_precision_recall_f1_by_hand():
    # TP 4, FP 3, FN 2: P = 4/7, R = 4/6, F1 = 2*4 / (2*4 + 3 + 2) = 8/13
    p, r, f1 = slot_prf(GOLD, PRED)
    assert p == pytest.approx(4 / 7) and r == pytest.approx(2 / 3)
    assert f1 == pytest.approx(8 / 13) and f1 == pytest.approx(2 * p * r / (p + r))


def test_nothing_gold_and_nothing_predicted_is_perfect_not_undefined():
    assert slot_prf([{}, {"a": None}], [{}, {"a": ""}]) == (1.0, 1.0, 1.0)
    assert slot_prf([{"a": "x"}], [{}]) == (1.0, 0.0, 0.0)  # nothing predicted: R 0, F1 0


def _pairs(record):
    return {f"{k}={normalize_value(v)!r}" for k, v in (record or {}).items() if not is_empty(v)}


def test_slot_metrics_equal_scikit_learn_micro_average_over_pair_labels():
    """The reference: each (field, normalised value) pair as a label of a multi-label
    problem, micro-averaged by scikit-learn."""
    rng = random.Random(7)
    values = ["A-1", "a1", "B-2", "lamp", "Lamp.", 2, "2", None, "", "chair"]
    gold, pred = [], []
    for _ in range(200):
        fields = rng.sample(["id", "product", "qty", "email"], k=rng.randint(0, 4))
        gold.append({f: rng.choice(values) for f in fields})
        guess = {f: rng.choice(values) for f in rng.sample(["id", "product", "qty", "x"], 2)}
        pred.append(None if rng.random() < 0.1 else guess)
    mlb = MultiLabelBinarizer().fit([_pairs(r) for r in gold + pred])
    y_true = mlb.transform([_pairs(r) for r in gold])
    y_pred = mlb.transform([_pairs(r) for r in pred])
    ref = precision_recall_fscore_support(y_true, y_pred, average="micro", zero_division=0)
    assert slot_prf(gold, pred) == pytest.approx(ref[:3])


def test_field_accuracy_and_value_normalisation():
    # 5 fields: order_id, product, quantity match; email (null vs a value) and colour do not
    assert field_accuracy(GOLD[0], PRED[0]) == pytest.approx(3 / 5)
    assert field_accuracy({}, {}) == 1.0 and field_accuracy({"a": 1}, None) == 0.0
    assert values_match(2, "2.0") and values_match("1,200", 1200) and not values_match(2, 3)
    # a comma is a thousands separator only between groups of three (or Indian grouping):
    # "1,5" is a decimal comma, never fifteen
    assert values_match("1,234,567.5", 1234567.5) and values_match("1,50,000", 150000)
    assert not values_match("1,5", 15) and not values_match("12,34", 1234)
    assert values_match("1,5", "1,5")  # the same text still matches itself
    # typographic punctuation and fullwidth forms are the plain ones; accents still count
    assert values_match("O\u2019Brien", "O'Brien") and values_match("\u201cAcme\u201d", "Acme")
    assert values_match("\uff11\uff15", 15) and values_match("a\u2013b", "a-b")
    assert not values_match("Caf\u00e9", "Cafe")
    assert values_match("Order  A-12345.", "order a12345") and values_match(None, "  ")
    assert not values_match("A-12345", "A-12346") and not values_match(None, "x")


@pytest.mark.parametrize("text, parsed", [
    ('{"a": 1}', {"a": 1}),
    ('Sure! Here it is:\n```json\n{"a": "x", "b": null}\n```\nAnything else?',
     {"a": "x", "b": None}),
    ('The record is {"a": 2} as requested.', {"a": 2}),
    ('I think {not json} but then {"ok": true}', {"ok": True}),
    ('[{"a": 1}]', None),  # an array is not the record
    ('{"a": 1', None),  # cut off
    ("I could not find anything.", None),
])
def test_extract_json_from_real_small_model_answers(text, parsed):
    assert extract_json(text) == parsed


def _task(**kw):
    from evalkit.data.testset import Task

    return Task(name="t", type="extraction", instructions="x", primary_metric="field_accuracy",
                **kw)


def test_response_format_strict_schema_or_json_mode():
    strict = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}
    rf = response_format(_task(json_schema=strict))
    assert rf["type"] == "json_schema" and rf["json_schema"]["strict"] is True
    assert rf["json_schema"]["schema"] == strict
    loose = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert response_format(_task(json_schema=loose))["json_schema"]["strict"] is False
    assert response_format(_task()) == {"type": "json_object"}


def _item_scores(task, expected, output):
    from evalkit.data.testset import Item
    from evalkit.run.journal import Prediction
    from evalkit.scoring.score import score_item

    pred = Prediction(variant="v", item_id="i", output=output)
    return score_item(task, Item("i", "text", expected), pred)


def test_schema_valid_uses_jsonschema_and_invalid_json_scores_zero():
    schema = {"type": "object", "properties": {"qty": {"type": ["integer", "null"]}}}
    task = _task(json_schema=schema, secondary_metrics=("json_valid", "schema_valid"))
    ok = _item_scores(task, {"qty": 2}, '```json\n{"qty": 2}\n```')
    assert (ok["field_accuracy"], ok["json_valid"], ok["schema_valid"]) == (1.0, 1.0, 1.0)
    wrong_type = _item_scores(task, {"qty": 2}, '{"qty": "two"}')
    assert wrong_type["json_valid"] == 1.0 and wrong_type["schema_valid"] == 0.0
    broken = _item_scores(task, {"qty": 2}, "qty is two")
    assert broken["json_valid"] == 0.0 and broken["schema_valid"] == 0.0
    assert broken["field_accuracy"] == 0.0


# --- loading ----------------------------------------------------------------------------------

SCHEMA = {"type": "object", "additionalProperties": False,
          "required": ["order_id", "quantity"],
          "properties": {"order_id": {"type": ["string", "null"]},
                         "quantity": {"type": ["integer", "null"]}}}


def _write_set(root: Path, *, task_extra: str = "", rows=None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "schema.json").write_text(json.dumps(SCHEMA, indent=2))
    (root / "task.yaml").write_text(
        "name: tickets\ntype: extraction\ninstructions: Read the ticket.\n"
        "json_schema: schema.json\n" + task_extra)
    rows = rows or [{"id": "t1", "input": "order A-1, two of them",
                     "expected": {"order_id": "A-1", "quantity": 2}},
                    {"id": "t2", "input": "hello", "expected": {"order_id": None,
                                                                "quantity": None}}]
    (root / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_loads_schema_file_and_takes_fields_from_it(tmp_path):
    ts = load_testset(_write_set(tmp_path / "s"))
    assert ts.task.json_schema == SCHEMA and list(ts.task.fields) == ["order_id", "quantity"]
    assert ts.task.primary_metric == "field_accuracy"
    assert set(ts.task.secondary_metrics) >= {"slot_f1", "json_valid", "schema_valid"}
    assert ts.test[0].references == ['{"order_id": "A-1", "quantity": 2}']


def test_empty_expected_object_is_legal(tmp_path):
    rows = [{"id": "t1", "input": "nothing here", "expected": {}}]
    root = _write_set(tmp_path / "s", rows=rows)
    (root / "task.yaml").write_text((root / "task.yaml").read_text()
                                    .replace("json_schema: schema.json\n", ""))
    ts = load_testset(root)
    assert ts.test[0].expected == {} and ts.task.json_schema is None


@pytest.mark.parametrize("row, field, words", [
    ({"id": "x", "input": "a", "expected": "A-1"}, "expected", "must be a JSON object"),
    ({"id": "x", "input": "a", "expected": {"order_id": "A-1", "quantity": "two"}},
     "expected", "quantity: 'two' is not of type"),
    ({"id": "x", "input": "a", "expected": {"order_id": "A-1", "quantity": 1, "colour": "red"}},
     "expected", "unknown field 'colour'"),
])
def test_bad_expected_names_file_line_and_field(tmp_path, row, field, words):
    good = {"id": "g", "input": "b", "expected": {"order_id": None, "quantity": None}}
    root = _write_set(tmp_path / "s", rows=[good, row])
    with pytest.raises(TestsetError) as err:
        load_testset(root)
    assert "test.jsonl:2:" in str(err.value) and f"field '{field}'" in str(err.value)
    assert words in str(err.value)


def test_unknown_field_is_named_against_the_declared_fields(tmp_path):
    root = _write_set(tmp_path / "s", task_extra="fields:\n  order_id: the order number\n")
    (root / "task.yaml").write_text((root / "task.yaml").read_text()
                                    .replace("json_schema: schema.json\n", ""))
    (root / "test.jsonl").write_text(json.dumps(
        {"id": "x", "input": "a", "expected": {"order_no": "A-1"}}) + "\n")
    with pytest.raises(TestsetError) as err:
        load_testset(root)
    assert "test.jsonl:1:" in str(err.value) and "unknown field 'order_no'" in str(err.value)


@pytest.mark.parametrize("extra, schema_text, line, field, words", [
    ("", '{"type": "object", "properties": 3}', 4, "json_schema", "not a valid JSON Schema"),
    ("", '{"type": ', 1, "json_schema", "malformed JSON"),
    ("fields:\n  order_id: [not, a, string]\n", None, 6, "fields.order_id", "description"),
])
def test_bad_schema_or_fields_name_file_line_and_field(tmp_path, extra, schema_text, line,
                                                       field, words):
    root = _write_set(tmp_path / "s", task_extra=extra)
    if schema_text is not None:
        (root / "schema.json").write_text(schema_text)
    with pytest.raises(TestsetError) as err:
        load_testset(root)
    name = "schema.json" if "malformed" in words else "task.yaml"
    assert f"{name}:{line}:" in str(err.value) and f"field '{field}'" in str(err.value)
    assert words in str(err.value)


def test_extraction_metrics_are_registered_for_the_type():
    assert {"slot_f1", "slot_precision", "slot_recall"} <= set(
        tasks.metric_names(task_type="extraction", level="run"))
    assert tasks.task_type("extraction").default_primary == "field_accuracy"


def test_list_and_object_values_match_as_their_scalars_do():
    """Extraction sets with list targets (CoNLL/WikiANN-style entity lists, CORD's receipt
    menu as a list of objects) compared a list by its raw JSON: ["Ann", "Bob"] did not match
    ["ann", "Bob"] although the fields "Ann" and "ann" match, nor ["Bob", "Ann"], and a
    receipt line {"price": "30,000"} did not match {"price": 30000}. Elements and members are
    normalised as scalar fields are, and a list is compared as a multiset (order free)."""
    assert values_match(["Ann", "Bob"], ["bob", "ann"])
    assert values_match([{"nm": "Latte", "price": "30,000"}, {"nm": "Bagel", "price": "2"}],
                        [{"price": 2, "nm": "bagel"}, {"price": 30000, "nm": "LATTE"}])
    assert values_match({"total_price": "50,000"}, {"total_price": 50000.0})
    assert not values_match(["Ann"], ["Ann", "Bob"]) and not values_match(["a", "a"], ["a"])
    assert not values_match([{"nm": "Latte"}], [{"nm": "Mocha"}])
    assert not values_match(["1"], "1")  # a list is not its element
    assert field_accuracy({"names": ["Ann", "Bob"], "city": "Leeds"},
                          {"names": ["Bob", "Ann"], "city": "leeds"}) == 1.0


@pytest.mark.parametrize("gold, answer", [
    ("RM 12.00", "RM 1200"), ("$12.34", "$1,234"), ("$5.00", "$500"), ("5.5%", "55%"),
    ("1/12/2023", "11/2/2023"), ("2023-11-5", "2023-1-15"), ("02134", "2134"), ("007", 7),
    ("9007199254740993", "9007199254740992"), (9007199254740993, 9007199254740992),
    ("1.234,50 €", "123450 €"), ("12.00", "$12.00"), ("5.5%", "5.5")])
def test_values_that_differ_in_their_digits_do_not_match(gold, answer):
    """Receipts, invoices and dates: punctuation between digits is the value (a decimal
    point, a date's separators), a leading zero is part of an id, a long id is compared
    exactly, a unit is part of an amount. Each of these scored as a match (a helper's
    SROIE/CORD-shaped run showed 'field_accuracy 1 (right)' for RM 12.00 against RM 1200)."""
    assert not values_match(gold, answer)


@pytest.mark.parametrize("gold, answer", [
    ("12.00", "12"), ("$12.00", "$12"), ("RM12.00", "RM 12"), ("12 kg", "12kg"),
    ("5.5%", "5.5 %"), ("1,234.50", 1234.5), ("$1,000.50", "$1000.5"), (2, "2.0"),
    ("A-12345", "a12345"), ("INV-0042", "inv0042"), (9007199254740993, "9007199254740993"),
    ("don’t", "dont"), ("ＡＢＣ", "abc"), ("1e3", 1000), ("0.5", ".5")])
def test_values_written_differently_still_match(gold, answer):
    assert values_match(gold, answer)


def test_null_keys_added_to_an_answer_do_not_raise_its_field_accuracy():
    """A missing key and a null are the same thing: a wrong answer padded with null keys
    read 0.75 (and 'right' in the report) where it read 0 without them."""
    assert field_accuracy({"total": "5"}, {"total": "6"}) == 0.0
    assert field_accuracy({"total": "5"}, {"total": "6", "a": None, "b": "", "c": []}) == 0.0
    assert field_accuracy({"total": "5", "date": None}, {"total": "5"}) == 1.0
    assert field_accuracy({"total": "5"}, {"total": "5", "extra": "9"}) == 0.5


def test_a_record_short_of_full_marks_says_which_fields_and_why():
    """The report's explorer showed the gold JSON, the raw answer and 'field_accuracy 0':
    nothing said which field differed, or that the answer was not JSON at all."""
    from evalkit.tasks.extraction import explain

    task = None  # the record's own rules need no task
    gold = {"total": "$12.00", "date": "2023-01-05", "vendor": None}
    assert explain(gold, '{"total": "$12", "date": "2023-01-05"}', task) is None
    assert explain(gold, '```json\n{"total": "$12.50", "date": null, "tip": "1"}\n```',
                   task) == ('3 fields wrong: total: expected "$12.00", answered "$12.50"; '
                             'date: expected "2023-01-05", answered nothing; tip: expected '
                             'nothing, answered "1" (not a field of the record)')
    assert explain(gold, '[{"total": "$12"}]', task) == "not a JSON record: a JSON array, " \
                                                         "not an object"
    assert explain(gold, "{'total': '$12'}", task).startswith(
        "not a JSON record: no JSON object could be read")
    assert explain(gold, "", task) == "no answer: the reply was empty"


def test_the_explorer_carries_the_task_types_explanation_for_answers_short_of_full_marks():
    import pandas as pd

    from evalkit.report.explorer import explorer_data
    from evalkit.run.journal import Prediction
    from evalkit.tasks.extraction import explain

    items = [{"id": "a", "input": "x", "expected": {"total": "5"}},
             {"id": "b", "input": "y", "expected": {"total": "6"}}]
    preds = [Prediction("v", "a", '{"total": "5"}'), Prediction("v", "b", '{"total": "7"}')]
    scores = pd.DataFrame({"run": "r", "variant": "v", "item_id": ["a", "b"],
                           "metric": "field_accuracy", "value": [1.0, 0.0]})
    data = explorer_data(items, preds, scores, ["v"], "field_accuracy",
                         explain=lambda e, o: explain(e, o, None))
    right, wrong = (row["o"][0] for row in data["items"])
    assert len(right) < 10  # nothing to say: the slot is dropped with the empty ones
    assert wrong[9] == '1 field wrong: total: expected "6", answered "7"'


def test_nan_and_infinity_make_an_answer_invalid_json():
    """Python's json reads NaN and Infinity; JSON has neither, so {"total": NaN} counted as
    valid JSON (json_valid 1, schema_valid 1) where any other parser refuses it."""
    assert extract_json('{"total": NaN}') is None
    assert extract_json('Here: {"total": Infinity} done') is None
    assert extract_json('```json\n{"total": -Infinity}\n```') is None
    assert extract_json('{"total": 1e308}') == {"total": 1e308}


@pytest.mark.parametrize("gold, answer", [
    ("v1.10", "v1.1"), ("Rev 2.10", "Rev 2.1"), ("AB1.10", "AB1.1"), ("A1E5", "A100000"),
    ("A12", "A12.0"), ("-RM 5.00", "RM 5.00"), ("-12 kg", "12 kg"), ("-5%", "+5%"),
    ("1e400", "1e401"), ("temp -5", "temp 5")])
def test_codes_versions_and_signs_are_not_read_as_amounts(gold, answer):
    """A review of the amount rule: a letter prefix that is no currency code made version
    numbers and part numbers amounts (v1.10 = v1.1), and a minus sign was dropped (a
    discount matched a charge); a number too large for a float matched any other."""
    assert not values_match(gold, answer)


@pytest.mark.parametrize("gold, answer", [
    ("$12.00.", "$12.00"), ("($12.00)", "$12.00"), ('"12.50"', 12.5), ("12.50,", 12.5),
    ("rm 12.00", "RM 12"), ("USD 5", "5 usd"), ("-5", "-5.0"), ("9" * 5000, "9" * 5000)])
def test_amounts_in_quotes_or_with_a_full_stop_still_match(gold, answer):
    assert values_match(gold, answer)


def test_a_digit_string_too_long_for_a_float_is_scored_not_raised():
    """An answer holding 400 nines raised OverflowError out of the scoring, and a run lost
    its scores.csv and summary.json after every call was paid."""
    record = {"invoice_no": "9" * 400, "total": 10 ** 400}
    assert field_accuracy({"invoice_no": "INV-1", "total": 1}, record) == 0.0
    assert field_accuracy(record, dict(record)) == 1.0
