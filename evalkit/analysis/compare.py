"""Two runs side by side: "the new base model is out; does our fine-tune still beat it?"

`compare_runs(run_a, run_b)` pairs variants across two run folders of the same test set (any
variants, models or dates) and computes, for each pair, B minus A on the items both runs
hold, with the statistics a ladder step uses (`stats.paired_difference`: McNemar's exact test
and Newcombe's interval for 0/1 metrics, the paired t otherwise, clustered when the items
are; a failed call counts as a wrong answer, 0, as it does when a step is judged), Holm's
correction across the pairs, and one sentence per pair.

Which pairs:
- without a baseline, every variant name the two runs share (A:v against B:v); when they
  share none, every A variant against every B variant;
- with `baseline_variant` ("X", "A:X" or "B:X"; bare X is looked up in A first), that variant
  against every other variant of both runs.

The test sets must match for the comparison to mean what it says: the page warns when the
test-set hashes differ, and counts items only one run holds and shared items whose input or
expected answer changed; only unchanged shared items are paired.

Cost beside quality: per variant of each run (`VariantTotals`), from its summary.json, the
metric's mean over the items it scored and how many those were (a failed call is not scored
there, and is said apart; a pair counts it as a wrong answer, as a step does), the measured
$/query, the run's total for the variant
(`total_notional_usd`: what its answers cost, a cached one at its notional price) and, where
the analysis priced it, setup, fixed monthly cost and TCO at the run's own economics (volume V
a month over H months: setup + H·(fixed + V·per_query)). A pair's row and sentence quote both
TCOs only when the two runs assumed the same V and H; otherwise the page says the TCOs rest on
different assumptions and leaves the pair's TCO out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.analysis import stats
from evalkit.analysis.summary import RunData, load_run
from evalkit.analysis.verdicts import pts
from evalkit.money import usd
from evalkit.run.runfolder import read_items, read_json
from evalkit.tasks import bounds


@dataclass(frozen=True)
class Side:
    """One run of the comparison, as its label ("A" or "B") and what was read from it."""

    label: str
    run_dir: Path
    data: RunData
    testset_hash: str | None
    items: dict[str, tuple[Any, Any]]  # item id -> (input, expected)
    per_query_usd: dict[str, float | None]
    about: str = ""  # "provider openai, model gpt-4o-mini, 2026-12-02" for the page header
    summary: dict[str, Any] = field(default_factory=dict)
    testset_hash_of: str | None = None  # what the hash covers (None: every file, as before)

    def key(self, variant: str) -> str:
        return f"{self.label}:{variant}"


@dataclass(frozen=True)
class Economics:
    """The volume and horizon a run's TCO figures assume (summary.json `economics`)."""

    queries_per_month: float | None = None
    horizon_months: float | None = None

    @property
    def stated(self) -> bool:
        return self.queries_per_month is not None and self.horizon_months is not None

    @property
    def line(self) -> str:
        if not self.stated:
            return "no economics"
        return f"{self.queries_per_month:,.0f} queries/month over {self.horizon_months:g} months"


@dataclass(frozen=True)
class VariantTotals:
    """One variant of one run: quality and what it costs (see the module docstring)."""

    key: str  # "A:few-shot"
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    items: int | None  # the items the mean is over (scored)
    per_query_usd: float | None
    total_usd: float | None  # the run's answers for this variant, cached ones at notional cost
    setup_usd: float | None
    fixed_monthly_usd: float | None
    tco_usd: float | None
    failed: int | None = None  # items whose call failed: not in the mean


@dataclass(frozen=True)
class PairResult:
    """B minus A for one pair of variants on the unchanged shared items."""

    a: str  # "A:prompt-only"
    b: str
    metric: str
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    p_holm: float
    p_method: str
    ci_method: str
    n: int
    n_failed: int
    discordant: tuple[int, int] | None  # (A right & B wrong, A wrong & B right) for 0/1
    per_query_usd_a: float | None
    per_query_usd_b: float | None
    sentence: str = ""
    tco_usd_a: float | None = None  # set only when both runs assume the same V and H
    tco_usd_b: float | None = None


