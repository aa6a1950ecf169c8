"""Extraction end to end: an OpenAI-compatible loopback server asked for JSON through
`response_format` (and one that refuses it), the local provider's rungs, the bundled
ticket-extraction set, and the paired interval of a per-run metric's step."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from openai_server import FakeOpenAI, cli, openai_env, run_dirs_args
from scipy import stats as sps

from evalkit.data.testset import load_testset
from evalkit.providers.local import extract_record
from evalkit.strategies.extract_local import train_tagger
from evalkit.strategies.request import Example, Request
from evalkit.tasks import task_type
from evalkit.tasks.extraction import slot_prf

_env = openai_env  # autouse: the test key in the environment, no OPENAI_BASE_URL
BUNDLED = Path(__file__).parent.parent / "testsets" / "ticket-extraction"

SCHEMA = {"type": "object", "additionalProperties": False,
          "required": ["order_id", "customer_email", "quantity"],
          "properties": {"order_id": {"type": ["string", "null"]},
                         "customer_email": {"type": ["string", "null"]},
                         "quantity": {"type": ["integer", "null"]}}}
ROWS = [  # the loopback server finds order ids and e-mails, never quantities
    ("Order KP-123456 arrived broken, write to ana@mail.example. I bought 2.",
     {"order_id": "KP-123456", "customer_email": "ana@mail.example", "quantity": 2}),
    ("Where is KP-654321?", {"order_id": "KP-654321", "customer_email": None, "quantity": None}),
    ("No order number, sorry; reach me at bo@post.example about the one lamp.",
     {"order_id": None, "customer_email": "bo@post.example", "quantity": 1}),
    ("hello", {"order_id": None, "customer_email": None, "quantity": None}),
]
# by hand: 4 true positives, no false positive, 2 false negatives (the quantities)
SLOT_F1, SLOT_RECALL, FIELD_ACCURACY = 8 / 10, 4 / 6, (2 / 3 + 1 + 2 / 3 + 1) / 4


def _tiny_set(root: Path, *, schema: bool = True) -> Path:
    root.mkdir(parents=True)
    (root / "task.yaml").write_text(
        "name: tiny-tickets\ntype: extraction\ninstructions: Fill in the ticket record.\n"
        + (f"json_schema: {json.dumps(SCHEMA)}\n" if schema else "")
        + "fields:\n  order_id: the order number, like KP-482913\n"
          "  customer_email: the customer's e-mail\n  quantity: how many units\n")
    (root / "test.jsonl").write_text("".join(
        json.dumps({"id": f"t{i}", "input": text, "expected": rec}) + "\n"
        for i, (text, rec) in enumerate(ROWS, start=1)))
    return root


def _run_openai(server, tmp_path, *extra):
    cli("run", _tiny_set(tmp_path / "set"), "--provider", "openai", "--base-url",
        server.base_url, "--variants", "prompt-only", "--concurrency", "1",
        *run_dirs_args(tmp_path), *extra)
    run = (tmp_path / "reports" / "latest").resolve()
    _run_openai.last = run
    return json.loads((run / "summary.json").read_text())["variants"]["prompt-only"]["metrics"]


def _check_scored(metrics):
    assert metrics["json_valid"]["mean"] == 1.0
    assert metrics["slot_f1"]["mean"] == pytest.approx(SLOT_F1)
    assert metrics["slot_recall"]["mean"] == pytest.approx(SLOT_RECALL)
    assert metrics["slot_precision"]["mean"] == 1.0
    assert metrics["field_accuracy"]["mean"] == pytest.approx(FIELD_ACCURACY)


def test_openai_server_gets_a_strict_json_schema_and_its_json_is_scored(tmp_path):
    with FakeOpenAI() as server:
        metrics = _run_openai(server, tmp_path)
        sent = [r.body["response_format"] for r in server.chat_calls(200)]
    assert len(sent) == len(ROWS)
    assert all(rf["type"] == "json_schema" and rf["json_schema"]["strict"] is True
               and rf["json_schema"]["schema"] == SCHEMA for rf in sent)
    _check_scored(metrics)
    assert metrics["schema_valid"]["mean"] == 1.0
    _check_fields(_run_openai.last)


def _check_fields(run):
    """Per field, by hand: order ids and e-mails all right (two empties match), quantities
    right only where both are null (2 of 4), with 2 gold pairs missed and none predicted."""
    from evalkit.analysis.breakdowns import field_quality
    from evalkit.analysis.summary import load_run
    from evalkit.report.build import render_report

    fields = {f.field: f for f in field_quality(load_run(run))}
    assert list(fields) == ["order_id", "customer_email", "quantity"]
    qty = fields["quantity"].by_variant["prompt-only"]
    assert (fields["quantity"].n_filled, qty.accuracy, qty.precision, qty.recall, qty.f1) == (
        2, 0.5, 1.0, 0.0, 0.0)
    assert fields["order_id"].by_variant["prompt-only"].accuracy == 1.0
    html = Path(render_report(run)).read_text()
    assert 'id="fields"' in html and 'data-field="quantity"' in html
    # no quantity was predicted: precision is undefined, shown as a dash, not a perfect 1.000
    row = html.split('data-field="quantity"', 1)[1].split("</tr>", 1)[0]
    assert "precision is undefined" in row and "· 1.000 / 0.000" not in row


def test_a_server_refusing_response_format_is_asked_once_more_without_it(tmp_path):
    """One 400 naming response_format; the same request again without it, and every later
    request without it; the answers (JSON in chatty text and a fence) still score."""
    with FakeOpenAI(reject_response_format=True) as server:
        metrics = _run_openai(server, tmp_path)
        calls = server.chat_calls()
    assert [c.status for c in calls] == [400] + [200] * len(ROWS)
    assert "response_format" in calls[0].body
    assert not any("response_format" in c.body for c in calls[1:])
    _check_scored(metrics)


def test_json_object_mode_switch_and_json_mode_without_a_schema(tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text("provider:\n  response_format: json_object\n")
    with FakeOpenAI() as server:
        metrics = _run_openai(server, tmp_path, "--config", config)
        sent = {json.dumps(r.body.get("response_format")) for r in server.chat_calls(200)}
    assert sent == {json.dumps({"type": "json_object"})}
    _check_scored(metrics)


# --- the local provider -----------------------------------------------------------------------

FIELDS = (("order_id", "the order number, like KP-482913"),
          ("order_date", "the date the order was placed, as YYYY-MM-DD"),
          ("quantity", "how many units were ordered, a whole number"),
          ("customer_email", "the customer's own e-mail address"),
          ("requested_action", "what they want: refund (money back), replacement (a new one "
                               "sent), cancel_order (cancel the order)"))
TICKET = ("Hi, it arrived on 3 May 2026 but I placed the order on March 9, 2026 (kp482913). "
          "I ordered two units. I want my money back. I wrote to help@shop.example already.\n"
          "Ana <ana.silva@mail.example>")


def test_prompt_only_rules_come_from_the_field_descriptions():
    """The id in the example's shape, the date after "placed" (not "arrived"), a number
    word, the action whose cue words appear; the first e-mail (a rule cannot tell the
    shop's own address from the customer's: that is for the examples or a fine-tune)."""
    record = extract_record(Request("extraction", "Fill in the record.", TICKET, fields=FIELDS))
    assert record == {"order_id": "KP-482913", "order_date": "2026-03-09", "quantity": 2,
                      "customer_email": "help@shop.example", "requested_action": "refund"}


def test_few_shot_learns_what_precedes_a_value_from_the_examples():
    shots = tuple(Example(f"I wrote to help@shop.example. Reply to {u}@mail.example please.",
                          json.dumps({"customer_email": f"{u}@mail.example"}))
                  for u in ("bo", "cy"))
    request = Request("extraction", "x", "Sent to help@shop.example too. Reply to "
                      "ana@mail.example please.", fields=FIELDS[3:4], examples=shots)
    assert extract_record(request) == {"customer_email": "ana@mail.example"}


@pytest.fixture(scope="module")
def bundled():
    return load_testset(BUNDLED)


def test_tagger_trained_on_the_train_split_beats_the_few_shot_rules(bundled):
    task = bundled.task
    fmt = task_type(task.type).response_format(task)
    tagger = train_tagger(tuple(task.fields.items()), fmt, [it.input for it in bundled.train],
                          [it.expected for it in bundled.train])
    items = bundled.test[:80]
    gold = [it.expected for it in items]
    shots = bundled.train[:4]
    few = [extract_record(Request(
        "extraction", task.instructions, it.input, fields=tuple(task.fields.items()),
        examples=tuple(Example(s.input, s.references[0]) for s in shots), response_format=fmt))
        for it in items]
    tuned = [tagger.predict(it.input) for it in items]
    assert slot_prf(gold, tuned)[2] > slot_prf(gold, few)[2] + 0.1


# --- the bundled set --------------------------------------------------------------------------

def test_bundled_set_size_fields_and_empty_values(bundled):
    assert bundled.task.type == "extraction" and len(bundled.task.fields) >= 5
    assert len(bundled.test) >= 300 and len(bundled.train) >= 500
    for split in (bundled.test, bundled.train):
        for name in bundled.task.fields:
            empty = sum(it.expected.get(name) is None for it in split)
            assert empty < len(split), name  # every field is filled somewhere ...
        assert sum(it.expected.get("quantity") is None for it in split) > 0.2 * len(split)
        assert {it.expected["requested_action"] for it in split} >= {
            "refund", "replacement", "cancel_order", "return_label", "order_status", None}


def test_bundled_set_is_what_its_generator_writes(tmp_path):
    spec = importlib.util.spec_from_file_location("generate", BUNDLED / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    for name in ("test.jsonl", "train.jsonl"):
        assert (tmp_path / name).read_bytes() == (BUNDLED / name).read_bytes(), name


# --- a per-run metric's step ------------------------------------------------------------------

def test_run_metric_step_interval_is_a_paired_bootstrap_like_scipys():
    """slot_f1(B) - slot_f1(A) over the same resampled items, against scipy.stats.bootstrap
    (paired, percentile) on the per-item (tp, fp, fn) counts: the intervals agree."""
    from evalkit.analysis.summary import RunData, run_metric_deltas
    from evalkit.data.testset import Task
    from evalkit.run.journal import Prediction

    rng = np.random.default_rng(3)
    gold = [{"a": "x", "b": str(rng.integers(3))} for _ in range(150)]
    outs = {"A": [json.dumps({"a": "x" if rng.random() < 0.6 else "y", "b": g["b"]})
                  for g in gold],
            "B": [json.dumps({"a": "x" if rng.random() < 0.8 else "y", "b": g["b"]})
                  for g in gold]}
    ids = [f"i{i}" for i in range(len(gold))]
    task = Task(name="t", type="extraction", instructions="", primary_metric="field_accuracy",
                secondary_metrics=("slot_f1",))
    data = RunData(run_id="r", testset="t", task_type="extraction",
                   primary_metric="field_accuracy", ladder=["A", "B"], scores=None,
                   item_ids=ids, expected=dict(zip(ids, gold)), task=task,
                   predictions=[Prediction(v, i, o) for v in outs for i, o in zip(ids, outs[v])])
    ours = run_metric_deltas(data, "A", "B", seed=0)["slot_f1"]

    def f1(tp, fp, fn):
        return 2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum())

    def counts(v):
        from evalkit.tasks.extraction import extract_json, slot_counts

        return np.array([slot_counts(g, extract_json(o)) for g, o in zip(gold, outs[v])]).T
    ca, cb = counts("A"), counts("B")
    ref = sps.bootstrap((*ca, *cb), lambda *c: f1(*c[3:]) - f1(*c[:3]), paired=True,
                        vectorized=False, method="percentile", n_resamples=2000,
                        random_state=1).confidence_interval
    assert ours["delta"] == pytest.approx(f1(*cb) - f1(*ca))
    assert ours["ci_low"] == pytest.approx(ref.low, abs=0.02)
    assert ours["ci_high"] == pytest.approx(ref.high, abs=0.02)
    assert ours["ci_low"] > 0 and ours["method"] == "paired_bootstrap"
