"""Per-label and per-cluster views of a run: where each variant gains and loses.

- **Confusion matrix** (task types that answer with a label): rows are the expected label,
  columns the label the answer names after the task type's own `parse`, plus an "unparsed"
  column for answers that name no label (and failed calls).
- **Per-label precision, recall and F1** with 95% intervals: Wilson for precision (TP out of
  the items predicted as the label) and recall (TP out of the items that are the label);
  F1 by the percentile bootstrap (where that collapses to a point, as it does for a label
  with an item or two, the harmonic means of the Wilson bounds of P and R). Resampling
  items with replacement is the same as drawing the confusion matrix's cells from a
  multinomial with the observed shares (P, R and F1 depend on the cells only), which is what
  is drawn here: 2,000 resamples of a 15 x 16 table instead of 2,000 copies of 10,000 items.
  Items are treated as independent.
- **Per-field quality** (task types whose items expect a JSON record): for each field and
  variant, the share of items whose value is right (both empty counts as right; Wilson
  interval), and the field's slot precision, recall and F1 over its (field, value) pairs, as
  the set's slot metrics count them; a failed call or an answer with no JSON record misses.
- **Per-cluster quality**: the primary metric's mean per cluster with its interval (Wilson
  for 0/1 values, t otherwise, clipped to the metric's range), failed calls left out as they
  are from variant means.

The numbers are checked against scikit-learn's `confusion_matrix` and
`precision_recall_fscore_support` and statsmodels' Wilson interval in tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from evalkit.analysis import stats
from evalkit.analysis.summary import RunData
from evalkit.tasks import bounds, task_type

UNPARSED = "(unparsed)"
F1_RESAMPLES = 2000


@dataclass(frozen=True)
class LabelScores:
    label: str
    support: int  # items whose expected label this is
    predicted: int  # items answered with this label
    precision: float
    precision_ci: tuple[float, float]
    recall: float
    recall_ci: tuple[float, float]
    f1: float
    f1_ci: tuple[float, float]


@dataclass(frozen=True)
class Confusion:
    """One variant's confusion matrix: `counts[i][j]` items expected `labels[i]`, answered
    `columns[j]` (the labels, then UNPARSED)."""

    variant: str
    labels: list[str]
    columns: list[str]
    counts: list[list[int]]
    per_label: list[LabelScores]


def predicted_labels(data: RunData, variant: str) -> list[str | None]:
    """Per test item (item order), the label the variant's answer names, None if none."""
    task = data.task_view()
    parse = task_type(data.task_type).parse
    out_of = {p.item_id: p.output for p in data.predictions if p.variant == variant}
    labels = []
    for item in data.item_ids:
        text = out_of.get(item)
        labels.append(None if text is None else parse(text, task))
    return labels


def confusion_counts(expected: list[str], predicted: list[str | None],
                     labels: list[str]) -> np.ndarray:
    """(L, L+1) counts: expected label by answered label, the last column unparsed."""
    index = {label: i for i, label in enumerate(labels)}
    counts = np.zeros((len(labels), len(labels) + 1), dtype=int)
    for e, p in zip(expected, predicted, strict=True):
        if e in index:
            counts[index[e], index.get(p, len(labels)) if p is not None else len(labels)] += 1
    return counts


