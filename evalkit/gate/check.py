"""The regression gate: does a run hold the line its baseline drew? (DESIGN §9)

Per test set, per variant in the baseline:
- each quality metric (every `metrics.<m>` of the summary) fails when its mean gets worse by
  more than `max_drop` (per-metric overrides in `metrics:`). "Worse" follows the metric
  registry's direction (evalkit.tasks: a drop for higher-is-better metrics, a rise for the
  others); a metric no module registers counts as higher-is-better.
  Where both sides have per-item scores, a paired test on the items both answered is reported:
  McNemar's exact test for 0/1 scores, a paired t-test otherwise. With `require_significance`
  a drop beyond tolerance fails only if that test is significant at `alpha` (a drop with no
  per-item data to test still fails); `max_drop: 0` plus `require_significance` therefore
  means "fail on any significant drop".
- per-query cost and p95 latency fail when they rise by more than the relative tolerance *and*
  by more than an absolute slack (so sub-millisecond noise on a cheap model cannot fail CI);
- the error rate (errors / items) fails when it rises by more than `max_error_rate_increase`;
- a run that answered fewer items than the baseline fails (an incomplete or shrunken run);
- a variant or metric in the baseline but missing from the run fails; extra ones are noted.

Tolerances come from the experiment config's `gate:` section (evalkit.config), with the
defaults below; CLI flags override single values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from evalkit.analysis import stats
from evalkit.config import ConfigError
from evalkit.gate.baseline import (
    GateError,
    MetricStats,
    Snapshot,
    VariantStats,
    load_baseline,
    snapshot_from_run,
)
from evalkit.money import usd
from evalkit.tasks import higher_is_better

Status = Literal["pass", "fail", "warn"]


@dataclass(frozen=True)
class Tolerances:
    """The `gate:` section. Every field is optional in the YAML; these are the defaults."""

    max_drop: float = 0.02                 # absolute drop of a metric mean (2 points) that fails
    metrics: dict[str, float] = field(default_factory=dict)  # per-metric max_drop overrides
    require_significance: bool = False     # a drop beyond max_drop must also be significant
    alpha: float = 0.05                    # two-sided level of the paired test
    max_cost_increase: float = 0.10        # relative rise of per-query cost (10%) ...
    cost_slack_usd: float = 0.0            # ... and by more than this, per query
    max_latency_increase: float = 0.25     # relative rise of p95 latency (25%) ...
    latency_slack_s: float = 0.05          # ... that is also more than 50 ms
    max_error_rate_increase: float = 0.0   # absolute rise of errors / items; any rise fails

    @classmethod
    def from_section(cls, section: Any, path: Path | str | None) -> Tolerances:
        """Validate a `gate:` mapping; unknown keys are errors (a typo must not loosen CI)."""
        if section is None:
            return cls()
        if not isinstance(section, dict):
            raise ConfigError(path, "must be a mapping", field="gate")
        known = {f.name for f in fields(cls)}
        for key in section:
            if key not in known:
                raise ConfigError(path, f"unknown key; known: {', '.join(sorted(known))}",
                                  field=f"gate.{key}")
        values: dict[str, Any] = {}
        for key, value in section.items():
            where = f"gate.{key}"
            if key == "require_significance":
                if not isinstance(value, bool):
                    raise ConfigError(path, "must be true or false", field=where)
            elif key == "metrics":
                if not isinstance(value, dict):
                    raise ConfigError(path, "must map metric name -> max drop", field=where)
                value = {str(m): _nonneg(v, path, f"{where}.{m}") for m, v in value.items()}
            else:
                value = _nonneg(value, path, where)
                if key == "alpha" and not 0 < value < 1:
                    raise ConfigError(path, "must be between 0 and 1", field=where)
            values[key] = value
        return cls(**values)

    def override(self, **flags: Any) -> Tolerances:
        """CLI flags win; None means "not given". `metrics` entries merge into the config's."""
        given = {k: v for k, v in flags.items() if v is not None}
        if "metrics" in given:
            given["metrics"] = {**self.metrics, **given["metrics"]}
        return replace(self, **given)

    def drop_for(self, metric: str) -> float:
        return self.metrics.get(metric, self.max_drop)


@dataclass(frozen=True)
class PairedTest:
    test: str            # "McNemar exact" or "paired t"
    n: int               # items both runs scored
    mean_diff: float     # run - baseline, over those items
    p_value: float
    lost: int = 0        # McNemar: right in the baseline, wrong in the run
    gained: int = 0      # McNemar: wrong in the baseline, right in the run

    def describe(self) -> str:
        extra = f", {self.lost} lost / {self.gained} gained" if self.lost + self.gained else ""
        return f"{self.test} p={self.p_value:.3g}, {self.n} paired items{extra}"


