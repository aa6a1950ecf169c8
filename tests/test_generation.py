"""The `generation` task type: ROUGE against rouge-score itself, the house-style metric, the
local provider's rungs, the learned frame, and the bundled policy-longform set."""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

import pytest
from rouge_score import rouge_scorer

from evalkit import tasks
from evalkit.data.testset import TestsetError, load_testset
from evalkit.pipeline.experiment import RunConfig, run_experiment
from evalkit.providers.local_generation import answer_long, supporting_sentences
from evalkit.strategies.house_style import HouseStyleModel, Slot, body, fill, learn_frame
from evalkit.strategies.request import Example, Request
from evalkit.strategies.retrieval import Passage
from evalkit.tasks.generation import groundedness, lcs_length, rouge, style_match, tokens

ROOT = Path(__file__).parent.parent / "testsets" / "policy-longform"

PAIRS = [
    ("Short answer: Yes, taxis after 21:00 are covered up to €40.",
     "Short answer: yes. Taxis home after 21:00 are reimbursed up to €40."),
    ("The cat sat on the mat.", "A dog lay on the rug, not the mat."),
    ("Running runners ran; they run daily.", "The runner runs every day."),
    ("nothing in common", "entirely different words here"),
]


@pytest.mark.parametrize("prediction,reference", PAIRS)
def test_rouge_equals_rouge_score_called_directly(prediction, reference):
    direct = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    want = direct.score(reference, prediction)
    assert rouge(prediction, reference, "rouge1") == want["rouge1"].fmeasure
    assert rouge(prediction, reference, "rouge_l") == want["rougeL"].fmeasure


def test_several_references_take_the_best_one():
    direct = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    prediction = "Laptops are replaced every three years."
    refs = ["Equipment is company property.", "Laptops get replaced every 3 years or sooner.",
            "Ask the IT desk."]
    each = [direct.score(r, prediction)["rougeL"].fmeasure for r in refs]
    assert rouge(prediction, refs, "rouge_l") == max(each)
    assert max(each) > each[0] and max(each) > each[2]


def test_rouge_metric_reads_the_item_references():
    spec = tasks.metric("rouge_l")
    assert spec.range == (0.0, 1.0) and spec.higher_is_better and not spec.binary
    assert "rouge_l" == tasks.task_type("generation").default_primary


def test_style_match_counts_the_patterns_found():
    patterns = [r"^Short answer: \S", r"^Why: ", r"^— Team$"]
    assert style_match("Short answer: yes\nWhy: rule\n— Team", patterns) == 1.0
    assert style_match("Short answer: yes\nsee the rule", patterns) == pytest.approx(1 / 3)
    assert style_match("yes", patterns) == 0.0


def _write_set(root: Path, *, task_extra: str = "", expected='"Short answer: yes."') -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "task.yaml").write_text("name: gen\ntype: generation\ninstructions: Answer.\n"
                                    + task_extra)
    (root / "test.jsonl").write_text(f'{{"id": "a", "input": "q?", "expected": {expected}}}\n')
    return root


def test_bad_references_and_style_are_refused_at_load_with_file_line_and_field(tmp_path):
    with pytest.raises(TestsetError, match=r"test.jsonl:1: field 'expected'.*empty list"):
        load_testset(_write_set(tmp_path / "a", expected="[]"))
    with pytest.raises(TestsetError, match=r"test.jsonl:1: field 'expected'.*non-empty string"):
        load_testset(_write_set(tmp_path / "b", expected='["ok", 3]'))
    with pytest.raises(TestsetError, match=r"task.yaml:5: field 'style':.*not a regular"):
        load_testset(_write_set(tmp_path / "c", task_extra="style:\n  - '(unclosed'\n"))
    # `style` is a generation key: another type refuses it as unknown
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "task.yaml").write_text("name: d\ntype: qa\ninstructions: x\n"
                                              "style: ['^a']\n")
    with pytest.raises(TestsetError, match=r"unknown key 'style'"):
        load_testset(tmp_path / "d")
    ok = load_testset(_write_set(tmp_path / "e", task_extra="style: ['^Short answer:']\n"))
    assert ok.task.options == {"style": ["^Short answer:"]}


ANSWERS = ["Short answer: Yes, €30 is fine.\nWhy: Expenses Policy, section 2.1: Meals are "
           "capped at €45.\nNext step: Claim it in Tally.\n— The Team",
           "Short answer: No.\nWhy: Travel Policy, section 1.2: Trains are standard class.\n"
           "Next step: Book in Wayfare.\n— The Team",
           "A reply written some other way.\n— The Team"]


