"""Metrics against hand-computed values, the SQuAD v1.1 script, and scikit-learn."""

from __future__ import annotations

import json
import math
import random
import re
import string
from collections import Counter

import pytest
from sklearn.metrics import f1_score

from evalkit.data.testset import Item, Task
from evalkit.run.journal import Prediction
from evalkit.scoring.metrics import (
    accuracy,
    contains,
    exact_match,
    macro_f1,
    mrr,
    normalize_answer,
    parse_label,
    recall_at_k,
    token_f1,
)
from evalkit.scoring.score import score_item

# --- SQuAD text metrics -----------------------------------------------------------------------


def test_normalisation_follows_squad():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert normalize_answer("An apple a day") == "apple day"
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words


def test_typographic_quotes_normalise_as_ascii_ones():
    # chat models write ’ where references (and abstain phrases) are typed with '
    assert normalize_answer("O’Brien’s “desk”") == normalize_answer("O'Brien's \"desk\"")
    assert exact_match("O’Brien", "O'Brien") == 1.0
    assert normalize_answer("€12 per user/month.") == "€12 per usermonth"


def test_token_f1_hand_computed():
    # "the cat sat" -> [cat, sat]; "a cat sat down" -> [cat, sat, down]
    # overlap 2: precision 2/2, recall 2/3, F1 = 2 * 1 * 2/3 / (1 + 2/3) = 0.8
    assert token_f1("the cat sat", ["a cat sat down"]) == pytest.approx(0.8)
    # "14 days" vs "30 days": overlap 1, P = R = 1/2 -> 0.5
    assert token_f1("14 days", ["30 days"]) == pytest.approx(0.5)
    # repeated tokens count once per occurrence: P = 1/3, R = 1 -> 0.5
    assert token_f1("cat cat cat", ["cat"]) == pytest.approx(0.5)
    # "€12 per user per month" vs "€12": P = 1/5, R = 1 -> 2 * 0.2 / 1.2 = 1/3
    assert token_f1("€12 per user per month", ["€12"]) == pytest.approx(1 / 3)
    assert token_f1("nothing shared", ["cat sat"]) == 0.0
    assert token_f1("", ["cat sat"]) == 0.0


def test_text_metrics_take_the_max_over_references():
    assert token_f1("€12 per user per month", ["€12", "€12 per user per month"]) == 1.0
    assert token_f1("30 days", ["14 days", "30 days"]) == 1.0
    assert exact_match("30 days", ["14 days", "30 days"]) == 1.0
    assert exact_match("30 days", "30 Days.") == 1.0  # a bare string is one reference


def test_exact_match_hand_computed():
    assert exact_match("The Cat!", ["cat"]) == 1.0
    assert exact_match("cat sat", ["cat"]) == 0.0
    assert exact_match("  an Answer ", ["answer"]) == 1.0


def _squad_v11_normalize(s):
    """Verbatim logic of the official SQuAD v1.1 evaluate-v1.1.py, as an independent oracle."""
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def _squad_v11_f1(prediction, ground_truth):
    p, g = _squad_v11_normalize(prediction).split(), _squad_v11_normalize(ground_truth).split()
    common = Counter(p) & Counter(g)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision, recall = num_same / len(p), num_same / len(g)
    return (2 * precision * recall) / (precision + recall)


PAIRS = [
    ("Denver Broncos", ["Denver Broncos", "The Denver Broncos"]),
    ("the Broncos of Denver", ["Denver Broncos"]),
    ("Santa Clara, California", ["Santa Clara", "Levi's Stadium"]),
    ("Levis stadium in the bay area", ["Levi's Stadium"]),
    ("5 business days", ["5 business days", "five business days"]),
    ("within 30 days of renewal", ["30 days"]),
    ("unknown", ["unknown"]),
    ("Unknown.", ["30 days"]),
]


@pytest.mark.parametrize("prediction,refs", PAIRS)
def test_text_metrics_match_the_official_squad_script(prediction, refs):
    assert token_f1(prediction, refs) == pytest.approx(
        max(_squad_v11_f1(prediction, r) for r in refs))
    assert exact_match(prediction, refs) == float(
        any(_squad_v11_normalize(prediction) == _squad_v11_normalize(r) for r in refs))


def test_contains():
    assert contains("Refunds take 30 days.", ["30 days"]) == 1.0
    assert contains("The answer is the 30 Days!", ["30 days"]) == 1.0
    assert contains("about 130 days", ["30 days"]) == 0.0  # whole tokens only
    assert contains("no idea", ["30 days", "idea"]) == 1.0
    assert contains("anything", [""]) == 0.0  # an empty reference is contained in nothing
    assert contains("anything", ["the"]) == 0.0  # nor one that normalises to nothing


# --- classification ---------------------------------------------------------------------------

def test_accuracy():
    assert accuracy(["a", "b", "c", "a"], ["a", "b", "a", "b"]) == 0.5