@dataclass(frozen=True)
class RunComparison:
    run_a: str
    run_b: str
    testset_a: str
    testset_b: str
    metric: str
    n_a: int
    n_b: int
    shared: int  # item ids both runs hold
    changed: int  # shared ids whose input or expected answer differ
    same_testset: bool
    warnings: list[str]
    pairs: list[PairResult] = field(default_factory=list)
    about_a: str = ""
    about_b: str = ""
    variants: list[VariantTotals] = field(default_factory=list)
    economics_a: Economics = Economics()
    economics_b: Economics = Economics()

    @property
    def same_economics(self) -> bool:
        return self.economics_a == self.economics_b and self.economics_a.stated

    @property
    def paired(self) -> int:
        return self.shared - self.changed


def _side(label: str, run_dir: Path | str) -> Side:
    run_dir = Path(run_dir)
    data = load_run(run_dir)
    record = read_json(run_dir / "run.json")
    summary = read_json(run_dir / "summary.json", required=False)
    items = {str(it["id"]): (it.get("input"), it.get("expected"))
             for it in read_items(run_dir / "items.jsonl")}
    cost = {v: ((summary.get("variants") or {}).get(v) or {}).get("cost", {}).get("per_query_usd")
            for v in data.ladder}
    config = record.get("config") or {}
    about = ", ".join(f"{k} {config[k]}" for k in ("provider", "model") if config.get(k))
    recorded = record.get("testset") or {}
    return Side(label, run_dir, data, recorded.get("hash"), items, cost, about, summary,
                recorded.get("hash_of"))


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def economics(side: Side) -> Economics:
    econ = side.summary.get("economics") or {}
    return Economics(_number(econ.get("queries_per_month")), _number(econ.get("horizon_months")))


def totals(side: Side, metric: str) -> list[VariantTotals]:
    """Per variant of the run, in ladder order: its mean and its costs from summary.json."""
    out = []
    for v in side.data.ladder:
        entry = (side.summary.get("variants") or {}).get(v) or {}
        stat = (entry.get("metrics") or {}).get(metric) or {}
        cost = entry.get("cost") or {}
        calls = entry.get("calls") or {}
        items = stat.get("n") if isinstance(stat.get("n"), int) else calls.get("items")
        failed = calls.get("errors")
        out.append(VariantTotals(
            side.key(v), _number(stat.get("mean")), _number(stat.get("ci_low")),
            _number(stat.get("ci_high")), items if isinstance(items, int) else None,
            _number(cost.get("per_query_usd")), _number(cost.get("total_notional_usd")),
            _number(cost.get("setup_usd")), _number(cost.get("fixed_monthly_usd")),
            _number(cost.get("tco_usd")), failed if isinstance(failed, int) else None))
    return out


def scored(t: VariantTotals) -> str:
    """The items a variant's mean is over, and its failed calls beside them (not in it)."""
    if t.items is None:
        return "n/a"
    return f"{t.items} (+{t.failed} failed)" if t.failed else str(t.items)


def _baseline(spec: str, a: Side, b: Side) -> tuple[Side, str]:
    side_name, _, name = spec.rpartition(":")
    sides = [s for s in (a, b) if not side_name or s.label == side_name.upper()]
    for side in sides:
        if name in side.data.ladder:
            return side, name
    have = ", ".join([a.key(v) for v in a.data.ladder] + [b.key(v) for v in b.data.ladder])
    raise ValueError(f"--baseline-variant {spec!r}: no such variant; the runs have {have}")


def _pairs(a: Side, b: Side, baseline: str | None) -> list[tuple[Side, str, Side, str]]:
    if baseline:
        side, name = _baseline(baseline, a, b)
        return [(side, name, s, v) for s in (a, b) for v in s.data.ladder
                if (s.label, v) != (side.label, name)]
    shared = [v for v in a.data.ladder if v in b.data.ladder]
    if shared:
        return [(a, v, b, v) for v in shared]
    return [(a, va, b, vb) for va in a.data.ladder for vb in b.data.ladder]