@dataclass(frozen=True)
class Check:
    """One gated comparison and its outcome, with a sentence that quotes the numbers."""

    testset: str
    variant: str
    check: str           # a metric name, or "cost/query", "p95 latency", "error rate", ...
    kind: str            # metric | cost | latency | errors | items | variant | testset
    status: Status
    reason: str
    baseline: float | None = None
    run: float | None = None
    limit: float | None = None
    paired: PairedTest | None = None


@dataclass
class GateReport:
    checks: list[Check]
    runs: dict[str, Path]                    # test set -> run folder
    tolerances: dict[str, Tolerances]        # test set -> what it was gated with

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]


# ---- the paired test ------------------------------------------------------------------------

def paired_test(base: dict[str, float], run: dict[str, float],
                clusters: dict[str, str | None] | None = None) -> PairedTest | None:
    """Run minus baseline on the items both scored, via evalkit.analysis.stats (the verdicts' code):
    McNemar exact for 0/1 scores, a paired t test otherwise or when items are clustered.
    None when fewer than 2 items pair up (nothing to test)."""
    ids = sorted(i for i in base if i in run)
    a = [base[i] for i in ids]
    b = [run[i] for i in ids]
    labels = None
    if clusters and any(clusters.get(i) is not None for i in ids):
        labels = stats.cluster_labels([clusters.get(i) for i in ids], ids)  # None: own cluster
    d = stats.paired_difference(a, b, clusters=labels)
    if d.n < 2 or math.isnan(d.p_value):
        return None
    lost, gained = d.discordant or (0, 0)
    test = {"mcnemar_exact": "McNemar exact", "paired_t": "paired t",
            "paired_t_clustered": "clustered paired t"}.get(d.p_method, d.p_method)
    return PairedTest(test, d.n, d.delta, d.p_value, lost, gained)


# ---- comparing one run with its baseline ----------------------------------------------------

@dataclass(frozen=True)
class TestsetChange:
    """How a run's test items differ from the baseline's (by id and by content hash)."""

    __test__ = False

    added: int
    removed: int
    changed: set[str]  # ids present in both whose content differs
    counted_changes: bool  # False for an old baseline that kept no item hashes
    # the two hashes cover different files (one recorded before the hash covered only the
    # set's inputs): only the items can be compared; `old_side` says whose hash is the old one
    hash_kinds_differ: bool = False
    old_side: str = "baseline"

    @property
    def items_same(self) -> bool:
        return (self.counted_changes and self.added == self.removed == 0
                and not self.changed)

    def sentence(self) -> str:
        parts = [f"{self.added} item(s) added", f"{self.removed} removed"]
        parts.append(f"{len(self.changed)} changed" if self.counted_changes
                     else "changes inside items not counted (the baseline keeps no item "
                          "hashes; re-record it)")
        if self.items_same and self.hash_kinds_differ:
            return (f"the test items are the same, but the {self.old_side}'s test-set hash "
                    f"is of every file in the folder (as evalkit recorded it before), so "
                    f"task.yaml, train.jsonl and docs/ cannot be compared")
        if self.items_same:
            return ("the test items are the same but other files of the test set changed "
                    "(train.jsonl, docs/ or task.yaml)")
        return ", ".join(parts)


def testset_change(run: Snapshot, base: Snapshot) -> TestsetChange | None:
    """None when the run saw the baseline's test set (same hash), else what differs."""
    kinds_differ = base.testset_hash_of != run.testset_hash_of
    if not (base.testset_hash and run.testset_hash) or (
            base.testset_hash == run.testset_hash and not kinds_differ):
        return None
    run_ids, base_ids = run.item_ids(), base.item_ids()
    counted = bool(run.item_hashes and base.item_hashes)
    changed = ({i for i in run_ids & base_ids if run.item_hashes[i] != base.item_hashes[i]}
               if counted else set())
    return TestsetChange(len(run_ids - base_ids), len(base_ids - run_ids), changed, counted,
                         kinds_differ, "baseline" if base.testset_hash_of is None else "run")