def test_learn_frame_finds_the_shared_prefixes_and_sign_off():
    frame = learn_frame(ANSWERS)
    assert frame == (Slot("Short answer:"), Slot("Why:"), Slot("Next step:"),
                     Slot("— The Team", fixed=True))
    assert body(ANSWERS[1], frame) == ["No.", "Travel Policy, section 1.2: Trains are "
                                       "standard class.", "Book in Wayfare."]
    assert fill(frame, ["a", "b"]) == "Short answer: a\nWhy: b\n— The Team"
    assert fill(frame, ["a", "b", "c", "d"]).splitlines()[2] == "Next step: c d"
    assert learn_frame(["one way", "another: way of it", "third"]) == ()


PASSAGE = Passage("expenses", 0, "## Section 2.4\n\nTaxis home are reimbursed up to €40 when "
                  "you finish work after 21:00. Claim the fare in Tally under 'Local travel'.\n\n"
                  "Meals away from the office are reimbursed up to €45 per day. Keep receipts.")


def test_each_local_rung_answers_only_from_what_the_request_carries():
    question = "I left at 22:30 and my taxi home cost €35. Can I claim it?"
    base = Request(task_type="generation", instructions="Answer.", input=question)
    holding = answer_long(base)
    assert "€40" not in holding and question in holding  # no facts without evidence
    rag = answer_long(Request(**{**base.__dict__, "passages": (PASSAGE,)}))
    assert rag == ("Taxis home are reimbursed up to €40 when you finish work after 21:00. "
                   "Claim the fare in Tally under 'Local travel'.")
    examples = (Example("Can I expense a late taxi home?", ANSWERS[0]),
                Example("Can I book first class on a train?", ANSWERS[1]))
    assert answer_long(Request(**{**base.__dict__, "examples": examples})) == ANSWERS[0]
    ft = HouseStyleModel([e.input for e in examples], [e.output for e in examples])
    assert answer_long(base, ft) == ANSWERS[0]  # the nearest train answer
    both = answer_long(Request(**{**base.__dict__, "passages": (PASSAGE,)}), ft)
    assert both.splitlines() == ["Short answer: Yes, €30 is fine.",
                                 "Why: Taxis home are reimbursed up to €40 when you finish "
                                 "work after 21:00.",
                                 "Next step: Claim the fare in Tally under 'Local travel'.",
                                 "— The Team"]


def test_supporting_sentences_match_words_not_the_askers_numbers():
    passages = ["You can work abroad for up to 30 days a year.",
                "Birth parents get 26 weeks of parental leave on full pay."]
    got = supporting_sentences("I'm expecting a baby: is parental leave 30 weeks?", passages)
    assert got == ["Birth parents get 26 weeks of parental leave on full pay."]
    assert supporting_sentences("anything", []) == []


def test_bundled_policy_longform_is_what_its_generator_writes(tmp_path):
    runpy.run_path(str(ROOT / "generate.py"))["main"](tmp_path)
    for name in ("test.jsonl", "train.jsonl"):
        assert (tmp_path / name).read_text() == (ROOT / name).read_text(), name
    assert sorted(p.name for p in (tmp_path / "docs").iterdir()) == \
        sorted(p.name for p in (ROOT / "docs").iterdir())
    for doc in (tmp_path / "docs").iterdir():
        assert doc.read_text() == (ROOT / "docs" / doc.name).read_text(), doc.name


def test_bundled_policy_longform_shape():
    ts = load_testset(ROOT)
    assert ts.task.type == "generation" and ts.task.primary_metric == "rouge_l"
    assert len(ts.test) >= 200 and len(ts.train) >= 400
    rows = [json.loads(line) for line in (ROOT / "test.jsonl").read_text().splitlines()]
    unseen = sum(not r["metadata"]["seen_in_train"] for r in rows)
    assert 0.5 <= unseen / len(rows) <= 0.8  # most test rules are not in train (data card)
    for it in (*ts.test, *ts.train):
        assert style_match(it.expected, ts.task.options["style"]) == 1.0, it.id
    text = {d.id: d.text for d in ts.docs}
    for it in ts.test:  # the rule the reference cites is worded as in its document
        why = it.expected.splitlines()[1].split(": ", 2)[2]
        assert why in text[it.doc_ids[0]], it.id