def test_macro_f1_hand_computed():
    y_true = ["a", "a", "b", "b", "c"]
    y_pred = ["a", "b", "b", "b", "a"]
    # a: P 1/2 R 1/2 F 0.5; b: P 2/3 R 1 F 0.8; c: F 0  -> mean 1.3 / 3
    assert macro_f1(y_true, y_pred) == pytest.approx(1.3 / 3)
    # a label nobody used still counts, as 0, when the task declares it
    assert macro_f1(y_true, y_pred, labels=["a", "b", "c", "d"]) == pytest.approx(1.3 / 4)


def test_macro_f1_matches_sklearn_on_random_labels():
    rng = random.Random(7)
    labels = ["refund", "login", "export", "bug"]
    for _ in range(20):
        y_true = [rng.choice(labels) for _ in range(40)]
        y_pred = [rng.choice([*labels, "<none>"]) for _ in range(40)]
        ours = macro_f1(y_true, y_pred, labels=labels)
        ref = f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        assert ours == pytest.approx(ref)


# --- retrieval --------------------------------------------------------------------------------

def test_recall_at_k():
    retrieved = ["a", "b", "c"]
    assert recall_at_k(retrieved, ["c", "d"], k=2) == 0.0
    assert recall_at_k(retrieved, ["c", "d"], k=3) == 0.5
    assert recall_at_k(retrieved, ["c", "d"]) == 0.5
    assert recall_at_k(retrieved, ["a"], k=1) == 1.0
    assert recall_at_k(["a", "a", "b"], ["a", "b"]) == 1.0
    assert math.isnan(recall_at_k(retrieved, []))


def test_mrr():
    assert mrr(["x", "b", "a"], ["a", "b"]) == 0.5
    assert mrr(["a", "b"], ["a"]) == 1.0
    assert mrr(["x", "y", "z"], ["a"]) == 0.0
    assert mrr(["x", "y", "z", "a"], ["a"]) == 0.25
    assert math.isnan(mrr(["a"], []))


# --- parsing labels ---------------------------------------------------------------------------

LABELS = ["refund", "login", "export", "bug"]


@pytest.mark.parametrize("output,label", [
    ("refund", "refund"),
    (" Refund. ", "refund"),
    ("`bug`", "bug"),
    ('"LOGIN"', "login"),
    ("The answer is login.", "login"),
    ("Label: export", "export"),
    ("refund or login", None),     # two labels named: ambiguous
    ("refunds", None),             # not the label as a word
    ("I cannot tell", None),
    ("", None),
])
def test_parse_label(output, label):
    assert parse_label(output, LABELS) == label


def test_parse_label_keeps_the_task_spelling():
    assert parse_label("BILLING_ISSUE", ["billing_issue", "other"]) == "billing_issue"


@pytest.mark.parametrize("output,label", [
    ("Refund Request", "refund_request"),          # the identifier written as words
    ("Sure! The intent is **refund-request**.", "refund_request"),
    ("refund request", "refund_request"),          # not "refund": the longer label holds it
    ("refund_requests", None),                     # still whole words only
    ("refund or refund request", None),            # two labels named apart: ambiguous
    ("Cancel order", "cancel_order"),
])
def test_parse_label_reads_separators_as_a_small_model_writes_them(output, label):
    assert parse_label(output, ["refund_request", "refund", "cancel_order"]) == label


# --- per-item scoring -------------------------------------------------------------------------

CLF = Task(name="t", type="classification", instructions="i", labels=dict.fromkeys(LABELS, "d"))
QA = Task(name="q", type="qa", instructions="i")


def test_score_item_classification_and_retrieval():
    item = Item("x", "locked out", "login", doc_ids=("signing-in",))
    pred = Prediction("rag", "x", "Login.", input_tokens=10, output_tokens=1, latency_s=0.2,
                      cost_usd=0.001, retrieved=["refunds", "signing-in"])
    scores = score_item(CLF, item, pred)
    assert scores["accuracy"] == 1.0
    assert scores["recall_at_k"] == 1.0 and scores["mrr"] == 0.5
    assert scores["input_tokens"] == 10 and scores["cost_usd"] == 0.001
    assert score_item(CLF, item, Prediction("rag", "x", "refund"))["accuracy"] == 0.0


def test_score_item_qa_uses_every_reference():
    item = Item("q", "price?", ["€12 per user per month", "€12"])
    scores = score_item(QA, item, Prediction("rag", "q", "€12"))
    assert scores == {**scores, "exact_match": 1.0, "token_f1": 1.0, "contains": 1.0}
    assert "recall_at_k" not in scores  # no gold doc ids, no retrieval metric


def test_failed_call_scores_nan_not_zero():
    item = Item("q", "price?", ["€12"])
    failed = Prediction("rag", "q", None, error_class="TimeoutError", error="slow")
    scores = score_item(QA, item, failed)
    assert all(math.isnan(scores[m]) for m in ("exact_match", "token_f1", "contains"))
    assert "latency_s" not in scores and "cost_usd" not in scores