def subset_check(run: Snapshot, base: Snapshot, *, allow: bool) -> Check | None:
    """A failing check when run and baseline cover different parts of the test set: a
    `--limit 50` run's accuracy is not the full set's, so comparing them would gate noise.
    `allow` (--allow-item-subset) makes it a warning; the paired tests then use the items
    both hold."""
    def part(s: Snapshot) -> str | None:
        return None if not s.subset else f"{s.subset.get('n')} of {s.subset.get('of')} " \
            f"items ({s.subset.get('flag')})"
    if part(run) == part(base):
        return None
    hint = ("; gated on the items both hold" if allow
            else "; run the full set, or pass --allow-item-subset to gate anyway")
    return Check(run.testset, "*", "test set", "testset", "warn" if allow else "fail",
                 f"the run covers {part(run) or 'the full test set'} and the baseline "
                 f"{part(base) or 'the full test set'}{hint}")


def compare(run: Snapshot, base: Snapshot, tol: Tolerances, *,
            allow_testset_change: bool = False, allow_item_subset: bool = False
            ) -> list[Check]:
    """Every check for one test set, in baseline variant order.

    A run on a different test set than the baseline's fails: a swapped or edited set can
    move any metric (182 easy items in place of hard ones took accuracy from 0.69 to 1.00)
    and the gate would be comparing different questions. `allow_testset_change` turns that
    into a warning; the paired tests then use only the items both runs hold unchanged.
    """
    ts = run.testset
    checks: list[Check] = []
    if (partial := subset_check(run, base, allow=allow_item_subset)) is not None:
        checks.append(partial)
        common = run.item_ids() & base.item_ids()
        dropped, run, base = _unrestricted(ts, run, base, (_on_items(run, common),
                                                           _on_items(base, common)))
        checks += dropped
    change = testset_change(run, base)
    if change is not None:
        # hashes of two kinds over the same items: nothing seen to differ, so a warning
        status = ("warn" if allow_testset_change or (change.hash_kinds_differ
                                                     and change.items_same) else "fail")
        hint = ("; paired tests use the unchanged items both runs hold" if allow_testset_change
                else "; re-record the baseline, or pass --allow-testset-change to gate anyway")
        if change.hash_kinds_differ and change.items_same:
            hint = ("; re-record the baseline (evalkit baseline update) to compare them again"
                    if change.old_side == "baseline" else
                    "; run the set again with this evalkit to compare them again")
        checks.append(Check(ts, "*", "test set", "testset", status,
                            f"the test set differs from the baseline's: {change.sentence()}"
                            f"{hint}"))
        if change.changed:
            base = _without_items(base, change.changed)
    for name, b in base.variants.items():
        r = run.variants.get(name)
        if r is None:
            checks.append(Check(ts, name, "variant", "variant", "fail",
                                f"variant {name!r} is in the baseline but missing from the run"))
            continue
        checks += _metric_checks(ts, name, b, r, tol, run.clusters)
        checks += _operational_checks(ts, name, b, r, tol)
    for name in run.variants:
        if name not in base.variants:
            checks.append(Check(ts, name, "variant", "variant", "warn",
                                f"variant {name!r} is not in the baseline, so it is not gated"))
    return checks


def _without_items(snap: Snapshot, ids: set[str]) -> Snapshot:
    """The snapshot with these items' per-item scores dropped (they are not comparable)."""
    variants = {name: replace(v, scores={m: {i: x for i, x in items.items() if i not in ids}
                                         for m, items in v.scores.items()})
                for name, v in snap.variants.items()}
    return replace(snap, variants=variants)


def _on_items(snap: Snapshot, ids: set[str]) -> Snapshot:
    """The snapshot's metric means and item counts recomputed over `ids` from its per-item
    scores, so a subset run meets the same items' baseline values, not the full set's mean.
    A metric without per-item scores (macro-F1 is one figure per run) cannot be recomputed
    and is dropped; `_unrestricted` says so."""
    if snap.item_ids() <= ids:
        return snap  # already on those items: keep its own figures (and intervals)

    def metric(scores: dict[str, float]) -> MetricStats:
        held = [x for i, x in scores.items() if i in ids]
        ok = [x for x in held if not math.isnan(x)]
        return MetricStats(sum(ok) / len(ok) if ok else math.nan, len(ok), len(held) - len(ok))

    def variant(v: VariantStats) -> VariantStats:
        answered = len({i for m in v.scores.values() for i in m if i in ids})
        return replace(v, metrics={m: metric(v.scores[m]) for m in v.metrics if m in v.scores},
                       items=answered, errors=min(v.errors, answered))
    return replace(snap, variants={n: variant(v) for n, v in snap.variants.items()})