def test_a_small_generation_ladder_runs_locally(tmp_path):
    root = tmp_path / "gen"
    root.mkdir()
    (root / "docs").mkdir()
    (root / "docs" / "travel.md").write_text(PASSAGE.text)
    (root / "task.yaml").write_text(
        "name: gen\ntype: generation\ninstructions: Answer.\nmetrics:\n  primary: rouge_l\n"
        "  secondary: [rouge1, groundedness, style_match]\nstyle: ['^Short answer: ', '^Why: ']\n"
        "corpus:\n  chunk_size: 60\n  chunk_overlap: 10\n  k: 1\nfew_shot:\n  k: 1\n")
    refs = {"taxi": ANSWERS[0].replace("Meals are capped at €45", "Taxis home are reimbursed "
                                       "up to €40 when you finish work after 21:00"),
            "meal": ANSWERS[0]}
    qs = {"taxi": ["My taxi home at 23:00 cost €20. Covered?", "Late cab home, can I claim it?",
                   "Is a taxi after 21:00 reimbursed?"],
          "meal": ["Lunch away from the office cost €30. Covered?", "Can I expense a meal?",
                   "Are meals at a client site paid back?"]}
    lines = {"test": [], "train": []}
    for key, questions in qs.items():
        for n, q in enumerate(questions):
            split = "test" if n == 0 else "train"
            lines[split].append(json.dumps({"id": f"{key}{n}", "input": q,
                                            "expected": refs[key], "doc_ids": ["travel"]}))
    for split, rows in lines.items():
        (root / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    result = run_experiment(RunConfig(testset=str(root), reports_dir=str(tmp_path / "r"),
                                      cache_dir=str(tmp_path / "c"),
                                      finetune_dir=str(tmp_path / "ft")), progress=False)
    v = result.summary["variants"]
    assert set(v) == {"prompt-only", "few-shot", "rag", "fine-tuned", "rag+fine-tuned"}
    for name, s in v.items():
        assert 0.0 <= s["metrics"]["rouge_l"]["mean"] <= 1.0, name
    assert v["fine-tuned"]["metrics"]["style_match"]["mean"] == 1.0  # form from training
    assert v["rag"]["metrics"]["style_match"]["mean"] == 0.0        # passages have no form
    assert v["rag"]["metrics"]["rouge_l"]["mean"] > v["prompt-only"]["metrics"]["rouge_l"]["mean"]
    assert not math.isnan(v["rag+fine-tuned"]["metrics"]["rouge1"]["mean"])
    # groundedness: scored on the retrieval rungs, said to be not applicable on the others
    assert v["rag"]["metrics"]["groundedness"]["mean"] == 1.0  # it only quotes the passages
    assert 0.0 < v["rag+fine-tuned"]["metrics"]["groundedness"]["mean"] < 1.0  # + a recalled lead
    for name in ("prompt-only", "few-shot", "fine-tuned"):
        assert "groundedness" not in v[name]["metrics"], name
        assert "retrieved no passages" in v[name]["not_applicable"]["groundedness"], name
    scores = (result.run_dir / "scores.csv").read_text()
    assert scores.count(",groundedness,") == 2 * len(lines["test"])
    journal = [json.loads(x) for x in (result.run_dir / "predictions.jsonl").open()]
    assert {tuple(map(tuple, p["passages"])) for p in journal if p["variant"] == "rag"} == \
        {(("travel", 0),)}  # the passage shown, as (doc id, chunk)
    assert all(p["passages"] == [] for p in journal if p["variant"] == "few-shot")


def test_groundedness_by_hand():
    """Two sentences: 'Taxis are covered up to 40 euros.' (7 tokens) is inside the passage in
    order, 'Ask your manager first.' (4 tokens) shares only 'first' with it: 7 of 11 tokens."""
    passage = "Taxis home are covered up to 40 euros after 21:00. File them first."
    answer = "Taxis are covered up to 40 euros. Ask your manager first."
    assert groundedness(answer, [passage]) == pytest.approx(7 / 11)
    assert groundedness(answer, ["unrelated text", passage]) == pytest.approx(7 / 11)
    assert groundedness(answer, []) == 0.0
    assert groundedness("Taxis are covered.", ["Taxis are covered."]) == 1.0


@pytest.mark.parametrize("prediction,reference", PAIRS)
def test_lcs_precision_equals_rouge_score_rouge_l_precision(prediction, reference):
    direct = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    want = direct.score(reference, prediction)["rougeL"].precision
    p, r = tokens(prediction), tokens(reference)
    assert (lcs_length(p, r) / len(p) if p else 0.0) == pytest.approx(want)