def test_macro_f1_bootstrap_interval_holds_its_estimate_on_many_small_labels():
    """CLINC150-shaped: 31 labels with one or two test items each. A resample drops about a
    third of the labels, and each dropped label counted as F1 0, so every resample fell far
    below the estimate: an all-right rung read macro_f1 1.000 [0.613, 0.871], an interval
    that excludes its own point. A label the resample lacks is left out of its mean, as a
    label the whole set never has nor predicts is left out of the estimate (scikit-learn's
    default label set: `never_seen` would otherwise cap a perfect rung below 1)."""
    import numpy as np

    from evalkit.analysis import stats
    from evalkit.tasks import metric
    from evalkit.tasks.base import RunContext

    labels = [f"intent_{i}" for i in range(30)] + ["oos", "never_seen"]
    task = Task(name="clinc", type="classification", instructions="i",
                labels={label: label for label in labels})
    expected = [labels[i % 31] for i in range(52)]
    rng = random.Random(3)
    perfect = metric("macro_f1").compute(RunContext(task, expected, list(expected)))
    assert perfect(np.arange(52)) == 1.0  # not 31/32, for the label no item has
    for parsed in (list(expected), [e if rng.random() < 0.9 else "oos" for e in expected]):
        stat = metric("macro_f1").compute(RunContext(task, expected, parsed))
        ref = f1_score(expected, parsed, average="macro", zero_division=0)
        assert stat(np.arange(52)) == pytest.approx(ref)  # scikit-learn's, labels by default
        boot = stats.bootstrap_ci(stat, 52, seed=0)
        assert boot.ci_low <= ref <= boot.ci_high


def test_an_exact_label_wins_over_one_that_differs_only_in_case():
    """Real label sets hold `Refund` beside `refund`, `Change_PIN` beside `change_pin`: an
    answer spelling one exactly is that one (it was read as the last of them, so a right
    answer scored 0), and one that matches several only case-insensitively is none."""
    from evalkit.tasks.classification import parse_label

    labels = ["Change_PIN", "change pin", "change_pin", "card_arrival"]
    assert parse_label("Change_PIN", labels) == "Change_PIN"
    assert parse_label("change_pin", labels) == "change_pin"
    assert parse_label(" 'change pin'. ", labels) == "change pin"
    assert parse_label("CHANGE_PIN", labels) is None  # which of them? no guess
    assert parse_label("Card_Arrival", labels) == "card_arrival"  # one label: case is free
    assert parse_label("Refund", ["Refund", "refund"]) == "Refund"
    assert parse_label("refund", ["Refund", "refund"]) == "refund"


def test_check_warns_of_labels_that_differ_only_in_case_or_separators(tmp_path):
    from evalkit.data.testset import load_testset
    from evalkit.pipeline.preflight import balance_notes

    (tmp_path / "task.yaml").write_text(
        "name: t\ntype: classification\ninstructions: Classify.\nlabels:\n"
        "  Change_PIN: change the PIN\n  change pin: change the PIN\n  Refund: money back\n"
        "  refund: money back\n  card_arrival: where is my card\n")
    rows = [("Change_PIN", "new pin please"), ("change pin", "pin change"),
            ("Refund", "money back"), ("refund", "refund me"), ("card_arrival", "my card?")]
    (tmp_path / "test.jsonl").write_text("".join(
        json.dumps({"id": f"t{i}", "input": text, "expected": label}) + "\n"
        for i, (label, text) in enumerate(rows)))
    notes = [n for n in balance_notes(load_testset(tmp_path)) if "differ only" in n]
    assert len(notes) == 2
    assert "'Change_PIN' / 'change pin'" in notes[0] and "'Refund' / 'refund'" in notes[1]


def test_init_warns_of_labels_that_differ_only_in_case_or_separators(tmp_path):
    from evalkit.data import scaffold

    words = ["money", "back", "order", "card", "late", "where", "parcel", "return", "please",
             "help", "lost", "week"]
    rows = [{"text": " ".join(words[(i * 7 + k * 5 + j) % 12] for j in range(4))
             + f" {label} {i}", "label": label}
            for k, label in enumerate(("Refund", "refund", "card_arrival")) for i in range(8)]
    path = tmp_path / "banking.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = scaffold.draft(path).summary()
    assert "labels that differ only in case or separators: 'Refund' / 'refund'" in summary


def test_a_label_spelled_exactly_in_a_sentence_beats_one_alike_but_for_case():
    from evalkit.data.testset import Task
    from evalkit.tasks.classification import explain, parse_label

    labels = ["Change_PIN", "change_pin", "card_arrival"]
    assert parse_label("Label: Change_PIN", labels) == "Change_PIN"
    assert parse_label("label: CHANGE_PIN", labels) is None
    task = Task(name="t", type="classification", instructions="",
                labels={"refund": "", "refund request": "", "cancel": ""})
    # the parser's rule: "refund" inside "refund request" is not a mention of its own
    assert explain("refund", "refund request or cancel", task) == (
        "names 2 labels ('refund request', 'cancel'), so it is read as none of them")