def _unrestricted(ts: str, run: Snapshot, base: Snapshot, kept: tuple[Snapshot, Snapshot]
                  ) -> tuple[list[Check], Snapshot, Snapshot]:
    """Warnings for metrics `_on_items` had to drop, and both snapshots without them."""
    checks = []
    r, b = kept
    for name, bv in base.variants.items():
        rv = run.variants.get(name)
        if rv is None or name not in r.variants or name not in b.variants:
            continue
        for m in sorted((set(bv.metrics) & set(rv.metrics))
                        - (set(b.variants[name].metrics) & set(r.variants[name].metrics))):
            checks.append(Check(ts, name, m, "metric", "warn",
                                f"{m} has no per-item scores, so it cannot be compared on the "
                                f"items both hold; not gated"))
    def both(s: Snapshot, other: Snapshot) -> Snapshot:
        return replace(s, variants={n: replace(v, metrics={
            m: st for m, st in v.metrics.items()
            if n not in other.variants or m in other.variants[n].metrics})
            for n, v in s.variants.items()})
    return checks, both(r, b), both(b, r)


def _metric_checks(ts: str, variant: str, b: VariantStats, r: VariantStats,
                   tol: Tolerances, clusters: dict[str, str | None]) -> list[Check]:
    out = []
    for m, bst in b.metrics.items():
        limit = tol.drop_for(m)
        rst = r.metrics.get(m)
        if rst is None:
            out.append(Check(ts, variant, m, "metric", "fail",
                             f"{m} is in the baseline but missing from the run", bst.mean,
                             None, limit))
            continue
        paired = (paired_test(b.scores[m], r.scores[m], clusters)
                  if m in b.scores and m in r.scores else None)
        status, reason = _judge_metric(m, bst.mean, rst.mean, limit, paired, tol)
        if "ci_low" in rst.extra and "ci_high" in rst.extra:
            reason += f" (run 95% CI [{rst.extra['ci_low']:.4f}, {rst.extra['ci_high']:.4f}])"
        out.append(Check(ts, variant, m, "metric", status, reason, bst.mean, rst.mean, limit,
                         paired))
    for m in r.metrics:
        if m not in b.metrics:
            out.append(Check(ts, variant, m, "metric", "warn",
                             f"{m} is not in the baseline, so it is not gated", None,
                             r.metrics[m].mean))
    return out


def _judge_metric(m: str, base: float, run: float, limit: float, paired: PairedTest | None,
                  tol: Tolerances) -> tuple[Status, str]:
    if math.isnan(base):
        return "warn", f"the baseline has no {m} value, so it is not gated"
    if math.isnan(run):
        return "fail", f"{m}: no scorable items in the run (baseline {base:.4f})"
    sign = 1.0 if higher_is_better(m) else -1.0  # +1: a fall is worse; -1: a rise is
    drop = sign * (base - run)  # how much worse the run is (negative: better)
    fell = base > run
    moved = (f"{m} {'fell' if fell else 'rose'} {abs(base - run):.4f} ({base:.4f} -> "
             f"{run:.4f})" if drop else f"{m} unchanged at {run:.4f}")
    test = f"; {paired.describe()}" if paired else ""
    significant = (paired is not None and paired.p_value < tol.alpha
                   and sign * paired.mean_diff < 0)
    if drop <= limit + 1e-12:
        if drop > 0 and significant:
            return "warn", f"{moved}, within the {limit:.4f} allowed but significant{test}"
        within = f", within the {limit:.4f} allowed" if drop > 0 else ""
        return "pass", f"{moved}{within}{test}"
    if not tol.require_significance:
        return "fail", f"{moved}, more than the {limit:.4f} allowed{test}"
    if paired is None:
        return "fail", (f"{moved}, more than the {limit:.4f} allowed; no per-item scores to "
                        f"test significance, so the drop alone fails")
    if significant:
        return "fail", f"{moved}, more than the {limit:.4f} allowed and significant{test}"
    return "warn", (f"{moved}, more than the {limit:.4f} allowed but not significant at "
                    f"alpha={tol.alpha:g}{test}")


def _operational_checks(ts: str, variant: str, b: VariantStats, r: VariantStats,
                        tol: Tolerances) -> list[Check]:
    out = [
        _rise(ts, variant, "cost/query", "cost", b.per_query_usd, r.per_query_usd,
              tol.max_cost_increase, tol.cost_slack_usd, usd),
        _rise(ts, variant, "p95 latency", "latency", b.p95_s, r.p95_s,
              tol.max_latency_increase, tol.latency_slack_s, lambda x: f"{x * 1000:.1f} ms"),
    ]
    br, rr = b.error_rate, r.error_rate
    if math.isnan(rr):
        out.append(Check(ts, variant, "error rate", "errors", "fail",
                         "the run answered no items", br, rr, tol.max_error_rate_increase))
    else:
        base_rate = 0.0 if math.isnan(br) else br
        rose = rr - base_rate > tol.max_error_rate_increase + 1e-12
        said = (f"error rate {base_rate:.1%} -> {rr:.1%} ({r.errors} of {r.items} items)")
        out.append(Check(ts, variant, "error rate", "errors", "fail" if rose else "pass",
                         f"{said}, " + ("a rise beyond" if rose else "within") +
                         f" the {tol.max_error_rate_increase:.1%} allowed",
                         base_rate, rr, tol.max_error_rate_increase))
    if r.items < b.items:
        out.append(Check(ts, variant, "items", "items", "fail",
                         f"the run answered {r.items} items, the baseline {b.items}: the run "
                         f"is incomplete or the test set shrank (update the baseline on "
                         f"purpose if so)", b.items, r.items))
    return out