def _judged(side: Side, variant: str, metric: str, ids: list[str]) -> tuple[np.ndarray, int]:
    """Values on `ids` with a failed call as 0 (a wrong answer), as steps are judged."""
    data = side.data
    by_id = dict(zip(data.item_ids, data.values(variant, metric), strict=True))
    failed = {p.item_id for p in data.predictions if p.variant == variant and p.error_class}
    values = np.array([by_id.get(i, math.nan) for i in ids], dtype=float)
    rows = [k for k, i in enumerate(ids) if i in failed and math.isnan(values[k])]
    values[rows] = 0.0
    return values, len(rows)


def _testset_warnings(a: Side, b: Side, shared: list[str], changed: int) -> list[str]:
    out = []
    # two kinds of hash (one run's from before the hash covered only the set's inputs) say
    # nothing of each other: the items are compared below either way
    if a.testset_hash_of == b.testset_hash_of and a.testset_hash != b.testset_hash:
        out.append(f"the test sets differ (hash {str(a.testset_hash)[:12]} in A, "
                   f"{str(b.testset_hash)[:12]} in B)")
    only_a, only_b = len(a.data.item_ids) - len(shared), len(b.data.item_ids) - len(shared)
    if only_a or only_b:
        out.append(f"{only_a} items only in A, {only_b} only in B; {len(shared)} shared")
    if changed:
        out.append(f"{changed} shared items changed their input or expected answer and are "
                   "left out")
    if a.data.testset != b.data.testset:
        out.append(f"the runs name different test sets ({a.data.testset!r}, "
                   f"{b.data.testset!r})")
    return out


def sentence(r: PairResult) -> str:
    """One line a reader can act on: the difference, its interval, its test and what it says."""
    if r.n == 0:
        return f"{r.a} → {r.b}: no shared item both scored; nothing to compare."
    if r.ci_low > 0:
        reading = f"{r.b} is better"
    elif r.ci_high < 0:
        reading = f"{r.b} is worse"
    else:
        reading = "no difference shown"
    flips = ""
    if r.discordant is not None:
        flips = (f"; {r.discordant[0]} items only {r.a} got right, "
                 f"{r.discordant[1]} only {r.b}")
    cost = ""
    if r.per_query_usd_a is not None and r.per_query_usd_b is not None:
        cost = f"; per query {usd(r.per_query_usd_a)} → {usd(r.per_query_usd_b)}"
    if r.tco_usd_a is not None and r.tco_usd_b is not None:
        cost += f", TCO {usd(r.tco_usd_a)} → {usd(r.tco_usd_b)}"
    return (f"{r.a} → {r.b}: {pts(r.delta)} pts {r.metric} [{pts(r.ci_low)}, "
            f"{pts(r.ci_high)}] on {r.n} shared items, p = {r.p_value:.3g} "
            f"(Holm {r.p_holm:.3g}); {reading}{flips}{cost}.")