def _prf(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-label precision, recall, F1 from (..., L, L+1) counts (0 where undefined, as
    scikit-learn's zero_division=0)."""
    n_labels = counts.shape[-2]
    tp = np.diagonal(counts[..., :n_labels], axis1=-2, axis2=-1).astype(float)
    predicted = counts[..., :n_labels].sum(axis=-2)
    support = counts.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(predicted > 0, tp / predicted, 0.0)
        r = np.where(support > 0, tp / support, 0.0)
        f = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    return p, r, f


def label_scores(counts: np.ndarray, labels: list[str], *, seed: int = 0,
                 resamples: int = F1_RESAMPLES) -> list[LabelScores]:
    """Precision, recall and F1 per label with 95% intervals (see the module docstring)."""
    p, r, f = _prf(counts)
    n = int(counts.sum())
    if n:
        rng = np.random.default_rng(seed)
        draws = rng.multinomial(n, counts.ravel() / n, size=resamples).reshape(
            resamples, *counts.shape)
        _, _, boot_f = _prf(draws)
        f_low, f_high = np.percentile(boot_f, [2.5, 97.5], axis=0)
    else:
        f_low = f_high = np.full(len(labels), math.nan)
    out = []
    for i, label in enumerate(labels):
        tp = int(counts[i, i])
        predicted = int(counts[:, i].sum())
        support = int(counts[i].sum())
        p_ci, r_ci = stats.wilson_ci(tp, predicted), stats.wilson_ci(tp, support)
        f_ci = (float(f_low[i]), float(f_high[i]))
        if f_ci[0] == f_ci[1] and support:
            f_ci = _f1_bounds(p_ci, r_ci)
        out.append(LabelScores(label, support, predicted, float(p[i]), p_ci, float(r[i]),
                               r_ci, float(f[i]), f_ci))
    return out


def _f1_bounds(p_ci: tuple[float, float], r_ci: tuple[float, float]) -> tuple[float, float]:
    """F1's interval from the Wilson intervals of precision and recall, where the bootstrap
    collapses to a point: it never draws a cell the run left empty, so a label with one
    item answered wrongly resampled to F1 = 0 every time, "[0.000, 0.000]", a certainty that
    one item cannot give. F1 rises with P and R, so the harmonic means of their lower and
    upper bounds hold it whenever both Wilson intervals hold P and R: at least 90% of the
    time (Bonferroni over two 95% intervals), not a 95% interval by construction, though the
    box it projects is wide. A label never answered has precision anywhere in [0, 1]."""
    p_lo, p_hi = (0.0, 1.0) if math.isnan(p_ci[0]) else p_ci
    r_lo, r_hi = r_ci

    def harmonic(a: float, b: float) -> float:
        return 2 * a * b / (a + b) if a + b > 0 else 0.0

    return harmonic(p_lo, r_lo), harmonic(p_hi, r_hi)


def confusion(data: RunData, variant: str, *, seed: int = 0) -> Confusion | None:
    """The variant's confusion matrix and per-label scores; None for a task type without
    labels (the task type's `uses_labels`, not its name, decides)."""
    if not task_type(data.task_type).uses_labels or not data.labels:
        return None
    expected = [data.expected.get(i) for i in data.item_ids]
    counts = confusion_counts(expected, predicted_labels(data, variant), data.labels)
    return Confusion(variant, list(data.labels), [*data.labels, UNPARSED], counts.tolist(),
                     label_scores(counts, data.labels, seed=seed))


@dataclass(frozen=True)
class FieldScores:
    """One field of one variant: accuracy over every item, and slot P/R/F1 over its pairs."""

    accuracy: float
    accuracy_ci: tuple[float, float]
    precision: float  # 1.0 when nothing was predicted (the slot metrics' rule)
    recall: float
    f1: float
    predicted: int = 0  # non-empty values given for the field: 0 leaves precision undefined


@dataclass(frozen=True)
class FieldQuality:
    field: str
    n_filled: int  # items whose gold record gives the field a value
    by_variant: dict[str, FieldScores]


def field_quality(data: RunData) -> list[FieldQuality]:
    """Per field (task.yaml's order, then any other gold key), each variant's scores; [] when
    the items do not expect JSON records (the data, not the task type's name, decides)."""
    from evalkit.tasks.extraction import is_empty

    expected = [data.expected.get(i) for i in data.item_ids]
    if not expected or not all(isinstance(e, dict) for e in expected):
        return []
    names = list(dict.fromkeys([*data.task_view().fields, *(k for e in expected for k in e)]))
    parsed = {v: predicted_labels(data, v) for v in data.ladder}  # the parse: a record or None
    return [FieldQuality(name, sum(not is_empty(e.get(name)) for e in expected),
                         {v: _field_scores(name, expected, parsed[v]) for v in data.ladder})
            for name in names]


def _field_scores(name: str, expected: list[dict], parsed: list[dict | None]) -> FieldScores:
    from evalkit.tasks.extraction import slot_counts, values_match

    right = tp = fp = fn = 0
    for e, p in zip(expected, parsed, strict=True):
        right += p is not None and values_match(e.get(name), p.get(name))
        a, b, c = slot_counts({name: e.get(name)}, None if p is None else {name: p.get(name)})
        tp, fp, fn = tp + a, fp + b, fn + c
    n = len(expected)
    return FieldScores(right / n, stats.wilson_ci(right, n), tp / (tp + fp) if tp + fp else 1.0,
                       tp / (tp + fn) if tp + fn else 1.0,
                       2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0, tp + fp)


@dataclass(frozen=True)
class ClusterQuality:
    cluster: str
    n_items: int
    means: dict[str, tuple[float, float, float, int]]  # variant -> (mean, low, high, n)


def cluster_quality(data: RunData, metric: str | None = None) -> list[ClusterQuality]:
    """The metric's mean per cluster and variant, largest cluster first; [] without clusters."""
    if not data.clusters:
        return []
    metric = metric or data.primary_metric
    groups = np.array([data.clusters.get(i, "") for i in data.item_ids], dtype=object)
    values = {v: data.values(v, metric) for v in data.ladder}
    out = []
    for cluster in sorted(set(groups.tolist()) - {""}, key=lambda c: (-(groups == c).sum(), c)):
        mask = groups == cluster
        means = {}
        for v in data.ladder:
            x = values[v][mask]
            x = x[~np.isnan(x)]
            if not len(x):
                means[v] = (math.nan, math.nan, math.nan, 0)
            elif stats.is_binary(x):
                means[v] = (float(x.mean()), *stats.wilson_ci(int(x.sum()), len(x)), len(x))
            else:  # a t interval, kept inside the metric's range (token F1 is never < 0)
                e = stats.mean_ci(x)
                lo, hi = bounds(metric) or (-math.inf, math.inf)
                means[v] = (e.mean, max(lo, e.ci_low), min(hi, e.ci_high), e.n)
        out.append(ClusterQuality(str(cluster), int(mask.sum()), means))
    return out