def _rise(ts: str, variant: str, check: str, kind: str, base: float, run: float, rel: float,
          slack: float, fmt) -> Check:
    if math.isnan(base) or math.isnan(run):
        return Check(ts, variant, check, kind, "warn",
                     f"{check} not measured on {'the baseline' if math.isnan(base) else 'the run'}"
                     f", so it is not gated", base, run, rel)
    limit = base * (1 + rel)
    change = f"{check} {fmt(base)} -> {fmt(run)}" + (
        f" ({(run - base) / base:+.0%})" if base > 0 else "")
    also = f" and more than {fmt(slack)}" if slack else ""
    if run > limit + 1e-15 and run - base > slack:
        return Check(ts, variant, check, kind, "fail",
                     f"{change}, a rise of more than {rel:.0%}{also}", base, run, rel)
    within = f"within +{rel:.0%}" + (f" or +{fmt(slack)}" if slack else "")
    return Check(ts, variant, check, kind, "pass", f"{change}, {within}", base, run, rel)


# ---- gating several runs against baseline files ---------------------------------------------

def load_baselines(paths: list[Path | str]) -> dict[str, Snapshot]:
    """One or more baseline files merged; a test set in two of them is an error."""
    if not paths:
        raise GateError("--baseline", "no baseline file given")
    merged: dict[str, Snapshot] = {}
    for path in paths:
        for name, snap in load_baseline(path).items():
            if name in merged:
                raise GateError(path, f"test set {name!r} is also in {merged[name].source}",
                                field=f"testsets.{name}")
            merged[name] = snap
    return merged


def gate_runs(run_dirs: list[Path | str], baselines: list[Path | str], *,
              tolerances_for: Callable[[Path], Tolerances],
              allow_subset: bool = False, allow_testset_change: bool = False,
              allow_item_subset: bool = False) -> GateReport:
    """Gate each run folder against the baseline entry of its test set.

    `tolerances_for(run_dir)` supplies each run's tolerances. Test sets in the baselines with
    no run given fail (a CI job that lost a test set must not pass), unless `allow_subset`.
    A run whose test set has no baseline entry, or two runs of one test set, are usage
    errors (GateError).
    """
    base = load_baselines(baselines)
    if not run_dirs:
        raise GateError(baselines[0], "no run folders given to gate")
    checks: list[Check] = []
    runs: dict[str, Path] = {}
    tols: dict[str, Tolerances] = {}
    for run_dir in run_dirs:
        snap = snapshot_from_run(run_dir)
        if snap.testset not in base:
            raise GateError(", ".join(map(str, baselines)),
                            f"no entry for test set {snap.testset!r} (from {run_dir}); the "
                            f"baseline holds: {', '.join(sorted(base))}. Add one with "
                            f"`evalkit baseline update {run_dir} --to FILE`",
                            field=f"testsets.{snap.testset}")
        if snap.testset in runs:
            raise GateError(run_dir, f"a second run of test set {snap.testset!r} "
                                     f"(first: {runs[snap.testset]})")
        runs[snap.testset] = Path(run_dir)
        tols[snap.testset] = tol = tolerances_for(Path(run_dir))
        checks += compare(snap, base[snap.testset], tol,
                          allow_testset_change=allow_testset_change,
                          allow_item_subset=allow_item_subset)
    for name in base:
        if name not in runs:
            checks.append(Check(name, "*", "test set", "testset",
                                "warn" if allow_subset else "fail",
                                f"test set {name!r} is in the baseline but no run of it was "
                                f"given" + (" (--subset)" if allow_subset else "")))
    return GateReport(checks, runs, tols)


def _nonneg(value: Any, path: Path | str | None, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 \
            or not math.isfinite(value):
        raise ConfigError(path, f"{value!r} must be a non-negative number", field=where)
    return float(value)