def compare_runs(run_a: Path | str, run_b: Path | str, *, baseline_variant: str | None = None,
                 metric: str | None = None) -> RunComparison:
    """Pair the two runs' variants on their shared, unchanged items (see the module doc)."""
    a, b = _side("A", run_a), _side("B", run_b)
    metric = metric or a.data.primary_metric
    in_b = set(b.data.item_ids)
    shared = [i for i in a.data.item_ids if i in in_b]
    changed = {i for i in shared if a.items and b.items and a.items.get(i) != b.items.get(i)}
    ids = [i for i in shared if i not in changed]
    clusters = a.data.cluster_list(ids)
    rng = bounds(metric)
    results = []
    for sa, va, sb, vb in _pairs(a, b, baseline_variant):
        (xa, fa), (xb, fb) = _judged(sa, va, metric, ids), _judged(sb, vb, metric, ids)
        d = stats.paired_difference(xa, xb, clusters=clusters,
                                    bounded=rng is not None and rng[1] - rng[0] <= 1.0)
        results.append(PairResult(sa.key(va), sb.key(vb), metric, d.delta, d.ci_low,
                                  d.ci_high, d.p_value, math.nan, d.p_method, d.ci_method,
                                  d.n, fa + fb, d.discordant, sa.per_query_usd.get(va),
                                  sb.per_query_usd.get(vb)))
    holm = stats.holm([r.p_value for r in results]) if results else []
    econ_a, econ_b = economics(a), economics(b)
    variants = totals(a, metric) + totals(b, metric)
    tco = ({t.key: t.tco_usd for t in variants}
           if econ_a == econ_b and econ_a.stated else {})
    pairs = []
    for r, p in zip(results, holm, strict=True):
        r = PairResult(**{**r.__dict__, "p_holm": p, "tco_usd_a": tco.get(r.a),
                          "tco_usd_b": tco.get(r.b)})
        pairs.append(PairResult(**{**r.__dict__, "sentence": sentence(r)}))
    warnings = _testset_warnings(a, b, shared, len(changed))
    return RunComparison(a.data.run_id, b.data.run_id, a.data.testset, b.data.testset, metric,
                         len(a.data.item_ids), len(b.data.item_ids), len(shared), len(changed),
                         not warnings, warnings, pairs, a.about, b.about, variants, econ_a,
                         econ_b)


def economics_line(c: RunComparison) -> str:
    """What the TCO figures assume, and whether the two runs' figures can be set side by side."""
    if c.same_economics:
        return f"TCO at {c.economics_a.line} (both runs)."
    if not c.economics_a.stated and not c.economics_b.stated:
        return "Neither run's summary.json states its economics, so no TCO is compared."
    return (f"TCO at A: {c.economics_a.line}; B: {c.economics_b.line}: different "
            "assumptions, so no pair compares TCOs.")


def tco_pair(r: PairResult) -> str:
    if r.tco_usd_a is None or r.tco_usd_b is None:
        return "n/a"
    return f"{usd(r.tco_usd_a)} → {usd(r.tco_usd_b)}"


def fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def to_markdown(c: RunComparison) -> str:
    """The comparison as a Markdown summary (a PR comment, a ticket, $GITHUB_STEP_SUMMARY)."""
    lines = [f"# evalkit compare: {c.run_a} (A) vs {c.run_b} (B)", "",
             f"Test set: {c.testset_a}" + ("" if c.testset_a == c.testset_b
                                           else f" vs {c.testset_b}")
             + f"; {c.paired} items paired; metric {c.metric}.",
             f"A: {c.about_a or 'n/a'}. B: {c.about_b or 'n/a'}.", ""]
    for w in c.warnings:
        lines.append(f"> **Warning:** {w}.")
    if c.warnings:
        lines.append("")
    lines += ["| A | B | Δ (pts) | 95% CI | p | p (Holm) | items | $/query A → B | TCO A → B |",
              "|---|---|---:|---|---:|---:|---:|---|---|"]
    for r in c.pairs:
        lines.append(f"| {r.a} | {r.b} | {pts(r.delta)} | [{pts(r.ci_low)}, {pts(r.ci_high)}] "
                     f"| {r.p_value:.3g} | {r.p_holm:.3g} | {r.n} "
                     f"| {usd(r.per_query_usd_a)} → {usd(r.per_query_usd_b)} | {tco_pair(r)} |")
    lines += ["", *[f"- {r.sentence}" for r in c.pairs], "", "## Variants and their cost", "",
              economics_line(c), "",
              f"| variant | {c.metric} | 95% CI | items scored | $/query | run total | setup "
              "| fixed/month | TCO |",
              "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for t in c.variants:
        lines.append(f"| {t.key} | {fmt(t.mean)} | [{fmt(t.ci_low)}, {fmt(t.ci_high)}] "
                     f"| {scored(t)} | {usd(t.per_query_usd)} "
                     f"| {usd(t.total_usd)} | {usd(t.setup_usd)} | {usd(t.fixed_monthly_usd)} "
                     f"| {usd(t.tco_usd)} |")
    lines.append("")
    return "\n".join(lines)
