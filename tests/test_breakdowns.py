"""Breakdowns (issue 13.3) against their references: scikit-learn's confusion matrix and
precision/recall/F1, statsmodels' Wilson interval, and a plain item bootstrap for F1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from statsmodels.stats.proportion import proportion_confint

from evalkit.analysis import breakdowns
from evalkit.analysis.summary import load_run
from evalkit.pipeline.experiment import RunConfig, run_experiment

FIXTURES = Path(__file__).parent / "fixtures"
LABELS = ["a", "b", "c"]


def _sample(seed: int = 1, n: int = 300):
    rng = np.random.default_rng(seed)
    expected = rng.choice(LABELS, size=n).tolist()
    predicted = [e if rng.random() < 0.7 else rng.choice([*LABELS, None]) for e in expected]
    return expected, predicted


def test_confusion_and_per_label_scores_match_sklearn_and_statsmodels():
    expected, predicted = _sample()
    counts = breakdowns.confusion_counts(expected, predicted, LABELS)
    as_text = ["∅" if p is None else p for p in predicted]
    ref = confusion_matrix(expected, as_text, labels=[*LABELS, "∅"])
    assert counts.tolist() == ref[:3].tolist()  # rows: the three labels; last column: unparsed
    scores = breakdowns.label_scores(counts, LABELS)
    p, r, f, support = precision_recall_fscore_support(expected, as_text, labels=LABELS,
                                                       zero_division=0)
    for i, s in enumerate(scores):
        assert s.precision == pytest.approx(p[i]) and s.recall == pytest.approx(r[i])
        assert s.f1 == pytest.approx(f[i]) and s.support == support[i]
        tp = counts[i, i]
        assert s.precision_ci == pytest.approx(proportion_confint(tp, s.predicted,
                                                                  method="wilson"))
        assert s.recall_ci == pytest.approx(proportion_confint(tp, s.support, method="wilson"))
        assert s.f1_ci[0] < s.f1 < s.f1_ci[1]


def test_f1_interval_agrees_with_an_item_bootstrap():
    """Drawing the confusion cells from a multinomial is the item bootstrap: the two 95%
    intervals agree to within Monte Carlo error."""
    expected, predicted = _sample(seed=3, n=200)
    counts = breakdowns.confusion_counts(expected, predicted, LABELS)
    fast = breakdowns.label_scores(counts, LABELS, resamples=4000)
    rng = np.random.default_rng(7)
    e, p = np.array(expected, dtype=object), np.array(["∅" if x is None else x
                                                       for x in predicted], dtype=object)
    boot = []
    for _ in range(2000):
        idx = rng.integers(0, len(e), len(e))
        boot.append(precision_recall_fscore_support(e[idx], p[idx], labels=LABELS,
                                                    zero_division=0)[2])
    low, high = np.percentile(np.array(boot), [2.5, 97.5], axis=0)
    for i, s in enumerate(fast):
        assert s.f1_ci[0] == pytest.approx(low[i], abs=0.02)
        assert s.f1_ci[1] == pytest.approx(high[i], abs=0.02)


def test_a_run_gives_one_matrix_per_variant_summing_to_the_test_set(tmp_path):
    cfg = RunConfig(testset=str(FIXTURES / "tiny-intents"), reports_dir=str(tmp_path / "r"),
                    cache_dir=str(tmp_path / "c"), finetune_dir=str(tmp_path / "ft"),
                    variants=["prompt-only", "few-shot"])
    run_dir = run_experiment(cfg, progress=False).run_dir
    data = load_run(run_dir)
    for v in data.ladder:
        c = breakdowns.confusion(data, v)
        assert sum(map(sum, c.counts)) == len(data.item_ids)
        correct = sum(c.counts[i][i] for i in range(len(c.labels)))
        assert correct == pytest.approx(data.values(v, "accuracy").sum())


def test_qa_has_no_confusion_matrix_but_clusters(tmp_path):
    cfg = RunConfig(testset=str(FIXTURES / "tiny-qa"), reports_dir=str(tmp_path / "r"),
                    cache_dir=str(tmp_path / "c"), finetune_dir=str(tmp_path / "ft"),
                    variants=["prompt-only", "rag"])
    data = load_run(run_experiment(cfg, progress=False).run_dir)
    assert breakdowns.confusion(data, "rag") is None
    assert data.clusters, "tiny-qa gives every item a cluster"
    rows = breakdowns.cluster_quality(data)
    assert sum(r.n_items for r in rows) == len(data.item_ids)
    assert all(0 <= r.means["rag"][1] <= r.means["rag"][0] <= r.means["rag"][2] <= 1
               for r in rows if r.means["rag"][3] > 1)


def test_report_shows_the_answerable_split_from_summary(tmp_path):
    """tiny-qa holds an unanswerable item: the summary splits each rung's primary, and the
    breakdowns table shows the same numbers."""
    from evalkit.report import render_report

    cfg = RunConfig(testset=str(FIXTURES / "tiny-qa"), reports_dir=str(tmp_path / "r"),
                    cache_dir=str(tmp_path / "c"), finetune_dir=str(tmp_path / "ft"),
                    variants=["prompt-only", "rag"])
    run_dir = run_experiment(cfg, progress=False).run_dir
    summary = json.loads((run_dir / "summary.json").read_text())
    split = summary["variants"]["rag"]["answerability"]
    html = render_report(run_dir).read_text()
    assert 'id="answerability-table"' in html
    ans = split["answerable"]
    assert (f"<tr><td>rag</td><td>{ans['primary_mean']:.3f} <span class=\"ci\">"
            f"n={ans['n']}</span></td><td>{ans['abstained']}</td>") in html


def test_a_folder_the_analysis_cannot_read_still_gets_a_report(tmp_path):
    """run.json without the task or the test-set path (older or hand-made, like the
    benchmark's): no breakdowns, but the page is drawn, with the messages the run recorded
    (they need no test set)."""
    from evalkit.report import render_report

    cfg = RunConfig(testset=str(FIXTURES / "tiny-intents"), reports_dir=str(tmp_path / "r"),
                    cache_dir=str(tmp_path / "c"), finetune_dir=str(tmp_path / "ft"),
                    variants=["prompt-only", "few-shot"])
    run_dir = run_experiment(cfg, progress=False).run_dir
    run = json.loads((run_dir / "run.json").read_text())
    run.pop("task")
    run["testset"].pop("path")
    run["config"]["testset"] = None
    (run_dir / "run.json").write_text(json.dumps(run))
    html = render_report(run_dir).read_text()
    assert 'id="breakdowns"' not in html and 'id="items-body"' in html
    assert "messages not shown" not in html and '"s",0]' in html


def test_a_label_no_answer_names_has_no_precision_in_the_report(tmp_path, copy_fixture):
    """Precision is undefined for a label never answered; the table showed '0.000 [–, –]',
    which reads as 'always wrong when it says this label'."""
    from evalkit.report import render_report

    root = copy_fixture("tiny-intents")
    task = (root / "task.yaml").read_text()
    (root / "task.yaml").write_text(task.replace(
        "  bug:", "  zz_warranty: Qqq zzz xxv.\n  bug:"))
    with (root / "test.jsonl").open("a") as fh:
        fh.write(json.dumps({"id": "te-99", "input": "my blender stopped after a week",
                             "expected": "zz_warranty"}) + "\n")
    cfg = RunConfig(testset=str(root), reports_dir=str(tmp_path / "r"),
                    cache_dir=str(tmp_path / "c"), finetune_dir=str(tmp_path / "ft"),
                    variants=["prompt-only"])
    run_dir = run_experiment(cfg, progress=False).run_dir
    scores = {s.label: s for s in breakdowns.confusion(load_run(run_dir), "prompt-only").per_label}
    assert scores["zz_warranty"].predicted == 0
    html = render_report(run_dir).read_text()
    row = html.split('<tr data-label="zz_warranty">', 1)[1].split("</tr>", 1)[0]
    assert '<td>– <span class="ci">never answered</span></td>' in row
    # a small label's F1 interval is not a bootstrap one (label_scores' fallback): say so
    assert "the harmonic means of the P and R Wilson bounds" in html


def test_a_label_with_one_item_gets_an_f1_interval_not_a_point():
    """One 'c' item, answered 'a': the bootstrap never draws a right 'c' and said
    [0.000, 0.000]. Recall 0/1 has Wilson [0, 0.793]; never answered 'c', precision is
    anywhere in [0, 1]: F1 in [0, 2 * 0.793 / 1.793]."""
    counts = np.array([[5, 0, 0, 0], [0, 5, 0, 0], [1, 0, 0, 0]])
    by = {s.label: s for s in breakdowns.label_scores(counts, ["a", "b", "c"])}
    low, high = proportion_confint(0, 1, method="wilson")
    assert by["c"].f1 == 0.0
    assert by["c"].f1_ci == pytest.approx((0.0, 2 * high / (1 + high)))
    assert by["c"].f1_ci[1] > 0.8
    assert by["a"].f1_ci[0] < by["a"].f1 <= by["a"].f1_ci[1]  # bootstrapped as before
